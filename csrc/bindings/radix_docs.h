// Docstrings of the RadixCache methods bound in radix_py.cc (the methods are called directly
// from Python through o1search.RadixCache, a subclass, with no Python wrapper in between).
#pragma once

namespace o1search::bindings::radix_docs {

inline constexpr const char* kMatch = R"doc(Finds the longest cached page-aligned prefix of ``tokens`` and marks it used.

Parameters:
    tokens: 1-D integer array-like ``[T]`` of token ids in ``[0, 2**31 - 1]``.

Returns:
    MatchResult(length, pages ``[length // page_size]`` int32, node).  Splits a node
    when the match ends inside it so that ``node`` ends exactly at ``length``.

Raises:
    TypeError: non-integer tokens.  ValueError: not 1-D, or an id out of range.)doc";

inline constexpr const char* kAlloc = R"doc(Takes ``n`` pages from the free list, evicting LRU unlocked nodes when short.

Parameters:
    n: pages wanted (>= 0).

Returns:
    int32 array ``[n]`` of page ids, now held by the caller (give them back with
    `insert` or `free`).

Raises:
    OutOfPagesError: locked and held pages leave fewer than ``n``; nothing is
        allocated or evicted then.  ValueError: ``n < 0``.)doc";

inline constexpr const char* kInsert = R"doc(Caches ``tokens`` (cut to a multiple of page_size) with their KV ``pages``.

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
        cached at another position; a bad token id.  TypeError: non-integer input.)doc";

inline constexpr const char* kAcquire = R"doc(Admission of a sequence in one call: `match`, `lock` the matched node (the *pin*),
then `alloc` pages for the rest of the page-aligned sequence.

Same effects as those three calls in that order; when the allocation fails the pin
is unlocked again and the error propagates.

Parameters:
    tokens: 1-D integer array-like ``[T]``.

Returns:
    AcquireResult(length, pages, node): ``length`` cached tokens; ``pages`` int32
    ``[T // page_size]``, the cached pages then the fresh held ones (pass them to
    `commit`); ``node`` the matched node, now locked (the pin).

Raises:
    OutOfPagesError: not enough free + evictable pages.  TypeError / ValueError: bad
        tokens.)doc";

inline constexpr const char* kCommit = R"doc(Completion of an `acquire` in one call: `insert` the sequence with its pages, `lock`
the inserted node and `unlock` the pin.

Same effects as those three calls in that order; the pin is validated first, so an
error leaves the cache unchanged.

Returns:
    InsertResult of the insert (its ``node`` is now locked).

Raises:
    StaleHandleError / ValueError: the pin is dead or not locked; the errors of
        `insert`.)doc";

inline constexpr const char* kLock = R"doc(Adds a lock on the path from ``node`` to the root (no-op for the root).

Raises:
    StaleHandleError: ``node`` is not a live handle.  TypeError: not an int.)doc";

inline constexpr const char* kUnlock = R"doc(Releases one `lock` of ``node`` (no-op for the root).

Raises:
    ValueError: ``node`` holds no lock.  StaleHandleError: not a live handle.)doc";

inline constexpr const char* kEvict = R"doc(Evicts LRU unlocked leaves until ``num_pages`` are freed or nothing is evictable.

Returns:
    Pages freed (can exceed ``num_pages``: nodes go whole).

Raises:
    ValueError: ``num_pages < 0``.)doc";

inline constexpr const char* kFree = R"doc(Returns caller-held pages that were never inserted to the free list.

Raises:
    ValueError: a page that is out of range, repeated, free or cached (atomic).)doc";

inline constexpr const char* kReset = R"doc(Frees every page and drops every node; all handles (root included) go stale.)doc";

inline constexpr const char* kCheck = R"doc(Verifies every internal invariant (for tests); raises `InternalError` if broken.)doc";

}  // namespace o1search::bindings::radix_docs
