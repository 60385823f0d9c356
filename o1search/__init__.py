"""o1search: scaling search and learning for LLM reasoning.

A native (C++) search tree and shared-prefix KV-cache manager under a paged-KV model runner
with Triton kernels, and reward models, search algorithms and trainers on top.
"""

from __future__ import annotations

from o1search._native import (
    InternalError,
    O1SearchError,
    OutOfPagesError,
    StaleHandleError,
    core as _core_module,
)
from o1search.radix_cache import AcquireResult, CacheStats, InsertResult, MatchResult, RadixCache
from o1search.tree import SearchTree

__version__: str = _core_module.__version__

__all__ = [
    "AcquireResult",
    "CacheStats",
    "InsertResult",
    "InternalError",
    "MatchResult",
    "O1SearchError",
    "OutOfPagesError",
    "RadixCache",
    "SearchTree",
    "StaleHandleError",
    "__version__",
]
