// SearchTree methods built only on its public queries (no access to Impl): named criteria,
// whole-tree snapshots and cost bounds. Kept apart from tree.cc, which owns the storage.
#include <stdexcept>
#include <string>
#include <vector>

#include "o1search/tree.h"

namespace o1search {

BestBy ParseBestBy(const std::string& name) {
  if (name == "visits") return BestBy::kVisits;
  if (name == "value") return BestBy::kValue;
  // Thrown directly, not through O1_CHECK: the message (no file:line) is part of the Python
  // API of best_child, which predates this function.
  throw std::invalid_argument("best_child: by must be 'visits' or 'value', got '" + name + "'");
}

int32_t SearchTree::BestChild(int32_t node, const std::string& by) const {
  return BestChild(node, ParseBestBy(by));
}

std::vector<NodeRecord> SearchTree::Records() const {
  std::vector<NodeRecord> out;
  out.reserve(static_cast<size_t>(NumNodes()));
  for (int64_t i = 0; i < NumSlots(); ++i) {
    if (!Contains(i)) continue;
    const auto id = static_cast<int32_t>(i);
    NodeRecord r;
    r.id = id;
    r.parent = Parent(id);
    r.depth = Depth(id);
    r.tokens = StepTokens(id);
    r.children = Children(id);
    r.prior = Prior(id);
    r.value = Value(id);
    r.reward = Reward(id);
    r.visits = Visits(id);
    r.terminal = IsTerminal(id);
    out.push_back(std::move(r));
  }
  return out;
}

double SearchTree::PathWorkBound(int64_t n) const {
  return static_cast<double>(n) * (static_cast<double>(MaxDepthBound()) + 2.0);
}

double SearchTree::AddWorkBound(int64_t n, int64_t num_tokens) const {
  return static_cast<double>(num_tokens) + 1.0 + PathWorkBound(n);
}

double SearchTree::SelectWorkBound(int64_t capacity) const {
  return static_cast<double>(capacity) * (static_cast<double>(MaxDepthBound()) + 1.0) *
         (static_cast<double>(MaxChildrenBound()) + 1.0);
}

}  // namespace o1search
