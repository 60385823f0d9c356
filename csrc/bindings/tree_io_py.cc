// SearchTree persistence and export: to_bytes / _load_bytes (bytes <-> SearchTree::ToBytes /
// FromBytes) and to_dict (SearchTree::Records as Python dicts and lists).
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <vector>

#include "o1search/tree.h"
#include "tree_py.h"

namespace o1search::bindings::tree_py {

namespace {

py::bytes ToBytes(PyTree& self) {
  std::string s = Unlocked(self, [](SearchTree& t) { return t.ToBytes(); });
  return py::bytes(s);
}

// Parses with the GIL released but without the tree's mutex (other threads keep using the
// tree meanwhile), then swaps the parsed state in under the mutex.
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

py::list ToList(const std::vector<int32_t>& v) {
  py::list out;
  for (int32_t x : v) out.append(x);
  return out;
}

py::dict ToDict(PyTree& self) {
  // Snapshot under the mutex without touching Python objects, then build the dict: building
  // Python objects can run arbitrary code (GC finalizers) that may switch threads, and a thread
  // holding the GIL must never wait for a mutex held by one that needs the GIL back.
  std::vector<NodeRecord> rows = Unlocked(self, [](SearchTree& t) { return t.Records(); });
  py::list nodes;
  for (const NodeRecord& r : rows) {
    py::dict d;
    d["id"] = r.id;
    d["parent"] = r.parent;
    d["depth"] = r.depth;
    d["tokens"] = ToList(r.tokens);
    d["prior"] = r.prior;
    d["visits"] = r.visits;
    d["value"] = r.value;
    d["reward"] = r.reward;
    d["terminal"] = r.terminal;
    d["children"] = ToList(r.children);
    nodes.append(d);
  }
  py::dict out;
  out["root"] = 0;
  out["nodes"] = nodes;
  return out;
}

}  // namespace

void BindTreeIo(TreeClass& cls) {
  cls.def("to_bytes", &ToBytes,
          "Serialize the whole state (versioned, checksummed); see SearchTree.from_bytes.")
      .def("_load_bytes", &LoadBytes, py::arg("data"),
           "Replace this tree's state with a to_bytes() serialization (ValueError if invalid).")
      .def("to_dict", &ToDict,
           "{'root': 0, 'nodes': [{'id', 'parent', 'depth', 'tokens', 'prior', 'visits', "
           "'value', 'reward', 'terminal', 'children'}, ...]} for live nodes in id order.");
}

}  // namespace o1search::bindings::tree_py
