"""The sandbox: hostile programs end in a clear failed result and leave the caller unharmed."""

from __future__ import annotations

import glob
import os
import tempfile

import pytest

from o1search.reward.sandbox import SandboxLimits, SandboxResult, run_python

FAST = SandboxLimits(wall_time_s=5.0, cpu_time_s=1.0, memory_mb=256)


def _layers() -> tuple[str, ...]:
    return run_python("pass", limits=FAST).isolation


LAYERS = _layers()


@pytest.fixture()
def outside(tmp_path):
    """A directory of the caller's that sandboxed code must not change."""
    d = tmp_path / "caller"
    d.mkdir()
    (d / "keep.txt").write_text("precious")
    return d


def test_runs_program_with_stdin_and_files():
    r = run_python(
        "import sys\nprint(sys.stdin.read().upper(), open('data/x.txt').read())",
        stdin="hello",
        files={"data/x.txt": "42"},
        limits=FAST,
    )
    assert r.ok and r.status == "ok" and r.returncode == 0
    assert r.stdout == "HELLO 42\n"
    assert "process" in r.isolation and "audit_hook" in r.isolation
    assert r.duration > 0


def test_program_may_write_in_its_own_directory_which_is_home():
    r = run_python(
        "import os\nopen('a.txt', 'w').write('x')\nos.mkdir('d')\nos.rename('a.txt', 'd/b')\n"
        "print(open('d/b').read(), os.getcwd() == os.environ['HOME'])",
        limits=FAST,
    )
    assert r.ok, r.stderr
    assert r.stdout == "x True\n"


def test_exception_is_an_error_with_the_message():
    r = run_python("raise ValueError('boom')", limits=FAST)
    assert not r.ok and r.status == "error" and r.returncode == 1
    assert "ValueError: boom" in r.reason


def test_infinite_loop_hits_the_cpu_limit():
    r = run_python("while True: pass", limits=FAST)
    assert r.status == "timeout" and not r.ok
    assert "CPU" in r.reason
    assert r.cpu_time >= 0.9


def test_sleeping_program_hits_the_wall_clock_limit():
    r = run_python("import time; time.sleep(60)", limits=SandboxLimits(wall_time_s=0.5))
    assert r.status == "timeout" and "wall-clock" in r.reason
    assert r.duration < 5


def test_caught_sigxcpu_still_ends_at_the_hard_cpu_limit():
    code = "import signal\nsignal.signal(signal.SIGXCPU, lambda *a: None)\nwhile True: pass"
    r = run_python(code, limits=FAST)
    assert r.status == "timeout"


@pytest.mark.parametrize("code", ["x = bytearray(4 * 1024**3)", "x = [0] * (10**9)"])
def test_huge_allocation_is_a_memory_failure(code):
    r = run_python(code, limits=FAST)
    assert r.status == "memory", r


def test_flooding_stdout_is_an_output_limit():
    r = run_python(
        "import sys\nwhile True: sys.stdout.write('x' * 65536)",
        limits=SandboxLimits(wall_time_s=5, cpu_time_s=2, file_size_mb=1, max_output_bytes=100),
    )
    assert r.status == "output_limit"
    assert len(r.stdout) == 100


def test_write_outside_its_directory_is_a_violation(outside):
    target = outside / "evil.txt"
    for code in (
        f"open({str(target)!r}, 'w').write('x')",
        f"import os\nos.remove({str(outside / 'keep.txt')!r})",
        f"import os\nos.rename({str(outside / 'keep.txt')!r}, 'stolen')",
        f"import shutil\nshutil.rmtree({str(outside)!r})",
        f"import os\nos.symlink({str(outside / 'keep.txt')!r}, 'p')\nopen('p', 'a').write('x')",
    ):
        r = run_python(code, limits=FAST)
        assert r.status == "violation", (code, r)
        assert "outside the sandbox directory" in r.reason
    assert not target.exists()
    assert (outside / "keep.txt").read_text() == "precious"


def test_sockets_are_refused():
    for code in ("import socket\nsocket.socket()", "import _socket\n_socket.socket()"):
        r = run_python(code, limits=FAST)
        assert r.status == "violation" and "network" in r.reason


