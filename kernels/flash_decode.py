"""Optional ``flash_attn`` decode backend (``flash_attn_with_kvcache`` with a block table).

Used only when the ``flash-attn`` package imports and the tensors are on a CUDA GPU. Its paged
KV cache needs a page size that is a multiple of 256; smaller pages raise ``ValueError`` (use
the Triton kernels then).
"""

from __future__ import annotations

import math

import torch

from .decode_attention import check_decode_inputs

__all__ = ["flash_attn_available", "flash_decode_attention"]

try:
    from flash_attn import flash_attn_with_kvcache as _flash_attn_with_kvcache
except Exception:  # ImportError, or a build that fails to load its CUDA library
    _flash_attn_with_kvcache = None

FLASH_PAGE_MULTIPLE = 256


def flash_attn_available() -> bool:
    """Whether ``flash_attn`` imports and a CUDA GPU is present."""
    return _flash_attn_with_kvcache is not None and torch.cuda.is_available()


def flash_decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    sm_scale: float | None = None,
    *,
    check: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paged decode attention through ``flash_attn_with_kvcache``; same contract as
    :func:`kernels.paged_decode_attention` (fp16/bf16 only).

    Parameters
    ----------
    q:
        ``[B, Hq, D]`` fp16/bf16 on CUDA.
    k_cache, v_cache:
        ``[num_pages, page_size, Hkv, D]``, ``page_size % 256 == 0``.
    block_table:
        ``[B, max_pages]`` int32 (other int dtypes are converted).
    seq_lens:
        ``[B]`` tokens per sequence.
    sm_scale:
        Softmax scale; ``1/sqrt(D)`` when ``None``.
    check:
        Run the host-side checks.

    Returns
    -------
    tuple[Tensor, Tensor]
        ``o [B, Hq, D]`` and ``lse [B, Hq]`` float32.

    Raises
    ------
    RuntimeError
        flash-attn is not importable or no GPU.
    ValueError
        Page size not a multiple of 256, fp32 inputs, or what :func:`paged_decode_attention`
        rejects.
    """
    if not flash_attn_available():
        raise RuntimeError("flash_attn is not importable here (or there is no CUDA GPU)")
    if check:
        check_decode_inputs(q, k_cache, v_cache, block_table, seq_lens)
    if k_cache.shape[1] % FLASH_PAGE_MULTIPLE:
        raise ValueError(
            f"flash_attn paged KV needs page_size % {FLASH_PAGE_MULTIPLE} == 0, got {k_cache.shape[1]}"
        )
    if q.dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"flash_attn supports fp16/bf16 only, got {q.dtype}")
    scale = 1.0 / math.sqrt(q.shape[2]) if sm_scale is None else float(sm_scale)
    out, lse = _flash_attn_with_kvcache(
        q.unsqueeze(1), k_cache, v_cache,
        cache_seqlens=seq_lens.to(torch.int32),
        block_table=block_table.to(torch.int32),
        softmax_scale=scale, causal=True, return_softmax_lse=True,
    )
    return out.squeeze(1), lse[:, :, 0].float()
