// Registration of shmstate.Manager's native hot paths and value records (register_manager.cc).
#ifndef SHMSTATE_PYTHON_REGISTER_MANAGER_H_
#define SHMSTATE_PYTHON_REGISTER_MANAGER_H_

#include <pybind11/pybind11.h>

namespace shmstate {

void RegisterManager(pybind11::module_& m);

}  // namespace shmstate

#endif  // SHMSTATE_PYTHON_REGISTER_MANAGER_H_
