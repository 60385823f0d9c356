// o1search — SearchTree: the search tree over reasoning steps.
//
// Storage is a structure of arrays indexed by 32-bit node ids. Node 0 is the root. Ids are
// handed out in increasing order and never reused, so a child's id is always greater than its
// parent's and the children of a node, kept in creation order, are also in ascending id order.
// Each node owns a span (offset, length) of one contiguous int32 token arena: the root's span
// is the prompt, every other node's span is its step.
//
// Statistics per node: visit count N, value sum W (the mean W/N is the node's value), prior P,
// terminal flag and reward, the number of pending selections through it (virtual-loss count
// V) and whether it is "in flight" (a leaf handed out by Select and not yet backed up or
// reverted).
//
// Selection (PUCT). From the root, while the node has children, descend into the *open* child
// (see below) with the highest score; ties go to the lowest id:
//
//     Ne(x)    = N(x) + V(x)                                   effective visits
//     Q(c)     = (W(c) - virtual_loss * V(c)) / Ne(c)          if Ne(c) > 0, else 0
//     Q(c)     = (Q(c) - lo) / (hi - lo)                        if min_max, Ne(c) > 0, hi > lo
//     U(c)     = c_puct * P(c) * sqrt(max(Ne(parent), 1)) / (1 + Ne(c))
//     score(c) = Q(c) + U(c)
//
// lo / hi are the smallest and largest values ever passed to Backup (MuZero-style min-max
// normalization). The max(…, 1) lets priors order the children of a node never visited yet.
// Each selected leaf gets V += 1 on every node of its path (root and leaf included) and is
// marked in flight, so later picks in the same batch see the pending loss and spread out.
//
// A node is *open* when it is a leaf that is neither terminal nor in flight, or when any of its
// children is open. Open flags and per-node counts of open children are maintained
// incrementally, so Select skips exhausted subtrees without scanning them.
//
// Thread safety: none; callers serialize access (the Python binding holds a mutex per tree).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace o1search {

/// Tunables of SearchTree::Select.
struct SelectOptions {
  double c_puct = 1.25;       ///< exploration weight, finite and >= 0
  double virtual_loss = 1.0;  ///< value subtracted per pending selection, finite and >= 0
  bool min_max = false;       ///< normalize Q by the min/max of backed-up values
};

/// What SearchTree::BestChild maximizes.
enum class BestBy { kVisits, kValue };

/// "visits" -> kVisits, "value" -> kValue. Throws std::invalid_argument for any other name
/// ("best_child: by must be 'visits' or 'value', got '<name>'").
BestBy ParseBestBy(const std::string& name);

/// One live node as plain data: what SearchTree::Records returns (and the Python `to_dict`
/// shows), for viewers and exports.
struct NodeRecord {
  int32_t id = 0;
  int32_t parent = -1;
  int32_t depth = 0;
  std::vector<int32_t> tokens;    ///< the tokens the node owns (its step; the prompt for the root)
  std::vector<int32_t> children;  ///< ascending ids
  double prior = 0.0;
  double value = 0.0;   ///< mean backed-up value W/N (0 when unvisited)
  double reward = 0.0;  ///< terminal reward (0 for non-terminal nodes)
  int64_t visits = 0;
  bool terminal = false;
};

class SearchTree {
 public:
  static constexpr int32_t kRoot = 0;
  /// Largest token id accepted anywhere (token ids are in [0, kMaxToken]).
  static constexpr int32_t kMaxToken = 2147483647;

  /// Creates a tree holding only the root, which owns `root_tokens[0, n)` (may be empty).
  /// Throws std::invalid_argument for n < 0 or a negative token id.
  SearchTree(const int32_t* root_tokens, int64_t n);
  ~SearchTree();
  SearchTree(const SearchTree&) = delete;
  SearchTree& operator=(const SearchTree&) = delete;
  SearchTree(SearchTree&&) = delete;
  SearchTree& operator=(SearchTree&&) = delete;

  /// Exchanges the whole contents of two trees (O(1)).
  void Swap(SearchTree& other) noexcept;

  // ---- mutation ------------------------------------------------------------------------

