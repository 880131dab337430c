#include "supervisor.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "crash_point.h"
#include "shm/format_size.h"
#include "shm/keyspace.h"
#include "shm/log.h"
#include "shm/snapshot.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace shm {
namespace {

constexpr int kExpireIntervalMs = 100;        // Redis's active expiry runs at 10 Hz.
constexpr size_t kExpireBudgetPerShard = 20;  // Redis samples 20 keys per round.
constexpr int kExpireRounds = 16;
constexpr int kHeartbeatCheckMs = 100;     // Also the idle poll period, so the poison check.
constexpr int64_t kSlowSnapshotMs = 1000;  // A periodic snapshot slower than this is logged.
constexpr int64_t kGrowthRetryMs = 60000;  // After a failed growth (e.g. /dev/shm full).
// How long a rebuild of a poisoned segment waits for attached clients' operations to end.
constexpr int64_t kPoisonedClientWaitMs = 1000;
constexpr int64_t kClientReapIntervalMs = 1000;

// Stops attached clients' operations on `segment` before it is copied (Segment::BeginDrain).
void QuiesceClients(Segment* segment, int64_t timeout_ms) {
  segment->BeginDrain();
  if (!segment->WaitForClientOps(std::chrono::milliseconds(timeout_ms))) {
    SHM_LOG(kWarn) << "an attached client was still inside an operation on /dev/shm/"
                   << segment->shm_name() << " after " << timeout_ms
                   << " ms; copying without it (that write may be lost)";
  }
}

int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

int PidfdSendSignal(int pidfd, int signal) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0));
}

std::string DescribeExit(const siginfo_t& info) {
  if (info.si_code == CLD_EXITED) return "exited with code " + std::to_string(info.si_status);
  const char* name = sigabbrev_np(info.si_status);
  std::string text = "killed by signal " + std::to_string(info.si_status);
  if (name != nullptr) text += std::string(" (SIG") + name + ")";
  if (info.si_code == CLD_DUMPED) text += ", core dumped";
  return text;
}

// What a forked worker must not inherit from the manager's signal setup.
void ResetSignalsInChild() {
  for (int signal : {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGPIPE}) {
    struct sigaction action = {};
    action.sa_handler = SIG_DFL;
    sigemptyset(&action.sa_mask);
    sigaction(signal, &action, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

}  // namespace

void BlockManagerSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int signal : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, signal);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

void ReadTestCrashPoint(const char* spec, SupervisorOptions* options) {
  if (spec == nullptr || *spec == '\0') return;
  std::string text(spec);
  size_t colon = text.find(':');
  if (colon == std::string::npos) return;
  std::string name = text.substr(colon + 1);
  int hit = 1;
  if (size_t second = name.find(':'); second != std::string::npos) {
    hit = std::max(1, std::atoi(name.c_str() + second + 1));
    name.resize(second);
  }
  options->crash_point_slot = std::atoi(text.c_str());
  options->crash_point_name = name;
  options->crash_point_hit = hit;
  SHM_LOG(kWarn) << "test hook: worker " << options->crash_point_slot << " will die at crash point "
                 << name << " (arrival " << hit << ")";
}

Supervisor::Supervisor(std::unique_ptr<Segment>* segment, int listen_fd, const Router* router,
                       const SupervisorOptions& options, std::function<void()> in_child)
    : segment_(segment),
      listen_fd_(listen_fd),
      resp_listen_fd_(options.worker.resp_listen_fd),
      router_(router),
      options_(options),
      in_child_(std::move(in_child)),
      manager_pid_(getpid()) {
  for (int i = 0; i < options_.workers; ++i)
    slots_.push_back(Slot{.backoff = CrashBackoff(options_.backoff)});
}

Supervisor::~Supervisor() {
  for (auto& [pid, child] : children_) {
    PidfdSendSignal(child.pidfd, SIGKILL);
    siginfo_t info = {};
    waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(child.pidfd), &info, WEXITED);
    close(child.pidfd);
  }
  if (listen_fd_ >= 0) close(listen_fd_);
  if (resp_listen_fd_ >= 0) close(resp_listen_fd_);
  if (signal_fd_ >= 0) close(signal_fd_);
}

