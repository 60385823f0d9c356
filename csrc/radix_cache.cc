// RadixCache implementation.  Layout (see radix_cache.h for the semantics):
//
//  * nodes_: arena of Node records addressed by 32-bit index; [0] is the root.  Dead slots are
//    recycled through free_nodes_ with their generation bumped, which is what makes an old
//    handle stale.
//  * tok_pool_ / page_pool_: contiguous pools.  A node owns the page slots [off, off + len)
//    of page_pool_ and the tokens [off * ps, (off + len) * ps) of tok_pool_; a split only
//    changes offsets.  Evicted spans leave holes; the pools are compacted when they must grow
//    and at least half of them is holes, so the work is amortized O(1) per inserted page.
//  * index_: one open-addressing hash table (parent, key of the first page) -> child, shared
//    by all nodes.  With page_size 1 the key is the token itself; otherwise it is a hash of the
//    page and a lookup compares the page's tokens, so colliding keys are harmless.
//  * LRU: intrusive doubly-linked list through Node::prev/next of every unlocked node, least
//    recent first; each node sits before its ancestors, so the head is always a leaf.
#include "o1search/radix_cache.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

#include "o1search/error.h"
#include "o1search/page_allocator.h"

namespace o1search {

namespace {

constexpr int32_t kNil = -1;
constexpr int32_t kRoot = 0;
constexpr uint8_t kHeld = 1;    // page tag: allocated to the caller, not in the tree
constexpr uint8_t kCached = 2;  // page tag: owned by a tree node
constexpr uint32_t kGenMask = 0x7fffffffu;
constexpr int64_t kMaxPageSize = int64_t{1} << 20;

inline uint64_t Mix64(uint64_t x) {
  // splitmix64 finalizer: full avalanche, so linear probing sees well-spread homes.
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

inline uint32_t NextGen(uint32_t g) {
  g = (g + 1) & kGenMask;
  return g == 0 ? 1 : g;
}

struct Node {
  int64_t off = 0;       // first slot in page_pool_ (tokens at off * ps)
  int32_t len = 0;       // pages (>= 1 for live non-root nodes)
  int32_t parent = kNil;
  int32_t nchild = 0;
  int32_t ref = 0;       // locks on this node or below
  int32_t own = 0;       // locks taken through this node's handle
  int32_t prev = kNil;   // LRU links
  int32_t next = kNil;
  uint32_t gen = 1;
  bool alive = false;
  bool in_lru = false;
};

// (parent, key) -> child, linear probing with backward-shift deletion (no tombstones).
class ChildIndex {
 public:
  ChildIndex() { Clear(); }

  void Clear() {
    slots_.assign(64, Slot{});
    mask_ = slots_.size() - 1;
    size_ = 0;
  }
  size_t size() const { return size_; }

  // First child under (parent, key) for which same(child) holds, or kNil.
  template <typename Eq>
  int32_t Find(int32_t parent, uint32_t key, Eq&& same) const {
    for (size_t i = Home(parent, key);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.child == kNil) return kNil;
      if (s.parent == parent && s.key == key && same(s.child)) return s.child;
    }
  }

  void Insert(int32_t parent, uint32_t key, int32_t child) {
    if ((size_ + 1) * 2 > slots_.size()) Grow();
    Place(Slot{parent, key, child});
    ++size_;
  }

  void Replace(int32_t parent, uint32_t key, int32_t old_child, int32_t new_child) {
    slots_[Locate(parent, key, old_child)].child = new_child;
  }

  void Erase(int32_t parent, uint32_t key, int32_t child) {
    size_t i = Locate(parent, key, child);
    for (size_t j = i;;) {
      j = (j + 1) & mask_;
      if (slots_[j].child == kNil) break;
      const size_t k = Home(slots_[j].parent, slots_[j].key);
      // The entry at j may move back to i only if its home is not cyclically in (i, j].
      const bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
      if (!stays) {
        slots_[i] = slots_[j];
        i = j;
      }
    }
    slots_[i] = Slot{};
    --size_;
  }

 private:
  struct Slot {
    int32_t parent = kNil;
    uint32_t key = 0;
    int32_t child = kNil;
  };

  size_t Home(int32_t parent, uint32_t key) const {
    return static_cast<size_t>(Mix64((static_cast<uint64_t>(static_cast<uint32_t>(parent)) << 32) |
                                     key)) &
           mask_;
  }

  size_t Locate(int32_t parent, uint32_t key, int32_t child) const {
    for (size_t i = Home(parent, key);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      O1_ICHECK(s.child != kNil) << "child " << child << " missing from the index";
      if (s.child == child) {
        O1_ICHECK(s.parent == parent && s.key == key) << "index entry of " << child << " stale";
        return i;
      }
    }
  }

  void Place(const Slot& s) {
    size_t i = Home(s.parent, s.key);
    while (slots_[i].child != kNil) i = (i + 1) & mask_;
    slots_[i] = s;
  }

  void Grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    for (const Slot& s : old)
      if (s.child != kNil) Place(s);
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace

struct RadixCache::Impl {
  struct Walk {
    int32_t node;   // deepest node matched whole
    int32_t child;  // node the match stops inside (kNil: none)
    int32_t k;      // pages of `child` matched
    int64_t pos;    // pages matched in all (k included)
  };

  const int32_t ps;
  PageAllocator alloc;
  std::vector<Node> nodes;
  std::vector<int32_t> free_nodes;
  std::vector<int32_t> tok_pool;
  std::vector<int32_t> page_pool;
  int64_t pool_used = 0;  // page slots handed to nodes (live + holes)
  int64_t cached = 0;     // pages owned by live nodes
  int64_t evictable = 0;  // pages of unlocked live nodes
  int64_t live_nodes = 0;
  int64_t total_locks = 0;
  int32_t lru_head = kNil;
  int32_t lru_tail = kNil;
  ChildIndex index;
  int64_t hit = 0;
  int64_t miss = 0;
  // Per-call scratch, kept to avoid allocating on every call.
  std::vector<uint32_t> mark;  // page -> epoch of the last call that saw it (duplicates)
  uint32_t mark_epoch = 0;
  std::vector<int32_t> given;
  std::vector<int32_t> walk_pages;
  std::vector<int32_t> dropped;

  Impl(int64_t num_pages, int64_t page_size)
      : ps(static_cast<int32_t>(page_size)), alloc(num_pages) {
    nodes.emplace_back();
    nodes[kRoot].alive = true;
    mark.assign(static_cast<size_t>(num_pages), 0);
  }

  // ---- small helpers --------------------------------------------------------------------

  int32_t* Tok(int32_t x) { return tok_pool.data() + nodes[x].off * ps; }
  const int32_t* Tok(int32_t x) const { return tok_pool.data() + nodes[x].off * ps; }
  const int32_t* Pages(int32_t x) const { return page_pool.data() + nodes[x].off; }

  uint32_t Key(const int32_t* page) const {
    if (ps == 1) return static_cast<uint32_t>(page[0]);
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    for (int32_t i = 0; i < ps; ++i) h = (h ^ static_cast<uint32_t>(page[i])) * 0x100000001b3ULL;
    return static_cast<uint32_t>(Mix64(h));
  }

  int32_t FindChild(int32_t parent, const int32_t* page) const {
    const uint32_t key = Key(page);
    if (ps == 1) return index.Find(parent, key, [](int32_t) { return true; });
    return index.Find(parent, key, [&](int32_t c) {
      return std::memcmp(Tok(c), page, sizeof(int32_t) * static_cast<size_t>(ps)) == 0;
    });
  }

  int64_t Handle(int32_t x) const {
    return (static_cast<int64_t>(nodes[x].gen) << 32) | static_cast<int64_t>(x);
  }

  int32_t Resolve(int64_t h) const {
    const int64_t idx = h & 0xffffffffLL;
    const int64_t gen = h >> 32;
    O1_CHECK(h >= 0 && idx < static_cast<int64_t>(nodes.size()) &&
                 nodes[static_cast<size_t>(idx)].alive &&
                 nodes[static_cast<size_t>(idx)].gen == static_cast<uint32_t>(gen),
             StaleHandleError)
        << "node handle " << h << " is stale or unknown";
    return static_cast<int32_t>(idx);
  }

  int32_t NewNode() {
    int32_t x;
    if (!free_nodes.empty()) {
      x = free_nodes.back();
      free_nodes.pop_back();
    } else {
      O1_CHECK(nodes.size() < static_cast<size_t>(std::numeric_limits<int32_t>::max()),
               std::length_error)
          << "too many radix nodes";
      x = static_cast<int32_t>(nodes.size());
      nodes.emplace_back();
    }
    Node& n = nodes[static_cast<size_t>(x)];
    const uint32_t gen = n.gen;
    n = Node{};
    n.gen = gen;
    n.alive = true;
    ++live_nodes;
    return x;
  }

  // ---- LRU list -------------------------------------------------------------------------

  void Unlink(int32_t x) {
    Node& n = nodes[x];
    if (!n.in_lru) return;
    (n.prev == kNil ? lru_head : nodes[n.prev].next) = n.next;
    (n.next == kNil ? lru_tail : nodes[n.next].prev) = n.prev;
    n.prev = n.next = kNil;
    n.in_lru = false;
  }

  void PushBack(int32_t x) {
    Node& n = nodes[x];
    n.prev = lru_tail;
    n.next = kNil;
    (lru_tail == kNil ? lru_head : nodes[lru_tail].next) = x;
    lru_tail = x;
    n.in_lru = true;
  }

  void InsertAfter(int32_t at, int32_t x) {
    Node& n = nodes[x];
    n.prev = at;
    n.next = nodes[at].next;
    (n.next == kNil ? lru_tail : nodes[n.next].prev) = x;
    nodes[at].next = x;
    n.in_lru = true;
  }

  // Marks the path x..root most recently used, deepest first.  A locked node has only locked
  // ancestors, so the walk stops at the first one.
  void Touch(int32_t x) {
    for (; x != kRoot && nodes[x].ref == 0; x = nodes[x].parent) {
      Unlink(x);
      PushBack(x);
    }
  }

  // ---- tree -----------------------------------------------------------------------------

  // Follows toks[0 .. n_pages * ps) from the root without changing anything, appending the
  // matched pages to *pages.
  Walk Follow(const int32_t* toks, int64_t n_pages, std::vector<int32_t>* pages) const {
    int32_t cur = kRoot;
    int64_t pos = 0;
    while (pos < n_pages) {
      const int32_t* q = toks + pos * ps;
      const int32_t c = FindChild(cur, q);
      if (c == kNil) break;
      const Node& cn = nodes[c];
      const int64_t span = std::min<int64_t>(cn.len, n_pages - pos);
      const int32_t* t = Tok(c);
      int64_t k;
      if (std::memcmp(t, q, sizeof(int32_t) * static_cast<size_t>(span * ps)) == 0) {
        k = span;
      } else {
        int64_t i = ps;  // the first page matched through the index
        while (i < span * ps && t[i] == q[i]) ++i;
        k = i / ps;
      }
      const int32_t* pg = Pages(c);
      pages->insert(pages->end(), pg, pg + k);
      pos += k;
      if (k < cn.len) return Walk{cur, c, static_cast<int32_t>(k), pos};
      cur = c;
    }
    return Walk{cur, kNil, 0, pos};
  }

  // Splits `c` after k pages (0 < k < len); returns the new upper node, which takes c's place
  // under its parent, its lock count (every lock below c is below it too) and its LRU slot.
  int32_t Split(int32_t c, int32_t k) {
    const int32_t u = NewNode();  // may reallocate nodes: index from here on
    Node& un = nodes[u];
    Node& cn = nodes[c];
    O1_DCHECK(k > 0 && k < cn.len) << "split of " << cn.len << " pages at " << k;
    un.off = cn.off;
    un.len = k;
    un.parent = cn.parent;
    un.nchild = 1;
    un.ref = cn.ref;
    index.Replace(cn.parent, Key(Tok(c)), c, u);
    cn.off += k;
    cn.len -= k;
    cn.parent = u;
    index.Insert(u, Key(Tok(c)), c);
    if (cn.in_lru) InsertAfter(c, u);
    return u;
  }

  void EnsurePool(int64_t need) {
    if (pool_used + need <= static_cast<int64_t>(page_pool.size())) return;
    if (pool_used - cached >= cached) Compact();
    if (pool_used + need <= static_cast<int64_t>(page_pool.size())) return;
    const int64_t cap =
        std::max<int64_t>({2 * static_cast<int64_t>(page_pool.size()), pool_used + need, 64});
    page_pool.resize(static_cast<size_t>(cap));
    tok_pool.resize(static_cast<size_t>(cap * ps));
  }

  void Compact() {
    int64_t off = 0;
    // Moving spans down in order of their offsets never overwrites a span not yet moved.
    std::vector<std::pair<int64_t, int32_t>> order;
    order.reserve(static_cast<size_t>(live_nodes));
    for (size_t i = 1; i < nodes.size(); ++i)
      if (nodes[i].alive) order.emplace_back(nodes[i].off, static_cast<int32_t>(i));
    std::sort(order.begin(), order.end());
    for (const auto& [old, x] : order) {
      Node& n = nodes[x];
      if (old != off) {
        std::memmove(page_pool.data() + off, page_pool.data() + old,
                     sizeof(int32_t) * static_cast<size_t>(n.len));
        std::memmove(tok_pool.data() + off * ps, tok_pool.data() + old * ps,
                     sizeof(int32_t) * static_cast<size_t>(n.len) * ps);
        n.off = off;
      }
      off += n.len;
    }
    pool_used = off;
  }

  int32_t AddLeaf(int32_t parent, const int32_t* toks, const int32_t* pages, int64_t len) {
    EnsurePool(len);
    const int32_t x = NewNode();
    Node& n = nodes[x];
    n.off = pool_used;
    n.len = static_cast<int32_t>(len);
    n.parent = parent;
    pool_used += len;
    std::memcpy(Tok(x), toks, sizeof(int32_t) * static_cast<size_t>(len * ps));
    std::memcpy(page_pool.data() + n.off, pages, sizeof(int32_t) * static_cast<size_t>(len));
    for (int64_t i = 0; i < len; ++i) alloc.SetTag(pages[i], kCached);
    index.Insert(parent, Key(toks), x);
    ++nodes[parent].nchild;
    cached += len;
    evictable += len;
    return x;
  }

  void EvictOne(int32_t x) {
    Node& n = nodes[x];
    O1_ICHECK(n.alive && n.nchild == 0 && n.ref == 0 && x != kRoot)
        << "LRU head " << x << " is not an unlocked leaf";
    Unlink(x);
    index.Erase(n.parent, Key(Tok(x)), x);
    --nodes[n.parent].nchild;
    const int32_t* pg = Pages(x);
    for (int32_t i = 0; i < n.len; ++i) alloc.Free(pg[i]);
    cached -= n.len;
    evictable -= n.len;
    n.alive = false;
    n.gen = NextGen(n.gen);
    free_nodes.push_back(x);
    --live_nodes;
  }

  int64_t EvictPages(int64_t want) {
    int64_t freed = 0;
    while (freed < want && lru_head != kNil) {
      freed += nodes[lru_head].len;
      EvictOne(lru_head);
    }
    return freed;
  }

  // Copies pages[0..n) into `given` and checks range and uniqueness.
  void TakePages(const int32_t* pages, int64_t n, const char* what) {
    given.assign(pages, pages + n);
    if (++mark_epoch == 0) {  // wrapped: old marks could alias
      std::fill(mark.begin(), mark.end(), 0);
      mark_epoch = 1;
    }
    const int32_t cap = alloc.capacity();
    for (int64_t i = 0; i < n; ++i) {
      const int32_t p = given[static_cast<size_t>(i)];
      O1_CHECK(p >= 0 && p < cap, std::invalid_argument)
          << what << ": page " << p << " (index " << i << ") is outside [0, " << cap << ")";
      O1_CHECK(mark[static_cast<size_t>(p)] != mark_epoch, std::invalid_argument)
          << what << ": page " << p << " appears twice";
      mark[static_cast<size_t>(p)] = mark_epoch;
    }
  }

  static const char* Describe(uint8_t tag) {
    return tag == PageAllocator::kFree ? "free" : tag == kCached ? "cached" : "held";
  }
};

// ---- public API -----------------------------------------------------------------------------

RadixCache::RadixCache(int64_t num_pages, int64_t page_size) {
  O1_CHECK(page_size >= 1 && page_size <= kMaxPageSize, std::invalid_argument)
      << "page_size must be in [1, " << kMaxPageSize << "], got " << page_size;
  impl_ = std::make_unique<Impl>(num_pages, page_size);  // PageAllocator checks num_pages
}

RadixCache::~RadixCache() = default;

int32_t RadixCache::num_pages() const { return impl_->alloc.capacity(); }
int32_t RadixCache::page_size() const { return impl_->ps; }
int64_t RadixCache::root() const { return impl_->Handle(kRoot); }

MatchOutput RadixCache::Match(const int32_t* tokens, int64_t n) {
  Impl& m = *impl_;
  O1_CHECK(n >= 0, std::invalid_argument) << "negative token count " << n;
  MatchOutput out;
  const Impl::Walk w = m.Follow(tokens, n / m.ps, &out.pages);
  int32_t end = w.node;
  if (w.child != kNil) end = m.Split(w.child, w.k);
  m.Touch(end);
  out.length = w.pos * m.ps;
  out.node = m.Handle(end);
  m.hit += out.length;
  m.miss += n - out.length;
  return out;
}

std::vector<int32_t> RadixCache::Alloc(int64_t n) {
  Impl& m = *impl_;
  O1_CHECK(n >= 0, std::invalid_argument) << "alloc: n must be >= 0, got " << n;
  const int64_t free = m.alloc.num_free();
  O1_CHECK(n <= free + m.evictable, OutOfPagesError)
      << "alloc(" << n << "): only " << free << " free and " << m.evictable
      << " evictable pages of " << m.alloc.capacity() << " (the rest are locked or held)";
  if (n > free) m.EvictPages(n - free);
  std::vector<int32_t> out(static_cast<size_t>(n));
  m.alloc.Allocate(n, kHeld, out.data());
  return out;
}

InsertOutput RadixCache::Insert(const int32_t* tokens, int64_t n_tokens, const int32_t* pages,
                                int64_t n_pages) {
  Impl& m = *impl_;
  O1_CHECK(n_tokens >= 0, std::invalid_argument) << "negative token count " << n_tokens;
  const int64_t n = n_tokens / m.ps;
  O1_CHECK(n_pages == n, std::invalid_argument)
      << "insert: " << n_pages << " pages given for " << n << " pages of tokens (page_size "
      << m.ps << ")";
  m.TakePages(pages, n_pages, "insert");
  if (n == 0) return InsertOutput{0, m.Handle(kRoot)};

  // Validate against the cached part of the path before changing anything.
  m.walk_pages.clear();
  const Impl::Walk w = m.Follow(tokens, n, &m.walk_pages);
  const int64_t cached_pages = w.pos;
  m.dropped.clear();
  for (int64_t i = 0; i < n; ++i) {
    const int32_t p = m.given[static_cast<size_t>(i)];
    if (i < cached_pages && m.walk_pages[static_cast<size_t>(i)] == p) continue;
    const uint8_t tag = m.alloc.tag_unchecked(p);
    O1_CHECK(tag == kHeld, std::invalid_argument)
        << "insert: page " << p << " (index " << i << ") is " << Impl::Describe(tag)
        << (tag == kCached ? " at another position" : "") << ", not held by the caller";
    if (i < cached_pages) m.dropped.push_back(p);
  }

  int32_t end = w.node;
  if (w.child != kNil) end = m.Split(w.child, w.k);
  if (cached_pages < n)
    end = m.AddLeaf(end, tokens + cached_pages * m.ps, m.given.data() + cached_pages,
                    n - cached_pages);
  for (int32_t p : m.dropped) m.alloc.Free(p);
  m.Touch(end);
  return InsertOutput{cached_pages * m.ps, m.Handle(end)};
}

void RadixCache::Lock(int64_t node) {
  Impl& m = *impl_;
  int32_t x = m.Resolve(node);
  if (x == kRoot) return;
  O1_CHECK(m.total_locks < std::numeric_limits<int32_t>::max(), std::overflow_error)
      << "too many locks";
  ++m.total_locks;
  ++m.nodes[x].own;
  for (; x != kRoot; x = m.nodes[x].parent) {
    Node& n = m.nodes[x];
    if (n.ref++ == 0) {
      m.Unlink(x);
      m.evictable -= n.len;
    }
  }
}

void RadixCache::Unlock(int64_t node) {
  Impl& m = *impl_;
  int32_t x = m.Resolve(node);
  if (x == kRoot) return;
  O1_CHECK(m.nodes[x].own > 0, std::invalid_argument)
      << "unlock: node " << node << " is not locked";
  --m.total_locks;
  --m.nodes[x].own;
  // Counts reach zero on a bottom segment of the path; those nodes become most recent,
  // deepest first, which keeps every node before its ancestors in the LRU list.
  for (; x != kRoot; x = m.nodes[x].parent) {
    Node& n = m.nodes[x];
    if (--n.ref == 0) {
      m.PushBack(x);
      m.evictable += n.len;
    }
  }
}

AcquireOutput RadixCache::Acquire(const int32_t* tokens, int64_t n) {
  MatchOutput match = Match(tokens, n);
  Lock(match.node);
  AcquireOutput out{match.length, std::move(match.pages), match.node};
  const int64_t need = n / impl_->ps - static_cast<int64_t>(out.pages.size());
  try {
    std::vector<int32_t> fresh = Alloc(need);
    out.pages.insert(out.pages.end(), fresh.begin(), fresh.end());
  } catch (...) {
    Unlock(out.node);
    throw;
  }
  return out;
}

InsertOutput RadixCache::Commit(const int32_t* tokens, int64_t n_tokens, const int32_t* pages,
                                int64_t n_pages, int64_t pin) {
  const int32_t x = impl_->Resolve(pin);
  O1_CHECK(x == kRoot || impl_->nodes[x].own > 0, std::invalid_argument)
      << "commit: pin " << pin << " is not locked";
  InsertOutput out = Insert(tokens, n_tokens, pages, n_pages);
  Lock(out.node);
  Unlock(pin);
  return out;
}

int64_t RadixCache::Evict(int64_t num_pages) {
  O1_CHECK(num_pages >= 0, std::invalid_argument)
      << "evict: num_pages must be >= 0, got " << num_pages;
  return impl_->EvictPages(num_pages);
}

void RadixCache::Free(const int32_t* pages, int64_t n) {
  Impl& m = *impl_;
  O1_CHECK(n >= 0, std::invalid_argument) << "negative page count " << n;
  m.TakePages(pages, n, "free");
  for (int32_t p : m.given) {
    const uint8_t tag = m.alloc.tag_unchecked(p);
    O1_CHECK(tag == kHeld, std::invalid_argument)
        << "free: page " << p << " is " << (tag == kCached ? "cached in the tree" : "already free")
        << ", not held by the caller";
  }
  for (int32_t p : m.given) m.alloc.Free(p);
}

void RadixCache::Reset() {
  Impl& m = *impl_;
  m.free_nodes.clear();
  for (size_t i = m.nodes.size(); i-- > 1;) {
    Node& n = m.nodes[i];
    if (n.alive) n.gen = NextGen(n.gen);
    const uint32_t gen = n.gen;
    n = Node{};
    n.gen = gen;
    m.free_nodes.push_back(static_cast<int32_t>(i));
  }
  Node& root = m.nodes[kRoot];
  const uint32_t gen = NextGen(root.gen);
  root = Node{};
  root.gen = gen;
  root.alive = true;
  m.index.Clear();
  m.pool_used = m.cached = m.evictable = m.live_nodes = m.total_locks = 0;
  m.lru_head = m.lru_tail = kNil;
  m.alloc.Reset();
}

CacheStats RadixCache::Stats() const {
  const Impl& m = *impl_;
  CacheStats s;
  s.capacity = m.alloc.capacity();
  s.free = m.alloc.num_free();
  s.evictable = m.evictable;
  s.locked = s.capacity - s.free - s.evictable;
  s.held = m.alloc.num_used() - m.cached;
  s.hit_tokens = m.hit;
  s.miss_tokens = m.miss;
  s.nodes = m.live_nodes;
  return s;
}

void RadixCache::Check() const {
  const Impl& m = *impl_;
  m.alloc.Check();
  const size_t nn = m.nodes.size();
  const int32_t cap = m.alloc.capacity();
  std::vector<int32_t> nchild(nn, 0);
  std::vector<int64_t> child_refs(nn, 0);
  std::vector<uint8_t> page_seen(static_cast<size_t>(cap), 0);
  std::vector<uint8_t> slot_seen(static_cast<size_t>(m.pool_used), 0);
  int64_t live = 0, cached = 0, evictable = 0, unlocked = 0, locks = 0;
  O1_ICHECK(m.nodes[kRoot].alive && m.nodes[kRoot].parent == kNil && !m.nodes[kRoot].in_lru &&
            m.nodes[kRoot].ref == 0 && m.nodes[kRoot].own == 0)
      << "root corrupt";
  for (size_t i = 1; i < nn; ++i) {
    const Node& n = m.nodes[i];
    const int32_t x = static_cast<int32_t>(i);
    if (!n.alive) {
      O1_ICHECK(!n.in_lru) << "dead node " << i << " in the LRU list";
      continue;
    }
    ++live;
    O1_ICHECK(n.len >= 1 && n.off >= 0 && n.off + n.len <= m.pool_used)
        << "node " << i << " span [" << n.off << ", +" << n.len << ") outside the pool";
    O1_ICHECK(n.parent >= 0 && static_cast<size_t>(n.parent) < nn && n.parent != x &&
              m.nodes[n.parent].alive)
        << "node " << i << " has a bad parent " << n.parent;
    for (int64_t s = n.off; s < n.off + n.len; ++s) {
      O1_ICHECK(!slot_seen[static_cast<size_t>(s)]) << "pool slot " << s << " shared";
      slot_seen[static_cast<size_t>(s)] = 1;
      const int32_t p = m.page_pool[static_cast<size_t>(s)];
      O1_ICHECK(p >= 0 && p < cap) << "node " << i << " holds page " << p;
      O1_ICHECK(!page_seen[static_cast<size_t>(p)]) << "page " << p << " owned twice";
      O1_ICHECK(m.alloc.tag_unchecked(p) == kCached) << "page " << p << " not tagged cached";
      page_seen[static_cast<size_t>(p)] = 1;
    }
    O1_ICHECK(m.FindChild(n.parent, m.Tok(x)) == x)
        << "node " << i << " not found under its parent by its first page";
    O1_ICHECK(n.own >= 0 && n.ref >= n.own) << "node " << i << " lock counts " << n.own << "/"
                                            << n.ref;
    O1_ICHECK(n.in_lru == (n.ref == 0)) << "node " << i << " LRU membership wrong";
    cached += n.len;
    locks += n.own;
    if (n.ref == 0) {
      evictable += n.len;
      ++unlocked;
    }
    ++nchild[static_cast<size_t>(n.parent)];
    child_refs[static_cast<size_t>(n.parent)] += n.ref;
  }
  for (size_t i = 0; i < nn; ++i) {
    const Node& n = m.nodes[i];
    if (!n.alive) continue;
    O1_ICHECK(n.nchild == nchild[i]) << "node " << i << " child count " << n.nchild << " != "
                                     << nchild[i];
    if (i != kRoot)
      O1_ICHECK(n.ref == n.own + child_refs[i])
          << "node " << i << " lock count " << n.ref << " != own " << n.own << " + children "
          << child_refs[i];
  }
  // Parent links reach the root (no cycles): depth by memoized walks.
  std::vector<int32_t> depth(nn, -1);
  depth[kRoot] = 0;
  for (size_t i = 1; i < nn; ++i) {
    if (!m.nodes[i].alive || depth[i] >= 0) continue;
    std::vector<int32_t> chain;
    int32_t x = static_cast<int32_t>(i);
    while (depth[static_cast<size_t>(x)] < 0) {
      O1_ICHECK(static_cast<int64_t>(chain.size()) <= live) << "parent cycle at node " << i;
      chain.push_back(x);
      x = m.nodes[x].parent;
    }
    for (size_t j = chain.size(); j-- > 0;)
      depth[static_cast<size_t>(chain[j])] = depth[static_cast<size_t>(x)] + 1 +
                                             static_cast<int32_t>(chain.size() - 1 - j);
  }
  O1_ICHECK(live == m.live_nodes) << "live nodes " << m.live_nodes << " != " << live;
  O1_ICHECK(static_cast<int64_t>(m.index.size()) == live) << "index holds " << m.index.size()
                                                         << " entries for " << live << " nodes";
  O1_ICHECK(cached == m.cached) << "cached pages " << m.cached << " != " << cached;
  O1_ICHECK(evictable == m.evictable) << "evictable " << m.evictable << " != " << evictable;
  O1_ICHECK(locks == m.total_locks) << "lock total " << m.total_locks << " != " << locks;
  int64_t tagged_cached = 0, held = 0;
  for (int32_t p = 0; p < cap; ++p) {
    const uint8_t t = m.alloc.tag_unchecked(p);
    tagged_cached += (t == kCached);
    held += (t == kHeld);
  }
  O1_ICHECK(tagged_cached == cached) << tagged_cached << " pages tagged cached, " << cached
                                     << " owned by nodes";
  O1_ICHECK(m.alloc.num_free() + cached + held == cap) << "free + cached + held != capacity";
  O1_ICHECK(m.alloc.num_free() + evictable <= cap) << "evictable exceeds used pages";
  // LRU list: exactly the unlocked nodes, each before its (unlocked) ancestors.
  std::vector<int64_t> pos(nn, -1);
  int64_t count = 0;
  int32_t prev = kNil;
  for (int32_t x = m.lru_head; x != kNil; x = m.nodes[x].next) {
    O1_ICHECK(count <= unlocked) << "LRU list longer than the unlocked nodes (cycle?)";
    const Node& n = m.nodes[x];
    O1_ICHECK(x > 0 && static_cast<size_t>(x) < nn && n.alive && n.in_lru && n.ref == 0)
        << "LRU list holds node " << x;
    O1_ICHECK(n.prev == prev) << "LRU back link of " << x << " wrong";
    pos[static_cast<size_t>(x)] = count++;
    prev = x;
  }
  O1_ICHECK(m.lru_tail == prev) << "LRU tail wrong";
  O1_ICHECK(count == unlocked) << "LRU list holds " << count << " of " << unlocked
                               << " unlocked nodes";
  for (size_t i = 1; i < nn; ++i) {
    const Node& n = m.nodes[i];
    if (!n.alive || n.ref != 0 || n.parent == kRoot || m.nodes[n.parent].ref != 0) continue;
    O1_ICHECK(pos[static_cast<size_t>(n.parent)] > pos[i])
        << "node " << i << " after its ancestor " << n.parent << " in the LRU list";
  }
}

}  // namespace o1search
