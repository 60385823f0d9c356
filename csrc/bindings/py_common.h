// Conversions shared by the bindings: NumPy arrays in and out without per-element Python
// objects, with the checks that keep bad input from reaching the core.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

namespace o1search::py_common {

namespace py = pybind11;

// A read-only, C-contiguous int32 view that keeps its owner alive.
struct Int32View {
  py::array_t<int32_t, py::array::c_style> arr;
  const int32_t* data() const { return arr.data(); }
  int64_t size() const { return static_cast<int64_t>(arr.size()); }
};

// Accepts a 1-D array-like of integers (NumPy integer array of any width, list, tuple) and
// returns an int32 view. Zero-copy for C-contiguous int32 arrays; otherwise one conversion.
// Raises TypeError for non-integer data (floats, bools, objects), ValueError for a wrong
// number of dimensions or a value outside [lo, hi].
Int32View AsInt32(py::handle obj, const char* what, int64_t lo = std::numeric_limits<int32_t>::min(),
                  int64_t hi = std::numeric_limits<int32_t>::max());

// Same for floating-point data (float32/float64, or integers), as float64. Raises ValueError
// for NaN.
py::array_t<double, py::array::c_style> AsFloat64(py::handle obj, const char* what);

// Moves a vector into a NumPy array without copying (the array owns the buffer).
template <typename T>
py::array_t<T> ToArray(std::vector<T>&& v) {
  auto* heap = new std::vector<T>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>({static_cast<py::ssize_t>(heap->size())}, {sizeof(T)}, heap->data(), owner);
}

}  // namespace o1search::py_common
