"""Outcome verifiers: does a completion's final answer match the reference?

Every verifier is called the same way::

    result = verifier(reference, completion)   # -> VerifyResult(reward, correct, reason, ...)

``reference`` is either the reference itself (an answer string, or test code for
:class:`CodeVerifier`) or any object with an ``answer`` attribute, such as
:class:`o1search.tasks.Problem`. Verifiers never raise on a bad completion: an unreadable or
hostile completion is a result with ``correct=False`` and a reason.

Reading the answer out of a completion lives in :mod:`o1search.reward.answer_extraction`, math
answer equivalence in :mod:`o1search.reward.math_equivalence`; their public names are
importable from here too.
"""

from __future__ import annotations

import abc
import concurrent.futures
import dataclasses
import numbers
import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

from o1search.reward.answer_extraction import (
    extract_answers,
    extract_boxed,
    extract_code,
    extract_final_answer,
)
from o1search.reward.math_equivalence import math_equal
from o1search.reward.code_verdict import CodeVerdict, TestPlan, judge_program, plan_tests
from o1search.reward.sandbox import SandboxLimits

__all__ = [
    "CodeVerifier",
    "ExactMatchVerifier",
    "MathAnswerVerifier",
    "VerifyResult",
    "Verifier",
    "extract_answers",
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
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_SENTENCE_BREAK = re.compile(r"[.!?](?=\s)|\n")
_HEDGE = re.compile(r"\b(?:or|maybe|perhaps|possibly|probably|either)\b", re.IGNORECASE)
_MIN_ECHO_CHARS = 16


def _math_reference(reference: Any) -> str:
    gold = _reference_of(reference)
    if isinstance(gold, bool) or not isinstance(gold, (str, numbers.Number)):
        raise TypeError(
            "MathAnswerVerifier's reference must be an answer (str or number) or have an "
            f"answer attribute that is; got {type(gold).__name__}"
        )
    return str(gold).strip()


class MathAnswerVerifier(Verifier):
    r"""Correct when the completion's final answer is mathematically equal to the reference.

    Reading: :func:`extract_answers` (every ``\boxed{}``; else the last ``<answer>`` tag,
    ``#### ...`` line or answer statement); when none is stated and ``fallback_last_number``
    is set, the last number in the completion. Equality: :func:`math_equal`, which is
    math-verify except where that was measured wrong (see
    :mod:`o1search.reward.math_equivalence`).

    Rules against a policy that optimises this reward:

    - **Alternatives are one answer, a set.** Several different boxes
      (``\boxed{3}\boxed{4}``), ``the answer is 3 or 4``, ``42 or maybe 43``, an answer
      listing every candidate: all are read as the set of the alternatives, which equals
      only a reference that is that set (``3, 4``), never ``3`` or ``42``. Without a stated
      answer, a last sentence that hedges (``or``, ``maybe``, ``perhaps``...) between numbers
      gives all its numbers. Boxes that repeat one answer count once.
    - **Only the completion's own answer counts.** When the reference carries its question
      (a :class:`~o1search.tasks.Problem`) and the completion repeats it (at least 16
      characters), reading starts after the last repetition, so an echo that states the
      reference cannot answer for the completion. A later answer statement replaces an
      earlier one (self-correction).
    - **Text is not a verdict.** ``VERDICT: correct`` or ``[[CORRECT]]`` are words; only the
      extracted answer is compared.
    - **Bounded work.** Every comparison has ``timeout_s``, in any thread; answers that
      could run unbounded in C are compared as strings.

    Parameters:
        rel_tol: numeric tolerance (see :func:`math_equal`).
        timeout_s: time limit of one comparison, in seconds (> 0).
        fallback_last_number: use the last number when no answer is stated (default True).

    Raises:
        ValueError: ``rel_tol`` < 0 or ``timeout_s`` <= 0.
    """

    def __init__(
        self, *, rel_tol: float = 1e-6, timeout_s: float = 2.0, fallback_last_number: bool = True
    ) -> None:
        if not rel_tol >= 0:
            raise ValueError(f"rel_tol must be >= 0, got {rel_tol}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.rel_tol = rel_tol
        self.timeout_s = timeout_s
        self.fallback_last_number = fallback_last_number

    def _last_numbers(self, completion: str) -> list[str]:
        """The last number, or every number of a last sentence that hedges between them."""
        nums = list(_NUMBER.finditer(completion))
        if not nums:
            return []
        last = nums[-1]
        breaks = [m.end() for m in _SENTENCE_BREAK.finditer(completion, 0, last.start())]
        begin = breaks[-1] if breaks else 0
        end_m = _SENTENCE_BREAK.search(completion, last.end())
        sentence = completion[begin : end_m.start() if end_m else len(completion)]
        found = [m.group().rstrip(",") for m in nums if begin <= m.start() < last.end()]
        if len(set(found)) > 1 and _HEDGE.search(sentence):
            return list(dict.fromkeys(found))
        return [last.group().rstrip(",")]

    def extract(self, completion: str) -> str | None:
        """The answer this verifier reads from a completion (alternatives joined by
        ``", "``), or None.

        Raises:
            TypeError: ``completion`` is not a string.
        """
        _check_completion(completion)
        answers = extract_answers(completion)
        if not answers and self.fallback_last_number:
            answers = self._last_numbers(completion)
        return ", ".join(answers) if answers else None

    def verify(self, reference: Any, completion: str) -> VerifyResult:
        """See :meth:`Verifier.verify`.

        An empty reference answer (a blank record in user data) matches nothing: the result
        is wrong with that reason, so one bad record does not stop a training run.

        Raises:
            TypeError: ``completion`` is not a string, or the reference is not an answer.
        """
        _check_completion(completion)
        gold = _math_reference(reference)
        if not gold:
            return VerifyResult(0.0, False, "the reference answer is empty")
        question = getattr(reference, "question", None)
        if isinstance(question, str) and len(question.strip()) >= _MIN_ECHO_CHARS:
            at = completion.rfind(question.strip())
            if at >= 0:
                completion = completion[at + len(question.strip()) :]
        pred = self.extract(completion)
        if pred is None:
            return VerifyResult(0.0, False, "no final answer found")
        ok = math_equal(pred, gold, rel_tol=self.rel_tol, timeout_s=self.timeout_s)
        why = "equivalent to the reference" if ok else f"{pred!r} is not equal to {gold!r}"
        return VerifyResult(float(ok), ok, why, pred)


# ------------------------------------------------------------------------- code
@functools.lru_cache(maxsize=4096)
def _cached_plan(tests: str, prelude: str, entry_point: str | None) -> TestPlan:
    return plan_tests(tests, prelude=prelude, entry_point=entry_point)


class CodeVerifier(Verifier):
    """Correct when the completion's program passes the reference's tests in the sandbox.

    The reference is test code (typically ``assert`` statements), or an object whose
    ``metadata["tests"]`` or ``answer`` holds it (``metadata["entry_point"]`` and
    ``metadata["prelude"]``, trusted code the program continues, are used when present). The
    program is :func:`extract_code` of the completion. It runs in
    :func:`o1search.reward.sandbox.run_python` with ``limits``, which only records its
    answers; a separate trusted process runs the tests against them
    (:mod:`o1search.reward.code_verdict`). Infinite loops, crashes, forbidden actions, failed
    asserts and answers that are not plain data all give reward 0 with the reason.

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

    @staticmethod
    def _plan_of(reference: Any) -> TestPlan:
        meta = getattr(reference, "metadata", None)
        meta = meta if isinstance(meta, dict) else {}
        prelude = meta.get("prelude") if isinstance(meta.get("prelude"), str) else ""
        entry = meta.get("entry_point") if isinstance(meta.get("entry_point"), str) else None
        return _cached_plan(CodeVerifier._tests_of(reference), prelude, entry)

    def run(self, reference: Any, completion: str) -> CodeVerdict:
        """Record the completion's program answering the reference's tests in the sandbox,
        then judge the answers in a separate trusted process (see
        :mod:`o1search.reward.code_verdict` for why the verdict cannot be forged).

        Raises:
            TypeError: a reference without test code, a completion that is not a string.
            ValueError: test code that is not valid Python.
        """
        _check_completion(completion)
        return judge_program(extract_code(completion), self._plan_of(reference), self.limits)

    def verify(self, reference: Any, completion: str) -> VerifyResult:
        """See :meth:`Verifier.verify`."""
        verdict = self.run(reference, completion)
        return VerifyResult(float(verdict.passed), verdict.passed, verdict.reason,
                            extract_code(completion))

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
