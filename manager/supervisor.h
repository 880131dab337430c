// Supervisor: the manager's single-threaded loop that forks, watches and replaces the workers.
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
#include <vector>

#include "shm/crash_backoff.h"
#include "shm/router.h"
#include "shm/segment.h"
#include "shm/status.h"
#include "shm/worker.h"

namespace shm {

struct SupervisorOptions {
  int workers = 1;
  WorkerOptions worker;                 // `index` is set per child.
  int64_t heartbeat_timeout_ms = 5000;  // 0: never kill a silent worker.
  int64_t stop_timeout_ms = 7000;       // After SIGTERM, a worker gets this long before SIGKILL.
  BackoffPolicy backoff;
};

// Blocks SIGTERM, SIGINT and SIGHUP (delivered later through the signalfd) and ignores SIGPIPE.
void BlockManagerSignals();

class Supervisor {
 public:
  // `segment`, `router` must outlive the Supervisor. `listen_fd` is owned from now on (closed
  // when stopping). `in_child` runs first in every forked worker (e.g. to drop the lock file).
  Supervisor(Segment* segment, int listen_fd, const Router* router,
             const SupervisorOptions& options, std::function<void()> in_child);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Forks the workers: Internal if the signalfd or the first fork fails (nothing left running).
  Status Start();
  // Supervises until SIGTERM/SIGINT, then stops every worker (bounded). Returns the exit code.
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

  Status Spawn(int slot);
  [[noreturn]] void RunChild(int slot);
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

  Segment* const segment_;
  int listen_fd_;
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
};

}  // namespace shm

#endif  // SHM_MANAGER_SUPERVISOR_H_