Status Supervisor::Start() {
  sigset_t set;
  sigemptyset(&set);
  for (int signal : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, signal);
  signal_fd_ = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd_ < 0) return Status::Internal(std::string("signalfd: ") + strerror(errno));
  for (int slot = 0; slot < options_.workers; ++slot) {
    Status s = Spawn(slot);
    if (!s.ok() && slot == 0) return s;
    if (!s.ok()) slots_[slot].respawn_at_ms = SteadyNowMs() + options_.backoff.base_delay_ms;
  }
  return Status::OK();
}

Status Supervisor::Spawn(int slot) {
  Slot& s = slots_[slot];
  bool arm = !s.started_once && slot == options_.crash_point_slot;
  if (s.started_once) ++s.restarts;
  pid_t pid = fork();
  if (pid < 0) return Status::Internal(std::string("fork: ") + strerror(errno));
  if (pid == 0) RunChild(slot, arm);
  s.started_once = true;
  int pidfd = PidfdOpen(pid);
  if (pidfd < 0) {
    // Cannot watch it, so it must not run: the kernel lacks pidfd_open (Linux < 5.3).
    int error = errno;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return Status::Internal(std::string("pidfd_open: ") + strerror(error) +
                            " (shmstate needs Linux 5.3 or later)");
  }
  segment()->RegisterWorker(slot, pid, s.restarts);
  s.pid = pid;
  s.respawn_at_ms = -1;
  children_[pid] = Child{.pid = pid, .pidfd = pidfd, .slot = slot};
  SHM_LOG(kInfo) << "worker " << slot << " started (pid " << pid << ", restarts " << s.restarts
                 << ")";
  return Status::OK();
}

void Supervisor::RunChild(int slot, bool arm_crash_point) {
  // Die with the manager, and close the race where it died before prctl ran.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != manager_pid_) _exit(1);
  ResetSignalsInChild();
  if (signal_fd_ >= 0) close(signal_fd_);
  for (auto& [pid, child] : children_) close(child.pidfd);
  int code = 70;
  try {
    if (in_child_) in_child_();
    if (arm_crash_point) {
      SetCrashPoint(options_.crash_point_name.c_str(), options_.crash_point_hit);
    }
    // In the worker table before serving: once this worker answers, /v1/stats names it and no
    // longer the worker it replaces (the manager writes the same row after fork, but may do so
    // after this worker's first answer).
    segment()->RegisterWorker(slot, getpid(), slots_[slot].restarts);
    WorkerOptions worker = options_.worker;
    worker.index = slot;
    code = RunWorker(segment(), listen_fd_, *router_, worker);
  } catch (const std::exception& e) {
    SHM_LOG(kError) << "worker " << slot << ": " << e.what();
  } catch (...) {
    SHM_LOG(kError) << "worker " << slot << ": unknown exception";
  }
  // _exit: the manager's atexit handlers and destructors are not the child's to run.
  _exit(code);
}

int Supervisor::Run() {
  while (!(shutting_down_ && children_.empty())) {
    std::vector<pollfd> fds;
    std::vector<pid_t> pids;
    fds.push_back(pollfd{signal_fd_, POLLIN, 0});
    for (auto& [pid, child] : children_) {
      fds.push_back(pollfd{child.pidfd, POLLIN, 0});
      pids.push_back(pid);
    }
    int ready = poll(fds.data(), fds.size(), PollTimeoutMs(SteadyNowMs()));
    if (ready < 0 && errno != EINTR) {
      SHM_LOG(kError) << "poll: " << strerror(errno);
      BeginShutdown(SteadyNowMs());
    }
    if (ready > 0 && (fds[0].revents & POLLIN)) ReadSignals();
    for (size_t i = 1; ready > 0 && i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      auto it = children_.find(pids[i - 1]);
      if (it != children_.end()) Reap(it->second);
    }
    if (!shutting_down_) MaybeRebuild(SteadyNowMs());
    int64_t now = SteadyNowMs();
    if (!shutting_down_) {
      StartDueRespawns(now);
      CheckHeartbeats(now);
      AdvanceRollingRestart(now);
      ReapDeadClients(now);
      ExpireKeys(now);
      MaybeSnapshot(now);
    }
    EnforceStopDeadlines(now);
  }
  SHM_LOG(kInfo) << "all workers stopped";
  return exit_code_;
}