  /// Adds `num_children` children: child i hangs under parents[i], owns the next lengths[i]
  /// tokens of `tokens` (consumed in order; sum(lengths) must equal num_tokens) and has prior
  /// priors[i]. Zero-length steps are allowed. Every input element is read once and
  /// everything is validated before the tree changes (on error nothing changes).
  /// Returns the new ids, in input order (ascending).
  /// Throws std::out_of_range for an unknown parent id, StaleHandleError for a pruned one,
  /// std::invalid_argument for a terminal parent, a negative length, mismatched token count,
  /// a negative token id, a non-finite or negative prior; std::length_error when the tree
  /// would exceed 2^31-1 nodes or the arena 2^62 tokens.
  std::vector<int32_t> AddChildren(const int32_t* parents, int64_t num_children,
                                   const int32_t* tokens, int64_t num_tokens,
                                   const int32_t* lengths, const double* priors);
  /// AddChildren without the id vector: the new ids are the contiguous range
  /// [returned value, returned value + num_children). Same checks and effects.
  int32_t AppendChildren(const int32_t* parents, int64_t num_children, const int32_t* tokens,
                         int64_t num_tokens, const int32_t* lengths, const double* priors);

  /// Selects up to `num` distinct open leaves by PUCT (see the file comment), applying a
  /// virtual loss along each path and marking each leaf in flight. Returns fewer (possibly
  /// none) when fewer open leaves exist. Throws std::invalid_argument for num < 0 or a
  /// negative / non-finite c_puct or virtual_loss.
  std::vector<int32_t> Select(int64_t num, const SelectOptions& opts);
  /// Select writing at most `capacity` ids into `out` (selects up to min(num, capacity)
  /// leaves; capacity >= min(num, NumNodes()) never cuts a selection short); returns how many
  /// were written. Same checks and effects otherwise.
  int64_t Select(int64_t num, const SelectOptions& opts, int32_t* out, int64_t capacity);

  /// For each i in order: adds one visit and values[i] to nodes[i] and every ancestor, and
  /// removes the pending selection of the nearest in-flight node on that path (nodes[i]
  /// itself or an ancestor), if any, clearing its in-flight flag. Updates the min/max value
  /// statistics. Throws (before changing anything) std::out_of_range / StaleHandleError for
  /// bad ids, std::invalid_argument for a non-finite value.
  void Backup(const int32_t* nodes, const double* values, int64_t n);

  /// For each i in order: cancels the pending selection of the nearest in-flight node on the
  /// path of nodes[i] (itself or an ancestor) without adding statistics. Throws
  /// std::invalid_argument (before changing anything) when some entry finds no pending
  /// selection; std::out_of_range / StaleHandleError for bad ids.
  void RevertVirtualLoss(const int32_t* nodes, int64_t n);

  /// Marks nodes[i] terminal with reward rewards[i] (a node marked twice keeps the last
  /// reward). Terminal nodes are never selected and cannot get children. Throws
  /// std::invalid_argument (before changing anything) for a node with children or a
  /// non-finite reward; std::out_of_range / StaleHandleError for bad ids.
  void SetTerminal(const int32_t* nodes, const double* rewards, int64_t n);

  /// Removes `node` and its subtree. Their ids become stale (never reused). Pending
  /// selections inside the subtree are cancelled on the ancestors; visits and values already
  /// backed up through the subtree stay in the ancestors. Throws std::invalid_argument for
  /// the root, std::out_of_range / StaleHandleError for bad ids.
  void Prune(int32_t node);

  // ---- queries (all throw std::out_of_range for an id never allocated, StaleHandleError
  // ---- for a pruned one) ----------------------------------------------------------------

