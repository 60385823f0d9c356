"""Step-level beam search, and the two searches that are beam search underneath: DVTS
(independent subtrees, each a beam search) and lookahead search (steps scored by roll-outs).

One loop (:class:`BeamSearch`) runs all three. A problem's beams live in *groups*: plain
beam search and lookahead search have one group rooted at the prompt; DVTS first expands the
root into ``num_subtrees`` distinct steps and gives each its own group. Every round each
group draws ``(width - finished) * expansions_per_beam`` samples split evenly over its live
beams, the evaluator scores each new step (or the end of its roll-out), and the best new
paths fill the free slots: unfinished ones become the next beams, finished ones keep their
slot for good. A group therefore holds ``live + finished == width`` paths while it has
candidates, and stops when all its slots hold finished paths.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from o1search.engine.sampling import SamplingParams
from o1search.protocols import SearchProblem, SearchResult, StepCandidate, StepRequest
from o1search.search.algorithm import (
    Algorithm,
    Choice,
    Evaluate,
    Generate,
    ProblemState,
    Round,
)
from o1search.search.config import BeamConfig, DVTSConfig, LookaheadConfig
from o1search.search.loop import Search

__all__ = ["BeamSearch", "beam_search", "dvts", "lookahead_search", "split_evenly"]


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal non-negative ints, larger ones first.

    >>> split_evenly(7, 3)
    [3, 2, 2]
    """
    if parts <= 0:
        return []
    q, r = divmod(total, parts)
    return [q + (1 if i < r else 0) for i in range(parts)]


class BeamSearch(Algorithm):
    """Beam search / DVTS / lookahead over a :class:`BeamConfig` (or its subclasses).

    The result is the best finished path (by its evaluator score, ties to the earliest
    node) over all groups; with none finished, the best live or cut-off path.
    ``info["finalists"]`` lists ``(node, score, finished)`` of every path that left a beam.
    """

    name = "beam_search"
    needs_evaluator = True

    def __init__(self, config: BeamConfig | None = None) -> None:
        config = BeamConfig() if config is None else config
        if not isinstance(config, BeamConfig):
            raise TypeError("BeamSearch needs a BeamConfig (or DVTSConfig / LookaheadConfig)")
        super().__init__(config)

    def init(self, st: ProblemState) -> None:
        c: BeamConfig = self.config
        # DVTS starts with the root alone in a "split" phase; beam search puts the root in
        # its single group as the one beam that stands for all `width` beams.
        groups = [] if c.num_subtrees > 1 else [{"beams": [0], "done": []}]
        st.data = {"groups": groups, "started": c.num_subtrees == 1, "score": {},
                   "finished": {}}

    # ------------------------------------------------------------------ scoring
    def _score(self, st: ProblemState, new: list[tuple[int, StepCandidate]]
               ) -> Any:
        """Score new steps (directly or at the end of a roll-out); returns their values."""
        c: BeamConfig = self.config
        tails: list[list[int]] = [[] for _ in new]
        done = [cand.finished for _, cand in new]
        if c.lookahead > 0:
            for k in range(c.lookahead):
                live = [i for i in range(len(new)) if not done[i]]
                if not live:
                    break
                reqs = []
                for i in live:
                    node = new[i][0]
                    prefix = list(st.tree.path_tokens(node)) + tails[i]
                    sp = SamplingParams(temperature=float(c.lookahead_temperature),
                                        top_p=float(c.sampling.top_p), top_k=c.sampling.top_k,
                                        seed=st.seed("lookahead", node, k))
                    reqs.append(StepRequest(prefix, n=1, sampling=sp,
                                            max_new_tokens=c.max_step_tokens))
                outs = yield Generate(tuple(reqs))
                for i, out in zip(live, outs):
                    tails[i] += list(out[0].tokens)
                    done[i] = out[0].finished
        vals = yield Evaluate(tuple(
            st.eval_request(st.completion(node) + tuple(tails[i]), done[i])
            for i, (node, _) in enumerate(new)))
        return vals

    # ------------------------------------------------------------------ rounds
    def round(self, st: ProblemState) -> Round:
        c: BeamConfig = self.config
        d = st.data
        if st.over_budget(c.token_budget):
            st.stop("token_budget")
            return
        if not d["started"]:
            yield from self._split_root(st)
            return
        owners: list[tuple[int, int]] = []
        reqs: list[StepRequest] = []
        for gi, g in enumerate(d["groups"]):
            beams = g["beams"]
            if not beams:
                continue
            total = (c.width - len(g["done"])) * c.expansions_per_beam
            for b, k in zip(beams, split_evenly(total, len(beams))):
                if k == 0:
                    continue
                owners.append((gi, b))
                reqs.append(StepRequest(st.tree.path_tokens(b), n=k,
                                        sampling=c.sampling.params(st.seed(b)),
                                        max_new_tokens=c.max_step_tokens))
        outs = yield Generate(tuple(reqs))
        new: list[tuple[int, StepCandidate]] = []
        group_of: list[int] = []
        for (gi, b), out in zip(owners, outs):
            for node, cand in st.add_steps(b, list(out), dedupe=c.dedupe):
                new.append((node, cand))
                group_of.append(gi)
        vals = yield from self._score(st, new)
        closed = self._record(st, new, vals)
        for gi, g in enumerate(d["groups"]):
            mine = [(node, v) for (node, _), v, ggi in zip(new, vals, group_of) if ggi == gi]
            if not g["beams"]:
                continue
            # Finished and unfinished candidates compete for the free slots; a finished
            # one that wins keeps its slot for good, so live + finished == width.
            ranked = sorted(mine, key=lambda nv: (-nv[1], nv[0]))
            chosen = [node for node, _ in ranked[:max(c.width - len(g["done"]), 0)]]
            g["done"] += [node for node in chosen if node in closed]
            g["beams"] = [node for node in chosen if node not in closed]
        if all(not g["beams"] for g in d["groups"]):
            st.stop("complete")

    def _split_root(self, st: ProblemState) -> Round:
        """DVTS's first round: distinct first steps, one subtree each."""
        c: BeamConfig = self.config
        d = st.data
        req = StepRequest(st.problem.prompt, n=c.num_subtrees,
                          sampling=c.sampling.params(st.seed(0)),
                          max_new_tokens=c.max_step_tokens)
        (out,) = yield Generate((req,))
        new = st.add_steps(0, list(out), dedupe=True)
        vals = yield from self._score(st, new)
        closed = self._record(st, new, vals)
        for node, _ in new:
            if node in closed:
                d["groups"].append({"beams": [], "done": [node]})
            else:
                d["groups"].append({"beams": [node], "done": []})
        d["started"] = True
        if all(not g["beams"] for g in d["groups"]):
            st.stop("complete")

    def _record(self, st: ProblemState, new: list[tuple[int, StepCandidate]],
                vals: Sequence[float]) -> set[int]:
        """Store scores; close finished and too-deep paths. Returns the closed nodes."""
        c: BeamConfig = self.config
        d = st.data
        closed: set[int] = set()
        term_nodes, term_vals = [], []
        for (node, cand), v in zip(new, vals):
            d["score"][str(node)] = float(v)
            d["finished"][str(node)] = cand.finished
            if cand.finished or int(st.tree.depth(node)) >= c.max_depth:
                closed.add(node)
                term_nodes.append(node)
                term_vals.append(float(v))
        if new:
            st.tree.backup([n for n, _ in new], [float(v) for v in vals])
        if term_nodes:
            st.tree.set_terminal(term_nodes, term_vals)
        return closed

    def choose(self, st: ProblemState,
               answer_of: Callable[[Sequence[int]], Hashable | None]) -> Choice:
        d = st.data
        score, fin = d["score"], d["finished"]
        done = [n for g in d["groups"] for n in g["done"]]
        live = [n for g in d["groups"] for n in g["beams"] if str(n) in score]
        pool = [n for n in done if fin[str(n)]] or done or live
        info = {"finalists": [(n, score[str(n)], fin[str(n)]) for n in done],
                "groups": len(d["groups"])}
        if not pool:
            return Choice((), 0.0, False, 0, info)
        best = min(pool, key=lambda n: (-score[str(n)], n))
        return Choice(st.completion(best), score[str(best)], bool(fin[str(best)]), best, info)


