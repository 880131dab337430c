// bench/resp_exec: the user-space cost of one redis-benchmark command in a RESP worker, without
// the sockets: the wire bytes of `redis-benchmark -r 100000 -P P -t TEST` are parsed, looked up,
// prefetched a pipeline at a time and run against a scratch segment, as a session does
// (resp/resp_server.cc, RunCommands), and their replies written.
//
//   build/bench/resp_exec TEST [N] [P]      TEST: ping set get incr lpush rpush lpop rpop hset
//                                           lrange_100 mset (N commands, default 1000000; P 16)
//
// Prints nanoseconds per command of a second pass (the first fills the keyspace and the caches).
// Deterministic under callgrind, where the clock is meaningless but the instruction count is
// not (the count of the measured pass only):
//
//   valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*MeasuredPass*'
//       build/bench/resp_exec set 200000
//
// What it leaves out, measured by bench/resp_kernel instead: Asio, the system calls, the client
// table's per-batch touch and the reply's send.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shm/resp_commands.h"
#include "shm/resp_protocol.h"
#include "shm/segment.h"

namespace {

namespace resp = shm::resp;

// One command as redis-benchmark 7.0 sends it (its -t names and argument shapes; -d 3 values).
std::vector<std::string> BenchmarkCommand(std::string_view test, std::mt19937_64* random) {
  auto key = [&] {
    char buf[32];
    std::snprintf(buf, sizeof buf, "key:%012llu",
                  static_cast<unsigned long long>((*random)() % 100000));
    return std::string(buf);
  };
  const std::string value = "xxx";
  if (test == "ping") return {"PING"};
  if (test == "set") return {"SET", key(), value};
  if (test == "get") return {"GET", key()};
  if (test == "incr") return {"INCR", "counter:" + key().substr(4)};
  if (test == "lpush") return {"LPUSH", "mylist", value};
  if (test == "rpush") return {"RPUSH", "mylist", value};
  if (test == "lpop") return {"LPOP", "mylist"};
  if (test == "rpop") return {"RPOP", "mylist"};
  if (test == "hset") return {"HSET", "myhash", "element:" + key().substr(4), value};
  if (test == "lrange_100") return {"LRANGE", "mylist", "0", "99"};
  if (test == "mset") {
    std::vector<std::string> args{"MSET"};
    for (int i = 0; i < 10; ++i) {
      args.push_back(key());
      args.push_back(value);
    }
    return args;
  }
  return {};
}

std::string Encode(const std::vector<std::string>& args) {
  std::string wire = "*" + std::to_string(args.size()) + "\r\n";
  for (const std::string& arg : args) {
    wire += "$" + std::to_string(arg.size()) + "\r\n" + arg + "\r\n";
  }
  return wire;
}

struct Run {
  resp::RespConfig config;
  resp::RespClient client;
  resp::RespLimits limits;
  std::vector<std::string> pipelines;  // Each P commands' wire bytes.
  std::string out;
};

// One pipeline as a session's RunCommands runs it: parse (with the lookup) up to P commands,
// prefetch their keys, run each into the output buffer; the buffer is then "sent" (cleared).
size_t RunPipeline(Run* run, std::string_view wire, std::vector<resp::ParsedCommand>* ahead) {
  size_t parsed = 0;
  while (!wire.empty()) {
    resp::ParsedCommand& command = (*ahead)[parsed];
    if (resp::ParseCommand(wire, run->limits, &command) != resp::ParseStatus::kCommand) {
      std::fprintf(stderr, "resp_exec: the generated pipeline did not parse\n");
      std::exit(1);
    }
    command.row = resp::Lookup(command.args[0]);
    wire.remove_prefix(command.consumed);
    ++parsed;
  }
  if (parsed > 1) resp::Prefetch(run->config, std::span(ahead->data(), parsed));
  resp::BlockedPop blocked;
  for (size_t i = 0; i < parsed; ++i) {
    resp::Execute(run->config, &run->client, (*ahead)[i].row, (*ahead)[i].args, &run->out,
                  &blocked);
  }
  run->out.clear();
  return parsed;
}

// Kept out of line so that callgrind's --toggle-collect can count this pass alone.
[[gnu::noinline]] size_t MeasuredPass(Run* run, std::vector<resp::ParsedCommand>* ahead) {
  size_t commands = 0;
  for (const std::string& wire : run->pipelines) commands += RunPipeline(run, wire, ahead);
  return commands;
}

size_t WarmPass(Run* run, std::vector<resp::ParsedCommand>* ahead) {
  size_t commands = 0;
  for (const std::string& wire : run->pipelines) commands += RunPipeline(run, wire, ahead);
  return commands;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: resp_exec TEST [N] [P]\n");
    return 2;
  }
  const std::string test = argv[1];
  const size_t n = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1000000;
  const size_t p = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 16;
  std::mt19937_64 random(42);
  if (BenchmarkCommand(test, &random).empty() || n == 0 || p == 0) {
    std::fprintf(stderr, "resp_exec: unknown test %s\n", test.c_str());
    return 2;
  }

  shm::SegmentOptions options;
  options.name = "resp-exec-" + std::to_string(getpid());
  options.size = size_t{256} << 20;
  std::unique_ptr<shm::Segment> segment;
  shm::Status s = shm::Segment::Create(options, &segment);
  if (!s.ok()) {
    std::fprintf(stderr, "resp_exec: %s\n", s.ToString().c_str());
    return 1;
  }
  shm::Segment::Remove(segment->shm_name());  // The mapping stays; nothing is left behind.

  Run run;
  run.config.segment = segment.get();
  run.client.authenticated = true;
  for (size_t done = 0; done < n; done += p) {
    std::string wire;
    for (size_t i = done; i < n && i < done + p; ++i)
      wire += Encode(BenchmarkCommand(test, &random));
    run.pipelines.push_back(std::move(wire));
  }
  std::vector<resp::ParsedCommand> ahead(p);
  // The pops' list is filled first, as redis-benchmark's runs of LPUSH before LPOP do.
  if (test == "lpop" || test == "rpop" || test == "lrange_100") {
    Run fill{run.config, {}, run.limits, {}, {}};
    std::mt19937_64 fill_random(7);
    for (size_t done = 0; done < 2 * n; done += p) {
      std::string wire;
      for (size_t i = 0; i < p; ++i) wire += Encode(BenchmarkCommand("lpush", &fill_random));
      fill.pipelines.push_back(std::move(wire));
    }
    WarmPass(&fill, &ahead);
  }
  if (test != "lpop" && test != "rpop") WarmPass(&run, &ahead);

  const auto start = std::chrono::steady_clock::now();
  const size_t commands = MeasuredPass(&run, &ahead);
  const double ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s P=%zu: %.1f ns per command over %zu commands\n", test.c_str(), p,
              ns / static_cast<double>(commands), commands);
  return 0;
}
