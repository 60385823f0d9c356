// Python binding of o1search::SearchTree (exposed as o1search._core.SearchTree; users get the
// o1search.SearchTree facade that subclasses it): construction, mutation and queries. `select`
// is bound in tree_select_py.cc, to_bytes / to_dict in tree_io_py.cc; the tree object, its
// locking (the GIL and a mutex per tree) and the argument conversions are in tree_py.h.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bindings.h"
#include "o1search/tree.h"
#include "py_common.h"
#include "tree_docs.h"
#include "tree_py.h"

namespace o1search::bindings {

namespace {

using namespace tree_py;  // NOLINT(build/namespaces): the binding's own helpers
using py_common::AsInt32;
using py_common::Int32View;
using py_common::ToArray;

// Work bound for Run: `n` entries each walking at most one root path.
auto PathBound(int64_t n) {
  return [n](const SearchTree& t) { return t.PathWorkBound(n); };
}

// The new ids are a contiguous range, so the result array is filled here rather than
// built in the core and handed over through a capsule (which costs more than a small batch).
py::array_t<int32_t> AddFlat(PyTree& self, const Span<int32_t>& parents, const int32_t* tokens,
                             int64_t ntok, const int32_t* lengths, const double* priors) {
  const int64_t n = parents.size();
  const int32_t first = Run(
      self, [&](const SearchTree& t) { return t.AddWorkBound(n, ntok); },
      [&](SearchTree& t) {
        return t.AppendChildren(parents.data(), n, tokens, ntok, lengths, priors);
      });
  py::array_t<int32_t> out = NewArray<int32_t>(n);
  int32_t* dst = out.mutable_data();
  for (int64_t i = 0; i < n; ++i) dst[i] = first + static_cast<int32_t>(i);
  return out;
}

// A scalar-or-vector accessor over a one-node query of the core: an int gives a Python scalar
// (the mutex taken with the GIL kept: O(1)), an array-like gives an array filled by
// SearchTree::Gather.
template <typename T>
void DefAccessor(TreeClass& cls, const char* name, T (SearchTree::*query)(int32_t) const,
                 const char* doc) {
  cls.def(
      name,
      [name, query](PyTree& self, py::handle nodes) -> py::object {
        if (IsIntScalar(nodes)) {
          const int32_t id = AsNodeId(nodes, name);
          return py::cast(Locked(self, [&](SearchTree& t) { return (t.*query)(id); }));
        }
        RequireIdArray(nodes, name);
        Span<int32_t> ids = IntSpan(nodes, name, kI32Min, kI32Max);
        py::array_t<T> out(ids.size());
        T* dst = out.mutable_data();
        Unlocked(self, [&](SearchTree& t) {
          t.Gather(query, ids.data(), ids.size(), dst);
          return 0;
        });
        return std::move(out);
      },
      py::arg("node"), doc);
}

}  // namespace

void BindSearchTree(pybind11::module_& m) {
  TreeClass cls(m, "SearchTree", tree_docs::kClass);
  cls
      .def(py::init([](py::handle root_tokens) {
             Int32View v = AsInt32(root_tokens, "root_tokens", 0, kI32Max);
             return std::make_unique<PyTree>(v);
           }),
           py::arg("root_tokens"),
           "Create a tree whose root (id 0) owns `root_tokens` (1-D ints in [0, 2**31-1], may "
           "be empty).")
      .def(
          "add_children",
          [](PyTree& self, py::handle parent, py::handle steps, py::handle priors) {
            if (py::isinstance<py::str>(steps) || py::isinstance<py::bytes>(steps) ||
                !PySequence_Check(steps.ptr()))
              throw py::type_error("add_children: steps must be a sequence of token arrays");
            py::sequence seq = py::reinterpret_borrow<py::sequence>(steps);
            const int64_t n = static_cast<int64_t>(py::len(seq));
            std::vector<int32_t> tokens, lengths;
            lengths.reserve(n);
            for (int64_t i = 0; i < n; ++i) {
              const std::string what = "add_children: steps[" + std::to_string(i) + "]";
              Int32View v = AsInt32(seq[i], what.c_str(), 0, kI32Max);
              tokens.insert(tokens.end(), v.data(), v.data() + v.size());
              lengths.push_back(static_cast<int32_t>(v.size()));
            }
            Span<double> pr = FloatSpan(priors, "add_children: priors");
            if (pr.size() != n)
              throw py::value_error("add_children: got " + std::to_string(n) + " steps but " +
                                    std::to_string(pr.size()) + " priors");
            auto parents = NodeList(parent, "add_children: parent", n);
            return AddFlat(self, parents, tokens.data(), static_cast<int64_t>(tokens.size()),
                           lengths.data(), pr.data());
          },
          py::arg("parent"), py::arg("steps"), py::arg("priors"), tree_docs::kAddChildren)
      .def(
          "add_children_flat",
          [](PyTree& self, py::handle parents, py::handle tokens, py::handle lengths,
             py::handle priors) {
            Span<int32_t> tok = IntSpan(tokens, "add_children_flat: tokens", 0, kI32Max);
            Span<int32_t> len = IntSpan(lengths, "add_children_flat: lengths", 0, kI32Max);
            Span<double> pr = FloatSpan(priors, "add_children_flat: priors");
            if (pr.size() != len.size())
              throw py::value_error("add_children_flat: got " + std::to_string(len.size()) +
                                    " lengths but " + std::to_string(pr.size()) + " priors");
            auto par = NodeList(parents, "add_children_flat: parents", len.size());
            return AddFlat(self, par, tok.data(), tok.size(), len.data(), pr.data());
          },
          py::arg("parents"), py::arg("tokens"), py::arg("lengths"), py::arg("priors"),
          tree_docs::kAddChildrenFlat)
      .def(
          "backup",
          [](PyTree& self, py::handle nodes, py::handle values) {
            const bool scalar = IsIntScalar(nodes);
            auto ids = NodeList(nodes, "backup: nodes");
            auto vals = ValueList(values, "backup: values", scalar, ids.size());
            Run(self, PathBound(ids.size()), [&](SearchTree& t) {
              t.Backup(ids.data(), vals.data(), ids.size());
              return 0;
            });
          },
          py::arg("nodes"), py::arg("values"), tree_docs::kBackup)
      .def(
          "revert_virtual_loss",
          [](PyTree& self, py::handle nodes) {
            auto ids = NodeList(nodes, "revert_virtual_loss: nodes");
            Run(self, PathBound(ids.size()), [&](SearchTree& t) {
              t.RevertVirtualLoss(ids.data(), ids.size());
              return 0;
            });
          },
          py::arg("nodes"), tree_docs::kRevertVirtualLoss)
      .def(
          "set_terminal",
          [](PyTree& self, py::handle nodes, py::handle rewards) {
            const bool scalar = IsIntScalar(nodes);
            auto ids = NodeList(nodes, "set_terminal: node");
            auto vals = ValueList(rewards, "set_terminal: reward", scalar, ids.size());
            Run(self, PathBound(ids.size()), [&](SearchTree& t) {
              t.SetTerminal(ids.data(), vals.data(), ids.size());
              return 0;
            });
          },
          py::arg("node"), py::arg("reward"), tree_docs::kSetTerminal)
      .def(
          "prune",
          [](PyTree& self, py::handle node) {
            const int32_t id = AsNodeId(node, "prune");
            Unlocked(self, [&](SearchTree& t) {
              t.Prune(id);
              return 0;
            });
          },
          py::arg("node"), tree_docs::kPrune)
      .def(
          "path_tokens",
          [](PyTree& self, py::handle node) {
            const int32_t id = AsNodeId(node, "path_tokens");
            return ToArray(Unlocked(self, [&](SearchTree& t) { return t.PathTokens(id); }));
          },
          py::arg("node"),
          "Root tokens followed by every step on the path to `node`: np.ndarray[int32].")
      .def(
          "step_tokens",
          [](PyTree& self, py::handle node) {
            const int32_t id = AsNodeId(node, "step_tokens");
            return ToArray(Locked(self, [&](SearchTree& t) { return t.StepTokens(id); }));
          },
          py::arg("node"), "Tokens owned by `node` (the prompt for the root): np.ndarray[int32].")
      .def(
          "children",
          [](PyTree& self, py::handle node) {
            const int32_t id = AsNodeId(node, "children");
            return ToArray(Locked(self, [&](SearchTree& t) { return t.Children(id); }));
          },
          py::arg("node"), "Children of `node` in ascending id order: np.ndarray[int32].")
      .def(
          "depth",
          [](PyTree& self, py::handle n) {
            if (IsIntScalar(n)) {
              const int32_t id = AsNodeId(n, "depth");
              return py::cast(Locked(self, [&](SearchTree& t) { return t.Depth(id); }));
            }
            // Batched in the core: the workload asks for the depths of every new child.
            RequireIdArray(n, "depth");
            Span<int32_t> ids = IntSpan(n, "depth", kI32Min, kI32Max);
            py::array_t<int32_t> out = NewArray<int32_t>(ids.size());
            int32_t* dst = out.mutable_data();
            const double work = static_cast<double>(ids.size());
            Run(
                self, [work](const SearchTree&) { return work; },
                [&](SearchTree& t) {
                  t.Depths(ids.data(), ids.size(), dst);
                  return 0;
                });
            return py::object(std::move(out));
          },
          py::arg("node"), "Depth (root 0); int, or int32 array for an array.")
      .def(
          "best_child",
          [](PyTree& self, py::handle node, const std::string& by) {
            const int32_t id = AsNodeId(node, "best_child");
            return Locked(self, [&](SearchTree& t) { return t.BestChild(id, by); });
          },
          py::arg("node"), py::arg("by") = "visits",
          "Child with the most visits (by='visits') or the highest mean value (by='value'); "
          "ties go to the lowest id. Raises ValueError when `node` has no children.")
      .def(
          "leaves",
          [](PyTree& self) {
            return ToArray(Unlocked(self, [](SearchTree& t) { return t.Leaves(); }));
          },
          "All live leaves (terminal or not), ascending: np.ndarray[int32].")
      .def_property_readonly(
          "num_nodes",
          [](PyTree& self) { return Locked(self, [](SearchTree& t) { return t.NumNodes(); }); },
          "Number of live nodes.")
      .def_property_readonly(
          "num_slots",
          [](PyTree& self) { return Locked(self, [](SearchTree& t) { return t.NumSlots(); }); },
          "Number of ids ever allocated (live + pruned); the next new id.")
      .def_property_readonly(
          "min_value",
          [](PyTree& self) { return Locked(self, [](SearchTree& t) { return t.MinValue(); }); },
          "Smallest backed-up value (inf before the first backup).")
      .def_property_readonly(
          "max_value",
          [](PyTree& self) { return Locked(self, [](SearchTree& t) { return t.MaxValue(); }); },
          "Largest backed-up value (-inf before the first backup).")
      .def("__len__",
           [](PyTree& self) { return Locked(self, [](SearchTree& t) { return t.NumNodes(); }); })
      .def("__contains__",
           [](PyTree& self, py::handle node) {
             if (!IsIntScalar(node)) return false;
             int64_t id;
             try {
               id = AsIntScalar(node, "__contains__");
             } catch (py::value_error&) {
               return false;
             }
             return Locked(self, [&](SearchTree& t) { return t.Contains(id); });
           })
      .def(
          "check",
          [](PyTree& self) {
            Unlocked(self, [](SearchTree& t) {
              t.Check();
              return 0;
            });
          },
          "Verify every internal invariant; raises o1search.InternalError if one is broken.");
  DefAccessor(cls, "parent", &SearchTree::Parent,
              "Parent id (-1 for the root); int, or int32 array for an array.");
  DefAccessor(cls, "num_children", &SearchTree::NumChildren,
              "Number of children; int, or int32 array for an array.");
  DefAccessor(cls, "visits", &SearchTree::Visits,
              "Visit count N; int, or int64 array for an array.");
  DefAccessor(cls, "value", &SearchTree::Value,
              "Mean backed-up value W/N (0 if unvisited); float or float64 array.");
  DefAccessor(cls, "value_sum", &SearchTree::ValueSum,
              "Sum W of backed-up values; float or float64 array.");
  DefAccessor(cls, "prior", &SearchTree::Prior,
              "Prior P (1.0 for the root); float or float64 array.");
  DefAccessor(cls, "is_terminal", &SearchTree::IsTerminal,
              "Terminal flag; bool or bool array.");
  DefAccessor(cls, "reward", &SearchTree::Reward,
              "Terminal reward (0 for non-terminal nodes); float or float64 array.");
  DefAccessor(cls, "in_flight", &SearchTree::InFlight,
              "Whether `node` is selected and not yet backed up / reverted.");
  DefAccessor(cls, "virtual_loss_count", &SearchTree::VirtualLossCount,
              "Pending selections whose path contains `node`.");
  BindTreeSelect(cls);
  BindTreeIo(cls);
}

}  // namespace o1search::bindings
