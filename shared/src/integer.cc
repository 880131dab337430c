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
  // Up to 18 digits cannot overflow: a loop, several times faster than from_chars on the short
  // values increments parse. Longer texts take from_chars, which owns the range check.
  const size_t sign = text[0] == '-' ? 1 : 0;
  if (text.size() > sign && text.size() - sign <= 18) {
    uint64_t magnitude = 0;
    for (size_t i = sign; i < text.size(); ++i) {
      const unsigned digit = static_cast<unsigned char>(text[i]) - unsigned{'0'};
      if (digit > 9) return false;
      magnitude = magnitude * 10 + digit;
    }
    *value = sign != 0 ? -static_cast<int64_t>(magnitude) : static_cast<int64_t>(magnitude);
    return true;
  }
  int64_t parsed = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), parsed);
  if (ec != std::errc() || end != text.data() + text.size()) return false;
  *value = parsed;
  return true;
}

}  // namespace shm
