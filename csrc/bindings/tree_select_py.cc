// SearchTree.select, the call the MCTS loop makes once per batch, and its positional twin
// `_select`: argument parsing and the result array. The selection itself is
// SearchTree::Select.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <string>

#include "o1search/tree.h"
#include "tree_docs.h"
#include "tree_py.h"

namespace o1search::bindings::tree_py {

namespace {

// Select into a NumPy array allocated up front (no capsule-owned vector). Small requests
// size the array by `num` alone; huge ones by the live node count, an upper bound on the
// open leaves.
py::array_t<int32_t> SelectArray(PyTree& self, int64_t num, const SelectOptions& o) {
  constexpr int64_t kSmall = 4096;
  int64_t cap = std::max<int64_t>(num, 0);
  if (cap > kSmall) cap = std::min(cap, Locked(self, [](SearchTree& t) { return t.NumNodes(); }));
  py::array_t<int32_t> out = NewArray<int32_t>(cap);
  int32_t* dst = out.mutable_data();
  const auto bound = [cap](const SearchTree& t) { return t.SelectWorkBound(cap); };
  const int64_t got = Run(self, bound, [&](SearchTree& t) { return t.Select(num, o, dst, cap); });
  if (got == cap) return out;
  py::array_t<int32_t> shrunk = NewArray<int32_t>(got);
  std::copy_n(dst, got, shrunk.mutable_data());
  return shrunk;
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

}  // namespace

void BindTreeSelect(TreeClass& cls) {
  // Positional-only here: pybind11's keyword matching costs more than the selection of a
  // small batch, so the facade's `select(num, *, c_puct=..., ...)` forwards to `_select`.
  cls.def(
      "_select",
      [](PyTree& self, py::handle num, double c_puct, double virtual_loss, bool min_max) {
        const int64_t k = AsIntScalar(num, "select: num");
        SelectOptions o;
        o.c_puct = c_puct;
        o.virtual_loss = virtual_loss;
        o.min_max = min_max;
        return SelectArray(self, k, o);
      },
      tree_docs::kPrivateSelect);
  // The raw `select` (see SelectMethod). The PyMethodDef must outlive the type: static.
  static PyMethodDef select_def = {
      "select", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(&SelectMethod)),
      METH_FASTCALL | METH_KEYWORDS, tree_docs::kSelect};
  PyObject* descr = PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(cls.ptr()), &select_def);
  if (descr == nullptr) throw py::error_already_set();
  py::setattr(cls, "select", py::reinterpret_steal<py::object>(descr));
}

}  // namespace o1search::bindings::tree_py
