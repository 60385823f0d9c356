// Binding of o1search::RadixCache as o1search._core.RadixCache (wrapped by
// o1search/radix_cache.py).  Arguments are converted while holding the GIL; the tree work runs
// with the GIL released under the cache's own mutex, so several Python threads may share one
// cache.  Arrays cross as NumPy int32 without per-element Python objects.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>

#include "bindings.h"
#include "o1search/error.h"
#include "o1search/radix_cache.h"
#include "py_common.h"
#include "radix_docs.h"

namespace o1search::bindings {

namespace {

namespace py = pybind11;

constexpr int64_t kTokenMax = std::numeric_limits<int32_t>::max();

// A 1-D integer array-like as int32 ids in [lo, hi].  C-contiguous int32 buffers (the common
// case: NumPy int32 arrays) are read in place through the buffer protocol, which costs far
// less than a NumPy round trip on the per-call path; anything else goes through AsInt32 (one
// conversion, the same errors).  Must be destroyed with the GIL held.
class IdsInput {
 public:
  IdsInput(py::handle obj, const char* what, int64_t lo, int64_t hi) {
    if (PyObject_CheckBuffer(obj.ptr()) && !PyBytes_Check(obj.ptr()) &&
        !PyByteArray_Check(obj.ptr())) {
      if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0) {
        if (view_.ndim == 1 && view_.itemsize == 4 && IsInt32Format(view_.format)) {
          has_view_ = true;
          data_ = static_cast<const int32_t*>(view_.buf);
          size_ = static_cast<int64_t>(view_.len / 4);
          CheckRange(what, lo, hi);
          return;
        }
        PyBuffer_Release(&view_);
      } else {
        PyErr_Clear();  // not C-contiguous or no format: convert below
      }
    }
    conv_ = py_common::AsInt32(obj, what, lo, hi);
    data_ = conv_.data();
    size_ = conv_.size();
  }
  ~IdsInput() {
    if (has_view_) PyBuffer_Release(&view_);
  }
  IdsInput(const IdsInput&) = delete;
  IdsInput& operator=(const IdsInput&) = delete;

  const int32_t* data() const { return data_; }
  int64_t size() const { return size_; }

 private:
  static bool IsInt32Format(const char* f) {
    if (f == nullptr) return false;
    if (*f == '=' || *f == '<' || *f == '@') ++f;  // native little-endian (x86, ARM)
    return (f[0] == 'i' || f[0] == 'l') && f[1] == '\0';  // itemsize 4 checked by the caller
  }

  void CheckRange(const char* what, int64_t lo, int64_t hi) {
    int32_t mn = std::numeric_limits<int32_t>::max(), mx = std::numeric_limits<int32_t>::min();
    for (int64_t i = 0; i < size_; ++i) {  // branch-free min/max: vectorizes
      mn = std::min(mn, data_[i]);
      mx = std::max(mx, data_[i]);
    }
    if (size_ == 0 || (mn >= lo && mx <= hi)) return;
    for (int64_t i = 0; i < size_; ++i)
      if (data_[i] < lo || data_[i] > hi)
        throw py::value_error(std::string(what) + ": value " + std::to_string(data_[i]) +
                              " at index " + std::to_string(i) + " is outside [" +
                              std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }

  Py_buffer view_{};
  bool has_view_ = false;
  py_common::Int32View conv_;
  const int32_t* data_ = nullptr;
  int64_t size_ = 0;
};

// A fresh int32 NumPy array holding v (small outputs: a copy is cheaper than a capsule).
py::array_t<int32_t> NewArray(const std::vector<int32_t>& v) {
  py::array_t<int32_t> a(static_cast<py::ssize_t>(v.size()));
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), sizeof(int32_t) * v.size());
  return a;
}

// Python int (or anything with __index__, bools excepted) -> int64.  Returns false on overflow.
bool IndexToInt64(py::handle obj, const char* what, int64_t* out) {
  if (PyLong_CheckExact(obj.ptr())) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(obj.ptr(), &overflow);
    if (overflow != 0) return false;
    *out = static_cast<int64_t>(v);
    return true;
  }
  if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
    throw py::type_error(std::string(what) + ": expected an int, got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  py::object i = py::reinterpret_steal<py::object>(PyNumber_Index(obj.ptr()));
  if (!i) throw py::error_already_set();
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(i.ptr(), &overflow);
  if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
  if (overflow != 0) return false;
  *out = static_cast<int64_t>(v);
  return true;
}

int64_t AsHandle(py::handle obj) {
  int64_t h = 0;
  if (!IndexToInt64(obj, "node handle", &h))
    throw StaleHandleError("node handle " + std::string(py::str(obj)) + " is stale or unknown");
  return h;
}

int64_t AsCount(py::handle obj, const char* what) {
  int64_t n = 0;
  if (!IndexToInt64(obj, what, &n))
    throw py::value_error(std::string(what) + ": " + std::string(py::str(obj)) + " is too large");
  return n;
}

// The Python result classes (dataclasses defined in o1search/radix_cache.py), registered once
// by that module; until then results are plain tuples. Held in leaked heap objects so that no
// Python object is destroyed after the interpreter has finalized.
struct ResultTypes {
  py::object match, insert, acquire, stats;
};
ResultTypes& Types() {
  static auto* types = new ResultTypes();
  return *types;
}

template <typename... A>
py::object MakeResult(const py::object& type, A&&... args) {
  if (type) return type(std::forward<A>(args)...);
  return py::make_tuple(std::forward<A>(args)...);
}

struct PyRadixCache {
  PyRadixCache(int64_t num_pages, int64_t page_size) : cache(num_pages, page_size) {}
  RadixCache cache;
  std::mutex mu;
};

