// _MgrLock: a shm::ProcessLock bound to an attachment, and the native acquire(), release(),
// locked() and `with` of shmstate.Manager().Lock()'s proxy (manager.py, _ProcessLockProxy).
//
// An uncontended acquire and release are one compare-and-swap each under the GIL (Bound::RunFast);
// a held lock is waited for without the GIL, in slices (bound.h's kWaitSlice) so that a generation
// move never waits for a sleeper and signals (Ctrl-C) are handled between slices. The library
// decides everything else (the take-over of a dead holder's lock, the waiters flag, the wake).
#include "register_process_lock.h"

#include <pybind11/pybind11.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "attachment.h"
#include "bound.h"
#include "convert.h"
#include "fast_call.h"
#include "shm/process_lock.h"

namespace py = pybind11;

namespace shmstate {
namespace {

class MgrLock {
 public:
  static inline PyTypeObject* type = nullptr;  // Its Python class, set by Install.

  // Opens the lock `name`; with `create`, creates it if missing (the first open only: a lock
  // deleted later is not created again when the handle follows the server to a new generation).
  MgrLock(py::handle server, py::handle name, bool create)
      : bound_(SharedAttachment(server), [n = ToText(name, "name"), create](
                                             shm::Segment* seg, shm::ProcessLock* lock) mutable {
          const shm::OpenMode mode =
              create ? shm::OpenMode::kCreateIfMissing : shm::OpenMode::kOpenExisting;
          shm::Status s = shm::ProcessLock::Open(seg, n, mode, lock);
          if (s.ok()) create = false;
          return s;
        }) {}

  // One compare-and-swap under the GIL.
  bool TryAcquire() {
    bool acquired = false;
    bound_.RunFast([&](shm::ProcessLock& lock) { return lock.TryAcquire(&acquired); });
    return acquired;
  }

  // Waits without the GIL for at most `timeout` (forever when empty), slice by slice; handles
  // signals between slices. *owner_died when the lock was taken from a dead holder.
  bool Acquire(std::optional<std::chrono::nanoseconds> timeout, bool* owner_died) {
    using Clock = std::chrono::steady_clock;
    const Clock::time_point deadline =
        timeout ? Clock::now() + std::chrono::duration_cast<Clock::duration>(*timeout)
                : Clock::time_point::max();
    bool acquired = false;
    while (true) {
      const Clock::duration left = deadline - Clock::now();
      const auto slice = std::clamp<Clock::duration>(left, Clock::duration::zero(), kWaitSlice);
      bound_.Run([&](shm::ProcessLock& lock) { return lock.Acquire(slice, &acquired, owner_died); },
                 /*release_gil=*/slice.count() > 0);
      if (acquired || left <= kWaitSlice) return acquired;
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    }
  }

  // False when it was not held (the caller raises "release unlocked lock").
  bool Release() {
    bool released = true;
    bound_.RunFast([&](shm::ProcessLock& lock) {
      shm::Status s = lock.Release();
      if (!s.IsConflict()) return s;
      released = false;
      return shm::Status::OK();
    });
    return released;
  }

  bool Locked() {
    bool locked = false;
    bound_.RunFast([&](shm::ProcessLock& lock) { return lock.Locked(&locked); });
    return locked;
  }

  pid_t Holder() {
    pid_t pid = 0;
    bound_.RunFast([&](shm::ProcessLock& lock) { return lock.Holder(&pid); });
    return pid;
  }

