r"""Whether two math answers are equivalent: :func:`math_equal`.

Equality is decided by Hugging Face's ``math-verify`` (``math_verify.parse`` of each answer
inside ``\boxed{}``, then ``math_verify.verify`` with the reference as gold): LaTeX,
fractions against decimals, percentages, sets in any order, tuples, intervals, equations
(``x = 3`` answers ``3``), units in ``\text{}``. The project's own code remains only where
math-verify 0.9.0 was measured to be wrong; each case has a test in
``python_tests/test_verifiers.py``:

1. **Inputs that explode in C.** ``2^{10^{12}}``-like exponents, power towers and big
   factorials are arithmetic that no signal interrupts, and ``"(" * 2000 + "1" + ")" * 2000``
   kept ``math_verify.parse`` busy for over 30 s. :func:`_too_costly` screens such text (and
   anything over 400 characters) first; it is then compared as a string only.
2. **The time limit.** math-verify's own timeout is ``signal.alarm``: whole seconds, it
   cancels an alarm the application had set, and it raises ValueError off the main thread.
   Its work is slow on small hostile input (``\frac`` nested 16 deep against ``1`` ran past
   3 s in ``verify``), so math-verify runs with its timeouts off, under
   :func:`_call_with_limit`: an interval timer in the main thread (fractions of a second,
   the caller's own alarm given back), a watchdog thread elsewhere.
3. **Plain-text (sympy) notation.** math-verify reads ``sin(x)^2+cos(x)^2`` as
   ``s*i*n(x)**2 + ...`` and ``oo`` as ``o*o``, so ``sin(x)^2+cos(x)^2 = 1`` and
   ``oo = \infty`` came out unequal. When math-verify says "unequal" and an answer is plain
   text naming sympy functions or ``oo``, the screened sympy parser :func:`_parse_plain`
   decides instead.
4. **Thousands grouped by spaces.** ``1 234`` was read as 235; the spaces are removed first.
5. **A trailing full stop.** ``12.`` did not parse at all; it is dropped first.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import numbers
import random
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["math_equal"]


class _Timeout(BaseException):
    """Raised by the timer. A BaseException so that the many ``except Exception`` clauses
    in math-verify and sympy cannot swallow it and carry on past the limit."""


@contextlib.contextmanager
def _interval_timer(seconds: float) -> Iterator[None]:
    """Raise :class:`_Timeout` in the block after ``seconds`` (SIGALRM; main thread only).

    The handler raises again every 50 ms until the block exits, should a bare ``except:``
    swallow the first one; an alarm the application had pending is given back, less the
    time spent here.
    """
    state = {"active": True}

    def on_alarm(signum: int, frame: Any) -> None:
        if state["active"]:
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            raise _Timeout()

    start = time.monotonic()
    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_timer = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        while True:  # the timer may fire while we disarm it; once inactive it cannot
            try:
                state["active"] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
                break
            except _Timeout:
                continue
        signal.signal(signal.SIGALRM, old_handler)
        if old_timer[0] > 0:
            left = max(old_timer[0] - (time.monotonic() - start), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, old_timer[1])


def _call_with_limit(fn: Callable[[], Any], seconds: float) -> tuple[bool, Any]:
    """``(True, fn())`` if ``fn`` finishes within ``seconds``, else ``(False, None)``.

    In the main thread an interval timer interrupts ``fn``. Signals reach only the main
    thread, so elsewhere ``fn`` runs in a daemon watchdog thread that is abandoned at the
    limit: the caller gets its answer in time, but the abandoned work runs on in the
    background until it ends (inputs that could run unbounded are screened out before).
    Exceptions of ``fn`` propagate.
    """
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        try:
            with _interval_timer(seconds):
                return True, fn()
        except _Timeout:
            return False, None
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    worker = threading.Thread(target=run, name="o1search-math-equal", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        return False, None
    if "error" in box:
        raise box["error"]
    return True, box.get("value")


class _DropDisabledTimeoutWarning(logging.Filter):
    """math-verify warns once that its timeout is off; here the limit is ours (case 2)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropDisabledTimeoutWarning())


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


_CHAINED_POWER = re.compile(r"(?:\^|\*\*)\s*[\w.]+\s*(?:\^|\*\*)")


def _too_costly(s: str, max_chars: int | None = _MAX_EXPR_CHARS) -> bool:
    """Whether sympy could spend unbounded time in C on this text (before any timeout can
    fire): power towers, exponents over 10^5, factorials over 5000, or input longer than
    ``max_chars`` (None: any length)."""
    if max_chars is not None and len(s) > max_chars:
        return True
    if _CHAINED_POWER.search(s):  # 9**9**9, 2^3^4: right-associative towers
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



