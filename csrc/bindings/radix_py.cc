#include "bindings.h"
namespace o1search::bindings {
void BindRadixCache(pybind11::module_& m) {}
}