void Supervisor::ReadSignals() {
  signalfd_siginfo info;
  while (read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    int64_t now = SteadyNowMs();
    if (info.ssi_signo == SIGHUP && !shutting_down_) {
      SHM_LOG(kInfo) << "SIGHUP: restarting the workers one by one";
      for (int slot = 0; slot < options_.workers; ++slot) {
        if (std::find(roll_queue_.begin(), roll_queue_.end(), slot) == roll_queue_.end()) {
          roll_queue_.push_back(slot);
        }
      }
    } else if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) {
      if (!shutting_down_) {
        SHM_LOG(kInfo) << (info.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT")
                       << ": stopping the workers";
      }
      BeginShutdown(now);
    }
  }
}

void Supervisor::Reap(Child& child) {
  siginfo_t info = {};
  if (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(child.pidfd), &info,
             WEXITED | WNOHANG) != 0 ||
      info.si_pid == 0) {
    return;  // Not dead yet (spurious wakeup) or already reaped.
  }
  close(child.pidfd);
  Child dead = child;
  children_.erase(dead.pid);
  HandleExit(dead, info);
}

void Supervisor::HandleExit(const Child& child, const siginfo_t& info) {
  // Whether it crashed or stopped when asked, release its slots and settle any write it left
  // half done, before a replacement (or anyone) can trip over them.
  RecoveryReport report;
  Status recovered = segment()->RecoverDeadProcess(child.pid, &report);
  if (report.intents_resolved > 0 || report.blobs_freed > 0) {
    SHM_LOG(kWarn) << "worker " << child.slot << " (pid " << child.pid << ") left "
                   << report.intents_resolved << " unfinished writes; freed " << report.blobs_freed
                   << " blocks";
  }
  Status probe = recovered.ok() ? segment()->Probe() : recovered;
  if (!probe.ok()) {
    SHM_LOG(kError) << "segment check after worker " << child.slot << " (pid " << child.pid
                    << ") exited: " << probe.ToString();
  }
  if (child.pid == rolling_old_pid_) rolling_old_pid_ = 0;
  Slot& slot = slots_[child.slot];
  bool current = slot.pid == child.pid;
  if (current) slot.pid = 0;
  bool clean = info.si_code == CLD_EXITED && info.si_status == 0;
  if (child.stopping) {
    LogMessage(clean ? LogLevel::kInfo : LogLevel::kWarn).stream()
        << "worker " << child.slot << " (pid " << child.pid << ") stopped: " << DescribeExit(info);
    return;
  }
  // Any exit we did not ask for is a crash, a clean one included: the slot must be refilled
  // (unless a rolling restart already refilled it, or we are stopping anyway).
  if (!current || shutting_down_) {
    SHM_LOG(kWarn) << "worker " << child.slot << " (pid " << child.pid << ") died while being "
                   << (shutting_down_ ? "shut down" : "replaced") << ": " << DescribeExit(info);
    return;
  }
  int64_t now = SteadyNowMs();
  int64_t delay = slot.backoff.RecordCrash(now);
  SHM_LOG(kWarn) << "worker " << child.slot << " (pid " << child.pid << ") "
                 << (child.killed_as_hung ? "hung and was killed: " : "died: ")
                 << DescribeExit(info) << "; restarts so far " << slot.restarts
                 << (delay > 0
                         ? "; crash loop (" + std::to_string(slot.backoff.CrashesInWindow(now)) +
                               " crashes), replacing it in " + std::to_string(delay) + " ms"
                         : "; replacing it");
  slot.respawn_at_ms = now + delay;
  // On a poisoned segment the replacement would be killed at once by the rebuild.
  if (!segment()->poisoned()) StartDueRespawns(now);
}

void Supervisor::StartDueRespawns(int64_t now_ms) {
  for (int i = 0; i < options_.workers; ++i) {
    Slot& slot = slots_[i];
    if (slot.pid != 0 || slot.respawn_at_ms < 0 || slot.respawn_at_ms > now_ms) continue;
    Status s = Spawn(i);
    if (!s.ok()) {
      int64_t delay = std::max<int64_t>(slot.backoff.RecordCrash(now_ms), 100);
      SHM_LOG(kError) << "cannot start worker " << i << ": " << s.ToString() << "; retrying in "
                      << delay << " ms";
      slot.respawn_at_ms = now_ms + delay;
    }
  }
}

