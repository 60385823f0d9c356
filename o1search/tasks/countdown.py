"""Countdown: reach a target from a few numbers with + - * /, one operation per step.

Prompt ``nums 3 7 8 target 60`` then a trace such as::

    7*8=56
    56+3=59        (this one would be wrong for target 60; the gold trace reaches it)
    answer 60

Rules the verifier enforces: every step is ``a op b = c`` with true integer arithmetic
(``/`` exact, no negative results), each number is used at most as often as it is available
(the given numbers plus the results of earlier steps), and the answer equals the target and
is the value of the last step. Checks and corrections follow :mod:`o1search.tasks.base`.

With ``use_all=True`` (the rule of reasoning-gym's countdown and most RL work on Countdown)
every given number must also be used exactly once: the steps form one expression, so that
after the last step the target is the only value left unused. The generator's gold traces
always combine all the numbers, so they satisfy both rules.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from o1search.reward.verifiers import VerifyResult
from o1search.tasks.base import (
    Problem,
    Task,
    TraceError,
    check_completion_type,
    parse_trace,
    with_behaviours,
)

__all__ = ["CountdownTask", "broad_problems", "problem_key"]

_BINARY = re.compile(r"^(\d+)([-+*/])(\d+)$")


def _apply(a: int, op: str, b: int) -> int | None:
    """a op b when it is a legal Countdown step (non-negative, exact division), else None."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b if a >= b else None
    if op == "*":
        return a * b
    if b == 0 or a % b:
        return None
    return a // b


