// FormatSize: a byte count for people, "64.0 MiB", "2.0 KiB", "10 bytes" (binary units), as
// every message of the library and the server writes sizes. Thread-safe.
#ifndef SHM_FORMAT_SIZE_H_
#define SHM_FORMAT_SIZE_H_

#include <cstddef>
#include <string>

namespace shm {

std::string FormatSize(size_t bytes);

}  // namespace shm

#endif  // SHM_FORMAT_SIZE_H_