// Runs f() on the cache with the GIL released and the cache's mutex held.
template <typename F>
auto Locked(PyRadixCache& self, F&& f) {
  py::gil_scoped_release nogil;
  std::lock_guard<std::mutex> guard(self.mu);
  return f(self.cache);
}

}  // namespace

void BindRadixCache(py::module_& m) {
  py::class_<PyRadixCache>(m, "RadixCache",
                           "Radix tree over token ids -> KV page ids (use o1search.RadixCache).")
      .def(py::init([](py::handle num_pages, py::handle page_size) {
             return new PyRadixCache(AsCount(num_pages, "num_pages"),
                                     AsCount(page_size, "page_size"));
           }),
           py::arg("num_pages"), py::arg("page_size") = 1)
      .def_property_readonly("num_pages",
                             [](PyRadixCache& s) { return s.cache.num_pages(); })
      .def_property_readonly("page_size",
                             [](PyRadixCache& s) { return s.cache.page_size(); })
      .def_property_readonly("root", [](PyRadixCache& s) {
        std::lock_guard<std::mutex> guard(s.mu);
        return s.cache.root();
      })
      .def(
          "match",
          [](PyRadixCache& s, py::handle tokens) {
            IdsInput t(tokens, "tokens", 0, kTokenMax);
            MatchOutput out = Locked(s, [&](RadixCache& c) { return c.Match(t.data(), t.size()); });
            return MakeResult(Types().match, out.length, NewArray(out.pages), out.node);
          },
          py::arg("tokens"), radix_docs::kMatch)
      .def(
          "alloc",
          [](PyRadixCache& s, py::handle n) {
            const int64_t count = AsCount(n, "alloc: n");
            auto pages = Locked(s, [&](RadixCache& c) { return c.Alloc(count); });
            return NewArray(pages);
          },
          py::arg("n"), radix_docs::kAlloc)
      .def(
          "insert",
          [](PyRadixCache& s, py::handle tokens, py::handle pages) {
            IdsInput t(tokens, "tokens", 0, kTokenMax);
            IdsInput p(pages, "pages", 0, s.cache.num_pages() - 1);
            InsertOutput out = Locked(
                s, [&](RadixCache& c) { return c.Insert(t.data(), t.size(), p.data(), p.size()); });
            return MakeResult(Types().insert, out.cached_length, out.node);
          },
          py::arg("tokens"), py::arg("pages"), radix_docs::kInsert)
      .def(
          "acquire",
          [](PyRadixCache& s, py::handle tokens) {
            IdsInput t(tokens, "tokens", 0, kTokenMax);
            AcquireOutput out =
                Locked(s, [&](RadixCache& c) { return c.Acquire(t.data(), t.size()); });
            return MakeResult(Types().acquire, out.length, NewArray(out.pages), out.node);
          },
          py::arg("tokens"), radix_docs::kAcquire)
      .def(
          "commit",
          [](PyRadixCache& s, py::handle tokens, py::handle pages, py::handle pin) {
            IdsInput t(tokens, "tokens", 0, kTokenMax);
            IdsInput p(pages, "pages", 0, s.cache.num_pages() - 1);
            const int64_t h = AsHandle(pin);
            InsertOutput out = Locked(s, [&](RadixCache& c) {
              return c.Commit(t.data(), t.size(), p.data(), p.size(), h);
            });
            return MakeResult(Types().insert, out.cached_length, out.node);
          },
          py::arg("tokens"), py::arg("pages"), py::arg("pin"), radix_docs::kCommit)
      .def(
          "lock",
          [](PyRadixCache& s, py::handle node) {
            const int64_t h = AsHandle(node);
            Locked(s, [&](RadixCache& c) { c.Lock(h); });
          },
          py::arg("node"), radix_docs::kLock)
      .def(
          "unlock",
          [](PyRadixCache& s, py::handle node) {
            const int64_t h = AsHandle(node);
            Locked(s, [&](RadixCache& c) { c.Unlock(h); });
          },
          py::arg("node"), radix_docs::kUnlock)
      .def(
          "evict",
          [](PyRadixCache& s, py::handle num_pages) {
            const int64_t n = AsCount(num_pages, "evict: num_pages");
            return Locked(s, [&](RadixCache& c) { return c.Evict(n); });
          },
          py::arg("num_pages"), radix_docs::kEvict)
      .def(
          "free",
          [](PyRadixCache& s, py::handle pages) {
            IdsInput p(pages, "pages", 0, s.cache.num_pages() - 1);
            Locked(s, [&](RadixCache& c) { c.Free(p.data(), p.size()); });
          },
          py::arg("pages"), radix_docs::kFree)
      .def("reset", [](PyRadixCache& s) { Locked(s, [](RadixCache& c) { c.Reset(); }); },
           radix_docs::kReset)
      .def("stats",
           [](PyRadixCache& s) {
             CacheStats st = Locked(s, [](RadixCache& c) { return c.Stats(); });
             return MakeResult(Types().stats, st.capacity, st.free, st.evictable, st.locked,
                               st.held, st.hit_tokens, st.miss_tokens, st.nodes);
           },
           "Returns the page accounting and hit counters (see `CacheStats`).")
      .def("check", [](PyRadixCache& s) { Locked(s, [](RadixCache& c) { c.Check(); }); },
           radix_docs::kCheck);
  m.def(
      "_radix_result_types",
      [](py::object match, py::object insert, py::object acquire, py::object stats) {
        Types() = ResultTypes{std::move(match), std::move(insert), std::move(acquire),
                              std::move(stats)};
      },
      "Registers the result classes RadixCache methods return (called by o1search.radix_cache).");
}

}  // namespace o1search::bindings
