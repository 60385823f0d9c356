"""Best-of-N: sample whole completions, score them, pick by vote or by reward.

The tree is a star: one child of the root per completion (the whole completion is its
step), terminal, with its reward backed up. Identical completions stay separate children so
that every sample votes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from o1search.protocols import SearchProblem, SearchResult, StepRequest
from o1search.search.algorithm import (
    Algorithm,
    Choice,
    Evaluate,
    Generate,
    ProblemState,
    Round,
)
from o1search.search.config import BestOfNConfig
from o1search.search.loop import Search
from o1search.search.selection import (
    best_index,
    majority_vote,
    vote_totals,
    weighted_vote,
)

__all__ = ["BestOfN", "best_of_n"]


class BestOfN(Algorithm):
    """Best-of-N over a :class:`BestOfNConfig`.

    Score of the result: the chosen sample's reward when an evaluator ran, else its answer's
    vote share. ``info["votes"]`` maps each answer to its total (count or summed reward).
    """

    name = "best_of_n"

    def __init__(self, config: BestOfNConfig | None = None) -> None:
        config = BestOfNConfig() if config is None else config
        if not isinstance(config, BestOfNConfig):
            raise TypeError("BestOfN needs a BestOfNConfig")
        super().__init__(config)
        self.needs_evaluator = (config.select in ("weighted", "best")
                                or config.stop_at_reward is not None)

    def init(self, st: ProblemState) -> None:
        st.data = {"nodes": [], "scores": [], "finished": []}

    def round(self, st: ProblemState) -> Round:
        c: BestOfNConfig = self.config
        d = st.data
        drawn = len(d["nodes"])
        if st.over_budget(c.token_budget):
            st.stop("token_budget")
            return
        k = min(c.samples_per_round or c.n, c.n - drawn)
        req = StepRequest(st.problem.prompt, n=k, sampling=c.sampling.params(st.seed()),
                          max_new_tokens=c.max_completion_tokens, to_end=True)
        (out,) = yield Generate((req,))
        added = st.add_steps(0, list(out), dedupe=False, prior_temperature=None)
        nodes = [n for n, _ in added]
        if st.has_evaluator:
            vals = yield Evaluate(tuple(st.eval_request(cand.tokens, cand.finished)
                                        for _, cand in added))
            st.tree.backup(nodes, vals)
        else:
            vals = [0.0] * len(nodes)
        st.tree.set_terminal(nodes, vals)
        d["nodes"] += nodes
        d["scores"] += [float(v) for v in vals]
        d["finished"] += [cand.finished for _, cand in added]
        if len(d["nodes"]) >= c.n:
            st.stop("complete")
        elif c.stop_at_reward is not None and any(v >= c.stop_at_reward for v in vals):
            st.stop("reward_reached")

    def choose(self, st: ProblemState,
               answer_of: Callable[[Sequence[int]], Hashable | None]) -> Choice:
        d = st.data
        nodes = d["nodes"]
        if not nodes:
            return Choice((), 0.0, False, -1, {"votes": {}, "samples": 0})
        comps = [tuple(int(t) for t in st.tree.step_tokens(n)) for n in nodes]
        answers = [answer_of(t) for t in comps]
        scores = d["scores"]
        # Unfinished (cut-off) completions never outrank finished ones: only when none
        # finished do they compete (a truncated text's partial score or stray number must
        # not beat a finished answer).
        pool = [j for j, f in enumerate(d["finished"]) if f] or list(range(len(nodes)))
        p_answers = [answers[j] for j in pool]
        p_scores = [scores[j] for j in pool]
        sel = self.config.select
        if sel == "best":
            k = best_index(p_scores)
            votes = vote_totals(p_answers, p_scores)
        elif sel == "weighted":
            k = weighted_vote(p_answers, p_scores)
            votes = vote_totals(p_answers, p_scores)
        else:
            k = majority_vote(p_answers, tiebreak=p_scores if st.has_evaluator else None)
            votes = vote_totals(p_answers)
        i = pool[k]
        if st.has_evaluator:
            score = scores[i]
        else:
            total = sum(votes.values())
            score = votes.get(answers[i], 0.0) / total if total else 0.0
        return Choice(comps[i], score, bool(d["finished"][i]), nodes[i],
                      {"votes": votes, "samples": len(nodes), "answers": answers,
                       "scores": list(scores)})


def best_of_n(problems: Sequence[SearchProblem], generator: Any, evaluator: Any = None,
              config: BestOfNConfig | None = None, **kwargs: Any) -> list[SearchResult]:
    """Best-of-N on a batch of problems (majority vote, weighted vote or reward-best).

    Parameters
    ----------
    problems : sequence of SearchProblem
    generator : Generator
    evaluator : Evaluator, optional
        Outcome scorer (verifier / ORM); required by ``select="weighted"|"best"``.
    config : BestOfNConfig, optional
    **kwargs
        ``decoder``, ``answer_fn``, ``tree_factory`` (see :class:`Search`).

    Returns
    -------
    list of SearchResult
        One per problem.

    Raises
    ------
    ValueError
        A selection rule that needs an evaluator without one; a generator or evaluator that
        breaks its contract.
    """
    return Search(BestOfN(config), problems, generator, evaluator, **kwargs).run()
