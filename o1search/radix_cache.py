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
from typing import Any

import numpy as np

from o1search._native import core as _core

__all__ = ["CacheStats", "InsertResult", "MatchResult", "RadixCache"]


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


class RadixCache:
    """Radix tree over token ids mapping cached prefixes to KV page ids (native).

    Thread-safe: each call holds the cache's mutex and releases the GIL while it walks the
    tree.  See the module docstring for the exact semantics (pages, locks, LRU order).

    Parameters:
        num_pages: pages in the pool (> 0).
        page_size: tokens per page (> 0); matching and insertion are page aligned.

    Raises:
        ValueError: ``num_pages <= 0`` or ``page_size <= 0`` (or too large).
    """

    __slots__ = ("_c",)

    def __init__(self, num_pages: int, page_size: int = 1) -> None:
        self._c = _core.RadixCache(num_pages, page_size)

    @property
    def num_pages(self) -> int:
        """Pages in the pool."""
        return self._c.num_pages

    @property
    def page_size(self) -> int:
        """Tokens per page."""
        return self._c.page_size

    @property
    def root(self) -> int:
        """Handle of the root (empty prefix); changes on `reset`."""
        return self._c.root

    def match(self, tokens: Any) -> MatchResult:
        """Finds the longest cached page-aligned prefix of ``tokens`` and marks it used.

        Parameters:
            tokens: 1-D integer array-like ``[T]`` of token ids in ``[0, 2**31 - 1]``.

        Returns:
            MatchResult(length, pages ``[length // page_size]`` int32, node).  Splits a node
            when the match ends inside it so that ``node`` ends exactly at ``length``.

        Raises:
            TypeError: non-integer tokens.  ValueError: not 1-D, or an id out of range.
        """
        length, pages, node = self._c.match(tokens)
        return MatchResult(length, pages, node)

    def alloc(self, n: int) -> np.ndarray:
        """Takes ``n`` pages from the free list, evicting LRU unlocked nodes when short.

        Parameters:
            n: pages wanted (>= 0).

        Returns:
            int32 array ``[n]`` of page ids, now held by the caller (give them back with
            `insert` or `free`).

        Raises:
            OutOfPagesError: locked and held pages leave fewer than ``n``; nothing is
                allocated or evicted then.  ValueError: ``n < 0``.
        """
        return self._c.alloc(n)

    def insert(self, tokens: Any, pages: Any) -> InsertResult:
        """Caches ``tokens`` (cut to a multiple of page_size) with their KV ``pages``.

        For the part already cached, a page equal to the cached one is left alone; a
        different page (which must be held by the caller) is returned to the free list.  The
        pages of the new part pass from the caller to the tree.  Atomic: on error nothing
        changes.  Inserting fewer than page_size tokens returns ``(0, root)``.

        Parameters:
            tokens: 1-D integer array-like ``[T]``.
            pages: 1-D integer array-like ``[T // page_size]`` of page ids.

        Returns:
            InsertResult(cached_length, node): tokens cached before the call, and the handle
            of the node ending at the end of the inserted sequence.

        Raises:
            ValueError: wrong number of pages, a page out of range, duplicated, free, or
                cached at another position; a bad token id.  TypeError: non-integer input.
        """
        cached, node = self._c.insert(tokens, pages)
        return InsertResult(cached, node)

    def acquire(self, tokens: Any) -> tuple[MatchResult, np.ndarray]:
        """Admission of a sequence in one call: `match`, `lock` the matched node (the *pin*),
        then `alloc` pages for the rest of the page-aligned sequence.

        Same effects as those three calls in that order; when the allocation fails the pin
        is unlocked again and the error propagates.

        Parameters:
            tokens: 1-D integer array-like ``[T]``.

        Returns:
            ``(MatchResult, fresh)``: the match (its ``node`` now locked) and an int32 array
            ``[T // page_size - len(match.pages)]`` of held pages for the uncached part.

        Raises:
            OutOfPagesError: not enough free + evictable pages.  TypeError / ValueError: bad
                tokens.
        """
        length, pages, node, fresh = self._c.acquire(tokens)
        return MatchResult(length, pages, node), fresh

    def commit(self, tokens: Any, pages: Any, pin: int) -> InsertResult:
        """Completion of an `acquire` in one call: `insert` the sequence with its pages, `lock`
        the inserted node and `unlock` the pin.

        Same effects as those three calls in that order; the pin is validated first, so an
        error leaves the cache unchanged.

        Returns:
            InsertResult of the insert (its ``node`` is now locked).

        Raises:
            StaleHandleError / ValueError: the pin is dead or not locked; the errors of
                `insert`.
        """
        cached, node = self._c.commit(tokens, pages, pin)
        return InsertResult(cached, node)

    def lock(self, node: int) -> None:
        """Adds a lock on the path from ``node`` to the root (no-op for the root).

        Raises:
            StaleHandleError: ``node`` is not a live handle.  TypeError: not an int.
        """
        self._c.lock(node)

    def unlock(self, node: int) -> None:
        """Releases one `lock` of ``node`` (no-op for the root).

        Raises:
            ValueError: ``node`` holds no lock.  StaleHandleError: not a live handle.
        """
        self._c.unlock(node)

    def evict(self, num_pages: int) -> int:
        """Evicts LRU unlocked leaves until ``num_pages`` are freed or nothing is evictable.

        Returns:
            Pages freed (can exceed ``num_pages``: nodes go whole).

        Raises:
            ValueError: ``num_pages < 0``.
        """
        return self._c.evict(num_pages)

    def free(self, pages: Any) -> None:
        """Returns caller-held pages that were never inserted to the free list.

        Raises:
            ValueError: a page that is out of range, repeated, free or cached (atomic).
        """
        self._c.free(pages)

    def reset(self) -> None:
        """Frees every page and drops every node; all handles (root included) go stale."""
        self._c.reset()

    def stats(self) -> CacheStats:
        """Returns the page accounting and hit counters (see `CacheStats`)."""
        return CacheStats(*self._c.stats())

    def check(self) -> None:
        """Verifies every internal invariant (for tests); raises `InternalError` if broken."""
        self._c.check()

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"RadixCache(num_pages={s.capacity}, page_size={self.page_size}, free={s.free}, "
            f"evictable={s.evictable}, locked={s.locked}, nodes={s.nodes})"
        )
