"""What :class:`o1search.engine.Engine` is asked and answers: expand requests, samples,
scores and token counters."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from o1search._tokens import as_token_ids
from o1search.engine.sampling import ExcludedSteps, SamplingParams, StopRule

__all__ = ["EngineStats", "ExpandRequest", "ExpandResult", "Sample", "ScoreResult"]


def _as_token_tuple(tokens: Any, what: str) -> tuple[int, ...]:
    return as_token_ids(tokens, what)


@dataclass(frozen=True)
class ExpandRequest:
    """Expand one node: draw ``n`` continuations (steps) of a token prefix.

    Attributes
    ----------
    prefix : tuple of int
        Token ids of the path from the root (prompt included); non-empty. Lists, NumPy and
        torch 1-D integer arrays are accepted and stored as a tuple.
    n : int
        Samples to draw (>= 1).
    sampling : SamplingParams
    stop : StopRule
    exclude : ExcludedSteps or None
        Continuations already drawn from this same distribution that must not be drawn
        again (sampling without replacement; the ``n`` samples of this request may still
        repeat each other).
    """

    prefix: tuple[int, ...]
    n: int = 1
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: StopRule = field(default_factory=StopRule)
    exclude: ExcludedSteps | None = None

    def __post_init__(self) -> None:
        prefix = _as_token_tuple(self.prefix, "ExpandRequest.prefix")
        if not prefix:
            raise ValueError("ExpandRequest.prefix is empty: a step needs at least one token "
                             "of context (e.g. BOS)")
        if min(prefix) < 0:
            raise ValueError(f"ExpandRequest.prefix has a negative token id {min(prefix)}")
        object.__setattr__(self, "prefix", prefix)
        n = self.n
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"ExpandRequest.n must be an int >= 1, got {n!r}")
        if not isinstance(self.sampling, SamplingParams):
            raise TypeError("ExpandRequest.sampling must be a SamplingParams")
        if not isinstance(self.stop, StopRule):
            raise TypeError("ExpandRequest.stop must be a StopRule")
        if self.exclude is not None and not isinstance(self.exclude, ExcludedSteps):
            raise TypeError("ExpandRequest.exclude must be an ExcludedSteps or None")


@dataclass
class Sample:
    """One drawn step.

    Attributes
    ----------
    tokens : list of int
        The step's token ids (the step delimiter / EOS token included when hit).
    logprobs : list of float
        Per token, the log-probability under the distribution it was drawn from
        (logits / temperature, top-k and top-p applied, renormalised); for greedy sampling the
        raw model log-probability.
    raw_logprobs : list of float
        Per token, the log-probability under the raw model distribution (temperature 1, no
        truncation): what a policy-gradient or KL term wants.
    finish_reason : str
        ``"stop"`` (step delimiter), ``"eos"`` or ``"length"`` (``max_new_tokens`` or the
        model's maximum positions).
    index : int
        Sample index within its request (``0 .. n-1``; also the seed stream of the sample).
    """

    tokens: list[int]
    logprobs: list[float]
    raw_logprobs: list[float]
    finish_reason: str
    index: int = 0

    @property
    def logprob(self) -> float:
        """Sum of :attr:`logprobs`."""
        return float(sum(self.logprobs))


@dataclass
class ExpandResult:
    """The samples of one :class:`ExpandRequest`, in index order.

    Attributes
    ----------
    samples : list of Sample
    cached_tokens : int
        Prefix tokens whose KV came from the cache.
    prefilled_tokens : int
        Prefix tokens forwarded for this request.
    """

    samples: list[Sample]
    cached_tokens: int = 0
    prefilled_tokens: int = 0


@dataclass
class ScoreResult:
    """Forward-only outputs of one sequence at chosen positions.

    Attributes
    ----------
    positions : numpy.ndarray
        ``[P]`` int64 token positions.
    logprobs : numpy.ndarray or None
        ``[P]`` float32 ``log p(tokens[i] | tokens[:i])`` for each position ``i``
        (raw model distribution); ``None`` when hidden states were asked for.
    hidden_states : torch.Tensor or None
        ``[P, H]`` final hidden states (after the model's last norm) at each position.
    cached_tokens : int
        Tokens whose KV came from the cache.
    """

    positions: np.ndarray
    logprobs: np.ndarray | None = None
    hidden_states: torch.Tensor | None = None
    cached_tokens: int = 0


@dataclass
class EngineStats:
    """Token counters (cumulative in ``engine.stats``, per call in ``engine.last_stats``).

    Attributes
    ----------
    prefilled_tokens : int
        Prefix / scored tokens forwarded.
    reused_tokens : int
        Prefix tokens whose KV came from the cache instead.
    decoded_tokens : int
        Tokens forwarded one per sequence while decoding.
    generated_tokens : int
        Tokens sampled (a sample's last token is never forwarded).
    forward_calls : int
        Model forward passes.
    requests, samples : int
        Expand requests / samples served (scored sequences count as requests).
    wall_time_s : float
        Seconds spent in engine calls.
    """

    prefilled_tokens: int = 0
    reused_tokens: int = 0
    decoded_tokens: int = 0
    generated_tokens: int = 0
    forward_calls: int = 0
    requests: int = 0
    samples: int = 0
    wall_time_s: float = 0.0

    @property
    def forwarded_tokens(self) -> int:
        """``prefilled_tokens + decoded_tokens``: tokens the model computed."""
        return self.prefilled_tokens + self.decoded_tokens

    def add(self, other: EngineStats) -> None:
        """Add ``other``'s counters into this one."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

