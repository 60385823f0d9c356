"""Pure-Python reference model of `o1search.RadixCache`.

Same API, same results (lengths, pages, statistics, errors at the same moments) as the native
cache; the semantics are spelled out in the docstring of ``o1search/radix_cache.py``.  It is
written to be obviously right rather than fast, but without gratuitous waste: it is the
oracle of the property tests and the baseline of ``benchmarks/bench_core.py``.

How it differs from the native one (on purpose, so that the two are independent):

* Nodes are Python objects holding their own token and page lists; children live in a dict
  keyed by the first token (page_size 1) or the tuple of the first page's tokens.
* LRU is literal: every node carries ``stamp`` (the logical clock of the last match / insert
  that ended at or below it, or of the unlock that released it) and eviction takes the
  unlocked node with the smallest ``(stamp, -path_end)`` from a heap (stale heap entries are
  skipped), where the native cache keeps an intrusive list in that order.
* Handles are fresh integers per node (never reused), not index/generation pairs; compare
  them through a mapping, not by value.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any

import numpy as np

from o1search._native import InternalError, OutOfPagesError, StaleHandleError
from o1search.radix_cache import AcquireResult, CacheStats, InsertResult, MatchResult

__all__ = ["RadixCacheRef"]

_FREE, _HELD, _CACHED = 0, 1, 2
_TOKEN_MAX = 2**31 - 1
_MAX_PAGES = 2**30


def _as_ids(obj: Any, what: str, hi: int) -> list[int]:
    """1-D integer array-like -> list of ints in [0, hi], with the native cache's errors."""
    if isinstance(obj, (str, bytes)):
        raise TypeError(f"{what}: expected a sequence of numbers, got a string")
    try:
        a = np.asarray(obj)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{what}: expected an array-like of numbers ({exc})") from exc
    if a.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D array, got {a.ndim} dimensions")
    if a.size == 0:
        return []
    if a.dtype.kind not in "iu":
        raise TypeError(f"{what}: expected integer values, got dtype {a.dtype}")
    out = a.tolist()
    lo_v, hi_v = min(out), max(out)
    if lo_v < 0 or hi_v > hi:
        bad = lo_v if lo_v < 0 else hi_v
        raise ValueError(f"{what}: value {bad} at index {out.index(bad)} is outside [0, {hi}]")
    return out


