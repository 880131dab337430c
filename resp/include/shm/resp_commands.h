// RespCommands: executes Redis commands against the shared segment (docs/resp.md has the
// keyspace mapping and where shmstate differs from Redis).
//
// Pure with respect to I/O: a command goes in as its arguments, its reply comes out as RESP
// bytes appended to a string, so unit tests and the fuzzer drive it without a socket. The only
// command that cannot answer at once is a blocking pop (BLPOP/BRPOP) on empty lists: Execute
// then returns kBlock with a BlockedPop that the session retries on a timer (TryBlockedPop),
// so the worker's event loop never sleeps.
// Process-safety: every call works through thread-safe proxies; a RespClient belongs to one
// connection and is used by one handler at a time.
#ifndef SHM_RESP_COMMANDS_H_
#define SHM_RESP_COMMANDS_H_

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shm/block_lines.h"
#include "shm/list.h"
#include "shm/resp_protocol.h"
#include "shm/segment.h"

namespace shm::resp {

// Whether `given` equals `expected` in constant time (the worker passes the HTTP gate's
// TokenMatches, so both protocols check the token one way).
using TokenMatcher = bool (*)(std::string_view given, std::string_view expected);

// Constant for the life of a worker.
struct RespConfig {
  Segment* segment = nullptr;
  int worker_index = 0;
  std::string password;                  // Non-empty: AUTH required (the server's --token).
  TokenMatcher token_matches = nullptr;  // nullptr: no password is ever accepted.
  int64_t started_ms = 0;
};

// A BLPOP/BRPOP waiting for one of its lists to get an item.
struct BlockedPop {
  enum class Kind { kPop, kMove, kMultiPop } kind = Kind::kPop;  // BLPOP/BRPOP, BLMOVE, BLMPOP.
  std::vector<std::string> keys;
  List::End end = List::End::kLeft;
  std::string destination;                         // kMove: where the item goes,
  List::End to = List::End::kLeft;                 // and at which end.
  int64_t count = 1;                               // kMultiPop: at most this many items.
  std::chrono::steady_clock::time_point deadline;  // time_point::max(): wait forever.
  // An item was there when the command ran, but with several workers the pop takes its place in
  // line and waits for a barrier first (a pop that reached another worker earlier goes first);
  // its first try then answers as the command would have (WRONGTYPE included).
  bool first_try = false;
};

// Per-connection state.
struct RespClient {
  uint64_t id = 0;
  int protocol = 2;
  int db = 0;  // SELECT: the keyspace the commands use (0..15).
  bool authenticated = false;
  bool close_after_reply = false;  // QUIT.
  std::string name;
  std::string address;        // Peer, for CLIENT INFO.
  std::string local_address;  // Local end.
  int fd = -1;
  int table_slot = -1;     // Its row in the segment's ClientTable (-1: none).
  size_t query_bytes = 0;  // Received bytes not yet run, the running command's included.
  // CLIENT REPLY: OFF drops every reply; SKIP drops the next command's.
  bool reply_off = false;
  bool reply_skip_next = false;
  bool reply_skip_this = false;  // The running command's reply is dropped (SKIP before it).
  int64_t connected_ms = 0;
  // MULTI: queued commands (owned copies); an error while queuing aborts EXEC.
  bool in_multi = false;
  bool multi_failed = false;
  std::vector<std::vector<std::string>> queued;
  // WATCH: string keys and the version (0 = absent) each had when watched.
  std::vector<std::pair<std::string, uint64_t>> watched;
  // The (database, key) pairs the running command's writes may have made ready while some pop
  // was blocked (a ReadyListSink, shm/keyspace.h, collects them): the session serves their lines
  // before it sends the reply (ServeBeforeReply).
  std::vector<std::pair<int, std::string>> pushed;
};

enum class Outcome {
  kReplied,  // The reply was appended.
  kBlock,    // Nothing appended yet: retry `blocked` with TryBlockedPop until it answers.
};

// The command table's row of the command named `name` (any case); nullptr for an unknown name.
// A session looks each parsed command up once and passes the row to Prefetch and Execute.
const CommandRow* Lookup(std::string_view name);

// Runs one command: `row` is Lookup(args[0]).
Outcome Execute(const RespConfig& config, RespClient* client, const CommandRow* row,
                const std::vector<std::string_view>& args, std::string* out, BlockedPop* blocked);
// The same, looking args[0] up (any case).
Outcome Execute(const RespConfig& config, RespClient* client,
                const std::vector<std::string_view>& args, std::string* out, BlockedPop* blocked);

// A hint before running `commands` (parsed and looked up, in order): starts loading the entries
// of the keys they name (their rows' key positions) into the CPU cache (Dict::Prefetch). No
// effect on any reply or state.
void Prefetch(const RespConfig& config, std::span<const ParsedCommand> commands);

// Retries a blocked pop: true when it answered (an item, a timeout's null, or an error). It
// takes only from keys where `place` may (BlockLines::MayTake; an invalid place: keys with no
// blocked pop in line); nullptr: from any key. A BLMOVE that moved notes its destination in
// client->pushed.
bool TryBlockedPop(const RespConfig& config, RespClient* client, const BlockedPop& blocked,
                   const BlockLines::Place* place, std::string* out);

// A command's duty to the blocked pops of the keys it pushed to: serve their lines, one pop at
// a time in blocking order, until each key is empty or has no pop waiting (docs/resp.md,
// "Blocked pops"). Step never blocks: it notifies the next pop and answers false until the pops
// it notified are done, then true.
class LineService {
 public:
  LineService() = default;
  // Past kMaxServe, Step answers true whatever is left (a pop that never answers, a chain that
  // never ends): the pops left are served by their own retries.
  static constexpr std::chrono::seconds kMaxServe{5};

  // `chain`: the service of a served BLMOVE (its destination's line), which does not wait for
  // other chains; a command's reply waits for every chain that serves its keys.
  LineService(Segment* segment, std::vector<std::pair<int, std::string>> keys, bool chain)
      : segment_(segment),
        keys_(std::move(keys)),
        chain_(chain),
        until_(std::chrono::steady_clock::now() + kMaxServe) {}
  bool Step();
  bool active() const { return segment_ != nullptr; }
  // The database whose keyspace word wakes the pops this service waits for.
  int db() const { return keys_.empty() ? 0 : keys_.front().first; }

 private:
  Segment* segment_ = nullptr;
  std::vector<std::pair<int, std::string>> keys_;
  bool chain_ = false;
  std::vector<BlockLines::Place> notified_;
  uint64_t barrier_ = 0;  // Asked before the first notification; 0: not yet.
  std::chrono::steady_clock::time_point until_;
};

// Wakes every worker's waits on database `db`'s blocked pops (the keyspace's futex word, which
// their wait hubs watch): a place was notified, left or went back to waiting.
void RingLines(Segment* segment, int db);
// The keyspace of `db` (created when missing), for a wait hub's watch; false when it cannot be
// opened.
bool LinesObject(Segment* segment, int db, ObjectRef* ref);

// A fresh connection id (unique within the server's lifetime, across workers).
uint64_t NextClientId(Segment* segment, int worker_index);

// Wall-clock milliseconds (expiry times, CLIENT INFO ages).
int64_t NowMs();

// Counts for INFO, per worker process.
void CountConnection(int delta);

}  // namespace shm::resp

#endif  // SHM_RESP_COMMANDS_H_
