// Integer: the one decimal int64 parser and the one overflow rule of every front end.
//
// HTTP query integers, counter and dict increments, Python and the Redis protocol all read
// integers and add to them through these, so "1.5", "+1" or an overflow get the same answer
// everywhere (each front end words its own error).
//
// Process-safety: pure functions.
#ifndef SHM_INTEGER_H_
#define SHM_INTEGER_H_

#include <cstdint>
#include <string_view>

namespace shm {

enum class IntSyntax {
  // Optional '-', then 1-19 digits (leading zeros allowed), in int64 range.
  kDecimal,
  // Redis's string2ll: as kDecimal, but no leading zero (except "0" itself) and no "-0", so
  // that the text is the one Redis would print for the value.
  kRedisStrict,
};

// True when all of `text` is an int64 in `syntax`; *value is set only then.
bool ParseInt64(std::string_view text, int64_t* value, IntSyntax syntax = IntSyntax::kDecimal);

// a + b; false (and *sum unchanged) when it does not fit in int64.
inline bool AddInt64(int64_t a, int64_t b, int64_t* sum) {
  int64_t result = 0;
  if (__builtin_add_overflow(a, b, &result)) return false;
  *sum = result;
  return true;
}

}  // namespace shm

#endif  // SHM_INTEGER_H_
