"""Paged decode attention (GQA, block table), returning the output and its log-sum-exp.

One Triton kernel serves both plain decode and the shared-prefix (cascade) decode of
:mod:`kernels.cascade`: a program owns a tile of *query rows* — ``BLOCK_L`` queries of one
group × the ``GROUP`` query heads of one KV head — and streams one token range of one block-table
row through them with an online softmax. Plain decode is the case of one query per group (the
GQA heads of a KV head still share each K/V load); cascade decode puts many leaves in a group so
the shared prefix pages are read once per tile instead of once per leaf. Long ranges can be split
over several programs (``num_splits``, flash-decoding) whose partial states are merged by
log-sum-exp.
"""

from __future__ import annotations

import math

import torch

from ._common import (
    FLOAT_DTYPES,
    check_block_table,
    check_gqa,
    check_kv_cache,
    check_lengths,
    check_tensor,
    interpreting,
    jit,
    next_pow2,
    resolve_backend,
    tl,
)

__all__ = ["paged_decode_attention", "paged_decode_attention_reference"]

_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453


@jit
def _paged_attn_kernel(
    Q, K_CACHE, V_CACHE, BT, O, LSE,
    QO_INDPTR, TABLE_ROW, KV_START, KV_END,
    sm_scale_log2, tiles_per_group,
    stride_qn, stride_qh,
    stride_cp, stride_cs, stride_ch,
    stride_bt,
    stride_os, stride_on, stride_oh,
    stride_ls, stride_ln,
    GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, BLOCK_L: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, HEAD_DIM: tl.constexpr,
    PAGE_SIZE: tl.constexpr, NUM_SPLITS: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    g = pid // tiles_per_group
    tile = pid % tiles_per_group
    q_lo = tl.load(QO_INDPTR + g)
    q_hi = tl.load(QO_INDPTR + g + 1)
    first = q_lo + tile * BLOCK_L
    if first >= q_hi:  # this group has fewer queries than the widest one
        return
    row = tl.load(TABLE_ROW + g).to(tl.int64)
    kv_lo = tl.load(KV_START + g)
    kv_hi = tl.load(KV_END + g)
    # Split the range into NUM_SPLITS chunks of whole BLOCK_N tiles.
    per_split = tl.cdiv(tl.cdiv(kv_hi - kv_lo, NUM_SPLITS), BLOCK_N) * BLOCK_N
    s_lo = kv_lo + split * per_split
    s_hi = tl.minimum(s_lo + per_split, kv_hi)

    BLOCK_M: tl.constexpr = BLOCK_L * GROUP_PAD
    r = tl.arange(0, BLOCK_M)
    qi = (first + r // GROUP_PAD).to(tl.int64)
    hq = kvh * GROUP + r % GROUP_PAD
    row_mask = (qi < q_hi) & (r % GROUP_PAD < GROUP)
    d = tl.arange(0, BLOCK_D)
    d_mask = d < HEAD_DIM
    q = tl.load(
        Q + qi[:, None] * stride_qn + hq[:, None] * stride_qh + d[None, :],
        mask=row_mask[:, None] & d_mask[None, :], other=0.0,
    )
    if UPCAST:
        q = q.to(tl.float32)

    # A finite floor instead of -inf keeps exp2(m_old - m_new) defined when a whole tile is masked.
    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for start in range(s_lo, s_hi, BLOCK_N):
        n = start + tl.arange(0, BLOCK_N)
        n_mask = n < s_hi
        page = tl.load(BT + row * stride_bt + n // PAGE_SIZE, mask=n_mask, other=0).to(tl.int64)
        kv_off = page * stride_cp + (n % PAGE_SIZE) * stride_cs + kvh * stride_ch
        kv_mask = n_mask[:, None] & d_mask[None, :]
        k = tl.load(K_CACHE + kv_off[:, None] + d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(V_CACHE + kv_off[:, None] + d[None, :], mask=kv_mask, other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * sm_scale_log2
        s = tl.where(n_mask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m_i = m_new

    has = l_i > 0.0
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    lse = tl.where(has, (m_i + tl.log2(tl.where(has, l_i, 1.0))) * 0.6931471805599453, float("-inf"))
    o_ptr = O + split * stride_os + qi[:, None] * stride_on + hq[:, None] * stride_oh + d[None, :]
    tl.store(o_ptr, out.to(O.dtype.element_ty), mask=row_mask[:, None] & d_mask[None, :])
    tl.store(LSE + split * stride_ls + qi * stride_ln + hq, lse, mask=row_mask)


@jit
def _merge_splits_kernel(
    O_PART, LSE_PART, O, LSE,
    stride_ps, stride_pn, stride_ph,
    stride_ls, stride_ln,
    stride_on, stride_oh, stride_lse_n,
    NUM_SPLITS: tl.constexpr, BLOCK_S: tl.constexpr,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    s = tl.arange(0, BLOCK_S)
    s_mask = s < NUM_SPLITS
    lse = tl.load(LSE_PART + s * stride_ls + n * stride_ln + h, mask=s_mask, other=float("-inf"))
    m = tl.max(lse, axis=0)
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    w = tl.exp(lse - m_safe)  # exp(-inf) = 0 for empty splits
    total = tl.sum(w, axis=0)
    d = tl.arange(0, BLOCK_D)
    d_mask = d < HEAD_DIM
    parts = tl.load(
        O_PART + s[:, None] * stride_ps + n * stride_pn + h * stride_ph + d[None, :],
        mask=s_mask[:, None] & d_mask[None, :], other=0.0,
    )
    out = tl.sum(parts * w[:, None], axis=0) / tl.where(total > 0.0, total, 1.0)
    tl.store(O + n * stride_on + h * stride_oh + d, out.to(O.dtype.element_ty), mask=d_mask)
    log_total = tl.log(tl.where(total > 0.0, total, 1.0))
    tl.store(LSE + n * stride_lse_n + h, tl.where(total > 0.0, m_safe + log_total, float("-inf")))


def _pick_num_splits(programs: int, max_len: int, device: torch.device) -> int:
    """Split long ranges over programs only when the grid alone would leave SMs idle."""
    if device.type != "cuda" or max_len <= 256:
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    if programs >= sms:
        return 1
    return max(1, min(-(-2 * sms // programs), -(-max_len // 256), 32))


def launch_paged_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    qo_indptr: torch.Tensor,
    table_rows: torch.Tensor,
    kv_start: torch.Tensor,
    kv_end: torch.Tensor,
    sm_scale: float,
    *,
    max_queries: int,
    max_len: int,
    block_l: int = 1,
    num_splits: int | None = None,
    out_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the query-tile kernel over ``G`` groups (inputs already validated).

    Group ``g`` owns query rows ``qo_indptr[g]:qo_indptr[g+1]`` of ``q [N, Hq, D]`` and reads
    tokens ``kv_start[g]:kv_end[g]`` of block-table row ``table_rows[g]``.

    Returns
    -------
    tuple[Tensor, Tensor]
        ``o [N, Hq, D]`` (``out_dtype``, default the dtype of ``q``) and ``lse [N, Hq]``
        float32, natural log; rows of no group are left uninitialised.
    """
    N, Hq, D = q.shape
    _, page_size, Hkv, _ = k_cache.shape
    group = Hq // Hkv
    G = table_rows.shape[0]
    o = torch.empty(q.shape, dtype=out_dtype or q.dtype, device=q.device)
    lse = torch.empty((N, Hq), dtype=torch.float32, device=q.device)
    if N == 0 or G == 0:
        return o, lse
    tiles = max(1, -(-max_queries // block_l))
    # tl.dot wants at least 16 rows: pad the head axis when one tile holds too few rows.
    group_pad = max(next_pow2(group), next_pow2(-(-16 // block_l)))
    block_d = max(16, next_pow2(D))
    if num_splits is None:
        num_splits = _pick_num_splits(G * tiles * Hkv, max_len, q.device)
    upcast = q.dtype == torch.bfloat16 and interpreting()
    precision = "ieee" if (q.dtype == torch.float32 or upcast) else "tf32"
    block_n = 64 if q.device.type == "cuda" else 32
    if num_splits == 1:
        o_dst, lse_dst = o, lse
    else:
        o_dst = torch.empty((num_splits, N, Hq, D), dtype=torch.float32, device=q.device)
        lse_dst = torch.empty((num_splits, N, Hq), dtype=torch.float32, device=q.device)
    o4 = o_dst if num_splits > 1 else o_dst.unsqueeze(0)
    l3 = lse_dst if num_splits > 1 else lse_dst.unsqueeze(0)
    _paged_attn_kernel[(G * tiles, Hkv, num_splits)](
        Q=q, K_CACHE=k_cache, V_CACHE=v_cache, BT=block_table, O=o4, LSE=l3,
        QO_INDPTR=qo_indptr, TABLE_ROW=table_rows, KV_START=kv_start, KV_END=kv_end,
        sm_scale_log2=float(sm_scale) * _LOG2E, tiles_per_group=tiles,
        stride_qn=q.stride(0), stride_qh=q.stride(1),
        stride_cp=k_cache.stride(0), stride_cs=k_cache.stride(1), stride_ch=k_cache.stride(2),
        stride_bt=block_table.stride(0),
        stride_os=o4.stride(0), stride_on=o4.stride(1), stride_oh=o4.stride(2),
        stride_ls=l3.stride(0), stride_ln=l3.stride(1),
        GROUP=group, GROUP_PAD=group_pad, BLOCK_L=block_l,
        BLOCK_N=block_n, BLOCK_D=block_d, HEAD_DIM=D, PAGE_SIZE=page_size,
        NUM_SPLITS=num_splits, UPCAST=upcast, DOT_PRECISION=precision,
    )
    if num_splits > 1:
        _merge_splits_kernel[(N, Hq)](
            O_PART=o_dst, LSE_PART=lse_dst, O=o, LSE=lse,
            stride_ps=o_dst.stride(0), stride_pn=o_dst.stride(1), stride_ph=o_dst.stride(2),
            stride_ls=lse_dst.stride(0), stride_ln=lse_dst.stride(1),
            stride_on=o.stride(0), stride_oh=o.stride(1), stride_lse_n=lse.stride(0),
            NUM_SPLITS=num_splits, BLOCK_S=next_pow2(num_splits),
            HEAD_DIM=D, BLOCK_D=next_pow2(D),
        )
    return o, lse


def gather_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    kv_start: torch.Tensor,
    kv_end: torch.Tensor,
    sm_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch: each query row ``b`` attends to tokens ``kv_start[b]:kv_end[b]`` of its own pages.

    ``q [B, Hq, D]``, ``block_table [B, P]``. Returns ``o [B, Hq, D]`` (dtype of ``q``) and
    ``lse [B, Hq]`` float32; an empty range gives ``o = 0`` and ``lse = -inf``.
    """
    B, Hq, D = q.shape
    page_size, Hkv = k_cache.shape[1], k_cache.shape[2]
    group = Hq // Hkv
    max_len = int(kv_end.max()) if B else 0
    if max_len == 0:
        return torch.zeros_like(q), torch.full((B, Hq), float("-inf"), device=q.device)
    pos = torch.arange(max_len, device=q.device)
    valid = (pos[None, :] >= kv_start[:, None]) & (pos[None, :] < kv_end[:, None])  # [B, L]
    pages = block_table[:, pos // page_size].to(torch.int64)
    pages = torch.where(valid, pages, torch.zeros_like(pages))  # padding entries may be junk
    k = k_cache[pages, pos % page_size].float()  # [B, L, Hkv, D]
    v = v_cache[pages, pos % page_size].float()
    k = k.repeat_interleave(group, dim=2)
    v = v.repeat_interleave(group, dim=2)
    s = torch.einsum("bhd,blhd->bhl", q.float(), k) * sm_scale
    s = s.masked_fill(~valid[:, None, :], float("-inf"))
    lse = torch.logsumexp(s, dim=-1)  # -inf for empty rows
    p = torch.exp(s - torch.where(torch.isinf(lse), 0.0, lse)[..., None])
    o = torch.einsum("bhl,blhd->bhd", p, v)
    return o.to(q.dtype), lse


def paged_decode_attention_reference(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    sm_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch reference of :func:`paged_decode_attention` (same signature, float32 math)."""
    return gather_attention(
        q, k_cache, v_cache, block_table, torch.zeros_like(seq_lens), seq_lens, sm_scale
    )


def check_decode_inputs(q, k_cache, v_cache, block_table, seq_lens, name="q") -> tuple[int, ...]:
    """Validate decode-shaped inputs; returns ``(num_pages, page_size, kv_heads, head_dim)``."""
    dims = check_kv_cache(k_cache, v_cache)
    num_pages, page_size, kv_heads, head_dim = dims
    check_tensor(q, name, 3, FLOAT_DTYPES)
    if q.dtype != k_cache.dtype:
        raise ValueError(f"{name} dtype {q.dtype} differs from the cache dtype {k_cache.dtype}")
    if q.shape[2] != head_dim:
        raise ValueError(f"{name} head_dim {q.shape[2]} differs from the cache's {head_dim}")
    if q.stride(-1) != 1:
        raise ValueError(f"{name} must be contiguous in head_dim (stride(-1) == 1)")
    check_gqa(q.shape[1], kv_heads)
    check_lengths(seq_lens, "seq_lens", q.shape[0], minimum=0)
    check_block_table(block_table, q.shape[0], num_pages, page_size, seq_lens)
    return dims


def paged_decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    sm_scale: float | None = None,
    *,
    num_splits: int | None = None,
    check: bool = True,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One query token per sequence attends to the sequence's paged KV (GQA).

    Parameters
    ----------
    q:
        ``[B, Hq, D]`` fp16/bf16/fp32, same dtype as the cache.
    k_cache, v_cache:
        ``[num_pages, page_size, Hkv, D]``; ``Hq`` must be a multiple of ``Hkv``.
    block_table:
        ``[B, max_pages]`` int32/int64: sequence ``b``'s token ``t`` lives in page
        ``block_table[b, t // page_size]`` at offset ``t % page_size``.
    seq_lens:
        ``[B]`` int32/int64 tokens per sequence (``0`` gives ``o = 0``, ``lse = -inf``).
    sm_scale:
        Softmax scale; ``1/sqrt(D)`` when ``None``.
    num_splits:
        Triton only: split each sequence over this many programs (flash-decoding); ``None``
        picks from the GPU's SM count.
    check:
        Run the host-side checks (shapes, dtypes, page ids in range). Each costs a device sync;
        a caller that validated the same tables already (e.g. for an earlier layer) may skip
        them. Skipping them with bad inputs is undefined behaviour (out-of-bounds reads).
    backend:
        ``"auto"`` | ``"triton"`` | ``"torch"``.

    Returns
    -------
    tuple[Tensor, Tensor]
        ``o [B, Hq, D]`` (dtype of ``q``) and ``lse [B, Hq]`` float32, the natural-log
        log-sum-exp of the scaled scores (what :func:`merge_states` combines).

    Raises
    ------
    ValueError
        Shape/dtype mismatch, a length needing more pages than the table has, or a used
        block-table entry outside ``[0, num_pages)``.
    """
    if check:
        check_decode_inputs(q, k_cache, v_cache, block_table, seq_lens)
    if num_splits is not None and num_splits < 1:
        raise ValueError(f"num_splits must be >= 1, got {num_splits}")
    scale = 1.0 / math.sqrt(q.shape[2]) if sm_scale is None else float(sm_scale)
    if resolve_backend(backend, q, k_cache, v_cache, block_table, seq_lens) == "torch":
        return paged_decode_attention_reference(q, k_cache, v_cache, block_table, seq_lens, scale)
    B = q.shape[0]
    idx = torch.arange(B + 1, dtype=torch.int32, device=q.device)
    max_len = int(seq_lens.max()) if B else 0
    return launch_paged_attention(
        q, k_cache, v_cache, block_table,
        qo_indptr=idx, table_rows=idx[:B], kv_start=torch.zeros_like(idx[:B]),
        kv_end=seq_lens.to(torch.int32), sm_scale=scale,
        max_queries=1, max_len=max_len, block_l=1, num_splits=num_splits,
    )
