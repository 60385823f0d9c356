"""Outcome verifiers: exact match, math-answer equivalence, code execution in the sandbox."""

from __future__ import annotations

import time

import pytest

from o1search.reward import (
    CodeVerifier,
    ExactMatchVerifier,
    MathAnswerVerifier,
    SandboxLimits,
    VerifyResult,
    extract_final_answer,
    math_equal,
)
from o1search.reward.verifiers import extract_boxed, extract_code
from o1search.tasks import Problem

# (predicted, reference): equal by hand.
EQUAL = [
    ("1/2", r"\frac{1}{2}"),
    ("0.5", r"\frac12"),
    (r"\dfrac{3}{4}", "0.75"),
    ("1.5", "3/2"),
    (r"50\%", "50"),
    (r"2\pi", "6.283185307179586"),
    ("x^2+2x+1", "(x+1)^2"),
    ("sin(x)^2+cos(x)^2", "1"),
    ("(1,2)", "(1, 2)"),
    ("x=3", "3"),
    ("1,000", "1000"),
    (r"3\sqrt3", r"\sqrt{27}"),
    ("90^\\circ", "90"),
    (r"\text{5}", "5"),
    ("$7$", "7"),
    (r"\left(\frac{1}{2}\right)", "0.5"),
    ("2^{10}", "1024"),
    (r"\infty", "oo"),
    ("[1,2)", "[1,2)"),
]
# Equal by hand, but read only by the full LaTeX parser (latex2sympy2_extended).
EQUAL_LATEX = [
    ("50%", "0.5"),
    (r"\sin^2 x+\cos^2 x", "1"),
    (r"\{1,2\}", r"\{2,1\}"),
    (r"\sqrt{2}/2", r"\frac{1}{\sqrt{2}}"),
    ("10!", "3628800"),
]
# (predicted, reference): different by hand.
DIFFERENT = [
    ("7", "8"),
    ("-3", "3"),
    ("1e-7", "0"),
    ("12%", "13%"),
    ("x^2+2x+1", "(x-1)^2"),
    ("(2,1)", "(1,2)"),
    ("[1,2]", "[1,2)"),
    ("-oo", r"\infty"),
    ("abc", "abd"),
    ("", "1"),
    (r"\frac{1}{3}", "0.33"),
]


@pytest.mark.parametrize("pred,ref", EQUAL)
def test_math_equal_accepts_equivalent_answers(pred, ref):
    assert math_equal(pred, ref)
    assert math_equal(ref, pred)


@pytest.mark.parametrize("pred,ref", EQUAL_LATEX)
def test_math_equal_with_the_latex_parser(pred, ref):
    pytest.importorskip("latex2sympy2_extended")
    assert math_equal(pred, ref)
    assert math_equal(ref, pred)


@pytest.mark.parametrize("pred,ref", DIFFERENT)
def test_math_equal_rejects_different_answers(pred, ref):
    assert not math_equal(pred, ref)


@pytest.mark.parametrize(
    "hostile",
    [
        "9^{9^{9^9}}",
        "9**9**9**9",
        "2^{10000000}",
        "100000!",
        "1+" * 500 + "1",
    ],
)
def test_math_equal_is_fast_on_pathological_input(hostile):
    start = time.perf_counter()
    assert not math_equal(hostile, "1")
    assert time.perf_counter() - start < 3.0


def test_math_equal_never_evaluates_code(tmp_path):
    marker = tmp_path / "pwned"
    for text in (
        f"__import__('os').system('touch {marker}')",
        "().__class__.__bases__[0].__subclasses__()",
        f"open('{marker}', 'w')",
        "exec('1')",
    ):
        assert not math_equal(text, "1")
    assert not marker.exists()


