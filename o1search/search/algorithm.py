"""What a search algorithm is written against: the commands a round yields
(:class:`Generate`, :class:`Evaluate`), the per-problem state it reads and updates
(:class:`ProblemState`), its final pick (:class:`Choice`) and the :class:`Algorithm` base.

:class:`o1search.search.loop.Search` runs the rounds of many problems side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from o1search.protocols import (
    EvalRequest,
    SearchCompute,
    SearchProblem,
    StepCandidate,
    StepRequest,
    derive_seed,
)
from o1search.search.selection import logprob_priors

__all__ = ["Algorithm", "Choice", "Evaluate", "Generate", "ProblemState", "Round"]


@dataclass(frozen=True)
class Generate:
    """Command yielded by a round: draw these requests; the round receives one
    :class:`StepOutput` per request."""

    requests: tuple[StepRequest, ...]


@dataclass(frozen=True)
class Evaluate:
    """Command yielded by a round: score these paths; the round receives a list of floats."""

    requests: tuple[EvalRequest, ...]


@dataclass
class ProblemState:
    """Everything the search knows about one problem between rounds.

    Attributes
    ----------
    index : int
        Position in the batch.
    problem : SearchProblem
    tree : SearchTree
    round : int
        Rounds completed.
    done : bool
    stop_reason : str
        Why the problem stopped ("" while running).
    compute : SearchCompute
    data : dict
        The algorithm's JSON-able state.
    """

    index: int
    problem: SearchProblem
    tree: Any
    round: int = 0
    done: bool = False
    stop_reason: str = ""
    compute: SearchCompute = field(default_factory=SearchCompute)
    data: dict[str, Any] = field(default_factory=dict)
    has_evaluator: bool = False

    def stop(self, reason: str) -> None:
        """Mark the problem finished."""
        self.done = True
        self.stop_reason = reason

    def seed(self, *parts: int | str) -> int:
        """A request seed derived from the problem's seed, the round and ``parts``."""
        return derive_seed(self.problem.seed, self.round, *parts)

    def over_budget(self, budget: int | None) -> bool:
        """Whether ``budget`` generated tokens are spent (None: never)."""
        return budget is not None and self.compute.generated_tokens >= budget

    def completion(self, node: int) -> tuple[int, ...]:
        """Tokens of ``node``'s path after the prompt."""
        return tuple(int(t) for t in self.tree.path_tokens(node)[len(self.problem.prompt):])

    def add_steps(self, parent: int, candidates: Sequence[StepCandidate], *, dedupe: bool,
                  prior_temperature: float | None = 1.0) -> list[tuple[int, StepCandidate]]:
        """Add candidates as children of ``parent``; returns ``(node, candidate)`` pairs.

        With ``dedupe`` identical token sequences become one child (the first sample's).
        Priors: softmax over the (kept) siblings of their length-normalized logprobs at
        ``prior_temperature``; uniform when it is None.
        """
        kept: list[StepCandidate] = []
        seen: set[tuple[int, ...]] = set()
        for c in candidates:
            if dedupe:
                if c.tokens in seen:
                    continue
                seen.add(c.tokens)
            kept.append(c)
        if not kept:
            return []
        if prior_temperature is None:
            priors = [1.0 / len(kept)] * len(kept)
        else:
            priors = logprob_priors([c.logprob for c in kept], [len(c.tokens) for c in kept],
                                    temperature=prior_temperature)
        ids = self.tree.add_children(parent, [list(c.tokens) for c in kept], priors)
        return [(int(n), c) for n, c in zip(ids, kept)]

    def eval_request(self, completion: Sequence[int], finished: bool) -> EvalRequest:
        """An :class:`EvalRequest` for this problem."""
        return EvalRequest(self.problem.problem, self.problem.prompt, tuple(completion),
                           finished)


@dataclass(frozen=True)
class Choice:
    """An algorithm's final pick for one problem (see :class:`SearchResult`)."""

    completion: tuple[int, ...]
    score: float
    finished: bool
    node: int = -1
    info: dict[str, Any] = field(default_factory=dict)


Round = Iterator[Any]


class Algorithm:
    """Base of the search algorithms: a config, a per-problem state and a round.

    Subclasses set ``name`` and implement :meth:`init`, :meth:`round` and :meth:`choose`.
    """

    name: str = "algorithm"

    def __init__(self, config: Any) -> None:
        self.config = config

    def init(self, st: ProblemState) -> None:
        """Fill ``st.data`` for a fresh search (the tree holds only the root)."""

    def round(self, st: ProblemState) -> Round:
        """One round of one problem: yield commands, update ``st``; call ``st.stop`` when
        the problem is finished."""
        raise NotImplementedError

    def choose(self, st: ProblemState, answer_of: Callable[[Sequence[int]], Hashable | None]
               ) -> Choice:
        """The final answer of a problem (also called on an unfinished search)."""
        raise NotImplementedError
