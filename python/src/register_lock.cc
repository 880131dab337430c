// _Lock: a shm::LeaseLock bound to an attachment, and the fast path of shmstate.Lock's acquire,
// release and `with` (handles.h).
#include <pybind11/pybind11.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include "bound.h"
#include "convert.h"
#include "errors.h"
#include "fast_call.h"
#include "handles.h"
#include "shm/lease_lock.h"

namespace py = pybind11;
using shm::Status;

namespace shmstate {
namespace {

class PyLock {
 public:
  PyLock(std::shared_ptr<Attachment> a, std::string name)
      : name_(name), bound_(std::move(a), [name](shm::Segment* seg, shm::LeaseLock* l) {
          return shm::LeaseLock::Open(seg, name, shm::OpenMode::kCreateIfMissing, l);
        }) {}

  // The token, or None when still held by someone else after `timeout` seconds.
  py::object Acquire(const py::handle& ttl, const py::handle& timeout,
                     const py::handle& owner_arg) {
    int64_t ttl_ms = ToTtlMs(ttl, "ttl", /*none_is_no_expiry=*/false);
    auto total = ToWait(timeout, "timeout", shm::LeaseLock::kMaxWait, shm::LeaseLock::kMaxWait);
    std::string owner = ToText(owner_arg, "owner");
    uint64_t token = 0;
    bool got = WaitInSlices(total, [&](auto slice) {
      bool held_by_other = false;
      bound_.Run(
          [&](shm::LeaseLock& l) {
            int64_t expires = 0;
            Status s = l.Acquire(ttl_ms, slice, owner, &token, &expires);
            held_by_other = s.IsConflict();
            return held_by_other ? Status::OK() : s;
          },
          /*release_gil=*/slice.count() > 0);
      return !held_by_other;
    });
    return got ? py::object(py::int_(token)) : py::object(py::none());
  }
  bool Release(const py::handle& token_arg) {
    uint64_t token = ToUInt64(token_arg, "token");
    bool released = false;
    bound_.Run([&](shm::LeaseLock& l) {
      Status s = l.Release(token);
      released = s.ok();
      return s.IsConflict() ? Status::OK() : s;
    });
    return released;
  }
  bool Refresh(const py::handle& token_arg, const py::handle& ttl) {
    uint64_t token = ToUInt64(token_arg, "token");
    int64_t ttl_ms = ToTtlMs(ttl, "ttl", /*none_is_no_expiry=*/false);
    bool refreshed = false;
    bound_.Run([&](shm::LeaseLock& l) {
      Status s = l.Refresh(token, ttl_ms);
      refreshed = s.ok();
      return s.IsConflict() ? Status::OK() : s;
    });
    return refreshed;
  }
  // Acquire's arguments, converted in its order; one try under the GIL without a wait first
  // (the lease is free: no GIL release), else Acquire itself. The token as an int, or None.
  PyObject* AcquireFast(PyObject* ttl, PyObject* timeout, PyObject* owner_arg) {
    int64_t ttl_ms = ToTtlMs(ttl, "ttl", /*none_is_no_expiry=*/false);
    auto total = ToWait(timeout, "timeout", shm::LeaseLock::kMaxWait, shm::LeaseLock::kMaxWait);
    if (!PyUnicode_CheckExact(owner_arg) || !PyUnicode_IS_COMPACT_ASCII(owner_arg)) {
      return Acquire(ttl, timeout, owner_arg).release().ptr();  // ToText's rules and errors.
    }
    std::string_view owner(static_cast<const char*>(PyUnicode_DATA(owner_arg)),
                           static_cast<size_t>(PyUnicode_GET_LENGTH(owner_arg)));
    uint64_t token = 0;
    bool held_by_other = false;
    bound_.RunFast([&](shm::LeaseLock& l) {
      int64_t expires = 0;
      Status s = l.Acquire(ttl_ms, std::chrono::milliseconds(0), owner, &token, &expires);
      held_by_other = s.IsConflict();
      return held_by_other ? Status::OK() : s;
    });
    if (!held_by_other) return PyLong_FromUnsignedLongLong(token);
    if (total.count() == 0) Py_RETURN_NONE;
    return Acquire(ttl, timeout, owner_arg).release().ptr();
  }
  bool ReleaseFast(PyObject* token_arg) {
    uint64_t token = ToUInt64(token_arg, "token");
    bool released = false;
    bound_.RunFast([&](shm::LeaseLock& l) {
      Status s = l.Release(token);
      released = s.ok();
      return s.IsConflict() ? Status::OK() : s;
    });
    return released;
  }
  py::dict Info() {
    shm::LeaseInfo info;
    bound_.Run([&](shm::LeaseLock& l) { return l.Get(&info); });
    py::dict out;
    out["held"] = info.held;
    out["owner"] = info.owner;
    out["expires_at_ms"] = info.expires_at_ms;
    out["remaining_ms"] = info.remaining_ms;
    out["acquisitions"] = info.acquisitions;
    return out;
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  Bound<shm::LeaseLock> bound_;
};

// The native type, the wrapper class shmstate.Lock, where it keeps its handle and fields, and
// its Python methods for handles of another backend.
struct LockFastPath {
  PyTypeObject* native = nullptr;   // _Lock
  PyTypeObject* wrapper = nullptr;  // shmstate.Lock
  // Lock._k, .ttl, .timeout, .owner, .token
  Py_ssize_t slot = 0, ttl = 0, timeout = 0, owner = 0, token = 0;
  PyObject* missing = nullptr;  // shmstate._MISSING: Lock.acquire's "timeout not given".
  PyObject* python_acquire = nullptr;
  PyObject* python_release = nullptr;
};
LockFastPath g_fast;

// Raises shmstate.Timeout as Lock.acquire does when the lease stayed taken.
void RaiseLockTimeout(PyLock* lock, PyObject* wait) {
  py::str name(lock->name());
  PyObject* message = PyUnicode_FromFormat("lock %R still held after %S s", name.ptr(), wait);
  if (message == nullptr) throw py::error_already_set();
  PyObject* error = PyObject_CallOneArg(ExceptionFor(Status::Code::kTimeout).ptr(), message);
  Py_DECREF(message);
  if (error == nullptr) throw py::error_already_set();
  PyErr_SetObject(ExceptionFor(Status::Code::kTimeout).ptr(), error);
  Py_DECREF(error);
  throw py::error_already_set();
}

// acquire(*, ttl=None, timeout=<the lock's>) -> int: the token (also in .token).
PyObject* LockAcquire(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* parsed[2] = {nullptr, nullptr};
  if ((nargs != 0 || kwnames != nullptr) &&
      !ParseArgs("acquire", args, nargs, kwnames, {"ttl", "timeout"}, 0, parsed, 0)) {
    return nullptr;
  }
  PyObject* native = SlotValue(self, g_fast.slot);
  if (native == nullptr) return nullptr;
  PyLock* lock = CppOf<PyLock>(native, g_fast.native);
  if (lock == nullptr) return CallPython(g_fast.python_acquire, self, args, nargs, kwnames);
  PyObject* ttl =
      parsed[0] != nullptr && parsed[0] != Py_None ? parsed[0] : SlotValue(self, g_fast.ttl);
  PyObject* wait = parsed[1] != nullptr && parsed[1] != g_fast.missing
                       ? parsed[1]
                       : SlotValue(self, g_fast.timeout);
  PyObject* owner = SlotValue(self, g_fast.owner);
  if (ttl == nullptr || wait == nullptr || owner == nullptr) return nullptr;
  return Guarded([&] {
    PyObject* token = lock->AcquireFast(ttl, wait, owner);
    if (token == Py_None) {
      Py_DECREF(token);
      RaiseLockTimeout(lock, wait);
    }
    SetSlotValue(self, g_fast.token, token);
    return token;
  });
}

// release() -> bool: False if the lease was no longer ours (or never taken).
PyObject* LockRelease(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  if (nargs != 0 || (kwnames != nullptr && PyTuple_GET_SIZE(kwnames) != 0)) {
    PyErr_SetString(PyExc_TypeError, "release() takes no arguments");
    return nullptr;
  }
  PyObject* native = SlotValue(self, g_fast.slot);
  if (native == nullptr) return nullptr;
  PyLock* lock = CppOf<PyLock>(native, g_fast.native);
  if (lock == nullptr) return CallPython(g_fast.python_release, self, args, nargs, kwnames);
  PyObject** field = reinterpret_cast<PyObject**>(reinterpret_cast<char*>(self) + g_fast.token);
  PyObject* token = *field;  // Taken out first, as the slow path does: None even if it raises.
  Py_INCREF(Py_None);
  *field = Py_None;
  py::object owned = py::reinterpret_steal<py::object>(token);
  if (token == nullptr || token == Py_None) Py_RETURN_FALSE;
  return Guarded([&] { return PyBool_FromLong(lock->ReleaseFast(token)); });
}

PyObject* LockEnter(PyObject* self, PyObject*) {
  // self.acquire(): straight to the descriptor unless a subclass may have replaced it.
  PyObject* token = Py_TYPE(self) == g_fast.wrapper ? LockAcquire(self, nullptr, 0, nullptr)
                                                    : PyObject_CallMethod(self, "acquire", nullptr);
  if (token == nullptr) return nullptr;
  Py_DECREF(token);
  Py_INCREF(self);
  return self;
}

PyObject* LockExit(PyObject* self, PyObject* const*, Py_ssize_t) {
  PyObject* released = Py_TYPE(self) == g_fast.wrapper
                           ? LockRelease(self, nullptr, 0, nullptr)
                           : PyObject_CallMethod(self, "release", nullptr);
  if (released == nullptr) return nullptr;
  Py_DECREF(released);
  Py_RETURN_NONE;
}

PyMethodDef kLockFast[] = {
    {"acquire", AsCFunction(LockAcquire), METH_FASTCALL | METH_KEYWORDS,
     "acquire(*, ttl=None, timeout=<the lock's>) -> int: takes the lease; Timeout if it is still "
     "held after `timeout` s."},
    {"release", AsCFunction(LockRelease), METH_FASTCALL | METH_KEYWORDS,
     "release() -> bool: gives the lease back; False if it was no longer ours."},
    {"__enter__", LockEnter, METH_NOARGS, "acquire(); returns the lock."},
    {"__exit__", AsCFunction(LockExit), METH_FASTCALL, "release()."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

py::object NewLock(const std::shared_ptr<Attachment>& attachment, const py::handle& name) {
  return py::cast(std::make_shared<PyLock>(attachment, ToText(name, "name")));
}

void RegisterLock(py::module_& m) {
  using py::arg;
  py::class_<PyLock, std::shared_ptr<PyLock>>(m, "_Lock")
      .def("acquire", &PyLock::Acquire, arg("ttl"), arg("timeout") = py::none(), arg("owner") = "")
      .def("release", &PyLock::Release, arg("token"))
      .def("refresh", &PyLock::Refresh, arg("token"), arg("ttl"))
      .def("info", &PyLock::Info)
      .def_property_readonly("name", &PyLock::name);
}

void InstallLockFastPaths(const py::type& lock_cls, const py::object& missing) {
  g_fast.native = reinterpret_cast<PyTypeObject*>(py::type::of<PyLock>().ptr());
  g_fast.wrapper = reinterpret_cast<PyTypeObject*>(lock_cls.ptr());
  g_fast.slot = SlotOffset(lock_cls, "_k");
  g_fast.ttl = SlotOffset(lock_cls, "ttl");
  g_fast.timeout = SlotOffset(lock_cls, "timeout");
  g_fast.owner = SlotOffset(lock_cls, "owner");
  g_fast.token = SlotOffset(lock_cls, "token");
  g_fast.missing = missing.inc_ref().ptr();
  g_fast.python_acquire = PythonMethod(lock_cls, "acquire");
  g_fast.python_release = PythonMethod(lock_cls, "release");
  InstallMethods(lock_cls, kLockFast);
}

}  // namespace shmstate
