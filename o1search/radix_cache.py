"""Shared-prefix KV-page cache: a radix tree over token ids whose edges own KV page ids.

`RadixCache` is the typed facade over the native ``_core.RadixCache`` (C++, see
``csrc/include/o1search/radix_cache.h``).  ``o1search.testing.radix_ref.RadixCacheRef`` is a
pure-Python model with the same API and the same results, used as the oracle in tests and as
the baseline in ``benchmarks/bench_core.py``.

Semantics shared by both implementations
---------------------------------------
* Pages.  The pool has ``num_pages`` pages, ids ``0 .. num_pages-1``.  A page is *free* (in
  the free list), *held* (handed out by `alloc`, owned by the caller, not in the tree) or
  *cached* (owned by exactly one tree node).  The free list is a stack: ``alloc(n)`` pops
  ``n`` pages off its top (the first page returned is the top); pages that come back (by
  `free`, by eviction in path order, by `insert` dropping a duplicate) are pushed on top.
  Initially ``alloc`` hands out ``0, 1, 2, ...``.
* Tokens.  Token ids are integers in ``[0, 2**31 - 1]``.  Matching and insertion work on whole
  pages: a token sequence is cut to a multiple of ``page_size`` first.
* Nodes.  A node covers one or more pages of consecutive tokens below its parent; children
  are keyed by their first page of tokens.  Handles are opaque ints that carry a generation:
  once a node is evicted (or the cache reset) its handle raises `StaleHandleError`.  When a
  match or an insert ends inside a node, the node is split: a new node takes the upper part
  and the existing handle keeps meaning "the node that ends at the same path end".  The root
  (the empty prefix) has a handle too; it changes on `reset`.
* Locks.  ``lock(node)`` adds one reference to every node on the path from ``node`` to the
  root; locked nodes are never evicted.  ``unlock`` must match an earlier ``lock`` of the same
  handle.  Locking / unlocking the root handle is a no-op (the root is never evicted).
* LRU.  Every `match`, `insert` and `unlock` call is one tick of a logical clock.  ``match``
  and ``insert`` stamp every node on the path they end at (root .. node); ``unlock`` stamps
  the nodes whose lock count drops to zero.  Eviction removes the unlocked node with the
  smallest ``(stamp, -path_end)``, i.e. least recently used first and, among nodes stamped in
  the same call, the deeper one first.  That node is always a leaf (a parent is stamped
  whenever a child is, and its path end is shallower), so a parent becomes evictable once its
  last child has gone.  A node created by a split takes the stamp of the node it split from.
* Results are small ``slots`` dataclasses, not frozen ones: a frozen dataclass costs about
  three times as much to build, which shows on the per-call path of the search loop.
* Statistics.  ``hit_tokens`` / ``miss_tokens`` count `match` calls only: a match of ``T``
  tokens returning ``length`` adds ``length`` hits and ``T - length`` misses (the unaligned
  tail counts as missed: it has to be computed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from o1search._native import core as _core

__all__ = ["AcquireResult", "CacheStats", "InsertResult", "MatchResult", "RadixCache"]


@dataclass(slots=True)
class MatchResult:
    """Result of `RadixCache.match` (a plain value; treat it as read-only).

    Attributes:
        length: number of cached tokens at the start of the query, a multiple of page_size.
        pages: int32 array ``[length // page_size]`` of the page ids holding their KV.
        node: handle of the node that ends exactly after ``length`` tokens (the root handle
            when ``length == 0``); pass it to `lock` to keep the prefix cached.
    """

    length: int
    pages: np.ndarray
    node: int


@dataclass(slots=True)
class AcquireResult:
    """Result of `RadixCache.acquire` (a plain value; treat it as read-only).

    Attributes:
        length: cached tokens at the start of the sequence, a multiple of page_size.
        pages: int32 array ``[T // page_size]``: the ``length // page_size`` cached pages, then
            freshly allocated pages (held by the caller) for the rest.
        node: the matched node, locked by `acquire` (release it with `commit` or `unlock`).
    """

    length: int
    pages: np.ndarray
    node: int


@dataclass(slots=True)
class InsertResult:
    """Result of `RadixCache.insert`.

    Attributes:
        cached_length: tokens of the (page-aligned) sequence already cached before the call.
        node: handle of the node that ends at the end of the inserted sequence.
    """

    cached_length: int
    node: int


@dataclass(slots=True)
class CacheStats:
    """Page accounting of a cache; ``free + evictable + locked == capacity`` always.

    Attributes:
        capacity: total pages.
        free: pages in the free list.
        evictable: cached pages with no lock on them (reclaimable by `evict` / `alloc`).
        locked: every other page: cached pages under a lock plus pages held by the caller.
        held: the part of ``locked`` held by the caller (allocated, not inserted).
        hit_tokens: tokens found by `match` calls so far.
        miss_tokens: tokens `match` calls did not find.
        nodes: tree nodes, the root excluded.
    """

    capacity: int
    free: int
    evictable: int
    locked: int
    held: int
    hit_tokens: int
    miss_tokens: int
    nodes: int


class RadixCache(_core.RadixCache):
    """Radix tree over token ids mapping cached prefixes to KV page ids (native).

    Thread-safe: each call holds the cache's mutex and releases the GIL while it walks the
    tree.  See the module docstring for the exact semantics (pages, locks, LRU order).  The
    methods are the native ones (no Python wrapper on the hot path); their docstrings and
    signatures are in ``_core.pyi``:

    * ``match(tokens) -> MatchResult``; ``acquire(tokens) -> AcquireResult`` (match + lock +
      alloc); ``commit(tokens, pages, pin) -> InsertResult`` (insert + lock + unlock pin);
    * ``alloc(n) -> int32 pages``; ``insert(tokens, pages) -> InsertResult``;
    * ``lock(node)``, ``unlock(node)``, ``evict(num_pages) -> freed``, ``free(pages)``,
      ``reset()``, ``stats() -> CacheStats``, ``check()``;
    * properties ``num_pages``, ``page_size``, ``root``.

    Parameters:
        num_pages: pages in the pool (> 0).
        page_size: tokens per page (> 0); matching and insertion are page aligned.

    Raises:
        ValueError: ``num_pages <= 0`` or ``page_size <= 0`` (or too large).
    """

    __slots__ = ()

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"RadixCache(num_pages={s.capacity}, page_size={self.page_size}, free={s.free}, "
            f"evictable={s.evictable}, locked={s.locked}, nodes={s.nodes})"
        )


# The native methods build these result objects directly.
_core._radix_result_types(MatchResult, InsertResult, AcquireResult, CacheStats)