def _as_count(n: Any, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{what}: expected an int, got {type(n).__name__}")
    n = int(n)
    if n < 0:
        raise ValueError(f"{what}: must be >= 0, got {n}")
    return n


class _Node:
    __slots__ = ("uid", "parent", "tokens", "pages", "children", "ref", "own", "stamp", "end", "alive")

    def __init__(self, uid: int, parent: _Node | None, tokens: list, pages: list, end: int) -> None:
        self.uid = uid
        self.parent = parent
        self.tokens = tokens  # this node's own tokens (a multiple of page_size)
        self.pages = pages  # len(tokens) // page_size page ids
        self.children: dict = {}
        self.ref = 0  # locks on this node or below it
        self.own = 0  # locks taken through this node's handle
        self.stamp = 0
        self.end = end  # path length (tokens) from the root to this node's end
        self.alive = True


class RadixCacheRef:
    """Pure-Python `RadixCache` with identical semantics (see ``o1search.radix_cache``).

    Parameters:
        num_pages: pages in the pool (> 0).
        page_size: tokens per page (> 0).

    Raises:
        ValueError: ``num_pages`` or ``page_size`` not positive (or absurdly large).
        TypeError: not integers.
    """

    def __init__(self, num_pages: int, page_size: int = 1) -> None:
        for name, v in (("num_pages", num_pages), ("page_size", page_size)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
        if num_pages <= 0 or num_pages > _MAX_PAGES:
            raise ValueError(f"num_pages must be in [1, {_MAX_PAGES}], got {num_pages}")
        if page_size <= 0 or page_size > 1 << 20:
            raise ValueError(f"page_size must be in [1, {1 << 20}], got {page_size}")
        self._n = int(num_pages)
        self._ps = int(page_size)
        self._uids = itertools.count(1)
        self._hit = 0
        self._miss = 0
        self._init_state()

    # ---- state -----------------------------------------------------------------------------

    def _init_state(self) -> None:
        self._state = [_FREE] * self._n
        self._free = list(range(self._n - 1, -1, -1))  # stack: top is the end
        self._root = _Node(next(self._uids), None, [], [], 0)
        self._nodes: dict[int, _Node] = {self._root.uid: self._root}
        self._clock = 0
        self._heap: list = []  # (stamp, -end, uid) of unlocked nodes; stale entries skipped
        self._evictable = 0

    @property
    def num_pages(self) -> int:
        return self._n

    @property
    def page_size(self) -> int:
        return self._ps

    @property
    def root(self) -> int:
        return self._root.uid

    def _key(self, toks: list, i: int) -> Any:
        return toks[i] if self._ps == 1 else tuple(toks[i : i + self._ps])

    def _node(self, handle: Any) -> _Node:
        if isinstance(handle, bool) or not isinstance(handle, (int, np.integer)):
            raise TypeError(f"node handle: expected an int, got {type(handle).__name__}")
        node = self._nodes.get(int(handle))
        if node is None:
            raise StaleHandleError(f"node handle {int(handle)} is stale or unknown")
        return node

    def _stamp(self, node: _Node, stamp: int) -> None:
        node.stamp = stamp
        if node.ref == 0 and node is not self._root:
            heapq.heappush(self._heap, (stamp, -node.end, node.uid))

    def _touch_path(self, node: _Node) -> None:
        self._clock += 1
        while node is not self._root:
            self._stamp(node, self._clock)
            node = node.parent

    # ---- tree walk -------------------------------------------------------------------------

    def _walk(self, toks: list) -> tuple[_Node, _Node | None, int, int]:
        """Follows ``toks`` (page aligned) down the tree without changing anything.

        Returns (node, child, k, pos): the deepest node fully matched, the child in which the
        match stops after ``k`` pages (or None, k = 0), and the matched length in tokens
        (including the ``k`` pages).
        """
        ps, n = self._ps, len(toks)
        node, pos = self._root, 0
        while pos < n:
            child = node.children.get(self._key(toks, pos))
            if child is None:
                break
            span = min(len(child.tokens), n - pos)
            if toks[pos : pos + span] == child.tokens[:span]:
                k = span // ps
            else:
                k = 1  # the first page matched through the key
                while child.tokens[k * ps : (k + 1) * ps] == toks[pos + k * ps : pos + (k + 1) * ps]:
                    k += 1
            if k * ps == len(child.tokens):
                node, pos = child, pos + k * ps
                continue
            return node, child, k, pos + k * ps
        return node, None, 0, pos

    def _split(self, child: _Node, k: int) -> _Node:
        """Splits ``child`` after ``k`` pages; returns the new upper node."""
        ps = self._ps
        parent = child.parent
        upper = _Node(
            next(self._uids), parent, child.tokens[: k * ps], child.pages[:k],
            child.end - len(child.tokens) + k * ps,
        )
        upper.ref = child.ref  # every lock below child is below upper too
        upper.stamp = child.stamp
        parent.children[self._key(upper.tokens, 0)] = upper
        child.tokens = child.tokens[k * ps :]
        child.pages = child.pages[k:]
        child.parent = upper
        upper.children[self._key(child.tokens, 0)] = child
        self._nodes[upper.uid] = upper
        if upper.ref == 0:
            heapq.heappush(self._heap, (upper.stamp, -upper.end, upper.uid))
        return upper

    def _end_node(self, toks: list) -> tuple[_Node, int]:
        node, child, k, pos = self._walk(toks)
        if child is not None:
            node = self._split(child, k)
        return node, pos

    # ---- API -------------------------------------------------------------------------------

    def match(self, tokens: Any) -> MatchResult:
        """See `o1search.RadixCache.match`."""
        toks = _as_ids(tokens, "tokens", _TOKEN_MAX)
        total = len(toks)
        toks = toks[: total - total % self._ps]
        node, length = self._end_node(toks)
        self._touch_path(node)
        pages: list = []
        chain = []
        x = node
        while x is not self._root:
            chain.append(x)
            x = x.parent
        for x in reversed(chain):
            pages.extend(x.pages)
        self._hit += length
        self._miss += total - length
        return MatchResult(length, np.asarray(pages, dtype=np.int32), node.uid)

    def alloc(self, n: int) -> np.ndarray:
        """See `o1search.RadixCache.alloc`."""
        n = _as_count(n, "alloc: n")
        if n > len(self._free) + self._evictable:
            raise OutOfPagesError(
                f"alloc({n}): only {len(self._free)} free and {self._evictable} evictable pages "
                f"of {self._n} (the rest are locked or held)"
            )
        if n > len(self._free):
            self.evict(n - len(self._free))
        out = [self._free.pop() for _ in range(n)]
        for p in out:
            self._state[p] = _HELD
        return np.asarray(out, dtype=np.int32)

    def insert(self, tokens: Any, pages: Any) -> InsertResult:
        """See `o1search.RadixCache.insert`."""
        ps = self._ps
        toks = _as_ids(tokens, "tokens", _TOKEN_MAX)
        pgs = _as_ids(pages, "pages", self._n - 1)
        n = len(toks) // ps
        toks = toks[: n * ps]
        if len(pgs) != n:
            raise ValueError(
                f"insert: {len(pgs)} pages given for {n} pages of tokens (page_size {ps})"
            )
        if len(set(pgs)) != len(pgs):
            raise ValueError("insert: duplicated page ids")
        # Validate against the cached part first: nothing changes unless all is well.
        node, child, k, pos = self._walk(toks)
        cached = self._cached_pages(node, child, k)
        m = pos // ps
        dropped = []
        for i, p in enumerate(pgs):
            if i < m and cached[i] == p:
                continue
            st = self._state[p]
            if st != _HELD:
                where = "free" if st == _FREE else "cached at another position"
                raise ValueError(f"insert: page {p} (index {i}) is {where}, not held by the caller")
            if i < m:
                dropped.append(p)
        if n == 0:
            return InsertResult(0, self._root.uid)
        if child is not None:
            node = self._split(child, k)
        if m < n:
            leaf = _Node(next(self._uids), node, toks[m * ps :], pgs[m:], n * ps)
            node.children[self._key(leaf.tokens, 0)] = leaf
            self._nodes[leaf.uid] = leaf
            for p in leaf.pages:
                self._state[p] = _CACHED
            self._evictable += len(leaf.pages)
            node = leaf
        for p in dropped:
            self._state[p] = _FREE
            self._free.append(p)
        self._touch_path(node)
        return InsertResult(m * ps, node.uid)

    def _cached_pages(self, node: _Node, child: _Node | None, k: int) -> list:
        pages: list = []
        x = node
        chain = []
        while x is not self._root:
            chain.append(x)
            x = x.parent
        for x in reversed(chain):
            pages.extend(x.pages)
        if child is not None:
            pages.extend(child.pages[:k])
        return pages

    def acquire(self, tokens: Any) -> AcquireResult:
        """See `o1search.RadixCache.acquire`."""
        m = self.match(tokens)
        self.lock(m.node)
        try:
            fresh = self.alloc(len(tokens) // self.page_size - len(m.pages))
        except BaseException:
            self.unlock(m.node)
            raise
        return AcquireResult(m.length, np.concatenate((m.pages, fresh)).astype(np.int32), m.node)

    def commit(self, tokens: Any, pages: Any, pin: int) -> InsertResult:
        """See `o1search.RadixCache.commit`."""
        x = self._node(pin)
        if x is not self._root and x.own == 0:
            raise ValueError(f"commit: pin {int(pin)} is not locked")
        r = self.insert(tokens, pages)
        self.lock(r.node)
        self.unlock(pin)
        return r

    def lock(self, node: int) -> None:
        """See `o1search.RadixCache.lock`."""
        x = self._node(node)
        if x is self._root:
            return
        x.own += 1
        while x is not self._root:
            if x.ref == 0:
                self._evictable -= len(x.pages)
            x.ref += 1
            x = x.parent

    def unlock(self, node: int) -> None:
        """See `o1search.RadixCache.unlock`."""
        x = self._node(node)
        if x is self._root:
            return
        if x.own == 0:
            raise ValueError(f"unlock: node {int(node)} is not locked")
        x.own -= 1
        self._clock += 1
        while x is not self._root:
            x.ref -= 1
            if x.ref == 0:
                self._evictable += len(x.pages)
                self._stamp(x, self._clock)
            x = x.parent

    def evict(self, num_pages: int) -> int:
        """See `o1search.RadixCache.evict`."""
        num_pages = _as_count(num_pages, "evict: num_pages")
        freed = 0
        while freed < num_pages and self._heap:
            stamp, neg_end, uid = heapq.heappop(self._heap)
            x = self._nodes.get(uid)
            if x is None or x.ref != 0 or x.stamp != stamp:
                continue  # stale entry: evicted, locked since, or re-stamped
            if x.children:
                raise InternalError(f"LRU node {uid} has children")
            parent = x.parent
            del parent.children[self._key(x.tokens, 0)]
            del self._nodes[uid]
            x.alive = False
            for p in x.pages:
                self._state[p] = _FREE
                self._free.append(p)
            self._evictable -= len(x.pages)
            freed += len(x.pages)
        return freed

    def free(self, pages: Any) -> None:
        """See `o1search.RadixCache.free`."""
        pgs = _as_ids(pages, "pages", self._n - 1)
        if len(set(pgs)) != len(pgs):
            raise ValueError("free: duplicated page ids")
        for p in pgs:
            if self._state[p] != _HELD:
                where = "already free" if self._state[p] == _FREE else "cached in the tree"
                raise ValueError(f"free: page {p} is {where}, not held by the caller")
        for p in pgs:
            self._state[p] = _FREE
            self._free.append(p)

    def reset(self) -> None:
        """See `o1search.RadixCache.reset`."""
        self._init_state()

    def stats(self) -> CacheStats:
        """See `o1search.RadixCache.stats`."""
        free = len(self._free)
        held = self._state.count(_HELD)
        return CacheStats(
            capacity=self._n,
            free=free,
            evictable=self._evictable,
            locked=self._n - free - self._evictable,
            held=held,
            hit_tokens=self._hit,
            miss_tokens=self._miss,
            nodes=len(self._nodes) - 1,
        )

    def check(self) -> None:
        """Verifies the model's invariants; raises `InternalError` if one is broken."""

        def fail(msg: str) -> None:
            raise InternalError(f"radix_ref: {msg}")

        ps = self._ps
        owner: dict = {}
        evictable = 0
        for x in self._nodes.values():
            if x is self._root:
                continue
            if not x.alive or x.parent is None or x.parent.uid not in self._nodes:
                fail(f"node {x.uid} detached")
            if not x.tokens or len(x.tokens) % ps or len(x.pages) * ps != len(x.tokens):
                fail(f"node {x.uid} has a bad span")
            if x.parent.children.get(self._key(x.tokens, 0)) is not x:
                fail(f"node {x.uid} not under its key")
            if x.end != x.parent.end + len(x.tokens):
                fail(f"node {x.uid} path end wrong")
            if x.ref != x.own + sum(c.ref for c in x.children.values()):
                fail(f"node {x.uid} lock count inconsistent")
            for p in x.pages:
                if p in owner or self._state[p] != _CACHED:
                    fail(f"page {p} owned twice or not marked cached")
                owner[p] = x.uid
            if x.ref == 0:
                evictable += len(x.pages)
                if any(c.stamp > x.stamp for c in x.children.values()):
                    fail(f"node {x.uid} older than a child")
        if evictable != self._evictable:
            fail(f"evictable {self._evictable} != {evictable}")
        if len(set(self._free)) != len(self._free) or any(self._state[p] != _FREE for p in self._free):
            fail("free list corrupt")
        held = self._state.count(_HELD)
        if len(self._free) + len(owner) + held != self._n:
            fail("free + cached + held != capacity")
