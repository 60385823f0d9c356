"""Output folders that never lose a user's file: the marker, up-front path checks, atomic
replacement, run folders with a ``latest`` pointer.

Nothing but our own output is ever deleted: every output directory gets a marker
(``o1search_output.json``) listing its entries, and an existing directory is replaced only
when it is empty or its marker lists everything in it (leftovers of an interrupted write of a
listed entry count as listed). A directory of anyone else's files is refused
(:class:`OutputPathError`), or with ``overwrite=True`` only the output's own files are moved
into it; the working directory, a file or an unwritable place are refused up front
(:func:`check_output_dir`, which the CLI calls before any work starts).

:func:`atomic_output_dir` writes a directory atomically:

1. everything is written into a fresh temporary directory beside the target (same parent,
   so the same file system and ``rename`` is atomic), each file fsync'ed, then the directory;
2. an existing output is renamed aside to a backup name, the temporary directory is renamed
   into place, the parent directory is fsync'ed, and only then is the backup deleted.

A crash during step 1 leaves the old output untouched (plus a stray temporary directory that
the next write removes). A crash between the two renames of step 2 leaves no directory at the
target but a complete backup beside it: :func:`recover_checkpoint` (called by every writer
and by :func:`o1search.checkpoint.load_checkpoint`) puts it back first, so the previous
output is never lost. Checkpoints (:mod:`o1search.checkpoint`) are written this way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = ["LATEST_FILE", "MARKER_FILE", "OutputPathError", "atomic_output_dir",
           "check_output_dir", "check_output_file", "output_state", "record_entries",
           "recover_checkpoint", "resolve_latest", "set_latest"]

#: Written into every output directory this library writes: its kind and its entries. A
#: directory is replaced as a whole only when it has one listing everything in it.
MARKER_FILE = "o1search_output.json"
_MARKER_FORMAT = "o1search-output/1"
_TMP_TAG = ".tmp-"
_OLD_TAG = ".old-"


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:  # some platforms cannot open directories; the rename still happened
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def _current_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _siblings(target: Path, tag: str) -> list[Path]:
    prefix = f".{target.name}{tag}"
    if not target.parent.is_dir():
        return []
    return sorted(p for p in target.parent.iterdir() if p.name.startswith(prefix))


def recover_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Finish or undo a save that was interrupted, and remove stray temporary directories.

    Parameters:
        path: the checkpoint directory.

    Returns:
        True when a backup of the previous checkpoint had to be put back in place (a save
        crashed between its two renames), else False.
    """
    target = Path(os.fspath(path))
    restored = False
    backups = _siblings(target, _OLD_TAG)
    if not target.exists() and backups:
        # There is at most one backup unless saves crashed repeatedly; take the newest.
        backups.sort(key=lambda p: p.stat().st_mtime)
        os.replace(backups.pop(), target)
        _fsync_path(target.parent, directory=True)
        restored = True
    if target.exists():
        for stale in backups + _siblings(target, _TMP_TAG):
            shutil.rmtree(stale, ignore_errors=True)
    return restored


class OutputPathError(ValueError):
    """An output path that may not be written: a file, the working directory, a place that
    cannot be written, or a directory holding files this library did not write. Raised
    before any work starts when callers check with :func:`check_output_dir` first."""


