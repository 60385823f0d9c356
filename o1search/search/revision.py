"""Sequential revision (self-refine), alone or combined with parallel chains.

Each chain writes a whole attempt; then, up to ``max_attempts - 1`` times, the policy sees its
previous attempt followed by the revision marker and writes a new one. The revision prompt
format is a config knob (:attr:`RevisionConfig.context`)::

    history:  prompt  a1 M  a2 M  a3 ...      (every attempt, each followed by the marker M)
    last:     prompt  a_k M                    (only the latest attempt)

In the tree a chain is a path: the first attempt is a child of the root, each revision a
child of the attempt it revises whose step is ``M + attempt``; so ``path_tokens`` of an
attempt is exactly its "history" context. The evaluator scores each attempt on its own
(completion = that attempt's tokens), and the result's completion is the chosen attempt.
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
from o1search.search.config import RevisionConfig
from o1search.search.loop import Search
from o1search.search.selection import (
    best_index,
    majority_vote,
    vote_totals,
    weighted_vote,
)

__all__ = ["SequentialRevision", "sequential_revision"]


class SequentialRevision(Algorithm):
    """Self-refinement chains over a :class:`RevisionConfig`.

    ``info["attempts"]`` lists ``(chain, attempt number, node, score)`` of every attempt.
    """

    name = "sequential_revision"

    def __init__(self, config: RevisionConfig) -> None:
        if not isinstance(config, RevisionConfig):
            raise TypeError("SequentialRevision needs a RevisionConfig (with marker_tokens)")
        super().__init__(config)
        self.needs_evaluator = config.select != "majority" or config.stop_threshold is not None

    def init(self, st: ProblemState) -> None:
        st.data = {"chains": [{"attempts": [], "active": True}
                              for _ in range(self.config.num_chains)],
                   "score": {}, "finished": {}}

    def _attempt(self, st: ProblemState, node: int) -> tuple[int, ...]:
        step = tuple(int(t) for t in st.tree.step_tokens(node))
        return step if int(st.tree.depth(node)) == 1 else step[len(self.config.marker_tokens):]

    def round(self, st: ProblemState) -> Round:
        c: RevisionConfig = self.config
        d = st.data
        if st.over_budget(c.token_budget):
            st.stop("token_budget")
            return
        marker = tuple(c.marker_tokens)
        chains = [ch for ch in d["chains"] if ch["active"]]
        if st.round == 0:
            # Parallel first attempts share the prompt: one request, one sample per chain.
            reqs = (StepRequest(st.problem.prompt, n=len(chains),
                                sampling=c.sampling.params(st.seed("first")),
                                max_new_tokens=c.max_completion_tokens, to_end=True),)
            (out,) = yield Generate(reqs)
            cands = list(out)
            parents = [0] * len(chains)
        else:
            reqs_l = []
            parents = []
            for ci, ch in enumerate(d["chains"]):
                if not ch["active"]:
                    continue
                last = ch["attempts"][-1]
                if c.context == "history":
                    ctx = tuple(int(t) for t in st.tree.path_tokens(last)) + marker
                else:
                    ctx = st.problem.prompt + self._attempt(st, last) + marker
                parents.append(last)
                reqs_l.append(StepRequest(ctx, n=1, sampling=c.sampling.params(st.seed(ci)),
                                          max_new_tokens=c.max_completion_tokens, to_end=True))
            outs = yield Generate(tuple(reqs_l))
            cands = [o[0] for o in outs]
        steps = [list(cand.tokens) if p == 0 else list(marker) + list(cand.tokens)
                 for p, cand in zip(parents, cands)]
        nodes = [int(x) for x in st.tree.add_children(parents, steps, [1.0] * len(steps))]
        if st.has_evaluator:
            vals = yield Evaluate(tuple(st.eval_request(cand.tokens, cand.finished)
                                        for cand in cands))
            st.tree.backup(nodes, vals)
        else:
            vals = [0.0] * len(nodes)
        for ch, node, cand, v in zip(chains, nodes, cands, vals):
            ch["attempts"].append(node)
            d["score"][str(node)] = float(v)
            d["finished"][str(node)] = cand.finished
            if len(ch["attempts"]) >= c.max_attempts or (
                    c.stop_threshold is not None and v >= c.stop_threshold):
                ch["active"] = False
        if not any(ch["active"] for ch in d["chains"]):
            st.stop("complete")

    def choose(self, st: ProblemState,
               answer_of: Callable[[Sequence[int]], Hashable | None]) -> Choice:
        c: RevisionConfig = self.config
        d = st.data
        entries = [(ci, k, node) for ci, ch in enumerate(d["chains"])
                   for k, node in enumerate(ch["attempts"])]
        info: dict[str, Any] = {"attempts": [(ci, k, n, d["score"][str(n)])
                                             for ci, k, n in entries]}
        if not entries:
            return Choice((), 0.0, False, -1, info)
        if c.select == "last":
            entries = [(ci, len(ch["attempts"]) - 1, ch["attempts"][-1])
                       for ci, ch in enumerate(d["chains"]) if ch["attempts"]]
        nodes = [n for _, _, n in entries]
        scores = [d["score"][str(n)] for n in nodes]
        comps = [self._attempt(st, n) for n in nodes]
        if c.select in ("best", "last"):
            i = best_index(scores)
        else:
            answers = [answer_of(t) for t in comps]
            if c.select == "weighted":
                i = weighted_vote(answers, scores)
                info["votes"] = vote_totals(answers, scores)
            else:
                i = majority_vote(answers, tiebreak=scores if st.has_evaluator else None)
                info["votes"] = vote_totals(answers)
        return Choice(comps[i], scores[i], bool(d["finished"][str(nodes[i])]), nodes[i], info)


def sequential_revision(problems: Sequence[SearchProblem], generator: Any, evaluator: Any,
                        config: RevisionConfig, **kwargs: Any) -> list[SearchResult]:
    """Sequential revision (self-refine), optionally with ``num_chains`` parallel chains.

    Parameters
    ----------
    problems : sequence of SearchProblem
    generator : Generator
    evaluator : Evaluator or None
        Scores each attempt (verifier / ORM); may be None only with ``select="majority"``
        and no ``stop_threshold``.
    config : RevisionConfig
        Must carry the revision ``marker_tokens``.
    **kwargs
        ``decoder``, ``answer_fn``, ``tree_factory`` (see :class:`Search`).

    Returns
    -------
    list of SearchResult
        ``completion`` is the chosen attempt alone; ``node`` its tree node.
    """
    return Search(SequentialRevision(config), problems, generator, evaluator, **kwargs).run()
