"""Multi-digit arithmetic, one column (one carry) per step.

``add 478 256`` is solved column by column from the units, each step adding the two digits
and the carry in::

    8+6+0=14
    7+5+1=13
    4+2+1=7
    answer 734

``mul 478 6`` multiplies by a one-digit number the same way (``8*6+0=48``, ``7*6+4=46``,
``4*6+4=28``, ``answer 2868``). A missing digit of the shorter number is 0.

The verifier is exact: the answer must be the true result and (with ``check_steps``, the
default) the trace's effective steps must be exactly the column steps above, in order.
Checks and corrections follow :mod:`o1search.tasks.base`.
"""

from __future__ import annotations

import random

from o1search.reward.verifiers import VerifyResult
from o1search.tasks.base import (
    Problem,
    Task,
    TraceError,
    check_completion_type,
    parse_trace,
    with_behaviours,
)

__all__ = ["ArithmeticTask", "column_steps"]

OPS = ("add", "mul", "mixed")


def column_steps(op: str, a: int, b: int) -> list[str]:
    """The gold column steps of ``a + b`` (op ``"add"``) or ``a * b`` with one-digit ``b``
    (op ``"mul"``), units first, as ``lhs=value`` strings; the answer line not included.

    Raises:
        ValueError: a negative operand, an unknown op, or ``b > 9`` for ``"mul"``.
    """
    if a < 0 or b < 0:
        raise ValueError("operands must be non-negative")
    steps, carry = [], 0
    if op == "add":
        da, db = str(a)[::-1], str(b)[::-1]
        for i in range(max(len(da), len(db))):
            x = int(da[i]) if i < len(da) else 0
            y = int(db[i]) if i < len(db) else 0
            s = x + y + carry
            steps.append(f"{x}+{y}+{carry}={s}")
            carry = s // 10
    elif op == "mul":
        if b > 9:
            raise ValueError(f"mul multiplies by one digit; got {b}")
        for ch in str(a)[::-1]:
            s = int(ch) * b + carry
            steps.append(f"{ch}*{b}+{carry}={s}")
            carry = s // 10
    else:
        raise ValueError(f"unknown op {op!r}; use 'add' or 'mul'")
    return steps