def _marker(path: Path) -> dict[str, Any] | None:
    """The output marker of ``path`` (a dict with ``kind`` and ``files``), or None."""
    try:
        data = json.loads((path / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != _MARKER_FORMAT or \
            not isinstance(data.get("files"), list):
        return None
    return data


def output_state(path: str | os.PathLike[str]) -> str:
    """What is at an output path: ``"absent"``, ``"file"``, ``"empty"`` (an empty
    directory), ``"ours"`` (a directory this library wrote, every entry listed in its
    marker, so replacing it deletes nothing else) or ``"foreign"`` (anything else)."""
    target = Path(os.fspath(path))
    if not target.exists() and not target.is_symlink():
        return "absent"
    if target.is_symlink() or not target.is_dir():
        return "file"
    entries = set(os.listdir(target))
    if not entries:
        return "empty"
    marker = _marker(target)
    if marker is None:
        return "foreign"
    listed = set(marker["files"]) | {MARKER_FILE}
    if all(e in listed or _leftover_of(e, listed) for e in entries):
        return "ours"
    return "foreign"


def _leftover_of(entry: str, listed: set[str]) -> bool:
    """Whether ``entry`` is what an interrupted atomic write of a listed name leaves behind
    (``.NAME.tmp-…`` / ``.NAME.old-…``): a run killed mid-save stays ours to resume or replace."""
    return any(entry.startswith(f".{name}{tag}") for name in listed
               for tag in (_TMP_TAG, _OLD_TAG))


def _check_writable_parent(target: Path, what: str, shown: str) -> None:
    """The nearest existing ancestor of ``target.parent`` must be a directory that takes a
    new entry (a real probe: permissions alone do not show a read-only mount or /proc)."""
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(f"{what} {shown!r} cannot be created: {str(ancestor)!r} is a file")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".o1search-probe-", dir=ancestor))
    except OSError as exc:
        raise OutputPathError(f"{what} {shown!r} cannot be written: "
                              f"{exc.strerror or exc} in {str(ancestor)!r}") from None


def check_output_dir(path: str | os.PathLike[str], *, overwrite: bool = False,
                     what: str = "output folder") -> Path:
    """Check, before any work starts, that an output directory may be written.

    Parameters:
        path: the directory a run will write (created, or replaced when it is an output of
            this library).
        overwrite: accept a directory that holds other files (they are kept; only the
            output's own files are replaced).
        what: how messages name the path (e.g. ``"checkpoint folder"``).

    Returns:
        The path, with ``~`` expanded.

    Raises:
        OutputPathError: ``path`` is a file, the working directory or one holding it, in a
            place that cannot be written, or a directory of other files without
            ``overwrite``; the message says what to do instead.
    """
    target = Path(os.fspath(path)).expanduser()
    shown = str(path)
    resolved = target.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise OutputPathError(
            f"{what} {shown!r} is the working directory (or holds it); a run replaces its "
            "output folder as a whole: name a new folder, e.g. --out runs/1")
    state = output_state(target)
    if state == "file":
        raise OutputPathError(f"{what} {shown!r} exists and is a file, not a folder")
    if state == "foreign" and not overwrite:
        raise OutputPathError(
            f"{what} {shown!r} already holds files o1search did not write; refusing to "
            "replace them: choose a new or empty folder (or pass --overwrite to write the "
            "output's own files into it, keeping every other file)")
    _check_writable_parent(target, what, shown)
    return target


def check_output_file(path: str | os.PathLike[str], *, what: str = "output file") -> Path:
    """Check, before any work starts, that a single output file can be written.

    Returns:
        The path, with ``~`` expanded.

    Raises:
        OutputPathError: ``path`` is a directory, a parent of it is a file, or its
            directory cannot be written.
    """
    target = Path(os.fspath(path)).expanduser()
    shown = str(path)
    if target.is_dir():
        raise OutputPathError(f"{what} {shown!r} is a folder; name a file inside it")
    _check_writable_parent(target, what, shown)
    return target


LATEST_FILE = "latest"


