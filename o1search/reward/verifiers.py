"""Outcome verifiers: does a completion's final answer match the reference?

Every verifier is called the same way::

    result = verifier(reference, completion)   # -> VerifyResult(reward, correct, reason, ...)

``reference`` is either the reference itself (an answer string, or test code for
:class:`CodeVerifier`) or any object with an ``answer`` attribute, such as
:class:`o1search.tasks.Problem`. Verifiers never raise on a bad completion: an unreadable or
hostile completion is a result with ``correct=False`` and a reason.
"""

from __future__ import annotations

import abc
import concurrent.futures
import contextlib
import dataclasses
import math
import random
import re
import secrets
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from o1search.reward.sandbox import SandboxLimits, SandboxResult, run_python

__all__ = [
    "CodeVerifier",
    "ExactMatchVerifier",
    "MathAnswerVerifier",
    "VerifyResult",
    "Verifier",
    "extract_boxed",
    "extract_code",
    "extract_final_answer",
    "math_equal",
]


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """The verdict on one completion.

    Attributes:
        reward: the outcome reward (1.0 correct, 0.0 wrong, for the built-in verifiers).
        correct: whether the completion is judged correct.
        reason: a short human explanation (what was compared, or why it failed).
        predicted: the answer extracted from the completion, when there was one.
    """

    reward: float
    correct: bool
    reason: str
    predicted: str | None = None


def _reference_of(reference: Any) -> Any:
    """The reference value: the object itself, or its ``answer`` attribute (a Problem)."""
    if isinstance(reference, str):
        return reference
    if hasattr(reference, "answer"):
        return reference.answer
    return reference


class Verifier(abc.ABC):
    """Base of outcome verifiers: ``verifier(reference, completion) -> VerifyResult``."""

    def __call__(self, reference: Any, completion: str) -> VerifyResult:
        return self.verify(reference, completion)

    @abc.abstractmethod
    def verify(self, reference: Any, completion: str) -> VerifyResult:
        """Judge one completion.

        Parameters:
            reference: the reference answer (or an object with an ``answer`` attribute).
            completion: the model's output text.

        Returns:
            A :class:`VerifyResult`.

        Raises:
            TypeError: ``completion`` is not a string.
        """

    def verify_many(
        self, references: Sequence[Any], completions: Sequence[str]
    ) -> list[VerifyResult]:
        """Judge a batch: ``references[i]`` against ``completions[i]``.

        Raises:
            ValueError: the two sequences differ in length.
        """
        if len(references) != len(completions):
            raise ValueError(
                f"verify_many got {len(references)} references and {len(completions)} "
                "completions; they must pair up one to one"
            )
        return [self.verify(r, c) for r, c in zip(references, completions)]


def _check_completion(completion: Any) -> None:
    if not isinstance(completion, str):
        raise TypeError(f"completion must be a str, got {type(completion).__name__}")


