// Fuzzes the RESP parser (resp::ParseCommand) the way a session drives it, and runs the first
// commands it yields through the prefetch hint and the dispatcher (resp::Prefetch, resp::Execute)
// on a scratch segment.
//
// Checks: no crash; a command or empty request consumes at least one byte and no more than it
// was given; every argument respects the limits; one byte less of the same input is incomplete
// (the parser never acts on a partial command); the dispatcher answers every command with at
// least one reply byte, or blocks only on BLPOP/BRPOP. The registry is emptied after each input.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "fuzz_util.h"
#include "shm/resp_commands.h"
#include "shm/resp_protocol.h"

namespace {

namespace resp = shm::resp;

constexpr size_t kMaxCommandsRun = 16;

resp::RespLimits SmallLimits() {
  resp::RespLimits limits;
  limits.max_bulk_bytes = 4096;
  limits.max_array_length = 64;
  limits.max_inline_bytes = 1024;
  limits.max_command_bytes = 16384;
  return limits;
}

void CheckCommand(std::string_view data, const resp::ParsedCommand& parsed,
                  const resp::RespLimits& limits) {
  shm::fuzz::Check(parsed.consumed > 0 && parsed.consumed <= data.size(), "bad consumed count");
  shm::fuzz::Check(parsed.args.size() <= limits.max_array_length, "too many arguments");
  for (std::string_view arg : parsed.args) {
    shm::fuzz::Check(arg.size() <= limits.max_bulk_bytes, "argument past the bulk limit");
  }
  resp::ParsedCommand shorter;
  resp::ParseStatus again =
      resp::ParseCommand(data.substr(0, parsed.consumed - 1), limits, &shorter);
  shm::fuzz::Check(again == resp::ParseStatus::kIncomplete, "a partial command was not incomplete");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static shm::Segment* segment = shm::fuzz::CreateScratchSegment("resp", size_t{8} << 20).release();
  static const resp::RespLimits limits = SmallLimits();
  resp::RespConfig config;
  config.segment = segment;
  resp::RespClient client;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t run = 0;
  while (!in.empty()) {
    resp::ParsedCommand parsed;
    resp::ParseStatus status = resp::ParseCommand(in, limits, &parsed);
    if (status == resp::ParseStatus::kIncomplete || status == resp::ParseStatus::kError) break;
    CheckCommand(in, parsed, limits);
    if (status == resp::ParseStatus::kCommand && run++ < kMaxCommandsRun) {
      std::string out;
      resp::BlockedPop blocked;
      // As the session does: one lookup, shared by the prefetch and the execution.
      parsed.row = resp::Lookup(parsed.args[0]);
      resp::Prefetch(config, std::span(&parsed, 1));
      resp::Outcome outcome =
          resp::Execute(config, &client, parsed.row, parsed.args, &out, &blocked);
      if (outcome == resp::Outcome::kBlock) {
        blocked.deadline = std::chrono::steady_clock::now();  // Never wait in a fuzzer.
        shm::fuzz::Check(resp::TryBlockedPop(config, &client, blocked, nullptr, &out),
                         "blocked pop hung");
      }
      shm::fuzz::Check(!out.empty(), "a command got no reply");
    }
    in.remove_prefix(parsed.consumed);
  }
  shm::fuzz::DeleteAllObjects(segment);
  return 0;
}
