"""What every task provides: problems in seeded splits, prompts, traces and an exact verdict.

Step traces of the built-in tasks share one small line grammar (ASCII, for a character-level
policy). Lines are separated by the task's step delimiter (``"\\n"``):

``<equation>``               a step, e.g. ``7*8=56``; it must be true unless corrected next.
``check <equation> ok``      a checked step: restates the step just before it, exactly, and
                             that step must be true. Checks change nothing else.
``wait <equation> not <n>``  a correction: the step just before it said ``<lhs>=<n>``, which
                             is wrong; the correction keeps the same left-hand side with the
                             true value. The wrong step is retracted as if never written (its
                             operands are not used up, its value does not exist), so a
                             corrected wrong step is not an error.
``answer <n>``               the final answer; the trace ends here (later text is ignored).

An uncorrected wrong step, a check of a different or wrong step, a correction that does not
follow a wrong step with that left-hand side, or any other line makes the trace wrong.
"""

from __future__ import annotations

import abc
import dataclasses
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from o1search.reward.verifiers import Verifier, VerifyResult

__all__ = ["Problem", "Step", "Task", "TraceError", "parse_trace", "eval_int_expr"]

SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem of a task.

    Attributes:
        id: stable identifier (unique within the task).
        question: the question text; :meth:`Task.prompt` wraps it into the model's prompt.
        answer: the reference final answer, as text.
        solution: a gold step-by-step trace, one string per step, delimiter not included
            (the last step states the answer). Empty when the data has none.
        metadata: task-specific data (e.g. Countdown's ``nums`` and ``target``).
    """

    id: str
    question: str
    answer: str
    solution: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class TraceError(ValueError):
    """A trace that breaks the step grammar or the task's rules (the reason says which)."""


_INT_TOKEN = re.compile(r"\s*(\d+|[-+*/])")
_MAX_DIGITS = 30  # larger numbers never occur in the built-in tasks; bound the work


def eval_int_expr(text: str) -> int:
    """The value of an integer expression of ``+ - * /`` (``*`` and ``/`` bind tighter,
    left to right; ``/`` must divide exactly).

    Raises:
        TraceError: not such an expression, an inexact or zero division, or a number with
            more than 30 digits.
    """
    pos, toks = 0, []
    text = text.strip()
    while pos < len(text):
        m = _INT_TOKEN.match(text, pos)
        if not m:
            raise TraceError(f"cannot read {text!r} as arithmetic")
        toks.append(m.group(1))
        pos = m.end()
    if len(toks) % 2 == 0 or not all(t.isdigit() for t in toks[::2]):
        raise TraceError(f"cannot read {text!r} as arithmetic")
    if any(len(t) > _MAX_DIGITS for t in toks[::2]):
        raise TraceError(f"number too long in {text!r}")
    # Fold * and / first, then + and -.
    terms: list[int] = [int(toks[0])]
    ops: list[str] = []
    for op, num in zip(toks[1::2], toks[2::2]):
        v = int(num)
        if op == "*":
            terms[-1] *= v
        elif op == "/":
            if v == 0 or terms[-1] % v:
                raise TraceError(f"{terms[-1]}/{v} is not an exact division")
            terms[-1] //= v
        else:
            ops.append(op)
            terms.append(v)
    total = terms[0]
    for op, v in zip(ops, terms[1:]):
        total = total + v if op == "+" else total - v
    return total


@dataclasses.dataclass(frozen=True)
class Step:
    """One effective step of a resolved trace: ``lhs = value`` (true by construction)."""

    lhs: str
    value: int


_EQ = r"([0-9+\-*/ ]+?)\s*=\s*(\d+)"
_STEP_RE = re.compile(rf"^{_EQ}$")
_CHECK_RE = re.compile(rf"^check\s+{_EQ}\s+ok$")
_WAIT_RE = re.compile(rf"^wait\s+{_EQ}\s+not\s+(\d+)$")
_ANSWER_RE = re.compile(r"^answer\s+(-?\d+)$")


def _norm(lhs: str) -> str:
    return lhs.replace(" ", "")


def parse_trace(text: str, delimiter: str = "\n") -> tuple[list[Step], str | None]:
    """Resolve a trace (see the module docstring) into its effective steps and answer.

    Parameters:
        text: the completion, steps separated by ``delimiter``.
        delimiter: the step delimiter.

    Returns:
        ``(steps, answer)``: the true steps in order, corrections applied, and the text of
        the ``answer`` line (None when there is none).

    Raises:
        TraceError: with the reason the trace is wrong.
    """
    lines = [ln.strip() for ln in text.split(delimiter)]
    steps: list[Step] = []
    # The last step as written (before any correction): (lhs, stated value, is_true).
    last: tuple[str, int, bool] | None = None
    answer = None

    def settle() -> None:
        # The previous step is final now: it had its chance to be corrected.
        if last is not None and not last[2]:
            raise TraceError(f"wrong step {last[0]}={last[1]} is not corrected")

    for n, line in enumerate(lines, 1):
        if not line:
            continue
        if m := _ANSWER_RE.match(line):
            settle()
            answer = m.group(1)
            break
        if m := _STEP_RE.match(line):
            settle()
            lhs, stated = _norm(m.group(1)), int(m.group(2))
            true = eval_int_expr(lhs)
            last = (lhs, stated, stated == true)
            if stated == true:
                steps.append(Step(lhs, true))
            continue
        if m := _CHECK_RE.match(line):
            lhs, stated = _norm(m.group(1)), int(m.group(2))
            if last is None or (lhs, stated) != last[:2]:
                raise TraceError(f"line {n}: a check must restate the step just before it")
            if not last[2]:
                raise TraceError(f"line {n}: checked a wrong step as ok")
            continue
        if m := _WAIT_RE.match(line):
            lhs, stated, wrong = _norm(m.group(1)), int(m.group(2)), int(m.group(3))
            if last is None or last[0] != lhs or last[1] != wrong:
                raise TraceError(
                    f"line {n}: a correction must follow the step it corrects ({lhs}={wrong})"
                )
            if last[2]:
                raise TraceError(f"line {n}: corrected a step that was right")
            if eval_int_expr(lhs) != stated:
                raise TraceError(f"line {n}: the correction {lhs}={stated} is wrong too")
            steps.append(Step(lhs, stated))
            last = (lhs, stated, True)
            continue
        raise TraceError(f"line {n}: cannot read {line[:60]!r}")
    else:
        settle()
    return steps, answer


def with_behaviours(steps: Sequence[str], rng: random.Random, *, check_prob: float,
                    correction_prob: float) -> list[str]:
    """Gold ``lhs=value`` steps with human-like reasoning behaviours mixed in.

    Each step is, with probability ``correction_prob``, preceded by a wrong value and its
    correction (`wrong_and_correction`) and, with probability ``check_prob``, followed by a
    check line (`check_line`). ``answer ...`` lines pass through unchanged.
    """
    out: list[str] = []
    for step in steps:
        if step.startswith("answer"):
            out.append(step)
            continue
        lhs, value = step.split("=")
        if rng.random() < correction_prob:
            out += wrong_and_correction(lhs, int(value), rng)
        else:
            out.append(step)
        if rng.random() < check_prob:
            out.append(check_line(step))
    return out


def check_line(step: str) -> str:
    """The ``check`` line that confirms ``step`` (``7*8=56`` -> ``check 7*8=56 ok``)."""
    return f"check {step} ok"


def wrong_and_correction(lhs: str, value: int, rng: random.Random) -> list[str]:
    """A plausible wrong step for ``lhs = value`` and the line that corrects it."""
    wrong = value + rng.choice([d for d in (-3, -2, -1, 1, 2, 3, 10) if value + d >= 0])
    return [f"{lhs}={wrong}", f"wait {lhs}={value} not {wrong}"]


class Task(abc.ABC):
    """A reasoning task: problems, prompts, step traces, answers and an exact verdict.

    Subclasses implement :meth:`_make_split` and :meth:`evaluate`; they may override
    :meth:`prompt`, :meth:`extract_answer` and :meth:`demonstration`.
    """

    name: str = "task"
    step_delimiter: str = "\n"

    def __init__(self) -> None:
        self._splits: dict[str, list[Problem]] = {}

    # -- problems ---------------------------------------------------------------------
    @abc.abstractmethod
    def _make_splits(self) -> dict[str, list[Problem]]:
        """Build ``{"train": [...], "test": [...]}`` (deterministically, from the seed)."""

    def problems(self, split: str = "train") -> list[Problem]:
        """The problems of a split (the same list, in the same order, on every call).

        Parameters:
            split: ``"train"`` or ``"test"``; the two never share a question.

        Returns:
            A list of :class:`Problem` (a new list; the problems are shared).

        Raises:
            ValueError: an unknown split name.
        """
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
        if not self._splits:
            self._splits = self._make_splits()
        return list(self._splits[split])

    @property
    def train(self) -> list[Problem]:
        """``problems("train")``."""
        return self.problems("train")

    @property
    def test(self) -> list[Problem]:
        """``problems("test")``."""
        return self.problems("test")

    # -- text -------------------------------------------------------------------------
    def prompt(self, problem: Problem) -> str:
        """The prompt text for ``problem``; it ends with the step delimiter."""
        return problem.question + self.step_delimiter

    def chat_prompt(self, problem: Problem) -> str:
        """The prompt for a chat model (one user turn): by default :meth:`prompt`. Built-in
        tasks whose own prompt is a terse format for the character policy say in words what
        they ask and which answer format they read."""
        return self.prompt(problem)

    def format_completion(self, steps: Sequence[str]) -> str:
        """Join steps into completion text: each step followed by the delimiter."""
        return "".join(s + self.step_delimiter for s in steps)

    def demonstration(self, problem: Problem, rng: random.Random | int | None = None) -> str:
        """A completion that solves ``problem``, for supervised policy initialization.

        The built-in tasks insert reasoning behaviours (checks, corrected wrong steps) with
        the probabilities given to their constructor; a demonstration always verifies.

        Parameters:
            problem: the problem.
            rng: a ``random.Random`` or seed for the behaviours (default: seed 0).

        Returns:
            Completion text (steps, each followed by the delimiter).
        """
        return self.format_completion(problem.solution)

    def extract_answer(self, completion: str) -> str | None:
        """The final answer stated in ``completion``, or None."""
        for line in completion.split(self.step_delimiter):
            m = _ANSWER_RE.match(line.strip())
            if m:
                return m.group(1)
        return None

    # -- verdict ----------------------------------------------------------------------
    @abc.abstractmethod
    def evaluate(self, problem: Problem, completion: str) -> VerifyResult:
        """Judge a completion with a reason.

        Parameters:
            problem: the problem it answers.
            completion: the generated text after the prompt.

        Returns:
            A :class:`VerifyResult` (reward 1.0 when correct, else 0.0).

        Raises:
            TypeError: ``completion`` is not a string.
        """

    def verify(self, problem: Problem, completion: str) -> float:
        """The outcome reward of ``completion``: 1.0 when correct, else 0.0."""
        return self.evaluate(problem, completion).reward

    def verifier(self) -> Verifier:
        """This task's verdict as a :class:`~o1search.reward.verifiers.Verifier` taking
        ``(problem, completion)``."""
        return _TaskVerifier(self)

    def alphabet(self) -> str:
        """Every character prompts and demonstrations of this task may contain, sorted
        (for character-level tokenizers). Empty when unbounded (user data)."""
        return ""


class _TaskVerifier(Verifier):
    def __init__(self, task: Task) -> None:
        self.task = task

    def verify(self, reference: Any, completion: str) -> VerifyResult:
        if not isinstance(reference, Problem):
            raise TypeError(
                f"{self.task.name} verifier needs the Problem as reference, "
                f"got {type(reference).__name__}"
            )
        return self.task.evaluate(reference, completion)


def check_completion_type(completion: Any) -> None:
    """Raise TypeError unless ``completion`` is a string."""
    if not isinstance(completion, str):
        raise TypeError(f"completion must be a str, got {type(completion).__name__}")
