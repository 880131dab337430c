// Limits: the one table of size bounds the library enforces, for every front end alike (HTTP,
// the Redis protocol, Python, the C++ API). A front end reads its bounds here and never keeps
// its own copy; docs/limits.md lists them with what a client gets past each one. The classes
// name them too (Dict::kMaxKey == limits::kMaxKey ...), so either spelling is the same number.
//
// Process-safety: compile-time constants.
#ifndef SHM_LIMITS_H_
#define SHM_LIMITS_H_

#include <cstddef>
#include <cstdint>

namespace shm::limits {

// A dict key, a Redis key (of any type) or a hash field. Redis allows 512 MB; 64 KiB covers the
// long keys real applications and Redis's own tests use (50,000 bytes) while a key stays one
// bounded allocation. The empty string is a key.
inline constexpr size_t kMaxKey = size_t{64} << 10;
// A dict value or a Redis string.
inline constexpr size_t kMaxValue = size_t{16} << 20;
// A dict entry's content type (an HTTP header value).
inline constexpr size_t kMaxContentType = 128;
// A registry object's name (counters, dicts, lists, arrays, locks...).
inline constexpr size_t kMaxObjectName = 200;
// One page of a listing (dict keys, list ranges, SCAN COUNT).
inline constexpr size_t kMaxPage = 10000;
// A list's capacity and one item's size, at most (a list's own options may set less).
inline constexpr uint64_t kMaxListItems = uint64_t{1} << 28;
inline constexpr uint64_t kMaxListItemBytes = uint64_t{64} << 20;
// An n-dimensional array's data.
inline constexpr uint64_t kMaxArrayBytes = uint64_t{1} << 30;
// A relative time to live (dict entries, sessions): about 100 years.
inline constexpr int64_t kMaxTtlMs = int64_t{100} * 365 * 24 * 3600 * 1000;
// A session's serialized JSON, and one of its field names.
inline constexpr size_t kMaxSessionBytes = size_t{64} << 10;
inline constexpr size_t kMaxSessionField = 256;
// The value one RESTORE payload may decode to (its strings' bytes plus 16 per item): LZF lets a
// payload within the request limit expand about 90-fold, so the decoder stops here.
inline constexpr size_t kMaxDecodedDump = size_t{64} << 20;

}  // namespace shm::limits

#endif  // SHM_LIMITS_H_
