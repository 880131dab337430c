// Registration of the bindings behind shmstate.Manager's blocking proxies (register_sync.cc).
#ifndef SHMSTATE_PYTHON_REGISTER_SYNC_H_
#define SHMSTATE_PYTHON_REGISTER_SYNC_H_

#include <pybind11/pybind11.h>

namespace shmstate {

void RegisterSync(pybind11::module_& m);

}  // namespace shmstate

#endif  // SHMSTATE_PYTHON_REGISTER_SYNC_H_
