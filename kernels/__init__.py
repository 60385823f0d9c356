"""Triton kernels of the engine, each with a torch reference beside it (``o1search.kernels``).

Every public function takes ``backend="auto"`` (Triton on CUDA tensors when Triton imports,
torch otherwise), ``"triton"`` (forced; CPU tensors need ``TRITON_INTERPRET=1``) or ``"torch"``,
and validates its inputs on the host before launching. Shapes follow the engine's paged KV
layout ``[num_pages, page_size, kv_heads, head_dim]``.
"""

from __future__ import annotations

from ._common import HAS_TRITON
from .cascade import cascade_decode, cascade_decode_reference, merge_states, merge_states_reference
from .decode_attention import paged_decode_attention, paged_decode_attention_reference
from .extend_attention import paged_extend_attention, paged_extend_attention_reference
from .flash_decode import flash_attn_available, flash_decode_attention
from .kv_store import copy_pages, copy_pages_reference, store_kv, store_kv_reference
from .sampler import ExpansionSample, gumbel_noise, sample_expansion, sample_expansion_reference

__all__ = [
    "HAS_TRITON",
    "ExpansionSample",
    "cascade_decode",
    "cascade_decode_reference",
    "copy_pages",
    "copy_pages_reference",
    "flash_attn_available",
    "flash_decode_attention",
    "gumbel_noise",
    "merge_states",
    "merge_states_reference",
    "paged_decode_attention",
    "paged_decode_attention_reference",
    "paged_extend_attention",
    "paged_extend_attention_reference",
    "sample_expansion",
    "sample_expansion_reference",
    "store_kv",
    "store_kv_reference",
]
