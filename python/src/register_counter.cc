// _Counter: a shm::Counter bound to an attachment, and the fast path of shmstate.Counter's
// incr() and value (handles.h).
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <utility>

#include "bound.h"
#include "convert.h"
#include "fast_call.h"
#include "handles.h"
#include "method_tables.h"
#include "shm/counter.h"

namespace py = pybind11;
using shm::Status;

namespace shmstate {
namespace {

class PyCounter {
 public:
  PyCounter(std::shared_ptr<Attachment> a, std::string name, int64_t init, int64_t ttl_ms)
      : name_(name), bound_(std::move(a), [name, init, ttl_ms](shm::Segment* seg, shm::Counter* c) {
          shm::Counter::Options options;
          options.mode = shm::OpenMode::kCreateIfMissing;
          options.init = init;
          options.ttl_ms = ttl_ms;
          return shm::Counter::Open(seg, name, options, c);
        }) {}

  int64_t Incr(const py::handle& by_arg) {
    int64_t by = ToInt64(by_arg, "by");
    int64_t value = 0;
    bound_.Run([&](shm::Counter& c) { return c.Add(by, &value); });
    return value;
  }
  int64_t Value() {
    int64_t value = 0;
    bound_.Run([&](shm::Counter& c) { return c.Get(&value); });
    return value;
  }
  void Set(const py::handle& value_arg) {
    int64_t value = ToInt64(value_arg, "value");
    bound_.Run([&](shm::Counter& c) { return c.Set(value); });
  }
  bool Cas(const py::handle& expected_arg, const py::handle& desired_arg) {
    int64_t expected = ToInt64(expected_arg, "expected");
    int64_t desired = ToInt64(desired_arg, "value");
    bool swapped = false;
    bound_.Run([&](shm::Counter& c) {
      int64_t actual = 0;
      Status s = c.CompareAndSet(expected, desired, &actual);
      swapped = s.ok();
      return s.IsConflict() ? Status::OK() : s;
    });
    return swapped;
  }
  int64_t IncrFast(int64_t by) {
    int64_t value = 0;
    bound_.RunFast([&](shm::Counter& c) { return c.Add(by, &value); });
    return value;
  }
  int64_t ValueFast() {
    int64_t value = 0;
    bound_.RunFast([&](shm::Counter& c) { return c.Get(&value); });
    return value;
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  Bound<shm::Counter> bound_;
};

// The native type, and where shmstate.Counter keeps its handle (Counter._c).
PyTypeObject* g_native = nullptr;
Py_ssize_t g_slot = 0;

PyObject* CounterIncr(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* by = nullptr;
  if ((nargs != 0 || kwnames != nullptr) &&
      !ParseArgs("incr", args, nargs, kwnames, {"by"}, 0, &by)) {
    return nullptr;
  }
  PyObject* native = SlotValue(self, g_slot);
  if (native == nullptr) return nullptr;
  PyCounter* counter = CppOf<PyCounter>(native, g_native);
  if (counter == nullptr) {
    return by == nullptr ? PyObject_CallMethod(native, "incr", nullptr)
                         : PyObject_CallMethod(native, "incr", "(O)", by);
  }
  return Guarded([&] {
    return PyLong_FromLongLong(counter->IncrFast(by == nullptr ? 1 : Int64Arg(by, "by")));
  });
}

PyObject* CounterValue(PyObject* self, void*) {
  PyObject* native = SlotValue(self, g_slot);
  if (native == nullptr) return nullptr;
  PyCounter* counter = CppOf<PyCounter>(native, g_native);
  if (counter == nullptr) return PyObject_CallMethod(native, "value", nullptr);
  return Guarded([&] { return PyLong_FromLongLong(counter->ValueFast()); });
}

PyMethodDef kCounterFast[] = {
    {"incr", AsCFunction(CounterIncr), METH_FASTCALL | METH_KEYWORDS,
     "incr(by=1) -> int: adds `by` atomically and returns the new value."},
    {nullptr, nullptr, 0, nullptr}};
PyGetSetDef kCounterValue = {"value", CounterValue, nullptr, "The current value.", nullptr};

}  // namespace

py::object NewCounter(const std::shared_ptr<Attachment>& attachment, const py::handle& name,
                      const py::handle& init, const py::handle& ttl) {
  return py::cast(std::make_shared<PyCounter>(attachment, ToText(name, "name"),
                                              ToInt64(init, "init"), ToTtlMs(ttl, "ttl")));
}

void RegisterCounter(py::module_& m) {
  py::class_<PyCounter, std::shared_ptr<PyCounter>> counter(m, "_Counter");
  BindCounterMethods(counter);
}

void InstallCounterFastPaths(const py::type& counter_cls) {
  g_native = reinterpret_cast<PyTypeObject*>(py::type::of<PyCounter>().ptr());
  g_slot = SlotOffset(counter_cls, "_c");
  InstallMethods(counter_cls, kCounterFast);
  InstallGetSet(counter_cls, &kCounterValue);
}

}  // namespace shmstate