def beam_search(problems: Sequence[SearchProblem], generator: Any, evaluator: Any,
                config: BeamConfig | None = None, **kwargs: Any) -> list[SearchResult]:
    """Step-level beam search guided by a step evaluator (PRM / value model).

    Parameters
    ----------
    problems : sequence of SearchProblem
    generator : Generator
    evaluator : Evaluator
        Scores partial paths (step values) and finished ones (outcome).
    config : BeamConfig, optional
    **kwargs
        ``decoder``, ``answer_fn``, ``tree_factory`` (see :class:`Search`).

    Returns
    -------
    list of SearchResult

    Raises
    ------
    ValueError
        No evaluator, or a generator / evaluator that breaks its contract.
    """
    return Search(BeamSearch(config), problems, generator, evaluator, **kwargs).run()


def dvts(problems: Sequence[SearchProblem], generator: Any, evaluator: Any,
         config: DVTSConfig | None = None, **kwargs: Any) -> list[SearchResult]:
    """Diverse verifier tree search: independent beam searches under distinct first steps.

    Parameters and returns as :func:`beam_search`, with a :class:`DVTSConfig`.
    """
    return Search(BeamSearch(config or DVTSConfig()), problems, generator, evaluator,
                  **kwargs).run()


def lookahead_search(problems: Sequence[SearchProblem], generator: Any, evaluator: Any,
                     config: LookaheadConfig | None = None, **kwargs: Any
                     ) -> list[SearchResult]:
    """Beam search whose steps are scored at the end of ``lookahead``-step roll-outs.

    Parameters and returns as :func:`beam_search`, with a :class:`LookaheadConfig`.
    """
    return Search(BeamSearch(config or LookaheadConfig()), problems, generator, evaluator,
                  **kwargs).run()
