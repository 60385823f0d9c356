"""Configuration of the search algorithms: frozen dataclasses with defaults that work.

Every config validates itself in ``__post_init__`` and says what to set instead. Budgets:
``token_budget`` (generated tokens per problem, rollouts and lookahead included) stops a
problem before the round that would start past it, so a problem never generates more than
``token_budget`` plus one round's worth; with ``hard_budget=True`` it never generates more
than ``token_budget`` at all. Compare methods at the tokens they spent.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from o1search.engine.sampling import SamplingParams

__all__ = [
    "BeamConfig",
    "BestOfNConfig",
    "DVTSConfig",
    "LookaheadConfig",
    "MCTSConfig",
    "RevisionConfig",
    "SamplingConfig",
]


def _int(cfg: str, name: str, value: Any, lo: int, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{cfg}.{name} must be an int, got {type(value).__name__}")
    if value < lo:
        raise ValueError(f"{cfg}.{name} must be >= {lo}, got {value}" + (f"; {hint}" if hint
                                                                          else ""))


def _opt_int(cfg: str, name: str, value: Any, lo: int, hint: str = "") -> None:
    if value is not None:
        _int(cfg, name, value, lo, hint)


def _float(cfg: str, name: str, value: Any, lo: float, hi: float = math.inf, *,
           lo_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{cfg}.{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < lo or value > hi or (lo_open and value == lo):
        op = ">" if lo_open else ">="
        rng = f"{op} {lo}" + ("" if hi == math.inf else f" and <= {hi}")
        raise ValueError(f"{cfg}.{name} must be finite and {rng}, got {value!r}")


def _choice(cfg: str, name: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ValueError(f"{cfg}.{name} must be one of {options}, got {value!r}")


@dataclass(frozen=True)
class SamplingConfig:
    """How the policy samples (mapped onto ``o1search.engine.SamplingParams``; the seed comes
    from the problem and the position in the search).

    Attributes
    ----------
    temperature : float
        ``0`` = greedy; sampling-based search wants > 0 (default 1.0).
    top_p : float
        Nucleus mass in ``(0, 1]``.
    top_k : int
        ``0`` = no limit.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self) -> None:
        _float("SamplingConfig", "temperature", self.temperature, 0.0)
        _float("SamplingConfig", "top_p", self.top_p, 0.0, 1.0, lo_open=True)
        _int("SamplingConfig", "top_k", self.top_k, 0)

    def params(self, seed: int) -> SamplingParams:
        """The engine's sampling parameters with ``seed``."""
        return SamplingParams(temperature=float(self.temperature), top_p=float(self.top_p),
                              top_k=self.top_k, seed=seed)


