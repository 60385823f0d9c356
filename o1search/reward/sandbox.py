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

__all__ = ["SandboxLimits", "SandboxResult", "run_python"]

# Exit codes the trusted child code uses to tell the parent what happened; chosen away from
# the codes Python itself uses (0, 1, 2, 120) and from 128+signal.
_VIOLATION_RC = 113
_SETUP_RC = 114
_MARKER = "o1search-sandbox:"

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


# --------------------------------------------------------------------------------------------
# Trusted code run inside the child, written beside (not inside) the run's directory. It is
# a separate program (it does not import o1search) so that the child interpreter loads
# nothing from the caller.
# Stage "launch" applies limits and namespaces, then execs a fresh interpreter for stage
# "guard", which installs the audit hook and runs the model's program. The exec matters: it
# drops the capabilities the user namespace gave the launcher and leaves ctypes unloaded.
# --------------------------------------------------------------------------------------------
_CHILD = r'''
import os, sys, json
VIOLATION_RC = %(violation_rc)d
SETUP_RC = %(setup_rc)d
MARKER = %(marker)r

def _seccomp_program(allow_network, pid):
    import struct
    # Instruction encodings (linux/filter.h, linux/bpf_common.h).
    LD_ABS, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    ALLOW, KILL = 0x7FFF0000, 0x80000000
    EPERM = 0x00050000 | 1
    ENOSYS = 0x00050000 | 38
    X86_64 = 0xC000003E
    NR = dict(clone=56, fork=57, vfork=58, kill=62, tkill=200, tgkill=234, socket=41,
              socketpair=53, ptrace=101, process_vm_writev=311, process_vm_readv=310,
              mount=165, umount2=166, unshare=272, setns=308, reboot=169, init_module=175,
              finit_module=313, delete_module=176, kexec_load=246, kexec_file_load=320,
              pivot_root=155, chroot=161, swapon=167, swapoff=168, bpf=321,
              perf_event_open=298, userfaultfd=323, keyctl=250, add_key=248,
              request_key=249, clone3=435, mount_setattr=442, open_tree=428, move_mount=429,
              fsopen=430, fsmount=432, pidfd_send_signal=424, pidfd_open=434,
              pidfd_getfd=438, io_uring_setup=425)
    deny = ["fork", "vfork", "tkill", "ptrace", "process_vm_writev", "process_vm_readv",
            "mount", "umount2", "unshare", "setns", "reboot", "init_module", "finit_module",
            "delete_module", "kexec_load", "kexec_file_load", "pivot_root", "chroot",
            "swapon", "swapoff", "bpf", "perf_event_open", "userfaultfd", "keyctl",
            "add_key", "request_key", "mount_setattr", "open_tree", "move_mount", "fsopen",
            "fsmount", "pidfd_send_signal", "pidfd_open", "pidfd_getfd", "io_uring_setup"]
    if not allow_network:
        deny += ["socket", "socketpair"]
    # Program as (op, k, true_label, false_label) with symbolic labels, resolved below.
    prog = [("ld", 4), ("jeq", X86_64, None, "kill"), ("ld", 0),
            ("jge", 0x40000000, "eperm", None)]  # x32 syscall numbers reach around the list
    for name in deny:
        prog.append(("jeq", NR[name], "eperm", None))
    prog += [("jeq", NR["clone3"], "enosys", None),  # glibc falls back to clone()
             ("jeq", NR["clone"], "clone", None),
             ("jeq", NR["kill"], "kill_sys", None),
             ("jeq", NR["tgkill"], "tgkill", None),
             ("ret", ALLOW),
             ("label", "clone"), ("ld", 16),  # clone flags, low 32 bits: threads are fine
             ("jset", 0x00010000, "allow", "eperm"),
             ("label", "kill_sys"), ("ld", 16),  # kill(pid, sig): own pid, own group, 0
             ("jeq", pid, "allow", None), ("jeq", 0, "allow", None),
             ("jeq", (-pid) & 0xFFFFFFFF, "allow", "eperm"),
             ("label", "tgkill"), ("ld", 16), ("jeq", pid, "allow", "eperm"),
             ("label", "allow"), ("ret", ALLOW),
             ("label", "eperm"), ("ret", EPERM),
             ("label", "enosys"), ("ret", ENOSYS),
             ("label", "kill"), ("ret", KILL)]
    labels, pos = {}, 0
    for ins in prog:
        if ins[0] == "label":
            labels[ins[1]] = pos
        else:
            pos += 1
    out, pos = [], 0
    for ins in prog:
        if ins[0] == "label":
            continue
        op = ins[0]
        if op == "ld":
            out.append(struct.pack("HBBI", LD_ABS, 0, 0, ins[1]))
        elif op == "ret":
            out.append(struct.pack("HBBI", RET, 0, 0, ins[1]))
        else:
            code = dict(jeq=JEQ, jge=JGE, jset=JSET)[op]
            jt = 0 if ins[2] is None else labels[ins[2]] - pos - 1
            jf = 0 if ins[3] is None else labels[ins[3]] - pos - 1
            assert 0 <= jt < 256 and 0 <= jf < 256
            out.append(struct.pack("HBBI", code, jt, jf, ins[1] & 0xFFFFFFFF))
        pos += 1
    return b"".join(out), len(out)

def private_root(libc, cfg, bind):
    """A new root (an empty tmpfs) holding only what the interpreter needs (cfg["keep"]:
    system library trees, the interpreter's prefix, a few /dev nodes, this file) and the
    run's directory, each bind-mounted; then chroot into it. False (nothing entered) when a
    step fails."""
    new = cfg["newroot"]
    if libc.mount(b"tmpfs", new.encode(), b"tmpfs", 0, b"size=1m,mode=755") != 0:
        return False
    try:
        for src in cfg["keep"] + [cfg["work"]]:
            dst = new + src
            if os.path.islink(src) and os.path.dirname(src) == "/":
                os.symlink(os.readlink(src), dst)  # /bin -> usr/bin on merged-/usr systems
                continue
            if os.path.isdir(src):
                os.makedirs(dst, exist_ok=True)
            elif os.path.exists(src):
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                open(dst, "a").close()
            else:
                continue
            if libc.mount(src.encode(), dst.encode(), None, bind, None) != 0:
                return False
        os.chroot(new)
    except OSError:
        return False
    return True

def launch(cfg):
    import resource, ctypes, struct
    layers = ["process"]
    work = cfg["work"]
    libc = None
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            libc = None
    if libc is not None:
        NEWNS, NEWUSER, NEWNET = 0x00020000, 0x10000000, 0x40000000
        net = 0 if cfg["allow_network"] else NEWNET
        uid, gid = os.getuid(), os.getgid()
        if libc.unshare(NEWUSER | NEWNS | net) == 0:
            if net:
                layers.append("netns")
            try:
                # The caller's ids appear as an ordinary user (1000) in the namespace: files
                # made in the new root need an owner, and exec drops every capability of a
                # non-root user.
                for name, value in (("setgroups", "deny"), ("uid_map", "1000 %%d 1" %% uid),
                                    ("gid_map", "1000 %%d 1" %% gid)):
                    with open("/proc/self/" + name, "w") as f:
                        f.write(value)
            except OSError:
                pass
            MS_REC, MS_PRIVATE, MS_BIND = 16384, 1 << 18, 4096
            libc.syscall.restype = ctypes.c_long
            def setattr_(path, set_, clr):
                attr = ctypes.create_string_buffer(struct.pack("QQQQ", set_, clr, 0, 0), 32)
                return libc.syscall(ctypes.c_long(442), ctypes.c_int(-100),
                                    ctypes.c_char_p(path.encode()), ctypes.c_uint(0x8000),
                                    attr, ctypes.c_size_t(32))
            ok = libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) == 0
            if ok and private_root(libc, cfg, MS_BIND | MS_REC):
                layers.append("private_root")
            elif ok:
                ok = libc.mount(work.encode(), work.encode(), None, MS_BIND | MS_REC, None) == 0
            if ok and setattr_("/", 1, 0) == 0 and setattr_(work, 0, 1) == 0:
                layers.append("readonly_fs")
            os.chdir(work)  # the old cwd is the directory under the new mounts
        elif net and libc.unshare(NEWNET) == 0:
            layers.append("netns")
    try:
        lim = [(resource.RLIMIT_CPU, cfg["cpu"], cfg["cpu"] + 1),
               (resource.RLIMIT_AS, cfg["mem"], cfg["mem"]),
               (resource.RLIMIT_FSIZE, cfg["fsize"], cfg["fsize"]),
               (resource.RLIMIT_NOFILE, cfg["nofile"], cfg["nofile"]),
               (resource.RLIMIT_CORE, 0, 0)]
        if hasattr(resource, "RLIMIT_NPROC"):
            lim.append((resource.RLIMIT_NPROC, 1, 1))
        for which, soft, hard in lim:
            resource.setrlimit(which, (soft, hard))
        layers.append("rlimits")
    except (ValueError, OSError) as exc:
        os.write(2, ("%%s could not set resource limits: %%s\n" %% (MARKER, exc)).encode())
        os._exit(SETUP_RC)
    if libc is not None and os.uname().machine == "x86_64":
        prog, n = _seccomp_program(cfg["allow_network"], os.getpid())
        buf = ctypes.create_string_buffer(prog, len(prog))
        fprog = struct.pack("HxxxxxxP", n, ctypes.addressof(buf))
        fbuf = ctypes.create_string_buffer(fprog, len(fprog))
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p,
                               ctypes.c_ulong, ctypes.c_ulong]
        if (libc.prctl(38, 1, None, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
                and libc.prctl(22, 2, ctypes.addressof(fbuf), 0, 0) == 0):  # SECCOMP filter
            layers.append("seccomp")
    if cfg["audit_hook"]:
        layers.append("audit_hook")
    os.write(cfg["report_fd"], json.dumps(layers).encode())
    os.close(cfg["report_fd"])
    py = cfg["python"]
    if "private_root" in layers:
        py = cfg["python_real"]  # the venv's symlink is not in the new root
    os.execv(py, [py, "-I", "-S", sys.argv[0], "guard", json.dumps(cfg)])

def guard(cfg):
    work = os.path.realpath(cfg["work"])
    allow_network = cfg["allow_network"]
    main = cfg["main"]
    realpath = os.path.realpath
    sep = os.sep
    W = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    def deny(what):
        try:
            sys.stdout.flush()
        except Exception:
            pass
        os.write(2, ("\n%%s blocked %%s\n" %% (MARKER, what)).encode("utf-8", "replace"))
        os._exit(VIOLATION_RC)
    def inside(path, dir_fd=None):
        if isinstance(path, int):
            return True  # an already-open descriptor
        if dir_fd not in (None, -1, -100) and not os.path.isabs(os.fsdecode(path)):
            return False  # relative to some directory we cannot name cheaply: refuse
        p = realpath(os.fsdecode(path))
        return p == work or p.startswith(work + sep) or p == "/dev/null"
    BLOCKED_IMPORTS = {"ctypes", "_ctypes", "cffi", "_posixsubprocess", "_xxsubinterpreters"}
    PROCESS = {"os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
               "subprocess.Popen", "os.startfile", "pty.spawn"}
    FS1 = {"os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate",
           "os.utime", "os.chflags", "os.lchflags", "os.mkfifo", "os.mknod",
           "shutil.rmtree", "os.setxattr", "os.removexattr"}
    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            if path is None:
                return
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & W)
            if writing and not inside(path):
                deny("writing to %%r (outside the sandbox directory)" %% (path,))
        elif event in FS1:
            dir_fd = args[-1] if event in ("os.remove", "os.rmdir", "os.mkdir", "os.chmod",
                                           "os.chown", "os.utime", "os.mkfifo",
                                           "os.mknod") and isinstance(args[-1], int) else None
            if not inside(args[0], dir_fd):
                deny("%%s on %%r (outside the sandbox directory)" %% (event, args[0]))
        elif event in ("os.rename", "os.link", "os.symlink"):
            if not (inside(args[0]) or event == "os.symlink") or not inside(args[1]):
                deny("%%s %%r -> %%r (outside the sandbox directory)" %% (event, args[0], args[1]))
        elif event in PROCESS:
            deny("%%s (creating processes is not allowed)" %% event)
        elif event == "os.kill" or event == "os.killpg":
            if args[0] not in (0, os.getpid()):
                deny("%%s of process %%r" %% (event, args[0]))
        elif event == "import":
            if args[0] in BLOCKED_IMPORTS:
                deny("import of %%s" %% args[0])
        elif event in ("ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata"):
            deny(event)
        elif not allow_network and event.startswith("socket."):
            if event in ("socket.__new__", "socket.connect", "socket.bind", "socket.sendto",
                         "socket.getaddrinfo", "socket.gethostbyname"):
                deny("%%s (network access is not allowed)" %% event)
    try:
        sys.stdout.reconfigure(errors="backslashreplace")
        sys.stderr.reconfigure(errors="backslashreplace")
    except Exception:
        pass
    with open(main, "rb") as f:
        source = f.read()
    code = compile(source, main, "exec")
    sys.argv = [main]
    sys.path.insert(0, work)
    if cfg["audit_hook"]:
        sys.addaudithook(hook)
    g = {"__name__": "__main__", "__file__": main, "__builtins__": __builtins__}
    del f, source
    exec(code, g)

_cfg = json.loads(sys.argv[2])
if sys.argv[1] == "launch":
    launch(_cfg)
else:
    guard(_cfg)
''' % {"violation_rc": _VIOLATION_RC, "setup_rc": _SETUP_RC, "marker": _MARKER}


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