def record_entries(path: str | os.PathLike[str], *, kind: str, add: Any = ()) -> None:
    """Add ``add`` (entry names a run just wrote, e.g. ``round-2``) to the marker of an output
    directory, atomically. Only names written by this library are ever listed, so files of
    the user's in an ``overwrite`` directory never become replaceable."""
    target = Path(os.fspath(path))
    marker = _marker(target)
    names = set(marker["files"]) if marker is not None else set()
    names.update(add)
    _write_text_atomic(target / MARKER_FILE, json.dumps(
        {"format": _MARKER_FORMAT, "kind": kind, "files": sorted(names)}, indent=2) + "\n")


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}{_TMP_TAG}{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    _fsync_path(tmp)
    os.replace(tmp, path)
    _fsync_path(path.parent, directory=True)


def set_latest(run_dir: str | os.PathLike[str], name: str, *, kind: str) -> None:
    """Point ``run_dir/latest`` at the checkpoint ``run_dir/name`` (atomically) and record
    the run directory's entries in its marker."""
    target = Path(os.fspath(run_dir))
    if os.path.basename(name) != name or not (target / name).is_dir():
        raise ValueError(f"{name!r} is not a checkpoint folder inside {str(target)!r}")
    # The marker first: a run killed between the two writes stays a folder of ours.
    record_entries(target, kind=kind, add=(name, LATEST_FILE))
    _write_text_atomic(target / LATEST_FILE, name + "\n")


def resolve_latest(path: str | os.PathLike[str]) -> Path:
    """``path`` itself, or for a run directory (no ``config.json``, a ``latest`` pointer)
    the checkpoint the pointer names."""
    root = Path(os.fspath(path)).expanduser()
    pointer = root / LATEST_FILE
    if not (root / "config.json").is_file() and pointer.is_file():
        name = pointer.read_text(encoding="utf-8").strip()
        if not name or os.path.basename(name) != name or not (root / name).is_dir():
            raise ValueError(f"{str(pointer)!r} names {name!r}, which is not a checkpoint "
                             "folder beside it")
        return root / name
    return root


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Put the complete directory ``tmp`` at ``target`` (two renames, see the docstring)."""
    backup = None
    if target.exists():
        backup = Path(tempfile.mkdtemp(prefix=f".{target.name}{_OLD_TAG}", dir=target.parent))
        os.replace(target, backup)  # replaces the empty placeholder directory
    os.replace(tmp, target)
    _fsync_path(target.parent, directory=True)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _merge_into(tmp: Path, target: Path) -> None:
    """``overwrite`` into a directory of other files: move each new entry in, replacing a
    same-named file or an output directory of ours; a same-named directory of other files is
    never deleted but renamed aside to ``NAME.kept-N``."""
    for entry in sorted(tmp.iterdir()):
        dest = target / entry.name
        if dest.is_dir() and not dest.is_symlink():
            if output_state(dest) not in ("empty", "ours"):
                n = 1
                while (target / f"{entry.name}.kept-{n}").exists():
                    n += 1
                os.replace(dest, target / f"{entry.name}.kept-{n}")
            _swap_into_place(entry, dest)
        else:
            os.replace(entry, dest)
    _fsync_path(target, directory=True)
    shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike[str], *, kind: str,
                      overwrite: bool = False) -> Iterator[Path]:
    """Write a whole output directory atomically: the caller fills the yielded temporary
    directory; on success it gets a marker (``o1search_output.json``: kind and the list of
    its entries), every file is fsync'ed and it replaces ``path`` in one rename. On an
    exception nothing at ``path`` changes.

    Parameters:
        path: the output directory (see :func:`check_output_dir` for what may be replaced).
        kind: what the output is (``"checkpoint"``, ``"demo-run"``, ...), kept in the marker.
        overwrite: as in :func:`check_output_dir`.

    Raises:
        OutputPathError: ``path`` may not be written.
        OSError: the write failed; ``path`` is unchanged.
    """
    target = Path(os.fspath(path)).expanduser()
    check_output_dir(target, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_checkpoint(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TMP_TAG}", dir=target.parent))
    try:
        yield tmp
        entries = sorted(os.listdir(tmp))
        (tmp / MARKER_FILE).write_text(json.dumps(
            {"format": _MARKER_FORMAT, "kind": kind, "files": entries}, indent=2) + "\n",
            encoding="utf-8")
        # mkdtemp makes the directory private (0700); an output should get the same
        # permissions as any other directory and file the user creates.
        umask = _current_umask()
        os.chmod(tmp, 0o777 & ~umask)
        for root, dirs, files in os.walk(tmp):
            for name in dirs:
                os.chmod(Path(root) / name, 0o777 & ~umask)
            for name in files:
                os.chmod(Path(root) / name, 0o666 & ~umask)
                _fsync_path(Path(root) / name)
        _fsync_path(tmp, directory=True)
        if output_state(target) == "foreign":
            _merge_into(tmp, target)
        else:
            _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