  /// Root tokens followed by the step tokens of every node from the root down to `node`.
  std::vector<int32_t> PathTokens(int32_t node) const;
  /// The tokens `node` owns.
  std::vector<int32_t> StepTokens(int32_t node) const;
  /// Parent id; -1 for the root.
  int32_t Parent(int32_t node) const;
  /// Children in ascending id order.
  std::vector<int32_t> Children(int32_t node) const;
  int32_t NumChildren(int32_t node) const;
  /// Distance from the root (root: 0).
  int32_t Depth(int32_t node) const;
  /// out[i] = Depth(nodes[i]) for i < n. Throws like Depth at the first bad id (entries of
  /// `out` before it are then already written).
  void Depths(const int32_t* nodes, int64_t n, int32_t* out) const;
  int64_t Visits(int32_t node) const;
  /// Mean backed-up value W/N; 0 when unvisited.
  double Value(int32_t node) const;
  double ValueSum(int32_t node) const;
  double Prior(int32_t node) const;
  bool IsTerminal(int32_t node) const;
  /// Reward set by SetTerminal; 0 for non-terminal nodes.
  double Reward(int32_t node) const;
  bool InFlight(int32_t node) const;
  /// Pending selections whose path contains `node`.
  int32_t VirtualLossCount(int32_t node) const;
  /// Child with the most visits (kVisits) or highest Value (kValue); ties to the lowest id.
  /// Throws std::invalid_argument when `node` has no children.
  int32_t BestChild(int32_t node, BestBy by) const;
  /// BestChild with the criterion by name, "visits" or "value": throws ParseBestBy's
  /// std::invalid_argument for another name before `node` is looked at.
  int32_t BestChild(int32_t node, const std::string& by) const;
  /// Live leaves (terminal or not) in ascending id order.
  std::vector<int32_t> Leaves() const;
  /// Every live node as a NodeRecord, in ascending id order (one consistent snapshot).
  std::vector<NodeRecord> Records() const;

  /// The batched form of any one-node query above: out[i] = (this->*query)(nodes[i]) for
  /// i < n, each id read once, e.g. `tree.Gather(&SearchTree::Visits, ids, n, visits)`.
  /// Throws like the query at the first bad id (the entries of `out` before it are then
  /// already written); std::invalid_argument for n < 0.
  template <typename T>
  void Gather(T (SearchTree::*query)(int32_t) const, const int32_t* nodes, int64_t n,
              T* out) const;

  /// Live nodes.
  int64_t NumNodes() const;
  /// Ids ever allocated (live + pruned); the next new id.
  int64_t NumSlots() const;
  /// True when `id` names a live node (any int64 accepted).
  bool Contains(int64_t id) const;
  /// Largest depth / child count any node has ever had (pruning does not lower them): upper
  /// bounds that let callers estimate the cost of a call before making it.
  int32_t MaxDepthBound() const;
  int32_t MaxChildrenBound() const;
  /// Upper bounds, in node visits, on the work of a call, from the two bounds above (as
  /// doubles: the products may exceed int64). The Python binding keeps the GIL for calls
  /// it knows to be small.
  /// Backup, RevertVirtualLoss or SetTerminal of n entries: each walks at most one root path.
  double PathWorkBound(int64_t n) const;
  /// AddChildren / AppendChildren of n children with num_tokens tokens in all.
  double AddWorkBound(int64_t n, int64_t num_tokens) const;
  /// Select writing at most `capacity` ids: each pick scans at most MaxChildrenBound()
  /// children on each of MaxDepthBound() + 1 levels.
  double SelectWorkBound(int64_t capacity) const;
  /// Smallest / largest value passed to Backup; +inf / -inf before the first backup.
  double MinValue() const;
  double MaxValue() const;

  /// Throws InternalError when an invariant is broken: parent/child links and child order,
  /// depths, open flags and counts, virtual-loss counts (== in-flight nodes in the subtree),
  /// visits (N(x) >= sum of the children's N), token spans within the arena, finite stats.
  void Check() const;

  // ---- persistence ------------------------------------------------------------------------

  /// Serializes every field (including pruned slots, in-flight state and min/max statistics)
  /// in a versioned little-endian format with a CRC-32; a tree restored from it behaves
  /// identically. Tokens of pruned nodes are dropped (the arena is compacted).
  std::string ToBytes() const;
  /// Parses ToBytes output. Throws std::invalid_argument for anything malformed (wrong
  /// magic/version, truncated or trailing data, checksum mismatch, inconsistent fields).
  static std::unique_ptr<SearchTree> FromBytes(const void* data, size_t size);

 private:
  SearchTree();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

template <typename T>
void SearchTree::Gather(T (SearchTree::*query)(int32_t) const, const int32_t* nodes, int64_t n,
                        T* out) const {
  if (n < 0) throw std::invalid_argument("SearchTree::Gather: negative count");
  for (int64_t i = 0; i < n; ++i) out[i] = (this->*query)(nodes[i]);
}

}  // namespace o1search