@pytest.mark.parametrize(
    "code",
    [
        "import os\nwhile True:\n    os.fork()",  # a fork bomb
        "import subprocess\nsubprocess.run(['true'])",
        "import os\nos.system('true')",
        "import multiprocessing\nmultiprocessing.Process(target=print).start()",
        "import ctypes\nctypes.CDLL(None).fork()",
    ],
)
def test_creating_processes_is_a_violation(code):
    before = len(os.listdir("/proc")) if os.path.isdir("/proc") else 0
    r = run_python(code, limits=FAST)
    assert r.status == "violation", r
    if before:  # no process explosion on the machine
        assert len(os.listdir("/proc")) < before + 20


def test_signalling_the_caller_is_a_violation():
    r = run_python("import os\nos.kill(os.getppid(), 9)", limits=FAST)
    assert r.status == "violation"


def test_threads_are_allowed():
    code = (
        "import threading\nout = []\nt = threading.Thread(target=out.append, args=(7,))\n"
        "t.start(); t.join(); print(out)"
    )
    r = run_python(code, limits=FAST)
    assert r.ok, r.stderr
    assert r.stdout == "[7]\n"


def test_temporary_directories_are_removed():
    pattern = os.path.join(tempfile.gettempdir(), "o1sandbox-*")
    before = set(glob.glob(pattern))
    run_python("open('x', 'w').write('y' * 1000)", limits=FAST)
    run_python("while True: pass", limits=SandboxLimits(wall_time_s=0.3))
    assert set(glob.glob(pattern)) <= before


# ---- the kernel layers on their own (audit hook off), where this machine provides them ----
@pytest.mark.skipif("seccomp" not in LAYERS, reason="seccomp filter unavailable here")
def test_seccomp_stops_a_fork_bomb_without_the_audit_hook():
    code = "import os\nn = 0\nwhile True:\n    os.fork()\n    n += 1"
    r = run_python(code, limits=FAST, audit_hook=False)
    assert r.status == "error" and "PermissionError" in r.reason
    assert "audit_hook" not in r.isolation


@pytest.mark.skipif("seccomp" not in LAYERS, reason="seccomp filter unavailable here")
def test_seccomp_refuses_sockets_and_signals_without_the_audit_hook():
    for code in ("import socket\nsocket.socket()", "import os\nos.kill(os.getppid(), 0)"):
        r = run_python(code, limits=FAST, audit_hook=False)
        assert r.status == "error" and "PermissionError" in r.reason, (code, r)
    r = run_python("import os\nos.kill(os.getpid(), 0)\nprint('self ok')", audit_hook=False)
    assert r.ok and r.stdout == "self ok\n"


@pytest.mark.skipif("readonly_fs" not in LAYERS, reason="mount namespaces unavailable here")
def test_readonly_filesystem_without_the_audit_hook(outside):
    r = run_python(
        f"open({str(outside / 'evil.txt')!r}, 'w')", limits=FAST, audit_hook=False
    )
    # The caller's folder is not even there for the run when it has a private root.
    want = "No such file" if "private_root" in LAYERS else "Read-only file system"
    assert r.status == "error" and want in r.reason, r.reason
    assert not (outside / "evil.txt").exists()
    # What it can see (the interpreter's trees) it cannot change: the kernel says so.
    r = run_python("open('/usr/o1search-evil.txt', 'w')", limits=FAST, audit_hook=False)
    assert r.status == "error" and "Read-only file system" in r.reason, r.reason
    assert not os.path.exists("/usr/o1search-evil.txt")
    r = run_python("open('mine.txt', 'w').write('ok')", limits=FAST, audit_hook=False)
    assert r.ok, r.stderr


def test_allow_network_lifts_the_socket_ban():
    r = run_python("import socket\nsocket.socket().close()\nprint('ok')",
                   limits=SandboxLimits(allow_network=True))
    assert r.ok and r.stdout == "ok\n", r.stderr
    assert "netns" not in r.isolation


# ---- input validation ----
def test_bad_arguments_raise_clear_errors():
    with pytest.raises(TypeError, match="code must be a str"):
        run_python(b"print(1)")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="inside the directory"):
        run_python("pass", files={"../x": "y"})
    with pytest.raises(ValueError, match="inside the directory"):
        run_python("pass", files={"/etc/x": "y"})
    with pytest.raises(ValueError, match="wall_time_s"):
        SandboxLimits(wall_time_s=0)
    with pytest.raises(ValueError, match="memory_mb"):
        SandboxLimits(memory_mb=1)


def test_missing_interpreter_is_a_setup_error():
    r = run_python("pass", python="/nonexistent/python")
    assert isinstance(r, SandboxResult) and r.status == "setup_error" and not r.ok
