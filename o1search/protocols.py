"""What flows between a search algorithm and the model: frozen requests, candidates, results.

The search algorithms never touch a model, a tokenizer or a tensor. They talk to two
protocols:

* a :class:`Generator` turns :class:`StepRequest` s (a token prefix, ``n`` samples, sampling
  parameters, a token limit, "one step" or "to the end") into :class:`StepCandidate` s;
* an :class:`Evaluator` turns :class:`EvalRequest` s (a problem, its prompt and a completion,
  finished or not) into values in ``[0, 1]`` (step values of a PRM / value model, or outcome
  rewards of a verifier / ORM).

Token ids are the currency: prefixes, steps and completions are tuples of ints. Text appears
only in :class:`SearchResult` (decoded once, for display and verifiers).

Randomness is counter based: every request carries a seed derived with :func:`derive_seed`
from the problem's seed and the position in the search (round, node), never from a stateful
generator, so a search gives the same result whatever else shares its batch and after a
checkpoint/resume.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

from o1search._tokens import as_token_ids
from o1search.engine.sampling import SamplingParams

__all__ = [
    "Decoder",
    "AnswerFn",
    "EvalRequest",
    "Evaluator",
    "Generator",
    "GeneratorStats",
    "SearchCompute",
    "SearchProblem",
    "SearchResult",
    "StepCandidate",
    "StepOutput",
    "StepRequest",
    "derive_seed",
    "SamplingParams",
]

_SEED_MASK = 2**63 - 1


def derive_seed(*parts: int | str) -> int:
    """A seed in ``[0, 2**63)`` that is a hash of ``parts`` (ints and strings).

    Used to give every request of a search its own reproducible random stream: e.g.
    ``derive_seed(problem_seed, round, node)``.

    Parameters
    ----------
    *parts : int or str
        Ints of any size (negative allowed) or strings.

    Returns
    -------
    int

    Raises
    ------
    TypeError
        For anything but ints and strings (bools included).
    """
    h = hashlib.blake2b(digest_size=8, person=b"o1search-seed")
    for p in parts:
        if isinstance(p, str):
            b = p.encode("utf-8")
            h.update(b"s" + struct.pack("<Q", len(b)) + b)
        elif isinstance(p, int) and not isinstance(p, bool):
            b = p.to_bytes((p.bit_length() + 8) // 8 + 1, "little", signed=True)
            h.update(b"i" + struct.pack("<Q", len(b)) + b)
        else:
            raise TypeError(f"derive_seed: parts must be ints or strings, got {type(p).__name__}")
    return int.from_bytes(h.digest(), "little") & _SEED_MASK


def _token_tuple(tokens: Any, what: str, *, allow_empty: bool = True) -> tuple[int, ...]:
    return as_token_ids(tokens, what, allow_empty=allow_empty)


def _check_int(value: Any, what: str, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{what} must be {rng}, got {value}")
    return value


@dataclass(frozen=True)
class StepRequest:
    """Ask the policy for ``n`` continuations of a token prefix.

    Attributes
    ----------
    prefix : tuple of int
        The path from the root, prompt included (non-empty). Lists and NumPy arrays are
        accepted and stored as a tuple.
    n : int
        Samples to draw (>= 1). Sample ``i`` uses random stream ``i`` of ``sampling.seed``.
    sampling : SamplingParams
        Temperature / top-p / top-k and the seed (``o1search.engine.SamplingParams``).
    max_new_tokens : int
        At most this many tokens per sample (>= 1).
    to_end : bool
        ``False``: stop at the end of one reasoning step (the generator's step delimiter).
        ``True``: generate a whole completion (until EOS or ``max_new_tokens``).
    exclude : tuple of (tokens, sample_logprobs)
        Continuations already drawn from this same prefix and sampling distribution, each
        with its per-token log-probabilities (:attr:`StepCandidate.sample_logprobs`): a
        generator that supports it draws the samples *without replacement* with respect to
        them (o1search.engine.ExcludedSteps); others may ignore it.
    """

    prefix: tuple[int, ...]
    n: int = 1
    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_new_tokens: int = 256
    to_end: bool = False
    exclude: tuple[tuple[tuple[int, ...], tuple[float, ...]], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix",
                           _token_tuple(self.prefix, "StepRequest.prefix", allow_empty=False))
        _check_int(self.n, "StepRequest.n", 1)
        _check_int(self.max_new_tokens, "StepRequest.max_new_tokens", 1)
        if not isinstance(self.sampling, SamplingParams):
            raise TypeError("StepRequest.sampling must be an o1search.engine.SamplingParams")
        if not isinstance(self.to_end, bool):
            raise TypeError("StepRequest.to_end must be a bool")
        excl = []
        for k, pair in enumerate(self.exclude):
            try:
                toks, lps = pair
            except (TypeError, ValueError) as exc:
                raise ValueError(f"StepRequest.exclude[{k}] must be a (tokens, logprobs) "
                                 "pair") from exc
            toks = _token_tuple(toks, f"StepRequest.exclude[{k}] tokens")
            lps = tuple(float(x) for x in lps)
            if len(toks) != len(lps) or not toks:
                raise ValueError(f"StepRequest.exclude[{k}]: {len(toks)} tokens but "
                                 f"{len(lps)} log-probabilities (need equal, >= 1)")
            excl.append((toks, lps))
        object.__setattr__(self, "exclude", tuple(excl))


@dataclass(frozen=True)
class StepCandidate:
    """One sampled continuation.

    Attributes
    ----------
    tokens : tuple of int
        The step's token ids (delimiter / EOS included when hit). Empty only when finished.
    logprob : float
        Sum of the policy's per-token log-probabilities (temperature 1, no truncation): what
        priors are made of.
    finished : bool
        The completion ends here (EOS, a final-answer step, or no room left to generate).
    finish_reason : str
        ``"stop"`` (step delimiter), ``"eos"``, ``"length"`` or ``"answer"``; informational.
    sample_logprobs : tuple of float
        Per-token log-probabilities under the distribution the step was drawn from (empty
        when the generator does not report them); what ``StepRequest.exclude`` needs.
    """

    tokens: tuple[int, ...]
    logprob: float = 0.0
    finished: bool = False
    finish_reason: str = "stop"
    sample_logprobs: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", _token_tuple(self.tokens, "StepCandidate.tokens"))
        lp = self.logprob
        if isinstance(lp, bool) or not isinstance(lp, (int, float)) or lp != lp or lp > 1e-3:
            raise ValueError(f"StepCandidate.logprob must be a number <= 0, got {lp!r}")
        # Low-precision log-softmax can round a near-certain token slightly above 0.
        object.__setattr__(self, "logprob", min(float(lp), 0.0))
        if not isinstance(self.finished, bool):
            raise TypeError("StepCandidate.finished must be a bool")
        if not self.tokens and not self.finished:
            # An empty unfinished step would be expanded again forever.
            raise ValueError("StepCandidate.tokens is empty but the candidate is not finished")
        slp = tuple(float(x) for x in self.sample_logprobs)
        if slp and len(slp) != len(self.tokens):
            raise ValueError(f"StepCandidate.sample_logprobs has {len(slp)} values for "
                             f"{len(self.tokens)} tokens")
        object.__setattr__(self, "sample_logprobs", slp)

    @property
    def num_tokens(self) -> int:
        """``len(tokens)``."""
        return len(self.tokens)

    @property
    def mean_logprob(self) -> float:
        """Length-normalized log-probability (``logprob / max(len(tokens), 1)``)."""
        return self.logprob / max(len(self.tokens), 1)


@dataclass(frozen=True)
class StepOutput:
    """The candidates of one :class:`StepRequest` plus what the call cost for it.

    Behaves as a sequence of :class:`StepCandidate` (``len``, iteration, indexing), so a
    generator may also return plain lists of candidates.

    Attributes
    ----------
    candidates : tuple of StepCandidate
        ``n`` of them, in sample-index order.
    prefilled_tokens : int
        Prefix tokens the model had to compute for this request.
    reused_tokens : int
        Prefix tokens whose KV came from a cache.
    """

    candidates: tuple[StepCandidate, ...]
    prefilled_tokens: int = 0
    reused_tokens: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "candidates", tuple(self.candidates))
        for c in self.candidates:
            if not isinstance(c, StepCandidate):
                raise TypeError(f"StepOutput.candidates must hold StepCandidate, got "
                                f"{type(c).__name__}")
        _check_int(self.prefilled_tokens, "StepOutput.prefilled_tokens", 0)
        _check_int(self.reused_tokens, "StepOutput.reused_tokens", 0)

    def __len__(self) -> int:
        return len(self.candidates)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.candidates)

    def __getitem__(self, i: int) -> StepCandidate:
        return self.candidates[i]


@dataclass
class GeneratorStats:
    """Cumulative counters of a generator (all problems together).

    Attributes
    ----------
    calls, requests, samples : int
        ``generate`` calls, requests and samples served.
    generated_tokens, prefilled_tokens, reused_tokens : int
        Tokens sampled; prefix tokens computed; prefix tokens taken from a cache.
    wall_time_s : float
        Seconds spent inside ``generate``.
    """

    calls: int = 0
    requests: int = 0
    samples: int = 0
    generated_tokens: int = 0
    prefilled_tokens: int = 0
    reused_tokens: int = 0
    wall_time_s: float = 0.0


@runtime_checkable
class Generator(Protocol):
    """Gives step continuations of token prefixes (a policy)."""

    def generate(self, requests: Sequence[StepRequest]) -> Sequence[Sequence[StepCandidate]]:
        """Draw the samples of every request in one batch.

        Parameters
        ----------
        requests : sequence of StepRequest

        Returns
        -------
        sequence of (StepOutput or sequence of StepCandidate)
            One entry per request, in order, each with exactly ``request.n`` candidates.
        """
        ...


@dataclass(frozen=True)
class EvalRequest:
    """Score one path of one problem.

    Attributes
    ----------
    problem : Any
        The problem object the search was given (e.g. a ``tasks.Problem``), for verifiers.
    prompt : tuple of int
        The prompt tokens.
    completion : tuple of int
        The tokens after the prompt (the steps so far, or a whole answer).
    finished : bool
        Whether the completion is complete (an outcome reward applies) or partial (a step
        value applies).
    """

    problem: Any
    prompt: tuple[int, ...]
    completion: tuple[int, ...]
    finished: bool


@runtime_checkable
class Evaluator(Protocol):
    """Scores paths: step values (PRM / value model) or outcome rewards (verifier / ORM)."""

    def evaluate(self, requests: Sequence[EvalRequest]) -> Sequence[float]:
        """One value in ``[0, 1]`` per request, in order."""
        ...


Decoder = Callable[[Sequence[int]], str]
"""Token ids → text (for verifiers, answers and display only)."""

AnswerFn = Callable[[Any, Sequence[int]], Hashable | None]
"""``answer_fn(problem, completion_tokens)`` → the final answer to vote on, or None."""


@dataclass(frozen=True)
class SearchProblem:
    """One problem as the search sees it.

    Attributes
    ----------
    prompt : tuple of int
        Prompt token ids (the tree's root); non-empty.
    problem : Any
        Passed through to the evaluator and ``answer_fn`` (e.g. a ``tasks.Problem``).
    seed : int
        The problem's own seed: a problem gets the same result alone or in any batch.
    """

    prompt: tuple[int, ...]
    problem: Any = None
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt",
                           _token_tuple(self.prompt, "SearchProblem.prompt", allow_empty=False))
        _check_int(self.seed, "SearchProblem.seed", 0, 2**64 - 1)


@dataclass
class SearchCompute:
    """What a search spent on one problem.

    Attributes
    ----------
    generated_tokens : int
        Tokens sampled for this problem (rollouts and lookahead included).
    prefilled_tokens, reused_tokens : int
        Prefix tokens computed / taken from the KV cache for this problem's requests.
    generator_calls : int
        Generator calls that carried at least one request of this problem (calls are shared
        by the whole batch).
    requests, samples : int
        Step requests and samples drawn for this problem.
    evaluated : int
        Paths scored by the evaluator.
    rounds : int
        Search rounds run.
    wall_time_s : float
        Wall time of the rounds this problem took part in (shared with the batch).
    """

    generated_tokens: int = 0
    prefilled_tokens: int = 0
    reused_tokens: int = 0
    generator_calls: int = 0
    requests: int = 0
    samples: int = 0
    evaluated: int = 0
    rounds: int = 0
    wall_time_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The counters as a plain dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchCompute:
        """Inverse of :meth:`to_dict` (unknown keys rejected)."""
        names = {f.name for f in fields(cls)}
        bad = set(d) - names
        if bad:
            raise ValueError(f"SearchCompute: unknown fields {sorted(bad)}")
        return cls(**d)


@dataclass
class SearchResult:
    """The outcome of a search on one problem.

    Attributes
    ----------
    index : int
        Position of the problem in the batch.
    completion : tuple of int
        Chosen completion (token ids after the prompt).
    path : tuple of int
        Prompt + completion.
    text : str or None
        ``decoder(completion)`` when a decoder was given.
    answer : hashable or None
        ``answer_fn(problem, completion)`` when one was given.
    score : float
        The chosen path's value (evaluator score, vote share, or mean backed-up value; see
        each algorithm).
    finished : bool
        Whether the chosen completion is complete.
    node : int
        Tree node of the chosen path's end (``-1`` when it is not a node of the tree).
    tree : SearchTree
        The search tree (``tree.to_dict()`` for viewers).
    compute : SearchCompute
    info : dict
        Algorithm-specific extras (votes, all candidates, stop reason).
    """

    index: int
    completion: tuple[int, ...]
    path: tuple[int, ...]
    text: str | None
    answer: Hashable | None
    score: float
    finished: bool
    node: int
    tree: Any
    compute: SearchCompute
    info: dict[str, Any] = field(default_factory=dict)
