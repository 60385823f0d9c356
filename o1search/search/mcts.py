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

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from o1search.engine.sampling import ExcludedSteps, SamplingParams
from o1search.protocols import SearchProblem, SearchResult, StepRequest
from o1search.search.algorithm import (
    Algorithm,
    Choice,
    Evaluate,
    Generate,
    ProblemState,
    Round,
)
from o1search.search.config import MCTSConfig
from o1search.search.loop import Search

__all__ = ["MCTS", "mcts"]


class MCTS(Algorithm):
    """MCTS with PUCT over an :class:`MCTSConfig`.

    Score of the result: the reward of the chosen finished path (a finished node or a
    finished roll-out), else the best roll-out's reward, else the chosen node's mean value.
    ``info["root_children"]`` lists ``(node, visits, value, prior)`` of the root's children;
    ``info["completed_by_rollout"]`` says the answer ends in a recorded roll-out.
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
        # expansions / fruitless: per node (str keys: the state is JSON for checkpoints).
        # sampled: node -> [temperature, per-token sample log-probs] (unique_expansions).
        st.data = {"simulations": 0, "rollout": {}, "cut": [], "finished": [],
                   "expansions": {}, "fruitless": {}, "closed": [], "completed": False,
                   "sampled": {}}

    # ------------------------------------------------------------------ one round
    def round(self, st: ProblemState) -> Round:
        c: MCTSConfig = self.config
        d = st.data
        tree = st.tree
        if d["simulations"] >= c.num_simulations:
            yield from self._finish(st, "simulations")
            return
        if st.over_budget(c.token_budget):
            yield from self._finish(st, "token_budget")
            return
        if (c.value_source == "rollout" and c.root_rollout and "0" not in d["rollout"]
                and int(tree.num_children(0)) == 0):
            # Roll out the root first: a problem the policy solves outright costs one
            # completion (and with greedy roll-outs its children can reuse it).
            vals = yield from self._rollouts(st, [0])
            tree.backup([0], [vals[0]])
            self._check_solved(st)
            return
        k = min(c.leaves_per_round, c.num_simulations - d["simulations"])
        if c.widening > 0:
            leaves = self._select_widening(st, k)
        else:
            leaves = [int(x) for x in tree.select(k, c_puct=float(c.c_puct),
                                                  virtual_loss=float(c.virtual_loss),
                                                  min_max=c.min_max)]
        if not leaves:
            yield from self._finish(st, "exhausted")
            return
        reqs = []
        for leaf in list(leaves):
            sp = self._expansion_sampling(st, leaf)
            exclude = self._known_steps(st, leaf, sp) if c.unique_expansions else ()
            if exclude and ExcludedSteps(exclude).remaining < 1e-3:
                # Every step the policy would take here is known: nothing left to draw.
                d["closed"].append(leaf)
                leaves.remove(leaf)
                continue
            reqs.append(StepRequest(tree.path_tokens(leaf), n=c.num_children, sampling=sp,
                                    max_new_tokens=c.max_step_tokens, exclude=exclude))
        if not reqs:
            return
        outs = yield Generate(tuple(reqs))
        d["simulations"] += len(leaves)
        new = []
        for leaf, req, out in zip(leaves, reqs, outs):
            cands = list(out)
            if c.dedupe and int(tree.num_children(leaf)) > 0:
                # A re-expanded node only gains steps it does not have yet.
                have = {tuple(int(t) for t in tree.step_tokens(int(ch)))
                        for ch in tree.children(leaf)}
                cands = [x for x in cands if x.tokens not in have]
            added = st.add_steps(leaf, cands, dedupe=c.dedupe,
                                 prior_temperature=float(c.prior_temperature))
            if c.unique_expansions:
                temp = float(req.sampling.temperature)
                for nd, x in added:
                    if x.sample_logprobs:
                        d.setdefault("sampled", {})[str(nd)] = [temp, list(x.sample_logprobs)]
            key = str(leaf)
            d["expansions"][key] = d["expansions"].get(key, 0) + 1
            # Re-deriving a known result (the finished roll-out recorded at this leaf) is
            # no progress either: a leaf whose every continuation is that one finished step
            # (e.g. a forced answer line) closes instead of being widened forever.
            rec = d["rollout"].get(key)
            if rec is not None and rec[2]:
                added_new = [(nd, x) for nd, x in added
                             if not (x.finished and list(x.tokens) == list(rec[0]))]
            else:
                added_new = added
            if added_new:
                d["fruitless"].pop(key, None)
            else:
                d["fruitless"][key] = d["fruitless"].get(key, 0) + 1
                if d["fruitless"][key] >= c.max_fruitless:
                    d["closed"].append(leaf)
            new += added
        # A leaf whose samples were all dropped would keep its virtual loss forever.
        expanded = {int(tree.parent(n)) for n, _ in new}
        stranded = [leaf for leaf in leaves if leaf not in expanded]
        if stranded and c.widening == 0:
            tree.revert_virtual_loss(stranded)

        values = [0.0] * len(new)
        direct = [i for i, (_, cand) in enumerate(new)
                  if cand.finished or c.value_source == "evaluator"]
        direct_set = set(direct)
        roll = []
        for i in range(len(new)):
            if i in direct_set:
                continue
            reused = self._reuse_rollout(st, *new[i])
            if reused is None:
                roll.append(i)
            else:
                values[i] = reused
        if direct:
            ev = tuple(st.eval_request(st.completion(new[i][0]), new[i][1].finished)
                       for i in direct)
            vals = yield Evaluate(ev)
            for j, i in enumerate(direct):
                values[i] = vals[j]
        if roll:
            vals = yield from self._rollouts(st, [new[i][0] for i in roll])
            for i, v in zip(roll, vals):
                values[i] = v

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
        self._check_solved(st)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _known_steps(st: ProblemState, leaf: int, sp: SamplingParams
                     ) -> tuple[tuple[tuple[int, ...], tuple[float, ...]], ...]:
        """``leaf``'s children drawn at ``sp``'s temperature, with their sample log-probs."""
        out = []
        for ch in st.tree.children(leaf):
            rec = st.data.get("sampled", {}).get(str(int(ch)))
            if rec is not None and rec[0] == float(sp.temperature):
                out.append((tuple(int(t) for t in st.tree.step_tokens(int(ch))),
                            tuple(rec[1])))
        return tuple(out)

    def _expansion_sampling(self, st: ProblemState, leaf: int) -> SamplingParams:
        """Sampling of ``leaf``'s expansion: the config's, hotter by ``fruitless_temperature``
        per consecutive fruitless expansion of the leaf."""
        c: MCTSConfig = self.config
        sp = c.sampling.params(st.seed(leaf))
        boost = c.fruitless_temperature * st.data["fruitless"].get(str(leaf), 0)
        if boost > 0 and sp.temperature > 0:
            sp = replace(sp, temperature=sp.temperature + boost)
        return sp

    def _rollouts(self, st: ProblemState, nodes: list[int]) -> Any:
        """Roll out each node ``num_rollouts`` times to the end, score the completions,
        record each node's best roll-out; returns each node's mean reward."""
        c: MCTSConfig = self.config
        tree = st.tree
        rreqs = []
        for node in nodes:
            sp = SamplingParams(temperature=float(c.rollout_temperature),
                                top_p=float(c.sampling.top_p), top_k=c.sampling.top_k,
                                seed=st.seed("rollout", node))
            rreqs.append(StepRequest(tree.path_tokens(node), n=c.num_rollouts, sampling=sp,
                                     max_new_tokens=c.max_completion_tokens, to_end=True))
        routs = yield Generate(tuple(rreqs))
        tails, ev = [], []
        for node, out in zip(nodes, routs):
            base = st.completion(node)
            for cand in out:
                tails.append((node, cand))
                ev.append(st.eval_request(base + cand.tokens, cand.finished))
        vals = yield Evaluate(tuple(ev))
        sums = {node: 0.0 for node in nodes}
        for (node, cand), v in zip(tails, vals):
            sums[node] += v
            self._record(st, node, cand.tokens, float(v), cand.finished)
        return [sums[node] / c.num_rollouts for node in nodes]

    @staticmethod
    def _record(st: ProblemState, node: int, tail: Sequence[int], value: float,
                finished: bool) -> None:
        """Keep ``node``'s best roll-out (by reward, then finished)."""
        key = str(node)
        best = st.data["rollout"].get(key)
        if best is None or (value, finished) > (best[1], bool(best[2])):
            st.data["rollout"][key] = [[int(t) for t in tail], value, bool(finished)]

    def _reuse_rollout(self, st: ProblemState, node: int, cand: Any) -> float | None:
        """With greedy roll-outs: the value of a new child whose step begins its parent's
        recorded roll-out (greedy decoding from it would regenerate the rest), else None."""
        c: MCTSConfig = self.config
        if c.rollout_temperature != 0:
            return None
        rec = st.data["rollout"].get(str(int(st.tree.parent(node))))
        if rec is None:
            return None
        tail, value, finished = rec
        n = len(cand.tokens)
        if len(tail) <= n or tuple(tail[:n]) != tuple(cand.tokens):
            return None
        self._record(st, node, tail[n:], float(value), bool(finished))
        return float(value)

    def _check_solved(self, st: ProblemState) -> None:
        c: MCTSConfig = self.config
        if c.stop_at_reward is None or st.done:
            return
        best = self._best_finished(st)
        if best is not None and best[0] >= c.stop_at_reward:
            st.stop("solved")

    def _finish(self, st: ProblemState, reason: str) -> Round:
        """Stop; first complete the chosen path greedily when nothing is finished."""
        c: MCTSConfig = self.config
        d = st.data
        if c.complete_answer and not d["completed"] and self._best_finished(st) is None:
            d["completed"] = True
            node = self._descend(st)
            sp = SamplingParams(temperature=0.0, seed=st.seed("complete", node))
            outs = yield Generate((StepRequest(st.tree.path_tokens(node), n=1, sampling=sp,
                                               max_new_tokens=c.max_completion_tokens,
                                               to_end=True),))
            cand = outs[0][0]
            vals = yield Evaluate((st.eval_request(st.completion(node) + cand.tokens,
                                                   cand.finished),))
            self._record(st, node, cand.tokens, float(vals[0]), cand.finished)
        st.stop(reason)

    def _select_widening(self, st: ProblemState, k: int) -> list[int]:
        """Up to ``k`` distinct nodes to expand: PUCT descent (with a per-round virtual loss)
        that stops at a node that is unexpanded, may widen, or has no open child."""
        c: MCTSConfig = self.config
        tree, d = st.tree, st.data
        n = int(tree.num_slots)
        ids = np.arange(n, dtype=np.int64)
        par = [int(x) for x in tree.parent(ids)]
        term = [bool(x) for x in tree.is_terminal(ids)]
        vis = np.asarray(tree.visits(ids), dtype=np.float64)
        wsum = np.asarray(tree.value_sum(ids), dtype=np.float64)
        prior = np.asarray(tree.prior(ids), dtype=np.float64)
        kids: list[list[int]] = [[] for _ in range(n)]
        for x in range(1, n):
            if par[x] >= 0:
                kids[par[x]].append(x)
        closed = {int(x) for x in d["closed"]}
        expn = d["expansions"]
        pend = np.zeros(n)
        taken: set[int] = set()
        lo, hi = float(tree.min_value), float(tree.max_value)
        norm = c.min_max and hi > lo

        def open_(x: int) -> bool:
            return (not term[x] and x not in closed
                    and (x not in taken or any(is_open[ch] for ch in kids[x])))

        # Children have larger ids than their parent: one reverse sweep settles openness.
        is_open = [False] * n
        for x in range(n - 1, -1, -1):
            is_open[x] = open_(x)

        def may_widen(x: int) -> bool:
            e = expn.get(str(x), 0)
            return e == 0 or e < 1 + math.floor(
                c.widening * (vis[x] + pend[x]) ** c.widening_exponent)

        out: list[int] = []
        while len(out) < k and is_open[0]:
            x, path = 0, [0]
            while True:
                open_kids = [ch for ch in kids[x] if is_open[ch]]
                if x not in taken and (not open_kids or may_widen(x)):
                    break
                ne_p = vis[x] + pend[x]
                best, best_s = -1, -math.inf
                for ch in open_kids:
                    ne = vis[ch] + pend[ch]
                    q = (wsum[ch] - c.virtual_loss * pend[ch]) / ne if ne > 0 else 0.0
                    if norm and ne > 0:
                        q = (q - lo) / (hi - lo)
                    u = c.c_puct * prior[ch] * math.sqrt(max(ne_p, 1.0)) / (1.0 + ne)
                    if q + u > best_s:
                        best, best_s = ch, q + u
                x = best
                path.append(x)
            out.append(x)
            taken.add(x)
            for y in path:
                pend[y] += 1
            for y in reversed(path):
                is_open[y] = open_(y)
        return out

    def _best_finished(self, st: ProblemState) -> tuple[float, float, int, tuple[int, ...],
                                                         bool] | None:
        """``(reward, final_by statistic, node, completion, via roll-out)`` of the best
        finished path (finished nodes and finished roll-outs), or None."""
        c: MCTSConfig = self.config
        tree, d = st.tree, st.data

        def stat(node: int) -> float:
            return float(tree.value(node)) if c.final_by == "value" \
                else float(tree.visits(node))

        best = None
        for node in d["finished"]:
            node = int(node)
            key = (float(tree.reward(node)), stat(node), -node, 1)
            if best is None or key > best[0]:
                best = (key, node, st.completion(node), False)
        for k, (tail, r, fin) in d["rollout"].items():
            if not fin:
                continue
            node = int(k)
            key = (float(r), stat(node), -node, 0)
            if best is None or key > best[0]:
                best = (key, node, st.completion(node) + tuple(int(t) for t in tail), True)
        if best is None:
            return None
        return best[0][0], best[0][1], best[1], best[2], best[3]

    def _descend(self, st: ProblemState) -> int:
        tree = st.tree
        node = 0
        while int(tree.num_children(node)) > 0:
            node = int(tree.best_child(node, by=self.config.final_by))
        return node

    def choose(self, st: ProblemState,
               answer_of: Callable[[Sequence[int]], Hashable | None]) -> Choice:
        tree, d = st.tree, st.data
        kids = [int(x) for x in tree.children(0)]
        info: dict[str, Any] = {
            "simulations": d["simulations"],
            "root_children": [(k, int(tree.visits(k)), float(tree.value(k)),
                               float(tree.prior(k))) for k in kids],
        }
        best = self._best_finished(st)
        if best is not None:
            reward, _, node, completion, via_rollout = best
            if via_rollout:
                info["completed_by_rollout"] = True
            return Choice(completion, reward, True, node, info)
        node = self._descend(st)
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
