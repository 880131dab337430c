#include "shm/server_options.h"

#include <arpa/inet.h>
#include <grp.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <sstream>
#include <vector>

#include "shm/segment.h"

namespace shm {
namespace po = boost::program_options;
namespace {

constexpr char kUsage[] = "Usage: shmstate serve [options]\n       shmstate --version\n";

// Strict unsigned decimal: digits only, no sign, no spaces, no overflow.
bool ParseUnsigned(std::string_view text, uint64_t* value) {
  if (text.empty()) return false;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *value);
  return ec == std::errc() && ptr == end;
}

// Splits "64MiB" into "64" and "MiB".
void SplitNumberAndUnit(std::string_view text, std::string_view* number, std::string_view* unit) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  *number = text.substr(0, i);
  *unit = text.substr(i);
}

Status IntInRange(const std::string& flag, std::string_view text, uint64_t low, uint64_t high,
                  uint64_t* value) {
  if (!ParseUnsigned(text, value) || *value < low || *value > high) {
    return Status::InvalidArgument("--" + flag + " must be an integer from " + std::to_string(low) +
                                   " to " + std::to_string(high) + ", not '" + std::string(text) +
                                   "'");
  }
  return Status::OK();
}

Status SizeInRange(const std::string& flag, std::string_view text, size_t low, size_t high,
                   size_t* value) {
  Status s = ParseSize(text, value);
  if (!s.ok()) return Status::InvalidArgument("--" + flag + ": " + std::string(s.message()));
  if (*value < low || *value > high) {
    return Status::InvalidArgument("--" + flag + " must be from " + FormatSize(low) + " to " +
                                   FormatSize(high) + ", not " + std::string(text));
  }
  return Status::OK();
}

// --group: a group name (or a numeric gid) of this machine.
Status LookUpGroup(const std::string& name, ServerOptions* options) {
  if (name.empty() || name.size() > 256) {
    return Status::InvalidArgument("--group needs a group name (at most 256 bytes)");
  }
  struct group entry;
  struct group* found = nullptr;
  std::vector<char> buffer(16384);
  int error = getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
  uint64_t gid = 0;
  if (found == nullptr && error == 0 && ParseUnsigned(name, &gid) && gid < 0xffffffffu) {
    error = getgrgid_r(static_cast<gid_t>(gid), &entry, buffer.data(), buffer.size(), &found);
  }
  if (found == nullptr) {
    return Status::InvalidArgument("--group: no group '" + name + "' on this machine" +
                                   (error != 0 ? std::string(" (") + strerror(error) + ")" : ""));
  }
  options->group = found->gr_name;
  options->group_id = found->gr_gid;
  return Status::OK();
}

po::options_description ServeFlags() {
  po::options_description flags("Options of 'shmstate serve'", 100, 50);
  // Every value is taken as text and checked by our own parsers, so errors name the flag and
  // the limits instead of Boost's generic "invalid option value".
  flags.add_options()                         //
      ("help,h", "print this help and exit")  //
      ("listen", po::value<std::string>()->value_name("HOST:PORT"),
       "address to listen on; port 0 picks a free port (default 127.0.0.1:8080)")  //
      ("resp-listen", po::value<std::string>()->value_name("HOST:PORT"),
       "also speak the Redis protocol (RESP2/3) there; --token is the AUTH password (default "
       "off; HOST defaults to 127.0.0.1)")  //
      ("workers", po::value<std::string>()->value_name("N"),
       "worker processes, 0-128; 0 = the manager alone, for apps that attach in-process "
       "(the Python module) and serve no HTTP (default: number of cores)")  //
      ("threads", po::value<std::string>()->value_name("T"),
       "threads per worker, 1-64 (default 1)")  //
      ("size", po::value<std::string>()->value_name("BYTES"),
       "shared-memory segment size, e.g. 64MiB, 1GiB (default 64MiB)")  //
      ("name", po::value<std::string>()->value_name("NAME"),
       "instance name: segment /dev/shm/NAME.<gen>, lock /dev/shm/NAME.lock (default shmstate)")  //
      ("group", po::value<std::string>()->value_name("GROUP"),
       "make the segment 0660 and owned by GROUP (e.g. www-data), so apps of another user in "
       "that group can attach; the server's user must be in GROUP (default: 0600, owner only)")  //
      ("max-objects", po::value<std::string>()->value_name("K"),
       "capacity of the object registry (default 4096)")  //
      ("max-body", po::value<std::string>()->value_name("BYTES"),
       "largest request body; larger gets 413 (default 1MiB)")  //
      ("log-level", po::value<std::string>()->value_name("LEVEL"),
       "debug, info, warn, error or off (default info)")  //
      ("token", po::value<std::string>()->value_name("T"),
       "require 'Authorization: Bearer T' on every request (or set SHMSTATE_TOKEN)")  //
      ("heartbeat-timeout", po::value<std::string>()->value_name("DURATION"),
       "kill and replace a worker silent this long, e.g. 5s, 500ms; 0 disables (default 5s)")  //
      ("read-timeout", po::value<std::string>()->value_name("DURATION"),
       "close a connection idle or slow this long, e.g. 30s, 500ms (default 30s)")  //
      ("max-size", po::value<std::string>()->value_name("BYTES"),
       "grow the segment online up to this, doubling when 80% is used (default: --size)")  //
      ("snapshot", po::value<std::string>()->value_name("FILE"),
       "restore the state from FILE at start (missing: start empty); save it there at stop")  //
      ("snapshot-interval", po::value<std::string>()->value_name("DURATION"),
       "also save the snapshot this often, e.g. 60s, 5m; 0 = only at stop (default 60s)");
  return flags;
}

