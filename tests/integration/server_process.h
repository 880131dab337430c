// ServerProcess: runs the real shmstate binary (or an application built on ServerMain) for an
// end-to-end test, and the /proc and /dev/shm checks those tests make.
//
// Start() execs `<binary> serve --listen 127.0.0.1:0 --name <unique> ...`, reads the port from the
// "listening on" line and keeps stderr in a file. The child gets PR_SET_PDEATHSIG, so a crashed
// test binary never leaves a server behind; the destructor SIGTERMs (then SIGKILLs) it and removes
// whatever it left. Header-only because each test folder is globbed for *_test.cc only.
#ifndef SHM_TESTS_INTEGRATION_SERVER_PROCESS_H_
#define SHM_TESTS_INTEGRATION_SERVER_PROCESS_H_

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/http_client.h"
#include "common/test_util.h"
#include "shm/status.h"

namespace shm::test {

// The binary under test: $SHMSTATE_BIN, else the path tests/CMakeLists.txt compiles in.
inline std::string ShmstateBinary() {
  if (const char* bin = std::getenv("SHMSTATE_BIN")) return bin;
#ifdef SHM_DEFAULT_SHMSTATE_BIN
  return SHM_DEFAULT_SHMSTATE_BIN;
#else
  return "";
#endif
}

// A server name no other test or run uses.
inline std::string UniqueServerName(const std::string& tag) {
  static std::atomic<int> next{0};
  return "it-" + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(next.fetch_add(1));
}

// The text of /proc/<pid>/stat, or "" once the process is gone.
inline std::string ProcStat(pid_t pid) {
  return ReadProcFile("/proc/" + std::to_string(pid) + "/stat");
}

// The state letter and parent of `pid` from /proc/<pid>/stat; false once the process is gone.
inline bool ProcStateAndParent(pid_t pid, char* state, pid_t* parent) {
  std::string all = ProcStat(pid);
  size_t close = all.rfind(')');  // The command name may hold spaces and parentheses.
  if (close == std::string::npos || close + 2 >= all.size()) return false;
  std::istringstream rest(all.substr(close + 2));
  rest >> *state >> *parent;
  return !rest.fail();
}

inline bool ProcessAlive(pid_t pid) {
  // A zombie still answers kill(0); read its state instead.
  char state = 0;
  pid_t parent = 0;
  return ProcStateAndParent(pid, &state, &parent) && state != 'Z';
}

// Pids whose parent is `parent` (scans /proc).
inline std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> result;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return result;
  while (dirent* e = readdir(proc)) {
    pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    char state = 0;
    pid_t ppid = 0;
    if (pid > 0 && ProcStateAndParent(pid, &state, &ppid) && ppid == parent) result.push_back(pid);
  }
  closedir(proc);
  return result;
}

// /dev/shm entries of this server: "<name>.<gen>" segments and "<name>.lock".
inline std::vector<std::string> ShmEntriesOf(const std::string& name) {
  std::vector<std::string> result;
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return result;
  while (dirent* e = readdir(dir)) {
    std::string file = e->d_name;
    if (file.rfind(name + ".", 0) == 0) result.push_back(file);
  }
  closedir(dir);
  return result;
}

// Waits (bounded) until `predicate` holds; returns whether it did.
template <typename Predicate>
bool WaitFor(Predicate predicate, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!predicate()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    usleep(10 * 1000);
  }
  return true;
}

class ServerProcess {
 public:
  explicit ServerProcess(std::string tag = "srv") : name_(UniqueServerName(tag)) {}
  ~ServerProcess() {
    if (pid_ > 0) Stop();
    for (const std::string& file : ShmEntriesOf(name_)) unlink(("/dev/shm/" + file).c_str());
    if (!stderr_path_.empty()) unlink(stderr_path_.c_str());
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts `binary serve --listen 127.0.0.1:0 --name <name> <extra...>` and waits (bounded) for
  // the "listening on" line. On failure the process has exited; see exit() and stderr_text().
  Status Start(const std::vector<std::string>& extra = {}, std::string binary = "") {
    if (binary.empty()) binary = ShmstateBinary();
    if (binary.empty()) return Status::InvalidArgument("SHMSTATE_BIN is not set");
    std::vector<std::string> args = {binary, "serve", "--listen", listen_, "--name", name_};
    args.insert(args.end(), extra.begin(), extra.end());
    return Launch(args);
  }

  // Runs `args` as given (args[0] is the program) and waits for the listening line.
  Status Launch(const std::vector<std::string>& args) {
    char path[] = "/tmp/shm-it-stderr-XXXXXX";
    int err_fd = mkstemp(path);
    if (err_fd < 0) return Status::Internal("mkstemp failed");
    stderr_path_ = path;
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) return Status::Internal("pipe failed");
    // Built before fork: the child only calls async-signal-safe functions.
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
    for (std::string& e : extra_env_) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      dup2(out[1], STDOUT_FILENO);
      dup2(err_fd, STDERR_FILENO);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    close(out[1]);
    close(err_fd);
    stdout_fd_ = out[0];
    return ReadListeningLine();
  }

