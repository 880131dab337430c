#include "shm/server_main.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "shm/api.h"
#include "shm/lock_file.h"
#include "shm/log.h"
#include "shm/segment.h"
#include "shm/server_options.h"
#include "supervisor.h"

namespace shm {
namespace {

constexpr int kExitStartFailed = 1;
constexpr int kExitUsage = 2;

// The one line a failed start prints; stdout stays clean for the "listening on" line.
int Fail(int code, std::string_view message) {
  std::string line = "shmstate: error: " + std::string(message) + "\n";
  fputs(line.c_str(), stderr);
  fflush(stderr);
  return code;
}

std::string BindError(int error, const ListenAddress& address) {
  std::string where = address.ToString();
  if (error == EADDRINUSE) return "address " + where + " is already in use";
  if (error == EACCES) return "permission denied to listen on " + where + " (ports below 1024)";
  if (error == EADDRNOTAVAIL) return "address " + where + " is not an address of this machine";
  return "cannot listen on " + where + ": " + strerror(error);
}

// Binds the one listening socket every worker inherits. Not CLOEXEC: workers are forked.
Status OpenListener(const ListenAddress& address, int* fd_out, uint16_t* port_out) {
  sockaddr_storage storage = {};
  socklen_t length = 0;
  if (address.ipv6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(address.port);
    inet_pton(AF_INET6, address.host.c_str(), &in6->sin6_addr);
    length = sizeof *in6;
  } else {
    auto* in4 = reinterpret_cast<sockaddr_in*>(&storage);
    in4->sin_family = AF_INET;
    in4->sin_port = htons(address.port);
    inet_pton(AF_INET, address.host.c_str(), &in4->sin_addr);
    length = sizeof *in4;
  }
  int fd = socket(storage.ss_family, SOCK_STREAM, 0);
  if (fd < 0) return Status::Internal(std::string("socket: ") + strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (address.ipv6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&storage), length) != 0 || listen(fd, SOMAXCONN) != 0) {
    int error = errno;
    close(fd);
    return Status::InvalidArgument(BindError(error, address));
  }
  length = sizeof storage;
  getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length);
  *port_out = ntohs(address.ipv6 ? reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port
                                 : reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
  *fd_out = fd;
  return Status::OK();
}

// Called with the lock file held, so no live manager owns these: a crashed run left them.
void RemoveStaleSegments(const std::string& name) {
  for (const std::string& stale : ListSegmentsOf(name)) {
    Status s = Segment::Remove(stale);
    SHM_LOG(kWarn) << "removed stale segment /dev/shm/" << stale << " left by a crashed run"
                   << (s.ok() ? "" : ": " + s.ToString());
  }
}

SupervisorOptions MakeSupervisorOptions(const ServerOptions& options) {
  SupervisorOptions result;
  result.workers = options.workers;
  result.worker.threads = options.threads;
  result.worker.max_body_bytes = options.max_body_bytes;
  result.worker.token = options.token;
  result.heartbeat_timeout_ms = options.heartbeat_timeout.count();
  result.stop_timeout_ms = result.worker.drain_timeout.count() + 2000;
  return result;
}

void AnnounceListening(const ServerOptions& options, uint16_t port, const Segment& segment) {
  ListenAddress actual = options.listen;
  actual.port = port;
  std::string line = "shmstate: listening on http://" + actual.ToString() + " (" +
                     std::to_string(options.workers) +
                     (options.workers == 1 ? " worker" : " workers") + ", segment /dev/shm/" +
                     segment.shm_name() + ", " + FormatSize(segment.size()) + ")\n";
  fputs(line.c_str(), stdout);
  fflush(stdout);
}

// Runs the manager once the command line is good. Every exit path below unwinds what was made.
int Serve(const ServerOptions& options, const std::function<void(Router*)>& add_routes) {
  if (!options.snapshot_path.empty()) return Fail(kExitUsage, "--snapshot is not implemented yet");
  SetLogLevel(options.log_level);
  BlockManagerSignals();  // First: a SIGTERM during startup waits for the signalfd.
  Router router;
  RegisterApiRoutes(&router);
  if (add_routes) add_routes(&router);

  LockFile lock;
  Status s = lock.Acquire(LockFile::PathFor(options.name));
  if (!s.ok()) return Fail(kExitStartFailed, "'" + options.name + "': " + std::string(s.message()));
  RemoveStaleSegments(options.name);
  int listen_fd = -1;
  uint16_t port = 0;
  s = OpenListener(options.listen, &listen_fd, &port);
  if (!s.ok()) return Fail(kExitStartFailed, s.message());
  SegmentOptions segment_options;
  segment_options.name = options.name;
  segment_options.size = options.segment_size;
  segment_options.max_objects = options.max_objects;
  std::unique_ptr<Segment> segment;
  s = Segment::Create(segment_options, &segment);
  if (!s.ok()) {
    close(listen_fd);
    return Fail(kExitStartFailed, s.message());
  }
  if (!options.listen.IsLoopback() && options.token.empty()) {
    SHM_LOG(kWarn) << "listening on " << options.listen.ToString()
                   << " without a token: anyone who can reach it can read and change the state "
                      "(set --token or SHMSTATE_TOKEN)";
  }
  int code = 0;
  {
    Supervisor supervisor(segment.get(), listen_fd, &router, MakeSupervisorOptions(options),
                          [&lock] { lock.Abandon(); });
    s = supervisor.Start();
    if (s.ok()) {
      AnnounceListening(options, port, *segment);
      code = supervisor.Run();
    } else {
      code = Fail(kExitStartFailed, s.message());
    }
  }  // Every worker is reaped here.
  std::string shm_name = segment->shm_name();
  segment.reset();
  Segment::Remove(shm_name);
  lock.Release();
  if (code == 0) {
    SHM_LOG(kInfo) << "stopped; removed /dev/shm/" << shm_name;
  }
  return code;
}

int ServerMainUnguarded(int argc, char** argv, const std::function<void(Router*)>& add_routes) {
  std::vector<std::string> args(argv + 1, argv + argc);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  ServerOptions options;
  CliAction action = CliAction::kServe;
  std::string help;
  Status s = ParseServerArgs(args, getenv("SHMSTATE_TOKEN"),
                             cores > 0 ? static_cast<int>(cores) : 1, &options, &action, &help);
  if (!s.ok()) return Fail(kExitUsage, s.message());
  if (action == CliAction::kHelp) {
    fputs(help.c_str(), stdout);
    return 0;
  }
  if (action == CliAction::kVersion) {
    fputs("shmstate 0.1.0\n", stdout);
    return 0;
  }
  return Serve(options, add_routes);
}

}  // namespace

int ServerMain(int argc, char** argv, const std::function<void(Router*)>& add_routes) {
  try {
    return ServerMainUnguarded(argc, argv, add_routes);
  } catch (const std::exception& e) {
    return Fail(kExitStartFailed, e.what());
  }
}

}  // namespace shm
