// SearchTree implementation: structure-of-arrays node store, token arena, incremental "open"
// bookkeeping for selection, and the serialization format. See tree.h for the semantics.
#include "o1search/tree.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "o1search/error.h"

#if defined(_MSC_VER)
#define O1_TREE_NOINLINE __declspec(noinline)
#else
#define O1_TREE_NOINLINE __attribute__((noinline))
#endif

namespace o1search {

namespace {

// Flag bits. kLive/kTerminal/kInFlight are also the on-disk flag bits; kOpen is derived.
constexpr uint8_t kLive = 1;
constexpr uint8_t kTerminal = 2;
constexpr uint8_t kInFlight = 4;
constexpr uint8_t kOpen = 8;
constexpr uint8_t kStoredFlags = kLive | kTerminal | kInFlight;

constexpr int64_t kMaxSlots = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxArena = int64_t{1} << 62;
constexpr double kInf = std::numeric_limits<double>::infinity();

// ---- serialization format (version 1, little-endian) --------------------------------------
//   header : magic[8] "O1STREE\0", u32 version, u32 reserved (0), i64 num_slots,
//            i64 num_tokens, f64 min_value, f64 max_value
//   arrays : i32 parent[S], u8 flags[S], f64 prior[S], i64 visits[S], f64 value_sum[S],
//            f64 reward[S], i32 token_len[S], i32 tokens[T]  (tokens of live nodes, id order)
//   footer : u32 CRC-32 (zlib polynomial) of everything before it
// Derived state (children, depth, virtual-loss counts, open flags) is rebuilt on load.
constexpr char kMagic[8] = {'O', '1', 'S', 'T', 'R', 'E', 'E', '\0'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 48;
constexpr size_t kSlotBytes = 4 + 1 + 8 + 8 + 8 + 8 + 4;

uint32_t Crc32(const unsigned char* p, size_t n) {
  static const auto table = [] {
    std::vector<uint32_t> t(256);
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

class Writer {
 public:
  explicit Writer(size_t reserve) { out_.reserve(reserve); }
  void Bytes(const char* p, size_t n) { out_.append(p, n); }
  void U(uint64_t v, int nbytes) {
    for (int i = 0; i < nbytes; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  }
  void F64(double d) {
    uint64_t bits;
    std::memcpy(&bits, &d, 8);
    U(bits, 8);
  }
  std::string& str() { return out_; }

 private:
  std::string out_;
};

class Reader {
 public:
  Reader(const unsigned char* p, size_t n) : p_(p), n_(n) {}
  uint64_t U(int nbytes) {
    O1_CHECK(pos_ + nbytes <= n_, std::invalid_argument) << "SearchTree.from_bytes: truncated data";
    uint64_t v = 0;
    for (int i = 0; i < nbytes; ++i) v |= static_cast<uint64_t>(p_[pos_ + i]) << (8 * i);
    pos_ += nbytes;
    return v;
  }
  int32_t I32() { return static_cast<int32_t>(static_cast<uint32_t>(U(4))); }
  int64_t I64() { return static_cast<int64_t>(U(8)); }
  double F64() {
    uint64_t bits = U(8);
    double d;
    std::memcpy(&d, &bits, 8);
    return d;
  }
  const unsigned char* Take(size_t n) {
    O1_CHECK(pos_ + n <= n_, std::invalid_argument) << "SearchTree.from_bytes: truncated data";
    const unsigned char* r = p_ + pos_;
    pos_ += n;
    return r;
  }

 private:
  const unsigned char* p_;
  size_t n_;
  size_t pos_ = 0;
};

}  // namespace

struct SearchTree::Impl {
  // Per node (index = id). Links: children form a singly linked list in ascending id order.
  std::vector<int32_t> parent, first_child, last_child, next_sib, depth, num_kids, open_kids, vlc,
      tok_len;
  std::vector<int64_t> tok_off, visits;
  std::vector<double> prior, wsum, reward;
  std::vector<uint8_t> flags;
  std::vector<int32_t> arena;  // token pool; pruned nodes' spans stay as garbage until to_bytes
  int64_t live = 0;
  double lo = kInf, hi = -kInf;  // min / max of backed-up values
  int32_t max_depth = 0, max_kids = 0;  // high-water marks (cost estimates for callers)

  // Scratch buffers reused across calls so the hot paths do not allocate. Inputs are copied
  // here during validation so each caller element is read exactly once.
  std::vector<int32_t> s_ids, s_lens;
  std::vector<double> s_vals;

  int64_t slots() const { return static_cast<int64_t>(flags.size()); }

  // ---- recycling: MCTS makes and drops one tree per problem; reusing the arrays of dropped
  // trees (up to a cap) avoids paying page faults for fresh memory on every new tree, which
  // was more than half the cost of AddChildren in the benchmark workload.
  static constexpr size_t kPoolMaxTrees = 8;
  static constexpr size_t kPoolMaxBytes = size_t{64} << 20;

  struct Pool {
    std::mutex mu;
    std::vector<std::unique_ptr<Impl>> free;
    size_t bytes = 0;
  };
  static Pool& GetPool() {
    static Pool* pool = new Pool();  // leaked on purpose: no destruction-order issues at exit
    return *pool;
  }
  static std::unique_ptr<Impl> Acquire() {
    Pool& pool = GetPool();
    {
      std::lock_guard<std::mutex> g(pool.mu);
      if (!pool.free.empty()) {
        std::unique_ptr<Impl> p = std::move(pool.free.back());
        pool.free.pop_back();
        pool.bytes -= p->CapacityBytes();
        return p;
      }
    }
    return std::make_unique<Impl>();
  }
  static void Release(std::unique_ptr<Impl> p) {
    if (!p) return;
    p->Clear();
    const size_t sz = p->CapacityBytes();
    Pool& pool = GetPool();
    std::lock_guard<std::mutex> g(pool.mu);
    if (pool.free.size() < kPoolMaxTrees && pool.bytes + sz <= kPoolMaxBytes) {
      pool.bytes += sz;
      pool.free.push_back(std::move(p));
    }
    // otherwise p is freed here
  }
  size_t CapacityBytes() const {
    size_t b = arena.capacity() * 4 + flags.capacity();
    for (auto* v : {&parent, &first_child, &last_child, &next_sib, &depth, &num_kids, &open_kids,
                    &vlc, &tok_len})
      b += v->capacity() * 4;
    b += (tok_off.capacity() + visits.capacity() + prior.capacity() + wsum.capacity() +
          reward.capacity()) * 8;
    return b;
  }
  void Clear() {
    for (auto* v : {&parent, &first_child, &last_child, &next_sib, &depth, &num_kids, &open_kids,
                    &vlc, &tok_len, &arena, &s_ids, &s_lens})
      v->clear();
    for (auto* v : {&tok_off, &visits}) v->clear();
    for (auto* v : {&prior, &wsum, &reward, &s_vals}) v->clear();
    flags.clear();
    live = 0;
    max_depth = max_kids = 0;
    lo = kInf;
    hi = -kInf;
  }

  // Grows capacity geometrically (an exact reserve per call would copy every array on every
  // expansion), so appends in AddChildren cannot throw once this returned.
  void Reserve(int64_t need) {
    if (static_cast<int64_t>(flags.capacity()) >= need) return;
    const int64_t n = std::max<int64_t>(need, 2 * static_cast<int64_t>(flags.capacity()));
    for (auto* v : {&parent, &first_child, &last_child, &next_sib, &depth, &num_kids, &open_kids,
                    &vlc, &tok_len})
      v->reserve(n);
    for (auto* v : {&tok_off, &visits}) v->reserve(n);
    for (auto* v : {&prior, &wsum, &reward}) v->reserve(n);
    flags.reserve(n);
  }

  // Grows every per-node array to n entries; new entries get the values of a fresh, unlinked,
  // dead slot (callers set the rest).
  void Resize(int64_t n) {
    for (auto* v : {&parent, &first_child, &last_child, &next_sib}) v->resize(n, -1);
    for (auto* v : {&depth, &num_kids, &open_kids, &vlc, &tok_len}) v->resize(n, 0);
    for (auto* v : {&tok_off, &visits}) v->resize(n, 0);
    for (auto* v : {&prior, &wsum, &reward}) v->resize(n, 0.0);
    flags.resize(n, 0);
  }

  // Appends a node slot with every field at its "fresh" value; caller links it.
  int32_t NewSlot(int32_t par, int32_t dep, int64_t off, int32_t len, double p) {
    const int32_t id = static_cast<int32_t>(flags.size());
    max_depth = std::max(max_depth, dep);
    parent.push_back(par);
    first_child.push_back(-1);
    last_child.push_back(-1);
    next_sib.push_back(-1);
    depth.push_back(dep);
    num_kids.push_back(0);
    open_kids.push_back(0);
    vlc.push_back(0);
    tok_len.push_back(len);
    tok_off.push_back(off);
    visits.push_back(0);
    prior.push_back(p);
    wsum.push_back(0.0);
    reward.push_back(0.0);
    flags.push_back(kLive);
    return id;
  }

  void Link(int32_t p, int32_t c) {
    if (last_child[p] < 0)
      first_child[p] = c;
    else
      next_sib[last_child[p]] = c;
    last_child[p] = c;
    max_kids = std::max(max_kids, ++num_kids[p]);
  }

  // Validates a node id (the common case inline; the throwing path out of line).
  int32_t Live(int64_t id, const char* what) const {
    if (id >= 0 && id < slots() && (flags[id] & kLive))
      return static_cast<int32_t>(id);
    BadId(id, what);
  }
  [[noreturn]] O1_TREE_NOINLINE void BadId(int64_t id, const char* what) const {
    O1_CHECK(id >= 0 && id < slots(), std::out_of_range)
        << what << ": node id " << id << " does not exist (tree has " << slots() << " ids)";
    O1_CHECK(false, StaleHandleError) << what << ": node " << id << " was pruned";
    std::abort();  // unreachable: the check above always throws
  }

  bool CalcOpen(int32_t n) const {
    if (!(flags[n] & kLive)) return false;
    if (first_child[n] < 0) return !(flags[n] & (kTerminal | kInFlight));
    return open_kids[n] > 0;
  }

  // Re-derives n's open flag after one of its inputs changed, and propagates a flip upwards.
  // Stops at the first node whose state does not change, so the cost is the length of the
  // flipped chain, not the depth.
  void UpdateOpen(int32_t n) {
    while (n >= 0) {
      const bool now = CalcOpen(n);
      const bool was = flags[n] & kOpen;
      if (now == was) return;
      flags[n] = now ? (flags[n] | kOpen) : (flags[n] & ~kOpen);
      const int32_t p = parent[n];
      if (p < 0) return;
      open_kids[p] += now ? 1 : -1;
      n = p;
    }
  }

  // Removes one pending selection owned by in-flight node t (flag already cleared by caller).
  void DropPending(int32_t t) {
    for (int32_t x = t; x >= 0; x = parent[x]) --vlc[x];
    UpdateOpen(t);
  }

  void CopyIds(const int32_t* nodes, int64_t n, const char* what) {
    O1_CHECK(n >= 0, std::invalid_argument) << what << ": negative count";
    s_ids.resize(n);
    for (int64_t i = 0; i < n; ++i) s_ids[i] = Live(nodes[i], what);
  }

  void CopyFinite(const double* v, int64_t n, const char* what) {
    s_vals.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      const double x = v[i];
      O1_CHECK(std::isfinite(x), std::invalid_argument)
          << what << ": value at index " << i << " is not finite";
      s_vals[i] = x;
    }
  }
};

SearchTree::SearchTree() : impl_(Impl::Acquire()) {}

SearchTree::SearchTree(const int32_t* root_tokens, int64_t n) : impl_(Impl::Acquire()) {
  O1_CHECK(n >= 0, std::invalid_argument) << "SearchTree: negative root token count";
  O1_CHECK(n <= std::numeric_limits<int32_t>::max(), std::length_error)
      << "SearchTree: root has more than 2^31-1 tokens";
  Impl& t = *impl_;
  t.arena.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    O1_CHECK(root_tokens[i] >= 0, std::invalid_argument)
        << "SearchTree: root token " << root_tokens[i] << " at index " << i << " is negative";
    t.arena[i] = root_tokens[i];
  }
  t.NewSlot(-1, 0, 0, static_cast<int32_t>(n), 1.0);
  t.flags[0] |= kOpen;
  t.live = 1;
}

SearchTree::~SearchTree() { Impl::Release(std::move(impl_)); }

void SearchTree::Swap(SearchTree& other) noexcept { impl_.swap(other.impl_); }

std::vector<int32_t> SearchTree::AddChildren(const int32_t* parents, int64_t num_children,
                                             const int32_t* tokens, int64_t num_tokens,
                                             const int32_t* lengths, const double* priors) {
  const int32_t first = AppendChildren(parents, num_children, tokens, num_tokens, lengths, priors);
  std::vector<int32_t> ids(num_children);
  for (int64_t i = 0; i < num_children; ++i) ids[i] = first + static_cast<int32_t>(i);
  return ids;
}

int32_t SearchTree::AppendChildren(const int32_t* parents, int64_t num_children,
                                   const int32_t* tokens, int64_t num_tokens,
                                   const int32_t* lengths, const double* priors) {
  Impl& t = *impl_;
  const char* what = "add_children";
  O1_CHECK(num_children >= 0 && num_tokens >= 0, std::invalid_argument)
      << what << ": negative sizes";
  O1_CHECK(num_children <= kMaxSlots - t.slots(), std::length_error)
      << what << ": the tree would exceed 2^31-1 node ids";
  // Pass 1: validate and copy the per-child inputs.
  t.s_ids.resize(num_children);
  t.s_lens.resize(num_children);
  t.s_vals.resize(num_children);
  int64_t total = 0;
  for (int64_t i = 0; i < num_children; ++i) {
    const int32_t p = t.Live(parents[i], what);
    O1_CHECK(!(t.flags[p] & kTerminal), std::invalid_argument)
        << what << ": parent " << p << " is terminal";
    const int32_t len = lengths[i];
    O1_CHECK(len >= 0, std::invalid_argument)
        << what << ": length " << len << " at index " << i << " is negative";
    const double pr = priors[i];
    O1_CHECK(std::isfinite(pr) && pr >= 0.0, std::invalid_argument)
        << what << ": prior at index " << i << " must be finite and >= 0, got " << pr;
    t.s_ids[i] = p;
    t.s_lens[i] = len;
    t.s_vals[i] = pr;
    total += len;
  }
  O1_CHECK(total == num_tokens, std::invalid_argument)
      << what << ": lengths sum to " << total << " but " << num_tokens << " tokens were given";
  const int64_t base = static_cast<int64_t>(t.arena.size());
  O1_CHECK(num_tokens <= kMaxArena - base, std::length_error) << what << ": token arena full";
  t.Reserve(t.slots() + num_children);
  // Pass 2: tokens into the arena (one read of the caller's data), then checked there: a
  // copy and an OR over the copy are cheaper than a test per token. Rolled back if invalid.
  t.arena.resize(base + num_tokens);
  int32_t* dst = t.arena.data() + base;
  if (num_tokens > 0) std::memcpy(dst, tokens, static_cast<size_t>(num_tokens) * sizeof(int32_t));
  int32_t any = 0;
  for (int64_t i = 0; i < num_tokens; ++i) any |= dst[i];
  if (any < 0) {
    int64_t bad = 0;
    while (dst[bad] >= 0) ++bad;
    const int32_t tok = dst[bad];
    t.arena.resize(base);
    O1_CHECK(false, std::invalid_argument)
        << what << ": token " << tok << " at index " << bad << " is negative";
  }
  // Pass 3: nodes (no allocation can fail now: capacity reserved above). Grow every array
  // once, then fill by index: cheaper than one push_back per field per child.
  const int32_t first_id = static_cast<int32_t>(t.slots());
  t.Resize(first_id + num_children);
  // Local pointers: a store through uint8_t* (flags) may alias anything, so indexing the
  // vectors directly would reload every data pointer after each flag write.
  int32_t* parent = t.parent.data();
  int32_t* depth = t.depth.data();
  int32_t* first = t.first_child.data();
  int32_t* last = t.last_child.data();
  int32_t* next = t.next_sib.data();
  int32_t* kids = t.num_kids.data();
  int32_t* open_kids = t.open_kids.data();
  int32_t* tok_len = t.tok_len.data();
  int64_t* tok_off = t.tok_off.data();
  double* prior = t.prior.data();
  uint8_t* flags = t.flags.data();
  const int32_t* s_par = t.s_ids.data();
  const int32_t* s_len = t.s_lens.data();
  const double* s_pri = t.s_vals.data();
  int32_t max_depth = t.max_depth, max_kids = t.max_kids;
  int64_t off = base;
  for (int64_t i = 0; i < num_children; ++i) {
    const int32_t p = s_par[i];
    const int32_t id = first_id + static_cast<int32_t>(i);
    parent[id] = p;
    const int32_t d = depth[p] + 1;
    depth[id] = d;
    max_depth = std::max(max_depth, d);
    tok_off[id] = off;
    tok_len[id] = s_len[i];
    prior[id] = s_pri[i];
    flags[id] = kLive | kOpen;  // a new leaf is open
    off += s_len[i];
    // Link at the end of p's child list (ids ascend, so the list stays in id order).
    if (last[p] < 0)
      first[p] = id;
    else
      next[last[p]] = id;
    last[p] = id;
    max_kids = std::max(max_kids, ++kids[p]);
    ++open_kids[p];
    // Siblings usually come in runs with the same parent: one open-flag update per run
    // (after its last child) gives the same state as one per child.
    if (i + 1 == num_children || s_par[i + 1] != p) t.UpdateOpen(p);
  }
  t.max_depth = max_depth;
  t.max_kids = max_kids;
  t.live += num_children;
  return first_id;
}

std::vector<int32_t> SearchTree::Select(int64_t num, const SelectOptions& o) {
  const int64_t cap = std::max<int64_t>(0, std::min(num, impl_->live));
  std::vector<int32_t> out(static_cast<size_t>(cap));
  out.resize(static_cast<size_t>(Select(num, o, out.data(), cap)));
  return out;
}

template <bool kNorm>
static inline int32_t DescendPuct(int32_t n, double c_puct, double vl, double lo, double span,
                                  const int32_t* first, const int32_t* next,
                                  const int64_t* visits, const double* prior, const double* wsum,
                                  const uint8_t* flags, int32_t* vlc) {
  while (first[n] >= 0) {
    const double sq = std::sqrt(std::max(static_cast<double>(visits[n] + vlc[n]), 1.0));
    // The pending selection is added on the way down: the children's scores read only their
    // own counts and sq above already read this one, so this equals adding it afterwards and
    // saves a second walk up the path.
    ++vlc[n];
    int32_t best = -1;
    double best_score = 0.0;
    for (int32_t c = first[n]; c >= 0; c = next[c]) {
      if (!(flags[c] & kOpen)) continue;
      const int32_t v = vlc[c];
      const int64_t ne = visits[c] + v;
      const double ned = static_cast<double>(ne);
      // Same operations, in the same order, as the reference model: identical rounding, so
      // identical picks and tie-breaks.
      const double qn = wsum[c] - vl * v;
      const double un = c_puct * prior[c] * sq;
      double qd, u;
#if defined(__SSE2__)
      // The two divisions bound the loop's throughput; one packed division computes both
      // (each lane is an ordinary IEEE division, so the results are bit-identical).
      const __m128d r = _mm_div_pd(_mm_set_pd(un, qn), _mm_set_pd(1.0 + ned, ned));
      qd = _mm_cvtsd_f64(r);
      u = _mm_cvtsd_f64(_mm_unpackhi_pd(r, r));
#else
      qd = qn / ned;
      u = un / (1.0 + ned);
#endif
      double q = 0.0;  // qd is NaN / inf when ne == 0, and unused then
      if (ne > 0) {
        q = qd;
        if (kNorm) q = (q - lo) / span;
      }
      const double s = q + u;
      if (best < 0 || s > best_score) {
        best = c;
        best_score = s;
      }
    }
    O1_ICHECK(best >= 0) << "open node " << n << " has no open child";
    n = best;
  }
  ++vlc[n];
  return n;
}

int64_t SearchTree::Select(int64_t num, const SelectOptions& o, int32_t* out, int64_t capacity) {
  Impl& t = *impl_;
  O1_CHECK(num >= 0, std::invalid_argument) << "select: num must be >= 0, got " << num;
  O1_CHECK(std::isfinite(o.c_puct) && o.c_puct >= 0, std::invalid_argument)
      << "select: c_puct must be finite and >= 0, got " << o.c_puct;
  O1_CHECK(std::isfinite(o.virtual_loss) && o.virtual_loss >= 0, std::invalid_argument)
      << "select: virtual_loss must be finite and >= 0, got " << o.virtual_loss;
  const bool norm = o.min_max && t.hi > t.lo;
  const double lo = t.lo, span = t.hi - t.lo;
  const double c_puct = o.c_puct, vl = o.virtual_loss;
  // Raw pointers: the vectors do not change size inside the loop.
  const int32_t* first = t.first_child.data();
  const int32_t* next = t.next_sib.data();
  const int64_t* visits = t.visits.data();
  const double* prior = t.prior.data();
  const double* wsum = t.wsum.data();
  const uint8_t* flags = t.flags.data();
  int32_t* vlc = t.vlc.data();
  const int64_t limit = std::min(num, std::max<int64_t>(capacity, 0));
  int64_t k = 0;
  for (; k < limit && (flags[0] & kOpen); ++k) {
    const int32_t n =
        norm ? DescendPuct<true>(0, c_puct, vl, lo, span, first, next, visits, prior, wsum, flags, vlc)
             : DescendPuct<false>(0, c_puct, vl, lo, span, first, next, visits, prior, wsum, flags,
                                  vlc);
    t.flags[n] |= kInFlight;
    t.UpdateOpen(n);
    out[k] = n;
  }
  return k;
}

void SearchTree::Backup(const int32_t* nodes, const double* values, int64_t n) {
  Impl& t = *impl_;
  t.CopyIds(nodes, n, "backup");
  t.CopyFinite(values, n, "backup");
  const int32_t* ids = t.s_ids.data();
  const double* vals = t.s_vals.data();
  const int32_t* par = t.parent.data();
  int64_t* visits = t.visits.data();
  double* wsum = t.wsum.data();
  int32_t* vlc = t.vlc.data();
  uint8_t* flags = t.flags.data();
  // Entries come in runs of siblings (every new child of an expanded leaf is backed up), and
  // siblings share the whole path above their parent. A run is walked once, node by node,
  // applying the entries in order at each node: each node sees the same operations in the
  // same order as with one walk per entry (same sums bit for bit, same in-flight owner found
  // by each entry), at a fraction of the pointer chasing.
  constexpr int64_t kMaxRun = 64;
  int32_t owner[kMaxRun];
  for (int64_t i = 0; i < n;) {
    const int32_t p = par[ids[i]];
    int64_t j = i + 1;
    if (p >= 0)
      while (j < n && j - i < kMaxRun && par[ids[j]] == p) ++j;
    const int64_t r = j - i;
    // The entries' own nodes (distinct or repeated), in entry order.
    for (int64_t e = 0; e < r; ++e) {
      const int32_t x = ids[i + e];
      const double v = vals[i + e];
      ++visits[x];
      wsum[x] += v;
      owner[e] = -1;
      if (flags[x] & kInFlight) {
        flags[x] &= static_cast<uint8_t>(~kInFlight);
        owner[e] = x;
        --vlc[x];
      }
      t.lo = std::min(t.lo, v);
      t.hi = std::max(t.hi, v);
    }
    // The shared path from the parent to the root.
    for (int32_t x = p; x >= 0; x = par[x]) {
      double w = wsum[x];
      int32_t dec = 0;
      for (int64_t e = 0; e < r; ++e) {
        w += vals[i + e];
        if (owner[e] >= 0) {
          ++dec;
        } else if (flags[x] & kInFlight) {
          flags[x] &= static_cast<uint8_t>(~kInFlight);
          owner[e] = x;
          ++dec;
        }
      }
      wsum[x] = w;
      visits[x] += r;
      vlc[x] -= dec;
    }
    // Open flags last: they depend only on the flags and structure, and nothing above
    // reads them.
    for (int64_t e = 0; e < r; ++e)
      if (owner[e] >= 0) t.UpdateOpen(owner[e]);
    i = j;
  }
}

void SearchTree::RevertVirtualLoss(const int32_t* nodes, int64_t n) {
  Impl& t = *impl_;
  t.CopyIds(nodes, n, "revert_virtual_loss");
  // Find each entry's owner in order, clearing flags as we go so that a repeated entry finds
  // the next pending selection up the path; restore everything if one finds none.
  std::vector<int32_t> owners;
  owners.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    int32_t x = t.s_ids[i];
    while (x >= 0 && !(t.flags[x] & kInFlight)) x = t.parent[x];
    if (x < 0) {
      for (int32_t o : owners) t.flags[o] |= kInFlight;
      O1_CHECK(false, std::invalid_argument)
          << "revert_virtual_loss: node " << t.s_ids[i]
          << " has no pending selection on its path";
    }
    t.flags[x] &= ~kInFlight;
    owners.push_back(x);
  }
  for (int32_t o : owners) t.DropPending(o);
}

void SearchTree::SetTerminal(const int32_t* nodes, const double* rewards, int64_t n) {
  Impl& t = *impl_;
  t.CopyIds(nodes, n, "set_terminal");
  t.CopyFinite(rewards, n, "set_terminal");
  for (int64_t i = 0; i < n; ++i)
    O1_CHECK(t.first_child[t.s_ids[i]] < 0, std::invalid_argument)
        << "set_terminal: node " << t.s_ids[i] << " has children";
  for (int64_t i = 0; i < n; ++i) {
    const int32_t x = t.s_ids[i];
    t.flags[x] |= kTerminal;
    t.reward[x] = t.s_vals[i];
    t.UpdateOpen(x);
  }
}

void SearchTree::Prune(int32_t node) {
  Impl& t = *impl_;
  const int32_t x = t.Live(node, "prune");
  O1_CHECK(x != kRoot, std::invalid_argument) << "prune: the root cannot be pruned";
  const int32_t p = t.parent[x];
  // Pending selections inside the subtree can never be backed up now: take them off the
  // ancestors (vlc[x] counts exactly those).
  const int32_t pending = t.vlc[x];
  for (int32_t a = p; a >= 0; a = t.parent[a]) t.vlc[a] -= pending;
  // Unlink x from its parent's child list.
  int32_t prev = -1;
  for (int32_t c = t.first_child[p]; c != x; c = t.next_sib[c]) prev = c;
  const int32_t nx = t.next_sib[x];
  if (prev < 0)
    t.first_child[p] = nx;
  else
    t.next_sib[prev] = nx;
  if (t.last_child[p] == x) t.last_child[p] = prev;
  --t.num_kids[p];
  if (t.flags[x] & kOpen) --t.open_kids[p];
  // Kill the subtree (iterative DFS; scratch stack).
  auto& stack = t.s_ids;
  stack.clear();
  stack.push_back(x);
  int64_t killed = 0;
  while (!stack.empty()) {
    const int32_t y = stack.back();
    stack.pop_back();
    for (int32_t c = t.first_child[y]; c >= 0; c = t.next_sib[c]) stack.push_back(c);
    t.flags[y] = 0;
    t.parent[y] = -1;
    t.first_child[y] = t.last_child[y] = t.next_sib[y] = -1;
    t.num_kids[y] = t.open_kids[y] = t.vlc[y] = 0;
    t.visits[y] = 0;
    t.wsum[y] = t.reward[y] = t.prior[y] = 0.0;
    t.tok_len[y] = 0;
    t.tok_off[y] = 0;
    ++killed;
  }
  t.live -= killed;
  t.UpdateOpen(p);
}

std::vector<int32_t> SearchTree::PathTokens(int32_t node) const {
  const Impl& t = *impl_;
  const int32_t x = t.Live(node, "path_tokens");
  int64_t total = 0;
  for (int32_t a = x; a >= 0; a = t.parent[a]) total += t.tok_len[a];
  std::vector<int32_t> out(total);
  int64_t end = total;
  for (int32_t a = x; a >= 0; a = t.parent[a]) {
    end -= t.tok_len[a];
    std::copy_n(t.arena.begin() + t.tok_off[a], t.tok_len[a], out.begin() + end);
  }
  return out;
}

std::vector<int32_t> SearchTree::StepTokens(int32_t node) const {
  const Impl& t = *impl_;
  const int32_t x = t.Live(node, "step_tokens");
  return std::vector<int32_t>(t.arena.begin() + t.tok_off[x],
                              t.arena.begin() + t.tok_off[x] + t.tok_len[x]);
}

int32_t SearchTree::Parent(int32_t node) const { return impl_->parent[impl_->Live(node, "parent")]; }

std::vector<int32_t> SearchTree::Children(int32_t node) const {
  const Impl& t = *impl_;
  const int32_t x = t.Live(node, "children");
  std::vector<int32_t> out;
  out.reserve(t.num_kids[x]);
  for (int32_t c = t.first_child[x]; c >= 0; c = t.next_sib[c]) out.push_back(c);
  return out;
}

int32_t SearchTree::NumChildren(int32_t node) const {
  return impl_->num_kids[impl_->Live(node, "num_children")];
}
int32_t SearchTree::Depth(int32_t node) const { return impl_->depth[impl_->Live(node, "depth")]; }
void SearchTree::Depths(const int32_t* nodes, int64_t n, int32_t* out) const {
  const Impl& t = *impl_;
  O1_CHECK(n >= 0, std::invalid_argument) << "depth: negative count";
  // One pass, each id read once (the caller's array may change under a released GIL).
  for (int64_t i = 0; i < n; ++i) out[i] = t.depth[t.Live(nodes[i], "depth")];
}
int64_t SearchTree::Visits(int32_t node) const {
  return impl_->visits[impl_->Live(node, "visits")];
}
double SearchTree::Value(int32_t node) const {
  const Impl& t = *impl_;
  const int32_t x = t.Live(node, "value");
  return t.visits[x] > 0 ? t.wsum[x] / static_cast<double>(t.visits[x]) : 0.0;
}
double SearchTree::ValueSum(int32_t node) const {
  return impl_->wsum[impl_->Live(node, "value_sum")];
}
double SearchTree::Prior(int32_t node) const { return impl_->prior[impl_->Live(node, "prior")]; }
bool SearchTree::IsTerminal(int32_t node) const {
  return impl_->flags[impl_->Live(node, "is_terminal")] & kTerminal;
}
double SearchTree::Reward(int32_t node) const {
  return impl_->reward[impl_->Live(node, "reward")];
}
bool SearchTree::InFlight(int32_t node) const {
  return impl_->flags[impl_->Live(node, "in_flight")] & kInFlight;
}
int32_t SearchTree::VirtualLossCount(int32_t node) const {
  return impl_->vlc[impl_->Live(node, "virtual_loss_count")];
}

int32_t SearchTree::BestChild(int32_t node, BestBy by) const {
  const Impl& t = *impl_;
  const int32_t x = t.Live(node, "best_child");
  O1_CHECK(t.first_child[x] >= 0, std::invalid_argument)
      << "best_child: node " << x << " has no children";
  int32_t best = -1;
  double best_key = 0.0;
  for (int32_t c = t.first_child[x]; c >= 0; c = t.next_sib[c]) {
    double key;
    if (by == BestBy::kVisits)
      key = static_cast<double>(t.visits[c]);
    else
      key = t.visits[c] > 0 ? t.wsum[c] / static_cast<double>(t.visits[c]) : 0.0;
    if (best < 0 || key > best_key) {
      best = c;
      best_key = key;
    }
  }
  return best;
}

std::vector<int32_t> SearchTree::Leaves() const {
  const Impl& t = *impl_;
  std::vector<int32_t> out;
  for (int64_t i = 0; i < t.slots(); ++i)
    if ((t.flags[i] & kLive) && t.first_child[i] < 0) out.push_back(static_cast<int32_t>(i));
  return out;
}

int64_t SearchTree::NumNodes() const { return impl_->live; }
int64_t SearchTree::NumSlots() const { return impl_->slots(); }
bool SearchTree::Contains(int64_t id) const {
  return id >= 0 && id < impl_->slots() && (impl_->flags[id] & kLive);
}
double SearchTree::MinValue() const { return impl_->lo; }
int32_t SearchTree::MaxDepthBound() const { return impl_->max_depth; }
int32_t SearchTree::MaxChildrenBound() const { return impl_->max_kids; }
double SearchTree::MaxValue() const { return impl_->hi; }

void SearchTree::Check() const {
  const Impl& t = *impl_;
  const int64_t n = t.slots();
  O1_ICHECK(n >= 1 && (t.flags[0] & kLive) && t.parent[0] == -1 && t.depth[0] == 0)
      << "bad root";
  for (auto sz : {t.parent.size(), t.first_child.size(), t.last_child.size(), t.next_sib.size(),
                  t.depth.size(), t.num_kids.size(), t.open_kids.size(), t.vlc.size(),
                  t.tok_len.size(), t.tok_off.size(), t.visits.size(), t.prior.size(),
                  t.wsum.size(), t.reward.size()})
    O1_ICHECK(static_cast<int64_t>(sz) == n) << "array size mismatch";
  O1_ICHECK((t.lo == kInf && t.hi == -kInf) || (std::isfinite(t.lo) && std::isfinite(t.hi) &&
                                                 t.lo <= t.hi))
      << "bad min/max " << t.lo << " " << t.hi;
  // Bottom-up sums (children have larger ids than parents).
  std::vector<int64_t> kid_visits(n, 0);
  std::vector<int32_t> inflight_below(n, 0), open_count(n, 0), kid_count(n, 0);
  std::vector<uint8_t> open(n, 0);
  int64_t live = 0;
  for (int64_t i = n - 1; i >= 0; --i) {
    const uint8_t f = t.flags[i];
    if (!(f & kLive)) {
      O1_ICHECK(f == 0) << "dead node " << i << " has flags " << int(f);
      continue;
    }
    ++live;
    const int32_t p = t.parent[i];
    if (i > 0) {
      O1_ICHECK(p >= 0 && p < i && (t.flags[p] & kLive)) << "node " << i << " bad parent " << p;
      O1_ICHECK(t.depth[i] == t.depth[p] + 1) << "node " << i << " bad depth";
      O1_ICHECK(std::isfinite(t.prior[i]) && t.prior[i] >= 0) << "node " << i << " bad prior";
    }
    O1_ICHECK(t.visits[i] >= 0 && t.visits[i] >= kid_visits[i]) << "node " << i << " visits";
    O1_ICHECK(!std::isnan(t.wsum[i]) && (t.visits[i] > 0 || t.wsum[i] == 0.0))
        << "node " << i << " value sum";
    O1_ICHECK(std::isfinite(t.reward[i]) && ((f & kTerminal) || t.reward[i] == 0.0))
        << "node " << i << " reward";
    O1_ICHECK(t.tok_len[i] >= 0 && t.tok_off[i] >= 0 &&
              t.tok_off[i] + t.tok_len[i] <= static_cast<int64_t>(t.arena.size()))
        << "node " << i << " token span out of bounds";
    // Child list: ascending ids, parent pointers back, count, last pointer.
    int32_t cnt = 0, prev = -1;
    for (int32_t c = t.first_child[i]; c >= 0; c = t.next_sib[c]) {
      O1_ICHECK(c > prev && c < n && (t.flags[c] & kLive) && t.parent[c] == i)
          << "node " << i << " bad child " << c;
      prev = c;
      ++cnt;
    }
    O1_ICHECK(cnt == t.num_kids[i] && cnt == kid_count[i] && t.last_child[i] == prev)
        << "node " << i << " child list";
    O1_ICHECK(!(f & kTerminal) || cnt == 0) << "terminal node " << i << " has children";
    const int32_t vl_expect = inflight_below[i] + ((f & kInFlight) ? 1 : 0);
    O1_ICHECK(t.vlc[i] == vl_expect) << "node " << i << " virtual-loss count " << t.vlc[i]
                                     << " != " << vl_expect;
    O1_ICHECK(t.open_kids[i] == open_count[i]) << "node " << i << " open-children count";
    const bool o = cnt == 0 ? !(f & (kTerminal | kInFlight)) : open_count[i] > 0;
    O1_ICHECK(o == static_cast<bool>(f & kOpen)) << "node " << i << " open flag";
    if (p >= 0) {
      kid_visits[p] += t.visits[i];
      inflight_below[p] += vl_expect;
      open_count[p] += o ? 1 : 0;
      ++kid_count[p];
    }
  }
  O1_ICHECK(live == t.live) << "live count " << t.live << " != " << live;
}

std::string SearchTree::ToBytes() const {
  const Impl& t = *impl_;
  const int64_t n = t.slots();
  int64_t total = 0;
  for (int64_t i = 0; i < n; ++i)
    if (t.flags[i] & kLive) total += t.tok_len[i];
  Writer w(kHeaderBytes + kSlotBytes * n + 4 * total + 4);
  w.Bytes(kMagic, 8);
  w.U(kVersion, 4);
  w.U(0, 4);
  w.U(static_cast<uint64_t>(n), 8);
  w.U(static_cast<uint64_t>(total), 8);
  w.F64(t.lo);
  w.F64(t.hi);
  auto live = [&](int64_t i) { return static_cast<bool>(t.flags[i] & kLive); };
  for (int64_t i = 0; i < n; ++i) w.U(static_cast<uint32_t>(live(i) ? t.parent[i] : -1), 4);
  for (int64_t i = 0; i < n; ++i) w.U(t.flags[i] & kStoredFlags, 1);
  for (int64_t i = 0; i < n; ++i) w.F64(live(i) ? t.prior[i] : 0.0);
  for (int64_t i = 0; i < n; ++i) w.U(static_cast<uint64_t>(live(i) ? t.visits[i] : 0), 8);
  for (int64_t i = 0; i < n; ++i) w.F64(live(i) ? t.wsum[i] : 0.0);
  for (int64_t i = 0; i < n; ++i) w.F64(live(i) ? t.reward[i] : 0.0);
  for (int64_t i = 0; i < n; ++i) w.U(static_cast<uint32_t>(live(i) ? t.tok_len[i] : 0), 4);
  for (int64_t i = 0; i < n; ++i) {
    if (!live(i)) continue;
    const int32_t* p = t.arena.data() + t.tok_off[i];
    for (int32_t k = 0; k < t.tok_len[i]; ++k) w.U(static_cast<uint32_t>(p[k]), 4);
  }
  std::string& s = w.str();
  const uint32_t crc = Crc32(reinterpret_cast<const unsigned char*>(s.data()), s.size());
  w.U(crc, 4);
  return std::move(s);
}

std::unique_ptr<SearchTree> SearchTree::FromBytes(const void* data, size_t size) {
  const char* E = "SearchTree.from_bytes: ";
  O1_CHECK(data != nullptr || size == 0, std::invalid_argument) << E << "null data";
  const auto* bytes = static_cast<const unsigned char*>(data);
  O1_CHECK(size >= kHeaderBytes + 4, std::invalid_argument)
      << E << "data too short (" << size << " bytes)";
  O1_CHECK(std::memcmp(bytes, kMagic, 8) == 0, std::invalid_argument)
      << E << "not a SearchTree serialization (bad magic)";
  Reader r(bytes, size);
  r.Take(8);
  const uint32_t version = static_cast<uint32_t>(r.U(4));
  O1_CHECK(version == kVersion, std::invalid_argument)
      << E << "unsupported format version " << version << " (this build reads " << kVersion
      << ")";
  O1_CHECK(r.U(4) == 0, std::invalid_argument) << E << "reserved header field is not 0";
  const int64_t n = r.I64();
  const int64_t ntok = r.I64();
  const double lo = r.F64(), hi = r.F64();
  O1_CHECK(n >= 1 && n <= kMaxSlots, std::invalid_argument) << E << "bad node count " << n;
  const uint64_t fixed = kHeaderBytes + kSlotBytes * static_cast<uint64_t>(n) + 4;
  O1_CHECK(fixed <= size && ntok >= 0 && static_cast<uint64_t>(ntok) <= (size - fixed) / 4 &&
               fixed + 4 * static_cast<uint64_t>(ntok) == size,
           std::invalid_argument)
      << E << "size " << size << " does not match the header (" << n << " nodes, " << ntok
      << " tokens)";
  uint32_t stored_crc = 0;
  for (int i = 0; i < 4; ++i) stored_crc |= static_cast<uint32_t>(bytes[size - 4 + i]) << (8 * i);
  O1_CHECK(Crc32(bytes, size - 4) == stored_crc, std::invalid_argument)
      << E << "checksum mismatch (corrupted data)";
  O1_CHECK((lo == kInf && hi == -kInf) || (std::isfinite(lo) && std::isfinite(hi) && lo <= hi),
           std::invalid_argument)
      << E << "bad min/max statistics";

  std::unique_ptr<SearchTree> tree(new SearchTree());
  Impl& t = *tree->impl_;
  t.lo = lo;
  t.hi = hi;
  std::vector<int32_t> par(n), lens(n);
  std::vector<uint8_t> fl(n);
  std::vector<double> pri(n), ws(n), rw(n);
  std::vector<int64_t> vis(n);
  for (int64_t i = 0; i < n; ++i) par[i] = r.I32();
  for (int64_t i = 0; i < n; ++i) fl[i] = static_cast<uint8_t>(r.U(1));
  for (int64_t i = 0; i < n; ++i) pri[i] = r.F64();
  for (int64_t i = 0; i < n; ++i) vis[i] = r.I64();
  for (int64_t i = 0; i < n; ++i) ws[i] = r.F64();
  for (int64_t i = 0; i < n; ++i) rw[i] = r.F64();
  for (int64_t i = 0; i < n; ++i) lens[i] = r.I32();
  t.Reserve(n);
  t.arena.resize(ntok);
  int64_t off = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t f = fl[i];
    O1_CHECK((f & ~kStoredFlags) == 0, std::invalid_argument) << E << "node " << i << " bad flags";
    if (!(f & kLive)) {
      O1_CHECK(i > 0, std::invalid_argument) << E << "the root is missing";
      O1_CHECK(f == 0 && par[i] == -1 && pri[i] == 0.0 && vis[i] == 0 && ws[i] == 0.0 &&
                   rw[i] == 0.0 && lens[i] == 0,
               std::invalid_argument)
          << E << "pruned slot " << i << " has data";
      t.NewSlot(-1, 0, 0, 0, 0.0);
      t.flags[i] = 0;
      continue;
    }
    const int32_t p = par[i];
    if (i == 0) {
      O1_CHECK(p == -1, std::invalid_argument) << E << "root has a parent";
    } else {
      O1_CHECK(p >= 0 && p < i && (t.flags[p] & kLive) && !(t.flags[p] & kTerminal),
               std::invalid_argument)
          << E << "node " << i << " has an invalid parent " << p;
    }
    O1_CHECK(std::isfinite(pri[i]) && pri[i] >= 0.0, std::invalid_argument)
        << E << "node " << i << " has an invalid prior";
    O1_CHECK(vis[i] >= 0 && !std::isnan(ws[i]) && (vis[i] > 0 || ws[i] == 0.0),
             std::invalid_argument)
        << E << "node " << i << " has invalid statistics";
    O1_CHECK(std::isfinite(rw[i]) && ((f & kTerminal) || rw[i] == 0.0), std::invalid_argument)
        << E << "node " << i << " has an invalid reward";
    O1_CHECK(lens[i] >= 0 && lens[i] <= ntok - off, std::invalid_argument)
        << E << "node " << i << " has an invalid token count";
    t.NewSlot(p, p >= 0 ? t.depth[p] + 1 : 0, off, lens[i], pri[i]);
    t.flags[i] = f;
    t.visits[i] = vis[i];
    t.wsum[i] = ws[i];
    t.reward[i] = rw[i];
    off += lens[i];
    if (p >= 0) t.Link(p, static_cast<int32_t>(i));
    ++t.live;
  }
  O1_CHECK(off == ntok, std::invalid_argument) << E << "token counts do not add up";
  for (int64_t i = 0; i < ntok; ++i) {
    t.arena[i] = r.I32();
    O1_CHECK(t.arena[i] >= 0, std::invalid_argument) << E << "negative token id";
  }
  // Derived state, bottom-up: virtual-loss counts, child visit sums, open flags and counts.
  std::vector<int64_t> kid_visits(n, 0);
  for (int64_t i = n - 1; i >= 0; --i) {
    if (!(t.flags[i] & kLive)) continue;
    O1_CHECK(!(t.flags[i] & kTerminal) || t.num_kids[i] == 0, std::invalid_argument)
        << E << "terminal node " << i << " has children";
    O1_CHECK(t.visits[i] >= kid_visits[i], std::invalid_argument)
        << E << "node " << i << " has fewer visits than its children";
    if (t.flags[i] & kInFlight) ++t.vlc[i];
    const bool open = t.CalcOpen(static_cast<int32_t>(i));
    if (open) t.flags[i] |= kOpen;
    const int32_t p = t.parent[i];
    if (p >= 0) {
      t.vlc[p] += t.vlc[i];
      kid_visits[p] += t.visits[i];
      if (open) ++t.open_kids[p];
    }
  }
  tree->Check();
  return tree;
}

}  // namespace o1search
