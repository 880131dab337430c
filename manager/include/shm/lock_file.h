// LockFile: the per-instance lock that says "a manager named NAME is alive".
//
// The file is /dev/shm/<name>.lock (mode 0600) holding an exclusive flock for the manager's whole
// life. The kernel drops the lock when the process dies, however it dies, so a lock file nobody
// holds is stale: its segments are leftovers of a crashed run and may be removed.
// Process-safety: one LockFile per process and name; not shared across fork (the fd is CLOEXEC
// and the child must call Abandon()).
#ifndef SHM_LOCK_FILE_H_
#define SHM_LOCK_FILE_H_

#include <string>
#include <string_view>
#include <vector>

#include "shm/status.h"

namespace shm {

class LockFile {
 public:
  LockFile() = default;
  ~LockFile();  // Release()s.
  LockFile(const LockFile&) = delete;
  LockFile& operator=(const LockFile&) = delete;

  // "/dev/shm/<name>.lock" (`dir` defaults to /dev/shm; tests pass their own).
  static std::string PathFor(std::string_view name, std::string_view dir = "/dev/shm");

  // Creates/opens `path` and takes the lock without waiting. AlreadyExists if another live
  // process holds it (its pid is in the message when known).
  Status Acquire(const std::string& path);
  // Removes the file and drops the lock. Idempotent.
  void Release();
  // Closes the descriptor without removing the file: for a forked child.
  void Abandon();

  bool held() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace shm

#endif  // SHM_LOCK_FILE_H_
