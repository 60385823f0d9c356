#include "py_common.h"

#include <cmath>

namespace o1search::py_common {

namespace {

py::array ToNumpy(py::handle obj, const char* what) {
  if (py::isinstance<py::array>(obj)) return py::reinterpret_borrow<py::array>(obj);
  if (py::isinstance<py::str>(obj) || py::isinstance<py::bytes>(obj))
    throw py::type_error(std::string(what) + ": expected a sequence of numbers, got a string");
  py::module_ np = py::module_::import("numpy");
  try {
    return np.attr("asarray")(obj);
  } catch (py::error_already_set& e) {
    throw py::type_error(std::string(what) + ": expected an array-like of numbers (" + e.what() + ")");
  }
}

}  // namespace

Int32View AsInt32(py::handle obj, const char* what, int64_t lo, int64_t hi) {
  py::array a = ToNumpy(obj, what);
  if (a.ndim() != 1) {
    // An empty list becomes a float64 array of shape (0,); a scalar has ndim 0.
    throw py::value_error(std::string(what) + ": expected a 1-D array, got " +
                          std::to_string(a.ndim()) + " dimensions");
  }
  const char kind = a.dtype().kind();
  if (a.size() == 0) {
    return Int32View{py::array_t<int32_t, py::array::c_style>(0)};
  }
  if (kind != 'i' && kind != 'u') {
    throw py::type_error(std::string(what) + ": expected integer values, got dtype " +
                         std::string(py::str(a.dtype())));
  }
  if (kind == 'i' && a.itemsize() == 4 && (a.flags() & py::array::c_style)) {
    auto view = py::array_t<int32_t, py::array::c_style>::ensure(a);
    const int32_t* p = view.data();
    for (py::ssize_t i = 0; i < view.size(); ++i) {
      if (p[i] < lo || p[i] > hi)
        throw py::value_error(std::string(what) + ": value " + std::to_string(p[i]) +
                              " at index " + std::to_string(i) + " is outside [" +
                              std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return Int32View{view};
  }
  // Other widths or strides: widen to int64 (uint64 values above INT64_MAX are caught by the
  // signed view going negative only if we check the unsigned case separately).
  py::array_t<int32_t, py::array::c_style> out(a.size());
  int32_t* dst = out.mutable_data();
  if (kind == 'u' && a.itemsize() == 8) {
    auto src = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>::ensure(a);
    const uint64_t* p = src.data();
    for (py::ssize_t i = 0; i < src.size(); ++i) {
      if (hi < 0 || p[i] > static_cast<uint64_t>(hi) || static_cast<int64_t>(p[i]) < lo)
        throw py::value_error(std::string(what) + ": value " + std::to_string(p[i]) +
                              " at index " + std::to_string(i) + " is outside [" +
                              std::to_string(lo) + ", " + std::to_string(hi) + "]");
      dst[i] = static_cast<int32_t>(p[i]);
    }
    return Int32View{out};
  }
  auto src = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
  const int64_t* p = src.data();
  for (py::ssize_t i = 0; i < src.size(); ++i) {
    if (p[i] < lo || p[i] > hi)
      throw py::value_error(std::string(what) + ": value " + std::to_string(p[i]) + " at index " +
                            std::to_string(i) + " is outside [" + std::to_string(lo) + ", " +
                            std::to_string(hi) + "]");
    dst[i] = static_cast<int32_t>(p[i]);
  }
  return Int32View{out};
}

py::array_t<double, py::array::c_style> AsFloat64(py::handle obj, const char* what) {
  py::array a = ToNumpy(obj, what);
  if (a.ndim() != 1)
    throw py::value_error(std::string(what) + ": expected a 1-D array, got " +
                          std::to_string(a.ndim()) + " dimensions");
  if (a.size() == 0) return py::array_t<double, py::array::c_style>(0);
  const char kind = a.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u')
    throw py::type_error(std::string(what) + ": expected real numbers, got dtype " +
                         std::string(py::str(a.dtype())));
  auto out = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(a);
  if (!out) throw py::type_error(std::string(what) + ": cannot convert to float64");
  const double* p = out.data();
  for (py::ssize_t i = 0; i < out.size(); ++i)
    if (!std::isfinite(p[i]))
      throw py::value_error(std::string(what) + ": value at index " + std::to_string(i) +
                            " is not finite");
  return out;
}

}  // namespace o1search::py_common
