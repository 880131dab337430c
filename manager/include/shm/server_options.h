// ServerOptions: everything `shmstate serve` is told on its command line, parsed and checked.
//
// Parsing is pure (no sockets, no files, no environment except what the caller passes in), so
// it is unit-tested directly. Every value has a limit; bad input gets an InvalidArgument naming
// the flag. Process-safety: plain values and free functions; safe from any thread.
#ifndef SHM_SERVER_OPTIONS_H_
#define SHM_SERVER_OPTIONS_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shm/format_size.h"  // FormatSize, used with these parsers.
#include "shm/log.h"
#include "shm/segment.h"
#include "shm/status.h"

namespace shm {

// Where to listen: a numeric IPv4 or IPv6 address ("localhost" means 127.0.0.1) and a port
// (0 = the kernel picks a free one).
struct ListenAddress {
  std::string host = "127.0.0.1";  // Numeric, without brackets.
  uint16_t port = 8080;
  bool ipv6 = false;
  // "127.0.0.1:8080" or "[::1]:8080".
  std::string ToString() const;
  // 127.0.0.0/8 or ::1.
  bool IsLoopback() const;
};

struct ServerOptions {
  ListenAddress listen;
  bool resp = false;          // --resp-listen given: workers also speak RESP (docs/resp.md).
  ListenAddress resp_listen;  // Where, when `resp`.
  int workers = 0;  // Number of worker processes (1..kMaxWorkers); the default is the core count.
  int threads = 1;  // Asio threads per worker (1..kMaxThreads).
  size_t segment_size = size_t{64} << 20;
  // The segment may grow online up to this (a rebuild into twice the size when 80% is used).
  // Never below segment_size; equal means no growth.
  size_t max_segment_size = size_t{64} << 20;
  std::string name = "shmstate";  // Segment prefix; also names the lock file.
  // --group: the segment is 0660 and owned by this group (SegmentOptions::group); else 0600.
  std::string group;
  gid_t group_id = SegmentOptions::kNoGroup;
  uint32_t max_objects = 4096;
  size_t max_body_bytes = size_t{1} << 20;
  LogLevel log_level = LogLevel::kInfo;
  std::string token;  // Non-empty: clients must send "Authorization: Bearer <token>".
  std::chrono::milliseconds heartbeat_timeout{5000};  // 0 disables the hung-worker check.
  std::chrono::milliseconds read_timeout{30000};  // An idle or slow client is closed after this.
  std::string snapshot_path;  // Non-empty: restored at start, written at stop and periodically.
  std::chrono::milliseconds snapshot_interval{60000};  // 0: write the snapshot only at stop.

  static constexpr int kMaxWorkers = 128;
  static constexpr int kMaxThreads = 64;
  static constexpr size_t kMinSegmentSize = size_t{1} << 20;
  static constexpr size_t kMaxSegmentSize = size_t{64} << 30;
  static constexpr size_t kMinBodyBytes = size_t{1} << 10;
  static constexpr size_t kMaxBodyBytes = size_t{1} << 30;
  static constexpr uint32_t kMaxObjects = 1u << 24;
};

// "64MiB", "512KiB", "1GiB", "1048576" (bytes); also "64M"/"64MB" style binary suffixes.
// InvalidArgument for anything else, zero, or overflow.
Status ParseSize(std::string_view text, size_t* bytes);
// "5s", "250ms", "2m", "0" (seconds when no unit). At most one day.
Status ParseDuration(std::string_view text, std::chrono::milliseconds* duration);
// "host:port", "[v6]:port", ":port" (loopback) or "port" alone (loopback).
Status ParseListenAddress(std::string_view text, ListenAddress* address);

// What the command line asked for.
enum class CliAction { kServe, kHelp, kVersion };

// Parses `args` (argv without the program name): "serve [flags]", "--help", "help", "--version".
// `env_token` is the SHMSTATE_TOKEN environment variable (nullptr if unset); --token wins.
// `default_workers` is used when --workers is absent. On kHelp, `help` gets the usage text.
Status ParseServerArgs(const std::vector<std::string>& args, const char* env_token,
                       int default_workers, ServerOptions* options, CliAction* action,
                       std::string* help);

}  // namespace shm

#endif  // SHM_SERVER_OPTIONS_H_