# ------------------------------------------------------------------------------- extraction
_ANSWER_LINE = re.compile(
    r"(?:final\s+answer|answer)\s*(?:is)?\s*[:=]?\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE
)
_GSM8K = re.compile(r"^\s*####\s*(.+?)\s*$", re.MULTILINE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def extract_boxed(text: str) -> str | None:
    r"""The contents of the last ``\boxed{...}`` (or ``\fbox{...}``) in ``text``, braces balanced.

    Returns None when there is none or its braces never close.
    """
    best = None
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            best = text[m.end() : i - 1]
    return best


def extract_final_answer(text: str) -> str | None:
    r"""The final answer a completion states, or None.

    Looks, in order, for the last ``\boxed{...}``, the last ``answer ...`` /
    ``final answer: ...`` / ``the answer is ...`` line, and a GSM8K-style ``#### ...`` line.
    """
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed.strip()
    found = None
    for m in _ANSWER_LINE.finditer(text):
        found = m.group(1)
    if found is None:
        for m in _GSM8K.finditer(text):
            found = m.group(1)
    if found is None:
        return None
    found = found.strip().rstrip(".").strip()
    if len(found) >= 2 and found[0] == found[-1] == "$":
        found = found[1:-1].strip()
    return found or None


def extract_code(text: str) -> str:
    """The program in a completion: the last fenced ```python block, else the last fenced
    block of any language, else the whole text."""
    blocks = re.findall(r"```[ \t]*(\w*)[^\n]*\n(.*?)```", text, flags=re.DOTALL)
    py = [body for lang, body in blocks if lang.lower() in ("python", "py", "python3")]
    if py:
        return py[-1]
    if blocks:
        return blocks[-1][1]
    return text


# ------------------------------------------------------------------------- exact match
class ExactMatchVerifier(Verifier):
    """Correct when the extracted answer equals the reference string.

    Parameters:
        extract: how to find the answer in a completion (default :func:`extract_final_answer`;
            pass ``None`` to compare the whole completion).
        case_sensitive: compare case as well (default True).
        strip_whitespace: collapse runs of whitespace and strip both ends (default True).
    """

    def __init__(
        self,
        extract: Callable[[str], str | None] | None = extract_final_answer,
        *,
        case_sensitive: bool = True,
        strip_whitespace: bool = True,
    ) -> None:
        self.extract = extract
        self.case_sensitive = case_sensitive
        self.strip_whitespace = strip_whitespace

    def _norm(self, s: str) -> str:
        if self.strip_whitespace:
            s = " ".join(s.split())
        return s if self.case_sensitive else s.casefold()

    def verify(self, reference: Any, completion: str) -> VerifyResult:
        """See :meth:`Verifier.verify`."""
        _check_completion(completion)
        gold = str(_reference_of(reference))
        pred = self.extract(completion) if self.extract is not None else completion
        if pred is None:
            return VerifyResult(0.0, False, "no final answer found")
        ok = self._norm(pred) == self._norm(gold)
        why = "matches the reference" if ok else f"{pred!r} != reference {gold!r}"
        return VerifyResult(float(ok), ok, why, pred)


# ------------------------------------------------------------------------- math answers
class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (SIGALRM; main thread on POSIX only).

    Elsewhere the block runs unguarded; callers screen inputs with :func:`_too_costly`
    first, since a signal cannot interrupt one long C-level operation (a huge integer power)
    in any thread either.
    """
    usable = (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and seconds > 0
    )
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise _Timeout()

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_timer = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_timer[0] > 0:  # give the application back its own pending alarm
            signal.setitimer(signal.ITIMER_REAL, *old_timer)


_MAX_EXPR_CHARS = 400


def _group(s: str, i: int) -> str:
    """The exponent starting at s[i]: a balanced {...} or (...) group, else a plain token."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i < len(s) and s[i] in "{(":
        depth, j = 0, i
        while j < len(s):
            depth += {"{": 1, "(": 1, "}": -1, ")": -1}.get(s[j], 0)
            j += 1
            if depth == 0:
                break
        return s[i:j]
    m = re.match(r"[-+]?[\w.]*", s[i:])
    return m.group(0) if m else ""


def _too_costly(s: str) -> bool:
    """Whether sympy could spend unbounded time in C on this text (before any timeout can
    fire): power towers, exponents over 10^5, factorials over 5000, or very long input."""
    if len(s) > _MAX_EXPR_CHARS:
        return True
    for m in re.finditer(r"\^|\*\*", s):
        exp = _group(s, m.end())
        if "^" in exp or "**" in exp or "!" in exp:
            return True
        if any(int(n) > 100_000 for n in re.findall(r"\d+", exp)):
            return True
    if any(int(n) > 5000 for n in re.findall(r"(\d+)\s*!", s)):
        return True
    return bool(re.search(r"factorial|binom|\\prod|\\sum", s))


def _strip_answer(s: str) -> str:
    """Cosmetic clean-up that both the string and the symbolic comparison see."""
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] == "$":
        s = s[1:-1]
    s = re.sub(r"\\(?:displaystyle|left|right|!|,|;|:|quad|qquad)", " ", s)
    s = re.sub(r"\\(?:text|mathrm)\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\^\s*\{?\\circ\}?|°", "", s)  # degrees: 90^\circ == 90
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    # Single-character arguments without braces (\frac12, \sqrt3) are legal LaTeX.
    s = re.sub(r"\\(frac|sqrt)\s*([0-9a-zA-Z])", r"\\\1{\2}", s)
    s = re.sub(r"\\frac\{([^{}]*)\}\s*([0-9a-zA-Z])", r"\\frac{\1}{\2}", s)
    s = re.sub(r"(?<!\\)%", r"\\%", s)
    s = " ".join(s.split()).rstrip(".").strip()
    return s


# Names the plain-text parser accepts besides single-letter symbols. sympy's parse_expr
# ends in eval(), so model text reaches it only when every name is on this list and no
# character outside plain arithmetic occurs (no quotes, dots after letters, underscores).
_PLAIN_NAMES = frozenset(
    "sin cos tan cot sec csc asin acos atan sinh cosh tanh log ln exp sqrt pi oo".split()
)
_PLAIN_CHARS = re.compile(r"[0-9A-Za-z+\-*/^().,\s=]*")


def _parse_plain(s: str) -> Any:
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    plain = re.sub(r"\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"((\1)/(\2))", s)
    plain = re.sub(r"\\sqrt\s*\{([^{}]*)\}", r"sqrt(\1)", plain)
    plain = plain.replace("\\pi", "pi").replace("\\cdot", "*").replace("\\times", "*")
    plain = plain.replace("\\infty", "oo").replace("{", "(").replace("}", ")")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", plain):
        plain = plain.replace(",", "")
    if not _PLAIN_CHARS.fullmatch(plain) or plain.count("=") > 1:
        return None
    names = re.findall(r"[A-Za-z]+", plain)
    if any(len(n) > 1 and n not in _PLAIN_NAMES for n in names):
        return None
    if re.search(r"[A-Za-z)]\s*\.", plain):  # attribute access, not a decimal point
        return None
    if "=" in plain:  # x = 3
        lhs, rhs = plain.split("=")
        plain = f"Eq({lhs or 0}, {rhs or 0})"
    try:
        return parse_expr(
            plain,
            transformations=standard_transformations
            + (convert_xor, implicit_multiplication_application),
            evaluate=True,
        )
    except Exception:  # SyntaxError, TokenError, TypeError...: not readable maths
        return None


def _parse(s: str) -> Any:
    """A sympy object for an answer string, or None when it is not maths we can read.

    Text without backslashes is read as plain maths first (``sin(x)^2``, ``2x+1``), LaTeX
    by ``latex2sympy2_extended`` when it is installed (a parser, no eval).
    """
    try:
        from latex2sympy2_extended import latex2sympy
    except ImportError:  # pragma: no cover - depends on the environment
        latex2sympy = None
    if "\\" not in s:
        e = _parse_plain(s)
        if e is not None:
            return e
    if latex2sympy is not None:
        try:
            return latex2sympy(s)
        except Exception:  # the parser raises many types; any failure means "not LaTeX maths"
            pass
    return _parse_plain(s) if "\\" in s else None


def _unwrap(e: Any) -> Any:
    """``x = 3`` answers ``3``; a one-element tuple/list is its element."""
    import sympy

    if isinstance(e, sympy.Eq) and isinstance(e.lhs, sympy.Symbol):
        return e.rhs
    if isinstance(e, (tuple, list)) and len(e) == 1:
        return e[0]
    return e


def _sym_equal(a: Any, b: Any, rel_tol: float) -> bool:
    import sympy

    a, b = _unwrap(a), _unwrap(b)
    if isinstance(a, (tuple, list, sympy.Tuple)) and isinstance(b, (tuple, list, sympy.Tuple)):
        return len(a) == len(b) and all(_sym_equal(x, y, rel_tol) for x, y in zip(a, b))
    if isinstance(a, sympy.FiniteSet) and isinstance(b, sympy.FiniteSet):
        if len(a) != len(b):
            return False
        rest = list(b)
        for x in a:  # sets: each element of a matches a distinct element of b
            hit = next((i for i, y in enumerate(rest) if _sym_equal(x, y, rel_tol)), None)
            if hit is None:
                return False
            rest.pop(hit)
        return True
    if isinstance(a, sympy.Interval) and isinstance(b, sympy.Interval):
        return (
            a.left_open == b.left_open
            and a.right_open == b.right_open
            and _sym_equal(a.start, b.start, rel_tol)
            and _sym_equal(a.end, b.end, rel_tol)
        )
    if isinstance(a, sympy.Eq) and isinstance(b, sympy.Eq):
        return _sym_equal(a.lhs - a.rhs, b.lhs - b.rhs, rel_tol) or _sym_equal(
            a.lhs - a.rhs, b.rhs - b.lhs, rel_tol
        )
    if not (isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr)):
        try:
            return bool(a == b)
        except Exception:
            return False
    if a == b:
        return True
    free = sorted(a.free_symbols | b.free_symbols, key=str)
    if not free:
        return _close(a, b, rel_tol)
    # Symbolic: equal values at random points is strong evidence; simplify confirms.
    rng = random.Random(0)
    for _ in range(5):
        point = {s: sympy.Rational(rng.randint(1, 97), rng.randint(1, 13)) for s in free}
        if not _close(a.subs(point), b.subs(point), rel_tol):
            return False
    return bool(sympy.simplify(a - b) == 0)


def _close(a: Any, b: Any, rel_tol: float) -> bool:
    import sympy

    try:
        # doit(): the LaTeX parser leaves some products unevaluated (50\% -> 50*(1/100)).
        va, vb = complex(sympy.N(a.doit(), 30)), complex(sympy.N(b.doit(), 30))
    except (TypeError, ValueError, OverflowError, AttributeError):
        return False
    if any(math.isnan(v.real) or math.isnan(v.imag) for v in (va, vb)):
        return False
    if va == vb:  # also covers equal infinities
        return True
    if any(math.isinf(v.real) or math.isinf(v.imag) for v in (va, vb)):
        return False
    return abs(va - vb) <= rel_tol * max(abs(va), abs(vb), 1e-12) or abs(va - vb) < 1e-12


def math_equal(
    predicted: str, reference: str, *, rel_tol: float = 1e-6, timeout_s: float = 2.0
) -> bool:
    r"""Whether two math answers are equivalent.

    Equal strings (after cosmetic clean-up: ``$``, ``\left``/``\right``, ``\text{}``,
    degrees) are equal; otherwise both are parsed (LaTeX through ``latex2sympy2_extended``
    when installed, else sympy's parser with ``\frac``/``\sqrt``/``\pi`` translated) and
    compared: numbers to ``rel_tol``, symbolic expressions at random points and then by
    ``sympy.simplify`` under a ``timeout_s`` guard; tuples in order, sets in any order,
    intervals with their ends; ``x = 3`` counts as ``3``; ``50\%`` equals both ``50`` and
    ``0.5``. Inputs that would make sympy build astronomically large numbers (power towers,
    big factorials) or that are longer than 400 characters are compared as strings only.

    Parameters:
        predicted: the extracted answer of a completion.
        reference: the reference answer.
        rel_tol: relative tolerance of numeric comparison.
        timeout_s: time allowed for parsing and comparison (enforced in the main thread).

    Returns:
        True when judged equivalent.
    """
    p, r = _strip_answer(str(predicted)), _strip_answer(str(reference))
    if not p or not r:
        return False
    if p == r:
        return True
    candidates = [(p, r)]
    pct = re.compile(r"\s*\\?%\s*$")
    if pct.search(p) or pct.search(r):  # 50% vs 50: the MATH convention drops the sign
        candidates.append((pct.sub("", p), pct.sub("", r)))
    for x, y in candidates:
        if x == y:
            return True
        if _too_costly(x) or _too_costly(y):
            continue
        try:
            with _time_limit(timeout_s):
                ex, ey = _parse(x), _parse(y)
                if ex is not None and ey is not None and _sym_equal(ex, ey, rel_tol):
                    return True
        except _Timeout:
            continue
        except (RecursionError, MemoryError, ArithmeticError, TypeError, ValueError,
                AttributeError, NotImplementedError):
            continue
    return False


class MathAnswerVerifier(Verifier):
    r"""Correct when the completion's final answer is mathematically equal to the reference.

    The answer is taken with :func:`extract_final_answer` (``\boxed{}``, ``answer ...``,
    ``#### ...``); when none is stated and ``fallback_last_number`` is set, the last number
    in the completion is used. Equality is :func:`math_equal`.

    Parameters:
        rel_tol: relative tolerance of numeric comparison.
        timeout_s: time limit of one comparison (enforced in the main thread).
        fallback_last_number: use the last number when no answer is stated (default True).
    """

    def __init__(
        self, *, rel_tol: float = 1e-6, timeout_s: float = 2.0, fallback_last_number: bool = True
    ) -> None:
        if not rel_tol >= 0:
            raise ValueError(f"rel_tol must be >= 0, got {rel_tol}")
        self.rel_tol = rel_tol
        self.timeout_s = timeout_s
        self.fallback_last_number = fallback_last_number

    def extract(self, completion: str) -> str | None:
        """The answer this verifier reads from a completion, or None."""
        pred = extract_final_answer(completion)
        if pred is None and self.fallback_last_number:
            nums = _NUMBER.findall(completion)
            pred = nums[-1] if nums else None
        return pred

    def verify(self, reference: Any, completion: str) -> VerifyResult:
        """See :meth:`Verifier.verify`."""
        _check_completion(completion)
        gold = str(_reference_of(reference))
        pred = self.extract(completion)
        if pred is None:
            return VerifyResult(0.0, False, "no final answer found")
        ok = math_equal(pred, gold, rel_tol=self.rel_tol, timeout_s=self.timeout_s)
        why = "equivalent to the reference" if ok else f"{pred!r} is not equal to {gold!r}"
        return VerifyResult(float(ok), ok, why, pred)


# ------------------------------------------------------------------------- code
class CodeVerifier(Verifier):
    """Correct when the completion's program passes the reference's tests in the sandbox.

    The reference is test code (typically ``assert`` statements) appended after the
    program, or an object whose ``metadata["tests"]`` or ``answer`` holds it. The program is
    :func:`extract_code` of the completion. The run happens in
    :func:`o1search.reward.sandbox.run_python` with ``limits``; infinite loops, crashes,
    forbidden actions and failed asserts all give reward 0 with the sandbox's reason.

    Parameters:
        limits: sandbox limits per run (default: 5 s wall, 5 s CPU, 512 MiB).
        max_workers: parallel sandbox runs in :meth:`verify_many`.
    """

    def __init__(self, limits: SandboxLimits | None = None, *, max_workers: int = 2) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.limits = limits or SandboxLimits(wall_time_s=5.0, cpu_time_s=5.0)
        self.max_workers = max_workers

    @staticmethod
    def _tests_of(reference: Any) -> str:
        meta = getattr(reference, "metadata", None)
        if isinstance(meta, dict) and isinstance(meta.get("tests"), str):
            return meta["tests"]
        tests = _reference_of(reference)
        if not isinstance(tests, str):
            raise TypeError(
                "CodeVerifier's reference must be test code (str) or have metadata['tests'] "
                f"or an answer that is; got {type(tests).__name__}"
            )
        return tests

    def run(self, reference: Any, completion: str) -> tuple[SandboxResult, bool]:
        """Run the completion's program, then the reference's tests, in the sandbox.

        Returns:
            ``(result, tests_finished)``: the raw sandbox result, and whether the tests ran
            to their end. The harness prints a one-time token, read from stdin before the
            program starts, after the last test; a program that exits early (``sys.exit``,
            ``os._exit``) never prints it, so it cannot pass without running the tests.
        """
        _check_completion(completion)
        token = secrets.token_hex(16)
        harness = (
            "import sys\n"
            "def _o1search_run(program, tests):\n"
            "    token = sys.stdin.readline().strip()\n"
            "    scope = {'__name__': '__main__'}\n"
            "    exec(compile(program, 'solution.py', 'exec'), scope)\n"
            "    exec(compile(tests, 'tests.py', 'exec'), scope)\n"
            "    sys.stdout.flush()\n"
            "    sys.stdout.write('\\n' + token + '\\n')\n"
            f"_o1search_run({extract_code(completion)!r}, {self._tests_of(reference)!r})\n"
        )
        res = run_python(harness, stdin=token + "\n", limits=self.limits)
        finished = res.ok and res.stdout.rstrip("\n").endswith(token)
        return res, finished

    def verify(self, reference: Any, completion: str) -> VerifyResult:
        """See :meth:`Verifier.verify`."""
        res, finished = self.run(reference, completion)
        code = extract_code(completion)
        if finished:
            return VerifyResult(1.0, True, "all tests passed", code)
        if res.ok:
            return VerifyResult(0.0, False, "error: the program exited before the tests ran", code)
        return VerifyResult(0.0, False, f"{res.status}: {res.reason}", code)

    def verify_many(
        self, references: Sequence[Any], completions: Sequence[str]
    ) -> list[VerifyResult]:
        """Judge a batch, running up to ``max_workers`` sandboxes at a time."""
        if len(references) != len(completions):
            raise ValueError(
                f"verify_many got {len(references)} references and {len(completions)} "
                "completions; they must pair up one to one"
            )
        if self.max_workers == 1 or len(completions) <= 1:
            return [self.verify(r, c) for r, c in zip(references, completions)]
        with concurrent.futures.ThreadPoolExecutor(self.max_workers) as pool:
            return list(pool.map(self.verify, references, completions))
