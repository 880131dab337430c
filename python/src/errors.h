// The module's exceptions: shmstate.Error and one subclass per library status (NotFound is also
// a KeyError, Timeout a TimeoutError, ...), each with `code`, the status's name. Created once at
// import (RegisterErrors); a StatusError or TypeArgumentError thrown by a binding becomes one.
//
// Thread-compatibility: call with the GIL held.
#ifndef SHMSTATE_PYTHON_ERRORS_H_
#define SHMSTATE_PYTHON_ERRORS_H_

#include <pybind11/pybind11.h>

#include <string_view>

#include "shm/status.h"

namespace shmstate {

// Creates the exception classes in `m` and the translator of the module's C++ exceptions.
void RegisterErrors(pybind11::module_& m);

// The shmstate exception class of a library status.
const pybind11::object& ExceptionFor(shm::Status::Code code);

// Sets the shmstate exception of `status` (for C-API methods, which return null after it).
void SetStatusError(const shm::Status& status);

// Sets shmstate.InvalidType with `message`.
void SetInvalidTypeError(std::string_view message);

}  // namespace shmstate

#endif  // SHMSTATE_PYTHON_ERRORS_H_
