"""Whether two math answers are equivalent: :func:`math_equal`.

Cosmetic clean-up, then parsing into sympy (plain maths through a screened ``parse_expr``,
LaTeX through ``latex2sympy2_extended`` when installed) and comparison (numbers to a
tolerance, expressions at random points and by ``simplify``, tuples, sets, intervals,
equations), under a time limit and a screen for inputs sympy cannot bound.
"""

from __future__ import annotations

import contextlib
import math
import random
import re
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["math_equal"]


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
