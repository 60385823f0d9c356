"""The trusted program a sandboxed run starts with (see :mod:`o1search.reward.sandbox`).

Kept apart from the parent's code because it is text run by another interpreter: it imports
nothing of o1search, applies the limits and namespaces, then runs the model's program.
"""

#: Exit codes the trusted child code uses to tell the parent what happened; chosen away from
#: the codes Python itself uses (0, 1, 2, 120) and from 128+signal.
VIOLATION_RC = 113
SETUP_RC = 114
MARKER = "o1search-sandbox:"

# --------------------------------------------------------------------------------------------
# Trusted code run inside the child, written beside (not inside) the run's directory. It is
# a separate program (it does not import o1search) so that the child interpreter loads
# nothing from the caller.
# Stage "launch" applies limits and namespaces, then execs a fresh interpreter for stage
# "guard", which installs the audit hook and runs the model's program. The exec matters: it
# drops the capabilities the user namespace gave the launcher and leaves ctypes unloaded.
# --------------------------------------------------------------------------------------------
CHILD = r'''
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
''' % {"violation_rc": VIOLATION_RC, "setup_rc": SETUP_RC, "marker": MARKER}
