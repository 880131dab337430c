// UTF-8 validation (RFC 3629): the worker's one definition of well-formed text.
//
// Well-formed means no overlong forms, no surrogates (U+D800..U+DFFF) and nothing past
// U+10FFFF. Dict keys, session field names and list items must be it to appear in JSON as
// strings; error messages replace what is not. The library stores bytes and never needs it.
// Stateless and thread-safe.
#ifndef SHM_UTF8_H_
#define SHM_UTF8_H_

#include <cstddef>
#include <string_view>

namespace shm {

// The length (1-4) of the well-formed sequence that starts at text[i], or 0 when none does.
// REQUIRES: i < text.size().
size_t Utf8SequenceAt(std::string_view text, size_t i);

// True when all of `text` is well-formed UTF-8.
bool IsUtf8(std::string_view text);

}  // namespace shm

#endif  // SHM_UTF8_H_
