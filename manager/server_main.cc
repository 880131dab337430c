#include "shm/server_main.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/version.hpp>
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
#include "shm/snapshot.h"
#include "shm/version.h"
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

// A snapshot that does not exist yet will be written at stop: its folder must be writable now,
// not discovered broken after hours of state.
Status CheckSnapshotFolder(const std::string& path) {
  size_t slash = path.rfind('/');
  std::string folder =
      slash == std::string::npos ? "." : path.substr(0, std::max<size_t>(slash, 1));
  if (access(folder.c_str(), W_OK | X_OK) != 0) {
    return Status::InvalidArgument("cannot write the snapshot " + path + ": folder " + folder +
                                   ": " + strerror(errno));
  }
  return Status::OK();
}

// Called with the lock file held, so no live manager owns these: a crashed run left them.
void RemoveStaleSegments(const std::string& name) {
  for (const std::string& stale : Segment::ListGenerations(name)) {
    Status s = Segment::Remove(stale);
    SHM_LOG(kWarn) << "removed stale segment /dev/shm/" << stale << " left by a crashed run"
                   << (s.ok() ? "" : ": " + s.ToString());
  }
}

// Loads --snapshot into a fresh generation-1 segment, growing it (up to --max-size) if the state
// does not fit. A missing file starts empty. Anything else that fails (unreadable, corrupt,
// truncated, too big) refuses the start with nothing left behind.
Status CreateAndRestore(const ServerOptions& options, std::unique_ptr<Segment>* segment) {
  SegmentOptions segment_options;
  segment_options.name = options.name;
  segment_options.size = options.segment_size;
  segment_options.max_objects = options.max_objects;
  segment_options.group = options.group_id;
  std::string bytes;
  if (!options.snapshot_path.empty()) {
    struct stat info = {};
    if (stat(options.snapshot_path.c_str(), &info) == 0 &&
        static_cast<uint64_t>(info.st_size) > options.max_segment_size) {
      return Status::InvalidArgument("snapshot " + options.snapshot_path + " (" +
                                     FormatSize(static_cast<size_t>(info.st_size)) +
                                     ") is larger than --max-size");
    }
    Status read = ReadWholeFile(options.snapshot_path, &bytes);
    if (read.IsNotFound()) {
      SHM_LOG(kInfo) << "no snapshot at " << options.snapshot_path << " yet; starting empty";
      SHM_RETURN_IF_ERROR(CheckSnapshotFolder(options.snapshot_path));
    } else if (!read.ok()) {
      return Status::InvalidArgument("cannot read snapshot " + options.snapshot_path + ": " +
                                     std::string(read.message()));
    }
  }
  while (true) {
    SHM_RETURN_IF_ERROR(Segment::Create(segment_options, segment));
    if (bytes.empty()) return Status::OK();
    int64_t started = SteadyNowMs();
    SnapshotStats stats;
    Status restored = RestoreSegment(bytes, segment->get(), &stats);
    if (restored.ok()) {
      SHM_LOG(kInfo) << "restored " << stats.objects << " objects (" << bytes.size()
                     << " bytes) from snapshot " << options.snapshot_path << " in "
                     << (SteadyNowMs() - started) << " ms";
      return Status::OK();
    }
    std::string shm_name = (*segment)->shm_name();
    segment->reset();
    Segment::Remove(shm_name);
    if (!restored.IsOutOfSpace() || segment_options.size >= options.max_segment_size) {
      return Status::InvalidArgument("snapshot " + options.snapshot_path +
                                     " refused: " + std::string(restored.message()) +
                                     " (nothing was loaded; move the file away to start empty)");
    }
    segment_options.size = std::min(segment_options.size * 2, options.max_segment_size);
  }
}

SupervisorOptions MakeSupervisorOptions(const ServerOptions& options) {
  SupervisorOptions result;
  result.workers = options.workers;
  result.worker.threads = options.threads;
  result.worker.max_body_bytes = options.max_body_bytes;
  result.worker.token = options.token;
  result.worker.read_timeout = options.read_timeout;
  result.heartbeat_timeout_ms = options.heartbeat_timeout.count();
  result.stop_timeout_ms = result.worker.drain_timeout.count() + 2000;
  result.segment_name = options.name;
  result.max_objects = options.max_objects;
  result.segment_group = options.group_id;
  result.max_segment_size = options.max_segment_size;
  result.snapshot_path = options.snapshot_path;
  result.snapshot_interval_ms = options.snapshot_interval.count();
  ReadTestCrashPoint(getenv("SHMSTATE_TEST_WORKER_CRASH_POINT"), &result);
  return result;
}

