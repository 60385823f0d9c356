"""KV store into pages (slot mapping) and page copies (copy-on-write when a node forks).

Cache layout, per layer: ``[num_pages, page_size, kv_heads, head_dim]``. A *slot* is
``page * page_size + offset``; a negative slot means "skip this token" (padding rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._common import (
    FLOAT_DTYPES,
    INT_DTYPES,
    check_kv_cache,
    check_tensor,
    jit,
    next_pow2,
    resolve_backend,
    tl,
)

__all__ = ["copy_pages", "copy_pages_reference", "store_kv", "store_kv_reference"]


# --------------------------------------------------------------------------------------------
# store_kv
# --------------------------------------------------------------------------------------------
@jit
def _store_kv_kernel(
    K, V, K_CACHE, V_CACHE, SLOTS,
    stride_kt, stride_kh, stride_vt, stride_vh,
    stride_cp, stride_cs, stride_ch,
    PAGE_SIZE: tl.constexpr, NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
):
    t = tl.program_id(0)
    slot = tl.load(SLOTS + t).to(tl.int64)
    if slot < 0:  # padding token: nothing to store
        return
    page = slot // PAGE_SIZE
    off = slot % PAGE_SIZE
    h = tl.arange(0, BLOCK_H)
    d = tl.arange(0, BLOCK_D)
    mask = (h[:, None] < NUM_HEADS) & (d[None, :] < HEAD_DIM)
    k = tl.load(K + t * stride_kt + h[:, None] * stride_kh + d[None, :], mask=mask)
    v = tl.load(V + t * stride_vt + h[:, None] * stride_vh + d[None, :], mask=mask)
    dst = page * stride_cp + off * stride_cs + h[:, None] * stride_ch + d[None, :]
    tl.store(K_CACHE + dst, k.to(K_CACHE.dtype.element_ty), mask=mask)
    tl.store(V_CACHE + dst, v.to(V_CACHE.dtype.element_ty), mask=mask)


def _launch_store_kv(k_cache, v_cache, k, v, slot_mapping) -> None:
    T, H, D = k.shape
    if T == 0:
        return
    if k_cache.stride() != v_cache.stride():
        raise ValueError("k_cache and v_cache must have the same strides")
    _store_kv_kernel[(T,)](
        K=k, V=v, K_CACHE=k_cache, V_CACHE=v_cache, SLOTS=slot_mapping,
        stride_kt=k.stride(0), stride_kh=k.stride(1),
        stride_vt=v.stride(0), stride_vh=v.stride(1),
        stride_cp=k_cache.stride(0), stride_cs=k_cache.stride(1), stride_ch=k_cache.stride(2),
        PAGE_SIZE=k_cache.shape[1], NUM_HEADS=H, HEAD_DIM=D,
        BLOCK_H=next_pow2(H), BLOCK_D=next_pow2(D),
    )


def store_kv_reference(
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """Torch reference of :func:`store_kv` (same signature, same effect)."""
    page_size = k_cache.shape[1]
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].to(torch.int64)
    pages, offs = slots // page_size, slots % page_size
    k_cache[pages, offs] = k[keep].to(k_cache.dtype)
    v_cache[pages, offs] = v[keep].to(v_cache.dtype)


def _check_store(k_cache, v_cache, k, v, slot_mapping) -> None:
    n_pages, page_size, kv_heads, head_dim = check_kv_cache(k_cache, v_cache)
    check_tensor(k, "k", 3, FLOAT_DTYPES)
    check_tensor(v, "v", 3, FLOAT_DTYPES)
    if k.shape != v.shape:
        raise ValueError(f"k and v must have one shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    if tuple(k.shape[1:]) != (kv_heads, head_dim):
        raise ValueError(
            f"k/v must be [T, {kv_heads}, {head_dim}] to match the cache, got {tuple(k.shape)}"
        )
    if k.stride(-1) != 1 or v.stride(-1) != 1:
        raise ValueError("k and v must be contiguous in head_dim (stride(-1) == 1)")
    check_tensor(slot_mapping, "slot_mapping", 1, INT_DTYPES)
    if slot_mapping.shape[0] != k.shape[0]:
        raise ValueError(
            f"slot_mapping must have shape [{k.shape[0]}], got {tuple(slot_mapping.shape)}"
        )
    if k.shape[0]:
        hi = int(slot_mapping.max())
        if hi >= n_pages * page_size:
            raise ValueError(
                f"slot {hi} is beyond the cache ({n_pages} pages x {page_size} = "
                f"{n_pages * page_size} slots)"
            )
        real = slot_mapping[slot_mapping >= 0]
        if real.numel() != torch.unique(real).numel():
            raise ValueError("slot_mapping writes one slot twice (duplicate non-negative slots)")


def store_kv(
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slot_mapping: torch.Tensor,
    *,
    check: bool = True,
    backend: str = "auto",
) -> None:
    """Write the K/V of ``T`` new tokens into their page slots, in place.

    Parameters
    ----------
    k_cache, v_cache:
        ``[num_pages, page_size, kv_heads, head_dim]`` fp16/bf16/fp32 (modified in place).
    k, v:
        ``[T, kv_heads, head_dim]`` (cast to the cache dtype on store).
    slot_mapping:
        ``[T]`` int32/int64, ``page * page_size + offset`` per token; ``< 0`` skips the token.
    check:
        Run the host-side checks (shapes, dtypes, page ids in range). Each costs a device sync;
        a caller that validated the same tables already (e.g. for an earlier layer) may skip
        them. Skipping them with bad inputs is undefined behaviour (out-of-bounds reads).
    backend:
        ``"auto"`` | ``"triton"`` | ``"torch"``.

    Raises
    ------
    ValueError
        Shape/dtype mismatch, a slot beyond the cache, or the same slot written twice.
    """
    if check:
        _check_store(k_cache, v_cache, k, v, slot_mapping)
    if resolve_backend(backend, k_cache, v_cache, k, v, slot_mapping) == "torch":
        store_kv_reference(k_cache, v_cache, k, v, slot_mapping)
    else:
        _launch_store_kv(k_cache, v_cache, k, v, slot_mapping)


# --------------------------------------------------------------------------------------------
# copy_pages
# --------------------------------------------------------------------------------------------
@jit
def _copy_pages_kernel(
    K_CACHE, V_CACHE, SRC, DST,
    PAGE_NUMEL: tl.constexpr, BLOCK: tl.constexpr,
):
    i = tl.program_id(0)
    chunk = tl.program_id(1)
    src = tl.load(SRC + i).to(tl.int64)
    dst = tl.load(DST + i).to(tl.int64)
    offs = chunk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < PAGE_NUMEL
    k = tl.load(K_CACHE + src * PAGE_NUMEL + offs, mask=mask)
    tl.store(K_CACHE + dst * PAGE_NUMEL + offs, k, mask=mask)
    v = tl.load(V_CACHE + src * PAGE_NUMEL + offs, mask=mask)
    tl.store(V_CACHE + dst * PAGE_NUMEL + offs, v, mask=mask)


def _launch_copy_pages(k_cache, v_cache, src, dst) -> None:
    page_numel = k_cache[0].numel()
    block = min(4096, next_pow2(page_numel))
    grid = (src.shape[0], (page_numel + block - 1) // block)
    _copy_pages_kernel[grid](
        K_CACHE=k_cache, V_CACHE=v_cache, SRC=src, DST=dst, PAGE_NUMEL=page_numel, BLOCK=block
    )


def copy_pages_reference(
    k_caches: Sequence[torch.Tensor],
    v_caches: Sequence[torch.Tensor],
    src_pages: torch.Tensor,
    dst_pages: torch.Tensor,
) -> None:
    """Torch reference of :func:`copy_pages` (same signature, same effect)."""
    src = src_pages.to(torch.int64)
    dst = dst_pages.to(torch.int64)
    for kc, vc in zip(k_caches, v_caches):
        kc[dst] = kc[src]
        vc[dst] = vc[src]


def _as_layers(caches, name: str) -> list[torch.Tensor]:
    if isinstance(caches, torch.Tensor):
        return [caches]
    out = list(caches)
    if not out:
        raise ValueError(f"{name} must hold at least one layer's cache")
    return out


def copy_pages(
    k_caches: Sequence[torch.Tensor] | torch.Tensor,
    v_caches: Sequence[torch.Tensor] | torch.Tensor,
    src_pages: torch.Tensor,
    dst_pages: torch.Tensor,
    *,
    backend: str = "auto",
) -> None:
    """Copy whole pages ``src_pages[i] -> dst_pages[i]`` in every layer, in place.

    This is the copy-on-write of a forked node: the partial last page of a shared prefix is
    copied into a page the new leaf owns before the leaf appends to it.

    Parameters
    ----------
    k_caches, v_caches:
        One ``[num_pages, page_size, kv_heads, head_dim]`` tensor per layer (or a single tensor);
        contiguous, all of one shape and dtype.
    src_pages, dst_pages:
        ``[N]`` int32/int64 page ids in ``[0, num_pages)``.
    backend:
        ``"auto"`` | ``"triton"`` | ``"torch"``.

    Raises
    ------
    ValueError
        Mismatched layers, a page id out of range, a destination listed twice or also used as a
        source (the copy order would then matter).
    """
    ks, vs = _as_layers(k_caches, "k_caches"), _as_layers(v_caches, "v_caches")
    if len(ks) != len(vs):
        raise ValueError(f"{len(ks)} K layers but {len(vs)} V layers")
    shape = None
    for kc, vc in zip(ks, vs):
        dims = check_kv_cache(kc, vc)
        if shape is not None and dims != shape:
            raise ValueError(f"all layers must share one cache shape, got {shape} and {dims}")
        if not (kc.is_contiguous() and vc.is_contiguous()):
            raise ValueError("copy_pages needs contiguous caches")
        shape = dims
    num_pages = shape[0]
    check_tensor(src_pages, "src_pages", 1, INT_DTYPES)
    check_tensor(dst_pages, "dst_pages", 1, INT_DTYPES)
    if src_pages.shape != dst_pages.shape:
        raise ValueError(
            f"src_pages and dst_pages must have one shape, got {tuple(src_pages.shape)} and "
            f"{tuple(dst_pages.shape)}"
        )
    n = src_pages.shape[0]
    if n == 0:
        return
    for name, ids in (("src_pages", src_pages), ("dst_pages", dst_pages)):
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= num_pages:
            raise ValueError(f"{name} must be in [0, {num_pages}), got range [{lo}, {hi}]")
    if torch.unique(dst_pages).numel() != n:
        raise ValueError("dst_pages lists a page twice")
    if bool(torch.isin(dst_pages, src_pages).any()):
        raise ValueError("a page is both a source and a destination of one copy_pages call")
    if resolve_backend(backend, *ks, *vs, src_pages, dst_pages) == "torch":
        copy_pages_reference(ks, vs, src_pages, dst_pages)
        return
    for kc, vc in zip(ks, vs):
        _launch_copy_pages(kc, vc, src_pages, dst_pages)
