// Argument conversions of the SearchTree binding (declared in tree_py.h).
#include <cmath>
#include <string>

#include "tree_py.h"

namespace o1search::bindings::tree_py {

using py_common::AsFloat64;
using py_common::AsInt32;
using py_common::Int32View;

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

void RequireIdArray(py::handle h, const char* what) {
  if (py::isinstance<py::array>(h)) return;
  if (PySequence_Check(h.ptr()) && !py::isinstance<py::str>(h) && !py::isinstance<py::bytes>(h))
    return;
  throw py::type_error(std::string(what) + ": expected a node id (int) or an array-like of ids, got " +
                       std::string(py::str(py::type::of(h).attr("__name__"))));
}

Span<int32_t> IntSpan(py::handle h, const char* what, int64_t lo, int64_t hi) {
  Span<int32_t> s;
  if (TakeExact(h, s)) return s;
  Int32View v = AsInt32(h, what, lo, hi);
  s.p = v.data();
  s.n = v.size();
  s.keep = v.arr;
  return s;
}

Span<double> FloatSpan(py::handle h, const char* what) {
  Span<double> s;
  if (TakeExact(h, s)) return s;
  auto a = AsFloat64(h, what);
  s.p = a.data();
  s.n = static_cast<int64_t>(a.size());
  s.keep = a;
  return s;
}

Span<int32_t> NodeList(py::handle h, const char* what, int64_t n_expected) {
  if (IsIntScalar(h)) {
    Span<int32_t> s;
    s.own.assign(n_expected < 0 ? 1 : n_expected, AsNodeId(h, what));
    s.p = s.own.data();
    s.n = static_cast<int64_t>(s.own.size());
    return s;
  }
  RequireIdArray(h, what);
  Span<int32_t> s = IntSpan(h, what, kI32Min, kI32Max);
  if (n_expected >= 0 && s.size() != n_expected)
    throw py::value_error(std::string(what) + ": expected " + std::to_string(n_expected) +
                          " entries, got " + std::to_string(s.size()));
  return s;
}

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

}  // namespace o1search::bindings::tree_py
