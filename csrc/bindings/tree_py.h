// Shared by the SearchTree binding files (tree_py.cc, tree_select_py.cc, tree_io_py.cc,
// tree_convert.cc): the Python-side tree object with its mutex, the ways a call takes the
// GIL and the mutex, and the argument conversions (Python ints, floats and array-likes to the
// spans the core takes).
//
// Each tree carries a mutex: calls that walk or change the tree release the GIL and then take
// the mutex, so concurrent Python threads serialize on the tree instead of corrupting it.
// O(1) accessors, and hot-loop calls whose work is bounded small (see Run), keep the GIL and
// take the mutex (safe: no thread ever waits for the GIL while holding a tree mutex).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <mutex>
#include <utility>
#include <vector>

#include "o1search/tree.h"
#include "py_common.h"

namespace o1search::bindings::tree_py {

namespace py = pybind11;

constexpr int64_t kI32Max = std::numeric_limits<int32_t>::max();
constexpr int64_t kI32Min = std::numeric_limits<int32_t>::min();

struct PyTree {
  std::mutex mu;
  SearchTree tree;
  explicit PyTree(const py_common::Int32View& root) : tree(root.data(), root.size()) {}
};

// Runs f(tree) with the GIL released and the tree's mutex held.
template <typename F>
auto Unlocked(PyTree& self, F&& f) {
  py::gil_scoped_release nogil;
  std::lock_guard<std::mutex> guard(self.mu);
  return f(self.tree);
}

// Runs f(tree) with the GIL kept (O(1) work) and the tree's mutex held.
template <typename F>
auto Locked(PyTree& self, F&& f) {
  std::lock_guard<std::mutex> guard(self.mu);
  return f(self.tree);
}

// Releasing and re-taking the GIL costs about as much as a whole small batch (~50 ns), so
// calls whose work is bounded small keep it: Run takes the mutex without waiting (try_lock)
// and, when `bound(tree)` (an upper bound on the nodes the call touches, see the
// SearchTree::*WorkBound methods) is at most kKeepGilWork, runs f with the GIL held
// (microseconds at most). Otherwise, or when the mutex is busy, it falls back to Unlocked.
// The mutex is always released before the GIL is waited for, as in Unlocked, so the two locks
// cannot deadlock.
constexpr double kKeepGilWork = 1 << 15;

template <typename B, typename F>
auto Run(PyTree& self, B&& bound, F&& f) {
  {
    std::unique_lock<std::mutex> lk(self.mu, std::try_to_lock);
    if (lk.owns_lock() && bound(static_cast<const SearchTree&>(self.tree)) <= kKeepGilWork)
      return f(self.tree);
  }
  return Unlocked(self, std::forward<F>(f));
}

// ---- scalars (tree_convert.cc) ---------------------------------------------------------------

// A Python int or NumPy integer scalar (not a bool, not an array).
inline bool IsIntScalar(py::handle h) {
  if (PyBool_Check(h.ptr())) return false;
  if (PyLong_Check(h.ptr())) return true;
  return !py::isinstance<py::array>(h) && PyIndex_Check(h.ptr());
}

// Integer scalar → int64; bools and non-integers raise TypeError, values beyond int64 raise
// ValueError.
int64_t AsIntScalar(py::handle h, const char* what);
// A node id argument: out-of-range ids (also beyond int32) raise IndexError.
int32_t AsNodeId(py::handle h, const char* what);
// A real number (not a bool, string or array); NaN/inf raise ValueError.
double AsFiniteScalar(py::handle h, const char* what);
// Node-id arguments take an int or an array-like; anything else (a float, a string, None) is
// a TypeError rather than NumPy's "0 dimensions" ValueError.
void RequireIdArray(py::handle h, const char* what);

// ---- arrays ------------------------------------------------------------------------------------

// A read-only view of caller data that keeps its owner alive, or owns a small buffer (a
// broadcast scalar). The hot-loop calls pass exact-dtype contiguous arrays; for those the view
// is taken directly (skipping the general conversion), and range checks are left to the core,
// which validates every id, length, token and value itself before changing anything.
template <typename T>
struct Span {
  const T* p = nullptr;
  int64_t n = 0;
  py::object keep;
  std::vector<T> own;
  const T* data() const { return p; }
  int64_t size() const { return n; }
};

template <typename T>
bool TakeExact(py::handle h, Span<T>& out) {
  using A = py::array_t<T, py::array::c_style>;
  if (!A::check_(h)) return false;
  auto a = py::reinterpret_borrow<A>(h);
  if (a.ndim() != 1) return false;
  out.p = a.data();
  out.n = static_cast<int64_t>(a.size());
  out.keep = std::move(a);
  return true;
}

// Integer array-like (ids, tokens, lengths) as int32; values outside [lo, hi] raise ValueError
// (in the general path: the core rejects negative tokens / lengths and unknown ids itself, so
// the exact-dtype path only needs the lower bound when it is stricter than the core's, which
// it never is today).
Span<int32_t> IntSpan(py::handle h, const char* what, int64_t lo, int64_t hi);
// Real-valued array-like as float64 (NaN/inf raise ValueError in the general path; the core
// re-checks every value).
Span<double> FloatSpan(py::handle h, const char* what);
// Node ids given as one int or a 1-D array-like; `n_expected` >= 0 enforces the length (a
// scalar is then broadcast).
Span<int32_t> NodeList(py::handle h, const char* what, int64_t n_expected = -1);
// Values given as one number (when the nodes were one int) or an array of the same length.
Span<double> ValueList(py::handle h, const char* what, bool scalar_ok, int64_t n);

// A fresh 1-D C-contiguous array of n elements, straight from NumPy's C API (through
// pybind11's table of it): py::array_t's general constructor builds shape and stride vectors
// and costs about as much as a 16-leaf selection.
template <typename T>
py::array_t<T> NewArray(int64_t n) {
  const auto& api = py::detail::npy_api::get();
  const Py_intptr_t dims[1] = {static_cast<Py_intptr_t>(n)};
  PyObject* descr = api.PyArray_DescrFromType_(py::detail::npy_format_descriptor<T>::value);
  if (descr == nullptr) throw py::error_already_set();
  // NewFromDescr steals the descriptor reference.
  PyObject* a = api.PyArray_NewFromDescr_(api.PyArray_Type_, descr, 1, dims, nullptr, nullptr,
                                         0, nullptr);
  if (a == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::array_t<T>>(a);
}

// ---- the parts of the class bound outside tree_py.cc ---------------------------------------

using TreeClass = py::class_<PyTree>;
void BindTreeSelect(TreeClass& cls);  // select, _select (tree_select_py.cc)
void BindTreeIo(TreeClass& cls);      // to_bytes, _load_bytes, to_dict (tree_io_py.cc)

}  // namespace o1search::bindings::tree_py