void Supervisor::CheckHeartbeats(int64_t now_ms) {
  if (options_.heartbeat_timeout_ms <= 0) return;
  for (auto& [pid, child] : children_) {
    if (child.stopping || child.killed_as_hung) continue;
    int64_t age = now_ms - segment()->LastHeartbeatMs(child.slot);
    if (age <= options_.heartbeat_timeout_ms) continue;
    SHM_LOG(kWarn) << "worker " << child.slot << " (pid " << pid
                   << ") has not sent a heartbeat for " << age << " ms; killing it";
    child.killed_as_hung = true;
    Signal(child, SIGKILL);
  }
}

void Supervisor::AdvanceRollingRestart(int64_t now_ms) {
  while (rolling_old_pid_ == 0 && !roll_queue_.empty()) {
    int slot = roll_queue_.front();
    roll_queue_.pop_front();
    pid_t old_pid = slots_[slot].pid;
    if (old_pid == 0) continue;  // Being replaced after a crash anyway.
    // Start the new one first: the listening socket never lacks an acceptor.
    Status s = Spawn(slot);
    if (!s.ok()) {
      SHM_LOG(kError) << "rolling restart: cannot start worker " << slot << ": " << s.ToString();
      slots_[slot].pid = old_pid;
      continue;
    }
    RequestStop(children_[old_pid], now_ms);
    rolling_old_pid_ = old_pid;
  }
}

void Supervisor::RequestStop(Child& child, int64_t now_ms) {
  if (child.stopping) return;
  child.stopping = true;
  child.kill_at_ms = now_ms + options_.stop_timeout_ms;
  Signal(child, SIGTERM);
}

void Supervisor::BeginShutdown(int64_t now_ms) {
  if (shutting_down_) return;
  shutting_down_ = true;
  roll_queue_.clear();
  // Stop accepting: connections not yet accepted are refused rather than left hanging.
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    listen_fd_ = -1;
  }
  if (resp_listen_fd_ >= 0) {
    close(resp_listen_fd_);
    resp_listen_fd_ = -1;
  }
  for (auto& [pid, child] : children_) RequestStop(child, now_ms);
}

void Supervisor::EnforceStopDeadlines(int64_t now_ms) {
  for (auto& [pid, child] : children_) {
    if (!child.stopping || child.sent_kill || now_ms < child.kill_at_ms) continue;
    SHM_LOG(kWarn) << "worker " << child.slot << " (pid " << pid << ") did not stop within "
                   << options_.stop_timeout_ms << " ms; killing it";
    child.sent_kill = true;
    Signal(child, SIGKILL);
  }
}

void Supervisor::Signal(const Child& child, int signal) {
  if (PidfdSendSignal(child.pidfd, signal) != 0 && errno != ESRCH) {
    SHM_LOG(kError) << "cannot signal worker pid " << child.pid << ": " << strerror(errno);
  }
}

void Supervisor::MaybeRebuild(int64_t now_ms) {
  Segment* current = segment();
  if (current->poisoned()) {
    SHM_LOG(kError) << "segment /dev/shm/" << current->shm_name()
                    << " is poisoned (a process died inside its allocator): rebuilding it";
    Rebuild(RebuildReason::kPoisoned, current->size());
    return;
  }
  size_t size = current->size();
  if (now_ms < growth_retry_at_ms_ || size >= options_.max_segment_size) return;
  size_t used = size - std::min(size, current->free_bytes());
  if (static_cast<double>(used) < options_.growth_high_water * static_cast<double>(size)) return;
  size_t new_size = std::min(size * 2, options_.max_segment_size);
  SHM_LOG(kInfo) << "segment /dev/shm/" << current->shm_name() << " is " << (100 * used / size)
                 << "% used: growing it to " << (new_size >> 20) << " MiB";
  Rebuild(RebuildReason::kGrowth, new_size);
}

