"""The generic fallback of :class:`o1search.engine.Engine` for models the paged runner
cannot run (see :func:`o1search.engine.model_runner.paged_runner_unsupported_reason`): the
``transformers`` model itself, with prefix KV kept as per-layer tensors of finished sequences
(LRU, bounded by ``num_pages * page_size`` tokens), copied into a ``DynamicCache`` when a
later prefix shares tokens with them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from o1search.engine.requests import EngineStats, Sample, ScoreResult
from o1search.engine.sequences import _Group, _Seq, sample_and_append

__all__: list[str] = []


class GenericFallback:
    """The generic path of :class:`~o1search.engine.Engine` (a mixin: it works on the
    engine's ``model``, prefix store and counters)."""

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
        for s, reason in sample_and_append(logits, seqs, call, self.eos_token_ids):
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