  // SIGTERM, then a bounded wait (SIGKILL after `timeout_ms`). Returns how it ended.
  ChildExit Stop(int timeout_ms = 20000) {
    if (pid_ <= 0) return exit_;
    kill(pid_, SIGTERM);
    return Wait(timeout_ms);
  }
  ChildExit Wait(int timeout_ms = 20000) {
    if (pid_ <= 0) return exit_;
    exit_ = WaitChild(pid_, timeout_ms);
    pid_ = 0;
    if (stdout_fd_ >= 0) close(stdout_fd_);
    stdout_fd_ = -1;
    return exit_;
  }

  std::string stderr_text() const {
    std::ifstream in(stderr_path_);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }

  // The worker pids /v1/stats reports, by slot index.
  Status WorkerPids(std::vector<pid_t>* pids) {
    HttpClient client(port_);
    HttpResult result;
    SHM_RETURN_IF_ERROR(client.Get("/v1/stats", &result));
    if (result.status != 200) return Status::Internal("GET /v1/stats: " + result.body);
    pids->clear();
    try {
      boost::json::value stats = boost::json::parse(result.body);
      for (const auto& worker : stats.at("workers").as_array()) {
        pids->push_back(static_cast<pid_t>(worker.at("pid").to_number<int64_t>()));
      }
    } catch (const std::exception& e) {
      return Status::Internal(std::string("bad /v1/stats: ") + e.what());
    }
    return Status::OK();
  }

  void set_listen(const std::string& listen) { listen_ = listen; }
  // Adds "NAME=value" to the server's environment (on top of this process's).
  void add_env(const std::string& assignment) { extra_env_.push_back(assignment); }
  void set_name(const std::string& name) { name_ = name; }
  const std::string& name() const { return name_; }
  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& listening_line() const { return line_; }
  const ChildExit& exit() const { return exit_; }

 private:
  Status ReadListeningLine() {
    std::string text;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (text.find('\n') == std::string::npos) {
      int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      deadline - std::chrono::steady_clock::now())
                                      .count());
      pollfd pfd{stdout_fd_, POLLIN, 0};
      if (left <= 0 || poll(&pfd, 1, left) <= 0) {
        return Status::Timeout("no listening line within 30 s; stderr: " + stderr_text());
      }
      char chunk[512];
      ssize_t n = read(stdout_fd_, chunk, sizeof chunk);
      if (n <= 0) {
        Wait(5000);
        return Status::Internal("server exited before listening; stderr: " + stderr_text());
      }
      text.append(chunk, static_cast<size_t>(n));
    }
    line_ = text.substr(0, text.find('\n'));
    size_t colon = line_.find("127.0.0.1:");
    if (colon == std::string::npos) return Status::Internal("unexpected first line: " + line_);
    port_ = static_cast<uint16_t>(std::atoi(line_.c_str() + colon + 10));
    return Status::OK();
  }

  std::string name_;
  std::string listen_ = "127.0.0.1:0";
  std::vector<std::string> extra_env_;
  std::string stderr_path_;
  pid_t pid_ = 0;
  int stdout_fd_ = -1;
  uint16_t port_ = 0;
  std::string line_;
  ChildExit exit_;
};

// What /v1/stats says about the segment.
struct SegmentStats {
  int64_t generation = 0;
  int64_t size_bytes = 0;
};

inline bool ReadSegmentStats(uint16_t port, SegmentStats* stats) {
  HttpClient client(port, std::chrono::seconds(5));
  HttpResult result;
  if (!client.Get("/v1/stats", &result).ok() || result.status != 200) return false;
  try {
    boost::json::value all = boost::json::parse(result.body);
    const boost::json::value& segment = all.at("segment");
    stats->generation = segment.at("generation").to_number<int64_t>();
    stats->size_bytes = segment.at("size_bytes").to_number<int64_t>();
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

}  // namespace shm::test

// Fails the test with the reason (the server's stderr included) when a start fails.
#define ASSERT_STARTED(start_expr)                     \
  do {                                                 \
    ::shm::Status started_ = (start_expr);             \
    ASSERT_TRUE(started_.ok()) << started_.ToString(); \
  } while (0)

#endif  // SHM_TESTS_INTEGRATION_SERVER_PROCESS_H_
