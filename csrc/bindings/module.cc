// The o1search._core extension: exception types, build information, and the classes bound in
// tree_py.cc and radix_py.cc. Users import `o1search`, never this module.
#include <pybind11/pybind11.h>

#include "bindings.h"
#include "o1search/error.h"

#ifndef O1SEARCH_VERSION
#define O1SEARCH_VERSION "0.0.0+unknown"
#endif
#ifndef O1SEARCH_CUDA_BUILT
#define O1SEARCH_CUDA_BUILT 0
#endif
#ifndef O1SEARCH_SANITIZE_FLAGS
#define O1SEARCH_SANITIZE_FLAGS ""
#endif

namespace py = pybind11;

namespace {

PyObject* NewException(const char* name, PyObject* bases, const char* doc) {
  PyObject* exc = PyErr_NewExceptionWithDoc(name, doc, bases, nullptr);
  if (exc == nullptr) throw py::error_already_set();
  return exc;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "o1search native core: SearchTree, RadixCache (private; import o1search instead)";

  // One error root; Python code can catch O1SearchError or a subclass.
  static PyObject* root = NewException("o1search.O1SearchError", PyExc_Exception,
                                       "Root of every o1search-specific error.");
  static PyObject* oop = NewException("o1search.OutOfPagesError", root,
                                      "The KV page pool cannot satisfy an allocation, even after "
                                      "evicting every unlocked page.");
  py::tuple stale_bases = py::make_tuple(py::handle(root), py::handle(PyExc_ValueError));
  static PyObject* stale = NewException("o1search.StaleHandleError", stale_bases.ptr(),
                                        "A node handle or id that no longer refers to a live node.");
  static PyObject* internal = NewException("o1search.InternalError", root,
                                           "An internal invariant was broken (a bug in o1search).");
  m.attr("O1SearchError") = py::handle(root);
  m.attr("OutOfPagesError") = py::handle(oop);
  m.attr("StaleHandleError") = py::handle(stale);
  m.attr("InternalError") = py::handle(internal);

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const o1search::OutOfPagesError& e) {
      PyErr_SetString(oop, e.what());
    } catch (const o1search::StaleHandleError& e) {
      PyErr_SetString(stale, e.what());
    } catch (const o1search::InternalError& e) {
      PyErr_SetString(internal, e.what());
    } catch (const o1search::Error& e) {
      PyErr_SetString(root, e.what());
    }
    // std::invalid_argument → ValueError, std::out_of_range → IndexError, std::bad_alloc →
    // MemoryError are pybind11's own translations.
  });

  m.attr("__version__") = O1SEARCH_VERSION;
  m.attr("cuda_built") = static_cast<bool>(O1SEARCH_CUDA_BUILT);
  m.attr("sanitize") = O1SEARCH_SANITIZE_FLAGS;

  o1search::bindings::BindSearchTree(m);
  o1search::bindings::BindRadixCache(m);
}