class ArithmeticTask(Task):
    """Column addition (and multiplication by one digit) with exact step verification.

    Parameters:
        op: ``"add"``, ``"mul"`` or ``"mixed"`` (half each).
        min_digits, max_digits: digits of the operands (the multiplier of ``mul`` has one).
        n_train, n_test: split sizes (distinct problems; the splits share none).
        seed: generation seed.
        check_steps: require the exact column steps, not only the right answer.
        check_prob, correction_prob: probabilities of ``check`` lines and corrected wrong
            steps in demonstrations.

    Raises:
        ValueError: knobs out of range, or too few distinct problems for the split sizes.
    """

    name = "arithmetic"

    def __init__(
        self,
        *,
        op: str = "add",
        min_digits: int = 2,
        max_digits: int = 4,
        n_train: int = 2000,
        n_test: int = 200,
        seed: int = 0,
        check_steps: bool = True,
        check_prob: float = 0.0,
        correction_prob: float = 0.0,
    ) -> None:
        super().__init__()
        if op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {op!r}")
        if not 1 <= min_digits <= max_digits <= 30:
            raise ValueError(
                f"need 1 <= min_digits <= max_digits <= 30, got {min_digits}, {max_digits}"
            )
        if n_train < 0 or n_test < 0:
            raise ValueError("n_train and n_test must be >= 0")
        for knob, p in (("check_prob", check_prob), ("correction_prob", correction_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{knob} must be a probability in [0, 1], got {p}")
        self.op = op
        self.min_digits = min_digits
        self.max_digits = max_digits
        self.n_train = n_train
        self.n_test = n_test
        self.seed = seed
        self.check_steps = check_steps
        self.check_prob = check_prob
        self.correction_prob = correction_prob

    def _number(self, rng: random.Random) -> int:
        d = rng.randint(self.min_digits, self.max_digits)
        return rng.randint(10 ** (d - 1) if d > 1 else 0, 10**d - 1)

    def _make_splits(self) -> dict[str, list[Problem]]:
        rng = random.Random(f"arithmetic:{self.seed}")
        want = self.n_train + self.n_test
        seen: set[tuple[str, int, int]] = set()
        made: list[tuple[str, int, int]] = []
        misses = 0
        while len(made) < want:
            misses += 1
            # Give up once new problems have become rare: the space is (nearly) exhausted.
            if misses > 20_000:
                raise ValueError(
                    f"could only make {len(made)} distinct arithmetic problems of the {want} "
                    "asked for; lower n_train/n_test or allow more digits"
                )
            op = self.op if self.op != "mixed" else rng.choice(("add", "mul"))
            a = self._number(rng)
            b = self._number(rng) if op == "add" else rng.randint(2, 9)
            if (op, a, b) not in seen:
                seen.add((op, a, b))
                made.append((op, a, b))
                misses = 0
        # Late finds are the rare problems; shuffle so the test split is not biased to them.
        rng.shuffle(made)
        splits: dict[str, list[Problem]] = {}
        for split, part in (("train", made[: self.n_train]), ("test", made[self.n_train :])):
            problems = []
            for i, (op, a, b) in enumerate(part):
                result = a + b if op == "add" else a * b
                problems.append(
                    Problem(
                        id=f"arithmetic-{split}-{i:05d}",
                        question=f"{op} {a} {b}",
                        answer=str(result),
                        solution=(*column_steps(op, a, b), f"answer {result}"),
                        metadata={"op": op, "a": a, "b": b},
                    )
                )
            splits[split] = problems
        return splits

    def demonstration(self, problem: Problem, rng: random.Random | int | None = None) -> str:
        """See :meth:`Task.demonstration`."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng or 0)
        return self.format_completion(with_behaviours(
            problem.solution, rng, check_prob=self.check_prob,
            correction_prob=self.correction_prob))

    def alphabet(self) -> str:
        """See :meth:`Task.alphabet`."""
        return "".join(sorted(set("0123456789+*= \naddmulanswercheckokwaitnot")))

    def chat_prompt(self, problem: Problem) -> str:
        """The problem in words, for a chat model, with the answer format the verifier reads."""
        op, a, b = problem.metadata["op"], problem.metadata["a"], problem.metadata["b"]
        what = f"What is {a} plus {b}?" if op == "add" else f"What is {a} times {b}?"
        return (f"{what} Work it out step by step, then end with a last line of the form "
                "\"The answer is N\".")

    def extract_answer(self, completion: str) -> str | None:
        """The trace's answer line; without ``check_steps``, else the one answer a free-form
        completion states (None for none or a hedge)."""
        answer = super().extract_answer(completion)
        if answer is None and not self.check_steps:
            verdict = _stated_verdict(completion, 0)
            answer = verdict.predicted
        return answer

    def evaluate(self, problem: Problem, completion: str) -> VerifyResult:
        """See :meth:`Task.evaluate`. Without ``check_steps``, a completion that is not a
        column trace (a chat model's words) is judged by the one answer it states ("The
        answer is N", ``\\boxed{N}``, ...): a hedge between several answers is wrong."""
        check_completion_type(completion)
        try:
            meta = problem.metadata
            op, a, b = meta["op"], int(meta["a"]), int(meta["b"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"problem {problem.id!r} is not an arithmetic problem") from exc
        result = a + b if op == "add" else a * b
        try:
            steps, answer = parse_trace(completion, self.step_delimiter)
            if self.check_steps:
                gold = [s.split("=")[0] for s in column_steps(op, a, b)]
                got = [s.lhs for s in steps]
                for k, (g, s) in enumerate(zip(gold, got), 1):
                    if g != s:
                        raise TraceError(f"step {k} should be {g}, got {s}")
                if len(got) != len(gold):
                    raise TraceError(f"{len(got)} column steps, expected {len(gold)}")
        except TraceError as exc:
            if not self.check_steps:
                return _stated_verdict(completion, result)
            return VerifyResult(0.0, False, str(exc), self.extract_answer(completion))
        if answer is None:
            if not self.check_steps:
                return _stated_verdict(completion, result)
            return VerifyResult(0.0, False, "no answer line")
        if int(answer) != result:
            return VerifyResult(0.0, False, f"answer {answer} is not {result}", answer)
        return VerifyResult(1.0, True, "correct answer with valid steps", answer)


def _stated_verdict(completion: str, result: int) -> VerifyResult:
    """The verdict on the answer a free-form completion states (one, an integer)."""
    from o1search.reward.answer_extraction import extract_answers

    answers = extract_answers(completion)
    if not answers:
        return VerifyResult(0.0, False, "no answer stated")
    if len(answers) > 1:
        return VerifyResult(0.0, False, f"several answers stated: {answers[:5]}")
    text = answers[0].strip().rstrip(".").replace(",", "")
    try:
        value = int(text)
    except ValueError:
        return VerifyResult(0.0, False, f"answer {answers[0]!r} is not an integer", answers[0])
    if value != result:
        return VerifyResult(0.0, False, f"answer {value} is not {result}", str(value))
    return VerifyResult(1.0, True, "correct stated answer (steps not checked)", str(value))