def _clean(s: str) -> str:
    """The clean-up math-verify needs before it sees an answer (cases 4 and 5)."""
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] == "$":
        s = s.strip("$").strip()
    s = re.sub(r"(?<=\d)\s*\.$", "", s)  # "12." is 12
    if re.fullmatch(r"-?\d{1,3}(?:(?: |\\,|\\ |~)\d{3})+(?:\.\d+)?", s):  # "1 234" is 1234
        s = re.sub(r" |\\,|\\ |~", "", s)
    return s


@functools.cache
def _load_math_verify() -> Any:
    """math-verify, imported (about a second) and its patterns compiled, outside any time
    limit: an import cut off by the timer, or in an abandoned thread, would cost the verdict
    of an honest first answer."""
    import math_verify

    math_verify.parse("\\boxed{1}", parsing_timeout=None)
    return math_verify


def _mv_equal(predicted: str, reference: str, float_rounding: int) -> bool:
    """math-verify's verdict, the reference as gold (verify is not symmetric)."""
    import math_verify

    gold = math_verify.parse("\\boxed{" + reference + "}", parsing_timeout=None)
    target = math_verify.parse("\\boxed{" + predicted + "}", parsing_timeout=None)
    if not gold or not target:
        return False
    return bool(
        math_verify.verify(gold, target, float_rounding=float_rounding, timeout_seconds=None)
    )


_DECIMAL = re.compile(r"\d*\.\d")  # a number written with a decimal point

_SYMPY_NAME = re.compile(r"(?<![A-Za-z\\])(?:oo|[a-z]{2,5})(?![A-Za-z])")


def _sympy_notation(s: str) -> bool:
    """Plain text with names math-verify reads letter by letter (case 3)."""
    return "\\" not in s and any(
        n in _PLAIN_NAMES for n in _SYMPY_NAME.findall(s)
    )


def _plain_equal(predicted: str, reference: str, rel_tol: float) -> bool:
    """The project's own comparison, for sympy notation only (case 3)."""
    if not (_sympy_notation(predicted) or _sympy_notation(reference)):
        return False
    a, b = _parse_plain(_strip_answer(predicted)), _parse_plain(_strip_answer(reference))
    return a is not None and b is not None and _sym_equal(a, b, rel_tol)


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




def _as_text(value: Any, name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"{name} must be a str (or a number), got {type(value).__name__}")


def math_equal(
    predicted: str, reference: str, *, rel_tol: float = 1e-6, timeout_s: float = 2.0
) -> bool:
    r"""Whether two math answers are equivalent.

    Equal strings (after stripping ``$...$`` and a final full stop) are equal. Otherwise
    math-verify decides (see the module docstring): ``\frac12 = 0.5``, ``50\% = 0.5 = 50``,
    ``\{1,2\} = \{2,1\}``, ``x = 3`` answers ``3``, ``10\text{ cm} = 10``, ``[1,2) \ne
    [1,2]``. The project's own code overrides it only where it was measured wrong: text
    that could make sympy run unbounded in C (power towers, exponents over 10^5, factorials
    over 5000, over 400 characters) is compared as a string only; plain-text sympy
    notation (``sin(x)^2+cos(x)^2``, ``oo``) is read by a screened sympy parser; ``1 234``
    means 1234. Nothing is ever evaluated as Python.

    Parameters:
        predicted: the extracted answer of a completion (a number is turned into text).
        reference: the reference answer (likewise).
        rel_tol: numeric tolerance: answers with a decimal point are compared rounded to
            ``-log10(rel_tol)`` decimals (math-verify's ``float_rounding``), plain-text
            ones to this relative tolerance.
        timeout_s: time allowed for parsing and comparison, in any thread (see
            :func:`_call_with_limit`); a comparison that runs out is "not equal".

    Returns:
        True when judged equivalent.

    Raises:
        TypeError: an answer is neither a string nor a number.
        ValueError: ``rel_tol`` is negative or ``timeout_s`` is not positive.
    """
    p, r = _clean(_as_text(predicted, "predicted")), _clean(_as_text(reference, "reference"))
    if not rel_tol >= 0:
        raise ValueError(f"rel_tol must be >= 0, got {rel_tol}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    if not p or not r:
        return False
    if p == r:
        return True
    if _too_costly(p) or _too_costly(r):
        return False
    _load_math_verify()
    float_rounding = 15 if rel_tol == 0 else min(15, max(0, round(-math.log10(rel_tol))))
    if _DECIMAL.search(p) and not _DECIMAL.search(r):
        # The tolerance is for golds written as decimals; an exact gold (an integer, a
        # fraction, a surd) is matched by a decimal only to double precision: 0.333333 is
        # not 1/3, 0.5 is 1/2.
        float_rounding = 15

    def compare() -> bool:
        try:
            if _mv_equal(p, r, float_rounding):
                return True
        except (RecursionError, MemoryError):
            return False
        try:
            return _plain_equal(p, r, rel_tol)
        except (RecursionError, MemoryError, ArithmeticError, TypeError, ValueError,
                AttributeError, NotImplementedError):
            return False

    done, equal = _call_with_limit(compare, timeout_s)
    return bool(done and equal)
