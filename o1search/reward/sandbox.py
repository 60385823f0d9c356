"""Run untrusted model-written Python in a separate, limited process.

What is enforced, layer by layer (``SandboxResult.isolation`` names the layers a run got):

``process``   (always) a new session/process group, killed as a whole (SIGKILL) when the run
              ends or its wall-clock limit passes; a fresh temporary directory as cwd, HOME and
              TMPDIR; a minimal environment; ``python -I -S`` (no site, no user paths, no
              PYTHON* variables); stdin from a file, stdout/stderr to files (no pipe deadlocks).
``rlimits``   (POSIX) RLIMIT_CPU, RLIMIT_AS (memory), RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_CORE=0
              and RLIMIT_NPROC. The kernel does not apply RLIMIT_NPROC to root, which is why
              the next layer exists.
``seccomp``   (Linux x86-64) a kernel syscall filter: fork/vfork/non-thread clone fail, so no
              child process can be made at all (fork bombs end at the first fork, root or not);
              socket/socketpair fail unless networking is allowed; kill/tgkill only reach the
              run's own process or group, so it cannot signal the caller; ptrace,
              process_vm_writev, mount, unshare, setns, reboot, module and kexec calls fail.
``netns``     (Linux, when unshare is permitted) a new, empty network namespace.
``private_root`` (Linux, when user+mount namespaces are permitted) the run's ``/`` is a new,
              empty tmpfs holding bind mounts of only what the interpreter needs: ``/usr``,
              ``/lib*``, ``/bin``, ``/sbin``, the interpreter's own prefix (a pyenv or conda
              install), ``/dev/null``/``zero``/``urandom``/``random`` and the run's
              directory. The host's ``/home``, ``/root`` (but the interpreter), ``/etc``,
              ``/tmp``, ``/proc`` (other processes' environments), ``/work``... do not exist
              for it. The caller's user id appears as an ordinary user (1000).
``readonly_fs`` (with the namespaces above) every mount is read-only except the run's own
              directory, so the kernel refuses writes anywhere else. The run keeps no
              capabilities after exec.
``audit_hook`` (always) a Python audit hook installed before the model's code runs; it ends
              the run (status ``"violation"``) on: opening a file for writing outside the run's
              directory, removing/renaming/creating files outside it, creating sockets,
              fork/exec/spawn/subprocess/os.system, signalling other processes, and importing
              ctypes/cffi/_posixsubprocess (which would reach around the hook). Audit hooks are
              a tripwire, not a security boundary: a determined attacker with an interpreter
              bug can pass them, which is why the kernel layers above come first.

Not enforced without namespaces: reading the host's files (where ``private_root`` is missing
from ``SandboxResult.isolation``, the run can read what the caller can read); reading the
system library trees is always possible (they hold no user data). The run uses the
caller's user id outside the namespace. Run the whole training
job in a container when the threat is more than a confused model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

from o1search.reward.sandbox_child import CHILD as _CHILD
from o1search.reward.sandbox_child import MARKER as _MARKER
from o1search.reward.sandbox_child import SETUP_RC as _SETUP_RC
from o1search.reward.sandbox_child import VIOLATION_RC as _VIOLATION_RC

__all__ = ["SandboxLimits", "SandboxResult", "run_python"]

STATUSES = ("ok", "error", "timeout", "memory", "violation", "output_limit", "setup_error")


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandboxed run.

    Attributes:
        wall_time_s: wall-clock limit; the process group is killed when it passes.
        cpu_time_s: CPU-time limit (RLIMIT_CPU, rounded up to whole seconds).
        memory_mb: address-space limit (RLIMIT_AS) in MiB; the interpreter itself needs ~30.
        file_size_mb: largest file the run may write (RLIMIT_FSIZE), stdout/stderr included.
        max_open_files: RLIMIT_NOFILE.
        max_output_bytes: how much of stdout and of stderr is returned (each).
        allow_network: when False (the default), sockets are refused and the run gets an
            empty network namespace where permitted.
    """

    wall_time_s: float = 10.0
    cpu_time_s: float = 10.0
    memory_mb: int = 512
    file_size_mb: int = 16
    max_open_files: int = 64
    max_output_bytes: int = 1 << 20
    allow_network: bool = False

    def __post_init__(self) -> None:
        if not (self.wall_time_s > 0 and math.isfinite(self.wall_time_s)):
            raise ValueError(f"wall_time_s must be a positive number, got {self.wall_time_s!r}")
        if not (self.cpu_time_s > 0 and math.isfinite(self.cpu_time_s)):
            raise ValueError(f"cpu_time_s must be a positive number, got {self.cpu_time_s!r}")
        if self.memory_mb < 48:
            raise ValueError(
                f"memory_mb={self.memory_mb} is too small for a Python interpreter; use >= 48"
            )
        if self.file_size_mb < 1:
            raise ValueError(f"file_size_mb must be >= 1, got {self.file_size_mb}")
        if self.max_open_files < 8:
            raise ValueError(f"max_open_files must be >= 8, got {self.max_open_files}")
        if self.max_output_bytes < 0:
            raise ValueError(f"max_output_bytes must be >= 0, got {self.max_output_bytes}")


