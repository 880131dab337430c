#include "shm/lock_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace shm {
namespace {

std::string Errno(const std::string& what) { return what + ": " + strerror(errno); }

// The pid a live holder wrote into the file, or "" if unreadable.
std::string ReadHolderPid(int fd) {
  char text[32] = {};
  ssize_t n = pread(fd, text, sizeof text - 1, 0);
  if (n <= 0) return "";
  std::string pid(text, static_cast<size_t>(n));
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  return pid;
}

// True when `fd` is still the file at `path`: a holder that exits unlinks the file, and a process
// that opened it just before may then lock an orphan inode nobody else can see.
bool StillLinked(int fd, const std::string& path) {
  struct stat by_fd, by_path;
  if (fstat(fd, &by_fd) != 0 || stat(path.c_str(), &by_path) != 0) return false;
  return by_fd.st_dev == by_path.st_dev && by_fd.st_ino == by_path.st_ino;
}

}  // namespace

LockFile::~LockFile() { Release(); }

std::string LockFile::PathFor(std::string_view name, std::string_view dir) {
  return std::string(dir) + "/" + std::string(name) + ".lock";
}

Status LockFile::Acquire(const std::string& path) {
  if (held()) return Status::InvalidArgument("lock file already held: " + path_);
  for (int attempt = 0; attempt < 10; ++attempt) {
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return Status::Internal(Errno("cannot open lock file " + path));
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_uid != geteuid() || !S_ISREG(st.st_mode)) {
      close(fd);
      return Status::InvalidArgument("lock file " + path + " belongs to another user");
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int error = errno;
      std::string holder = ReadHolderPid(fd);
      close(fd);
      if (error != EWOULDBLOCK) {
        errno = error;
        return Status::Internal(Errno("cannot lock " + path));
      }
      return Status::AlreadyExists("another instance with this name is running" +
                                   (holder.empty() ? "" : " (pid " + holder + ")") +
                                   "; lock file " + path);
    }
    if (!StillLinked(fd, path)) {
      close(fd);  // Lost a race with an exiting holder; the next open sees the new file.
      continue;
    }
    std::string pid = std::to_string(getpid()) + "\n";
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) < 0) {
      Status s = Status::Internal(Errno("cannot write lock file " + path));
      unlink(path.c_str());
      close(fd);
      return s;
    }
    fchmod(fd, 0600);
    fd_ = fd;
    path_ = path;
    return Status::OK();
  }
  return Status::Internal("cannot take lock file " + path + ": it keeps being replaced");
}

void LockFile::Release() {
  if (!held()) return;
  unlink(path_.c_str());  // Unlink first, while still holding the lock, so no one locks a ghost.
  close(fd_);
  fd_ = -1;
}

void LockFile::Abandon() {
  if (!held()) return;
  close(fd_);
  fd_ = -1;
}

}  // namespace shm
