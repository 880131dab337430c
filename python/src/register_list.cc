// _List: a shm::List bound to an attachment, and the fast path of shmstate.List's push and pop
// (handles.h).
#include <pybind11/pybind11.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bound.h"
#include "convert.h"
#include "fast_call.h"
#include "handles.h"
#include "method_tables.h"
#include "shm/list.h"

namespace py = pybind11;
using shm::Status;

namespace shmstate {
namespace {

class PyList {
 public:
  PyList(std::shared_ptr<Attachment> a, std::string name, const shm::ListOptions& options)
      : name_(name), bound_(std::move(a), [name, options](shm::Segment* seg, shm::List* l) {
          return shm::List::Open(seg, name, shm::OpenMode::kCreateIfMissing, options, l);
        }) {}

  uint64_t Push(const py::handle& item, const py::handle& end) {
    std::string v = ToBytes(item, "item");
    shm::List::End e = ToListEnd(end);
    uint64_t length = 0;
    bound_.Run([&](shm::List& l) { return l.Push(e, v, &length); });
    return length;
  }
  py::object Pop(const py::handle& wait, const py::handle& end) {
    auto total = ToWait(wait, "wait", std::chrono::milliseconds(0), shm::List::kMaxWait);
    shm::List::End e = ToListEnd(end);
    std::string item;
    // One place in the list's line for the whole wait, across its slices (arrival order).
    shm::ListPlace place(std::chrono::steady_clock::now() + total);
    shm::ListPlace* line = total.count() > 0 ? &place : nullptr;
    bool got = WaitInSlices(total, [&](auto slice) {
      bool popped = false;
      bound_.Run([&](shm::List& l) { return l.Pop(e, slice, &item, &popped, line); },
                 /*release_gil=*/slice.count() > 0);
      return popped;
    });
    return got ? py::object(Bytes(item)) : py::object(py::none());
  }
  uint64_t Length() {
    uint64_t length = 0;
    bound_.Run([&](shm::List& l) { return l.Length(&length); });
    return length;
  }
  py::list Range(const py::handle& start_arg, const py::handle& stop_arg) {
    int64_t start = ToInt64(start_arg, "start");
    int64_t stop = ToInt64(stop_arg, "stop");
    std::vector<std::string> items;
    bound_.Run([&](shm::List& l) { return l.Range(start, stop, &items); });
    py::list out;
    for (const std::string& item : items) out.append(Bytes(item));
    return out;
  }
  uint64_t PushFast(shm::List::End end, std::string_view item) {
    uint64_t length = 0;
    bound_.RunFast([&](shm::List& l) { return l.Push(end, item, &length); });
    return length;
  }
  // pop() without a wait: the item as a new bytes, or null when the list is empty (no Python
  // error set then). The item lands in scratch_ (its buffer reused from call to call).
  PyObject* PopFast(shm::List::End end) {
    bool popped = false;
    bound_.RunFast([&](shm::List& l) {
      return l.Pop(end, std::chrono::milliseconds(0), &scratch_, &popped, nullptr);
    });
    if (!popped) return nullptr;
    PyObject* item =
        PyBytes_FromStringAndSize(scratch_.data(), static_cast<Py_ssize_t>(scratch_.size()));
    if (item == nullptr) throw py::error_already_set();
    return item;
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  Bound<shm::List> bound_;
  std::string scratch_;  // PopFast's; the GIL guards it.
};

// The native type, where shmstate.List keeps its handle (List._l), and its Python methods for
// handles of another backend.
PyTypeObject* g_native = nullptr;
Py_ssize_t g_slot = 0;
PyObject* g_python_push = nullptr;
PyObject* g_python_pop = nullptr;

// `end` ("left"/"right") compared in place; anything else through ToListEnd (its errors).
shm::List::End EndArg(PyObject* end, shm::List::End absent) {
  if (end == nullptr) return absent;
  if (PyUnicode_CheckExact(end) && PyUnicode_IS_COMPACT_ASCII(end)) {
    if (PyUnicode_CompareWithASCIIString(end, "left") == 0) return shm::List::End::kLeft;
    if (PyUnicode_CompareWithASCIIString(end, "right") == 0) return shm::List::End::kRight;
  }
  return ToListEnd(end);
}

// push(item, *, end="right") -> int
PyObject* ListPush(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* parsed[2];
  if (nargs == 1 && kwnames == nullptr) {
    parsed[0] = args[0];
    parsed[1] = nullptr;
  } else if (!ParseArgs("push", args, nargs, kwnames, {"item", "end"}, 1, parsed, 1)) {
    return nullptr;
  }
  PyObject* native = SlotValue(self, g_slot);
  if (native == nullptr) return nullptr;
  PyList* list = CppOf<PyList>(native, g_native);
  if (list == nullptr) return CallPython(g_python_push, self, args, nargs, kwnames);
  return Guarded([&] {
    BytesArg item(parsed[0], false, "item");  // The slow path's order: item, end.
    shm::List::End end = EndArg(parsed[1], shm::List::End::kRight);
    return PyLong_FromUnsignedLongLong(list->PushFast(end, item.view()));
  });
}

// pop(wait=None, *, end="left") -> bytes | None; a wait releases the GIL (the slow path's).
PyObject* ListPop(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* parsed[2] = {nullptr, nullptr};
  if ((nargs != 0 || kwnames != nullptr) &&
      !ParseArgs("pop", args, nargs, kwnames, {"wait", "end"}, 0, parsed, 1)) {
    return nullptr;
  }
  PyObject* native = SlotValue(self, g_slot);
  if (native == nullptr) return nullptr;
  PyList* list = CppOf<PyList>(native, g_native);
  if (list == nullptr) return CallPython(g_python_pop, self, args, nargs, kwnames);
  return Guarded([&]() -> PyObject* {
    PyObject* wait = parsed[0] == nullptr ? Py_None : parsed[0];
    if (wait != Py_None) {  // May block: the slow path, which waits without the GIL.
      py::object end =
          parsed[1] == nullptr ? py::str("left") : py::reinterpret_borrow<py::object>(parsed[1]);
      return list->Pop(wait, end).release().ptr();
    }
    PyObject* item = list->PopFast(EndArg(parsed[1], shm::List::End::kLeft));
    if (item != nullptr) return item;
    Py_RETURN_NONE;
  });
}

PyMethodDef kListFast[] = {
    {"push", AsCFunction(ListPush), METH_FASTCALL | METH_KEYWORDS,
     "push(item, *, end='right') -> int: adds `item` at `end`; returns the new length."},
    {"pop", AsCFunction(ListPop), METH_FASTCALL | METH_KEYWORDS,
     "pop(wait=None, *, end='left') -> bytes | None: removes the item at `end`, waiting up to "
     "`wait` seconds for one (the GIL is released while waiting)."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

py::object NewList(const std::shared_ptr<Attachment>& attachment, const py::handle& name,
                   const py::handle& max_items, const py::handle& max_item_bytes) {
  shm::ListOptions options = ToListOptions(max_items, max_item_bytes);
  return py::cast(std::make_shared<PyList>(attachment, ToText(name, "name"), options));
}

void RegisterList(py::module_& m) {
  py::class_<PyList, std::shared_ptr<PyList>> list(m, "_List");
  BindListMethods(list);
}

void InstallListFastPaths(const py::type& list_cls) {
  g_native = reinterpret_cast<PyTypeObject*>(py::type::of<PyList>().ptr());
  g_slot = SlotOffset(list_cls, "_l");
  g_python_push = PythonMethod(list_cls, "push");
  g_python_pop = PythonMethod(list_cls, "pop");
  InstallMethods(list_cls, kListFast);
}

}  // namespace shmstate
