"""Shared helpers of the kernels: the guarded Triton import, backend choice and host-side checks.

Every public kernel function validates its inputs here *before* launching, so that a bad block
table or a length beyond the pages provided raises a clear ``ValueError`` instead of letting a
kernel read out of bounds.
"""

from __future__ import annotations

import os
from typing import Any

import torch

try:  # Triton is an optional extra: the package must import (and fall back to torch) without it.
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - exercised only where triton is absent
    triton = None  # type: ignore[assignment]
    tl = None  # type: ignore[assignment]
    HAS_TRITON = False

__all__ = [
    "HAS_TRITON",
    "interpreting",
    "jit",
    "next_pow2",
    "resolve_backend",
    "tl",
    "triton",
]

_BACKENDS = ("auto", "triton", "torch")


def interpreting() -> bool:
    """Whether Triton runs kernels through its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def jit(fn: Any) -> Any:
    """``triton.jit`` when Triton is importable; otherwise the plain function (never launched)."""
    return triton.jit(fn) if HAS_TRITON else fn


def next_pow2(n: int) -> int:
    """Smallest power of two ``>= n`` (and ``>= 1``)."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def resolve_backend(backend: str, *tensors: torch.Tensor) -> str:
    """Pick ``"triton"`` or ``"torch"`` for a call.

    Parameters
    ----------
    backend:
        ``"auto"`` (Triton for CUDA tensors when Triton is importable, torch otherwise),
        ``"triton"`` (forced; CPU tensors need ``TRITON_INTERPRET=1``) or ``"torch"``.
    tensors:
        The call's tensors; all must be on one device.

    Returns
    -------
    str
        ``"triton"`` or ``"torch"``.

    Raises
    ------
    ValueError
        Unknown backend name, tensors on several devices, or ``"triton"`` forced where it
        cannot run (no triton; CPU tensors without the interpreter).
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    devices = {t.device for t in tensors if isinstance(t, torch.Tensor)}
    if len(devices) > 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
    on_cuda = bool(devices) and next(iter(devices)).type == "cuda"
    if backend == "torch":
        return "torch"
    if backend == "auto":
        return "triton" if (HAS_TRITON and on_cuda) else "torch"
    if not HAS_TRITON:
        raise ValueError("backend='triton' requested but triton is not importable")
    if not on_cuda and not interpreting():
        raise ValueError(
            "backend='triton' on CPU tensors needs TRITON_INTERPRET=1 set before triton is "
            "imported; use backend='torch' or move the tensors to a CUDA device"
        )
    return "triton"


def check_tensor(t: Any, name: str, ndim: int, dtypes: tuple[torch.dtype, ...] | None = None) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``t`` is a tensor of rank ``ndim`` and one of ``dtypes``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    if dtypes is not None and t.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise ValueError(f"{name} must have dtype in ({names}), got {t.dtype}")


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
INT_DTYPES = (torch.int32, torch.int64)


def check_kv_cache(k_cache: torch.Tensor, v_cache: torch.Tensor) -> tuple[int, int, int, int]:
    """Check a paged K/V cache pair ``[num_pages, page_size, kv_heads, head_dim]``.

    Returns
    -------
    tuple[int, int, int, int]
        ``(num_pages, page_size, kv_heads, head_dim)``.
    """
    check_tensor(k_cache, "k_cache", 4, FLOAT_DTYPES)
    check_tensor(v_cache, "v_cache", 4, FLOAT_DTYPES)
    if k_cache.shape != v_cache.shape or k_cache.dtype != v_cache.dtype:
        raise ValueError(
            f"k_cache and v_cache must match, got {tuple(k_cache.shape)}/{k_cache.dtype} and "
            f"{tuple(v_cache.shape)}/{v_cache.dtype}"
        )
    if k_cache.stride(-1) != 1 or v_cache.stride(-1) != 1:
        raise ValueError("k_cache and v_cache must be contiguous in head_dim (stride(-1) == 1)")
    n, p, h, d = k_cache.shape
    if n == 0 or p == 0 or h == 0 or d == 0:
        raise ValueError(f"empty KV cache shape {tuple(k_cache.shape)}")
    return n, p, h, d


def check_lengths(lens: Any, name: str, batch: int, *, minimum: int = 0) -> None:
    """``lens`` must be an int32/int64 vector ``[batch]`` with every entry ``>= minimum``."""
    check_tensor(lens, name, 1, INT_DTYPES)
    if lens.shape[0] != batch:
        raise ValueError(f"{name} must have shape [{batch}], got {tuple(lens.shape)}")
    if batch and int(lens.min()) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got min {int(lens.min())}")


def check_block_table(
    block_table: Any, batch: int, num_pages: int, page_size: int, end_lens: torch.Tensor
) -> None:
    """Every block-table entry a sequence uses must be a real page; lengths must fit the table.

    Parameters
    ----------
    block_table:
        ``[batch, max_pages]`` int32/int64; row ``b`` lists sequence ``b``'s pages in order.
        Entries past a sequence's last used page are ignored (padding may be anything).
    end_lens:
        ``[batch]`` number of tokens of each sequence that will be read.

    Raises
    ------
    ValueError
        Wrong shape/dtype, a length needing more pages than the table has columns, or a used
        entry outside ``[0, num_pages)``.
    """
    check_tensor(block_table, "block_table", 2, INT_DTYPES)
    if block_table.shape[0] != batch:
        raise ValueError(
            f"block_table must have {batch} rows (one per sequence), got {tuple(block_table.shape)}"
        )
    if batch == 0:
        return
    max_pages = block_table.shape[1]
    need = (end_lens.to(torch.int64) + page_size - 1) // page_size
    worst = int(need.max())
    if worst > max_pages:
        b = int(torch.argmax(need))
        raise ValueError(
            f"sequence {b} has {int(end_lens[b])} tokens, needing {worst} pages of {page_size}, "
            f"but block_table has only {max_pages} columns"
        )
    if worst == 0:
        return
    used = torch.arange(worst, device=block_table.device)[None, :] < need[:, None]
    cols = block_table[:, :worst].to(torch.int64)
    bad = used & ((cols < 0) | (cols >= num_pages))
    if bool(bad.any()):
        b, j = (int(x) for x in torch.nonzero(bad)[0])
        raise ValueError(
            f"block_table[{b}, {j}] = {int(cols[b, j])} is not a page in [0, {num_pages})"
        )


def check_gqa(q_heads: int, kv_heads: int) -> int:
    """Return the query-group size; ``q_heads`` must be a multiple of ``kv_heads``."""
    if kv_heads <= 0 or q_heads % kv_heads != 0:
        raise ValueError(
            f"query heads ({q_heads}) must be a multiple of KV heads ({kv_heads}) for GQA"
        )
    return q_heads // kv_heads
