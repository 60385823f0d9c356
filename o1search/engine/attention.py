"""Paged attention backends behind one interface.

A backend reads and writes a paged KV cache: per layer, ``k_cache`` and ``v_cache`` are
``[num_pages, page_size, Hkv, D]`` tensors (see :class:`o1search.engine.KVPool`), and a
sequence's KV lives in the pages its row of a ``block_table`` names, in order. Token ``t`` of a
sequence sits at ``(block_table[b, t // page_size], t % page_size)``, i.e. at the flat *slot*
``page * page_size + offset``.

The model runner only calls the methods of :class:`AttentionBackend`, so a new backend (Triton,
flash-attn) plugs in by subclassing it and calling
:func:`o1search.engine.backends.register_attention_backend`; the runner does not change. This
module holds only the interface and the torch backends; the registry that knows every backend
(and chooses one) is :mod:`o1search.engine.backends`. ``torch`` is the reference (and the CPU
path): plain tensor ops, no custom kernels.

Shapes (all tensors on the cache's device):

* ``store_kv(k_cache, v_cache, k [T, Hkv, D], v [T, Hkv, D], slot_mapping [T] int64)``
* ``extend(q [T, Hq, D], k_cache, v_cache, block_table [B, max_pages] int32,
  prefix_lens [B] int32, extend_lens [B] int32, sm_scale) -> [T, Hq, D]``: ``q`` packs the new
  tokens of all ``B`` sequences back to back (sequence ``b`` owns ``extend_lens[b]`` rows); their
  KV is already stored; new token ``i`` of sequence ``b`` attends to the cached
  ``prefix_lens[b]`` tokens and causally to new tokens ``0..i``.
* ``decode(q [B, Hq, D], k_cache, v_cache, block_table, seq_lens [B] int32, sm_scale)
  -> [B, Hq, D]``: one new token per sequence, whose KV is already stored, attending to all
  ``seq_lens[b]`` tokens (itself included).
* ``copy_pages(k_caches, v_caches, src_pages, dst_pages)``: copy whole pages in every layer
  (copy-on-write of a shared, partially filled page).

``extend`` and ``decode`` take an optional keyword ``sliding_window``: when set, a query at
position ``p`` sees only keys at positions ``> p - sliding_window`` (the ``transformers``
convention). The runner passes it only when some sequence is longer than the window; a backend
that cannot honour it sets ``supports_sliding_window = False`` and the runner then uses the
``torch`` backend for that call.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "AttentionBackend",
    "TorchAttentionBackend",
    "TorchCascadeAttentionBackend",
]


class AttentionBackend:
    """Interface of a paged attention backend (see the module docstring for shapes).

    Backends are stateless: every call receives the caches and the page tables, so one
    instance serves all layers and all models.
    """

    name: str = "abstract"
    #: Whether ``extend``/``decode`` honour the ``sliding_window`` keyword.
    supports_sliding_window: bool = False

    def store_kv(
        self,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        slot_mapping: torch.Tensor,
    ) -> None:
        """Write new keys/values into their slots.

        Parameters
        ----------
        k_cache, v_cache : torch.Tensor
            ``[num_pages, page_size, Hkv, D]``, written in place.
        k, v : torch.Tensor
            ``[T, Hkv, D]`` keys/values of ``T`` new tokens.
        slot_mapping : torch.Tensor
            ``[T]`` int64, ``page * page_size + offset`` of each token.
        """
        num_pages, page_size = k_cache.shape[0], k_cache.shape[1]
        flat_k = k_cache.view(num_pages * page_size, *k_cache.shape[2:])
        flat_v = v_cache.view(num_pages * page_size, *v_cache.shape[2:])
        flat_k.index_copy_(0, slot_mapping, k.to(k_cache.dtype))
        flat_v.index_copy_(0, slot_mapping, v.to(v_cache.dtype))

    def extend(
        self,
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        block_table: torch.Tensor,
        prefix_lens: torch.Tensor,
        extend_lens: torch.Tensor,
        sm_scale: float,
        *,
        sliding_window: int | None = None,
    ) -> torch.Tensor:
        """Attention of packed new tokens over cached prefix + causal new tokens.

        Parameters
        ----------
        q : torch.Tensor
            ``[T, Hq, D]`` queries of the new tokens, ``T == extend_lens.sum()``.
        k_cache, v_cache : torch.Tensor
            ``[num_pages, page_size, Hkv, D]`` with the new tokens' KV already stored.
        block_table : torch.Tensor
            ``[B, max_pages]`` int32 page ids of each sequence (unused tail entries arbitrary).
        prefix_lens, extend_lens : torch.Tensor
            ``[B]`` int32 cached and new token counts.
        sm_scale : float
            Softmax scale (usually ``D ** -0.5``).
        sliding_window : int, optional
            Keys at positions ``<= p - sliding_window`` are masked for a query at ``p``.

        Returns
        -------
        torch.Tensor
            ``[T, Hq, D]`` attention output, dtype of ``q``.
        """
        raise NotImplementedError

    def decode(
        self,
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        block_table: torch.Tensor,
        seq_lens: torch.Tensor,
        sm_scale: float,
        *,
        sliding_window: int | None = None,
    ) -> torch.Tensor:
        """Attention of one new token per sequence over its whole cached sequence.

        Parameters
        ----------
        q : torch.Tensor
            ``[B, Hq, D]``.
        k_cache, v_cache : torch.Tensor
            ``[num_pages, page_size, Hkv, D]`` with the new token's KV already stored.
        block_table : torch.Tensor
            ``[B, max_pages]`` int32.
        seq_lens : torch.Tensor
            ``[B]`` int32 sequence lengths including the new token.
        sm_scale : float
            Softmax scale.
        sliding_window : int, optional
            As in :meth:`extend`.

        Returns
        -------
        torch.Tensor
            ``[B, Hq, D]``.
        """
        raise NotImplementedError

    def copy_pages(
        self,
        k_caches: Sequence[torch.Tensor],
        v_caches: Sequence[torch.Tensor],
        src_pages: torch.Tensor,
        dst_pages: torch.Tensor,
    ) -> None:
        """Copy pages ``src_pages[i] -> dst_pages[i]`` in every layer's K and V cache.

        Parameters
        ----------
        k_caches, v_caches : sequence of torch.Tensor
            One ``[num_pages, page_size, Hkv, D]`` tensor per layer.
        src_pages, dst_pages : torch.Tensor
            ``[P]`` int64 page ids; ``dst_pages`` distinct and disjoint from ``src_pages``.
        """
        for k_cache, v_cache in zip(k_caches, v_caches, strict=True):
            k_cache.index_copy_(0, dst_pages, k_cache.index_select(0, src_pages))
            v_cache.index_copy_(0, dst_pages, v_cache.index_select(0, src_pages))


def _gather_pages(cache: torch.Tensor, pages: torch.Tensor, length: int) -> torch.Tensor:
    """``[length, Hkv, D]`` keys (or values) of one sequence, gathered from its pages."""
    page_size = cache.shape[1]
    n_pages = (length + page_size - 1) // page_size
    return cache.index_select(0, pages[:n_pages].long()).flatten(0, 1)[:length]


class TorchAttentionBackend(AttentionBackend):
    """Reference backend in plain torch: gathers each sequence's pages and runs SDPA.

    GQA is handled by viewing the ``Hq`` query heads as ``Hkv`` groups, so keys/values are
    never repeated. Scores are computed in float32 for half-precision inputs.
    """

    name = "torch"
    supports_sliding_window = True

    def extend(self, q, k_cache, v_cache, block_table, prefix_lens, extend_lens, sm_scale, *,
               sliding_window=None):
        t_total, hq, d = q.shape
        hkv = k_cache.shape[2]
        group = hq // hkv
        out = torch.empty_like(q)
        prefix_list = prefix_lens.tolist()
        extend_list = extend_lens.tolist()
        if sum(extend_list) != t_total:
            raise ValueError(f"extend_lens sum to {sum(extend_list)} but q has {t_total} rows")
        start = 0
        for b, (p_len, e_len) in enumerate(zip(prefix_list, extend_list, strict=True)):
            if e_len == 0:
                continue
            total = p_len + e_len
            k = _gather_pages(k_cache, block_table[b], total)  # [L, Hkv, D]
            v = _gather_pages(v_cache, block_table[b], total)
            qb = q[start:start + e_len]  # [E, Hq, D]
            # Query i sits at position p_len + i; key j is visible when j <= p_len + i
            # (and, with a window, j > p_len + i - window).
            q_pos = torch.arange(p_len, total, device=q.device)[:, None]
            k_pos = torch.arange(total, device=q.device)[None, :]
            mask = k_pos <= q_pos
            if sliding_window is not None:
                mask &= k_pos > q_pos - sliding_window
            out[start:start + e_len] = _sdpa(qb, k, v, mask, sm_scale, group)
            start += e_len
        return out

    def decode(self, q, k_cache, v_cache, block_table, seq_lens, sm_scale, *,
               sliding_window=None):
        bsz, hq, d = q.shape
        num_pages, page_size, hkv, _ = k_cache.shape
        group = hq // hkv
        max_len = int(seq_lens.max().item()) if bsz else 0
        n_pages = (max_len + page_size - 1) // page_size
        pages = block_table[:, :n_pages].long()
        # Padded batch gather: [B, n_pages * page_size, Hkv, D]; the padding is masked out.
        compute_dtype = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
        length = n_pages * page_size
        flat = pages.reshape(-1)
        k = k_cache.index_select(0, flat).view(bsz, length, hkv, d)
        v = v_cache.index_select(0, flat).view(bsz, length, hkv, d)
        k_pos = torch.arange(length, device=q.device)[None, :]
        lens = seq_lens.to(q.device).long()[:, None]
        mask = k_pos < lens  # [B, L]
        if sliding_window is not None:
            mask &= k_pos > (lens - 1) - sliding_window
        # The G query heads of a KV group attend to the group's one key tensor together.
        qg = q.view(bsz, hkv, group, d).to(compute_dtype)
        out, _ = _attend(qg, k, v, mask[:, None, :], sm_scale)
        return out.reshape(bsz, hq, d).to(q.dtype)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
          sm_scale: float, group: int) -> torch.Tensor:
    """Masked attention of ``q [E, Hq, D]`` over ``k, v [L, Hkv, D]`` with ``mask [E, L]``."""
    e_len, hq, d = q.shape
    hkv = k.shape[1]
    compute_dtype = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    # [Hkv, G*E, D] queries against [Hkv, L, D] keys: grouped heads share one key tensor.
    qg = q.view(e_len, hkv, group, d).permute(1, 2, 0, 3).reshape(hkv, group * e_len, d)
    kk = k.permute(1, 0, 2).to(compute_dtype)
    vv = v.permute(1, 0, 2).to(compute_dtype)
    full_mask = mask.repeat(group, 1)[None]  # [1, G*E, L]
    out = torch.nn.functional.scaled_dot_product_attention(
        qg.to(compute_dtype), kk, vv, attn_mask=full_mask, scale=sm_scale)
    return out.view(hkv, group, e_len, d).permute(2, 0, 1, 3).reshape(e_len, hq, d).to(q.dtype)


class TorchCascadeAttentionBackend(TorchAttentionBackend):
    """Torch backend whose ``decode`` reads a shared prefix's KV once for all its sequences.

    Sibling samples of one node share their prefix pages. Adjacent block-table rows that start
    with the same pages form a *segment*; the pages every row of a segment shares (whole pages,
    inside every row's length) are attended once with all the segment's queries, the rest of
    each row separately, and the two partial softmaxes are merged by their log-sum-exp. On CPU
    the gather of KV pages dominates decode time, so this cuts decode attention roughly by the
    number of samples per prefix. Same results as :class:`TorchAttentionBackend` (up to float
    rounding); falls back to it when no pages are shared or a sliding window is active.
    """

    name = "torch_cascade"

    def decode(self, q, k_cache, v_cache, block_table, seq_lens, sm_scale, *,
               sliding_window=None):
        bsz, hq, d = q.shape
        num_pages, page_size, hkv, _ = k_cache.shape
        if bsz < 2 or sliding_window is not None:
            return super().decode(q, k_cache, v_cache, block_table, seq_lens, sm_scale,
                                  sliding_window=sliding_window)
        plan = self._plan(block_table, seq_lens, page_size)
        if plan is None:
            return super().decode(q, k_cache, v_cache, block_table, seq_lens, sm_scale)
        seg_start, seg_pages, row_seg, row_slot, n_max, suffix_pages, suffix_pos, lens = plan
        group = hq // hkv
        compute_dtype = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
        qg = q.view(bsz, hkv, group, d).to(compute_dtype)
        n_seg = seg_start.shape[0]
        c_max = int(seg_pages.max())
        # Level 1: each segment's shared pages against all its rows' queries.
        pre_pages = block_table[seg_start, :c_max].long().reshape(-1)
        kp = k_cache.index_select(0, pre_pages).view(n_seg, c_max * page_size, hkv, d)
        vp = v_cache.index_select(0, pre_pages).view(n_seg, c_max * page_size, hkv, d)
        q1 = torch.zeros(n_seg, n_max, hkv, group, d, dtype=compute_dtype, device=q.device)
        q1[row_seg, row_slot] = qg
        q1 = q1.permute(0, 2, 1, 3, 4).reshape(n_seg, hkv, n_max * group, d)
        pre_len = (seg_pages * page_size)[:, None, None]
        key_pos = torch.arange(c_max * page_size, device=q.device)[None, None, :]
        o1, lse1 = _attend(q1, kp, vp, key_pos < pre_len, sm_scale)
        o1 = o1.view(n_seg, hkv, n_max, group, d).permute(0, 2, 1, 3, 4)[row_seg, row_slot]
        lse1 = lse1.view(n_seg, hkv, n_max, group).permute(0, 2, 1, 3)[row_seg, row_slot]
        # Level 2: each row's own pages.
        n_suf = suffix_pages.shape[1]
        ks = k_cache.index_select(0, suffix_pages.reshape(-1)).view(bsz, n_suf * page_size,
                                                                    hkv, d)
        vs = v_cache.index_select(0, suffix_pages.reshape(-1)).view(bsz, n_suf * page_size,
                                                                    hkv, d)
        mask2 = (suffix_pos < lens[:, None])[:, None, :]
        o2, lse2 = _attend(qg, ks, vs, mask2, sm_scale)
        m = torch.maximum(lse1, lse2)
        w1 = torch.exp(lse1 - m)[..., None]
        w2 = torch.exp(lse2 - m)[..., None]
        out = (o1 * w1 + o2 * w2) / (w1 + w2)
        return out.reshape(bsz, hq, d).to(q.dtype)

    def _plan(self, block_table, seq_lens, page_size):
        """Segments of shared prefix pages; cached for the last block table (all layers of
        one forward pass share it)."""
        memo = getattr(self, "_memo", None)
        if memo is not None and memo[0]() is block_table and memo[1]() is seq_lens:
            return memo[2]
        plan = self._make_plan(block_table, seq_lens, page_size)
        import weakref

        self._memo = (weakref.ref(block_table), weakref.ref(seq_lens), plan)
        return plan

    @staticmethod
    def _make_plan(block_table, seq_lens, page_size):
        device = block_table.device
        lens = seq_lens.to(device).long()
        bsz = lens.shape[0]
        n_pages = int((lens.max() + page_size - 1) // page_size)
        table = block_table[:, :n_pages].long()
        full = lens // page_size  # whole pages inside each row
        new_seg = torch.ones(bsz, dtype=torch.bool, device=device)
        new_seg[1:] = table[1:, 0] != table[:-1, 0]
        row_seg = torch.cumsum(new_seg.long(), 0) - 1
        seg_start = torch.nonzero(new_seg).flatten()
        n_seg = seg_start.shape[0]
        if n_seg == bsz:
            return None  # nothing shared
        leader = seg_start[row_seg]
        same = (table == table[leader]).long()
        common = torch.minimum(torch.cumprod(same, dim=1).sum(1), full)
        seg_pages = torch.full((n_seg,), n_pages, dtype=torch.long, device=device)
        seg_pages = seg_pages.scatter_reduce(0, row_seg, common, reduce="amin")
        sizes = torch.bincount(row_seg, minlength=n_seg)
        shared_reads = int(((sizes - 1) * seg_pages).sum())
        if shared_reads * 8 < bsz * n_pages:  # too little sharing to pay for two passes
            return None
        row_slot = torch.arange(bsz, device=device) - seg_start[row_seg]
        n_max = int(sizes.max())
        row_pre = seg_pages[row_seg]  # shared pages of each row
        n_suf = max(int((n_pages - row_pre).max()), 1)
        j = torch.arange(n_suf, device=device)[None, :]
        src = (row_pre[:, None] + j).clamp(max=n_pages - 1)
        suffix_pages = table.gather(1, src)
        # Absolute position of each suffix slot; past the row's end (or clamped) is masked.
        suffix_pos = ((row_pre[:, None] + j) * page_size)[:, :, None] + torch.arange(
            page_size, device=device)[None, None, :]
        suffix_pos = suffix_pos.reshape(bsz, n_suf * page_size)
        return (seg_start, seg_pages, row_seg, row_slot, n_max, suffix_pages, suffix_pos, lens)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
            scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention that also returns the log-sum-exp (``-inf`` for fully masked rows).

    ``q [N, Hkv, M, D]`` (M queries per KV head), ``k, v [N, L, Hkv, D]`` (as gathered from
    pages), ``mask`` broadcastable to ``[N, M, L]``. Returns ``out [N, Hkv, M, D]`` (0 where
    nothing is visible) and ``lse [N, Hkv, M]``. Loops over KV heads so each matmul reads the
    head's keys in place (strided rows) instead of first copying them into a heads-first
    layout, which costs more than the attention itself on CPU.
    """
    dtype = q.dtype
    outs, lses = [], []
    for h in range(k.shape[2]):
        kh = k[:, :, h].to(dtype)  # [N, L, D], a view for matching dtypes
        vh = v[:, :, h].to(dtype)
        scores = torch.matmul(q[:, h], kh.transpose(1, 2)) * scale  # [N, M, L]
        scores = scores.masked_fill(~mask, float("-inf"))
        lse = torch.logsumexp(scores, dim=-1)
        safe = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
        outs.append(torch.matmul(torch.exp(scores - safe[..., None]), vh))
        lses.append(lse)
    return torch.stack(outs, 1), torch.stack(lses, 1)