std::string HelpText(const po::options_description& flags) {
  std::ostringstream out;
  out << kUsage
      << "\nRuns the shared-memory state server in the foreground: a manager process "
         "that owns the segment\nand forks HTTP workers. SIGTERM/SIGINT stop it cleanly, "
         "SIGHUP restarts the workers one by one.\nA segment poisoned by a dying worker is "
         "rebuilt into its next generation (/dev/shm/NAME.<gen+1>)\nwhile clients queue; with "
         "--max-size it also grows online.\n\n"
      << flags;
  return out.str();
}

// Copies the checked values of `vm` into `options`.
Status ApplyFlags(const po::variables_map& vm, ServerOptions* options) {
  auto text = [&vm](const char* flag) { return vm[flag].as<std::string>(); };
  uint64_t number = 0;
  if (vm.count("listen")) {
    Status s = ParseListenAddress(text("listen"), &options->listen);
    if (!s.ok()) return Status::InvalidArgument("--listen: " + std::string(s.message()));
  }
  if (vm.count("resp-listen")) {
    Status s = ParseListenAddress(text("resp-listen"), &options->resp_listen);
    if (!s.ok()) return Status::InvalidArgument("--resp-listen: " + std::string(s.message()));
    options->resp = true;
  }
  if (vm.count("workers")) {
    SHM_RETURN_IF_ERROR(
        IntInRange("workers", text("workers"), 0, ServerOptions::kMaxWorkers, &number));
    options->workers = static_cast<int>(number);
  }
  if (vm.count("threads")) {
    SHM_RETURN_IF_ERROR(
        IntInRange("threads", text("threads"), 1, ServerOptions::kMaxThreads, &number));
    options->threads = static_cast<int>(number);
  }
  if (vm.count("size")) {
    SHM_RETURN_IF_ERROR(SizeInRange("size", text("size"), ServerOptions::kMinSegmentSize,
                                    ServerOptions::kMaxSegmentSize, &options->segment_size));
  }
  if (vm.count("name")) {
    options->name = text("name");
    Status s = Segment::ValidatePrefix(options->name);
    if (!s.ok()) return Status::InvalidArgument("--name: " + std::string(s.message()));
  }
  if (vm.count("group")) SHM_RETURN_IF_ERROR(LookUpGroup(text("group"), options));
  if (vm.count("max-objects")) {
    SHM_RETURN_IF_ERROR(
        IntInRange("max-objects", text("max-objects"), 1, ServerOptions::kMaxObjects, &number));
    options->max_objects = static_cast<uint32_t>(number);
  }
  if (vm.count("max-objects")) {
    if (Segment::MinimumSize(options->max_objects) > options->segment_size) {
      return Status::InvalidArgument("--max-objects " + std::to_string(options->max_objects) +
                                     " needs --size of at least " +
                                     FormatSize(Segment::MinimumSize(options->max_objects)));
    }
  } else {
    // The default registry takes at most half the segment, so a small --size starts with room
    // for data (1 MiB: 512 objects) and the default --size keeps its 4096.
    while (options->max_objects > 1 &&
           Segment::MinimumSize(options->max_objects) > options->segment_size / 2) {
      options->max_objects /= 2;
    }
  }
  if (vm.count("max-body")) {
    SHM_RETURN_IF_ERROR(SizeInRange("max-body", text("max-body"), ServerOptions::kMinBodyBytes,
                                    ServerOptions::kMaxBodyBytes, &options->max_body_bytes));
  }
  if (vm.count("log-level")) {
    Status s = ParseLogLevel(text("log-level"), &options->log_level);
    if (!s.ok()) return Status::InvalidArgument("--log-level: " + std::string(s.message()));
  }
  if (vm.count("token")) options->token = text("token");
  if (vm.count("heartbeat-timeout")) {
    Status s = ParseDuration(text("heartbeat-timeout"), &options->heartbeat_timeout);
    if (!s.ok()) return Status::InvalidArgument("--heartbeat-timeout: " + std::string(s.message()));
  }
  if (vm.count("read-timeout")) {
    Status s = ParseDuration(text("read-timeout"), &options->read_timeout);
    if (s.ok() && (options->read_timeout.count() < 10 || options->read_timeout.count() > 3600000)) {
      s = Status::InvalidArgument("must be between 10ms and 1h");
    }
    if (!s.ok()) return Status::InvalidArgument("--read-timeout: " + std::string(s.message()));
  }
  options->max_segment_size = options->segment_size;
  if (vm.count("max-size")) {
    SHM_RETURN_IF_ERROR(SizeInRange("max-size", text("max-size"), options->segment_size,
                                    ServerOptions::kMaxSegmentSize, &options->max_segment_size));
  }
  if (vm.count("snapshot")) {
    options->snapshot_path = text("snapshot");
    if (options->snapshot_path.empty() || options->snapshot_path.size() > 4096) {
      return Status::InvalidArgument("--snapshot needs a file path (at most 4096 bytes)");
    }
  }
  if (vm.count("snapshot-interval")) {
    Status s = ParseDuration(text("snapshot-interval"), &options->snapshot_interval);
    if (!s.ok()) return Status::InvalidArgument("--snapshot-interval: " + std::string(s.message()));
  }
  return Status::OK();
}

}  // namespace

