"""Paged extend (prefill) attention: new tokens attend to their cached prefix and causally to each other.

The new tokens' K/V are already stored in the pages (positions
``prefix_lens[b] .. prefix_lens[b] + extend_lens[b] - 1`` of sequence ``b``), so every key is read
through the block table and one causal mask ``key_pos <= query_pos`` covers both the prefix and the
new tokens. Queries of all sequences are packed: sequence ``b``'s new tokens are rows
``sum(extend_lens[:b]) .. + extend_lens[b]`` of ``q``.
"""

from __future__ import annotations

import math

import torch

from ._common import (
    FLOAT_DTYPES,
    INT_DTYPES,
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

__all__ = ["paged_extend_attention", "paged_extend_attention_reference"]

_LOG2E = 1.4426950408889634


@jit
def _extend_attn_kernel(
    Q, K_CACHE, V_CACHE, BT, O, LSE,
    Q_START, PREFIX_LENS, EXTEND_LENS,
    sm_scale_log2, m_tiles,
    stride_qt, stride_qh,
    stride_cp, stride_cs, stride_ch,
    stride_bt,
    stride_ot, stride_oh, stride_lt,
    GROUP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, HEAD_DIM: tl.constexpr, PAGE_SIZE: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    h = tl.program_id(1)
    b = pid // m_tiles
    tile = pid % m_tiles
    ext = tl.load(EXTEND_LENS + b)
    if tile * BLOCK_M >= ext:  # shorter than the longest extend of the batch
        return
    pre = tl.load(PREFIX_LENS + b)
    q0 = tl.load(Q_START + b).to(tl.int64)
    kvh = h // GROUP
    i = tile * BLOCK_M + tl.arange(0, BLOCK_M)
    i_mask = i < ext
    q_pos = pre + i
    d = tl.arange(0, BLOCK_D)
    d_mask = d < HEAD_DIM
    q_rows = q0 + i
    q = tl.load(
        Q + q_rows[:, None] * stride_qt + h * stride_qh + d[None, :],
        mask=i_mask[:, None] & d_mask[None, :], other=0.0,
    )
    if UPCAST:
        q = q.to(tl.float32)
    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    row = b.to(tl.int64) * stride_bt
    # Keys past this tile's last query are never visible: stop there.
    kv_hi = pre + tl.minimum((tile + 1) * BLOCK_M, ext)
    for start in range(0, kv_hi, BLOCK_N):
        n = start + tl.arange(0, BLOCK_N)
        n_mask = n < kv_hi
        page = tl.load(BT + row + n // PAGE_SIZE, mask=n_mask, other=0).to(tl.int64)
        kv_off = page * stride_cp + (n % PAGE_SIZE) * stride_cs + kvh * stride_ch
        kv_mask = n_mask[:, None] & d_mask[None, :]
        k = tl.load(K_CACHE + kv_off[:, None] + d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(V_CACHE + kv_off[:, None] + d[None, :], mask=kv_mask, other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * sm_scale_log2
        visible = n_mask[None, :] & (n[None, :] <= q_pos[:, None])
        s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m_i = m_new
    # Every real query sees at least its own key, so l_i > 0 on stored rows.
    safe_l = tl.where(l_i > 0.0, l_i, 1.0)
    out = acc / safe_l[:, None]
    tl.store(
        O + q_rows[:, None] * stride_ot + h * stride_oh + d[None, :],
        out.to(O.dtype.element_ty), mask=i_mask[:, None] & d_mask[None, :],
    )
    lse = (m_i + tl.log2(safe_l)) * 0.6931471805599453
    tl.store(LSE + q_rows * stride_lt + h, lse, mask=i_mask)


def _launch_extend(q, k_cache, v_cache, block_table, prefix_lens, extend_lens, sm_scale, max_extend):
    T, Hq, D = q.shape
    _, page_size, Hkv, _ = k_cache.shape
    B = extend_lens.shape[0]
    o = torch.empty_like(q)
    lse = torch.empty((T, Hq), dtype=torch.float32, device=q.device)
    if T == 0:
        return o, lse
    q_start = torch.zeros(B, dtype=torch.int64, device=q.device)
    q_start[1:] = torch.cumsum(extend_lens.to(torch.int64), 0)[:-1]
    on_gpu = q.device.type == "cuda"
    block_m = 64 if on_gpu else 16
    block_n = 64 if on_gpu else 32
    m_tiles = -(-max_extend // block_m)
    upcast = q.dtype == torch.bfloat16 and interpreting()
    precision = "ieee" if (q.dtype == torch.float32 or upcast) else "tf32"
    _extend_attn_kernel[(B * m_tiles, Hq)](
        Q=q, K_CACHE=k_cache, V_CACHE=v_cache, BT=block_table, O=o, LSE=lse,
        Q_START=q_start, PREFIX_LENS=prefix_lens, EXTEND_LENS=extend_lens,
        sm_scale_log2=float(sm_scale) * _LOG2E, m_tiles=m_tiles,
        stride_qt=q.stride(0), stride_qh=q.stride(1),
        stride_cp=k_cache.stride(0), stride_cs=k_cache.stride(1), stride_ch=k_cache.stride(2),
        stride_bt=block_table.stride(0),
        stride_ot=o.stride(0), stride_oh=o.stride(1), stride_lt=lse.stride(0),
        GROUP=Hq // Hkv, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=max(16, next_pow2(D)),
        HEAD_DIM=D, PAGE_SIZE=page_size, UPCAST=upcast, DOT_PRECISION=precision,
    )
    return o, lse


def paged_extend_attention_reference(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    prefix_lens: torch.Tensor,
    extend_lens: torch.Tensor,
    sm_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch reference of :func:`paged_extend_attention` (float32 math); returns ``(o, lse)``."""
    T, Hq, D = q.shape
    page_size, Hkv = k_cache.shape[1], k_cache.shape[2]
    group = Hq // Hkv
    o = torch.empty_like(q)
    lse = torch.empty((T, Hq), dtype=torch.float32, device=q.device)
    start = 0
    for b in range(extend_lens.shape[0]):
        pre, ext = int(prefix_lens[b]), int(extend_lens[b])
        if ext == 0:
            continue
        pos = torch.arange(pre + ext, device=q.device)
        pages = block_table[b, pos // page_size].to(torch.int64)
        k = k_cache[pages, pos % page_size].float().repeat_interleave(group, dim=1)  # [L, Hq, D]
        v = v_cache[pages, pos % page_size].float().repeat_interleave(group, dim=1)
        qb = q[start : start + ext].float()
        s = torch.einsum("thd,lhd->htl", qb, k) * sm_scale
        causal = pos[None, :] <= (pre + torch.arange(ext, device=q.device))[:, None]  # [ext, L]
        s = s.masked_fill(~causal[None], float("-inf"))
        lse_b = torch.logsumexp(s, dim=-1)  # [Hq, ext]
        p = torch.exp(s - lse_b[..., None])
        o[start : start + ext] = torch.einsum("htl,lhd->thd", p, v).to(q.dtype)
        lse[start : start + ext] = lse_b.T
        start += ext
    return o, lse


def paged_extend_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    prefix_lens: torch.Tensor,
    extend_lens: torch.Tensor,
    sm_scale: float | None = None,
    *,
    return_lse: bool = False,
    check: bool = True,
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Attention of packed new tokens over their cached prefix and, causally, each other.

    Parameters
    ----------
    q:
        ``[T, Hq, D]`` queries of the new tokens of all sequences, packed in sequence order;
        ``T == sum(extend_lens)``. Same dtype as the cache.
    k_cache, v_cache:
        ``[num_pages, page_size, Hkv, D]`` already holding the new tokens' K/V.
    block_table:
        ``[B, max_pages]`` int32/int64.
    prefix_lens, extend_lens:
        ``[B]`` int32/int64: cached tokens before the new ones, and new tokens, per sequence.
    sm_scale:
        Softmax scale; ``1/sqrt(D)`` when ``None``.
    return_lse:
        Also return the log-sum-exp ``[T, Hq]`` float32 (natural log).
    check:
        Run the host-side checks (shapes, dtypes, page ids in range). Each costs a device sync;
        a caller that validated the same tables already (e.g. for an earlier layer) may skip
        them. Skipping them with bad inputs is undefined behaviour (out-of-bounds reads).
    backend:
        ``"auto"`` | ``"triton"`` | ``"torch"``.

    Returns
    -------
    Tensor or tuple[Tensor, Tensor]
        ``o [T, Hq, D]`` (dtype of ``q``), with ``lse`` when ``return_lse``.

    Raises
    ------
    ValueError
        Shape/dtype mismatch, ``T != sum(extend_lens)``, a sequence needing more pages than the
        table has, or a used block-table entry outside ``[0, num_pages)``.
    """
    if check:
        _check_extend(q, k_cache, v_cache, block_table, prefix_lens, extend_lens)
    head_dim = k_cache.shape[3]
    B = extend_lens.shape[0]
    scale = 1.0 / math.sqrt(head_dim) if sm_scale is None else float(sm_scale)
    args = (q, k_cache, v_cache, block_table, prefix_lens, extend_lens)
    if resolve_backend(backend, *args) == "torch":
        o, lse = paged_extend_attention_reference(*args, scale)
    else:
        max_extend = int(extend_lens.max()) if B else 0
        o, lse = _launch_extend(
            q, k_cache, v_cache, block_table, prefix_lens, extend_lens, scale, max_extend
        )
    return (o, lse) if return_lse else o


def _check_extend(q, k_cache, v_cache, block_table, prefix_lens, extend_lens) -> None:
    num_pages, page_size, kv_heads, head_dim = check_kv_cache(k_cache, v_cache)
    check_tensor(q, "q", 3, FLOAT_DTYPES)
    if q.dtype != k_cache.dtype:
        raise ValueError(f"q dtype {q.dtype} differs from the cache dtype {k_cache.dtype}")
    if q.shape[2] != head_dim:
        raise ValueError(f"q head_dim {q.shape[2]} differs from the cache's {head_dim}")
    if q.stride(-1) != 1:
        raise ValueError("q must be contiguous in head_dim (stride(-1) == 1)")
    check_gqa(q.shape[1], kv_heads)
    check_tensor(extend_lens, "extend_lens", 1, INT_DTYPES)
    B = extend_lens.shape[0]
    check_lengths(extend_lens, "extend_lens", B)
    check_lengths(prefix_lens, "prefix_lens", B)
    total = int(extend_lens.sum()) if B else 0
    if total != q.shape[0]:
        raise ValueError(f"q has {q.shape[0]} rows but extend_lens sums to {total}")
    check_block_table(block_table, B, num_pages, page_size, prefix_lens.to(torch.int64) + extend_lens)
