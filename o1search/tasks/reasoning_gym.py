"""reasoning-gym datasets as tasks: procedurally generated problems, judged by the dataset's
own ``score_answer``.

The answer a completion states is read by :func:`extract_rg_answer`, first match wins:

1. the last ``<answer>...</answer>`` (reasoning-gym's convention; its contents, stripped);
   an ``<answer>`` left open at the very end (a stop string that ate the closing tag) takes
   the rest of the text;
2. the last ``\\boxed{...}``;
3. the last "the answer is X" / "final answer: X" phrase (X to the end of its first clause:
   "The answer is 2, and this shows ..." states 2; a final period dropped); a list answer
   ("apple, banana") needs the tags;
4. the last non-blank line; a closing calculation ("7 + 4 = 11") states what is right of
   its last ``=``.

reasoning-gym is an optional dependency (``pip install o1search[tasks]``), imported only when
a :class:`ReasoningGymTask` is made.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Any

from o1search.reward.math_equivalence import _call_with_limit, _too_costly
from o1search.reward.verifiers import VerifyResult, extract_boxed
from o1search.tasks.base import Problem, Task, check_completion_type

__all__ = ["DEFAULT_ANSWER_INSTRUCTION", "ReasoningGymTask", "extract_rg_answer"]

#: The sentence appended to every prompt: where the answer goes (reasoning-gym's convention).
DEFAULT_ANSWER_INSTRUCTION = "Give your final answer between <answer> and </answer> tags."

_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_OPEN_TAG = re.compile(r"<answer>", re.IGNORECASE)
_CLAUSE_END = re.compile(r",\s+(?=[A-Za-z])|[.;!?]\s+(?=\S)")
_PHRASE = re.compile(r"(?:the\s+(?:final\s+)?answer\s+is|final\s+answer\s*(?:is)?)\s*:?\s*(.+)",
                     re.IGNORECASE)


def extract_rg_answer(completion: str) -> str | None:
    """The answer ``completion`` states (the rule in the module docstring), or None when the
    text is blank."""
    tagged = _TAG.findall(completion)
    opened = list(_OPEN_TAG.finditer(completion))
    if opened and "</answer>" not in completion[opened[-1].end():].lower():
        rest = completion[opened[-1].end():].strip()
        if rest:
            return rest
    if tagged:
        return tagged[-1].strip()
    boxed = extract_boxed(completion)
    if boxed is not None:
        return boxed.strip()
    phrases = _PHRASE.findall(completion)
    if phrases:
        # The statement's first clause: "The answer is 2, and this shows ..." states 2.
        found = _CLAUSE_END.split(phrases[-1].strip(), maxsplit=1)[0].strip()
        return found[:-1].rstrip() if found.endswith(".") else found
    lines = [ln.strip() for ln in completion.splitlines() if ln.strip()]
    if not lines:
        return None
    # A closing calculation ("7 + 4 = 11") states what is right of its last "=".
    last = lines[-1]
    return last.rsplit("=", 1)[1].strip() or last if "=" in last else last


def _import_reasoning_gym() -> Any:
    try:
        import reasoning_gym
    except ImportError as exc:
        raise ImportError(
            "ReasoningGymTask needs the reasoning-gym package: pip install o1search[tasks] "
            "(or pip install reasoning-gym)"
        ) from exc
    return reasoning_gym


def _split_seed(dataset: str, seed: int, split: str) -> int:
    # reasoning-gym derives item i from (seed + i), so seeds one apart would share items;
    # hashed 31-bit seeds put the two splits' ranges far apart.
    return random.Random(f"rg:{dataset}:{seed}:{split}").getrandbits(31)


class ReasoningGymTask(Task):
    """A reasoning-gym dataset as a task.

    Problems come from ``reasoning_gym.create_dataset(dataset, seed=..., size=..., **config)``,
    one dataset per split with seeds derived from ``seed``; a test question that also occurs
    in the train split is skipped (small problem spaces), so the splits never share one. The
    prompt is the entry's question (its own format instructions included) followed by
    ``answer_instruction``. The verdict is the dataset's ``score_answer`` on the answer
    :func:`extract_rg_answer` reads from the completion.

    reasoning-gym has no worked solutions; :meth:`demonstration` states the gold answer in
    ``<answer>`` tags (``Problem.solution`` is that one step).

    Parameters:
        dataset: a reasoning-gym dataset name, e.g. ``"basic_arithmetic"``, ``"countdown"``.
        n_train, n_test: split sizes (default 1000 and 100).
        seed: seed of both splits (each split gets its own seed derived from it).
        partial_credit: reward = the raw score in [0, 1] (reasoning-gym gives, e.g., 0.05 to
            a countdown expression that uses the right numbers but misses the target).
            Default False: reward 1.0 when the score is 1.0, else 0.0.
        answer_instruction: the sentence appended to each question (default
            :data:`DEFAULT_ANSWER_INSTRUCTION`); ``None`` or ``""`` for none.
        score_timeout_s: time one ``score_answer`` call may take (some scorers run sympy on
            the answer); past it the answer scores 0. Outside the main thread the abandoned
            call runs on in a daemon thread until it ends; answers that could make sympy
            run unbounded (power towers, huge exponents or factorials) are never scored.
        **config: the dataset's config fields (e.g. ``min_terms=2, max_terms=3``).

    Raises:
        ImportError: reasoning-gym is not installed.
        ValueError: an unknown dataset (the message lists the known ones), a config the
            dataset rejects, negative sizes, ``seed``/``size`` among ``config``, or too few
            distinct test questions.
        TypeError: a config field the dataset does not have.
    """

    def __init__(
        self,
        dataset: str,
        *,
        n_train: int = 1000,
        n_test: int = 100,
        seed: int = 0,
        partial_credit: bool = False,
        answer_instruction: str | None = DEFAULT_ANSWER_INSTRUCTION,
        score_timeout_s: float = 5.0,
        **config: Any,
    ) -> None:
        super().__init__()
        if not score_timeout_s > 0:
            raise ValueError(f"score_timeout_s must be > 0, got {score_timeout_s!r}")
        self.score_timeout_s = float(score_timeout_s)
        rg = _import_reasoning_gym()
        from reasoning_gym.factory import DATASETS

        if dataset not in DATASETS:
            raise ValueError(f"unknown reasoning-gym dataset {dataset!r}; known: "
                             f"{', '.join(sorted(DATASETS))}")
        for clash in ("seed", "size"):
            if clash in config:
                raise ValueError(f"{clash}= is set by ReasoningGymTask; use seed=, n_train= "
                                 "and n_test= instead")
        if n_train < 0 or n_test < 0:
            raise ValueError("n_train and n_test must be >= 0")
        self.dataset = dataset
        self.name = f"rg:{dataset}"
        self.n_train, self.n_test, self.seed = n_train, n_test, seed
        self.partial_credit = bool(partial_credit)
        self.answer_instruction = answer_instruction or ""
        self.config: Mapping[str, Any] = dict(config)
        self._rg = rg
        # Build one small dataset now so that a bad config fails here, where it is given.
        self._datasets = {"probe": self._create(0, 1)}

    def _create(self, seed: int, size: int) -> Any:
        try:
            return self._rg.create_dataset(self.dataset, seed=seed, size=size, **self.config)
        except TypeError as exc:
            raise TypeError(f"reasoning-gym dataset {self.dataset!r}: {exc}") from None
        except (AssertionError, ValueError) as exc:
            raise ValueError(f"reasoning-gym dataset {self.dataset!r} rejects the config "
                             f"{dict(self.config)}: {exc}") from None

    def _make_splits(self) -> dict[str, list[Problem]]:
        splits: dict[str, list[Problem]] = {}
        seen: set[str] = set()
        for split, want in (("train", self.n_train), ("test", self.n_test)):
            # The test split over-draws so that skipped (train) questions can be replaced.
            size = want if split == "train" else 2 * want + 16
            ds = self._create(_split_seed(self.dataset, self.seed, split), size) if want else None
            self._datasets[split] = ds
            problems: list[Problem] = []
            for idx in range(size if want else 0):
                if len(problems) == want:
                    break
                entry = ds[idx]
                if split == "test" and entry["question"] in seen:
                    continue
                problems.append(self._problem(split, len(problems), entry))
            if len(problems) < want:
                raise ValueError(
                    f"reasoning-gym dataset {self.dataset!r} gave only {len(problems)} test "
                    f"questions not in the train split of the {want} asked for; lower n_train "
                    "or n_test, or widen the config")
            seen |= {p.question for p in problems}
            splits[split] = problems
        return splits

    def _problem(self, split: str, i: int, entry: dict[str, Any]) -> Problem:
        answer = "" if entry.get("answer") is None else str(entry["answer"])
        return Problem(
            id=f"rg-{self.dataset}-{split}-{i:05d}",
            question=str(entry["question"]),
            answer=answer,
            solution=(f"<answer>{answer}</answer>",),
            metadata={"entry": entry, "split": split, "dataset": self.dataset},
        )

    # -- text -------------------------------------------------------------------------
    def prompt(self, problem: Problem) -> str:
        """The entry's question, then ``answer_instruction`` on its own line."""
        q = problem.question.rstrip("\n")
        return f"{q}\n{self.answer_instruction}\n" if self.answer_instruction else q + "\n"

    def demonstration(self, problem: Problem, rng: random.Random | int | None = None) -> str:
        """The gold answer in ``<answer>`` tags (reasoning-gym has no worked solutions)."""
        return f"<answer>{problem.answer}</answer>"

    def extract_answer(self, completion: str) -> str | None:
        """See :func:`extract_rg_answer`."""
        return extract_rg_answer(completion)

    # -- verdict ----------------------------------------------------------------------
    def score(self, problem: Problem, answer: str | None) -> float:
        """The dataset's own ``score_answer(answer, entry)`` for ``problem``'s entry.

        Raises:
            ValueError: ``problem`` is not one of this task's problems.
        """
        ds, entry = self._scorer_of(problem)
        return float(ds.score_answer(answer, entry))

    def _scorer_of(self, problem: Problem) -> tuple[Any, dict[str, Any]]:
        meta = problem.metadata
        if not isinstance(meta.get("entry"), dict) or meta.get("dataset") != self.dataset:
            raise ValueError(f"problem {problem.id!r} is not from reasoning-gym dataset "
                             f"{self.dataset!r}")
        return self._datasets.get(meta.get("split")) or self._datasets["probe"], meta["entry"]

    def evaluate(self, problem: Problem, completion: str) -> VerifyResult:
        """See :meth:`Task.evaluate`; ``reason`` gives reasoning-gym's raw score."""
        check_completion_type(completion)
        answer = self.extract_answer(completion)
        if answer is None:
            return VerifyResult(0.0, False, "no answer found")
        ds, entry = self._scorer_of(problem)
        if _too_costly(answer, max_chars=None):
            # Some scorers hand the answer to sympy, which can run unbounded in C on a power
            # tower before any timer fires: such text is not scored at all.
            return VerifyResult(0.0, False, "answer too costly to evaluate (power tower, huge "
                                "exponent or factorial)", answer)
        try:
            done, score = _call_with_limit(lambda: float(ds.score_answer(answer, entry)),
                                           self.score_timeout_s)
        except Exception as exc:  # noqa: BLE001 - a scorer failing on hostile text is a 0
            return VerifyResult(0.0, False, f"score_answer failed: {type(exc).__name__}",
                                answer)
        if not done:
            return VerifyResult(0.0, False, f"score_answer ran past {self.score_timeout_s:g} s",
                                answer)
        correct = score >= 1.0
        reward = score if self.partial_credit else float(correct)
        return VerifyResult(reward, correct, f"reasoning-gym score {score:g}", answer)
