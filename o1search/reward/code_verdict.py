"""A code verdict the program under test cannot forge: record in the sandbox, judge outside it.

Threat model
------------
The program is written by a policy that is rewarded when the verdict says "passed", so it is
an adversary that knows this module. It runs with the full power of Python inside
:func:`o1search.reward.sandbox.run_python`: it may read every frame, global, file descriptor
and byte of its own process, patch ``builtins``/``sys``/``json``, install ``sys.excepthook``,
``atexit`` or signal handlers, exit at any point (``os._exit(0)``, ``sys.exit``), start
threads, and return objects whose ``__eq__``/``__hash__``/``__repr__`` lie. Whatever runs in
its process can be forged, so **nothing that decides the verdict runs there**:

1. *Record* (the sandboxed run ``U``: the program, then the tests with their expected values
   removed). Each name the tests need from the program (the entry point, or every free name
   of plain ``assert f(x) == y`` tests) is wrapped by a recorder that writes, per call made by
   the tests, the arguments and the returned value (or the raised exception's type) to a log.
   Values are serialised *type-strictly*: only ``None``, ``bool``, ``int``, ``float``,
   ``complex``, ``str``, ``bytes`` and ``list``/``tuple``/``dict``/``set``/``frozenset`` of
   them, exact types (a subclass of ``int`` with a lying ``__eq__`` is refused), so no code of
   the program survives into the log. Each ``assert`` of the tests is replaced by the calls it
   makes of the program's names: the literals it compares against never enter the process.
2. *Judge* (the trusted run ``T``, in a separate process the program never touched: the task's
   trusted prelude, e.g. HumanEval's prompt with its helper functions, and the **original**
   tests). The program's names are bound to replayers that answer each call with the value
   ``U`` logged for the same name and arguments (calls are matched by name and type-strict
   arguments, so the two runs need not call in the same order). Comparisons therefore happen
   between plain builtins decoded in ``T``; a call ``U`` did not answer fails the test.

The log is the program's only influence on the verdict, and it is data: to pass, it must hold
the values a correct program returns. No secret, marker or exit path exists to forge: exiting
early, printing anything, hooking exits or patching the interpreter in ``U`` only shortens or
garbles the log.

What remains (documented, not hidden): expected values the tests compute *outside* ``assert``
statements (a table of ``(input, output)`` pairs looped over) are in ``U``'s test code and can
be read by a program that inspects its caller's frames; tests that need the program's objects
themselves (methods of a returned instance, generators, callbacks) cannot be judged this way
and fail with a reason saying so; arguments that the program mutates in place are compared as
the tests passed them. The sandbox (:mod:`o1search.reward.sandbox`) contains what the program
does to the host; this module decides what it earned.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

from o1search.reward.sandbox import SandboxLimits, SandboxResult, run_python

__all__ = ["CodeVerdict", "TestPlan", "judge_program", "plan_tests"]

_LOG = "o1search_calls.jsonl"
_MAX_LOG_BYTES = 8 << 20

# The type-strict codec, shared verbatim by the recording and the judging harness.
_CODEC = r'''
class Unencodable(Exception):
    pass

def make_codec(_type=type, _len=len, _hex=float.hex, _fmt=format, _isinst=isinstance,
               _sorted=sorted, _dumps=None):
    import json as _json
    dumps = _json.dumps
    def enc(x, depth=0, budget=None):
        if budget is None:
            budget = [200000]
        budget[0] -= 1
        if budget[0] < 0 or depth > 60:
            raise Unencodable("too large or too deeply nested")
        t = _type(x)
        if x is None or t is bool:
            return x
        if t is int:
            return {"i": _fmt(x, "x")}
        if t is float:
            return {"f": _hex(x)}
        if t is complex:
            return {"c": [_hex(x.real), _hex(x.imag)]}
        if t is str:
            return {"s": x}
        if t is bytes:
            return {"b": x.hex()}
        if t is list or t is tuple:
            return {"l" if t is list else "t": [enc(v, depth + 1, budget) for v in x]}
        if t is dict:
            return {"d": [[enc(k, depth + 1, budget), enc(v, depth + 1, budget)]
                          for k, v in x.items()]}
        if t is set or t is frozenset:
            items = [enc(v, depth + 1, budget) for v in x]
            items = _sorted(items, key=lambda e: dumps(e, sort_keys=True))
            return {"S" if t is set else "F": items}
        raise Unencodable("returned an object of type %s; the verdict compares only plain data (None, "
                          "bool, int, float, complex, str, bytes, list, tuple, dict, set)"
                          % getattr(t, "__name__", "?"))
    def key(args, kwargs):
        try:
            return dumps([enc(list(args)), sorted([k, enc(v)] for k, v in kwargs.items())],
                         sort_keys=True, separators=(",", ":"))
        except (Unencodable, TypeError, ValueError, RecursionError):
            return None
    return enc, key
'''

_RECORD = r'''
def _o1search_record():
    import os, sys, json, random
    enc, key = make_codec()
    names = %(names)r
    log = os.open(%(log)r, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    dumps, write, BaseExc, callable_ = json.dumps, os.write, BaseException, callable
    getstate, setstate = random.getstate, random.setstate
    def emit(rec):
        write(log, (dumps(rec) + "\n").encode())
    depth = [0]
    def recorder(name, fn):
        def call(*args, **kwargs):
            if depth[0]:
                return fn(*args, **kwargs)  # the program calling itself: not the tests' call
            k = key(args, kwargs)
            state = getstate()
            depth[0] += 1
            try:
                out = fn(*args, **kwargs)
            except BaseExc as exc:
                emit({"n": name, "k": k, "e": type(exc).__name__})
                raise
            finally:
                depth[0] -= 1
                setstate(state)  # the program's own draws do not shift the tests' stream
            try:
                emit({"n": name, "k": k, "o": enc(out)})
            except Unencodable as u:
                emit({"n": name, "k": k, "x": str(u)})
            except BaseExc:
                emit({"n": name, "k": k, "x": "returned a value that could not be encoded"})
            return out
        return call
    with open("solution.py", encoding="utf-8") as f:
        program = f.read()
    with open("tests.py", encoding="utf-8") as f:
        tests = f.read()
    scope = {"__name__": "__main__"}
    exec(compile(program, "solution.py", "exec"), scope)
    for name in names:
        if name not in scope:
            emit({"n": name, "missing": True})
        elif callable_(scope[name]):
            scope[name] = recorder(name, scope[name])
        else:
            try:
                emit({"n": name, "v": enc(scope[name])})
            except BaseExc:
                emit({"n": name, "x": "is not plain data"})
    random.seed(0)
    exec(compile(tests, "tests.py", "exec"), scope)

_o1search_record()
'''

_JUDGE = r'''
import builtins, json, os, random, resource, select, signal, sys, time

def judge(cfg, log):
    """None when the original tests pass against the logged answers, else the reason."""
    enc, key = make_codec()
    def dec(e, depth=0):
        if e is None or type(e) is bool:
            return e
        if depth > 64 or type(e) is not dict or len(e) != 1:
            raise ValueError("malformed value in the program's log")
        (tag, v), = e.items()
        if tag == "i":
            return int(v, 16)
        if tag == "f":
            return float.fromhex(v)
        if tag == "c":
            return complex(float.fromhex(v[0]), float.fromhex(v[1]))
        if tag == "s" and type(v) is str:
            return v
        if tag == "b":
            return bytes.fromhex(v)
        if tag in ("l", "t", "S", "F") and type(v) is list:
            items = [dec(x, depth + 1) for x in v]
            return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
        if tag == "d" and type(v) is list:
            return {dec(k, depth + 1): dec(x, depth + 1) for k, x in v}
        raise ValueError("malformed value in the program's log")
    answers, wild, values, notes = {}, {}, {}, {}
    for line in log.splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a torn or forged line answers nothing
        if type(r) is not dict or type(r.get("n")) is not str:
            continue
        n, k = r["n"], r.get("k")
        if r.get("missing") is True:
            notes[n] = "the program does not define %s" % n
        elif "v" in r and "k" not in r:
            values[n] = r["v"]
        elif "x" in r and "k" not in r:
            notes[n] = "%s %s" % (n, r["x"])
        elif type(k) is str:
            answers.setdefault((n, k), []).append(r)
        elif k is None:
            wild.setdefault(n, []).append(r)
    class Unanswered(AssertionError):
        pass
    def replayer(name):
        def call(*args, **kwargs):
            k = key(args, kwargs)
            queue = answers.get((name, k)) if k is not None else None
            if not queue:
                queue = wild.get(name)
            if not queue:
                why = notes.get(name, "the program's run recorded no answer for this call "
                                      "(it ended, failed or timed out before it)")
                raise Unanswered("%s(%s): %s" % (name, ", ".join(
                    [repr(a)[:80] for a in args] + ["%s=%r" % kv for kv in kwargs.items()]),
                    why))
            r = queue.pop(0)
            if "e" in r:
                exc = getattr(builtins, str(r["e"]), None)
                if not (isinstance(exc, type) and issubclass(exc, Exception)):
                    exc = RuntimeError
                raise exc("raised by the program (recorded)")
            if "x" in r:
                raise Unanswered("%s: %s" % (name, r["x"]))
            return dec(r["o"])
        return call
    scope = {"__name__": "__main__"}
    if cfg["prelude"]:
        try:
            exec(compile(cfg["prelude"], "prelude.py", "exec"), scope)
        except Exception as exc:
            return "error: the trusted prelude failed: %r" % (exc,)
    for name in cfg["names"]:
        scope[name] = dec(values[name]) if name in values else replayer(name)
    random.seed(0)
    try:
        exec(compile(cfg["tests"], "tests.py", "exec"), scope)
    except BaseException as exc:
        import traceback
        tb = traceback.extract_tb(exc.__traceback__)
        where = [fr for fr in tb if fr.filename == "tests.py"]
        lines = cfg["tests"].splitlines()
        no = where[-1].lineno if where else 0
        line = ("tests.py line %d: %s" % (no, lines[no - 1].strip()[:200])
                if 0 < no <= len(lines) else "tests.py")
        if isinstance(exc, Unanswered):
            msg = "error: %s" % exc
        elif isinstance(exc, AssertionError):
            msg = "failed: %s" % line
        else:
            msg = "error: %s raised %s: %s" % (line, type(exc).__name__, str(exc)[:200])
        return msg[:600]
    return None

def read_exact(fd, n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf

def serve():
    """One job after another from stdin (8-byte length, JSON); each judged in a forked child
    (a fresh copy of this process: no state carries between jobs) under its own deadline."""
    mem = int(sys.argv[1])
    try:
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    except (ValueError, OSError):
        pass
    devnull = os.open(os.devnull, os.O_WRONLY)
    while True:
        try:
            n = int.from_bytes(read_exact(0, 8), "little")
            job = json.loads(read_exact(0, n))
        except EOFError:
            return
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.dup2(devnull, 1)  # what the tests print is not the protocol
            os.dup2(devnull, 2)
            try:
                reason = judge(job["cfg"], job["log"])
            except BaseException as exc:
                reason = "error: the judge failed: %r" % (exc,)
            os.write(w, json.dumps({"reason": reason}).encode())
            os._exit(0)
        os.close(w)
        deadline = time.monotonic() + job["timeout"]
        data, timed_out = b"", False
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                timed_out = True
                break
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
        os.close(r)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if timed_out:
            out = {"reason": "timeout: the tests themselves ran past %g s" % job["timeout"]}
        else:
            try:
                out = json.loads(data)
            except ValueError:
                out = {"reason": "error: the judge died"}
        msg = json.dumps(out).encode()
        os.write(1, len(msg).to_bytes(8, "little") + msg)

serve()
'''


@dataclasses.dataclass(frozen=True)
class TestPlan:
    """How one test suite is recorded and judged (see the module docstring).

    Attributes:
        names: the program's names the tests use (each recorded, then replayed).
        recorded_tests: the tests as the sandboxed run executes them (asserts replaced by
            the calls they make of those names).
        tests: the original tests, executed only by the trusted judge.
        prelude: trusted code the judge runs before the tests (e.g. a HumanEval prompt).
    """

    names: tuple[str, ...]
    recorded_tests: str
    tests: str
    prelude: str = ""


@dataclasses.dataclass(frozen=True)
class CodeVerdict:
    """The outcome of :func:`judge_program`.

    Attributes:
        passed: the trusted judge ran every test to its end.
        reason: one line: ``"all tests passed"``, ``"failed: tests.py line N: ..."``, or the
            sandbox's status and reason (``"timeout: ..."``, ``"violation: ..."``, ...).
        sandbox: the recording run's :class:`~o1search.reward.sandbox.SandboxResult`.
    """

    passed: bool
    reason: str
    sandbox: SandboxResult


def _bound_names(tree: ast.AST) -> set[str]:
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
    return bound


def _params(tree: ast.AST) -> set[str]:
    return {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}


_SCOPED = (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
           ast.NamedExpr)


def _calls_of(expr: ast.expr, callees: set[str]) -> list[ast.expr]:
    """The outermost calls of ``callees`` in ``expr``, in evaluation order."""
    out: list[ast.expr] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in callees:
            out.append(node)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(expr)
    return out


class _StripExpected(ast.NodeTransformer):
    def __init__(self, callees: set[str]) -> None:
        self.callees = callees

    def visit_Assert(self, node: ast.Assert) -> ast.AST | list[ast.stmt]:
        if any(isinstance(n, _SCOPED) for n in ast.walk(node.test)):
            # Calls that use names bound inside the expression cannot be lifted out of it:
            # evaluate the whole expression (its result is ignored; the judge decides).
            return ast.copy_location(ast.Expr(node.test), node)
        calls = _calls_of(node.test, self.callees)
        if not calls:
            return ast.copy_location(ast.Pass(), node)
        return [ast.copy_location(ast.Expr(c), node) for c in calls]


def plan_tests(tests: str, *, prelude: str = "", entry_point: str | None = None) -> TestPlan:
    """Which names the tests need from the program, and the tests the sandbox runs.

    Parameters:
        tests: trusted test code (``assert`` statements, or HumanEval's ``check`` function
            and a call of it).
        prelude: trusted code the program continues (e.g. a HumanEval prompt); names it
            defines are the prelude's own (a program redefining a helper the tests call
            changes nothing), except ``entry_point``.
        entry_point: the function under test; always recorded.

    Raises:
        ValueError: the tests or the prelude are not valid Python, or the tests use no name
            the program could provide.
    """
    try:
        tree = ast.parse(tests, "tests.py")
    except SyntaxError as exc:
        raise ValueError(f"the tests are not valid Python: {exc.msg} (line {exc.lineno})"
                         ) from None
    trusted: set[str] = set()
    if prelude:
        try:
            trusted = _bound_names(ast.parse(prelude, "prelude.py"))
        except SyntaxError as exc:
            raise ValueError(f"the prelude is not valid Python: {exc.msg} (line {exc.lineno})"
                             ) from None
    loads = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
             and isinstance(n.ctx, ast.Load)}
    free = loads - _bound_names(tree) - set(dir(builtins)) - trusted
    if entry_point:
        if not entry_point.isidentifier():
            raise ValueError(f"entry_point must be a name, got {entry_point!r}")
        free.add(entry_point)
    if not free:
        raise ValueError("the tests use no name the program defines (nothing to test)")
    names = tuple(sorted(free))
    stripped = _StripExpected(set(names) | _params(tree)).visit(tree)
    recorded = ast.unparse(ast.fix_missing_locations(stripped))
    return TestPlan(names, recorded, tests, prelude)


class _Judge:
    """A trusted judging process (a fork server: one fresh child per job); one per thread."""

    def __init__(self, memory_bytes: int) -> None:
        self.memory = memory_bytes
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        self.proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _CODEC + _JUDGE,
                                      str(memory_bytes)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, cwd="/", close_fds=True,
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ask(self, job: dict, timeout: float) -> str | None:
        msg = json.dumps(job).encode()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(len(msg).to_bytes(8, "little") + msg)
        self.proc.stdin.flush()
        fd = self.proc.stdout.fileno()
        head = self._read(fd, 8, timeout)
        body = self._read(fd, int.from_bytes(head, "little"), timeout)
        return json.loads(body)["reason"]

    @staticmethod
    def _read(fd: int, n: int, timeout: float) -> bytes:
        buf = b""
        deadline = time.monotonic() + timeout
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()


_local = threading.local()


def _judge(plan: TestPlan, log: bytes, limits: SandboxLimits) -> tuple[bool, str]:
    """Run the original tests against the logged answers in a trusted process that the
    program never touched (this thread's judge server, started on first use)."""
    mem = max(256, limits.memory_mb) << 20
    job = {"cfg": {"names": list(plan.names), "tests": plan.tests, "prelude": plan.prelude},
           "log": log.decode("utf-8", "replace"), "timeout": limits.wall_time_s + 5.0}
    for attempt in range(2):
        judge = getattr(_local, "judge", None)
        if judge is None or not judge.alive() or judge.memory != mem:
            if judge is not None:
                judge.close()
            try:
                judge = _Judge(mem)
            except OSError as exc:
                return False, f"setup_error: could not start the judge: {exc}"
            _local.judge = judge
        try:
            reason = judge.ask(job, job["timeout"] + 5.0)
        except (OSError, EOFError, TimeoutError, ValueError, KeyError):
            judge.close()
            _local.judge = None
            continue
        return (True, "all tests passed") if reason is None else (False, str(reason))
    return False, "error: the judge failed twice"


def judge_program(program: str, plan: TestPlan, limits: SandboxLimits | None = None
                  ) -> CodeVerdict:
    """Record ``program`` answering ``plan``'s tests in the sandbox, then judge the answers.

    Parameters:
        program: the untrusted program's source.
        plan: from :func:`plan_tests`.
        limits: the sandbox's limits for the recording run.

    Returns:
        A :class:`CodeVerdict`; every failure of the program is a verdict, not an exception.
    """
    limits = limits or SandboxLimits()
    harness = _CODEC + _RECORD % {"names": list(plan.names), "log": _LOG}
    res = run_python(harness, files={"solution.py": program, "tests.py": plan.recorded_tests},
                     limits=limits, collect=(_LOG,), collect_limit=_MAX_LOG_BYTES)
    if res.status not in ("ok", "error"):
        return CodeVerdict(False, f"{res.status}: {res.reason}", res)
    passed, reason = _judge(plan, res.files.get(_LOG, b""), limits)
    if not passed and res.status == "error" and reason.startswith("error: ") and \
            "recorded no answer" in reason:
        reason = f"error: {res.reason}"  # the program's own failure says more
    return CodeVerdict(passed, reason, res)
