#include "shm/format_size.h"

#include <cstdio>

namespace shm {

std::string FormatSize(size_t bytes) {
  char text[64];
  if (bytes >= (size_t{1} << 30)) {
    snprintf(text, sizeof text, "%.1f GiB", static_cast<double>(bytes) / (1 << 30));
  } else if (bytes >= (size_t{1} << 20)) {
    snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  } else if (bytes >= (size_t{1} << 10)) {
    snprintf(text, sizeof text, "%.1f KiB", static_cast<double>(bytes) / (1 << 10));
  } else {
    snprintf(text, sizeof text, "%zu bytes", bytes);
  }
  return text;
}

}  // namespace shm