@dataclasses.dataclass(frozen=True)
class SandboxResult:
    """What one sandboxed run did.

    Attributes:
        ok: True when the program exited with status 0 within its limits.
        status: one of ``"ok"``, ``"error"`` (non-zero exit, e.g. an exception or a failed
            assert), ``"timeout"`` (wall-clock or CPU limit), ``"memory"`` (MemoryError or
            out of address space), ``"violation"`` (a forbidden action: writing outside its
            directory, a socket, a subprocess, ...), ``"output_limit"`` (wrote more than
            ``file_size_mb``), ``"setup_error"`` (the sandbox itself could not start).
        stdout, stderr: captured output (decoded as UTF-8, truncated to max_output_bytes).
        returncode: the exit status (negative: killed by that signal); None if never started.
        duration: wall-clock seconds from start to exit.
        reason: a one-line human explanation of the status.
        isolation: the isolation layers that were in force (see the module docstring).
        cpu_time: CPU seconds (user + system) the program used.
        files: the files named in ``run_python(collect=...)`` that the run left in its
            directory (regular files only, at most ``collect_limit`` bytes each).
    """

    ok: bool
    status: str
    stdout: str
    stderr: str
    returncode: int | None
    duration: float
    reason: str
    isolation: tuple[str, ...] = ()
    cpu_time: float = 0.0
    files: Mapping[str, bytes] = dataclasses.field(default_factory=dict)




def _read_capped(path: str, cap: int) -> tuple[str, int]:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        data = f.read(cap)
    return data.decode("utf-8", errors="replace"), size


def run_python(
    code: str,
    *,
    stdin: str | bytes = "",
    files: Mapping[str, str | bytes] | None = None,
    limits: SandboxLimits | None = None,
    python: str | None = None,
    audit_hook: bool = True,
    collect: Sequence[str] = (),
    collect_limit: int = 1 << 20,
) -> SandboxResult:
    """Run a Python program in a sandboxed child process and report what happened.

    Parameters:
        code: the program's source text (run as ``__main__``).
        stdin: bytes or text fed to the program's standard input.
        files: extra files to place in the program's directory, by relative name.
        limits: resource limits (``SandboxLimits()`` by default).
        python: the interpreter to run (default: this process's ``sys.executable``).
        audit_hook: install the Python audit hook (default). Turning it off leaves only the
            kernel layers; it exists to test those.
        collect: names (relative to the run's directory) of files to read back after the
            run, into ``SandboxResult.files``; what the program wrote there is untrusted data.
        collect_limit: the most bytes read back per collected file.

    Returns:
        A :class:`SandboxResult`. Failures of the program (exceptions, limits, forbidden
        actions) are results, not exceptions.

    Raises:
        TypeError: ``code`` is not a string.
        ValueError: a name in ``files`` is absolute or leaves the directory.
        OSError: only if no temporary directory can be made.
    """
    if not isinstance(code, str):
        raise TypeError(f"code must be a str, got {type(code).__name__}")
    limits = limits or SandboxLimits()
    if isinstance(stdin, str):
        stdin = stdin.encode("utf-8")
    python = python or sys.executable
    if os.name != "posix":  # pragma: no cover - the library targets Linux
        return SandboxResult(False, "setup_error", "", "", None, 0.0,
                             "the sandbox needs a POSIX system", ())

    root = tempfile.mkdtemp(prefix="o1sandbox-")
    try:
        work = os.path.join(root, "work")
        os.mkdir(work, 0o700)
        for name, content in (files or {}).items():
            target = os.path.realpath(os.path.join(work, name))
            if os.path.isabs(name) or not target.startswith(work + os.sep):
                raise ValueError(f"sandbox file name {name!r} must stay inside the directory")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
        main = os.path.join(work, "main.py")
        with open(main, "w", encoding="utf-8") as f:
            f.write(code)
        in_path, out_path, err_path = (os.path.join(root, n) for n in ("in", "out", "err"))
        child = os.path.join(root, "child.py")
        with open(child, "w", encoding="utf-8") as f:
            f.write(_CHILD)
        with open(in_path, "wb") as f:
            f.write(stdin)
        newroot = os.path.join(root, "fs")
        os.mkdir(newroot, 0o700)
        report_r, report_w = os.pipe()
        cfg = {
            "work": work,
            "main": main,
            "python": python,
            "python_real": os.path.realpath(python),
            "newroot": newroot,
            "keep": _root_keep(python) + [child],
            "cpu": max(1, math.ceil(limits.cpu_time_s)),
            "mem": limits.memory_mb << 20,
            "fsize": limits.file_size_mb << 20,
            "nofile": limits.max_open_files,
            "allow_network": limits.allow_network,
            "report_fd": report_w,
            "audit_hook": bool(audit_hook),
        }
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": work,
            "TMPDIR": work,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }
        start = time.monotonic()
        try:
            with open(in_path, "rb") as fin, open(out_path, "wb") as fout, open(
                err_path, "wb"
            ) as ferr:
                proc = subprocess.Popen(
                    [python, "-I", "-S", child, "launch", json.dumps(cfg)],
                    stdin=fin,
                    stdout=fout,
                    stderr=ferr,
                    cwd=work,
                    env=env,
                    close_fds=True,
                    pass_fds=(report_w,),
                    start_new_session=True,
                )
        except OSError as exc:
            os.close(report_r)
            os.close(report_w)
            return SandboxResult(False, "setup_error", "", "", None, 0.0,
                                 f"could not start {python!r}: {exc}", ())
        os.close(report_w)
        # wait4 (not Popen.wait) so the child's CPU time comes back with its status.
        deadline = start + limits.wall_time_s
        timed_out, status_word, usage = _wait_until(proc.pid, deadline)
        # Kill the whole group even after a normal exit: nothing the run left behind survives.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if timed_out:
            _, status_word, usage = os.wait4(proc.pid, 0)
        returncode = os.waitstatus_to_exitcode(status_word)
        proc.returncode = returncode  # reaped here; keep Popen from waiting again
        cpu_time = usage.ru_utime + usage.ru_stime
        duration = time.monotonic() - start
        with os.fdopen(report_r, "rb") as rep:
            raw = rep.read()
        try:
            isolation = tuple(json.loads(raw)) if raw else ()
        except ValueError:
            isolation = ()
        stdout, out_size = _read_capped(out_path, limits.max_output_bytes)
        stderr, _ = _read_capped(err_path, limits.max_output_bytes)
        status, reason = _classify(returncode, timed_out, cpu_time, stderr, out_size, limits)
        return SandboxResult(status == "ok", status, stdout, stderr, returncode, duration,
                             reason, isolation, cpu_time, _collect(work, collect, collect_limit))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _root_keep(python: str) -> list[str]:
    """What the sandbox's private root holds besides the run's directory: the system library
    trees, the interpreter's own prefix (``<prefix>/bin/python``: e.g. a pyenv or conda
    install under a home directory) and the device nodes Python reads."""
    keep = [p for p in ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin")
            if os.path.lexists(p)]
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(python)))
    if prefix not in ("", "/") and not any(prefix == k or prefix.startswith(k + "/")
                                           for k in keep):
        keep.append(prefix)
    keep += [d for d in ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")
             if os.path.exists(d)]
    return keep


