"""Batched node expansion with shared-prefix KV reuse.

:class:`Engine` turns :class:`ExpandRequest` s (a token prefix, ``n`` samples, sampling
parameters and a stop rule) into :class:`ExpandResult` s. For every prefix only the part a
:class:`o1search.RadixCache` does not hold is prefilled; the ``n`` samples of a request share
the prefix pages (a partly filled last page is copied per sample: copy-on-write); samples that
finish leave the batch and waiting requests join (continuous batching under a token budget);
finished samples' pages are inserted into the cache so that expanding a child later reuses
them.

The facade lives here; the paged scheduler (admission, prefill, decode, release) is
:mod:`o1search.engine.scheduler`, the generic path for models the paged runner does not
support is :mod:`o1search.engine.fallback`, the request and result types are
:mod:`o1search.engine.requests`.
"""

from __future__ import annotations

import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch

from o1search.engine.backends import get_attention_backend
from o1search.engine.fallback import GenericFallback
from o1search.engine.model_runner import ModelRunner, paged_runner_unsupported_reason
from o1search.engine.requests import (
    EngineStats,
    ExpandRequest,
    ExpandResult,
    Sample,
    ScoreResult,
    _as_token_tuple,
)
from o1search.engine.sampling import SamplingParams, StopRule
from o1search.engine.scheduler import PagedScheduling
from o1search.engine.sequences import _Group

__all__ = [
    "Engine",
    "EngineStats",
    "ExpandRequest",
    "ExpandResult",
    "Sample",
    "ScoreResult",
]


_WARNED: set[tuple[str, str]] = set()


def _warn_fallback_once(model_name: str, reason: str) -> None:
    """One warning per model class and reason and process: the generic path is far slower
    (about 26x, measured on GPT-2-sized models) and only ``engine.fallback_reason`` said so."""
    if (model_name, reason) in _WARNED:
        return
    _WARNED.add((model_name, reason))
    warnings.warn(f"o1search.Engine: {model_name} runs on the generic transformers path, not "
                  f"the paged runner ({reason}); expect it to be much slower",
                  RuntimeWarning, stacklevel=3)


class Engine(PagedScheduling, GenericFallback):
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
        if self.fallback_reason is not None:
            _warn_fallback_once(type(model).__name__, self.fallback_reason)
        self.backend = get_attention_backend(attention_backend, self.device)
        if self.fallback_reason is None:
            self.runner: ModelRunner | None = ModelRunner.for_model(
                model, num_pages=num_pages, page_size=page_size, backend=self.backend)
            if cache_factory is None:
                from o1search.radix_cache import RadixCache

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

    def _decode_new(self, ids: list[int]) -> str:
        """Text of a few new tokens, special tokens kept (for string step delimiters)."""
        return self.tokenizer.decode(ids, skip_special_tokens=False)

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
            text = r.stop.step_delimiter if isinstance(r.stop.step_delimiter, str) else None
            if not callable(getattr(self.tokenizer, "decode", None)):
                text = None  # a tokenizer that only encodes: the delimiter's ids alone
            groups.append(_Group(i, r, seed, self._delimiter_ids(r.stop), max_new,
                                 stop_text=text, decode=self._decode_new if text else None))
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

