"""The paged scheduler of :class:`o1search.engine.Engine`: admission, chunked prefill,
batched decode and release over the radix cache's pages.

Page life cycle. At admission a request locks its matched prefix and allocates, in one call,
the pages of its uncached tail plus the worst case its samples can need (``max_new_tokens``
each), so decoding never runs out of pages half way. When the prefill ends, the prefix's
whole pages are inserted into the cache. When a sample ends, the whole pages of its KV are
inserted and its other pages freed; when the last sample of a request ends, its unused
reserve is freed and its lock released. On any error every page the call holds is given back
and every lock released, so ``free + evictable == capacity`` again.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch

from o1search._native import InternalError, OutOfPagesError
from o1search.engine.requests import EngineStats, Sample, ScoreResult
from o1search.engine.sequences import _Group, _Seq, sample_and_append

__all__: list[str] = []


class PagedScheduling:
    """The paged path of :class:`~o1search.engine.Engine` (a mixin: it works on the
    engine's ``runner``, ``cache``, ``page_size`` and counters)."""

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
        for s, reason in sample_and_append(logits, seqs, call, self.eos_token_ids):
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