class CountdownTask(Task):
    """Countdown problems with exact step verification.

    Parameters:
        num_count: how many numbers a problem gives (2 to 6; default 3).
        min_number, max_number: range of the given numbers (default 1..15).
        max_value: largest intermediate value (and target) the generator builds (default 100).
        min_target: smallest target (default 10, so that targets take some work).
        n_train, n_test: split sizes (distinct problems; the splits share none).
        seed: generation seed; equal knobs and seed give equal splits.
        check_prob: probability that a demonstration step is followed by a ``check`` line.
        correction_prob: probability that a demonstration step is first written wrong and
            then corrected with a ``wait`` line.
        use_all: also require every given number to be used exactly once (default False:
            each at most once). The problems are the same either way.

    Raises:
        ValueError: knobs out of range, or too few distinct problems for the split sizes.
    """

    name = "countdown"

    def __init__(
        self,
        *,
        num_count: int = 3,
        min_number: int = 1,
        max_number: int = 15,
        max_value: int = 100,
        min_target: int = 10,
        n_train: int = 2000,
        n_test: int = 200,
        seed: int = 0,
        check_prob: float = 0.0,
        correction_prob: float = 0.0,
        use_all: bool = False,
        expression_answers: bool = False,
    ) -> None:
        super().__init__()
        if not 2 <= num_count <= 6:
            raise ValueError(f"num_count must be in 2..6, got {num_count}")
        if not 0 <= min_number <= max_number:
            raise ValueError(f"need 0 <= min_number <= max_number, got {min_number}, {max_number}")
        if max_value < max(max_number, min_target, 1):
            raise ValueError(f"max_value={max_value} is below max_number/min_target")
        if n_train < 0 or n_test < 0:
            raise ValueError("n_train and n_test must be >= 0")
        for knob, p in (("check_prob", check_prob), ("correction_prob", correction_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{knob} must be a probability in [0, 1], got {p}")
        self.num_count = num_count
        #: Judge a completion that is not a trace by the one expression it states ("The
        #: answer is (7*8)+3"): how a chat model answers; off for the character policy.
        self.expression_answers = bool(expression_answers)
        self.min_number = min_number
        self.max_number = max_number
        self.max_value = max_value
        self.min_target = min_target
        self.n_train = n_train
        self.n_test = n_test
        self.seed = seed
        self.check_prob = check_prob
        self.correction_prob = correction_prob
        self.use_all = bool(use_all)

    # -- generation -------------------------------------------------------------------
    def _generate_one(self, rng: random.Random) -> tuple[list[int], int, list[str]] | None:
        nums = [rng.randint(self.min_number, self.max_number) for _ in range(self.num_count)]
        pool = list(nums)
        steps = []
        # A random operation tree, built bottom-up: combine two available values per step.
        while len(pool) > 1:
            i, j = rng.sample(range(len(pool)), 2)
            a, b = pool[i], pool[j]
            ops = ["+", "-", "*", "/"]
            rng.shuffle(ops)
            for op in ops:
                x, y = (a, b) if op in "+*" or a >= b else (b, a)
                c = _apply(x, op, y)
                # Skip steps that teach nothing (x*1, x/1, x-x) and values over the cap.
                trivial = (op == "*" and 1 in (x, y)) or (op == "/" and y == 1)
                if c is None or c > self.max_value or c == 0 or trivial:
                    continue
                break
            else:
                return None
            steps.append(f"{x}{op}{y}={c}")
            for k in sorted((i, j), reverse=True):
                pool.pop(k)
            pool.append(c)
        target = pool[0]
        if target < self.min_target or target in nums:
            return None
        return nums, target, steps

    def _make_splits(self) -> dict[str, list[Problem]]:
        rng = random.Random(f"countdown:{self.seed}")
        want = self.n_train + self.n_test
        seen: set[tuple[tuple[int, ...], int]] = set()
        made: list[tuple[list[int], int, list[str]]] = []
        misses = 0
        while len(made) < want:
            misses += 1
            # Give up once new problems have become rare: the space is (nearly) exhausted.
            if misses > 20_000:
                raise ValueError(
                    f"could only make {len(made)} distinct Countdown problems of the {want} "
                    "asked for; lower n_train/n_test or widen min_number..max_number/max_value"
                )
            got = self._generate_one(rng)
            if got is None:
                continue
            key = (tuple(sorted(got[0])), got[1])
            if key in seen:  # same numbers and target: one problem, so splits stay disjoint
                continue
            seen.add(key)
            made.append(got)
            misses = 0
        # Late finds are the rare problems; shuffle so the test split is not biased to them.
        rng.shuffle(made)
        splits: dict[str, list[Problem]] = {}
        for split, part in (("train", made[: self.n_train]), ("test", made[self.n_train :])):
            splits[split] = [
                Problem(
                    id=f"countdown-{split}-{i:05d}",
                    question=f"nums {' '.join(map(str, nums))} target {target}",
                    answer=str(target),
                    solution=(*steps, f"answer {target}"),
                    metadata={"nums": tuple(nums), "target": target},
                )
                for i, (nums, target, steps) in enumerate(part)
            ]
        return splits

    # -- text -------------------------------------------------------------------------
    def demonstration(self, problem: Problem, rng: random.Random | int | None = None) -> str:
        """See :meth:`Task.demonstration`."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng or 0)
        return self.format_completion(with_behaviours(
            problem.solution, rng, check_prob=self.check_prob, correction_prob=self.correction_prob))

    def alphabet(self) -> str:
        """See :meth:`Task.alphabet`."""
        return "".join(sorted(set("0123456789+-*/= \nnumstargetanswercheckokwaitnot")))

    # -- verdict ----------------------------------------------------------------------
    def chat_prompt(self, problem: Problem) -> str:
        """The problem in words, for a chat model, with the answer format it is judged by
        (with ``expression_answers``)."""
        nums = ", ".join(map(str, problem.metadata["nums"]))
        rule = "each exactly once" if self.use_all else "each at most once"
        return (f"Using the numbers {nums} ({rule}) and the operations +, -, * and /, make "
                f"{problem.metadata['target']}. Think step by step, then end with a last line "
                "of the form \"The answer is <expression>\", where the expression combines "
                "the given numbers.")

    def evaluate(self, problem: Problem, completion: str) -> VerifyResult:
        """See :meth:`Task.evaluate`. With ``expression_answers``, a completion that is not a
        trace is judged by the one expression it states (see :func:`_expression_verdict`)."""
        check_completion_type(completion)
        meta: dict[str, Any] = dict(problem.metadata)
        try:
            nums, target = list(meta["nums"]), int(meta["target"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"problem {problem.id!r} is not a Countdown problem") from exc
        if self.expression_answers and self._is_free_form(completion):
            return _expression_verdict(completion, nums, target, self.use_all)
        try:
            steps, answer = parse_trace(completion, self.step_delimiter)
            available = Counter(nums)
            for k, step in enumerate(steps, 1):
                m = _BINARY.match(step.lhs)
                if not m:
                    raise TraceError(f"step {k} ({step.lhs}) must be one operation a op b")
                a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
                if _apply(a, op, b) is None:
                    raise TraceError(f"step {k} ({step.lhs}) goes negative or is inexact")
                for x in (a, b):
                    if available[x] <= 0:
                        raise TraceError(f"step {k} uses {x}, which is not available")
                    available[x] -= 1
                available[step.value] += 1
        except TraceError as exc:
            return VerifyResult(0.0, False, str(exc), self.extract_answer(completion))
        if answer is None:
            return VerifyResult(0.0, False, "no answer line")
        if int(answer) != target:
            return VerifyResult(0.0, False, f"answer {answer} is not the target {target}", answer)
        if not steps or steps[-1].value != target:
            return VerifyResult(0.0, False, "the steps do not reach the target", answer)
        if self.use_all:
            # Each step turns two values into one, so "all numbers used, once each" is: the
            # target is the only value left.
            left = sorted((+available).elements())
            if left != [target]:
                unused = Counter(left)
                unused[target] -= 1
                return VerifyResult(0.0, False, "use_all: not every number is used; left over: "
                                    + " ".join(map(str, sorted((+unused).elements()))), answer)
        return VerifyResult(1.0, True, "reaches the target with valid steps", answer)


    def _is_free_form(self, completion: str) -> bool:
        """No answer line of the trace format: a chat model's words."""
        return super().extract_answer(completion) is None

    def extract_answer(self, completion: str) -> str | None:
        """The trace's answer line; with ``expression_answers``, else the value of the one
        valid expression a free-form completion states."""
        answer = super().extract_answer(completion)
        if answer is None and self.expression_answers:
            answer = _stated_expression(completion)[1]
            answer = None if answer is None else answer.split("|")[0]
        return answer


_EXPR_CHARS = re.compile(r"^[0-9+\-*/() ]{1,120}$")


def _stated_expression(completion: str) -> tuple[str | None, str | None]:
    """``(expression, its value as text)`` of the one answer ``completion`` states, or
    ``(reason it is unusable, None)``."""
    import ast
    from fractions import Fraction

    from o1search.reward.answer_extraction import extract_answers

    answers = extract_answers(completion)
    if len(answers) != 1:
        return ("no answer stated" if not answers else f"several answers: {answers[:4]}"), None
    expr = answers[0].replace("×", "*").replace("÷", "/").replace("\\times", "*")
    expr = expr.split("=")[0].strip().rstrip(".")
    if not _EXPR_CHARS.match(expr):
        return f"{answers[0]!r} is not an expression of numbers and + - * /", None
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return f"{expr!r} does not parse", None
    ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b if b else None}
    used: list[int] = []

    def value(node: ast.AST) -> Fraction | None:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            used.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            a, b = value(node.left), value(node.right)
            if a is None or b is None:
                return None
            v = ops[type(node.op)](a, b)
            # The trace rules: exact, non-negative integer results.
            return v if v is not None and v >= 0 and v.denominator == 1 else None
        return None

    v = value(tree.body)
    if v is None:
        return f"{expr!r} is not valid Countdown arithmetic", None
    return expr, str(int(v)) + "|" + ",".join(map(str, used))


def _expression_verdict(completion: str, nums: Sequence[int], target: int,
                        use_all: bool) -> VerifyResult:
    """The verdict on the expression a free-form completion states: only the given numbers
    (each at most as often as given; all of them once with ``use_all``), exact non-negative
    integer arithmetic, value equal to the target. A hedge between expressions is wrong."""
    expr, packed = _stated_expression(completion)
    if packed is None:
        return VerifyResult(0.0, False, str(expr))
    val_text, used_text = packed.split("|")
    used = Counter(int(x) for x in used_text.split(",") if x)
    have = Counter(int(x) for x in nums)
    if any(used[x] > have[x] for x in used):
        return VerifyResult(0.0, False,
                            f"{expr} uses numbers not given ({sorted(have.elements())})", val_text)
    if use_all and used != have:
        return VerifyResult(0.0, False, f"use_all: {expr} does not use every number once",
                            val_text)
    if int(val_text) != target:
        return VerifyResult(0.0, False, f"{expr} = {val_text}, not the target {target}", val_text)
    return VerifyResult(1.0, True, "the stated expression reaches the target", val_text)


def problem_key(problem: Problem) -> tuple[tuple[int, ...], int]:
    """A Countdown problem's identity whatever its id: (sorted numbers, target)."""
    return tuple(sorted(int(x) for x in problem.metadata["nums"])), int(problem.metadata["target"])


def broad_problems(task: CountdownTask, spec: str | Sequence[tuple[int, int]], *,
                   seed: int = 1, include_train: bool = True) -> list[Problem]:
    """``task``'s training split plus problems of the same knobs but larger numbers.

    Few numbers from a small range make a small problem space (3 numbers from 1..15 give
    about 5,500 distinct problems), which a small policy memorizes instead of learning the
    skill: measured with the default 133k-parameter policy, 57% greedy on its training
    problems against 20% on unseen ones. Problems with numbers up to 20 or 25 teach the same
    steps on many more problems, and train and test accuracy then agree. Every problem of
    ``task``'s test split is excluded (by numbers and target, whatever its id), and each
    distinct problem appears once.

    Parameters
    ----------
    task : CountdownTask
    spec : str or sequence of (max_number, count)
        ``"15:5000,20:10000"`` or ``[(15, 5000), (20, 10000)]``: draw ``count`` training
        problems with numbers up to ``max_number`` (the other knobs are ``task``'s); ``""``
        for none.
    seed : int
        Draw ``i`` (0-based) uses generation seed ``seed + i``.
    include_train : bool
        Start with ``task``'s own training split.

    Returns
    -------
    list of Problem
        Train split first (when included), then each draw in order, duplicates dropped.

    Raises
    ------
    ValueError
        A malformed ``spec``, or a draw the generator cannot fill.
    """
    if isinstance(spec, str):
        try:
            pairs = [tuple(int(x) for x in part.split(":")) for part in spec.split(",")
                     if part.strip()]
        except ValueError as exc:
            raise ValueError(f"spec must look like '15:5000,20:10000', got {spec!r}") from exc
    else:
        pairs = [tuple(p) for p in spec]
    for pair in pairs:
        if len(pair) != 2 or any(isinstance(x, bool) or not isinstance(x, int) or x < 1
                                 for x in pair):
            raise ValueError(f"each draw must be (max_number, count) with ints >= 1, got {pair}")
    seen = {problem_key(p) for p in task.problems("test")}
    sources = [task.problems("train")] if include_train else []
    for i, (max_number, count) in enumerate(pairs):
        draw = CountdownTask(num_count=task.num_count, min_number=task.min_number,
                             max_number=max_number, max_value=max(task.max_value, max_number),
                             min_target=task.min_target, n_train=count, n_test=0,
                             seed=seed + i, check_prob=task.check_prob,
                             correction_prob=task.correction_prob, use_all=task.use_all)
        sources.append(draw.problems("train"))
    out = []
    for problems in sources:
        for p in problems:
            k = problem_key(p)
            if k not in seen:
                seen.add(k)
                out.append(p)
    return out
