// Registration of _MgrLock, shmstate.Manager().Lock()'s native handle (register_process_lock.cc).
#ifndef SHMSTATE_PYTHON_REGISTER_PROCESS_LOCK_H_
#define SHMSTATE_PYTHON_REGISTER_PROCESS_LOCK_H_

#include <pybind11/pybind11.h>

namespace shmstate {

void RegisterProcessLock(pybind11::module_& m);

}  // namespace shmstate

#endif  // SHMSTATE_PYTHON_REGISTER_PROCESS_LOCK_H_
