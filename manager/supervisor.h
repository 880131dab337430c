// Supervisor: the manager's single-threaded loop that forks, watches and replaces the workers.
//
// It also keeps the segment healthy: when the allocator is poisoned (a process died inside it) or
// used bytes pass the high-water mark (online growth), it stops every worker, copies the committed
// state into the next generation, unlinks the old one and forks the workers again on the new one
// (the listening socket stays open meanwhile, so clients queue). It writes periodic snapshots.
//
// It forks every worker before any thread exists, watches each child through a pidfd (no SIGCHLD
// handler, no pid reuse races), settles what a dead worker left in the segment, replaces it at
// once (with backoff when one slot crash-loops), kills workers whose heartbeat went stale, rolls
// the workers over on SIGHUP and stops them on SIGTERM/SIGINT. Signals arrive through a signalfd:
// the caller must have blocked SIGTERM, SIGINT and SIGHUP (BlockManagerSignals) before anything
// else, so one sent during startup is not lost.
// Process-safety: one Supervisor per manager process, used from its only thread.
#ifndef SHM_MANAGER_SUPERVISOR_H_
#define SHM_MANAGER_SUPERVISOR_H_

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "shm/crash_backoff.h"
#include "shm/router.h"
#include "shm/segment.h"
#include "shm/snapshot.h"
#include "shm/status.h"
#include "shm/worker.h"

namespace shm {

struct SupervisorOptions {
  int workers = 1;
  WorkerOptions worker;                 // `index` is set per child.
  int64_t heartbeat_timeout_ms = 5000;  // 0: never kill a silent worker.
  int64_t stop_timeout_ms = 7000;       // After SIGTERM, a worker gets this long before SIGKILL.
  BackoffPolicy backoff;

  // Rebuild and growth: the next generation is `name`.<gen+1> with `max_objects`, given to
  // `segment_group` like the first (SegmentOptions::group).
  std::string segment_name;
  uint32_t max_objects = 4096;
  gid_t segment_group = SegmentOptions::kNoGroup;
  size_t max_segment_size = 0;     // Grow (double) up to this; <= current size: never grow.
  double growth_high_water = 0.8;  // Fraction of the segment in use that triggers growth.

  std::string snapshot_path;         // Empty: no periodic snapshot.
  int64_t snapshot_interval_ms = 0;  // 0: none while running (the caller writes one at stop).

  // Test hook: the first incarnation of worker `crash_point_slot` arms crash point
  // `crash_point_name` (hit `crash_point_hit`), so exactly one process dies there.
  int crash_point_slot = -1;
  std::string crash_point_name;
  int crash_point_hit = 1;
};

// Reads SHMSTATE_TEST_WORKER_CRASH_POINT="<slot>:<name>[:<n>]" into `options` (test hook).
void ReadTestCrashPoint(const char* spec, SupervisorOptions* options);

// Blocks SIGTERM, SIGINT and SIGHUP (delivered later through the signalfd) and ignores SIGPIPE.
void BlockManagerSignals();

// Serializes `segment` (one object lock at a time) and writes it to `path` atomically (0600).
Status WriteSnapshot(Segment* segment, const std::string& path, SnapshotStats* stats,
                     int64_t* took_ms);

class Supervisor {
 public:
  // `segment`, `router` must outlive the Supervisor; a rebuild replaces `*segment` with the next
  // generation (the old one is unlinked). `listen_fd` is owned from now on (closed when
  // stopping). `in_child` runs first in every forked worker (e.g. to drop the lock file).
  Supervisor(std::unique_ptr<Segment>* segment, int listen_fd, const Router* router,
             const SupervisorOptions& options, std::function<void()> in_child);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Forks the workers: Internal if the signalfd or the first fork fails (nothing left running).
  Status Start();
  // Supervises until SIGTERM/SIGINT, then stops every worker (bounded). Returns the exit code:
  // 0, or 1 when a poisoned segment could not be rebuilt.
  int Run();

 private:
  struct Child {
    pid_t pid = 0;
    int pidfd = -1;
    int slot = 0;
    bool stopping = false;  // We asked it to stop: its exit is not a crash.
    bool killed_as_hung = false;
    int64_t kill_at_ms = 0;  // When stopping: SIGKILL after this.
    bool sent_kill = false;
  };
  struct Slot {
    pid_t pid = 0;          // Current worker of this slot; 0 while none runs.
    uint32_t restarts = 0;  // Replacements so far (shown in /v1/stats).
    bool started_once = false;
    int64_t respawn_at_ms = -1;  // >= 0: a replacement is due then.
    CrashBackoff backoff;
  };

  enum class RebuildReason { kPoisoned, kGrowth };

  Status Spawn(int slot);
  [[noreturn]] void RunChild(int slot, bool arm_crash_point);
  Segment* segment() const { return segment_->get(); }
  void MaybeRebuild(int64_t now_ms);
  void Rebuild(RebuildReason reason, size_t new_size);
  // Stops (graceful: SIGTERM, SIGKILL after stop_timeout_ms) or kills every worker and reaps
  // them all before returning; no replacement is scheduled.
  void StopAllWorkersNow(bool graceful);
  void RespawnAll();
  void MaybeSnapshot(int64_t now_ms);
  // Settles what attached clients (processes this manager did not fork) left when they died.
  void ReapDeadClients(int64_t now_ms);
  void ReadSignals();
  void Reap(Child& child);
  void HandleExit(const Child& child, const siginfo_t& info);
  void StartDueRespawns(int64_t now_ms);
  void CheckHeartbeats(int64_t now_ms);
  void EnforceStopDeadlines(int64_t now_ms);
  void AdvanceRollingRestart(int64_t now_ms);
  void RequestStop(Child& child, int64_t now_ms);
  void BeginShutdown(int64_t now_ms);
  void Signal(const Child& child, int signal);
  int PollTimeoutMs(int64_t now_ms) const;

  std::unique_ptr<Segment>* const segment_;
  int listen_fd_;
  int resp_listen_fd_;  // options_.worker.resp_listen_fd while open (closed when stopping).
  const Router* const router_;
  const SupervisorOptions options_;
  const std::function<void()> in_child_;
  const pid_t manager_pid_;

  int signal_fd_ = -1;
  bool shutting_down_ = false;
  std::vector<Slot> slots_;
  std::map<pid_t, Child> children_;  // Every live (unreaped) worker, current or retiring.
  std::deque<int> roll_queue_;       // Slots still to roll over after a SIGHUP.
  pid_t rolling_old_pid_ = 0;        // The retiring worker the roll waits for; 0 if none.
  int exit_code_ = 0;
  int64_t next_client_reap_ms_ = 0;  // Steady clock.
  int64_t growth_retry_at_ms_ = 0;   // After a failed growth: not before then (steady clock).
  int64_t next_snapshot_ms_ = 0;     // Steady clock; 0: not scheduled.
};

}  // namespace shm

#endif  // SHM_MANAGER_SUPERVISOR_H_
