#include "bindings.h"
namespace o1search::bindings {
void BindSearchTree(pybind11::module_& m) {}
}
