// Python binding of o1search::SearchTree (exposed as o1search._core.SearchTree; users get the
// o1search.SearchTree facade that subclasses it). Each tree carries a mutex: calls that walk
// or change the tree release the GIL and then take the mutex, so concurrent Python threads
// serialize on the tree instead of corrupting it. O(1) accessors, and hot-loop calls whose
// work is bounded small (see Run), keep the GIL and take the mutex (safe: no thread ever
// waits for the GIL while holding a tree mutex).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "bindings.h"
#include "o1search/error.h"
#include "o1search/tree.h"
#include "py_common.h"

namespace o1search::bindings {

namespace {

namespace py = pybind11;
using py_common::AsFloat64;
using py_common::AsInt32;
using py_common::Int32View;
using py_common::ToArray;

constexpr int64_t kI32Max = std::numeric_limits<int32_t>::max();

struct PyTree {
  std::mutex mu;
  SearchTree tree;
  explicit PyTree(const Int32View& root) : tree(root.data(), root.size()) {}
};

// Runs f(tree) with the GIL released and the tree's mutex held.
template <typename F>
auto Unlocked(PyTree& self, F&& f) {
  py::gil_scoped_release nogil;
  std::lock_guard<std::mutex> guard(self.mu);
  return f(self.tree);
}

// Releasing and re-taking the GIL costs about as much as a whole small batch (~50 ns), so
// calls whose work is bounded small keep it: Run takes the mutex without waiting (try_lock)
// and, when `bound(tree)` (an upper bound on the nodes the call touches) is at most
// kKeepGilWork, runs f with the GIL held (microseconds at most). Otherwise, or when the mutex
// is busy, it falls back to Unlocked. The mutex is always released before the GIL is waited
// for, as in Unlocked, so the two locks cannot deadlock.
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

// Work bounds for Run, in node visits (as doubles: the products may exceed int64).
// `n` entries each walking at most one root path.
auto PathWork(int64_t n) {
  return [n](const SearchTree& t) {
    return static_cast<double>(n) * (static_cast<double>(t.MaxDepthBound()) + 2.0);
  };
}

// Runs f(tree) with the GIL kept (O(1) work) and the tree's mutex held.
template <typename F>
auto Locked(PyTree& self, F&& f) {
  std::lock_guard<std::mutex> guard(self.mu);
  return f(self.tree);
}

// A Python int or NumPy integer scalar (not a bool, not an array).
bool IsIntScalar(py::handle h) {
  if (PyBool_Check(h.ptr())) return false;
  if (PyLong_Check(h.ptr())) return true;
  return !py::isinstance<py::array>(h) && PyIndex_Check(h.ptr());
}

// Integer scalar → int64; bools and non-integers raise TypeError, values beyond int64 raise
// ValueError.
int64_t AsIntScalar(py::handle h, const char* what) {
  if (!IsIntScalar(h))
    throw py::type_error(std::string(what) + ": expected an integer, got " +
                         std::string(py::str(py::type::of(h).attr("__name__"))));
  py::object idx = py::reinterpret_steal<py::object>(PyNumber_Index(h.ptr()));
  if (!idx) throw py::error_already_set();
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(idx.ptr(), &overflow);
  if (overflow != 0) throw py::value_error(std::string(what) + ": integer out of range");
  if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
  return v;
}

// A node id argument: out-of-range ids (also beyond int32) raise IndexError.
int32_t AsNodeId(py::handle h, const char* what) {
  int64_t v;
  try {
    v = AsIntScalar(h, what);
  } catch (py::value_error&) {
    throw py::index_error(std::string(what) + ": node id does not exist");
  }
  if (v < 0 || v > kI32Max)
    throw py::index_error(std::string(what) + ": node id " + std::to_string(v) +
                          " does not exist");
  return static_cast<int32_t>(v);
}

double AsFiniteScalar(py::handle h, const char* what) {
  if (PyBool_Check(h.ptr()) || !PyNumber_Check(h.ptr()) || py::isinstance<py::array>(h))
    throw py::type_error(std::string(what) + ": expected a real number");
  const double v = py::cast<double>(h);
  if (!std::isfinite(v)) throw py::value_error(std::string(what) + ": value is not finite");
  return v;
}

// Node-id arguments take an int or an array-like; anything else (a float, a string, None) is
// a TypeError rather than NumPy's "0 dimensions" ValueError.
void RequireIdArray(py::handle h, const char* what) {
  if (py::isinstance<py::array>(h)) return;
  if (PySequence_Check(h.ptr()) && !py::isinstance<py::str>(h) && !py::isinstance<py::bytes>(h))
    return;
  throw py::type_error(std::string(what) + ": expected a node id (int) or an array-like of ids, got " +
                       std::string(py::str(py::type::of(h).attr("__name__"))));
}

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

// Integer array-like (ids, tokens, lengths) as int32; values outside [lo, hi] raise ValueError.
Span<int32_t> IntSpan(py::handle h, const char* what, int64_t lo, int64_t hi) {
  Span<int32_t> s;
  if (TakeExact(h, s)) {
    // The core rejects negative tokens / lengths and unknown ids, so the exact-dtype path only
    // needs the lower bound when it is stricter than the core's (it never is today).
    return s;
  }
  Int32View v = AsInt32(h, what, lo, hi);
  s.p = v.data();
  s.n = v.size();
  s.keep = v.arr;
  return s;
}

// Real-valued array-like as float64 (NaN/inf raise ValueError in the general path; the core
// re-checks every value).
Span<double> FloatSpan(py::handle h, const char* what) {
  Span<double> s;
  if (TakeExact(h, s)) return s;
  auto a = AsFloat64(h, what);
  s.p = a.data();
  s.n = static_cast<int64_t>(a.size());
  s.keep = a;
  return s;
}

// Node ids given as one int or a 1-D array-like; `n_expected` >= 0 enforces the length (a
// scalar is then broadcast).
Span<int32_t> NodeList(py::handle h, const char* what, int64_t n_expected = -1) {
  if (IsIntScalar(h)) {
    Span<int32_t> s;
    s.own.assign(n_expected < 0 ? 1 : n_expected, AsNodeId(h, what));
    s.p = s.own.data();
    s.n = static_cast<int64_t>(s.own.size());
    return s;
  }
  RequireIdArray(h, what);
  Span<int32_t> s = IntSpan(h, what, std::numeric_limits<int32_t>::min(), kI32Max);
  if (n_expected >= 0 && s.size() != n_expected)
    throw py::value_error(std::string(what) + ": expected " + std::to_string(n_expected) +
                          " entries, got " + std::to_string(s.size()));
  return s;
}

// Values given as one number (when the nodes were one int) or an array of the same length.
Span<double> ValueList(py::handle h, const char* what, bool scalar_ok, int64_t n) {
  if (scalar_ok && !py::isinstance<py::array>(h) && !py::isinstance<py::sequence>(h)) {
    Span<double> s;
    s.own.assign(n, AsFiniteScalar(h, what));
    s.p = s.own.data();
    s.n = n;
    return s;
  }
  Span<double> s = FloatSpan(h, what);
  if (s.size() != n)
    throw py::value_error(std::string(what) + ": expected " + std::to_string(n) +
                          " values, got " + std::to_string(s.size()));
  return s;
}

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

// The new ids are a contiguous range, so the result array is filled here rather than
// built in the core and handed over through a capsule (which costs more than a small batch).
py::array_t<int32_t> AddFlat(PyTree& self, const Span<int32_t>& parents, const int32_t* tokens,
                             int64_t ntok, const int32_t* lengths, const double* priors) {
  const double work = static_cast<double>(ntok) + 1.0;
  const auto path = PathWork(parents.size());
  const int32_t first = Run(
      self, [&](const SearchTree& t) { return work + path(t); },
      [&](SearchTree& t) {
        return t.AppendChildren(parents.data(), parents.size(), tokens, ntok, lengths, priors);
      });
  py::array_t<int32_t> out = NewArray<int32_t>(parents.size());
  int32_t* dst = out.mutable_data();
  for (int64_t i = 0; i < parents.size(); ++i) dst[i] = first + static_cast<int32_t>(i);
  return out;
}

// Select into a NumPy array allocated up front (no capsule-owned vector). Small requests
// size the array by `num` alone; huge ones by the live node count, an upper bound on the
// open leaves.
py::array_t<int32_t> SelectArray(PyTree& self, int64_t num, const SelectOptions& o) {
  constexpr int64_t kSmall = 4096;
  int64_t cap = std::max<int64_t>(num, 0);
  if (cap > kSmall) cap = std::min(cap, Locked(self, [](SearchTree& t) { return t.NumNodes(); }));
  py::array_t<int32_t> out = NewArray<int32_t>(cap);
  int32_t* dst = out.mutable_data();
  // Each pick scans at most MaxChildrenBound children on each of MaxDepthBound + 1 levels.
  const auto bound = [cap](const SearchTree& t) {
    return static_cast<double>(cap) * (static_cast<double>(t.MaxDepthBound()) + 1.0) *
           (static_cast<double>(t.MaxChildrenBound()) + 1.0);
  };
  const int64_t got = Run(self, bound, [&](SearchTree& t) { return t.Select(num, o, dst, cap); });
  if (got == cap) return out;
  py::array_t<int32_t> shrunk = NewArray<int32_t>(got);
  std::copy_n(dst, got, shrunk.mutable_data());
  return shrunk;
}

// Scalar-or-vector accessor: an int gives a Python scalar, an array-like gives an array.
template <typename T, typename F>
py::object Accessor(PyTree& self, py::handle nodes, const char* what, F get) {
  if (IsIntScalar(nodes)) {
    const int32_t id = AsNodeId(nodes, what);
    return py::cast(Locked(self, [&](SearchTree& t) { return static_cast<T>(get(t, id)); }));
  }
  RequireIdArray(nodes, what);
  Span<int32_t> ids = IntSpan(nodes, what, std::numeric_limits<int32_t>::min(), kI32Max);
  py::array_t<T> out(ids.size());
  T* dst = out.mutable_data();
  Unlocked(self, [&](SearchTree& t) {
    for (int64_t i = 0; i < ids.size(); ++i) dst[i] = static_cast<T>(get(t, ids.data()[i]));
    return 0;
  });
  return std::move(out);
}

py::bytes ToBytes(PyTree& self) {
  std::string s = Unlocked(self, [](SearchTree& t) { return t.ToBytes(); });
  return py::bytes(s);
}

void LoadBytes(PyTree& self, py::handle data) {
  if (!PyObject_CheckBuffer(data.ptr()) || py::isinstance<py::str>(data))
    throw py::type_error("SearchTree.from_bytes: expected bytes, bytearray or memoryview");
  Py_buffer view;
  if (PyObject_GetBuffer(data.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0) throw py::error_already_set();
  std::unique_ptr<SearchTree> loaded;
  try {
    py::gil_scoped_release nogil;
    loaded = SearchTree::FromBytes(view.buf, static_cast<size_t>(view.len));
  } catch (...) {
    PyBuffer_Release(&view);
    throw;
  }
  PyBuffer_Release(&view);
  Unlocked(self, [&](SearchTree& t) {
    t.Swap(*loaded);
    return 0;
  });
}

py::dict ToDict(PyTree& self) {
  // Snapshot under the mutex without touching Python objects, then build the dict: building
  // Python objects can run arbitrary code (GC finalizers) that may switch threads, and a thread
  // holding the GIL must never wait for a mutex held by one that needs the GIL back.
  struct Row {
    int32_t id, parent, depth;
    std::vector<int32_t> tokens, children;
    double prior, value, reward;
    int64_t visits;
    bool terminal;
  };
  std::vector<Row> rows = Unlocked(self, [](SearchTree& t) {
    std::vector<Row> out;
    out.reserve(static_cast<size_t>(t.NumNodes()));
    for (int64_t i = 0; i < t.NumSlots(); ++i) {
      if (!t.Contains(i)) continue;
      const auto id = static_cast<int32_t>(i);
      out.push_back(Row{id, t.Parent(id), t.Depth(id), t.StepTokens(id), t.Children(id),
                        t.Prior(id), t.Value(id), t.Reward(id), t.Visits(id), t.IsTerminal(id)});
    }
    return out;
  });
  py::list nodes;
  for (const Row& r : rows) {
    py::list toks, kids;
    for (int32_t tok : r.tokens) toks.append(tok);
    for (int32_t c : r.children) kids.append(c);
    py::dict d;
    d["id"] = r.id;
    d["parent"] = r.parent;
    d["depth"] = r.depth;
    d["tokens"] = toks;
    d["prior"] = r.prior;
    d["visits"] = r.visits;
    d["value"] = r.value;
    d["reward"] = r.reward;
    d["terminal"] = r.terminal;
    d["children"] = kids;
    nodes.append(d);
  }
  py::dict out;
  out["root"] = 0;
  out["nodes"] = nodes;
  return out;
}

// ---- select(num, *, c_puct=1.25, virtual_loss=1.0, min_max=False) ---------------------------
// The public `select` is a plain CPython METH_FASTCALL | METH_KEYWORDS method rather than a
// pybind11 function behind a Python wrapper: in the MCTS loop (one call per batch of ~16
// leaves) pybind11's dispatch and keyword matching plus the wrapper's frame cost as much as
// the selection itself. Argument rules match the wrapper it replaces (and `_select`).

double AsRealArg(PyObject* o, const char* what) {
  if (PyFloat_CheckExact(o)) return PyFloat_AS_DOUBLE(o);
  if (PyUnicode_Check(o) || PyBytes_Check(o))
    throw py::type_error(std::string(what) + ": expected a real number");
  const double v = PyFloat_AsDouble(o);  // __float__ / __index__, as pybind11's float caster
  if (v == -1.0 && PyErr_Occurred()) throw py::error_already_set();
  return v;
}

bool AsBoolArg(PyObject* o, const char* what) {
  if (o == Py_True) return true;
  if (o == Py_False) return false;
  // Like pybind11's bool caster: None, and objects with __bool__ (ints, NumPy bools).
  if (o == Py_None) return false;
  PyNumberMethods* nb = Py_TYPE(o)->tp_as_number;
  if (nb == nullptr || nb->nb_bool == nullptr)
    throw py::type_error(std::string(what) + ": expected a bool");
  const int r = nb->nb_bool(o);
  if (r < 0) throw py::error_already_set();
  return r != 0;
}

PyObject* SelectMethod(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                       PyObject* kwnames) {
  try {
    PyObject* vals[4] = {nullptr, nullptr, nullptr, nullptr};  // num, c_puct, vl, min_max
    static const char* const kNames[4] = {"num", "c_puct", "virtual_loss", "min_max"};
    if (nargs > 1)
      throw py::type_error("select() takes 1 positional argument but " + std::to_string(nargs) +
                           " were given");
    if (nargs == 1) vals[0] = args[0];
    const Py_ssize_t nkw = kwnames != nullptr ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; ++i) {
      PyObject* key = PyTuple_GET_ITEM(kwnames, i);
      int slot = -1;
      for (int j = 0; j < 4 && slot < 0; ++j)
        if (PyUnicode_CompareWithASCIIString(key, kNames[j]) == 0) slot = j;
      if (slot < 0)
        throw py::type_error("select() got an unexpected keyword argument '" +
                             std::string(py::str(key)) + "'");
      if (vals[slot] != nullptr)
        throw py::type_error(std::string("select() got multiple values for argument '") +
                             kNames[slot] + "'");
      vals[slot] = args[nargs + i];
    }
    if (vals[0] == nullptr)
      throw py::type_error("select() missing 1 required positional argument: 'num'");
    PyTree& tree = py::handle(self).cast<PyTree&>();
    const int64_t k = AsIntScalar(vals[0], "select: num");
    SelectOptions o;
    if (vals[1] != nullptr) o.c_puct = AsRealArg(vals[1], "select: c_puct");
    if (vals[2] != nullptr) o.virtual_loss = AsRealArg(vals[2], "select: virtual_loss");
    if (vals[3] != nullptr) o.min_max = AsBoolArg(vals[3], "select: min_max");
    return SelectArray(tree, k, o).release().ptr();
  } catch (py::error_already_set& e) {
    e.restore();
    return nullptr;
  } catch (...) {
    // The translators registered in module.cc (O1SearchError family, std exceptions).
    py::detail::try_translate_exceptions();
    return nullptr;
  }
}

constexpr const char* kClassDoc = R"doc(Native search tree over reasoning steps (private; use o1search.SearchTree).)doc";

constexpr const char* kAddChildrenDoc = R"doc(Add children, one per step.

Parameters
----------
parent : int or array-like of int, shape [C]
    One parent for all steps, or one parent per step (expands many leaves in one call).
steps : sequence of C int array-likes
    Token ids of each child's step, each in [0, 2**31-1]; an empty step is allowed.
priors : array-like of float, shape [C]
    Finite, >= 0.

Returns
-------
np.ndarray[int32], shape [C]: the new node ids (ascending, in input order).

Raises
------
IndexError (unknown parent), StaleHandleError (pruned parent), ValueError (terminal parent,
bad prior, negative/huge token, length mismatch), TypeError (non-integer tokens). Nothing
changes when an error is raised.)doc";

constexpr const char* kAddFlatDoc = R"doc(Add children from flat arrays (the hot-loop form of add_children).

Parameters
----------
parents : int or array-like of int, shape [C]
tokens : array-like of int, shape [sum(lengths)]
    All steps concatenated, in child order.
lengths : array-like of int, shape [C]
    Token count of each child's step (>= 0).
priors : array-like of float, shape [C]

Returns
-------
np.ndarray[int32], shape [C]: the new node ids.

Raises
------
Same as add_children; also ValueError when sum(lengths) != len(tokens).)doc";