def _common(cfg: Any, name: str) -> None:
    if not isinstance(cfg.sampling, SamplingConfig):
        raise TypeError(f"{name}.sampling must be a SamplingConfig")
    _int(name, "max_step_tokens", cfg.max_step_tokens, 1)
    _opt_int(name, "token_budget", cfg.token_budget, 1,
             "use None for no token budget")
    if not isinstance(cfg.hard_budget, bool):
        raise TypeError(f"{name}.hard_budget must be a bool, got {cfg.hard_budget!r}")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A config as a plain, JSON-able dict (for checkpoints)."""
    return asdict(cfg)


@dataclass(frozen=True)
class BestOfNConfig:
    """Best-of-N: sample ``n`` whole completions, score them, pick one.

    Attributes
    ----------
    n : int
        Completions per problem.
    select : str
        ``"majority"`` (most frequent answer; ties broken by reward when an evaluator is
        given), ``"weighted"`` (answer with the largest summed reward) or ``"best"`` (highest
        reward). ``"weighted"`` and ``"best"`` need an evaluator; votes need ``answer_fn``
        (without one, identical completions vote together).
    samples_per_round : int or None
        Completions drawn per round (None: all ``n`` at once). Smaller rounds let
        ``token_budget`` stop earlier.
    max_completion_tokens : int
        Token limit of one completion.
    token_budget : int or None
    hard_budget : bool
        Never generate past ``token_budget`` (see :class:`~o1search.search.loop.Search`):
        the last requests are shortened to fit, and a problem whose next requests cannot
        get one token per sample stops there. Default False: a round that starts under the
        budget runs whole.
    sampling : SamplingConfig
    max_step_tokens : int
        Unused by best-of-N (kept for a uniform interface).
    stop_at_reward : float or None
        Stop drawing once a completion scores at least this (needs an evaluator): with an
        exact verifier and small ``samples_per_round`` this is rejection sampling, which
        spends far fewer tokens than drawing all ``n`` on easy problems.
    """

    n: int = 8
    select: str = "majority"
    samples_per_round: int | None = None
    max_completion_tokens: int = 256
    token_budget: int | None = None
    hard_budget: bool = False
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    max_step_tokens: int = 64
    stop_at_reward: float | None = None

    def __post_init__(self) -> None:
        _int("BestOfNConfig", "n", self.n, 1)
        _choice("BestOfNConfig", "select", self.select, ("majority", "weighted", "best"))
        _opt_int("BestOfNConfig", "samples_per_round", self.samples_per_round, 1,
                 "use None to draw all n at once")
        _int("BestOfNConfig", "max_completion_tokens", self.max_completion_tokens, 1)
        if self.stop_at_reward is not None:
            _float("BestOfNConfig", "stop_at_reward", self.stop_at_reward, 0.0, 1.0)
        _common(self, "BestOfNConfig")


@dataclass(frozen=True)
class BeamConfig:
    """Step-level beam search (one loop also runs DVTS and lookahead search).

    Each round every live beam is extended by one step: a group (the whole search, or one
    DVTS subtree) draws ``width * expansions_per_beam`` samples split evenly over its live
    beams, the evaluator scores the new steps, and the best new paths fill the free slots:
    unfinished ones become the next beams, finished ones keep their slot for good
    (live + finished == width).

    Attributes
    ----------
    width : int
        Beams per group (N in the literature when ``num_subtrees == 1``).
    expansions_per_beam : int
        Samples per beam per round (M).
    num_subtrees : int
        DVTS: the root is expanded into this many distinct first steps, each the root of an
        independent beam search of ``width`` beams. 1 = plain beam search.
    lookahead : int
        Lookahead search: score a step by rolling it ``lookahead`` more steps forward (with
        ``lookahead_temperature``) and evaluating the end of the roll-out. 0 = score the step.
    lookahead_temperature : float
        Temperature of the roll-outs (0 = greedy, as in Snell et al. 2024).
    max_depth : int
        Steps at most; a path still unfinished there is stopped.
    dedupe : bool
        Merge identical sibling steps (they would waste beam slots).
    token_budget : int or None
    hard_budget : bool
        Never generate past ``token_budget`` (see :class:`~o1search.search.loop.Search`):
        the last requests are shortened to fit, and a problem whose next requests cannot
        get one token per sample stops there. Default False: a round that starts under the
        budget runs whole.
    sampling : SamplingConfig
    max_step_tokens : int
        Token limit of one step.
    """

    width: int = 4
    expansions_per_beam: int = 4
    num_subtrees: int = 1
    lookahead: int = 0
    lookahead_temperature: float = 0.0
    max_depth: int = 32
    dedupe: bool = True
    token_budget: int | None = None
    hard_budget: bool = False
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    max_step_tokens: int = 64

    def __post_init__(self) -> None:
        name = type(self).__name__
        _int(name, "width", self.width, 1)
        _int(name, "expansions_per_beam", self.expansions_per_beam, 1)
        _int(name, "num_subtrees", self.num_subtrees, 1, "use 1 for plain beam search")
        _int(name, "lookahead", self.lookahead, 0, "use 0 for no lookahead")
        _float(name, "lookahead_temperature", self.lookahead_temperature, 0.0)
        _int(name, "max_depth", self.max_depth, 1)
        if not isinstance(self.dedupe, bool):
            raise TypeError(f"{name}.dedupe must be a bool")
        _common(self, name)


@dataclass(frozen=True)
class DVTSConfig(BeamConfig):
    """Diverse verifier tree search (Beeching et al. 2024): ``num_subtrees`` independent
    beam searches of ``width`` beams under distinct first steps. See :class:`BeamConfig`."""

    width: int = 1
    num_subtrees: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_subtrees < 2:
            raise ValueError("DVTSConfig.num_subtrees must be >= 2 (for one subtree use "
                             "BeamConfig)")


@dataclass(frozen=True)
class LookaheadConfig(BeamConfig):
    """Lookahead search (Snell et al. 2024): beam search whose step scores come from
    ``lookahead``-step greedy roll-outs. See :class:`BeamConfig`."""

    lookahead: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lookahead < 1:
            raise ValueError("LookaheadConfig.lookahead must be >= 1 (for none use BeamConfig)")


@dataclass(frozen=True)
class MCTSConfig:
    """Monte-Carlo tree search with PUCT over reasoning steps.

    Attributes
    ----------
    num_simulations : int
        Leaf expansions per problem at most.
    leaves_per_round : int
        Leaves selected per round with virtual loss, so one generator call expands many
        leaves (1 = sequential MCTS).
    num_children : int
        Samples drawn per expanded leaf (identical ones merged when ``dedupe``).
    c_puct : float
        Exploration constant of PUCT.
    virtual_loss : float
        Value subtracted per pending selection (discourages picking the same path twice in
        one round).
    min_max : bool
        Normalize Q to [0, 1] by the smallest / largest backed-up value.
    prior_temperature : float
        Priors are the softmax of length-normalized step log-probabilities over siblings at
        this temperature.
    value_source : str
        ``"evaluator"``: a new step's value is the evaluator's score of its path (PRM / value
        model). ``"rollout"``: the mean evaluator reward of ``num_rollouts`` whole
        completions sampled from the step (verifier / ORM).
    num_rollouts : int
        Roll-outs per new step (``value_source="rollout"``).
    rollout_temperature : float
    max_completion_tokens : int
        Token limit of one roll-out.
    final_by : str
        Answer: descend from the root by ``"value"`` (mean backed-up value, default) or
        ``"visits"``. Visits mislead once a subtree is solved: the tree never re-selects
        terminal leaves, so a closed subtree stops collecting visits while open, worse
        subtrees keep gaining them.
    max_depth : int
        A step at this depth that is not finished becomes terminal with its value.
    dedupe : bool
        Merge identical sibling steps, also against the children a node already has (a
        re-expanded node only gains new steps).
    widening : float
        Progressive widening (0 = off: every leaf is expanded once, by the native PUCT
        ``select``). With ``w > 0`` a node that has been expanded ``e`` times and visited ``N``
        times is expanded again (``num_children`` more samples) when it is reached while
        ``e < 1 + floor(w * N ** widening_exponent)``, and always when every child is closed
        (terminal or exhausted); a node whose last ``max_fruitless`` expansions added no new
        step is closed.
        This lets a small tree keep spending its budget instead of running out of leaves.
    widening_exponent : float
        ``alpha`` in ``N ** alpha`` (in ``(0, 1]``).
    max_fruitless : int
        With widening: consecutive expansions that add nothing new before a node is closed.
    fruitless_temperature : float
        With widening: each consecutive fruitless expansion of a node raises the sampling
        temperature of its next expansion by this much (0 = off), so a node whose likely
        steps are all known samples its less likely ones instead of re-drawing duplicates.
    unique_expansions : bool
        Re-expanding a node draws *without replacement* with respect to the steps it already
        has (those drawn at the same temperature, with the per-token log-probabilities the
        generator reported): no tokens are spent re-drawing known steps, and a node whose
        known steps hold all but 0.1% of the probability closes. Needs a generator that
        honours ``StepRequest.exclude`` (the Engine's); others simply repeat steps.
    root_rollout : bool
        ``value_source="rollout"`` only: the first round rolls out the root itself (with a
        greedy ``rollout_temperature`` this is greedy decoding), so a problem the policy
        solves outright costs one completion.
    stop_at_reward : float or None
        Stop a problem as soon as a finished path (a finished step or a finished roll-out)
        scores at least this. Use ``1.0`` with an exact outcome verifier, whose reward 1 is a
        certificate that nothing better exists; None (default) never stops early.
    complete_answer : bool
        When the search stops without any finished path, spend one more request completing
        the chosen path greedily (its tokens count as generated), so the answer is finished.
    token_budget : int or None
    hard_budget : bool
        Never generate past ``token_budget`` (see :class:`~o1search.search.loop.Search`):
        the last requests are shortened to fit, and a problem whose next requests cannot
        get one token per sample stops there. Default False: a round that starts under the
        budget runs whole.
    sampling : SamplingConfig
    max_step_tokens : int

    Roll-outs (``value_source="rollout"``) are recorded: a finished roll-out is a finished
    path the answer may be taken from (its tokens were generated and counted). With a
    greedy ``rollout_temperature`` a roll-out is also reused: a new child whose step is the
    first step of its parent's recorded roll-out gets the rest of it as its own roll-out
    (greedy decoding would regenerate exactly that), costing no tokens.

    The answer: the best finished path anywhere in the tree (finished steps and finished
    roll-outs) by reward, ties by the ``final_by`` statistic of its node; with no finished
    path, descend from the root by ``final_by`` and complete the leaf with its best roll-out
    when there is one.
    """

    num_simulations: int = 32
    leaves_per_round: int = 4
    num_children: int = 4
    c_puct: float = 1.25
    virtual_loss: float = 1.0
    min_max: bool = False
    prior_temperature: float = 1.0
    value_source: str = "evaluator"
    num_rollouts: int = 1
    rollout_temperature: float = 1.0
    max_completion_tokens: int = 256
    final_by: str = "value"
    max_depth: int = 32
    dedupe: bool = True
    widening: float = 0.0
    widening_exponent: float = 0.5
    max_fruitless: int = 2
    fruitless_temperature: float = 0.0
    unique_expansions: bool = False
    root_rollout: bool = False
    stop_at_reward: float | None = None
    complete_answer: bool = False
    token_budget: int | None = None
    hard_budget: bool = False
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    max_step_tokens: int = 64

    def __post_init__(self) -> None:
        n = "MCTSConfig"
        _int(n, "num_simulations", self.num_simulations, 1)
        _int(n, "leaves_per_round", self.leaves_per_round, 1, "use 1 for sequential MCTS")
        _int(n, "num_children", self.num_children, 1)
        _float(n, "c_puct", self.c_puct, 0.0)
        _float(n, "virtual_loss", self.virtual_loss, 0.0)
        if not isinstance(self.min_max, bool):
            raise TypeError("MCTSConfig.min_max must be a bool")
        _float(n, "prior_temperature", self.prior_temperature, 0.0, lo_open=True)
        _choice(n, "value_source", self.value_source, ("evaluator", "rollout"))
        _int(n, "num_rollouts", self.num_rollouts, 1)
        _float(n, "rollout_temperature", self.rollout_temperature, 0.0)
        _int(n, "max_completion_tokens", self.max_completion_tokens, 1)
        _choice(n, "final_by", self.final_by, ("visits", "value"))
        _int(n, "max_depth", self.max_depth, 1)
        if not isinstance(self.dedupe, bool):
            raise TypeError("MCTSConfig.dedupe must be a bool")
        _float(n, "widening", self.widening, 0.0)
        _float(n, "widening_exponent", self.widening_exponent, 0.0, 1.0, lo_open=True)
        _int(n, "max_fruitless", self.max_fruitless, 1)
        _float(n, "fruitless_temperature", self.fruitless_temperature, 0.0)
        if not isinstance(self.unique_expansions, bool):
            raise TypeError("MCTSConfig.unique_expansions must be a bool")
        for flag in ("root_rollout", "complete_answer"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"MCTSConfig.{flag} must be a bool")
        if self.stop_at_reward is not None:
            _float(n, "stop_at_reward", self.stop_at_reward, 0.0, 1.0)
        _common(self, n)


@dataclass(frozen=True)
class RevisionConfig:
    """Sequential revision (self-refine), alone or with parallel chains.

    Each of ``num_chains`` chains writes a whole attempt, then up to ``max_attempts - 1``
    revisions, each conditioned on its previous attempt(s) followed by ``marker_tokens``.

    Attributes
    ----------
    marker_tokens : tuple of int
        Token ids placed after a previous attempt to ask for a revision (e.g. the ids of
        ``"revise\\n"``; see ``adapters.encode_once``). Required, non-empty.
    context : str
        Revision prompt format: ``"history"`` = prompt + every attempt, each followed by the
        marker; ``"last"`` = prompt + the last attempt + marker. Attempts keep their EOS
        token, so the marker follows it (train the policy on that format).
    num_chains : int
        Parallel chains (1 = purely sequential).
    max_attempts : int
        Attempts per chain, the first included.
    stop_threshold : float or None
        A chain stops once an attempt scores at least this (None: never early).
    select : str
        Among all attempts: ``"best"`` (highest score), ``"majority"``, ``"weighted"``, or
        ``"last"`` (best-scoring among each chain's last attempt).
    max_completion_tokens : int
    token_budget : int or None
    hard_budget : bool
        Never generate past ``token_budget`` (see :class:`~o1search.search.loop.Search`):
        the last requests are shortened to fit, and a problem whose next requests cannot
        get one token per sample stops there. Default False: a round that starts under the
        budget runs whole.
    sampling : SamplingConfig
    max_step_tokens : int
        Unused (kept for a uniform interface).
    """

    marker_tokens: tuple[int, ...] = ()
    context: str = "history"
    num_chains: int = 1
    max_attempts: int = 4
    stop_threshold: float | None = None
    select: str = "best"
    max_completion_tokens: int = 256
    token_budget: int | None = None
    hard_budget: bool = False
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    max_step_tokens: int = 64

    def __post_init__(self) -> None:
        n = "RevisionConfig"
        try:
            toks = tuple(self.marker_tokens)
        except TypeError:
            raise TypeError("RevisionConfig.marker_tokens must be a sequence of token ids") \
                from None
        if not toks:
            raise ValueError("RevisionConfig.marker_tokens is empty: set the token ids of the "
                             "revision request, e.g. encode_once(tokenizer, 'revise\\n')")
        for t in toks:
            if isinstance(t, bool) or not isinstance(t, int) or t < 0:
                raise ValueError(f"RevisionConfig.marker_tokens must be ints >= 0, got {t!r}")
        object.__setattr__(self, "marker_tokens", toks)
        _choice(n, "context", self.context, ("history", "last"))
        _int(n, "num_chains", self.num_chains, 1)
        _int(n, "max_attempts", self.max_attempts, 1)
        if self.stop_threshold is not None:
            _float(n, "stop_threshold", self.stop_threshold, 0.0, 1.0)
        _choice(n, "select", self.select, ("best", "majority", "weighted", "last"))
        _int(n, "max_completion_tokens", self.max_completion_tokens, 1)
        _common(self, n)
