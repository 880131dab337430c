// ClientTable: the Redis-protocol connections of every worker, a row each, in the segment, so
// that CLIENT LIST, CLIENT KILL and INFO's client counts see every connection of the server
// whichever worker answers.
//
// Process-safety: lock-free. A row is claimed by compare-and-swap and then written only by the
// thread serving its connection (Claim, Set*, Release take the slot and the id Claim gave, and
// do nothing when the row is no longer theirs); anyone reads (List) and anyone may ask for a
// connection's end (RequestKill: a flag its own worker acts on). Text fields are read under a
// seqlock: a reader never waits, and a row whose writer died mid-write is skipped. The rows of
// a process that died are freed by the manager's recovery (Segment::RecoverDeadProcess).
// At most kMaxRows connections are listed; later ones are served without a row (Claim: -1).
#ifndef SHM_CLIENT_TABLE_H_
#define SHM_CLIENT_TABLE_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shm/segment.h"

namespace shm {

struct ClientRow {
  static constexpr uint32_t kInMulti = 1;         // Inside MULTI.
  static constexpr uint32_t kBlocked = 2;         // Waiting in a blocking command.
  static constexpr uint32_t kKillRequested = 4;   // CLIENT KILL asked its worker to close it.
  static constexpr uint32_t kUnblockTimeout = 8;  // CLIENT UNBLOCK: end the wait as a timeout.
  static constexpr uint32_t kUnblockError = 16;   // CLIENT UNBLOCK ... ERROR.

  int slot = -1;
  uint64_t id = 0;
  pid_t pid = 0;
  int fd = -1;
  int64_t connected_ms = 0;  // Wall clock.
  int64_t last_ms = 0;       // Wall clock, the last command's start.
  uint32_t flags = 0;
  int resp = 2;
  int db = 0;
  std::string addr;   // Peer, "ip:port".
  std::string laddr;  // Local end, "ip:port".
  std::string name;   // CLIENT SETNAME (at most kMaxName bytes kept).
  std::string cmd;    // The last command, lower case ("NULL" before the first).
};

class ClientTable {
 public:
  static constexpr int kMaxRows = 512;
  static constexpr size_t kMaxAddress = 48;  // Longer addresses are cut.
  static constexpr size_t kMaxName = 64;     // Longer names are listed cut.
  static constexpr size_t kMaxCommand = 48;

  explicit ClientTable(Segment* segment) : segment_(segment) {}

  // Claims a free row for connection `id` (non-zero) of process `pid`; the slot, or -1 when
  // every row is taken.
  int Claim(uint64_t id, pid_t pid, int fd, std::string_view addr, std::string_view laddr,
            int64_t now_ms);
  // Frees the row (its owner, when the connection ends).
  void Release(int slot, uint64_t id);
  void SetName(int slot, uint64_t id, std::string_view name);
  // The start of a command: its name and the time; `cmd` is rewritten only when it changed.
  void SetCommand(int slot, uint64_t id, std::string_view cmd, int64_t now_ms);
  // The start of a command whose name is the row's already.
  void Touch(int slot, uint64_t id, int64_t now_ms);
  void SetFlag(int slot, uint64_t id, uint32_t flag, bool on);
  void SetProtocol(int slot, uint64_t id, int resp);
  // Every row in use, by slot.
  std::vector<ClientRow> List() const;
  // Asks the worker of connection `id` to close it; false when no row has that id.
  bool RequestKill(uint64_t id);
  bool KillRequested(int slot, uint64_t id) const;
  // Asks the worker of connection `id` to end its blocking command (`error`: with an error,
  // else as a timeout); false when no such connection is blocked.
  bool RequestUnblock(uint64_t id, bool error);
  // Takes a pending unblock request of the row: 0, kUnblockTimeout or kUnblockError.
  uint32_t TakeUnblock(int slot, uint64_t id);
  // Whether any row of `pid` is asked to close (a cheap scan: ids, pids and flags only).
  bool AnyKillRequested(pid_t pid) const;
  // Frees every row of `pid` (the manager's recovery of a dead process); how many.
  int ReleaseRowsOf(pid_t pid);

 private:
  Segment* segment_;
};

}  // namespace shm

#endif  // SHM_CLIENT_TABLE_H_
