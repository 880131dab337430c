// The module's name for the library's attachment (shm/attachment.h), for its source files.
#ifndef SHMSTATE_PYTHON_ATTACHMENT_H_
#define SHMSTATE_PYTHON_ATTACHMENT_H_

#include "shm/attachment.h"

namespace shmstate {

using shm::Attachment;

}  // namespace shmstate

#endif  // SHMSTATE_PYTHON_ATTACHMENT_H_
