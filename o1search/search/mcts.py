"""Monte-Carlo tree search over reasoning steps (PUCT, batched with virtual loss).

One round of one problem:

1. ``tree.select(leaves_per_round)``: distinct open leaves by PUCT, each path holding a
   virtual loss so the leaves differ (native, :class:`o1search.SearchTree`).
2. One :class:`StepRequest` per leaf (``num_children`` samples); all problems' requests go
   to the generator together.
3. The new steps become children with priors = softmax over siblings of their
   length-normalized log-probabilities (:func:`logprob_priors`).
4. Each new child gets a value: the evaluator's score of its path (PRM / value model), or the
   mean reward of ``num_rollouts`` whole completions sampled from it and scored by the
   evaluator (verifier / ORM). Finished children become terminal with their reward.
5. ``tree.backup(children, values)``: each child's value goes up its path; the first backup
   under a leaf clears that leaf's virtual loss.

The answer descends from the root by visits (or mean value) to a leaf. When that leaf is not
a finished path, the best roll-out recorded from it completes the answer (rollout mode).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from o1search.engine.sampling import SamplingParams
from o1search.search.base import EvalRequest, SearchProblem, SearchResult, StepRequest
from o1search.search.config import MCTSConfig
from o1search.search.loop import Algorithm, Choice, Evaluate, Generate, ProblemState, Round, Search

__all__ = ["MCTS", "mcts"]


class MCTS(Algorithm):
    """MCTS with PUCT over an :class:`MCTSConfig`.

    Score of the result: the reward of the chosen finished path, else the best roll-out's
    reward, else the chosen node's mean value. ``info["root_children"]`` lists
    ``(node, visits, value, prior)`` of the root's children.
    """

    name = "mcts"
    needs_evaluator = True

    def __init__(self, config: MCTSConfig | None = None) -> None:
        config = MCTSConfig() if config is None else config
        if not isinstance(config, MCTSConfig):
            raise TypeError("MCTS needs an MCTSConfig")
        super().__init__(config)

    def init(self, st: ProblemState) -> None:
        # rollout: node -> [tail tokens, reward, finished] of its best roll-out so far.
        st.data = {"simulations": 0, "rollout": {}, "cut": [], "finished": []}

    def round(self, st: ProblemState) -> Round:
        c: MCTSConfig = self.config
        d = st.data
        tree = st.tree
        if d["simulations"] >= c.num_simulations:
            st.stop("simulations")
            return
        if st.over_budget(c.token_budget):
            st.stop("token_budget")
            return
        k = min(c.leaves_per_round, c.num_simulations - d["simulations"])
        leaves = [int(x) for x in tree.select(k, c_puct=float(c.c_puct),
                                              virtual_loss=float(c.virtual_loss),
                                              min_max=c.min_max)]
        if not leaves:
            st.stop("exhausted")
            return
        reqs = tuple(StepRequest(tree.path_tokens(leaf), n=c.num_children,
                                 sampling=c.sampling.params(st.seed(leaf)),
                                 max_new_tokens=c.max_step_tokens) for leaf in leaves)
        outs = yield Generate(reqs)
        d["simulations"] += len(leaves)
        new = []
        for leaf, out in zip(leaves, outs):
            new += st.add_steps(leaf, list(out), dedupe=c.dedupe,
                                prior_temperature=float(c.prior_temperature))
        # A leaf whose samples were all dropped would keep its virtual loss forever.
        expanded = {int(tree.parent(n)) for n, _ in new}
        stranded = [leaf for leaf in leaves if leaf not in expanded]
        if stranded:
            tree.revert_virtual_loss(stranded)

        values = [0.0] * len(new)
        direct = [i for i, (_, cand) in enumerate(new)
                  if cand.finished or c.value_source == "evaluator"]
        direct_set = set(direct)
        roll = [i for i in range(len(new)) if i not in direct_set]
        ev: list[EvalRequest] = [st.eval_request(st.completion(new[i][0]), new[i][1].finished)
                                 for i in direct]
        tails: list[tuple[int, Any]] = []
        if roll:
            rreqs = []
            for i in roll:
                node = new[i][0]
                sp = SamplingParams(temperature=float(c.rollout_temperature),
                                    top_p=float(c.sampling.top_p), top_k=c.sampling.top_k,
                                    seed=st.seed("rollout", node))
                rreqs.append(StepRequest(tree.path_tokens(node), n=c.num_rollouts, sampling=sp,
                                         max_new_tokens=c.max_completion_tokens, to_end=True))
            routs = yield Generate(tuple(rreqs))
            for i, out in zip(roll, routs):
                base = st.completion(new[i][0])
                for cand in out:
                    tails.append((i, cand))
                    ev.append(st.eval_request(base + cand.tokens, cand.finished))
        vals = yield Evaluate(tuple(ev))
        for j, i in enumerate(direct):
            values[i] = vals[j]
        sums = {i: 0.0 for i in roll}
        for (i, cand), v in zip(tails, vals[len(direct):]):
            sums[i] += v
            key = str(new[i][0])
            best = d["rollout"].get(key)
            if best is None or v > best[1]:
                d["rollout"][key] = [list(cand.tokens), float(v), cand.finished]
        for i in roll:
            values[i] = sums[i] / c.num_rollouts

        term, term_vals = [], []
        for i, (node, cand) in enumerate(new):
            if cand.finished:
                d["finished"].append(node)
            elif int(tree.depth(node)) >= c.max_depth:
                d["cut"].append(node)
            else:
                continue
            term.append(node)
            term_vals.append(values[i])
        if term:
            tree.set_terminal(term, term_vals)
        if new:
            tree.backup([n for n, _ in new], values)

    def choose(self, st: ProblemState,
               answer_of: Callable[[Sequence[int]], Hashable | None]) -> Choice:
        c: MCTSConfig = self.config
        tree, d = st.tree, st.data
        node = 0
        while int(tree.num_children(node)) > 0:
            node = int(tree.best_child(node, by=c.final_by))
        kids = [int(x) for x in tree.children(0)]
        info: dict[str, Any] = {
            "simulations": d["simulations"],
            "root_children": [(k, int(tree.visits(k)), float(tree.value(k)),
                               float(tree.prior(k))) for k in kids],
        }
        finished = set(d["finished"])
        if node in finished:
            return Choice(st.completion(node), float(tree.reward(node)), True, node, info)
        r = d["rollout"].get(str(node))
        if r is not None:
            info["completed_by_rollout"] = True
            return Choice(st.completion(node) + tuple(r[0]), float(r[1]), bool(r[2]), node,
                          info)
        return Choice(st.completion(node), float(tree.value(node)), False, node, info)


def mcts(problems: Sequence[SearchProblem], generator: Any, evaluator: Any,
         config: MCTSConfig | None = None, **kwargs: Any) -> list[SearchResult]:
    """MCTS (PUCT, priors from step log-probabilities, values from an evaluator or roll-outs).

    Parameters
    ----------
    problems : sequence of SearchProblem
    generator : Generator
    evaluator : Evaluator
        PRM / value model (``value_source="evaluator"``) or verifier / ORM
        (``value_source="rollout"``).
    config : MCTSConfig, optional
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
    return Search(MCTS(config), problems, generator, evaluator, **kwargs).run()
