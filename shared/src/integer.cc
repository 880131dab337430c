#include "shm/integer.h"

#include <charconv>

namespace shm {

bool ParseInt64(std::string_view text, int64_t* value, IntSyntax syntax) {
  if (text.empty() || text.size() > 20) return false;
  if (syntax == IntSyntax::kRedisStrict) {
    size_t digits = text[0] == '-' ? 1 : 0;
    if (digits == text.size()) return false;
    if (text[digits] == '0' && (text.size() > digits + 1 || digits == 1)) return false;
  }
  int64_t parsed = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), parsed);
  if (ec != std::errc() || end != text.data() + text.size()) return false;
  *value = parsed;
  return true;
}

}  // namespace shm
