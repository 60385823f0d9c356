// Entry points of the per-concept binding files; module.cc calls each once.
#pragma once

#include <pybind11/pybind11.h>

namespace o1search::bindings {

void BindSearchTree(pybind11::module_& m);   // tree_py.cc (+ tree_select_py.cc, tree_io_py.cc)
void BindRadixCache(pybind11::module_& m);   // radix_py.cc

}  // namespace o1search::bindings