void Supervisor::Rebuild(RebuildReason reason, size_t new_size) {
  bool poisoned = reason == RebuildReason::kPoisoned;
  int64_t started = SteadyNowMs();
  // A poisoned segment must not be touched by anyone during the copy: kill at once. Growth lets
  // in-flight requests finish (bounded) so no client loses an answer.
  StopAllWorkersNow(/*graceful=*/!poisoned);
  roll_queue_.clear();
  rolling_old_pid_ = 0;

  Segment* old_segment = segment();
  std::string old_name = old_segment->shm_name();
  SegmentOptions next;
  next.name = options_.segment_name;
  next.generation = old_segment->generation() + 1;
  next.size = new_size;
  next.max_objects = options_.max_objects;
  next.group = options_.segment_group;
  QuiesceClients(old_segment, poisoned ? kPoisonedClientWaitMs : options_.stop_timeout_ms);
  std::unique_ptr<Segment> fresh;
  SnapshotStats stats;
  Status copied = CopyIntoNewSegment(old_segment, next, &fresh, &stats);
  if (copied.ok()) {
    fresh->MarkServing();
    old_segment->SetSuccessor(next.generation);  // Clients waiting in the old one follow.
    *segment_ = std::move(fresh);                // Unmaps the old generation in this process.
    Segment::Remove(old_name);
    SHM_LOG(kInfo) << "rebuilt /dev/shm/" << old_name << " into /dev/shm/" << segment()->shm_name()
                   << " (" << (segment()->size() >> 20) << " MiB) in " << (SteadyNowMs() - started)
                   << " ms: " << stats.objects << " objects copied (" << stats.bytes << " bytes)";
  } else if (poisoned) {
    // Serving a broken allocator is worse than not serving: stop (the caller still writes the
    // snapshot, which reads committed state only).
    SHM_LOG(kError) << "cannot rebuild the poisoned segment /dev/shm/" << old_name << ": "
                    << copied.ToString() << "; stopping (exit code 1)";
    exit_code_ = 1;
    BeginShutdown(SteadyNowMs());
    return;
  } else {
    old_segment->EndDrain();
    growth_retry_at_ms_ = SteadyNowMs() + kGrowthRetryMs;
    SHM_LOG(kError) << "cannot grow /dev/shm/" << old_name << ": " << copied.ToString()
                    << "; going on with the current segment (next try in " << kGrowthRetryMs / 1000
                    << " s)";
  }
  RespawnAll();
}

void Supervisor::ReapDeadClients(int64_t now_ms) {
  if (now_ms < next_client_reap_ms_) return;
  next_client_reap_ms_ = now_ms + kClientReapIntervalMs;
  for (pid_t pid : segment()->SlotOwners()) {
    if (pid == getpid() || children_.count(pid) != 0) continue;
    if (kill(pid, 0) == 0 || errno != ESRCH) continue;
    RecoveryReport report;
    Status s = segment()->RecoverDeadProcess(pid, &report);
    LogMessage(report.intents_resolved > 0 ? LogLevel::kWarn : LogLevel::kInfo).stream()
        << "attached client pid " << pid << " is gone: released " << report.slots_released
        << " slots, settled " << report.intents_resolved << " unfinished writes, freed "
        << report.blobs_freed << " blocks and " << report.cached_blocks_freed << " cached ones"
        << (s.ok() ? "" : ": " + s.ToString());
  }
  // A client killed holding the allocator's or the name index's lock (mid-allocation, or while
  // attaching) poisons the segment only for whoever takes that lock next, which may be nobody but
  // new clients failing to attach: look every interval, so the next tick rebuilds.
  if (Status probe = segment()->Probe(); !probe.ok()) {
    SHM_LOG(kError) << "segment check: " << probe.ToString();
    return;
  }
  // Caches of threads that wrote nothing for a whole interval go back to the allocator, so
  // idle processes do not keep free memory from the others.
  size_t trimmed = segment()->TrimIdleCaches();
  if (trimmed > 0) {
    SHM_LOG(kDebug) << "returned " << FormatSize(trimmed) << " from idle writers' blob caches";
  }
}

void Supervisor::ExpireKeys(int64_t now_ms) {
  if (now_ms < next_expire_ms_) return;
  next_expire_ms_ = now_ms + kExpireIntervalMs;
  for (int db = 0; db < Keyspace::kDatabases; ++db) {
    Keyspace keyspace;
    if (!Keyspace::Open(segment(), db, &keyspace, OpenMode::kOpenExisting).ok()) continue;
    // Like Redis: sample again while a quarter or more of the budget was expired, a few rounds.
    for (int round = 0; round < kExpireRounds; ++round) {
      size_t removed = 0;
      Status s = keyspace.SweepExpired(kExpireBudgetPerShard, &removed);
      if (!s.ok()) {
        SHM_LOG(kWarn) << "expiring keys of database " << db << ": " << s.ToString();
        break;
      }
      if (removed * 4 < kExpireBudgetPerShard) break;
    }
  }
}

