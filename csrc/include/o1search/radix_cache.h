// o1search — RadixCache: a radix tree over token ids whose nodes own KV page ids.
//
// The cache maps page-aligned token prefixes to the pages holding their KV, so requests that
// share a prefix (siblings in a search tree) compute it once.  Semantics, shared with the
// pure-Python model o1search/testing/radix_ref.py (see also o1search/radix_cache.py):
//
//  * Pages 0 .. num_pages-1 are free, held (allocated to the caller, not in the tree) or cached
//    (owned by exactly one node).  The free list is a stack (see PageAllocator).
//  * Token sequences are cut to a multiple of page_size; a node covers >= 1 whole pages and
//    its children are keyed by their first page of tokens.
//  * Handles are int64 (generation << 32 | index); a handle of an evicted node, or any handle
//    after Reset(), throws StaleHandleError.  A split creates the node for the upper part, so
//    an existing handle keeps meaning "the node ending at the same path end".
//  * Lock(node) adds a reference to every node from `node` up to the root; locked nodes are
//    never evicted.  Lock/Unlock of the root handle are no-ops.
//  * LRU: unlocked nodes sit in one intrusive list.  Match and Insert move the nodes of the path
//    they end at to the most-recent end, deepest first; Unlock appends the nodes whose count
//    drops to zero, deepest first.  Every node therefore sits before its ancestors, so the
//    least-recent end is always a leaf, and eviction pops it in O(1).
//  * Cost: Match/Insert O(path tokens) compares and O(path nodes) list moves, no per-token
//    allocation; Lock/Unlock O(depth); evicting k nodes O(k + their pages).
//
// Not thread-safe by itself: the Python binding serializes calls with a mutex.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace o1search {

/// Page accounting; free + evictable + locked == capacity.
struct CacheStats {
  int64_t capacity = 0;
  int64_t free = 0;       ///< pages in the free list
  int64_t evictable = 0;  ///< cached pages with no lock on them
  int64_t locked = 0;     ///< cached pages under a lock + pages held by the caller
  int64_t held = 0;       ///< the held part of `locked`
  int64_t hit_tokens = 0;   ///< tokens found by Match
  int64_t miss_tokens = 0;  ///< tokens Match did not find (the unaligned tail included)
  int64_t nodes = 0;        ///< live nodes, the root excluded
};

struct MatchOutput {
  int64_t length = 0;          ///< matched tokens, a multiple of page_size
  std::vector<int32_t> pages;  ///< length / page_size page ids
  int64_t node = 0;            ///< handle of the node ending at `length`
};

struct InsertOutput {
  int64_t cached_length = 0;  ///< tokens that were cached before the call
  int64_t node = 0;           ///< handle of the node ending at the inserted path end
};

/// Result of RadixCache::Acquire.
struct AcquireOutput {
  int64_t length = 0;          ///< cached tokens (a multiple of page_size)
  std::vector<int32_t> pages;  ///< every whole page of the sequence: length / page_size
                               ///< cached pages, then freshly allocated held pages
  int64_t node = 0;            ///< the matched node, now locked (the "pin")
};

class RadixCache {
 public:
  /// Throws std::invalid_argument unless 1 <= num_pages <= 2^30 and 1 <= page_size <= 2^20.
  RadixCache(int64_t num_pages, int64_t page_size);
  ~RadixCache();

  RadixCache(const RadixCache&) = delete;
  RadixCache& operator=(const RadixCache&) = delete;
  RadixCache(RadixCache&&) = delete;
  RadixCache& operator=(RadixCache&&) = delete;

  int32_t num_pages() const;
  int32_t page_size() const;
  /// Handle of the root (the empty prefix); changes on Reset().
  int64_t root() const;

  /// Longest cached page-aligned prefix of tokens[0..n).  Splits the node the match ends in,
  /// marks the path most recently used, counts hits and misses.
  MatchOutput Match(const int32_t* tokens, int64_t n);

  /// Pops n pages off the free list (now held by the caller), evicting LRU unlocked nodes when
  /// fewer than n are free.  Throws OutOfPagesError, with nothing allocated or evicted, when
  /// free + evictable < n; std::invalid_argument when n < 0.
  std::vector<int32_t> Alloc(int64_t n);

  /// Caches tokens[0..n_tokens) cut to whole pages, with pages[0..n_pages).  n_pages must equal
  /// n_tokens / page_size.  Where the path is cached already, an equal page is left alone and a
  /// different (held) page goes back to the free list; new pages pass from the caller to the
  /// tree.  Validates everything first (std::invalid_argument for a page out of range,
  /// repeated, free, or cached at another position; nothing changes then).  Fewer than
  /// page_size tokens: returns {0, root()}.  Marks the path most recently used.
  InsertOutput Insert(const int32_t* tokens, int64_t n_tokens, const int32_t* pages,
                      int64_t n_pages);

  /// One more lock on the path node..root.  Throws StaleHandleError for a dead handle.
  void Lock(int64_t node);
  /// Releases one Lock(node); std::invalid_argument if `node` holds none, StaleHandleError for
  /// a dead handle.
  void Unlock(int64_t node);

  /// Evicts LRU unlocked leaves (whole nodes) until at least num_pages are freed or none is
  /// left; returns the pages freed.  std::invalid_argument when num_pages < 0.
  int64_t Evict(int64_t num_pages);

  /// Returns held pages that were never inserted.  std::invalid_argument for a page that is
  /// out of range, repeated, free or cached (nothing changes then).
  void Free(const int32_t* pages, int64_t n);

  /// All pages free, the tree empty, every handle (the root's too) stale.  Hit/miss counters
  /// are kept.
  void Reset();

  CacheStats Stats() const;

  /// Verifies every invariant (page accounting, single ownership, lock counts, LRU list =
  /// unlocked nodes with each node before its ancestors, spans, child index); throws
  /// InternalError when one is broken.  O(nodes + pages).
  void Check() const;

  // ---- fused steps of the engine's admission protocol (one call instead of three) ----

  /// Match(tokens) + Lock(match.node) + Alloc(n / page_size - match pages), exactly as those
  /// calls in that order would do; the pages come back as one array (cached, then fresh).  When Alloc throws, the lock is released again (Unlock,
  /// which stamps the unlocked nodes as used) and the exception propagates.
  AcquireOutput Acquire(const int32_t* tokens, int64_t n);

  /// Insert(tokens, pages) + Lock(inserted node) + Unlock(pin), exactly as those calls in that
  /// order would do.  The pin is validated first (StaleHandleError / std::invalid_argument if
  /// it is dead or not locked), so an error leaves everything unchanged.
  InsertOutput Commit(const int32_t* tokens, int64_t n_tokens, const int32_t* pages,
                      int64_t n_pages, int64_t pin);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace o1search
