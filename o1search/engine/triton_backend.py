"""Engine attention backends built on these kernels: ``triton`` and (optionally) ``flash_attn``.

They implement :class:`o1search.engine.attention.AttentionBackend` (the only engine module this
one imports); the registry :mod:`o1search.engine.backends` loads them on first use under the
names ``"triton"`` and ``"flash_attn"``.

Both constructors raise ``ImportError`` when they cannot run here (no triton; no flash-attn or no
GPU), which ``get_attention_backend("auto")`` treats as "skip this one". Neither honours
``sliding_window`` (``supports_sliding_window = False``: the runner then uses ``torch``).

Host-side checks of the page tables cost a device sync; the runner calls a backend once per
layer with the same tables, so they are validated once per set of tables (keyed by the
tensors' identity, storage and in-place version counter) and skipped for the other layers.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch

from o1search.engine.attention import AttentionBackend

from o1search.kernels._common import HAS_TRITON
from o1search.kernels.decode_attention import check_decode_inputs, paged_decode_attention
from o1search.kernels.extend_attention import _check_extend, paged_extend_attention
from o1search.kernels.flash_decode import FLASH_PAGE_MULTIPLE, flash_attn_available, flash_decode_attention
from o1search.kernels.kv_store import _check_store, copy_pages, store_kv

__all__ = ["FlashAttnBackend", "TritonAttentionBackend"]


def _version(t: torch.Tensor) -> int | None:
    """The in-place version counter, or None for inference-mode tensors (which have none:
    the engine builds fresh tables for every forward, so identity alone identifies them)."""
    try:
        return t._version
    except RuntimeError:
        return None


class _Seen:
    """Remembers one set of tensors (weakly) with their in-place version counters."""

    def __init__(self, tensors: tuple[torch.Tensor, ...]) -> None:
        self.refs = tuple(weakref.ref(t) for t in tensors)
        self.versions = tuple(_version(t) for t in tensors)

    def same(self, tensors: tuple[torch.Tensor, ...]) -> bool:
        # A freed tensor's id/storage can be reused by the next step's tables: compare objects
        # through weak references, never ids.
        return len(tensors) == len(self.refs) and all(
            r() is t and _version(t) == v for r, t, v in zip(self.refs, tensors, self.versions)
        )


class TritonAttentionBackend(AttentionBackend):
    """Paged attention with the Triton kernels of ``o1search.kernels``.

    Parameters
    ----------
    backend:
        Kernel backend: ``"auto"`` (Triton on CUDA tensors, the torch references on CPU),
        ``"triton"`` (forced; CPU needs ``TRITON_INTERPRET=1``) or ``"torch"``.

    Raises
    ------
    ImportError
        Triton is not importable.
    """

    name = "triton"
    supports_sliding_window = False

    def __init__(self, backend: str = "auto") -> None:
        if not HAS_TRITON:
            raise ImportError("the triton attention backend needs the `triton` package")
        self.kernel_backend = backend
        self._seen: dict[str, _Seen] = {}

    def _once(self, kind: str, tables: tuple[torch.Tensor, ...], fn, *args) -> None:
        # Tables are shared by all layers of one forward; validating the first layer suffices
        # (every layer's cache and queries have the same shapes).
        seen = self._seen.get(kind)
        if seen is None or not seen.same(tables):
            fn(*args)
            self._seen[kind] = _Seen(tables)

    def store_kv(self, k_cache, v_cache, k, v, slot_mapping) -> None:
        self._once("store", (slot_mapping,), _check_store, k_cache, v_cache, k, v, slot_mapping)
        store_kv(k_cache, v_cache, k, v, slot_mapping, check=False, backend=self.kernel_backend)

    def extend(self, q, k_cache, v_cache, block_table, prefix_lens, extend_lens, sm_scale, *,
               sliding_window=None):
        if sliding_window is not None:
            raise ValueError("the triton backend does not support sliding_window")
        self._once("extend", (block_table, prefix_lens, extend_lens), _check_extend,
                   q, k_cache, v_cache, block_table, prefix_lens, extend_lens)
        return paged_extend_attention(q, k_cache, v_cache, block_table, prefix_lens, extend_lens,
                                      sm_scale, check=False, backend=self.kernel_backend)

    def decode(self, q, k_cache, v_cache, block_table, seq_lens, sm_scale, *,
               sliding_window=None):
        if sliding_window is not None:
            raise ValueError("the triton backend does not support sliding_window")
        self._once("decode", (block_table, seq_lens), check_decode_inputs,
                   q, k_cache, v_cache, block_table, seq_lens)
        o, _ = paged_decode_attention(q, k_cache, v_cache, block_table, seq_lens, sm_scale,
                                      check=False, backend=self.kernel_backend)
        return o

    def copy_pages(self, k_caches: Sequence[torch.Tensor], v_caches: Sequence[torch.Tensor],
                   src_pages: torch.Tensor, dst_pages: torch.Tensor) -> None:
        copy_pages(k_caches, v_caches, src_pages, dst_pages, backend=self.kernel_backend)


class FlashAttnBackend(TritonAttentionBackend):
    """``flash_attn_with_kvcache`` for decode (pages of a multiple of 256 tokens, fp16/bf16);
    the Triton kernels for everything else (and for decode calls flash-attn cannot take).

    Raises
    ------
    ImportError
        flash-attn or triton is not importable, or there is no CUDA GPU.
    """

    name = "flash_attn"

    def __init__(self) -> None:
        if not flash_attn_available():
            raise ImportError("the flash_attn backend needs the `flash-attn` package and a CUDA GPU")
        super().__init__("auto")

    def decode(self, q, k_cache, v_cache, block_table, seq_lens, sm_scale, *,
               sliding_window=None):
        usable = (q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)
                  and k_cache.shape[1] % FLASH_PAGE_MULTIPLE == 0)
        if not usable or sliding_window is not None:
            return super().decode(q, k_cache, v_cache, block_table, seq_lens, sm_scale,
                                  sliding_window=sliding_window)
        self._once("decode", (block_table, seq_lens), check_decode_inputs,
                   q, k_cache, v_cache, block_table, seq_lens)
        o, _ = flash_decode_attention(q, k_cache, v_cache, block_table, seq_lens, sm_scale,
                                      check=False)
        return o
