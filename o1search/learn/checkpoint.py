"""Atomic checkpoints in ``transformers`` format.

A checkpoint is a directory: the model's ``save_pretrained`` files (config.json,
model.safetensors, generation_config.json), the tokenizer's, and optionally
``extra_state.pt`` (trainer state: step, optimizer, scheduler, ...).

``save_checkpoint`` never leaves a half-written checkpoint where a reader looks:

1. everything is written into a fresh temporary directory beside the target (same parent,
   so the same file system and ``rename`` is atomic), each file fsync'ed, then the directory;
2. an existing checkpoint is renamed aside to a backup name, the temporary directory is
   renamed into place, the parent directory is fsync'ed, and only then is the backup deleted.

A crash during step 1 leaves the old checkpoint untouched (plus a stray temporary directory
that the next save removes). A crash between the two renames of step 2 leaves no directory at
the target but a complete backup beside it: ``load_checkpoint`` and ``save_checkpoint`` put
it back first (``recover_checkpoint``), so the previous checkpoint is never lost.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["Checkpoint", "EXTRA_STATE_FILE", "load_checkpoint", "recover_checkpoint",
           "save_checkpoint"]

EXTRA_STATE_FILE = "extra_state.pt"
_TMP_TAG = ".tmp-"
_OLD_TAG = ".old-"


@dataclasses.dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        path: the checkpoint directory.
        model: the model, in eval mode.
        tokenizer: its tokenizer.
        extra_state: what was passed as ``extra_state`` to :func:`save_checkpoint`
            (``{}`` when nothing was).
    """

    path: Path
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    extra_state: dict[str, Any]


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


def save_checkpoint(
    path: str | os.PathLike[str],
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase | None = None,
    extra_state: dict[str, Any] | None = None,
    *,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write a checkpoint atomically (see the module docstring), replacing any old one.

    Parameters:
        path: the checkpoint directory (created or replaced; its parent is created).
        model: a ``transformers`` model (saved with ``save_pretrained``, safetensors).
        tokenizer: its tokenizer, saved beside it (optional).
        extra_state: trainer state to save with ``torch.save``: dicts, lists, numbers,
            strings and tensors (e.g. ``optimizer.state_dict()``); loaded back with
            ``weights_only=True``.
        extra_files: more text files to write into the checkpoint, ``{name: text}`` (e.g.
            a training report); names are plain file names.

    Returns:
        The checkpoint directory.

    Raises:
        TypeError: ``extra_state`` is not a dict.
        ValueError: an ``extra_files`` name is not a plain file name.
        OSError: the write failed; the previous checkpoint (if any) is unchanged.
    """
    if extra_state is not None and not isinstance(extra_state, dict):
        raise TypeError(f"extra_state must be a dict, got {type(extra_state).__name__}")
    for name in extra_files or {}:
        if not name or os.path.basename(name) != name or name in (".", ".."):
            raise ValueError(f"extra_files names must be plain file names, got {name!r}")
    target = Path(os.fspath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_checkpoint(target)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{str(target)!r} exists and is not a checkpoint directory")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TMP_TAG}", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if extra_state is not None:
            torch.save(extra_state, tmp / EXTRA_STATE_FILE)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        # mkdtemp makes the directory private (0700); a checkpoint should get the same
        # permissions as any other directory and file the user creates.
        umask = _current_umask()
        os.chmod(tmp, 0o777 & ~umask)
        for root, _dirs, files in os.walk(tmp):
            for name in files:
                os.chmod(Path(root) / name, 0o666 & ~umask)
                _fsync_path(Path(root) / name)
        _fsync_path(tmp, directory=True)
        backup = None
        if target.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{target.name}{_OLD_TAG}", dir=target.parent))
            os.replace(target, backup)  # replaces the empty placeholder directory
        os.replace(tmp, target)
        _fsync_path(target.parent, directory=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
    return target


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint` (or any ``save_pretrained``
    directory with a tokenizer), recovering an interrupted save first.

    Parameters:
        path: the checkpoint directory.
        device, dtype: as in :func:`o1search.policy.load_policy`.

    Returns:
        A :class:`Checkpoint`; tensors of ``extra_state`` are loaded on CPU.

    Raises:
        FileNotFoundError: no checkpoint at ``path`` (or it lacks config/weights/tokenizer).
    """
    from o1search.policy.model import load_policy  # learn sits above policy

    target = Path(os.fspath(path))
    recover_checkpoint(target)
    model, tokenizer = load_policy(target, device=device, dtype=dtype)
    extra: dict[str, Any] = {}
    if (target / EXTRA_STATE_FILE).is_file():
        extra = torch.load(target / EXTRA_STATE_FILE, map_location="cpu", weights_only=True)
    return Checkpoint(path=target, model=model, tokenizer=tokenizer, extra_state=extra)