def _wait_until(pid: int, deadline: float) -> tuple[bool, int, Any]:
    """Wait for ``pid`` to exit or ``deadline`` to pass: ``(timed_out, status, rusage)``.

    A pidfd (Linux >= 5.3) wakes the caller the moment the child exits; elsewhere the child
    is polled with a growing delay."""
    pidfd = -1
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = -1
    try:
        delay = 0.0005
        while True:
            got, status_word, usage = os.wait4(pid, os.WNOHANG)
            if got:
                return False, status_word, usage
            left = deadline - time.monotonic()
            if left <= 0:
                return True, 0, None
            if pidfd >= 0:
                select.select([pidfd], [], [], left)
            else:
                time.sleep(min(delay, left))
                delay = min(delay * 2, 0.02)
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _collect(work: str, names: Sequence[str], limit: int) -> dict[str, bytes]:
    """The named regular files of the finished run's directory, each read up to ``limit``
    bytes without following symbolic links (the program may have replaced a file by a link
    to a host file)."""
    out = {}
    for name in names:
        path = os.path.join(work, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                out[name] = os.read(fd, limit)
        finally:
            os.close(fd)
    return out


def _classify(
    rc: int, timed_out: bool, cpu_time: float, stderr: str, out_size: int, limits: SandboxLimits
) -> tuple[str, str]:
    tail = stderr[-2000:]
    if timed_out:
        return "timeout", f"wall-clock limit of {limits.wall_time_s:g} s exceeded"
    if rc == _SETUP_RC:
        return "setup_error", "the sandbox could not be set up: " + tail.strip()[-300:]
    if rc == _VIOLATION_RC and _MARKER in tail:
        line = tail[tail.rindex(_MARKER) :].splitlines()[0]
        return "violation", line[len(_MARKER) :].strip()
    if rc == -signal.SIGXCPU:
        return "timeout", f"CPU-time limit of {math.ceil(limits.cpu_time_s)} s exceeded"
    if rc == -signal.SIGKILL and cpu_time >= math.ceil(limits.cpu_time_s):
        # The kernel sends SIGKILL at the hard CPU limit (soft + 1 s) when SIGXCPU is caught.
        return "timeout", f"CPU-time limit of {math.ceil(limits.cpu_time_s)} s exceeded"
    last_lines = [ln for ln in tail.strip().splitlines()[-3:]]
    if any(ln.startswith("MemoryError") for ln in last_lines) or "Cannot allocate memory" in tail:
        return "memory", f"out of memory (limit {limits.memory_mb} MiB)"
    if out_size >= limits.file_size_mb << 20 or "File too large" in tail:
        return "output_limit", f"wrote more than {limits.file_size_mb} MiB"
    if rc == 0:
        return "ok", "exited normally"
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = str(-rc)
        return "error", f"killed by signal {name}"
    last = last_lines[-1] if last_lines else ""
    return "error", f"exit status {rc}" + (f": {last[:300]}" if last else "")