 private:
  Bound<shm::ProcessLock> bound_;
};

// Offsets of the proxy's __slots__ members: its handle (`_h`) and `owner_died`.
Py_ssize_t g_h_slot = 0;
Py_ssize_t g_owner_died_slot = 0;

MgrLock* LockOf(PyObject* self) {
  PyObject* h = SlotValue(self, g_h_slot);
  if (h == nullptr) return nullptr;
  MgrLock* lock = CppOf<MgrLock>(h, MgrLock::type);
  if (lock == nullptr) PyErr_SetString(PyExc_TypeError, "not a shmstate.Manager lock handle");
  return lock;
}

// acquire() and `with`: one compare-and-swap, else the wait; acquire(blocking, timeout) in any
// other form goes to the Python method (_acquire_slow: the stdlib's argument rules), which calls
// acquire_for.
PyObject* LockAcquire(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  if (nargs != 0 || kwnames != nullptr) return Slow(self, "_acquire_slow", args, nargs, kwnames);
  MgrLock* lock = LockOf(self);
  if (lock == nullptr) return nullptr;
  return Guarded([&]() -> PyObject* {
    bool died = false;
    if (!lock->TryAcquire() && !lock->Acquire(std::nullopt, &died)) Py_RETURN_FALSE;
    SetSlotBool(self, g_owner_died_slot, died);
    Py_RETURN_TRUE;
  });
}

PyObject* LockRelease(PyObject* self, PyObject*) {
  MgrLock* lock = LockOf(self);
  if (lock == nullptr) return nullptr;
  return Guarded([&]() -> PyObject* {
    if (!lock->Release()) {
      PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
      return nullptr;
    }
    Py_RETURN_NONE;
  });
}

PyObject* LockExit(PyObject* self, PyObject* const*, Py_ssize_t) {
  return LockRelease(self, nullptr);
}

PyObject* LockLocked(PyObject* self, PyObject*) {
  MgrLock* lock = LockOf(self);
  if (lock == nullptr) return nullptr;
  return Guarded([&] { return PyBool_FromLong(lock->Locked() ? 1 : 0); });
}

PyMethodDef kLockFast[] = {
    {"acquire", AsCFunction(LockAcquire), METH_FASTCALL | METH_KEYWORDS,
     "acquire(blocking=True, timeout=None) -> bool"},
    {"release", reinterpret_cast<PyCFunction>(LockRelease), METH_NOARGS, "release()"},
    {"locked", reinterpret_cast<PyCFunction>(LockLocked), METH_NOARGS, "Whether it is held."},
    {"__enter__", AsCFunction(LockAcquire), METH_FASTCALL | METH_KEYWORDS, "acquire()"},
    {"__exit__", AsCFunction(LockExit), METH_FASTCALL, "release()"},
    {nullptr, nullptr, 0, nullptr}};

// A timeout in seconds (None, or decades: forever) as a duration; InvalidArgument below 0 or NaN,
// InvalidType for a non-number (convert.h's rules).
std::optional<std::chrono::nanoseconds> TimeoutOf(py::handle timeout) {
  if (timeout.is_none()) return std::nullopt;
  const double seconds = ToDouble(timeout, "timeout");
  if (!(seconds >= 0)) {
    RaiseInvalid("timeout must be a number of seconds >= 0, not " +
                 py::repr(timeout).cast<std::string>());
  }
  if (seconds > 1e9) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::duration<double>(seconds));
}

}  // namespace

void RegisterProcessLock(py::module_& m) {
  py::class_<MgrLock, std::shared_ptr<MgrLock>>(m, "_MgrLock")
      .def(py::init<py::handle, py::handle, bool>(), py::arg("server"), py::arg("name"),
           py::arg("create") = false)
      .def(
          "acquire_for",
          [](MgrLock& lock, py::handle timeout) {
            std::optional<std::chrono::nanoseconds> wait = TimeoutOf(timeout);
            bool died = false;
            bool acquired = lock.TryAcquire() || lock.Acquire(wait, &died);
            return py::make_tuple(acquired, acquired && died);
          },
          py::arg("timeout"),
          "(acquired, owner_died): waits at most `timeout` seconds (None: forever).")
      .def(
          "release", [](MgrLock& lock) { return lock.Release(); },
          "Frees the lock; False if it was not held.")
      .def("locked", &MgrLock::Locked)
      .def("holder", &MgrLock::Holder, "The holder's pid, 0 when free.");
  m.def(
      "_install_process_lock_fast_paths",
      [](const py::type& cls) {
        MgrLock::type = reinterpret_cast<PyTypeObject*>(py::type::of<MgrLock>().ptr());
        g_h_slot = InheritedSlotOffset(cls, "_h");
        g_owner_died_slot = InheritedSlotOffset(cls, "owner_died");
        InstallMethods(cls, kLockFast);
      },
      py::arg("cls"));
}

}  // namespace shmstate
