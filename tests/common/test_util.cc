#include "common/test_util.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

namespace shm::test {

std::string UniquePrefix() {
  static std::atomic<int> next{0};
  return "shmtest-" + std::to_string(getpid()) + "-" + std::to_string(next.fetch_add(1));
}

ScopedSegment::ScopedSegment(size_t size, uint32_t max_objects) {
  SegmentOptions options;
  options.name = UniquePrefix();
  options.size = size;
  options.max_objects = max_objects;
  shm_name_ = Segment::ShmName(options.name, options.generation);
  Status s = Segment::Create(options, &segment_);
  if (!s.ok()) ADD_FAILURE() << "Segment::Create: " << s.ToString();
}

ScopedSegment::~ScopedSegment() { Reset(); }

void ScopedSegment::Reset() {
  segment_.reset();
  if (!shm_name_.empty()) Segment::Remove(shm_name_);
}

pid_t ForkChild(const std::function<int()>& body) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  int code = 99;
  try {
    code = body();
  } catch (...) {
    code = 99;
  }
  _exit(code);
}

ChildExit WaitChild(pid_t pid, int timeout_ms) {
  ChildExit result;
  int status = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0) return result;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (WIFEXITED(status)) {
    result.exited = true;
    result.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signaled = true;
    result.signal = WTERMSIG(status);
  }
  return result;
}

std::string ReadProcFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  char buffer[4096];
  ssize_t n = read(fd, buffer, sizeof buffer);
  close(fd);
  return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
}

bool WaitUntilInFutex(pid_t pid, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string where = ReadProcFile("/proc/" + std::to_string(pid) + "/wchan");
    if (where.find("futex") != std::string::npos) return true;
    std::this_thread::yield();
  }
  return false;
}

namespace {
uint64_t Checksum(std::string_view bytes) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a.
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return h | 1;  // Never 0: 0 stands for "not whole".
}
}  // namespace

std::string MakeCheckedValue(std::mt19937_64& rng, size_t length) {
  std::string value(8 + length, '\0');
  for (size_t i = 8; i < value.size(); ++i) value[i] = static_cast<char>(rng());
  uint64_t sum = Checksum(std::string_view(value).substr(8));
  std::memcpy(value.data(), &sum, 8);
  return value;
}

uint64_t WholeChecksum(std::string_view value) {
  if (value.size() < 8) return 0;
  uint64_t sum = 0;
  std::memcpy(&sum, value.data(), 8);
  return sum == Checksum(value.substr(8)) ? sum : 0;
}

std::string ToolPath(const std::string& name) {
  const char* dir = std::getenv("SHM_TOOLS_DIR");
  return std::string(dir ? dir : SHM_DEFAULT_TOOLS_DIR) + "/" + name;
}

}  // namespace shm::test
