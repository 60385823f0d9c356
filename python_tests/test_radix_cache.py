"""RadixCache (native) against the pure-Python model, hand-computed cases and bad input."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import o1search
from o1search import InternalError, OutOfPagesError, RadixCache, StaleHandleError
from o1search.testing.radix_ref import RadixCacheRef

IMPLS = [pytest.param(RadixCache, id="native"), pytest.param(RadixCacheRef, id="ref")]


def _held(c) -> int:
    return c.stats().held


# ---- property test: native == reference, step by step ----------------------------------------


class _Pair:
    """Drives the native cache and the model with the same calls and compares every result."""

    def __init__(self, num_pages: int, page_size: int) -> None:
        self.nat = RadixCache(num_pages, page_size)
        self.ref = RadixCacheRef(num_pages, page_size)
        self.n2r: dict = {}
        self.r2n: dict = {}
        self.handles: list = []  # (native, ref) pairs seen so far, live or stale
        self.pair_handle(self.nat.root, self.ref.root)
        self.last_match: tuple | None = None  # (tokens, pages)

    def pair_handle(self, hn: int, hr: int) -> None:
        # Handles are opaque: compare them through a bijection built as they appear.
        assert self.n2r.setdefault(hn, hr) == hr, "native handle maps to two model nodes"
        assert self.r2n.setdefault(hr, hn) == hn, "model node maps to two native handles"
        if (hn, hr) not in self.handles:
            self.handles.append((hn, hr))

    def call(self, name: str, *args, nat_args=None, ref_args=None):
        outs, errs = [], []
        for impl, a in ((self.nat, nat_args or args), (self.ref, ref_args or args)):
            try:
                outs.append(getattr(impl, name)(*a))
                errs.append(None)
            except (ValueError, TypeError, IndexError, o1search.O1SearchError) as e:
                outs.append(None)
                errs.append(type(e))
        assert errs[0] == errs[1], f"{name}{args}: native raised {errs[0]}, model {errs[1]}"
        return outs[0], outs[1], errs[0]

    def verify(self) -> None:
        self.nat.check()
        self.ref.check()
        assert self.nat.stats() == self.ref.stats()
        s = self.nat.stats()
        assert s.free + s.evictable + s.locked == s.capacity


def _tokens(data, page_size: int, patterns: list) -> list:
    """A token sequence built from a few page patterns, so prefixes are shared often."""
    n_pages = data.draw(st.integers(0, 5))
    toks: list = []
    for _ in range(n_pages):
        page = list(data.draw(st.sampled_from(patterns)))
        if data.draw(st.integers(0, 9)) == 0:  # a page that diverges inside
            page[data.draw(st.integers(0, page_size - 1))] = data.draw(st.integers(0, 5))
        toks.extend(page)
    toks.extend(data.draw(st.lists(st.integers(0, 3), max_size=page_size - 1)))
    return toks


def _run_sequence(data, page_size: int) -> None:
    num_pages = data.draw(st.integers(1, 14), label="num_pages")
    pair = _Pair(num_pages, page_size)
    n_pat = 3
    patterns = [
        [data.draw(st.integers(0, 3)) for _ in range(page_size)] for _ in range(n_pat)
    ]
    ops = ["match", "alloc", "insert", "insert_matched", "lock", "unlock", "evict", "free",
           "acquire", "commit", "reset"]
    weights = st.sampled_from(ops[:-1] * 6 + ["reset"])
    for _ in range(data.draw(st.integers(1, 40), label="steps")):
        op = data.draw(weights)
        if op == "match":
            toks = _tokens(data, page_size, patterns)
            rn, rr, err = pair.call("match", np.asarray(toks, dtype=np.int64))
            assert err is None
            assert rn.length == rr.length and rn.length % page_size == 0
            np.testing.assert_array_equal(rn.pages, rr.pages)
            assert rn.pages.dtype == np.int32 and len(rn.pages) == rn.length // page_size
            pair.pair_handle(rn.node, rr.node)
            pair.last_match = (toks, rn.pages.tolist())
        elif op == "alloc":
            n = data.draw(st.integers(0, num_pages + 1))
            rn, rr, err = pair.call("alloc", n)
            if err is None:
                np.testing.assert_array_equal(rn, rr)
            else:
                assert err is OutOfPagesError
        elif op in ("insert", "insert_matched"):
            held = [p for p, s in enumerate(pair.ref._state) if s == 1]
            if op == "insert_matched" and pair.last_match is not None:
                # The engine's pattern: matched pages, then fresh held pages for the rest.
                toks, pages = pair.last_match
                toks = toks + _tokens(data, page_size, patterns)
                need = len(toks) // page_size - len(pages)
                if need < 0:
                    continue
                pages = pages + data.draw(st.permutations(held))[:need]
            else:
                toks = _tokens(data, page_size, patterns)
                n = len(toks) // page_size
                pool = held + list(range(num_pages)) if data.draw(st.booleans()) else held
                pages = [data.draw(st.sampled_from(pool)) for _ in range(n)] if pool else []
            rn, rr, err = pair.call("insert", toks, np.asarray(pages, dtype=np.int32))
            if err is None:
                assert rn.cached_length == rr.cached_length
                pair.pair_handle(rn.node, rr.node)
            else:
                assert err is ValueError
        elif op in ("lock", "unlock"):
            hn, hr = data.draw(st.sampled_from(pair.handles))
            rn, rr, err = pair.call(op, nat_args=(hn,), ref_args=(hr,))
            assert err in (None, StaleHandleError, ValueError)
        elif op == "acquire":
            toks = _tokens(data, page_size, patterns)
            rn, rr, err = pair.call("acquire", np.asarray(toks, dtype=np.int32))
            if err is None:
                assert rn.length == rr.length and rn.length % page_size == 0
                np.testing.assert_array_equal(rn.pages, rr.pages)
                assert rn.pages.dtype == np.int32 and len(rn.pages) == len(toks) // page_size
                pair.pair_handle(rn.node, rr.node)
                pair.acquired = (toks, rn.pages.tolist(), rn.node, rr.node)
            else:
                assert err is OutOfPagesError
        elif op == "commit":
            if getattr(pair, "acquired", None) is None:
                continue
            toks, pages, hn, hr = pair.acquired
            if data.draw(st.booleans()):  # sometimes a second, different pin (often unlocked)
                hn, hr = data.draw(st.sampled_from(pair.handles))
            arr = np.asarray(pages, dtype=np.int32)
            rn, rr, err = pair.call("commit", nat_args=(toks, arr, hn), ref_args=(toks, arr, hr))
            if err is None:
                assert rn.cached_length == rr.cached_length
                pair.pair_handle(rn.node, rr.node)
                pair.acquired = None
            else:
                assert err in (ValueError, StaleHandleError)
        elif op == "evict":
            rn, rr, err = pair.call("evict", data.draw(st.integers(0, num_pages)))
            assert err is None and rn == rr
        elif op == "free":
            held = [p for p, s in enumerate(pair.ref._state) if s == 1]
            pool = held + list(range(num_pages))
            pages = data.draw(st.lists(st.sampled_from(pool), max_size=4))
            pair.call("free", pages)
        elif op == "reset":
            pair.call("reset")
            pair.pair_handle(pair.nat.root, pair.ref.root)
        pair.verify()
    # Drain: release every lock, and the cache must be able to free everything held.
    for hn, hr in pair.handles:
        if hn == pair.nat.root:
            continue  # unlocking the root is a no-op that never fails
        while True:
            _, _, err = pair.call("unlock", nat_args=(hn,), ref_args=(hr,))
            if err is not None:
                break
    held = [p for p, s in enumerate(pair.ref._state) if s == 1]
    pair.call("free", held)
    pair.verify()
    s = pair.nat.stats()
    assert s.locked == 0 and s.free + s.evictable == s.capacity


_HYP = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@_HYP
@given(data=st.data())
def test_matches_reference_page_size_1(data):
    _run_sequence(data, 1)


@_HYP
@given(data=st.data())
def test_matches_reference_page_size_16(data):
    _run_sequence(data, 16)


# ---- hand-written semantics ------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_split_keeps_handle_meaning(impl):
    c = impl(16, 1)
    pages = c.alloc(6)
    ins = c.insert([1, 2, 3, 4, 5, 6], pages)
    assert ins.cached_length == 0
    c.lock(ins.node)
    m = c.match([1, 2, 3, 9])
    assert m.length == 3 and m.pages.tolist() == pages[:3].tolist()
    assert m.node != ins.node
    c.check()
    # The old handle still ends at token 6; the new node inherited its lock.
    assert c.insert([1, 2, 3, 4, 5, 6], pages).node == ins.node
    assert c.stats().locked == 6 and c.stats().evictable == 0
    assert c.match([1, 2, 3, 4, 5, 6, 7]).node == ins.node
    c.unlock(ins.node)
    assert c.stats().evictable == 6
    with pytest.raises(ValueError):
        c.unlock(m.node)  # locked only through ins.node, never through m.node
    c.check()


@pytest.mark.parametrize("impl", IMPLS)
def test_page_aligned_matching(impl):
    c = impl(8, 4)
    toks = list(range(10, 21))  # 11 tokens -> 2 pages cached
    p = c.alloc(2)
    assert c.insert(toks, p).cached_length == 0
    m = c.match(toks[:7])
    assert m.length == 4 and m.pages.tolist() == [p[0]]
    m = c.match(toks[:4] + [99, 13, 14, 15, 16])  # second page differs in its first token
    assert m.length == 4
    m = c.match(toks[:6] + [0, 0])  # second page differs inside: still one page
    assert m.length == 4
    assert c.match(toks + [1] * 20).length == 8
    s = c.stats()
    assert s.hit_tokens == 4 + 4 + 4 + 8 and s.miss_tokens == 3 + 5 + 4 + 23
    with pytest.raises(ValueError):
        c.insert(toks, p[:1].tolist() + [7, 7])  # 2 pages wanted, 3 given
    c.check()


@pytest.mark.parametrize("impl", IMPLS)
def test_duplicate_pages_go_back_on_insert(impl):
    c = impl(8, 2)
    a = c.alloc(3)
    first = c.insert([5, 6, 7, 8, 9, 10], a)
    b = c.alloc(4)  # b[:3] duplicate the cached path; b[3] is new
    s0 = c.stats()
    res = c.insert([5, 6, 7, 8, 9, 10, 11, 12], b)
    assert res.cached_length == 6
    s1 = c.stats()
    assert s1.held == s0.held - 4 and s1.free == s0.free + 3
    assert c.match([5, 6, 7, 8, 9, 10, 11, 12]).pages.tolist() == a.tolist() + [b[3]]
    # Re-inserting with the cached pages themselves changes nothing.
    assert c.insert([5, 6, 7, 8, 9, 10], a).node == first.node
    assert c.stats().free == s1.free
    c.check()


@pytest.mark.parametrize("impl", IMPLS)
def test_eviction_order_is_lru(impl):
    c = impl(6, 1)
    seqs = [[1, 1], [2, 2], [3, 3]]
    for s in seqs:
        c.insert(s, c.alloc(2))
    c.match([1, 1])  # [2, 2] is now least recent, then [3, 3]
    assert c.evict(1) == 2
    assert c.match([2, 2]).length == 0
    assert c.match([3, 3]).length == 2 and c.match([1, 1]).length == 2
    # A parent becomes evictable when its last child goes; the deeper node goes first.
    c.reset()
    c.insert([7, 7, 7, 7], c.alloc(4))
    c.match([7, 7])  # split: [7,7] above [7,7]; the upper node is the most recent
    c.insert([8], c.alloc(1))
    assert c.evict(1) == 2  # the lower [7, 7] leaf (older than [8])
    assert c.match([7, 7, 7]).length == 2
    assert c.evict(3) == 3  # then [8] and [7, 7]... in LRU order
    assert c.stats().free == 6
    c.check()


@pytest.mark.parametrize("impl", IMPLS)
def test_locked_paths_are_never_evicted(impl):
    c = impl(4, 1)
    r = c.insert([1, 2, 3], c.alloc(3))
    c.lock(r.node)
    c.lock(r.node)
    with pytest.raises(OutOfPagesError):
        c.alloc(2)
    s = c.stats()
    assert (s.free, s.evictable, s.locked) == (1, 0, 3)
    assert c.evict(10) == 0
    c.unlock(r.node)
    with pytest.raises(OutOfPagesError):
        c.alloc(2)
    c.unlock(r.node)
    with pytest.raises(ValueError):
        c.unlock(r.node)
    got = c.alloc(4)
    assert sorted(got.tolist()) == [0, 1, 2, 3]
    assert c.stats().held == 4
    with pytest.raises(StaleHandleError):
        c.lock(r.node)  # evicted by the alloc
    c.free(got)
    assert c.stats().free == 4
    c.check()


@pytest.mark.parametrize("impl", IMPLS)
def test_alloc_is_atomic_and_ordered(impl):
    c = impl(5, 1)
    assert c.alloc(2).tolist() == [0, 1]
    held = c.alloc(0)
    assert held.dtype == np.int32 and held.size == 0
    with pytest.raises(OutOfPagesError):
        c.alloc(4)
    assert c.stats().free == 3
    c.free([1])
    assert c.alloc(2).tolist() == [1, 2]


@pytest.mark.parametrize("impl", IMPLS)
def test_root_handle_and_empty_sequences(impl):
    c = impl(4, 2)
    root = c.root
    m = c.match([])
    assert m.length == 0 and m.node == root and m.pages.size == 0
    assert c.match([3]).node == root  # shorter than a page
    assert c.insert([], []) == o1search.InsertResult(0, root)
    assert c.insert([3], np.zeros(0, np.int32)).node == root
    c.lock(root)  # documented no-ops
    c.unlock(root)
    c.unlock(root)
    c.reset()
    assert c.root != root
    with pytest.raises(StaleHandleError):
        c.lock(root)


@pytest.mark.parametrize("impl", IMPLS)
def test_reset_makes_handles_stale(impl):
    c = impl(4, 1)
    r = c.insert([1, 2], c.alloc(2))
    c.lock(r.node)
    c.alloc(1)
    c.reset()
    s = c.stats()
    assert (s.free, s.evictable, s.locked, s.nodes) == (4, 0, 0, 0)
    for f in (c.lock, c.unlock):
        with pytest.raises(StaleHandleError):
            f(r.node)
    c.check()


# ---- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_tokens(impl):
    c = impl(4, 1)
    for bad in ([-1], [2**31], np.array([1.0, 2.0]), [True, False], "abc", [[1, 2]], [1, "x"]):
        with pytest.raises((ValueError, TypeError)):
            c.match(bad)
    with pytest.raises(TypeError):
        c.match(np.array([1.5]))
    with pytest.raises(TypeError):
        c.match([True])
    with pytest.raises(ValueError):
        c.match([2**40])
    with pytest.raises(ValueError):
        c.match(np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError):
        c.insert([-5], c.alloc(1))
    assert c.stats().held == 1  # the failed insert changed nothing
    c.check()


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_pages_are_rejected_atomically(impl):
    c = impl(6, 1)
    a = c.alloc(2)
    c.insert([1, 2], a)
    h = c.alloc(2).tolist()
    before = c.stats()
    cases = [
        ([3, 4], [h[0], 99]),  # out of range
        ([3, 4], [h[0], -1]),  # negative
        ([3, 4], [h[0], h[0]]),  # duplicated
        ([3, 4], [h[0], 5]),  # free page
        ([3, 4], [h[0], int(a[0])]),  # cached at another position
        ([1, 2, 3], [int(a[1]), int(a[0]), h[0]]),  # cached pages swapped
        ([3, 4], [h[0]]),  # too few pages
    ]
    for toks, pages in cases:
        with pytest.raises(ValueError):
            c.insert(toks, pages)
        assert c.stats() == before
        c.check()
    with pytest.raises(TypeError):
        c.insert([3, 4], [1.0, 2.0])
    for bad in ([h[0], h[0]], [int(a[0])], [5], [99], [-1]):
        with pytest.raises(ValueError):
            c.free(bad)
        assert c.stats() == before
    c.free(h)
    with pytest.raises(ValueError):
        c.free(h[:1])  # double free
    c.check()


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_handles_and_counts(impl):
    c = impl(4, 1)
    r = c.insert([1], c.alloc(1))
    for bad in (12345, -1, 2**40 + 7, r.node + (1 << 32)):
        with pytest.raises(StaleHandleError):
            c.lock(bad)
    with pytest.raises(StaleHandleError):
        c.lock(2**80)
    with pytest.raises(ValueError):  # StaleHandleError is a ValueError too
        c.unlock(2**33)
    for bad in (1.0, "1", None, True):
        with pytest.raises(TypeError):
            c.lock(bad)
    with pytest.raises(ValueError):
        c.unlock(r.node)  # never locked
    c.evict(1)
    with pytest.raises(StaleHandleError):
        c.lock(r.node)
    for f in (c.alloc, c.evict):
        with pytest.raises(ValueError):
            f(-1)
        with pytest.raises(TypeError):
            f(1.5)
    c.check()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("num_pages,page_size", [(0, 1), (-3, 1), (4, 0), (4, -1), (2**31, 1)])
def test_bad_construction(impl, num_pages, page_size):
    with pytest.raises(ValueError):
        impl(num_pages, page_size)


@pytest.mark.parametrize("impl", IMPLS)
def test_array_layouts(impl):
    c = impl(8, 2)
    base = np.arange(40, dtype=np.int64)
    strided = base[::2][:6]  # non-contiguous: 0, 2, 4, 6, 8, 10
    pages = np.asarray(c.alloc(6), dtype=np.int64)[::2]  # non-contiguous int64 pages
    assert c.insert(strided, pages).cached_length == 0
    for toks in (strided.astype(np.uint16), list(strided), tuple(int(t) for t in strided)):
        m = c.match(toks)
        assert m.length == 6 and m.pages.tolist() == pages.tolist()
    c.check()


def test_stale_handle_is_value_error_and_root_error():
    assert issubclass(StaleHandleError, ValueError)
    assert issubclass(OutOfPagesError, o1search.O1SearchError)
    assert issubclass(InternalError, o1search.O1SearchError)


def test_threads_share_one_cache():
    c = RadixCache(64, 1)
    errors: list = []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(300):
                toks = rng.integers(0, 3, size=rng.integers(1, 8))
                m = c.match(toks)
                try:
                    c.lock(m.node)  # pin the prefix: other threads may evict it otherwise
                except StaleHandleError:
                    continue
                try:
                    p = c.alloc(len(toks) - m.length)
                except OutOfPagesError:
                    c.unlock(m.node)
                    continue
                r = c.insert(toks, np.concatenate([m.pages, p]).astype(np.int32))
                c.unlock(m.node)
                try:
                    c.lock(r.node)  # may lose the race against another thread's eviction
                except StaleHandleError:
                    continue
                c.unlock(r.node)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    c.check()
    s = c.stats()
    assert s.held == 0 and s.free + s.evictable == s.capacity