def test_extraction():
    assert extract_boxed(r"so \boxed{\frac{1}{2}} and \boxed{3}") == "3"
    assert extract_boxed(r"\boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert extract_boxed(r"\boxed{unclosed") is None
    assert extract_final_answer("work\nThe answer is $\\frac{1}{2}$.") == r"\frac{1}{2}"
    assert extract_final_answer("7*8=56\nanswer 56\n") == "56"
    assert extract_final_answer("Final Answer: 12") == "12"
    assert extract_final_answer("blah\n#### 1,234") == "1,234"
    assert extract_final_answer("no conclusion here") is None


def test_math_answer_verifier():
    v = MathAnswerVerifier()
    r = v("42", r"so the result is \boxed{42}.")
    assert r == VerifyResult(1.0, True, r.reason, "42")
    r = v("42", "answer 41")
    assert (r.reward, r.correct, r.predicted) == (0.0, False, "41")
    # No stated answer: the last number counts, unless turned off.
    assert v("0.5", "first 3 then 1/2").correct
    assert not MathAnswerVerifier(fallback_last_number=False)("0.5", "first 3 then 1/2").correct
    assert v("1", "no numbers at all").reason == "no final answer found"
    # A Problem works as the reference.
    assert v(Problem("p", "q", r"\frac{1}{4}"), "answer 0.25").correct
    with pytest.raises(TypeError):
        v("1", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pair up"):
        v.verify_many(["1", "2"], ["answer 1"])
    assert [r.correct for r in v.verify_many(["1", "2"], ["answer 1", "answer 3"])] == [True, False]


def test_exact_match_verifier():
    v = ExactMatchVerifier()
    assert v("Paris", "I think.\nanswer: Paris").correct
    assert not v("Paris", "answer: paris").correct
    assert ExactMatchVerifier(case_sensitive=False)("Paris", "answer: paris").correct
    assert ExactMatchVerifier(None)("a  b", " a b ").correct
    assert not v("1/2", "answer 0.5").correct  # exact, not mathematical
    assert v("x", "nothing stated").reason == "no final answer found"


# ---------------------------------------------------------------------------- code
TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"
CV = CodeVerifier(SandboxLimits(wall_time_s=3, cpu_time_s=1, memory_mb=256), max_workers=2)


def test_code_verifier_passes_a_correct_program():
    completion = "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```\n"
    r = CV(TESTS, completion)
    assert r.correct and r.reward == 1.0 and r.reason == "all tests passed"
    assert "return a + b" in r.predicted


def test_code_verifier_fails_wrong_and_hostile_programs(tmp_path):
    victim = tmp_path / "victim.txt"
    cases = {
        "def add(a, b):\n    return a - b": "error",
        "def add(a, b)\n    return a + b": "error",  # syntax error
        "def add(a, b):\n    while True: pass": "timeout",
        f"open({str(victim)!r}, 'w').write('x')\ndef add(a, b): return a + b": "violation",
        "import os\nos.system('true')\ndef add(a, b): return a + b": "violation",
        "x = bytearray(2 * 1024**3)\ndef add(a, b): return a + b": "memory",
        # Exiting with status 0 before the tests run must not pass.
        "import sys\nsys.exit(0)": "error",
        "import os\nos._exit(0)": "error",
        "exit()": "error",
    }
    for code, status in cases.items():
        r = CV(TESTS, code)
        assert not r.correct and r.reward == 0.0, (code, r)
        assert r.reason.startswith(status), (code, r.reason)
    assert not victim.exists()


def test_code_verifier_reference_forms_and_batch():
    p = Problem("c1", "write add", "", metadata={"tests": TESTS})
    good = "```py\ndef add(a, b):\n    return a + b\n```"
    bad = "```\ndef add(a, b):\n    return 0\n```"
    results = CV.verify_many([p, TESTS, p], [good, good, bad])
    assert [r.correct for r in results] == [True, True, False]
    with pytest.raises(TypeError, match="test code"):
        CV(123, good)


def test_extract_code():
    assert extract_code("```python\na = 1\n```\ntext\n```python\nb = 2\n```") == "b = 2\n"
    assert extract_code("```js\nx\n```") == "x\n"
    assert extract_code("print(1)") == "print(1)"