constexpr const char* kSelectDoc = R"doc(select($self, /, num, *, c_puct=1.25, virtual_loss=1.0, min_max=False)
--

Select up to ``num`` distinct leaves to expand (batched PUCT with virtual loss).

Descends from the root into the open child with the highest score (module docstring),
ties to the lowest id. Each selected leaf gets one pending selection on every node of
its path and is marked in flight until :meth:`backup` or :meth:`revert_virtual_loss`,
so one batch spreads over distinct paths. Terminal and in-flight leaves are never
returned; subtrees without open leaves are skipped without being scanned.

Parameters
----------
num : int
    Maximum number of leaves, >= 0.
c_puct : float
    Exploration weight, finite and >= 0.
virtual_loss : float
    Value subtracted per pending selection when scoring, finite and >= 0.
min_max : bool
    Normalize Q by the min/max of all backed-up values (MuZero style).

Returns
-------
np.ndarray[int32], shape [k], k <= num
    The selected leaves in selection order (empty when nothing is open).

Raises
------
ValueError
    For ``num < 0`` or a negative / non-finite ``c_puct`` or ``virtual_loss``.
TypeError
    When ``num`` is not an integer.)doc";

constexpr const char* kPrivateSelectDoc = "select(num, c_puct, virtual_loss, min_max) with "
                                          "positional arguments only (see select).";