std::string ListenAddress::ToString() const {
  return ipv6 ? "[" + host + "]:" + std::to_string(port) : host + ":" + std::to_string(port);
}

bool ListenAddress::IsLoopback() const {
  if (ipv6) return host == "::1";
  return host.rfind("127.", 0) == 0;
}

Status ParseSize(std::string_view text, size_t* bytes) {
  std::string_view number, unit;
  SplitNumberAndUnit(text, &number, &unit);
  uint64_t value = 0;
  if (!ParseUnsigned(number, &value)) {
    return Status::InvalidArgument("bad size '" + std::string(text) + "' (e.g. 64MiB, 512KiB)");
  }
  int shift = -1;
  for (auto [names, unit_shift] : {std::pair{"|B", 0}, std::pair{"K|KB|KiB|k|kB", 10},
                                   std::pair{"M|MB|MiB", 20}, std::pair{"G|GB|GiB", 30}}) {
    std::string_view list = names;
    while (shift < 0 && !list.empty()) {
      size_t bar = list.find('|');
      std::string_view candidate = list.substr(0, bar);
      if (candidate == unit) shift = unit_shift;
      list = bar == std::string_view::npos ? std::string_view() : list.substr(bar + 1);
    }
  }
  if (shift < 0) {
    return Status::InvalidArgument("bad size unit in '" + std::string(text) +
                                   "' (use KiB, MiB or GiB)");
  }
  if (value == 0) return Status::InvalidArgument("size must not be zero");
  if (value > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return Status::InvalidArgument("size '" + std::string(text) + "' is too large");
  }
  *bytes = static_cast<size_t>(value << shift);
  return Status::OK();
}

