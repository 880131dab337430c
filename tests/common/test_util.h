// Helpers shared by the tests: unique segment names, scoped segments, child processes.
#ifndef SHM_TESTS_COMMON_TEST_UTIL_H_
#define SHM_TESTS_COMMON_TEST_UTIL_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>

#include "shm/segment.h"

namespace shm::test {

// A segment prefix no other test (or test process) uses: "shmtest-<pid>-<n>".
std::string UniquePrefix();

// Creates a segment with a unique prefix and removes it when destroyed.
class ScopedSegment {
 public:
  explicit ScopedSegment(size_t size = size_t{16} << 20, uint32_t max_objects = 256);
  ~ScopedSegment();
  Segment* get() const { return segment_.get(); }
  Segment* operator->() const { return segment_.get(); }
  const std::string& shm_name() const { return shm_name_; }
  // Unmaps and removes now (e.g. before checking /dev/shm).
  void Reset();

 private:
  std::string shm_name_;
  std::unique_ptr<Segment> segment_;
};

// Runs `body` in a forked child which exits with its return value (or 99 on an exception).
pid_t ForkChild(const std::function<int()>& body);

struct ChildExit {
  bool exited = false;  // Normal exit; `code` is the exit status.
  int code = -1;
  bool signaled = false;  // Killed; `signal` is the signal.
  int signal = 0;
};
// Waits for `pid`, at most `timeout_ms` (then SIGKILLs it and reports the kill).
ChildExit WaitChild(pid_t pid, int timeout_ms = 60000);

// The contents of a /proc file (at most 4 KiB), or "" when it cannot be read. A plain read():
// a process reaped between open and read makes the read fail with ESRCH, which libstdc++'s
// filebuf turns into an exception from istreambuf_iterator.
std::string ReadProcFile(const std::string& path);

// True once `pid` sleeps in a futex wait (a blocked pop or acquire), false after `timeout_ms`.
// Only orders a test's steps; no outcome may depend on it.
bool WaitUntilInFutex(pid_t pid, int timeout_ms = 5000);

// Values whose first 8 bytes are a checksum of the rest, so a torn or mixed value is caught and
// the checksum names the write. MakeCheckedValue adds `length` random bytes from `rng`.
std::string MakeCheckedValue(std::mt19937_64& rng, size_t length);
// The value's checksum (never 0) if it is whole, else 0.
uint64_t WholeChecksum(std::string_view value);

// Path of a helper program built from tests/tools/<name>.cc.
std::string ToolPath(const std::string& name);

}  // namespace shm::test

#endif  // SHM_TESTS_COMMON_TEST_UTIL_H_
