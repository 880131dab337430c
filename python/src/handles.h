// The module's handle families, one register_<kind>.cc each: a native class bound to an
// attachment (Bound<Proxy>: every operation inside the segment's client gate, reopened by name
// after a generation move), its pybind11 registration, the function _Client opens it with, and
// for the hot kinds the C-API fast path of the pure-Python wrapper's methods.
//
// The fast paths: Counter.incr/value, Dict.get/__getitem__/__setitem__/__contains__/incr,
// List.push/pop and Lock.acquire/release/__enter__/__exit__ are C-API descriptors installed on
// the Python classes themselves (_install_fast_paths, called by shmstate/__init__.py): a call
// goes from the interpreter to the library with no pybind11 dispatch and no Python frame. A
// descriptor reads the wrapper's native handle from its __slots__ member, keys and values in
// place from a bytes (or ASCII str) argument, and runs through Bound::RunFast. Anything else
// takes the same converters (their messages), and a handle of another kind (the Redis backend's)
// runs the wrapper's own Python method, kept at install time, so arguments, results and errors
// are those of the slow path (fast_call.h).
//
// Thread-compatibility: everything here is called with the GIL held.
#ifndef SHMSTATE_PYTHON_HANDLES_H_
#define SHMSTATE_PYTHON_HANDLES_H_

#include <pybind11/pybind11.h>

#include <memory>

#include "attachment.h"

namespace shmstate {

// register_counter.cc: _Counter.
void RegisterCounter(pybind11::module_& m);
pybind11::object NewCounter(const std::shared_ptr<Attachment>& attachment,
                            const pybind11::handle& name, const pybind11::handle& init,
                            const pybind11::handle& ttl);
void InstallCounterFastPaths(const pybind11::type& counter_cls);

// register_dict.cc: _Dict.
void RegisterDict(pybind11::module_& m);
pybind11::object NewDict(const std::shared_ptr<Attachment>& attachment,
                         const pybind11::handle& name, const pybind11::handle& max_bytes,
                         const pybind11::handle& eviction, const pybind11::handle& default_ttl);
void InstallDictFastPaths(const pybind11::type& dict_cls);

// register_list.cc: _List.
void RegisterList(pybind11::module_& m);
pybind11::object NewList(const std::shared_ptr<Attachment>& attachment,
                         const pybind11::handle& name, const pybind11::handle& max_items,
                         const pybind11::handle& max_item_bytes);
void InstallListFastPaths(const pybind11::type& list_cls);

// register_lock.cc: _Lock. `missing` is shmstate._MISSING, Lock.acquire's "timeout not given".
void RegisterLock(pybind11::module_& m);
pybind11::object NewLock(const std::shared_ptr<Attachment>& attachment,
                         const pybind11::handle& name);
void InstallLockFastPaths(const pybind11::type& lock_cls, const pybind11::object& missing);

// register_sessions.cc: _Sessions.
void RegisterSessions(pybind11::module_& m);
pybind11::object NewSessions(const std::shared_ptr<Attachment>& attachment,
                             const pybind11::handle& name, const pybind11::handle& idle_ttl);

// register_array.cc: _Array. NewArray opens an existing array, or creates one when dtype and
// shape are given; NewArrayFromNumpy creates one holding a copy of `values`.
void RegisterArray(pybind11::module_& m);
pybind11::object NewArray(const std::shared_ptr<Attachment>& attachment,
                          const pybind11::handle& name, const pybind11::handle& dtype,
                          const pybind11::handle& shape, const pybind11::handle& fill);
pybind11::object NewArrayFromNumpy(const std::shared_ptr<Attachment>& attachment,
                                   const pybind11::handle& name, const pybind11::handle& values);

// register_client.cc: _Client, which opens all of the above.
void RegisterClient(pybind11::module_& m);

}  // namespace shmstate

#endif  // SHMSTATE_PYTHON_HANDLES_H_