Status ParseDuration(std::string_view text, std::chrono::milliseconds* duration) {
  std::string_view number, unit;
  SplitNumberAndUnit(text, &number, &unit);
  uint64_t value = 0;
  if (!ParseUnsigned(number, &value)) {
    return Status::InvalidArgument("bad duration '" + std::string(text) + "' (e.g. 5s, 500ms)");
  }
  uint64_t scale = 0;
  if (unit.empty() || unit == "s") scale = 1000;
  if (unit == "ms") scale = 1;
  if (unit == "m") scale = 60000;
  constexpr uint64_t kMaxMs = uint64_t{24} * 3600 * 1000;
  if (scale == 0) {
    return Status::InvalidArgument("bad duration unit in '" + std::string(text) +
                                   "' (use ms, s or m)");
  }
  if (value > kMaxMs / scale) {
    return Status::InvalidArgument("duration '" + std::string(text) + "' is longer than a day");
  }
  *duration = std::chrono::milliseconds(value * scale);
  return Status::OK();
}

Status ParseListenAddress(std::string_view text, ListenAddress* address) {
  ListenAddress result;
  std::string_view host = "127.0.0.1", port = text;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find("]:");
    if (close == std::string_view::npos) {
      return Status::InvalidArgument("bad address '" + std::string(text) + "' (use [::1]:8080)");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    result.ipv6 = true;
  } else if (size_t colon = text.rfind(':'); colon != std::string_view::npos) {
    host = colon == 0 ? std::string_view("127.0.0.1") : text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return Status::InvalidArgument("IPv6 addresses need brackets: [" + std::string(host) +
                                     "]:PORT");
    }
  }
  if (host == "localhost") host = "127.0.0.1";
  uint64_t port_number = 0;
  if (!ParseUnsigned(port, &port_number) || port_number > 65535) {
    return Status::InvalidArgument("bad port '" + std::string(port) + "' in '" + std::string(text) +
                                   "' (0-65535)");
  }
  unsigned char scratch[sizeof(in6_addr)];
  std::string host_text(host);
  if (inet_pton(result.ipv6 ? AF_INET6 : AF_INET, host_text.c_str(), scratch) != 1) {
    return Status::InvalidArgument("bad address '" + host_text +
                                   "' (use a numeric IP address such as 127.0.0.1 or 0.0.0.0)");
  }
  result.host = host_text;
  result.port = static_cast<uint16_t>(port_number);
  *address = result;
  return Status::OK();
}

Status ParseServerArgs(const std::vector<std::string>& args, const char* env_token,
                       int default_workers, ServerOptions* options, CliAction* action,
                       std::string* help) {
  po::options_description flags = ServeFlags();
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    *action = CliAction::kHelp;
    *help = HelpText(flags);
    return Status::OK();
  }
  if (args[0] == "--version") {
    *action = CliAction::kVersion;
    return Status::OK();
  }
  if (args[0] != "serve") {
    return Status::InvalidArgument("unknown command '" + args[0] + "' (try 'shmstate --help')");
  }
  ServerOptions result;
  result.workers = std::clamp(default_workers, 1, ServerOptions::kMaxWorkers);
  if (env_token != nullptr) result.token = env_token;
  po::variables_map vm;
  try {
    std::vector<std::string> rest(args.begin() + 1, args.end());
    // Stray words are collected under a hidden name, to be refused with a clear message.
    po::options_description all = flags;
    all.add_options()("stray", po::value<std::vector<std::string>>());
    po::positional_options_description stray;
    stray.add("stray", -1);
    po::store(po::command_line_parser(rest).options(all).positional(stray).run(), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string(e.what()) + " (try 'shmstate --help')");
  }
  if (vm.count("stray")) {
    return Status::InvalidArgument("unexpected argument '" +
                                   vm["stray"].as<std::vector<std::string>>()[0] +
                                   "' (try 'shmstate --help')");
  }
  if (vm.count("help")) {
    *action = CliAction::kHelp;
    *help = HelpText(flags);
    return Status::OK();
  }
  SHM_RETURN_IF_ERROR(ApplyFlags(vm, &result));
  *action = CliAction::kServe;
  *options = result;
  return Status::OK();
}

}  // namespace shm
