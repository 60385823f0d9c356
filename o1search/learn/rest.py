"""ReST / expert iteration (ReST-EM, STaR, RFT): search → keep verified solutions → SFT.

One round on a set of training problems:

1. a greedy pass through the :class:`~o1search.engine.Engine` finds what the policy already
   solves (its verified greedy solutions can join the data);
2. the search (best-of-N, MCTS or beam, through :class:`~o1search.search.Search`) runs on the
   problems it fails (or on all), and every distinct path of the tree that the verifier
   accepts is a candidate solution, not only the one the search picks;
3. up to ``max_solutions_per_problem`` solutions per problem join a buffer; the SFT mix is
   this round's data plus a ``keep_previous`` share drawn from earlier rounds and an
   ``anchor_share`` drawn from anchor examples (e.g. the policy's own SFT data), which keep
   the policy from drifting towards the newest, narrowest data;
4. :func:`~o1search.learn.sft.train_sft` for ``sft.max_steps`` steps (fewer when
   ``max_epochs`` caps a small mix), then the engine gets the new weights
   (``engine.load_weights``, which flushes its KV cache).

With ``use_search=False`` step 2 is skipped: the round is expert iteration on the policy's
own verified greedy solutions, the control that isolates what the search contributes.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Sequence
from typing import Any

from o1search.learn.rest_config import ReSTConfig
from o1search.learn.rollouts import engine_for, sample_rollouts
from o1search.learn.sft import train_sft

__all__ = ["ReSTTrainer", "collect_solutions", "make_search_algorithm", "mix_round_data"]


def make_search_algorithm(config: ReSTConfig) -> Any:
    """The :class:`o1search.search.Algorithm` a ReST round searches with."""
    from o1search.search import (
        MCTS,
        BeamConfig,
        BeamSearch,
        BestOfN,
        BestOfNConfig,
        MCTSConfig,
        SamplingConfig,
    )

    sc = SamplingConfig(temperature=config.temperature)
    if config.algorithm == "best_of_n":
        cfg = config.search_config or BestOfNConfig(
            n=config.num_samples, select="best", max_completion_tokens=config.max_new_tokens,
            sampling=sc)
        return BestOfN(cfg)
    if config.algorithm == "mcts":
        cfg = config.search_config or MCTSConfig(
            num_simulations=config.num_samples, leaves_per_round=4, num_children=4,
            value_source="rollout", num_rollouts=1, max_completion_tokens=config.max_new_tokens,
            sampling=sc, max_step_tokens=24, max_depth=12)
        return MCTS(cfg)
    cfg = config.search_config or BeamConfig(
        width=max(1, config.num_samples // 4), expansions_per_beam=4, sampling=sc,
        max_step_tokens=24, max_depth=12)
    return BeamSearch(cfg)


def collect_solutions(task: Any, problems: Sequence[Any], results: Sequence[Any],
                      decode: Any, *, min_reward: float = 1.0, max_per_problem: int = 2,
                      seed: int = 0) -> list[list[str]]:
    """Verified solutions found by a search, per problem.

    Candidates are the chosen completion of each result and every terminal path of its
    tree; each is decoded once and judged by ``task.verify`` (the search's own scores are
    not trusted: only the verifier judges). Distinct texts reaching ``min_reward`` are kept,
    at most ``max_per_problem`` (a seeded random choice among them).

    Parameters:
        task: gives ``verify(problem, text)``.
        problems: the problems searched, in the order of ``results``.
        results: :class:`o1search.search.SearchResult` s.
        decode: token ids → text.
        min_reward: acceptance threshold.
        max_per_problem: >= 1.
        seed: seed of the choice among many solutions.

    Returns:
        ``solutions[i]``: texts for problem ``i`` (possibly empty).

    Raises:
        ValueError: ``problems`` and ``results`` differ in length.
    """
    if len(problems) != len(results):
        raise ValueError(f"{len(problems)} problems but {len(results)} results")
    out: list[list[str]] = []
    for i, (prob, res) in enumerate(zip(problems, results)):
        comps = [tuple(res.completion)]
        tree = res.tree
        plen = len(res.path) - len(res.completion)
        for node in tree.leaves():
            if bool(tree.is_terminal(int(node))):
                comps.append(tuple(int(t) for t in tree.path_tokens(int(node))[plen:]))
        seen: set[str] = set()
        good: list[str] = []
        for c in comps:
            text = decode(list(c))
            if text in seen:
                continue
            seen.add(text)
            if float(task.verify(prob, text)) >= min_reward - 1e-9:
                good.append(text)
        rng = random.Random(f"rest-pick:{seed}:{i}")
        if len(good) > max_per_problem:
            good = rng.sample(good, max_per_problem)
        out.append(good)
    return out


def mix_round_data(new: Sequence[tuple[str, str]], previous: Sequence[tuple[str, str]],
                   anchor: Sequence[tuple[str, str]], *, keep_previous: float,
                   anchor_share: float,
                   rng: random.Random) -> tuple[list[tuple[str, str]], int, int]:
    """The SFT mix of a round: all new examples plus replayed shares of older data.

    With ``n`` new examples the mix holds about ``n / (1 - keep_previous - anchor_share)``
    examples, ``keep_previous`` of them drawn (without replacement) from ``previous`` and
    ``anchor_share`` from ``anchor`` (fewer when a source is smaller). With no new examples,
    all of ``previous`` is replayed (plus its ``anchor_share`` of anchor examples), so a
    round that finds nothing still rehearses what earlier rounds found.

    Parameters:
        new: this round's ``(prompt, completion)`` examples.
        previous: earlier rounds' examples.
        anchor: anchor examples (e.g. the data the policy was first trained on).
        keep_previous, anchor_share: shares in ``[0, 1)`` with a sum below 1.
        rng: draws the replayed examples.

    Returns:
        ``(mix, replayed, anchored)``: ``new`` followed by the replayed examples, and how
        many of those came from ``previous`` and from ``anchor``.

    Raises:
        ValueError: shares out of range.
    """
    if not (0 <= keep_previous < 1 and 0 <= anchor_share < 1
            and keep_previous + anchor_share < 1):
        raise ValueError(f"need 0 <= keep_previous, anchor_share and keep_previous + "
                         f"anchor_share < 1, got {keep_previous}, {anchor_share}")
    mix = list(new)
    if new:
        total = len(new) / (1 - keep_previous - anchor_share)
        want_prev = round(total * keep_previous)
    else:
        want_prev = len(previous) if keep_previous > 0 else 0
        total = want_prev / (1 - anchor_share)
    want_anchor = round(total * anchor_share)
    prev = rng.sample(list(previous), min(len(previous), want_prev))
    anch = rng.sample(list(anchor), min(len(anchor), want_anchor))
    return mix + prev + anch, len(prev), len(anch)


class ReSTTrainer:
    """Rounds of ReST / expert iteration.

    Parameters:
        model: the policy (trained in place).
        tokenizer: its tokenizer.
        task: the task (prompts and the verifier).
        config: a :class:`ReSTConfig`.
        engine: the search engine (default: an Engine over a copy of ``model``); it gets the
            new weights after each round.
        anchor_examples: ``[(prompt, completion), ...]`` replayed at ``config.anchor_share``
            of every round's mix (typically the data the policy was first trained on).

    Attributes:
        buffer: ``[(round, prompt, completion), ...]``, every solution kept so far.
    """

    def __init__(self, model: Any, tokenizer: Any, task: Any, config: ReSTConfig | None = None,
                 *, engine: Any = None,
                 anchor_examples: Sequence[tuple[str, str]] | None = None) -> None:
        config = ReSTConfig() if config is None else config
        if not isinstance(config, ReSTConfig):
            raise TypeError(f"config must be a ReSTConfig, got {type(config).__name__}")
        self.model = model
        self.tokenizer = tokenizer
        self.task = task
        self.config = config
        self.engine = engine if engine is not None else engine_for(model, tokenizer)
        self.buffer: list[tuple[int, str, str]] = []
        self.anchor_examples = [(str(p), str(c)) for p, c in (anchor_examples or [])]
        if config.anchor_share > 0 and not self.anchor_examples:
            raise ValueError("config.anchor_share > 0 needs anchor_examples (the data to "
                             "replay); pass them or set anchor_share=0")

    def state_dict(self) -> dict[str, Any]:
        """The data buffer (the policy is saved by the caller; SFT optimizers are per round)."""
        return {"buffer": [list(x) for x in self.buffer]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the engine gets the model's current weights."""
        self.buffer = [(int(r), str(p), str(c)) for r, p, c in state["buffer"]]
        self.engine.load_weights(self.model)

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def greedy_solutions(self, problems: Sequence[Any]) -> tuple[list[str | None], int]:
        """Greedy completions through the engine; ``(verified text or None per problem,
        generated tokens)``."""
        from o1search.policy import encode_prompt

        prompts = [encode_prompt(self.tokenizer, self.task.prompt(p)) for p in problems]
        roll = sample_rollouts(self.engine, prompts, num_samples=1,
                               max_new_tokens=self.config.max_new_tokens, temperature=0.0)
        out: list[str | None] = []
        for p, c in zip(problems, roll.completions):
            text = self._decode(c)
            out.append(text if self.task.verify(p, text) >= self.config.min_reward - 1e-9
                       else None)
        return out, roll.generated_tokens

    def search(self, problems: Sequence[Any], round_index: int) -> tuple[list[Any], Any]:
        """Run the configured search on ``problems``; ``(results, generator stats)``."""
        from o1search.policy import encode_prompt
        from o1search.search import (
            EngineGenerator,
            Search,
            VerifierEvaluator,
            derive_seed,
            problems_from_task,
        )

        cfg = self.config
        sps = problems_from_task(self.task, problems, self.tokenizer,
                                 seed=derive_seed(cfg.seed, "rest", round_index) & (2**62 - 1),
                                 encode=lambda t: encode_prompt(self.tokenizer, t))
        gen = EngineGenerator(self.engine, self.tokenizer, step_delimiter="\n",
                              final_prefix=cfg.final_prefix)
        ev = VerifierEvaluator(self.task, self.tokenizer)
        results = Search(make_search_algorithm(cfg), sps, gen, ev).run()
        return results, gen.stats

    def round(self, problems: Sequence[Any], round_index: int, *,
              sft_steps: int | None = None) -> dict[str, float]:
        """One ReST round on ``problems`` (see the module docstring).

        Parameters:
            problems: the round's training problems (only the verifier judges them).
            round_index: 0-based; seeds the search, the data mix and the SFT run.
            sft_steps: train exactly this many SFT steps (e.g. to match another arm's
                compute); default ``sft.max_steps`` capped by ``max_epochs``.

        Returns:
            Metrics: ``greedy_solved``, ``searched``, ``search_solved``, ``new_examples``,
            ``train_examples``, ``replayed_examples``, ``anchor_examples``, ``sft_steps``,
            ``sft_loss``, ``generated_tokens``, ``search_seconds``, ``sft_seconds``.

        Raises:
            ValueError: no problems, or ``sft_steps`` below 1.
        """
        if len(problems) == 0:
            raise ValueError("a ReST round needs problems")
        if sft_steps is not None and sft_steps < 1:
            raise ValueError(f"sft_steps must be >= 1 or None, got {sft_steps}")
        cfg = self.config
        t0 = time.perf_counter()
        self.engine.flush_cache()
        greedy, gen_tokens = self.greedy_solutions(problems)
        targets = [] if not cfg.use_search else [
            i for i, g in enumerate(greedy) if g is None or not cfg.only_failed]
        new: list[tuple[str, str]] = []
        solved = 0
        if targets:
            sub = [problems[i] for i in targets]
            results, stats = self.search(sub, round_index)
            gen_tokens += stats.generated_tokens
            sols = collect_solutions(self.task, sub, results, self._decode,
                                     min_reward=cfg.min_reward,
                                     max_per_problem=cfg.max_solutions_per_problem,
                                     seed=cfg.seed + round_index)
            for p, s in zip(sub, sols):
                solved += bool(s)
                new += [(self.task.prompt(p), t) for t in s]
        if cfg.include_greedy or not cfg.use_search:
            covered = {self.task.prompt(problems[i]) for i in targets}
            for p, g in zip(problems, greedy):
                if g is not None and self.task.prompt(p) not in covered:
                    new.append((self.task.prompt(p), g))
        search_s = time.perf_counter() - t0
        rng = random.Random(f"rest-mix:{cfg.seed}:{round_index}")
        old = [(p, c) for r, p, c in self.buffer if r < round_index]
        mix, n_prev, n_anchor = mix_round_data(
            new, old, self.anchor_examples, keep_previous=cfg.keep_previous,
            anchor_share=cfg.anchor_share, rng=rng)
        self.buffer += [(round_index, p, c) for p, c in new]
        metrics = {
            "greedy_solved": float(sum(g is not None for g in greedy)),
            "searched": float(len(targets)),
            "search_solved": float(solved),
            "new_examples": float(len(new)),
            "train_examples": float(len(mix)),
            "replayed_examples": float(n_prev),
            "anchor_examples": float(n_anchor),
            "generated_tokens": float(gen_tokens),
            "search_seconds": search_s,
            "sft_steps": 0.0,
            "sft_loss": 0.0,
            "sft_seconds": 0.0,
        }
        if mix:
            steps = sft_steps if sft_steps is not None else self._round_steps(len(mix))
            sft_cfg = dataclasses.replace(cfg.sft, seed=cfg.sft.seed + round_index,
                                          max_steps=steps)
            res = train_sft(self.model, self.tokenizer, mix, sft_cfg)
            metrics.update(sft_steps=float(res.steps), sft_seconds=res.seconds,
                           sft_loss=sum(res.losses[-10:]) / max(1, len(res.losses[-10:])))
            self.engine.load_weights(self.model)
        return metrics

    def _round_steps(self, n_examples: int) -> int:
        """``sft.max_steps``, capped at ``max_epochs`` passes over ``n_examples``."""
        cfg = self.config
        steps = int(cfg.sft.max_steps)
        if cfg.max_epochs is not None:
            per_step = cfg.sft.batch_size * cfg.sft.grad_accum_steps
            steps = min(steps, max(1, math.ceil(cfg.max_epochs * n_examples / per_step)))
        return steps
