"""The one search loop: a batch of problems in lockstep, rounds, checkpoints.

An algorithm describes one *round* of one problem as a Python generator that yields
:class:`Generate` / :class:`Evaluate` commands and receives their answers. :class:`Search`
runs the round of every unfinished problem side by side: at each tick it gathers the pending
commands of all problems into one ``generator.generate`` call and one
``evaluator.evaluate`` call, so the model sees large batches while each algorithm is written
as if it searched a single tree.

Between rounds a problem's whole state is plain data (its tree's bytes, counters and a
JSON-able dict), so :meth:`Search.checkpoint` can save it and :meth:`Search.resume` continue
to exactly the result an uninterrupted run gives (seeds are derived from the problem's seed
and the position in the search, never from a stateful generator).

The algorithm side (the commands, :class:`ProblemState`, :class:`Choice`, :class:`Algorithm`)
lives in :mod:`o1search.search.algorithm`; its names are importable from here too.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Hashable, Sequence
from typing import Any

from o1search.protocols import (
    AnswerFn,
    Decoder,
    SearchCompute,
    SearchProblem,
    SearchResult,
    StepCandidate,
    StepOutput,
    StepRequest,
)
from o1search.search.algorithm import (
    Algorithm,
    Choice,
    Evaluate,
    Generate,
    ProblemState,
    Round,
)
from o1search.search.config import config_to_dict

__all__ = ["Algorithm", "Choice", "Evaluate", "Generate", "ProblemState", "Search"]

_MAGIC = b"O1SCKPT\x01"
_FORMAT = 1


def _as_output(x: Any, req: StepRequest, where: str) -> StepOutput:
    out = x if isinstance(x, StepOutput) else StepOutput(tuple(x))
    if len(out) != req.n:
        raise ValueError(f"{where}: the generator returned {len(out)} candidates for a "
                         f"request of n={req.n}")
    for c in out:
        if not isinstance(c, StepCandidate):
            raise TypeError(f"{where}: the generator returned a {type(c).__name__}, not a "
                            "StepCandidate")
        if len(c.tokens) > req.max_new_tokens:
            raise ValueError(f"{where}: a candidate has {len(c.tokens)} tokens, more than "
                             f"max_new_tokens={req.max_new_tokens}")
    return out


def _check_values(vals: Any, n: int) -> list[float]:
    try:
        out = [float(v) for v in vals]
    except (TypeError, ValueError):
        raise TypeError("the evaluator must return real numbers") from None
    if len(out) != n:
        raise ValueError(f"the evaluator returned {len(out)} values for {n} requests")
    for v in out:
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise ValueError(f"the evaluator returned {v}; values must be in [0, 1]")
    return out


def _prompt_digest(p: SearchProblem) -> str:
    h = hashlib.sha256(repr((p.prompt, p.seed)).encode())
    return h.hexdigest()[:16]


def _canonical(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


class Search:
    """Runs an :class:`Algorithm` on a batch of problems in lockstep.

    Parameters
    ----------
    algorithm : Algorithm
        E.g. ``MCTS(MCTSConfig(...))``.
    problems : sequence of SearchProblem
        The batch (>= 1).
    generator : Generator
        Anything with ``generate(requests) -> [[StepCandidate]]``.
    evaluator : Evaluator or None
        Anything with ``evaluate(requests) -> [float in [0, 1]]``; algorithms that need one
        raise ValueError without it.
    decoder : callable, optional
        Token ids → text, for :attr:`SearchResult.text` (default: ``generator.decoder`` when
        the generator has one, e.g. an :class:`EngineGenerator` with a tokenizer).
    answer_fn : callable, optional
        ``answer_fn(problem, completion_tokens)`` → answer to vote on / report.
    tree_factory : callable, optional
        ``tree_factory(root_tokens)`` → a tree (default :class:`o1search.SearchTree`); must
        also provide ``from_bytes``.

    Raises
    ------
    ValueError
        Empty batch, or an algorithm that needs an evaluator without one.
    TypeError
        Problems that are not :class:`SearchProblem`.
    """

    def __init__(self, algorithm: Algorithm, problems: Sequence[SearchProblem], generator: Any,
                 evaluator: Any = None, *, decoder: Decoder | None = None,
                 answer_fn: AnswerFn | None = None, tree_factory: Any = None) -> None:
        if not isinstance(algorithm, Algorithm):
            raise TypeError(f"algorithm must be an o1search.search Algorithm, got "
                            f"{type(algorithm).__name__}")
        problems = list(problems)
        if not problems:
            raise ValueError("Search: no problems given")
        for i, p in enumerate(problems):
            if not isinstance(p, SearchProblem):
                raise TypeError(f"problems[{i}] is a {type(p).__name__}, not a SearchProblem "
                                "(see problems_from_task)")
        if not callable(getattr(generator, "generate", None)):
            raise TypeError("generator must have a generate(requests) method")
        if evaluator is not None and not callable(getattr(evaluator, "evaluate", None)):
            raise TypeError("evaluator must have an evaluate(requests) method")
        if getattr(algorithm, "needs_evaluator", False) and evaluator is None:
            raise ValueError(f"{algorithm.name} needs an evaluator (a PRM, value model or "
                             "VerifierEvaluator)")
        if tree_factory is None:
            from o1search.tree import SearchTree

            tree_factory = SearchTree
        self.algorithm = algorithm
        self.problems = problems
        self.generator = generator
        self.evaluator = evaluator
        self.decoder = decoder if decoder is not None else getattr(generator, "decoder", None)
        self.answer_fn = answer_fn
        self.tree_factory = tree_factory
        self._broken: str | None = None
        self.states = [ProblemState(i, p, tree_factory(list(p.prompt)),
                                    has_evaluator=evaluator is not None)
                       for i, p in enumerate(problems)]
        for st in self.states:
            algorithm.init(st)

    # ------------------------------------------------------------------ running
    @property
    def done(self) -> bool:
        """Whether every problem has stopped."""
        return all(st.done for st in self.states)

    def step(self) -> None:
        """Run one round of every unfinished problem (batched together).

        Raises
        ------
        RuntimeError
            When a previous round failed part way (resume from a checkpoint instead).
        ValueError, TypeError
            A generator or evaluator that breaks its contract.
        """
        if self._broken:
            raise RuntimeError(f"this search failed in a previous round ({self._broken}); "
                               "resume from a checkpoint")
        active = [st for st in self.states if not st.done]
        if not active:
            return
        start = time.perf_counter()
        try:
            self._run_round(active)
        except BaseException as exc:
            self._broken = f"{type(exc).__name__}: {exc}"
            raise
        elapsed = time.perf_counter() - start
        for st in active:
            st.round += 1
            st.compute.rounds += 1
            st.compute.wall_time_s += elapsed

    def _run_round(self, active: list[ProblemState]) -> None:
        pending: dict[int, tuple[Round, Any]] = {}

        def advance(st: ProblemState, co: Round, value: Any, first: bool = False) -> None:
            try:
                cmd = next(co) if first else co.send(value)
            except StopIteration:
                pending.pop(st.index, None)
                return
            if not isinstance(cmd, (Generate, Evaluate)):
                raise TypeError(f"{self.algorithm.name} yielded {type(cmd).__name__}")
            pending[st.index] = (co, cmd)

        by_index = {st.index: st for st in active}
        for st in active:
            advance(st, self.algorithm.round(st), None, first=True)
        while pending:
            for i, (co, cmd) in list(pending.items()):
                if isinstance(cmd, Generate):
                    fitted = self._fit_budget(by_index[i], cmd)
                    if fitted is None:
                        # Not one token per sample is left: the problem ends here, its
                        # choice made from what it has.
                        co.close()
                        del pending[i]
                        by_index[i].stop("token_budget")
                    elif fitted is not cmd:
                        pending[i] = (co, fitted)
            items = sorted(pending.items())
            replies: dict[int, Any] = {}
            gen = [(i, cmd) for i, (_, cmd) in items if isinstance(cmd, Generate)]
            ev = [(i, cmd) for i, (_, cmd) in items if isinstance(cmd, Evaluate)]
            flat = [r for _, cmd in gen for r in cmd.requests]
            if flat:
                raw = list(self.generator.generate(flat))
                if len(raw) != len(flat):
                    raise ValueError(f"the generator returned {len(raw)} results for "
                                     f"{len(flat)} requests")
            pos = 0
            for i, cmd in gen:
                st = by_index[i]
                outs = []
                for r in cmd.requests:
                    o = _as_output(raw[pos], r, self.algorithm.name)
                    pos += 1
                    outs.append(o)
                    st.compute.requests += 1
                    st.compute.samples += r.n
                    st.compute.generated_tokens += sum(len(c.tokens) for c in o)
                    st.compute.prefilled_tokens += o.prefilled_tokens
                    st.compute.reused_tokens += o.reused_tokens
                if cmd.requests:
                    st.compute.generator_calls += 1
                replies[i] = outs
            flat_e = [r for _, cmd in ev for r in cmd.requests]
            if flat_e:
                if self.evaluator is None:
                    raise ValueError(f"{self.algorithm.name} needs an evaluator for this "
                                     "configuration")
                vals = _check_values(self.evaluator.evaluate(flat_e), len(flat_e))
            pos = 0
            for i, cmd in ev:
                n = len(cmd.requests)
                replies[i] = vals[pos:pos + n] if n else []
                pos += n
                by_index[i].compute.evaluated += n
            for i, (co, _) in items:
                advance(by_index[i], co, replies[i])

    def _fit_budget(self, st: ProblemState, cmd: Generate) -> Generate | None:
        """``cmd`` shortened so that even if every sample runs to its limit the problem stays
        within a hard ``token_budget``; None when not one token per sample is left."""
        c = self.algorithm.config
        budget = getattr(c, "token_budget", None)
        if budget is None or not getattr(c, "hard_budget", False) or not cmd.requests:
            return cmd
        left = budget - st.compute.generated_tokens
        samples = sum(r.n for r in cmd.requests)
        if sum(r.n * r.max_new_tokens for r in cmd.requests) <= left:
            return cmd
        if left < samples:
            return None
        # The largest per-sample cap m with sum(n * min(max_new, m)) <= left: long requests
        # are shortened first, short ones keep their limit.
        lo, hi = 1, max(r.max_new_tokens for r in cmd.requests)
        while lo < hi:
            m = (lo + hi + 1) // 2
            if sum(r.n * min(r.max_new_tokens, m) for r in cmd.requests) <= left:
                lo = m
            else:
                hi = m - 1
        return Generate(tuple(r if r.max_new_tokens <= lo else
                              dataclasses.replace(r, max_new_tokens=lo) for r in cmd.requests))

    def run(self, max_rounds: int | None = None) -> list[SearchResult]:
        """Run rounds until every problem stops (or ``max_rounds`` more rounds).

        Parameters
        ----------
        max_rounds : int, optional
            Stop after this many rounds even if problems are unfinished (their results are
            then the best so far).

        Returns
        -------
        list of SearchResult
            One per problem, in batch order.
        """
        n = 0
        while not self.done and (max_rounds is None or n < max_rounds):
            self.step()
            n += 1
        return self.results()

    def results(self) -> list[SearchResult]:
        """The current answer of every problem (final once :attr:`done`)."""
        out = []
        for st in self.states:
            def answer_of(tokens: Sequence[int], _st: ProblemState = st) -> Hashable | None:
                if self.answer_fn is None:
                    return tuple(tokens)
                return self.answer_fn(_st.problem.problem, tuple(tokens))

            ch = self.algorithm.choose(st, answer_of)
            info = dict(ch.info)
            info.setdefault("stop_reason", st.stop_reason or "unfinished")
            out.append(SearchResult(
                index=st.index,
                completion=tuple(ch.completion),
                path=tuple(st.problem.prompt) + tuple(ch.completion),
                text=self.decoder(list(ch.completion)) if self.decoder else None,
                answer=(self.answer_fn(st.problem.problem, tuple(ch.completion))
                        if self.answer_fn else None),
                score=float(ch.score),
                finished=bool(ch.finished),
                node=int(ch.node),
                tree=st.tree,
                compute=SearchCompute.from_dict(st.compute.to_dict()),
                info=info,
            ))
        return out

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> bytes:
        """Save the whole search between rounds (trees, counters, algorithm state).

        Returns
        -------
        bytes
            Pass to :meth:`resume` with the same algorithm config and problems.

        Raises
        ------
        RuntimeError
            After a failed round (the state is inconsistent).
        """
        if self._broken:
            raise RuntimeError("cannot checkpoint a search whose last round failed")
        doc = {
            "format": _FORMAT,
            "algorithm": self.algorithm.name,
            "config": config_to_dict(self.algorithm.config),
            "problems": [_prompt_digest(p) for p in self.problems],
            "states": [{
                "tree": base64.b64encode(st.tree.to_bytes()).decode("ascii"),
                "round": st.round,
                "done": st.done,
                "stop_reason": st.stop_reason,
                "compute": st.compute.to_dict(),
                "data": st.data,
            } for st in self.states],
        }
        return _MAGIC + json.dumps(doc, separators=(",", ":")).encode("utf-8")

    @classmethod
    def resume(cls, data: bytes, algorithm: Algorithm, problems: Sequence[SearchProblem],
               generator: Any, evaluator: Any = None, **kwargs: Any) -> Search:
        """Continue a search saved with :meth:`checkpoint`.

        Parameters
        ----------
        data : bytes
        algorithm, problems, generator, evaluator, **kwargs
            As for the constructor; the algorithm (name and config) and the problems'
            prompts and seeds must be the ones the checkpoint was made with.

        Returns
        -------
        Search

        Raises
        ------
        ValueError
            Not a checkpoint, corrupted, or made with another algorithm, config or problems.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("Search.resume: data must be bytes")
        data = bytes(data)
        if not data.startswith(_MAGIC):
            raise ValueError("Search.resume: not a search checkpoint (bad magic)")
        try:
            doc = json.loads(data[len(_MAGIC):].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"Search.resume: corrupted checkpoint ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise ValueError("Search.resume: unsupported checkpoint format")
        search = cls(algorithm, problems, generator, evaluator, **kwargs)
        if doc.get("algorithm") != algorithm.name:
            raise ValueError(f"Search.resume: the checkpoint is of {doc.get('algorithm')!r}, "
                             f"not {algorithm.name!r}")
        if doc.get("config") != _canonical(config_to_dict(algorithm.config)):
            raise ValueError("Search.resume: the checkpoint was made with a different config; "
                             "pass the config it was made with")
        if doc.get("problems") != [_prompt_digest(p) for p in search.problems]:
            raise ValueError("Search.resume: the problems (prompts or seeds) differ from the "
                             "checkpoint's")
        try:
            for st, s in zip(search.states, doc["states"], strict=True):
                st.tree = search.tree_factory.from_bytes(base64.b64decode(s["tree"]))
                st.round = int(s["round"])
                st.done = bool(s["done"])
                st.stop_reason = str(s["stop_reason"])
                st.compute = SearchCompute.from_dict(s["compute"])
                st.data = s["data"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"Search.resume: corrupted checkpoint ({exc})") from None
        return search
