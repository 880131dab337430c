// _shmstate: the CPython extension behind the `shmstate` package. Every call goes straight to
// the library's proxies on the segment mapped in this process (no socket); the pure-Python
// package (python/shmstate/) adds the friendlier surface on top.
//
// Every binding takes its arguments as Python objects and converts each with convert.h before
// anything reaches the library, so a wrong argument is a shmstate.InvalidArgument (or
// InvalidType) and never a crash or a foreign exception (tests/python/test_argument_fuzz.py).
//
// This file registers the module's families, one register_<kind>.cc each (handles.h), and its
// module-level functions: the limits and the argument rules the pure-Python backend shares.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <limits>
#include <string>

#include "convert.h"
#include "errors.h"
#include "handles.h"
#include "register_manager.h"
#include "register_process_lock.h"
#include "register_sync.h"
#include "register_tx.h"
#include "shm/limits.h"
#include "shm/ndarray.h"
#include "shm/segment.h"

namespace py = pybind11;

PYBIND11_MODULE(_shmstate, m) {
  using namespace shmstate;
  m.doc() = "In-process access to a running shmstate server's shared memory (see shmstate).";
  // What attach() checks against the segment (docs/deploy.md#upgrades).
  m.attr("LAYOUT_VERSION") = shm::Segment::LayoutVersion();
  // The library's size limits (shm/limits.h), the one table every front end reads.
  py::dict limits;
  limits["key"] = shm::limits::kMaxKey;
  limits["value"] = shm::limits::kMaxValue;
  limits["content_type"] = shm::limits::kMaxContentType;
  limits["object_name"] = shm::limits::kMaxObjectName;
  limits["page"] = shm::limits::kMaxPage;
  limits["list_items"] = shm::limits::kMaxListItems;
  limits["list_item_bytes"] = shm::limits::kMaxListItemBytes;
  limits["array_bytes"] = shm::limits::kMaxArrayBytes;
  limits["ttl_ms"] = shm::limits::kMaxTtlMs;
  limits["session_bytes"] = shm::limits::kMaxSessionBytes;
  limits["session_field"] = shm::limits::kMaxSessionField;
  m.attr("LIMITS") = limits;

  RegisterErrors(m);

  using py::arg;
  // The argument rules of convert.h for the pure-Python backend (shmstate/redis_backend.py), so
  // that both backends accept and refuse the same arguments with the same errors.
  m.def("_to_text", [](py::handle h, const std::string& what) { return ToText(h, what.c_str()); });
  m.def("_to_key",
        [](py::handle h, const std::string& what) { return Bytes(ToKey(h, what.c_str())); });
  m.def("_to_bytes",
        [](py::handle h, const std::string& what) { return Bytes(ToBytes(h, what.c_str())); });
  m.def("_to_int64",
        [](py::handle h, const std::string& what) { return ToInt64(h, what.c_str()); });
  m.def(
      "_to_uint64",
      [](py::handle h, const std::string& what, uint64_t max) {
        return ToUInt64(h, what.c_str(), max);
      },
      arg("h"), arg("what"), arg("max") = std::numeric_limits<uint64_t>::max());
  m.def("_to_ttl_ms", [](py::handle h, const std::string& what, bool none_is_no_expiry) {
    return ToTtlMs(h, what.c_str(), none_is_no_expiry);
  });
  m.def("_to_wait_s", [](py::handle h, const std::string& what, double none_s, double max_s) {
    auto ms = [](double s) { return std::chrono::milliseconds(std::llround(s * 1000)); };
    return ToWait(h, what.c_str(), ms(none_s), ms(max_s)).count() / 1000.0;
  });
  m.def("_to_scalar", [](py::handle h, const std::string& what) {
    return FromScalar(ToScalar(h, what.c_str()));
  });
  m.def("_to_element_index", [](py::handle h) { return ToElementIndex(h); });
  m.def("_to_shape", [](py::handle h) { return ToShape(h); });
  m.def("_to_dtype_name", [](py::handle h) { return std::string(shm::DTypeName(ToDType(h))); });
  // None for a basic key, else what makes it advanced ("a boolean mask", ...).
  m.def("_advanced_form", [](py::handle h) -> py::object {
    ArrayKey key = ToArrayKey(h);
    return key.advanced ? py::object(py::str(key.advanced_form)) : py::object(py::none());
  });

  RegisterCounter(m);
  RegisterDict(m);
  RegisterList(m);
  RegisterLock(m);
  RegisterSessions(m);
  RegisterArray(m);
  RegisterClient(m);

  // The C-API fast path of the wrappers' hot methods (shmstate/__init__.py calls it once).
  m.def(
      "_install_fast_paths",
      [](const py::type& counter_cls, const py::type& dict_cls, const py::type& list_cls,
         const py::type& lock_cls, const py::object& missing) {
        InstallCounterFastPaths(counter_cls);
        InstallDictFastPaths(dict_cls);
        InstallListFastPaths(list_cls);
        InstallLockFastPaths(lock_cls, missing);
      },
      arg("counter_cls"), arg("dict_cls"), arg("list_cls"), arg("lock_cls"), arg("missing"));

  RegisterSync(m);         // shmstate.Manager's blocking proxies (register_sync.cc).
  RegisterManager(m);      // Its hot paths and value records (register_manager.cc).
  RegisterProcessLock(m);  // Its Lock (register_process_lock.cc).
  RegisterTransaction(m);  // shmstate.Client.transaction (register_tx.cc).
}
