"""Shared-prefix (cascade) decode and the log-sum-exp merge of attention states.

A search tree is many leaves under one long prompt. Plain paged decode reads the prompt's KV
pages once *per leaf*; cascade decode reads them once per tile of leaves: the leaves of a group
are batched as the query rows of one program (``BLOCK_L`` leaves × the GQA heads of one KV
head), then each leaf's own suffix is attended separately and the two partial states are
combined exactly by :func:`merge_states`::

    lse = log(exp(lse_a) + exp(lse_b))
    o   = o_a * exp(lse_a - lse) + o_b * exp(lse_b - lse)
"""

from __future__ import annotations

import math

import torch

from ._common import (
    FLOAT_DTYPES,
    INT_DTYPES,
    check_tensor,
    jit,
    next_pow2,
    resolve_backend,
    tl,
)
from .decode_attention import check_decode_inputs, gather_attention, launch_paged_attention

__all__ = [
    "cascade_decode",
    "cascade_decode_reference",
    "merge_states",
    "merge_states_reference",
]


# --------------------------------------------------------------------------------------------
# merge_states
# --------------------------------------------------------------------------------------------
@jit
def _merge_states_kernel(
    O_A, LSE_A, O_B, LSE_B, O, LSE,
    stride_an, stride_ah, stride_bn, stride_bh, stride_on, stride_oh,
    stride_la, stride_lb, stride_lo,
    NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    h = tl.arange(0, BLOCK_H)
    d = tl.arange(0, BLOCK_D)
    h_mask = h < NUM_HEADS
    mask = h_mask[:, None] & (d[None, :] < HEAD_DIM)
    la = tl.load(LSE_A + n * stride_la + h, mask=h_mask, other=float("-inf"))
    lb = tl.load(LSE_B + n * stride_lb + h, mask=h_mask, other=float("-inf"))
    m = tl.maximum(la, lb)
    # Both states empty: keep the weights finite (0) instead of exp(-inf - -inf) = nan.
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    wa = tl.exp(la - m_safe)
    wb = tl.exp(lb - m_safe)
    total = wa + wb
    denom = tl.where(total > 0.0, total, 1.0)
    oa = tl.load(O_A + n * stride_an + h[:, None] * stride_ah + d[None, :], mask=mask, other=0.0)
    ob = tl.load(O_B + n * stride_bn + h[:, None] * stride_bh + d[None, :], mask=mask, other=0.0)
    out = (oa.to(tl.float32) * (wa / denom)[:, None]) + (ob.to(tl.float32) * (wb / denom)[:, None])
    tl.store(O + n * stride_on + h[:, None] * stride_oh + d[None, :], out.to(O.dtype.element_ty), mask=mask)
    lse = tl.where(total > 0.0, m_safe + tl.log(denom), float("-inf"))
    tl.store(LSE + n * stride_lo + h, lse, mask=h_mask)


def _launch_merge_states(o_a, lse_a, o_b, lse_b, out_dtype):
    N, H, D = o_a.shape
    o = torch.empty((N, H, D), dtype=out_dtype, device=o_a.device)
    lse = torch.empty((N, H), dtype=torch.float32, device=o_a.device)
    if N == 0:
        return o, lse
    lse_a = lse_a.float()
    lse_b = lse_b.float()
    _merge_states_kernel[(N,)](
        O_A=o_a, LSE_A=lse_a, O_B=o_b, LSE_B=lse_b, O=o, LSE=lse,
        stride_an=o_a.stride(0), stride_ah=o_a.stride(1),
        stride_bn=o_b.stride(0), stride_bh=o_b.stride(1),
        stride_on=o.stride(0), stride_oh=o.stride(1),
        stride_la=lse_a.stride(0), stride_lb=lse_b.stride(0), stride_lo=lse.stride(0),
        NUM_HEADS=H, HEAD_DIM=D, BLOCK_H=next_pow2(H), BLOCK_D=next_pow2(D),
    )
    return o, lse


def merge_states_reference(
    o_a: torch.Tensor,
    lse_a: torch.Tensor,
    o_b: torch.Tensor,
    lse_b: torch.Tensor,
    *,
    out_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch reference of :func:`merge_states` (same signature, float32 math)."""
    la, lb = lse_a.float(), lse_b.float()
    lse = torch.logaddexp(la, lb)
    safe = torch.where(torch.isinf(lse), 0.0, lse)  # both empty: weights 0, not nan
    wa = torch.exp(la - safe)[..., None]
    wb = torch.exp(lb - safe)[..., None]
    o = o_a.float() * wa + o_b.float() * wb
    return o.to(out_dtype or o_a.dtype), lse


def merge_states(
    o_a: torch.Tensor,
    lse_a: torch.Tensor,
    o_b: torch.Tensor,
    lse_b: torch.Tensor,
    *,
    out_dtype: torch.dtype | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine two attention states over disjoint key sets into the state over their union.

    Parameters
    ----------
    o_a, o_b:
        ``[N, H, D]`` softmax-normalised outputs over key sets A and B (``stride(-1) == 1``).
    lse_a, lse_b:
        ``[N, H]`` natural-log log-sum-exp of the scaled scores of each set; ``-inf`` marks an
        empty set (its output is ignored).
    out_dtype:
        Dtype of the merged output; default the dtype of ``o_a``.
    backend:
        ``"auto"`` | ``"triton"`` | ``"torch"``.

    Returns
    -------
    tuple[Tensor, Tensor]
        ``o [N, H, D]`` and ``lse [N, H]`` float32 (``-inf`` where both sets are empty, with
        ``o = 0``).

    Raises
    ------
    ValueError
        Shapes that do not match.
    """
    check_tensor(o_a, "o_a", 3, FLOAT_DTYPES)
    check_tensor(o_b, "o_b", 3, FLOAT_DTYPES)
    check_tensor(lse_a, "lse_a", 2, FLOAT_DTYPES)
    check_tensor(lse_b, "lse_b", 2, FLOAT_DTYPES)
    if o_a.shape != o_b.shape:
        raise ValueError(f"o_a and o_b shapes differ: {tuple(o_a.shape)} vs {tuple(o_b.shape)}")
    if lse_a.shape != o_a.shape[:2] or lse_b.shape != o_a.shape[:2]:
        raise ValueError(
            f"lse_a/lse_b must be {tuple(o_a.shape[:2])}, got {tuple(lse_a.shape)} and "
            f"{tuple(lse_b.shape)}"
        )
    if o_a.stride(-1) != 1 or o_b.stride(-1) != 1:
        raise ValueError("o_a and o_b must be contiguous in the last dimension")
    out_dtype = out_dtype or o_a.dtype
    if resolve_backend(backend, o_a, lse_a, o_b, lse_b) == "torch":
        return merge_states_reference(o_a, lse_a, o_b, lse_b, out_dtype=out_dtype)
    return _launch_merge_states(o_a, lse_a, o_b, lse_b, out_dtype)


# --------------------------------------------------------------------------------------------
# cascade decode
# --------------------------------------------------------------------------------------------
def _check_cascade(q, k_cache, v_cache, block_table, seq_lens, leaf_indptr, prefix_lens):
    dims = check_decode_inputs(q, k_cache, v_cache, block_table, seq_lens)
    page_size = dims[1]
    B = q.shape[0]
    check_tensor(leaf_indptr, "leaf_indptr", 1, INT_DTYPES)
    check_tensor(prefix_lens, "prefix_lens", 1, INT_DTYPES)
    G = leaf_indptr.shape[0] - 1
    if G < 0:
        raise ValueError("leaf_indptr must have at least one entry (it is [G + 1])")
    if prefix_lens.shape[0] != G:
        raise ValueError(f"prefix_lens must have shape [{G}] (one per group), got {tuple(prefix_lens.shape)}")
    ind = leaf_indptr.to(torch.int64)
    if int(ind[0]) != 0 or int(ind[-1]) != B or bool((ind[1:] < ind[:-1]).any()):
        raise ValueError(
            f"leaf_indptr must be non-decreasing from 0 to the number of leaves ({B}), got "
            f"{leaf_indptr.tolist() if G < 16 else 'a bad array'}"
        )
    if G and int(prefix_lens.min()) < 0:
        raise ValueError("prefix_lens must be >= 0")
    if B == 0:
        return ind
    sizes = ind[1:] - ind[:-1]
    group_of = torch.repeat_interleave(torch.arange(G, device=q.device), sizes)  # [B]
    plen = prefix_lens.to(torch.int64)[group_of]
    if bool((plen > seq_lens.to(torch.int64)).any()):
        b = int(torch.nonzero(plen > seq_lens.to(torch.int64))[0])
        raise ValueError(
            f"leaf {b}: its group's prefix ({int(plen[b])} tokens) is longer than the leaf "
            f"({int(seq_lens[b])} tokens)"
        )
    # Full prefix pages must be the very same pages in every leaf of a group (they are read
    # once, from the group's first leaf). A partial last prefix page may be a copy-on-write copy.
    full = plen // page_size
    width = int(full.max())
    if width:
        cols = torch.arange(width, device=q.device)
        first_rows = block_table[ind[:-1][group_of].clamp(max=B - 1)]
        differ = (block_table[:, :width] != first_rows[:, :width]) & (cols[None, :] < full[:, None])
        if bool(differ.any()):
            b, j = (int(x) for x in torch.nonzero(differ)[0])
            raise ValueError(
                f"leaf {b} maps shared-prefix page {j} to {int(block_table[b, j])}, but the first "
                f"leaf of its group maps it to {int(first_rows[b, j])}; leaves of a group must "
                "share their full prefix pages"
            )
    return ind


def cascade_decode_reference(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    leaf_indptr: torch.Tensor,
    prefix_lens: torch.Tensor,
    sm_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch reference of :func:`cascade_decode` (same signature): prefix and suffix states,
    each computed densely, merged with :func:`merge_states_reference`."""
    B = q.shape[0]
    ind = leaf_indptr.to(torch.int64)
    sizes = ind[1:] - ind[:-1]
    G = sizes.shape[0]
    group_of = torch.repeat_interleave(torch.arange(G, device=q.device), sizes)
    plen = prefix_lens.to(torch.int64)[group_of] if B else seq_lens.to(torch.int64)
    first = ind[:-1][group_of] if B else group_of
    zeros = torch.zeros_like(plen)
    # Prefix from the group's first leaf's pages (what the kernel reads), suffix from each own.
    o_p, lse_p = gather_attention(q, k_cache, v_cache, block_table[first], zeros, plen, sm_scale)
    o_s, lse_s = gather_attention(
        q, k_cache, v_cache, block_table, plen, seq_lens.to(torch.int64), sm_scale
    )
    return merge_states_reference(o_p.float(), lse_p, o_s.float(), lse_s, out_dtype=q.dtype)


def cascade_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    leaf_indptr: torch.Tensor,
    prefix_lens: torch.Tensor,
    sm_scale: float | None = None,
    *,
    block_l: int | None = None,
    num_splits: int | None = None,
    check: bool = True,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode attention for leaves grouped under shared prefixes, reading each prefix once per tile.

    Leaves ``leaf_indptr[g]:leaf_indptr[g+1]`` (rows of ``q``) form group ``g``; their first
    ``prefix_lens[g]`` tokens are the same KV (the same full pages; a partial last prefix page
    may be a copy-on-write copy with the same contents). The result equals
    :func:`paged_decode_attention` over each leaf's whole sequence.

    Parameters
    ----------
    q:
        ``[B, Hq, D]`` one query per leaf, grouped contiguously.
    k_cache, v_cache:
        ``[num_pages, page_size, Hkv, D]``.
    block_table:
        ``[B, max_pages]`` each leaf's full page list (prefix pages first).
    seq_lens:
        ``[B]`` tokens per leaf (prefix + suffix).
    leaf_indptr:
        ``[G + 1]`` int32/int64, non-decreasing from ``0`` to ``B``.
    prefix_lens:
        ``[G]`` shared tokens per group, ``<=`` each of its leaves' ``seq_lens``.
    sm_scale:
        Softmax scale; ``1/sqrt(D)`` when ``None``.
    block_l:
        Triton only: leaves per program for the prefix pass (default: enough for ~64 query rows
        on a GPU).
    num_splits:
        Triton only: split the prefix over this many programs per tile (``None``: automatic).
    check:
        Run the host-side checks (shapes, dtypes, page ids in range). Each costs a device sync;
        a caller that validated the same tables already (e.g. for an earlier layer) may skip
        them. Skipping them with bad inputs is undefined behaviour (out-of-bounds reads).
    backend:
        ``"auto"`` | ``"triton"`` | ``"torch"``.

    Returns
    -------
    tuple[Tensor, Tensor]
        ``o [B, Hq, D]`` (dtype of ``q``) and ``lse [B, Hq]`` float32.

    Raises
    ------
    ValueError
        Everything :func:`paged_decode_attention` rejects, a malformed ``leaf_indptr``, a prefix
        longer than a leaf, or leaves of a group that do not share their full prefix pages.
    """
    if check:
        ind = _check_cascade(q, k_cache, v_cache, block_table, seq_lens, leaf_indptr, prefix_lens)
    else:
        ind = leaf_indptr.to(torch.int64)
    if block_l is not None and block_l < 1:
        raise ValueError(f"block_l must be >= 1, got {block_l}")
    scale = 1.0 / math.sqrt(q.shape[2]) if sm_scale is None else float(sm_scale)
    args = (q, k_cache, v_cache, block_table, seq_lens, leaf_indptr, prefix_lens)
    if resolve_backend(backend, *args) == "torch":
        return cascade_decode_reference(*args, scale)
    B, Hq, _ = q.shape
    Hkv = k_cache.shape[2]
    G = prefix_lens.shape[0]
    if B == 0:
        return torch.empty_like(q), torch.empty((0, Hq), dtype=torch.float32, device=q.device)
    sizes = ind[1:] - ind[:-1]
    max_leaves = int(sizes.max())
    if block_l is None:
        rows = 64 if q.device.type == "cuda" else 16
        block_l = max(1, min(next_pow2(max_leaves), rows // next_pow2(Hq // Hkv)))
    ind32 = ind.to(torch.int32)
    plen32 = prefix_lens.to(torch.int32)
    # Prefix pass: the group's first leaf's table row stands for all of its leaves. Groups with
    # no leaves launch programs that exit at once, so their row index is never read.
    o_p, lse_p = launch_paged_attention(
        q, k_cache, v_cache, block_table,
        qo_indptr=ind32, table_rows=ind32[:-1].clamp(max=B - 1), kv_start=torch.zeros_like(plen32),
        kv_end=plen32, sm_scale=scale, max_queries=max_leaves,
        max_len=int(plen32.max()) if G else 0, block_l=block_l, num_splits=num_splits,
        out_dtype=torch.float32,
    )
    group_of = torch.repeat_interleave(torch.arange(G, device=q.device), sizes)
    idx = torch.arange(B + 1, dtype=torch.int32, device=q.device)
    suffix_start = plen32[group_of]
    o_s, lse_s = launch_paged_attention(
        q, k_cache, v_cache, block_table,
        qo_indptr=idx, table_rows=idx[:B], kv_start=suffix_start,
        kv_end=seq_lens.to(torch.int32), sm_scale=scale, max_queries=1,
        max_len=int((seq_lens.to(torch.int32) - suffix_start).max()), block_l=1,
        out_dtype=torch.float32,
    )
    return _launch_merge_states(o_p, lse_p, o_s, lse_s, q.dtype)