constexpr const char* kBackupDoc = R"doc(Back up values: for each (node, value) in order, add one visit and `value` to the node and
all its ancestors, and remove the pending selection of the nearest in-flight node on that path
(the node itself or an ancestor), if any.

Parameters
----------
nodes : int or array-like of int, shape [B]
values : float or array-like of float, shape [B]; finite.

Raises
------
IndexError, StaleHandleError, ValueError (non-finite value, length mismatch); nothing changes
on error.)doc";

constexpr const char* kRevertDoc = R"doc(Cancel selections without backing anything up: for each node in order, clear the pending
selection of the nearest in-flight node on its path (itself or an ancestor).

Raises
------
ValueError when an entry has no pending selection on its path (nothing changes then);
IndexError, StaleHandleError for bad ids.)doc";

constexpr const char* kSetTerminalDoc = R"doc(Mark node(s) terminal with a reward.

Parameters
----------
node : int or array-like of int, shape [B]
reward : float or array-like of float, shape [B]; finite.

Raises
------
ValueError when a node has children or a reward is not finite; IndexError, StaleHandleError.)doc";

constexpr const char* kPruneDoc = R"doc(Remove `node` and its subtree. Their ids raise StaleHandleError afterwards and are never
reused; pending selections inside are cancelled; statistics already backed up stay in the
ancestors. Raises ValueError for the root.)doc";

}  // namespace

