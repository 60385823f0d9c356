"""Method presets: a search algorithm sized for a token budget per problem.

* :func:`make_algorithm` — the sizes ``o1search demo`` and ``o1search search`` use
  (:data:`ALGORITHMS`), tuned for the character policy's Countdown solutions;
* :func:`method_config` — the sizes of the equal-compute comparisons (:data:`METHODS`,
  ``benchmarks/bench_search.py``), documented formula by formula;
* :func:`algorithm_for` — the algorithm that runs a config.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from o1search.search import (
    BeamConfig,
    BestOfNConfig,
    DVTSConfig,
    LookaheadConfig,
    MCTSConfig,
    SamplingConfig,
)
from o1search.search.beam import BeamSearch
from o1search.search.best_of_n import BestOfN
from o1search.search.mcts import MCTS

__all__ = ["ALGORITHMS", "COMPLETION_TOKENS", "METHODS", "STEP_TOKENS", "algorithm_for",
           "make_algorithm", "method_config"]

#: Search methods the demo and ``o1search search`` know, in table order.
ALGORITHMS = ("greedy", "best_of_n", "beam", "mcts", "dvts")

#: Countdown completions of the default policy are about this many tokens (characters);
#: budgets are turned into sample counts with it.
COMPLETION_TOKENS = 32
STEP_TOKENS = 10


METHODS = ("greedy", "best_of_n", "best_of_n_majority", "best_of_n_weighted",
           "best_of_n_best", "beam", "mcts", "dvts", "lookahead")
"""Method names understood by :func:`method_config` and
:func:`o1search.experiments.compare.run_method`. ``best_of_n`` selects by reward
(``best``) when there is an evaluator, else by majority vote."""


def make_algorithm(name: str, budget: int | None, *, completion_tokens: int = COMPLETION_TOKENS,
                   max_new_tokens: int = 96, temperature: float = 1.0,
                   has_prm: bool = True, has_evaluator: bool | None = None,
                   top_p: float = 1.0, top_k: int = 0) -> Any:
    """A search algorithm sized for a token budget per problem.

    The budget is turned into about ``n = budget / completion_tokens`` whole solutions'
    worth of samples, and every method also gets ``token_budget=budget`` (a problem stops
    before a round that would start past it), so methods are compared at equal compute.

    Parameters:
        name: one of :data:`ALGORITHMS`.
        budget: generated tokens per problem (None: the sizes for ``n = 8`` and no cap;
            ignored by greedy).
        completion_tokens: typical solution length, to turn a budget into sample counts.
        max_new_tokens: longest completion.
        temperature: sampling temperature of the sampling methods.
        top_p, top_k: nucleus / top-k truncation of their sampling (1.0 / 0: none).
        has_prm: whether the evaluator scores partial paths (a PRM); without one, MCTS takes
            its values from roll-outs scored by the outcome evaluator.
        has_evaluator: whether best-of-N selects by the evaluator's score (default
            ``has_prm``); an outcome verifier selects too, a missing evaluator means a vote.

    Returns:
        An :class:`o1search.search.Algorithm`.

    Raises:
        ValueError: an unknown name, or a budget smaller than one solution.
    """
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; use one of {', '.join(ALGORITHMS)}")
    if name == "greedy":
        return BestOfN(BestOfNConfig(n=1, select="majority", max_completion_tokens=max_new_tokens,
                                     sampling=SamplingConfig(temperature=0.0)))
    if budget is not None and budget < completion_tokens:
        raise ValueError(f"budget {budget} tokens is too small for {name}: one solution takes "
                         f"about {completion_tokens}; use a budget >= {completion_tokens}")
    n = 8 if budget is None else max(2, budget // completion_tokens)
    sc = SamplingConfig(temperature=temperature, top_p=top_p, top_k=top_k)
    step = max(STEP_TOKENS * 3, 16)  # a step never needs more; the cap bounds a runaway one
    if name == "best_of_n":
        by_score = has_prm if has_evaluator is None else has_evaluator
        return BestOfN(BestOfNConfig(n=n, select="best" if by_score else "majority",
                                     max_completion_tokens=max_new_tokens, token_budget=budget,
                                     sampling=sc))
    if name == "beam":
        return BeamSearch(BeamConfig(width=max(1, n // 2), expansions_per_beam=2,
                                     token_budget=budget, sampling=sc, max_step_tokens=step,
                                     max_depth=12))
    if name == "dvts":
        return BeamSearch(DVTSConfig(width=1, num_subtrees=max(2, n // 2), expansions_per_beam=2,
                                     token_budget=budget, sampling=sc, max_step_tokens=step,
                                     max_depth=12))
    # MCTS: a simulation samples num_children steps (~STEP_TOKENS each); a solution has
    # ~completion/step steps, so 2n simulations of 2 children spend about n solutions.
    sims = max(4, 2 * n * completion_tokens // (2 * STEP_TOKENS))
    return MCTS(MCTSConfig(num_simulations=sims, leaves_per_round=4, num_children=2,
                           value_source="evaluator" if has_prm else "rollout",
                           max_completion_tokens=max_new_tokens, token_budget=budget,
                           sampling=sc, max_step_tokens=step, max_depth=12))


def method_config(method: str, token_budget: int | None, *, completion_tokens: float = 32.0,
                  value_source: str = "evaluator", has_evaluator: bool = True,
                  exact_verifier: bool = False, sampling: SamplingConfig | None = None,
                  max_completion_tokens: int = 128,
                  max_step_tokens: int = 48, **overrides: Any) -> Any:
    """The config ``method`` runs with at ``token_budget`` generated tokens per problem.

    Sizing (``L`` = ``completion_tokens``, the typical length of one whole completion;
    ``T`` = ``token_budget``):

    * ``best_of_n*``: ``n = max(1, T // L)`` completions in one round.
    * ``beam``: a whole beam search costs about ``width * M * L`` tokens (every round draws
      ``width * M`` steps, about ``L`` tokens per path in total), so
      ``M = expansions_per_beam = min(4, max(1, T // L))`` and
      ``width = max(1, T // (M L))``: a search that fits the budget finishes.
    * ``dvts``: ``width = 1``, ``M`` as for beam, ``num_subtrees = max(2, T // (M L))``.
    * ``lookahead``: beam sizing with a 2-step greedy roll-out per candidate, whose tokens
      count as well, so the budget is halved for sizing.
    * ``mcts``: ``num_children = clamp(round(3 sqrt(T / L)), 3, 12)`` — a leaf is expanded
      once (no progressive widening), so a short-horizon tree with few children runs out of
      open leaves long before a large budget is spent; leaves per round chosen so a round
      costs about ``T / 4`` (a roll-out costs about ``L`` per child with
      ``value_source="rollout"``, a step about ``L / 3``); ``num_simulations`` unbounded in
      practice — the budget stops it. Every MCTS config gets ``complete_answer=True`` (a
      search that ends without a finished path completes its chosen path greedily).
    * ``mcts`` with ``exact_verifier=True`` (the evaluator is an exact outcome verifier, so
      reward 1 certifies a solution): greedy roll-outs reused along their own path, the
      root rolled out first, ``stop_at_reward=1.0``, progressive widening (``widening=3``,
      ``max_fruitless=8``, ``fruitless_temperature=0.25``: a node whose expansions keep
      re-drawing known steps samples hotter), re-expansions drawn without replacement
      (``unique_expansions=True``: measured on Countdown, 20% of MCTS's tokens were
      re-drawn known steps before) and sequential expansions of ``num_children=2``
      samples, so a problem stops as soon as it is solved and tokens go to new steps, not to
      re-sampling known prefixes. Measured on Countdown (``benchmarks/bench_search.py``)
      this beat wider rounds and larger expansions at every budget tried.

    Every config gets ``token_budget=T``: a problem stops before the round that would start
    past it, so it generates at most ``T`` plus one round.

    Parameters
    ----------
    method : str
        One of :data:`METHODS` except ``"greedy"``.
    token_budget : int or None
        Generated tokens per problem (None: no cap; sizes as for ``16 L``).
    completion_tokens : float
        ``L`` (> 0); e.g. the mean greedy completion length.
    value_source : str
        MCTS values: ``"evaluator"`` (PRM step values) or ``"rollout"`` (verifier / ORM).
    has_evaluator : bool
        ``best_of_n`` selects by reward when True, by majority vote otherwise.
    exact_verifier : bool
        MCTS only: the evaluator is an exact outcome verifier (sizing above; implies
        ``value_source="rollout"``).
    sampling : SamplingConfig, optional
        Default temperature 1.
    max_completion_tokens, max_step_tokens : int
    **overrides
        Any field of the config (applied last, e.g. ``width=2``).

    Returns
    -------
    BestOfNConfig, BeamConfig, DVTSConfig, LookaheadConfig or MCTSConfig

    Raises
    ------
    ValueError
        Unknown method, bad budget or length, an override the config rejects.
    TypeError
        An override that is not a field of the config.
    """
    if method not in METHODS or method == "greedy":
        raise ValueError(f"unknown method {method!r}; use one of {METHODS[1:]}")
    if token_budget is not None and (isinstance(token_budget, bool)
                                     or not isinstance(token_budget, int) or token_budget < 1):
        raise ValueError(f"token_budget must be an int >= 1 or None, got {token_budget!r}")
    if not (isinstance(completion_tokens, (int, float)) and math.isfinite(completion_tokens)
            and completion_tokens > 0):
        raise ValueError(f"completion_tokens must be a number > 0, got {completion_tokens!r}")
    L = float(completion_tokens)
    T = float(token_budget) if token_budget is not None else 16 * L
    s = sampling if sampling is not None else SamplingConfig()
    common: dict[str, Any] = {"token_budget": token_budget, "sampling": s,
                              "max_step_tokens": max_step_tokens}
    if method.startswith("best_of_n"):
        select = method[len("best_of_n_"):] if method != "best_of_n" else (
            "best" if has_evaluator else "majority")
        cfg: Any = BestOfNConfig(n=max(1, int(T // L)), select=select,
                                 max_completion_tokens=max_completion_tokens, **common)
    elif method in ("beam", "dvts", "lookahead"):
        t = T / 2 if method == "lookahead" else T
        m = min(4, max(1, int(t // L)))
        k = max(1, int(t // (m * L)))
        if method == "beam":
            cfg = BeamConfig(width=k, expansions_per_beam=m, **common)
        elif method == "dvts":
            cfg = DVTSConfig(width=1, expansions_per_beam=m, num_subtrees=max(2, k), **common)
        else:
            cfg = LookaheadConfig(width=k, expansions_per_beam=m, lookahead=2, **common)
    else:
        children = max(3, min(12, round(3.0 * math.sqrt(T / L))))
        per_child = L if value_source == "rollout" else L / 3.0
        leaves = max(1, min(16, round(T / (4 * children * per_child))))
        if exact_verifier:
            cfg = MCTSConfig(num_simulations=1_000_000, leaves_per_round=1, num_children=2,
                             value_source="rollout", rollout_temperature=0.0,
                             root_rollout=True, stop_at_reward=1.0, widening=3.0,
                             max_fruitless=8, fruitless_temperature=0.25,
                             unique_expansions=True, complete_answer=True,
                             max_completion_tokens=max_completion_tokens, **common)
        else:
            cfg = MCTSConfig(num_simulations=1_000_000, leaves_per_round=leaves,
                             num_children=children, value_source=value_source,
                             complete_answer=True,
                             max_completion_tokens=max_completion_tokens, **common)
    return replace(cfg, **overrides) if overrides else cfg


def algorithm_for(cfg: Any) -> Any:
    """The search algorithm that runs ``cfg`` (a config of :func:`method_config`).

    Raises:
        TypeError: a config no algorithm runs.
    """
    if isinstance(cfg, BestOfNConfig):
        return BestOfN(cfg)
    if isinstance(cfg, BeamConfig):
        return BeamSearch(cfg)
    if isinstance(cfg, MCTSConfig):
        return MCTS(cfg)
    raise TypeError(f"no algorithm for {type(cfg).__name__}")
