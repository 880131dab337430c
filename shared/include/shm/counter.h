// Counter: a named signed 64-bit integer that any worker can change atomically.
//
// Every operation is one atomic read-modify-write on the word in the segment, so a process killed
// at any instruction leaves either the old or the new value, never a torn one, and nothing to
// repair. Overflow is an error (InvalidArgument), never a silent wrap.
//
// Process-safety: a Counter is a cheap process-local handle; copy it freely and use it from any
// thread. It never lives in shared memory. Once the counter is deleted (or expires), every call
// answers NotFound; open it again to get the new incarnation.
#ifndef SHM_COUNTER_H_
#define SHM_COUNTER_H_

#include <cstdint>
#include <string_view>

#include "shm/registry.h"
#include "shm/status.h"

namespace shm {

class Counter {
 public:
  struct Options {
    OpenMode mode = OpenMode::kOpenExisting;
    int64_t init = 0;    // Value of a counter this call creates.
    int64_t ttl_ms = 0;  // Expiry of a counter this call creates; 0 = never.
  };

  Counter() = default;

  static Status Open(Segment* segment, std::string_view name, const Options& options,
                     Counter* result, bool* created = nullptr);

  Status Get(int64_t* value) const;
  Status Set(int64_t value);
  // Adds `delta` and returns the new value. InvalidArgument on overflow (value unchanged).
  Status Add(int64_t delta, int64_t* new_value);
  // Sets `desired` if the value is `expected`. Conflict otherwise; `actual` gets the value seen.
  Status CompareAndSet(int64_t expected, int64_t desired, int64_t* actual);

  const ObjectRef& ref() const { return ref_; }

 private:
  explicit Counter(const ObjectRef& ref) : ref_(ref) {}
  // NotFound once the object this handle opened is gone or expired.
  Status CheckLive() const;

  ObjectRef ref_;
};

}  // namespace shm

#endif  // SHM_COUNTER_H_