void BindSearchTree(pybind11::module_& m) {
  py::class_<PyTree> cls(m, "SearchTree", kClassDoc);
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
            return (AddFlat(self, parents, tokens.data(),
                                   static_cast<int64_t>(tokens.size()), lengths.data(),
                                   pr.data()));
          },
          py::arg("parent"), py::arg("steps"), py::arg("priors"), kAddChildrenDoc)
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
          kAddFlatDoc)
      // Positional-only here: pybind11's keyword matching costs more than the selection of a
      // small batch, so the facade's `select(num, *, c_puct=..., ...)` forwards to `_select`.
      .def(
          "_select",
          [](PyTree& self, py::handle num, double c_puct, double virtual_loss, bool min_max) {
            const int64_t k = AsIntScalar(num, "select: num");
            SelectOptions o;
            o.c_puct = c_puct;
            o.virtual_loss = virtual_loss;
            o.min_max = min_max;
            return SelectArray(self, k, o);
          },
          kPrivateSelectDoc)
      .def(
          "backup",
          [](PyTree& self, py::handle nodes, py::handle values) {
            const bool scalar = IsIntScalar(nodes);
            auto ids = NodeList(nodes, "backup: nodes");
            auto vals = ValueList(values, "backup: values", scalar, ids.size());
            Run(self, PathWork(ids.size()), [&](SearchTree& t) {
              t.Backup(ids.data(), vals.data(), ids.size());
              return 0;
            });
          },
          py::arg("nodes"), py::arg("values"), kBackupDoc)
      .def(
          "revert_virtual_loss",
          [](PyTree& self, py::handle nodes) {
            auto ids = NodeList(nodes, "revert_virtual_loss: nodes");
            Run(self, PathWork(ids.size()), [&](SearchTree& t) {
              t.RevertVirtualLoss(ids.data(), ids.size());
              return 0;
            });
          },
          py::arg("nodes"), kRevertDoc)
      .def(
          "set_terminal",
          [](PyTree& self, py::handle nodes, py::handle rewards) {
            const bool scalar = IsIntScalar(nodes);
            auto ids = NodeList(nodes, "set_terminal: node");
            auto vals = ValueList(rewards, "set_terminal: reward", scalar, ids.size());
            Run(self, PathWork(ids.size()), [&](SearchTree& t) {
              t.SetTerminal(ids.data(), vals.data(), ids.size());
              return 0;
            });
          },
          py::arg("node"), py::arg("reward"), kSetTerminalDoc)
      .def(
          "prune",
          [](PyTree& self, py::handle node) {
            const int32_t id = AsNodeId(node, "prune");
            Unlocked(self, [&](SearchTree& t) {
              t.Prune(id);
              return 0;
            });
          },
          py::arg("node"), kPruneDoc)
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
          "parent",
          [](PyTree& self, py::handle n) {
            return Accessor<int32_t>(self, n, "parent",
                                     [](SearchTree& t, int32_t i) { return t.Parent(i); });
          },
          py::arg("node"), "Parent id (-1 for the root); int, or int32 array for an array.")
      .def(
          "depth",
          [](PyTree& self, py::handle n) {
            if (IsIntScalar(n)) {
              const int32_t id = AsNodeId(n, "depth");
              return py::cast(Locked(self, [&](SearchTree& t) { return t.Depth(id); }));
            }
            // Batched in the core: the workload asks for the depths of every new child.
            RequireIdArray(n, "depth");
            Span<int32_t> ids = IntSpan(n, "depth", std::numeric_limits<int32_t>::min(), kI32Max);
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
          "num_children",
          [](PyTree& self, py::handle n) {
            return Accessor<int32_t>(self, n, "num_children",
                                     [](SearchTree& t, int32_t i) { return t.NumChildren(i); });
          },
          py::arg("node"), "Number of children; int, or int32 array for an array.")
      .def(
          "visits",
          [](PyTree& self, py::handle n) {
            return Accessor<int64_t>(self, n, "visits",
                                     [](SearchTree& t, int32_t i) { return t.Visits(i); });
          },
          py::arg("node"), "Visit count N; int, or int64 array for an array.")
      .def(
          "value",
          [](PyTree& self, py::handle n) {
            return Accessor<double>(self, n, "value",
                                    [](SearchTree& t, int32_t i) { return t.Value(i); });
          },
          py::arg("node"), "Mean backed-up value W/N (0 if unvisited); float or float64 array.")
      .def(
          "value_sum",
          [](PyTree& self, py::handle n) {
            return Accessor<double>(self, n, "value_sum",
                                    [](SearchTree& t, int32_t i) { return t.ValueSum(i); });
          },
          py::arg("node"), "Sum W of backed-up values; float or float64 array.")
      .def(
          "prior",
          [](PyTree& self, py::handle n) {
            return Accessor<double>(self, n, "prior",
                                    [](SearchTree& t, int32_t i) { return t.Prior(i); });
          },
          py::arg("node"), "Prior P (1.0 for the root); float or float64 array.")
      .def(
          "is_terminal",
          [](PyTree& self, py::handle n) {
            return Accessor<bool>(self, n, "is_terminal",
                                  [](SearchTree& t, int32_t i) { return t.IsTerminal(i); });
          },
          py::arg("node"), "Terminal flag; bool or bool array.")
      .def(
          "reward",
          [](PyTree& self, py::handle n) {
            return Accessor<double>(self, n, "reward",
                                    [](SearchTree& t, int32_t i) { return t.Reward(i); });
          },
          py::arg("node"), "Terminal reward (0 for non-terminal nodes); float or float64 array.")
      .def(
          "in_flight",
          [](PyTree& self, py::handle n) {
            return Accessor<bool>(self, n, "in_flight",
                                  [](SearchTree& t, int32_t i) { return t.InFlight(i); });
          },
          py::arg("node"), "Whether `node` is selected and not yet backed up / reverted.")
      .def(
          "virtual_loss_count",
          [](PyTree& self, py::handle n) {
            return Accessor<int32_t>(
                self, n, "virtual_loss_count",
                [](SearchTree& t, int32_t i) { return t.VirtualLossCount(i); });
          },
          py::arg("node"), "Pending selections whose path contains `node`.")
      .def(
          "best_child",
          [](PyTree& self, py::handle node, const std::string& by) {
            const int32_t id = AsNodeId(node, "best_child");
            BestBy b;
            if (by == "visits")
              b = BestBy::kVisits;
            else if (by == "value")
              b = BestBy::kValue;
            else
              throw py::value_error("best_child: by must be 'visits' or 'value', got '" + by +
                                    "'");
            return Locked(self, [&](SearchTree& t) { return t.BestChild(id, b); });
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
          "Verify every internal invariant; raises o1search.InternalError if one is broken.")
      .def("to_bytes", &ToBytes,
           "Serialize the whole state (versioned, checksummed); see SearchTree.from_bytes.")
      .def("_load_bytes", &LoadBytes, py::arg("data"),
           "Replace this tree's state with a to_bytes() serialization (ValueError if invalid).")
      .def("to_dict", &ToDict,
           "{'root': 0, 'nodes': [{'id', 'parent', 'depth', 'tokens', 'prior', 'visits', "
           "'value', 'reward', 'terminal', 'children'}, ...]} for live nodes in id order.");
  // The raw `select` (see SelectMethod). The PyMethodDef must outlive the type: static.
  static PyMethodDef select_def = {
      "select", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(&SelectMethod)),
      METH_FASTCALL | METH_KEYWORDS, kSelectDoc};
  PyObject* descr = PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(cls.ptr()), &select_def);
  if (descr == nullptr) throw py::error_already_set();
  py::setattr(cls, "select", py::reinterpret_steal<py::object>(descr));
}

}  // namespace o1search::bindings