void Supervisor::RespawnAll() {
  for (int slot = 0; slot < options_.workers; ++slot) {
    Status s = Spawn(slot);
    if (!s.ok()) {
      SHM_LOG(kError) << "cannot start worker " << slot << ": " << s.ToString();
      slots_[slot].respawn_at_ms = SteadyNowMs() + options_.backoff.base_delay_ms;
    }
  }
}

void Supervisor::StopAllWorkersNow(bool graceful) {
  int64_t kill_at = SteadyNowMs() + (graceful ? options_.stop_timeout_ms : 0);
  SHM_LOG(kInfo) << (graceful ? "stopping " : "killing ") << children_.size()
                 << " workers for the rebuild";
  for (auto& [pid, child] : children_) {
    child.stopping = true;
    Signal(child, graceful ? SIGTERM : SIGKILL);
  }
  bool killed = !graceful;
  while (!children_.empty()) {
    int64_t now = SteadyNowMs();
    if (!killed && now >= kill_at) {
      SHM_LOG(kWarn) << "workers did not stop within " << options_.stop_timeout_ms
                     << " ms; killing them";
      for (auto& [pid, child] : children_) Signal(child, SIGKILL);
      killed = true;
    }
    auto it = children_.begin();
    pollfd pfd{it->second.pidfd, POLLIN, 0};
    poll(&pfd, 1, killed ? 1000 : static_cast<int>(std::max<int64_t>(kill_at - now, 1)));
    siginfo_t info = {};
    if (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(it->second.pidfd), &info,
               WEXITED | WNOHANG) != 0 ||
        info.si_pid == 0) {
      continue;
    }
    // If growth fails the old segment stays in use: settle what a killed worker left there.
    // (Never on a poisoned segment: the copy repairs what it reads, the rest is dropped.)
    if (graceful) segment()->RecoverDeadProcess(it->second.pid, nullptr);
    close(it->second.pidfd);
    slots_[it->second.slot].pid = 0;
    children_.erase(it);
  }
  for (Slot& slot : slots_) slot.respawn_at_ms = -1;
}

void Supervisor::MaybeSnapshot(int64_t now_ms) {
  if (options_.snapshot_path.empty() || options_.snapshot_interval_ms <= 0) return;
  if (next_snapshot_ms_ == 0) next_snapshot_ms_ = now_ms + options_.snapshot_interval_ms;
  if (now_ms < next_snapshot_ms_ || segment()->poisoned()) return;
  next_snapshot_ms_ = now_ms + options_.snapshot_interval_ms;
  int64_t took_ms = 0;
  SnapshotStats stats;
  Status s = WriteSnapshot(segment(), options_.snapshot_path, &stats, &took_ms);
  if (!s.ok()) {
    SHM_LOG(kError) << "periodic snapshot to " << options_.snapshot_path
                    << " failed: " << s.ToString();
    return;
  }
  LogMessage(took_ms > kSlowSnapshotMs ? LogLevel::kWarn : LogLevel::kInfo).stream()
      << "snapshot written to " << options_.snapshot_path << ": " << stats.objects << " objects, "
      << stats.bytes << " bytes in " << took_ms << " ms";
}

Status WriteSnapshot(Segment* segment, const std::string& path, SnapshotStats* stats,
                     int64_t* took_ms) {
  int64_t started = SteadyNowMs();
  std::string bytes;
  SHM_RETURN_IF_ERROR(SerializeSegment(segment, &bytes, stats));
  SHM_RETURN_IF_ERROR(WriteFileAtomically(path, bytes));
  *took_ms = SteadyNowMs() - started;
  return Status::OK();
}

int Supervisor::PollTimeoutMs(int64_t now_ms) const {
  int64_t timeout = kHeartbeatCheckMs;
  for (const Slot& slot : slots_) {
    if (slot.pid == 0 && slot.respawn_at_ms >= 0) {
      timeout = std::min(timeout, std::max<int64_t>(slot.respawn_at_ms - now_ms, 0));
    }
  }
  return static_cast<int>(timeout);
}

}  // namespace shm