void AnnounceListening(const ServerOptions& options, uint16_t port, uint16_t resp_port,
                       const Segment& segment) {
  if (options.workers == 0) {
    std::string line = "shmstate: manager only (no HTTP workers), segment /dev/shm/" +
                       segment.shm_name() + ", " + FormatSize(segment.size()) + "\n";
    fputs(line.c_str(), stdout);
    fflush(stdout);
    return;
  }
  ListenAddress actual = options.listen;
  actual.port = port;
  std::string line = "shmstate: listening on http://" + actual.ToString() + " (" +
                     std::to_string(options.workers) +
                     (options.workers == 1 ? " worker" : " workers") + ", segment /dev/shm/" +
                     segment.shm_name() + ", " + FormatSize(segment.size()) + ")";
  if (options.resp) {
    ListenAddress resp = options.resp_listen;
    resp.port = resp_port;
    line += " and redis://" + resp.ToString();
  }
  line += "\n";
  fputs(line.c_str(), stdout);
  fflush(stdout);
}

// At stop, with every worker gone: the state as the clients left it.
bool WriteFinalSnapshot(const ServerOptions& options, Segment* segment) {
  SnapshotStats stats;
  int64_t took_ms = 0;
  Status s = WriteSnapshot(segment, options.snapshot_path, &stats, &took_ms);
  if (!s.ok()) {
    SHM_LOG(kError) << "cannot write the snapshot " << options.snapshot_path << ": "
                    << s.ToString();
    return false;
  }
  SHM_LOG(kInfo) << "snapshot written to " << options.snapshot_path << ": " << stats.objects
                 << " objects, " << stats.bytes << " bytes in " << took_ms << " ms";
  return true;
}

// Runs the manager once the command line is good. Every exit path below unwinds what was made.
int Serve(const ServerOptions& options, const std::function<void(Router*)>& add_routes) {
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
  if (options.workers > 0) {  // The manager alone serves nothing: no port to take.
    s = OpenListener(options.listen, &listen_fd, &port);
    if (!s.ok()) return Fail(kExitStartFailed, s.message());
  }
  int resp_fd = -1;
  uint16_t resp_port = 0;
  if (options.resp && options.workers > 0) {
    s = OpenListener(options.resp_listen, &resp_fd, &resp_port);
    if (!s.ok()) {
      close(listen_fd);
      return Fail(kExitStartFailed, "--resp-listen: " + std::string(s.message()));
    }
  }
  std::unique_ptr<Segment> segment;
  s = CreateAndRestore(options, &segment);
  if (!s.ok()) {
    close(listen_fd);
    if (resp_fd >= 0) close(resp_fd);
    return Fail(kExitStartFailed, s.message());
  }
  segment->MarkServing();
  for (const ListenAddress* address : {&options.listen, &options.resp_listen}) {
    if (address == &options.resp_listen && !options.resp) continue;
    if (!address->IsLoopback() && options.token.empty()) {
      SHM_LOG(kWarn) << "listening on " << address->ToString()
                     << " without a token: anyone who can reach it can read and change the "
                        "state (set --token or SHMSTATE_TOKEN)";
    }
  }
  int code = 0;
  {
    SupervisorOptions supervisor_options = MakeSupervisorOptions(options);
    supervisor_options.worker.resp_listen_fd = resp_fd;  // Owned by the supervisor from now on.
    Supervisor supervisor(&segment, listen_fd, &router, supervisor_options,
                          [&lock] { lock.Abandon(); });
    s = supervisor.Start();
    if (s.ok()) {
      AnnounceListening(options, port, resp_port, *segment);
      code = supervisor.Run();
    } else {
      code = Fail(kExitStartFailed, s.message());
    }
  }  // Every worker is reaped here.
  // Attached clients stop writing before the final snapshot; they see no successor and fail.
  segment->BeginDrain();
  if (!segment->WaitForClientOps(std::chrono::milliseconds(2000))) {
    SHM_LOG(kWarn) << "an attached client was still inside an operation at stop";
  }
  if (!options.snapshot_path.empty() && !WriteFinalSnapshot(options, segment.get())) code = 1;
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
    printf("shmstate %s (segment layout v%u, Boost %d.%d)\n", SHMSTATE_VERSION,
           Segment::LayoutVersion(), BOOST_VERSION / 100000, BOOST_VERSION / 100 % 1000);
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
