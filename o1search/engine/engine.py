"""Batched node expansion with shared-prefix KV reuse.

:class:`Engine` turns :class:`ExpandRequest` s (a token prefix, ``n`` samples, sampling
parameters and a stop rule) into :class:`ExpandResult` s. For every prefix only the part a
:class:`o1search.RadixCache` does not hold is prefilled; the ``n`` samples of a request share
the prefix pages (a partly filled last page is copied per sample: copy-on-write); samples that
finish leave the batch and waiting requests join (continuous batching under a token budget);
finished samples' pages are inserted into the cache so that expanding a child later reuses
them.

Page life cycle (paged runner). At admission a request locks its matched prefix and allocates,
in one call, the pages of its uncached tail plus the worst case its samples can need
(``max_new_tokens`` each), so decoding never runs out of pages half way. When the prefill
ends, the prefix's whole pages are inserted into the cache. When a sample ends, the whole
pages of its KV are inserted and its other pages freed; when the last sample of a request
ends, its unused reserve is freed and its lock released. On any error every page the call
holds is given back and every lock released, so ``free + evictable == capacity`` again.

Models the paged runner does not support (see
:func:`o1search.engine.model_runner.paged_runner_unsupported_reason`) run through a generic
path on the ``transformers`` model itself: prefix KV is kept as per-layer tensors of finished
sequences (LRU, bounded by ``num_pages * page_size`` tokens), copied into a ``DynamicCache``
when a later prefix shares tokens with them.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from o1search._tokens import as_token_ids
from o1search._native import InternalError, OutOfPagesError
from o1search.engine.backends import get_attention_backend
from o1search.engine.model_runner import ModelRunner, paged_runner_unsupported_reason
from o1search.engine.sampling import ExcludedSteps, SamplingParams, StopRule, sample_tokens

__all__ = [
    "Engine",
    "EngineStats",
    "ExpandRequest",
    "ExpandResult",
    "Sample",
    "ScoreResult",
]


def _as_token_tuple(tokens: Any, what: str) -> tuple[int, ...]:
    return as_token_ids(tokens, what)


def _exclusion_bias(seqs: Sequence[Any]) -> list[dict[int, float] | None] | None:
    """Per sequence, the sampler bias of its request's excluded steps (None: no request
    excludes anything)."""
    if all(s.group.req.exclude is None for s in seqs):
        return None
    return [None if s.group.req.exclude is None else s.group.req.exclude.bias(s.gen)
            for s in seqs]


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


# --------------------------------------------------------------------------- paged state
class _Seq:
    __slots__ = ("group", "index", "tokens", "gen", "logprobs", "raw", "pages", "kv_len",
                 "done", "unstored")

    def __init__(self, group: _Group, index: int, pages: list[int]) -> None:
        self.group = group
        self.index = index
        self.tokens = list(group.tokens)
        self.gen: list[int] = []
        self.logprobs: list[float] = []
        self.raw: list[float] = []
        self.pages = pages
        self.kv_len = group.length
        self.done = False
        self.unstored = False  # generic path: finished, KV not yet copied to the store


class _Group:
    """A request in flight: its prefix state and its samples."""

    def __init__(self, idx: int, req: ExpandRequest, seed: int, delimiter: tuple[int, ...],
                 max_new: int) -> None:
        self.idx = idx
        self.req = req
        self.tokens = list(req.prefix)
        self.length = len(self.tokens)
        self.seed = seed
        self.delimiter = delimiter
        self.max_new = max_new
        self.node: int | None = None  # locked cache handle
        self.cached = 0
        self.pages: list[int] = []  # ceil(L / page_size) prefix pages
        self.owned: list[int] = []  # held pages not yet passed to the tree or a sample
        self.spare: list[int] = []  # reserve for the samples' new pages
        self.prefill_pos = 0
        self.seqs: list[_Seq] = []
        self.results: list[Sample | None] = [None] * req.n
        self.remaining = req.n


class Engine:
    """Paged-KV expansion and scoring engine over a ``transformers`` causal LM.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        Causal LM. Llama / Qwen2 / Mistral run on the paged :class:`ModelRunner`; any other
        architecture on the generic path. Its weights are used in place (moved to
        ``device`` / ``dtype`` in place when those are given).
    tokenizer : optional
        Used only to tokenize string step delimiters (once each) and to find EOS ids.
    num_pages : int
        KV pages in the pool (generic path: the prefix store holds
        ``num_pages * page_size`` tokens).
    page_size : int
        Tokens per page.
    device, dtype : optional
        Where / in which precision to run; default: the model's.
    attention_backend : str
        ``"auto"``, ``"torch"``, ``"triton"``, ``"flash_attn"`` or another registered name.
    max_batch_tokens : int
        Tokens per forward pass; also bounds the samples decoding at once.
    cache_factory : callable, optional
        ``cache_factory(num_pages, page_size)`` returning a RadixCache-compatible object
        (default :class:`o1search.RadixCache`); tests inject the pure-Python reference.
    eos_token_ids : sequence of int, optional
        Override the EOS ids taken from the model's generation config / tokenizer.

    Raises
    ------
    ValueError
        Bad sizes or an unknown attention backend.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any = None, *, num_pages: int = 4096,
                 page_size: int = 16, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, attention_backend: str = "auto",
                 max_batch_tokens: int = 2048,
                 cache_factory: Callable[[int, int], Any] | None = None,
                 eos_token_ids: Sequence[int] | None = None) -> None:
        for what, value in (("num_pages", num_pages), ("page_size", page_size),
                            ("max_batch_tokens", max_batch_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Engine: {what} must be an int >= 1, got {value!r}")
        if device is not None or dtype is not None:
            model.to(device=device, dtype=dtype)
        model.eval()
        self.model = model
        self.tokenizer = tokenizer
        self.config = model.config
        param = next(model.parameters())
        self.device = param.device
        self.dtype = param.dtype
        self.num_pages = num_pages
        self.page_size = page_size
        self.max_batch_tokens = max_batch_tokens
        self.vocab_size = int(self.config.vocab_size)
        self.max_positions = int(getattr(self.config, "max_position_embeddings", None)
                                 or getattr(self.config, "n_positions", None) or 2 ** 31 - 1)
        self.eos_token_ids = (frozenset(int(t) for t in eos_token_ids)
                              if eos_token_ids is not None else self._find_eos_ids())
        self._delimiters: dict[str, tuple[int, ...]] = {}
        self.stats = EngineStats()
        self.last_stats = EngineStats()
        self.fallback_reason = paged_runner_unsupported_reason(model)
        self.backend = get_attention_backend(attention_backend, self.device)
        if self.fallback_reason is None:
            self.runner: ModelRunner | None = ModelRunner.for_model(
                model, num_pages=num_pages, page_size=page_size, backend=self.backend)
            if cache_factory is None:
                from o1search import RadixCache

                cache_factory = RadixCache
            self.cache = cache_factory(num_pages, page_size)
            self._store: OrderedDict[tuple[int, ...], list] | None = None
        else:
            self.runner = None
            self.cache = None
            self._store = OrderedDict()
            self._store_tokens = 0

    # ------------------------------------------------------------------ properties
    @property
    def is_paged(self) -> bool:
        """Whether the model runs on the paged runner (else the generic path)."""
        return self.runner is not None

    def _find_eos_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        sources = [getattr(getattr(self.model, "generation_config", None), "eos_token_id", None),
                   getattr(self.config, "eos_token_id", None),
                   getattr(self.tokenizer, "eos_token_id", None)]
        for src in sources:
            if src is None:
                continue
            ids.update(int(t) for t in (src if isinstance(src, (list, tuple)) else [src]))
        return frozenset(ids)

    def _delimiter_ids(self, stop: StopRule) -> tuple[int, ...]:
        d = stop.step_delimiter
        if d is None:
            return ()
        if isinstance(d, tuple):
            return d
        if d not in self._delimiters:
            if self.tokenizer is None:
                raise ValueError("a string step_delimiter needs the Engine's tokenizer; pass "
                                 "token ids instead")
            ids = tuple(int(t) for t in self.tokenizer.encode(d, add_special_tokens=False))
            if not ids:
                raise ValueError(f"step_delimiter {d!r} tokenizes to nothing")
            self._delimiters[d] = ids
        return self._delimiters[d]

    def _check_tokens(self, tokens: Sequence[int], what: str) -> None:
        if max(tokens) >= self.vocab_size:
            raise ValueError(f"{what} has token id {max(tokens)} >= vocab_size "
                             f"{self.vocab_size}")
        if len(tokens) > self.max_positions:
            raise ValueError(f"{what} has {len(tokens)} tokens, more than the model's "
                             f"max_position_embeddings ({self.max_positions})")

    # ------------------------------------------------------------------ public API
    def expand(self, requests: Sequence[ExpandRequest]) -> list[ExpandResult]:
        """Draw the samples of every request, batching all of them together.

        Parameters
        ----------
        requests : sequence of ExpandRequest

        Returns
        -------
        list of ExpandResult
            One per request, in order; ``samples`` in index order.

        Raises
        ------
        ValueError
            A token id outside the vocabulary, a prefix with no room left below the model's
            maximum positions, a string delimiter without a tokenizer.
        TypeError
            Something other than an ExpandRequest.
        o1search.OutOfPagesError
            A request needs more pages than the pool can give even after evicting every
            unlocked cached prefix.
        """
        requests = list(requests)
        for i, r in enumerate(requests):
            if not isinstance(r, ExpandRequest):
                raise TypeError(f"requests[{i}] is a {type(r).__name__}, not an ExpandRequest")
            self._check_tokens(r.prefix, f"requests[{i}].prefix")
            if len(r.prefix) >= self.max_positions:
                raise ValueError(f"requests[{i}].prefix has {len(r.prefix)} tokens: no room to "
                                 f"generate below max_position_embeddings "
                                 f"({self.max_positions})")
        groups = []
        for i, r in enumerate(requests):
            seed = r.sampling.seed
            if seed is None:
                seed = int(torch.randint(0, 2 ** 62, ()).item())
            max_new = min(r.stop.max_new_tokens, self.max_positions - len(r.prefix))
            groups.append(_Group(i, r, seed, self._delimiter_ids(r.stop), max_new))
        call = EngineStats(requests=len(groups), samples=sum(r.n for r in requests))
        start = time.perf_counter()
        try:
            if not groups:
                return []
            if self.is_paged:
                self._expand_paged(groups, call)
            else:
                self._expand_generic(groups, call)
        finally:
            call.wall_time_s = time.perf_counter() - start
            self.last_stats = call
            self.stats.add(call)
        return [ExpandResult(samples=list(g.results), cached_tokens=g.cached,
                             prefilled_tokens=g.length - g.cached) for g in groups]

    def generate_steps(self, prefixes: Sequence[Sequence[int]], n: int = 1,
                       sampling: SamplingParams | None = None, stop: StopRule | None = None
                       ) -> list[list[Sample]]:
        """Generator adapter for the search layer: ``n`` steps for each prefix.

        Parameters
        ----------
        prefixes : sequence of token-id sequences
        n : int
        sampling : SamplingParams, optional
        stop : StopRule, optional

        Returns
        -------
        list of list of Sample
            ``[len(prefixes)][n]``.
        """
        sampling = sampling or SamplingParams()
        stop = stop or StopRule()
        results = self.expand([ExpandRequest(p, n, sampling, stop) for p in prefixes])
        return [r.samples for r in results]

    def score(self, sequences: Sequence[Sequence[int]], *,
              positions: Sequence[Sequence[int]] | None = None,
              hidden_states: bool = False) -> list[ScoreResult]:
        """Forward-only scoring with prefix reuse (reward models, self-evaluation).

        Parameters
        ----------
        sequences : sequence of token-id sequences
            Non-empty, within the model's maximum positions.
        positions : sequence of sequences of int, optional
            Per sequence, the token positions wanted. For log-probabilities each ``i`` must be
            in ``[1, len)`` (``log p(tokens[i] | tokens[:i])``), default all of them; for hidden
            states in ``[0, len)``, default all. Only the part before the first wanted
            position can come from the cache.
        hidden_states : bool
            Return final hidden states ``[P, H]`` instead of log-probabilities.

        Returns
        -------
        list of ScoreResult

        Raises
        ------
        ValueError
            Empty sequence, bad positions, bad token ids, too long.
        o1search.OutOfPagesError
            A sequence's uncached part does not fit the pool.
        """
        seqs = [list(_as_token_tuple(s, f"sequences[{i}]")) for i, s in enumerate(sequences)]
        if positions is not None and len(positions) != len(seqs):
            raise ValueError(f"positions has {len(positions)} entries for {len(seqs)} sequences")
        wanted: list[list[int]] = []
        for i, s in enumerate(seqs):
            if not s:
                raise ValueError(f"sequences[{i}] is empty")
            if min(s) < 0:
                raise ValueError(f"sequences[{i}] has a negative token id")
            self._check_tokens(s, f"sequences[{i}]")
            lo = 0 if hidden_states else 1
            if positions is None:
                pos = list(range(lo, len(s)))
            else:
                pos = list(_as_token_tuple(positions[i], f"positions[{i}]"))
                bad = [p for p in pos if not lo <= p < len(s)]
                if bad:
                    raise ValueError(f"positions[{i}] has {bad[0]}, outside [{lo}, {len(s)}) "
                                     f"for {'hidden states' if hidden_states else 'logprobs'}")
            wanted.append(pos)
        call = EngineStats(requests=len(seqs))
        start = time.perf_counter()
        try:
            if self.is_paged:
                out = self._score_paged(seqs, wanted, hidden_states, call)
            else:
                out = self._score_generic(seqs, wanted, hidden_states, call)
        finally:
            call.wall_time_s = time.perf_counter() - start
            self.last_stats = call
            self.stats.add(call)
        return out

    def load_weights(self, weights: torch.nn.Module | dict[str, torch.Tensor]) -> None:
        """Swap in new weights and flush every cached KV (old weights' KV is never reused).

        Parameters
        ----------
        weights : torch.nn.Module or dict
            A model of the same architecture or its ``state_dict``.

        Raises
        ------
        ValueError
            Keys missing (other than a tied LM head) or unexpected, or shapes that differ.
        """
        state = weights.state_dict() if isinstance(weights, torch.nn.Module) else dict(weights)
        try:
            result = self.model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # size mismatch
            raise ValueError(f"load_weights: {exc}") from exc
        tied = bool(getattr(self.config, "tie_word_embeddings", False))
        missing = [k for k in result.missing_keys if not (tied and k.startswith("lm_head."))]
        if missing or result.unexpected_keys:
            raise ValueError(f"load_weights: missing keys {missing[:5]}, unexpected keys "
                             f"{list(result.unexpected_keys)[:5]}")
        self.flush_cache()

    def flush_cache(self) -> None:
        """Drop all cached prefixes (pages all free again)."""
        if self.cache is not None:
            self.cache.reset()
        if self._store is not None:
            self._store.clear()
            self._store_tokens = 0

    # ------------------------------------------------------------------ paged expand
    def _expand_paged(self, groups: list[_Group], call: EngineStats) -> None:
        waiting = deque(groups)
        active: list[_Group] = []
        try:
            while waiting or active:
                self._admit(waiting, active, call)
                copies: list[tuple[int, int]] = []
                self._prefill_step(active, call, copies)
                self._decode_step(active, call, copies)
                active = [g for g in active if g.remaining > 0]
        except BaseException:
            self._release(active)
            raise

    def _admit(self, waiting: deque, active: list[_Group], call: EngineStats) -> None:
        cache = self.cache
        ps = self.page_size
        while waiting:
            g = waiting[0]
            running = sum(x.remaining for x in active)
            if active and running + g.req.n > self.max_batch_tokens:
                return
            m = cache.match(g.tokens)
            cache.lock(m.node)
            # Keep at least the last prefix token to forward: its logits start the step.
            cached = min(int(m.length), ((g.length - 1) // ps) * ps)
            n_prefix = -(-g.length // ps)
            tail = n_prefix - cached // ps
            partial = g.length % ps != 0
            seq_pages = -(-(g.length + g.max_new - 1) // ps)
            extra = max(seq_pages - n_prefix, 0)
            need = tail + g.req.n * extra + ((g.req.n - 1) if partial else 0)
            try:
                pages = cache.alloc(need).tolist()
            except OutOfPagesError as exc:
                cache.unlock(m.node)
                if active:
                    return  # wait for running requests to give pages back
                raise OutOfPagesError(f"request {g.idx} needs {need} KV pages (prefix {g.length} tokens, "
                          f"{g.req.n} samples x {g.max_new} new tokens, page_size {ps}) but the "
                          f"pool of {self.num_pages} pages cannot provide them even after "
                          f"eviction; raise num_pages or lower n / max_new_tokens") from exc
            waiting.popleft()
            g.node = m.node
            g.cached = cached
            g.pages = [int(p) for p in m.pages[: cached // ps]] + pages[:tail]
            g.owned = pages[:tail]
            g.spare = pages[tail:]
            g.prefill_pos = cached
            call.reused_tokens += cached
            active.append(g)

    def _prefill_step(self, active: list[_Group], call: EngineStats,
                      copies: list[tuple[int, int]]) -> None:
        prefilling = [g for g in active if g.prefill_pos < g.length]
        if not prefilling:
            return
        decoding = sum(len([s for s in g.seqs if not s.done]) for g in active)
        budget = max(self.max_batch_tokens - decoding, 1)
        chunks = []
        for g in prefilling:
            if budget <= 0:
                break
            c = min(budget, g.length - g.prefill_pos)
            chunks.append((g, g.prefill_pos, c))
            budget -= c
        batch = self.runner.make_batch([(g.tokens[p:p + c], p, g.pages) for g, p, c in chunks])
        logits, _ = self.runner.forward(batch)
        call.forward_calls += 1
        started: list[tuple[_Group, int]] = []
        for row, (g, p, c) in enumerate(chunks):
            g.prefill_pos += c
            call.prefilled_tokens += c
            if g.prefill_pos == g.length:
                self._start_samples(g, copies)
                started.append((g, row))
        if not started:
            return
        rows = torch.tensor([row for g, row in started for _ in range(g.req.n)],
                            device=logits.device)
        seqs = [s for g, _ in started for s in g.seqs]
        self._sample_and_advance(logits.index_select(0, rows), seqs, call)

    def _start_samples(self, g: _Group, copies: list[tuple[int, int]]) -> None:
        cache = self.cache
        ps = self.page_size
        n_full = g.length // ps
        if n_full * ps > g.cached:
            res = cache.insert(g.tokens[: n_full * ps], g.pages[:n_full])
            if res.cached_length > g.cached:
                # Another request cached part of this prefix meanwhile: our duplicate pages
                # went back to the free list, so switch to the cached ones.
                m = cache.match(g.tokens[: n_full * ps])
                if m.length != n_full * ps:
                    raise InternalError("prefix just inserted is not matched in full")
                g.pages[:n_full] = [int(p) for p in m.pages]
            cache.lock(res.node)
            cache.unlock(g.node)
            g.node = res.node
        partial_page = g.pages[n_full:]  # [] or the one partly filled page
        g.owned = []
        shared = g.pages[:n_full]
        for i in range(g.req.n):
            own: list[int] = []
            if partial_page:
                if i == 0:
                    own = list(partial_page)
                else:
                    own = [g.spare.pop()]
                    copies.append((partial_page[0], own[0]))
            g.seqs.append(_Seq(g, i, shared + own))

    def _decode_step(self, active: list[_Group], call: EngineStats,
                     copies: list[tuple[int, int]]) -> None:
        if copies:
            src = torch.tensor([s for s, _ in copies], dtype=torch.int64, device=self.device)
            dst = torch.tensor([d for _, d in copies], dtype=torch.int64, device=self.device)
            self.backend.copy_pages(self.runner.pool.k, self.runner.pool.v, src, dst)
            copies.clear()
        seqs = [s for g in active for s in g.seqs if not s.done]
        if not seqs:
            return
        ps = self.page_size
        entries = []
        for s in seqs:
            if s.kv_len // ps == len(s.pages):
                s.pages.append(s.group.spare.pop())
            entries.append(([s.gen[-1]], s.kv_len, s.pages))
        batch = self.runner.make_batch(entries)
        logits, _ = self.runner.forward(batch)
        call.forward_calls += 1
        call.decoded_tokens += len(seqs)
        for s in seqs:
            s.kv_len += 1
        self._sample_and_advance(logits, seqs, call)

    def _sample_and_advance(self, logits: torch.Tensor, seqs: list[_Seq],
                            call: EngineStats) -> None:
        params = [s.group.req.sampling for s in seqs]
        keys = [(s.group.seed, s.index, len(s.gen)) for s in seqs]
        tokens, logp, raw = sample_tokens(logits, params, keys, _exclusion_bias(seqs))
        tokens, logp, raw = tokens.tolist(), logp.tolist(), raw.tolist()
        call.generated_tokens += len(seqs)
        for s, t, lp, rl in zip(seqs, tokens, logp, raw, strict=True):
            s.gen.append(t)
            s.tokens.append(t)
            s.logprobs.append(lp)
            s.raw.append(rl)
            reason = _finish_reason(s.gen, s.group, self.eos_token_ids)
            if reason is not None:
                self._finish(s, reason)

    def _finish(self, s: _Seq, reason: str) -> None:
        g = s.group
        cache = self.cache
        ps = self.page_size
        n_prefix_full = g.length // ps
        n_full = s.kv_len // ps
        if n_full > n_prefix_full:
            cache.insert(s.tokens[: n_full * ps], s.pages[:n_full])
        rest = s.pages[max(n_full, n_prefix_full):]
        if rest:
            cache.free(rest)
        s.pages = s.pages[:n_prefix_full]
        s.done = True
        g.results[s.index] = Sample(tokens=s.gen, logprobs=s.logprobs, raw_logprobs=s.raw,
                                    finish_reason=reason, index=s.index)
        g.remaining -= 1
        if g.remaining == 0:
            if g.spare:
                cache.free(g.spare)
                g.spare = []
            cache.unlock(g.node)
            g.node = None

    def _release(self, active: list[_Group]) -> None:
        """Give back every page and lock of unfinished groups (after an error)."""
        cache = self.cache
        ps = self.page_size
        for g in active:
            try:
                held = list(g.owned) + list(g.spare)
                for s in g.seqs:
                    if not s.done:
                        held.extend(s.pages[g.length // ps:])
                if held:
                    cache.free(held)
                if g.node is not None:
                    cache.unlock(g.node)
            except Exception:  # noqa: BLE001 - keep releasing the others; the first error wins
                pass
            g.owned, g.spare, g.node = [], [], None

    # ------------------------------------------------------------------ paged score
    def _score_paged(self, seqs: list[list[int]], wanted: list[list[int]], hidden: bool,
                     call: EngineStats) -> list[ScoreResult]:
        cache = self.cache
        ps = self.page_size
        results: list[ScoreResult | None] = [None] * len(seqs)
        # Output row r of a sequence is the forward output at position r.
        rows_needed = [sorted({p - (0 if hidden else 1) for p in w}) for w in wanted]
        outputs: list[dict[int, Any]] = [dict() for _ in seqs]
        pending = deque(range(len(seqs)))
        active: list[dict] = []
        try:
            while pending or active:
                while pending:
                    i = pending[0]
                    s = seqs[i]
                    first = rows_needed[i][0] if rows_needed[i] else len(s) - 1
                    m = cache.match(s)
                    cache.lock(m.node)
                    cached = min(int(m.length), (first // ps) * ps, ((len(s) - 1) // ps) * ps)
                    need = -(-len(s) // ps) - cached // ps
                    try:
                        pages = cache.alloc(need).tolist()
                    except OutOfPagesError as exc:
                        cache.unlock(m.node)
                        if active:
                            break
                        raise OutOfPagesError(
                            f"sequences[{i}] needs {need} KV pages but the pool of "
                            f"{self.num_pages} cannot provide them; raise num_pages") from exc
                    pending.popleft()
                    call.reused_tokens += cached
                    active.append({"i": i, "node": m.node, "cached": cached, "pos": cached,
                                   "pages": [int(p) for p in m.pages[: cached // ps]] + pages,
                                   "owned": pages})
                    if sum(len(seqs[a["i"]]) - a["pos"] for a in active) >= self.max_batch_tokens:
                        break
                budget = self.max_batch_tokens
                chunks = []
                for a in active:
                    if budget <= 0:
                        break
                    s = seqs[a["i"]]
                    c = min(budget, len(s) - a["pos"])
                    chunks.append((a, a["pos"], c))
                    budget -= c
                batch = self.runner.make_batch([(seqs[a["i"]][p:p + c], p, a["pages"])
                                                for a, p, c in chunks])
                row_ids: list[int] = []
                row_owner: list[tuple[int, int]] = []
                offset = 0
                for a, p, c in chunks:
                    for r in rows_needed[a["i"]]:
                        if p <= r < p + c:
                            row_ids.append(offset + r - p)
                            row_owner.append((a["i"], r))
                    offset += c
                rows = torch.tensor(row_ids, dtype=torch.int64, device=self.device)
                logits, hid = self.runner.forward(batch, rows=rows, compute_logits=not hidden)
                call.forward_calls += 1
                if hidden:
                    for j, (i, r) in enumerate(row_owner):
                        outputs[i][r] = hid[j]
                elif row_owner:
                    logp = torch.log_softmax(logits, dim=-1)
                    nxt = torch.tensor([seqs[i][r + 1] for i, r in row_owner],
                                       device=logp.device)
                    vals = logp.gather(1, nxt[:, None])[:, 0].tolist()
                    for (i, r), v in zip(row_owner, vals, strict=True):
                        outputs[i][r] = v
                for a, p, c in chunks:
                    a["pos"] += c
                    call.prefilled_tokens += c
                finished = [a for a in active if a["pos"] == len(seqs[a["i"]])]
                active = [a for a in active if a["pos"] < len(seqs[a["i"]])]
                for a in finished:
                    self._finish_scored(a, seqs[a["i"]])
                    i = a["i"]
                    pos = np.asarray(wanted[i], dtype=np.int64)
                    shift = 0 if hidden else 1
                    if hidden:
                        h = (torch.stack([outputs[i][p - shift] for p in wanted[i]])
                             if wanted[i] else torch.empty(0, self.config.hidden_size))
                        results[i] = ScoreResult(pos, hidden_states=h, cached_tokens=a["cached"])
                    else:
                        lp = np.asarray([outputs[i][p - shift] for p in wanted[i]],
                                        dtype=np.float32)
                        results[i] = ScoreResult(pos, logprobs=lp, cached_tokens=a["cached"])
                    outputs[i] = {}
        except BaseException:
            for a in active:
                try:
                    cache.free(a["owned"])
                    cache.unlock(a["node"])
                except Exception:  # noqa: BLE001
                    pass
            raise
        return results  # type: ignore[return-value]

    def _finish_scored(self, a: dict, tokens: list[int]) -> None:
        cache = self.cache
        ps = self.page_size
        n_full = len(tokens) // ps
        first_owned = a["cached"] // ps
        if n_full * ps > a["cached"]:
            cache.insert(tokens[: n_full * ps], a["pages"][:n_full])
        rest = a["pages"][max(n_full, first_owned):]
        if rest:
            cache.free(rest)
        cache.unlock(a["node"])
        a["owned"] = []

    # ------------------------------------------------------------------ generic path
    def _store_lookup(self, tokens: list[int]) -> tuple[int, list | None]:
        """Longest stored KV sharing a prefix with ``tokens`` (at most ``len - 1`` tokens)."""
        best_len, best = 0, None
        limit = len(tokens) - 1
        best_key = None
        for key, kv in self._store.items():
            n = min(len(key), limit)
            if n <= best_len:
                continue
            c = 0
            while c < n and key[c] == tokens[c]:
                c += 1
            if c > best_len:
                best_len, best, best_key = c, kv, key
        if best_key is not None:
            self._store.move_to_end(best_key)
        return best_len, best

    def _store_put(self, tokens: tuple[int, ...], kv: list) -> None:
        if not tokens or tokens in self._store:
            return
        budget = self.num_pages * self.page_size
        if len(tokens) > budget:
            return
        self._store[tokens] = kv
        self._store_tokens += len(tokens)
        while self._store_tokens > budget:
            old, _ = self._store.popitem(last=False)
            self._store_tokens -= len(old)

    def _make_cache(self, kv: list | None, length: int, repeat: int = 1):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.config)
        if kv is not None:
            for layer, (k, v) in enumerate(kv):
                k = k[:, :, :length]
                v = v[:, :, :length]
                if repeat > 1:
                    k = k.repeat_interleave(repeat, dim=0)
                    v = v.repeat_interleave(repeat, dim=0)
                cache.update(k, v, layer)
        return cache

    @staticmethod
    def _cache_layers(cache: Any) -> list | None:
        layers = getattr(cache, "layers", None)
        if not layers:
            return None
        out = []
        for layer in layers:
            k, v = getattr(layer, "keys", None), getattr(layer, "values", None)
            if not isinstance(k, torch.Tensor) or not isinstance(v, torch.Tensor) or k.ndim != 4:
                return None
            out.append((k, v))
        return out

    @torch.inference_mode()
    def _expand_generic(self, groups: list[_Group], call: EngineStats) -> None:
        model = self.model
        for g in groups:
            n = g.req.n
            reuse, kv = self._store_lookup(g.tokens)
            cache = self._make_cache(kv, reuse)
            g.cached = reuse
            call.reused_tokens += reuse
            ids = torch.tensor([g.tokens[reuse:]], dtype=torch.int64, device=self.device)
            out = model(input_ids=ids, past_key_values=cache, use_cache=True)
            call.forward_calls += 1
            call.prefilled_tokens += ids.shape[1]
            cache = out.past_key_values
            logits = out.logits[:, -1].float().expand(n, -1)
            if n > 1:
                cache.batch_repeat_interleave(n)
            seqs = [_Seq(g, i, []) for i in range(n)]
            while True:
                live = [s for s in seqs if not s.done]
                rows = torch.tensor([s.index for s in live], device=logits.device)
                self._sample_generic(logits.index_select(0, rows), live, call)
                if all(s.done for s in seqs):
                    break
                # Lockstep: finished samples ride along (their tokens are ignored) so the
                # cache stays one rectangular batch.
                step = torch.tensor([[s.gen[-1]] for s in seqs], device=self.device)
                out = model(input_ids=step, past_key_values=cache, use_cache=True)
                call.forward_calls += 1
                call.decoded_tokens += n
                cache = out.past_key_values
                logits = out.logits[:, -1].float()
                for s in seqs:
                    if not s.done:
                        s.kv_len += 1
                self._store_finished(seqs, cache)
            self._store_finished(seqs, cache)

    def _sample_generic(self, logits: torch.Tensor, seqs: list[_Seq], call: EngineStats
                        ) -> None:
        params = [s.group.req.sampling for s in seqs]
        keys = [(s.group.seed, s.index, len(s.gen)) for s in seqs]
        tokens, logp, raw = sample_tokens(logits, params, keys, _exclusion_bias(seqs))
        call.generated_tokens += len(seqs)
        for s, t, lp, rl in zip(seqs, tokens.tolist(), logp.tolist(), raw.tolist(),
                                strict=True):
            s.gen.append(t)
            s.tokens.append(t)
            s.logprobs.append(lp)
            s.raw.append(rl)
            reason = _finish_reason(s.gen, s.group, self.eos_token_ids)
            if reason is not None:
                s.done = True
                s.unstored = True
                s.group.results[s.index] = Sample(tokens=s.gen, logprobs=s.logprobs,
                                                  raw_logprobs=s.raw, finish_reason=reason,
                                                  index=s.index)

    def _store_finished(self, seqs: list[_Seq], cache: Any) -> None:
        layers = None
        for s in seqs:
            if s.unstored:
                s.unstored = False
                if layers is None:
                    layers = self._cache_layers(cache)
                    if layers is None:
                        return
                kv = [(k[s.index:s.index + 1, :, :s.kv_len].clone(),
                       v[s.index:s.index + 1, :, :s.kv_len].clone()) for k, v in layers]
                self._store_put(tuple(s.tokens[:s.kv_len]), kv)

    @torch.inference_mode()
    def _score_generic(self, seqs: list[list[int]], wanted: list[list[int]], hidden: bool,
                       call: EngineStats) -> list[ScoreResult]:
        results = []
        for s, w in zip(seqs, wanted, strict=True):
            ids = torch.tensor([s], dtype=torch.int64, device=self.device)
            out = self.model(input_ids=ids, output_hidden_states=hidden, use_cache=False)
            call.forward_calls += 1
            call.prefilled_tokens += len(s)
            pos = np.asarray(w, dtype=np.int64)
            idx = torch.as_tensor(pos, device=self.device)
            if hidden:
                results.append(ScoreResult(pos, hidden_states=out.hidden_states[-1][0][idx]))
            else:
                logp = torch.log_softmax(out.logits[0].float(), dim=-1)
                vals = logp[idx - 1, torch.as_tensor([s[p] for p in w], device=self.device,
                                                     dtype=torch.int64)]
                results.append(ScoreResult(pos, logprobs=vals.cpu().numpy().astype(np.float32)))
        return results


def _finish_reason(gen: list[int], g: _Group, eos: frozenset[int]) -> str | None:
    stop = g.req.stop
    last = gen[-1]
    if stop.stop_at_eos and last in eos:
        return "eos"
    d = g.delimiter
    if d and len(gen) >= len(d) and tuple(gen[-len(d):]) == d:
        return "stop"
    if len(gen) >= g.max_new:
        return "length"
    return None

