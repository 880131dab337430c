// The library boundary: no exception thrown below a public call (std::bad_alloc while copying a
// value out into process memory, an unexpected pthread error) reaches the caller; it becomes a
// Status naming the operation.
#ifndef SHM_SRC_BOUNDARY_H_
#define SHM_SRC_BOUNDARY_H_

#include <exception>
#include <new>
#include <string>

#include "shm/status.h"

namespace shm {

template <class Fn>
Status CatchAtBoundary(const char* what, Fn&& fn) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    return Status::OutOfSpace(std::string(what) + ": out of process memory");
  } catch (const std::exception& e) {
    return Status::Internal(std::string(what) + ": " + e.what());
  }
}

// Every intent slot is claimed: more writing threads than the segment was laid out for.
inline Status NoIntentSlot() {
  return Status::OutOfSpace("no free intent slot (too many threads)");
}

}  // namespace shm

#endif  // SHM_SRC_BOUNDARY_H_
