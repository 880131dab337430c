// Segment: a process-local handle on one shared-memory segment holding shmstate's state.
//
// The manager creates the segment (create_only, mode 0600, or 0660 for one group when asked;
// /dev/shm free space checked first); workers and tools attach to it (open_only; the magic,
// layout version, Boost version and generation recorded in its Root must match this build or
// attaching is refused with a message naming both versions). The segment is named
// "<prefix>.<generation>"; a rebuild creates the next generation.
//
// Process-safety: a Segment may be used from any number of threads of the process that opened it.
// It must not be used across fork() by both parent and child for writes that are in flight; a
// forked child may keep using an inherited Segment (each thread claims its own intent slot).
#ifndef SHM_SEGMENT_H_
#define SHM_SEGMENT_H_

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "shm/status.h"

namespace shm {

class Registry;

struct SegmentOptions {
  // Prefix of the shared-memory object name; the segment is /dev/shm/<name>.<generation>.
  std::string name = "shmstate";
  uint64_t generation = 1;
  // Total bytes, charged to /dev/shm at creation.
  size_t size = size_t{64} << 20;
  // Capacity of the registry (number of named objects).
  uint32_t max_objects = 4096;
  // kNoGroup: mode 0600, the creating user alone. Else mode 0660 and this group, so processes of
  // another user in the group (a web app) can attach. The creator must be allowed to chown to it.
  static constexpr gid_t kNoGroup = static_cast<gid_t>(-1);
  gid_t group = kNoGroup;
};

// Per-worker figures kept in the segment (written by the worker, read by anyone).
struct WorkerInfo {
  int index = 0;
  pid_t pid = 0;
  uint32_t restarts = 0;
  int64_t heartbeat_ms = 0;  // Steady clock.
  int64_t started_ms = 0;    // Wall clock.
  uint64_t requests = 0;
  uint64_t client_errors = 0;
  uint64_t server_errors = 0;
};

// What RecoverDeadProcess settled.
struct RecoveryReport {
  int slots_released = 0;
  int intents_resolved = 0;
  int blobs_freed = 0;          // Garbage and unpublished blobs its intent slots named.
  int cached_blocks_freed = 0;  // Free blocks its threads' caches held.
};

class Segment {
 public:
  class Impl;

  // "<prefix>.<generation>".
  static std::string ShmName(std::string_view prefix, uint64_t generation);
  // Checks a prefix: the same rules as object names, so it cannot reach another file.
  static Status ValidatePrefix(std::string_view prefix);

  // The version of the in-segment layout this build reads and writes. Attaching to a segment of
  // another layout version is refused (InvalidArgument naming both); the fields that say so
  // (magic, layout version, Boost version) keep their place in every version.
  static uint32_t LayoutVersion();

  // The smallest size Create accepts for a registry of `max_objects`.
  static size_t MinimumSize(uint32_t max_objects);

  static Status Create(const SegmentOptions& options, std::unique_ptr<Segment>* result);
  static Status Attach(std::string_view shm_name, std::unique_ptr<Segment>* result);
  // Names "<prefix>.<generation>" of the segments of `prefix` in `dir`, newest generation first.
  static std::vector<std::string> ListGenerations(std::string_view prefix,
                                                  std::string_view dir = "/dev/shm");
  // Unlinks the shared-memory object; NotFound when there is none.
  static Status Remove(std::string_view shm_name);

  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  const std::string& shm_name() const;
  uint64_t generation() const;
  // Tells this mapping from every other one this process made (never reused, never 0): a
  // handle opened in one is not valid in another, even at the same address (shm/handle.h).
  uint64_t instance_id() const;
  size_t size() const;
  // Bytes not holding data: the allocator's free memory plus what the threads' blob caches
  // hold (their blocks are free, kept for the next write of their thread).
  size_t free_bytes() const;
  // The part of free_bytes in blob caches.
  size_t cached_bytes() const;
  // Returns to the allocator the blocks of caches no thread used since the previous call (the
  // manager calls it every second). Returns the bytes given back.
  size_t TrimIdleCaches();
  Registry& registry();

  // True once any process saw the allocator poisoned: the manager must rebuild.
  bool poisoned() const;
  // Takes the name index's lock and allocates and frees a few bytes: Poisoned (and poisoned()
  // true from then on) if either lock's holder died, OK otherwise.
  Status Probe();

  // Settles what a dead process left behind: takes the locks its intents name (which runs the
  // owner-death repair), frees the blobs they prove to be garbage, and releases its slots.
  Status RecoverDeadProcess(pid_t pid, RecoveryReport* report);

  // --- Processes the manager did not fork (clients: the Python module, tools) ---------------
  // The manager moves the state into a new generation (growth, a poisoned allocator) or stops;
  // it stops its own workers first but cannot stop clients, so a client brackets each operation:
  // EnterClientOp marks this thread's intent slot busy and then checks the draining flag. It
  // answers OK (the caller runs the operation, then calls LeaveClientOp), Poisoned when the
  // segment is draining (the caller must not touch it, but follow successor_generation()), or
  // OutOfSpace when every intent slot is taken. The manager sets the flag first (BeginDrain) and
  // then waits until no live thread is busy (WaitForClientOps), so no client write lands in a
  // segment that is being copied. Both sides use sequentially consistent accesses.
  Status EnterClientOp();
  void LeaveClientOp();
  bool draining() const;
  // The generation the state was copied into, once the copy is complete; 0 until then (and for
  // good when the manager stopped instead).
  uint64_t successor_generation() const;
  void BeginDrain();
  // The move failed and this segment stays in use: clients go on with it.
  void EndDrain();
  // False if a live client thread was still inside an operation when `timeout` ran out.
  bool WaitForClientOps(std::chrono::milliseconds timeout);
  void SetSuccessor(uint64_t generation);
  // Whether the manager has opened this segment to clients (after its start-up restore or its
  // rebuild copy); clients attach only to such a segment.
  void MarkServing();
  bool serving() const;
  // Distinct pids that hold intent slots (workers and clients, live or dead).
  std::vector<pid_t> SlotOwners() const;
  // Live processes holding intent slots that are neither in the worker table nor the manager
  // that created the segment: the attached clients.
  std::vector<pid_t> LiveClients() const;

  // Worker table. `index` < kMaxWorkers.
  static constexpr int kMaxWorkers = 256;
  void RegisterWorker(int index, pid_t pid, uint32_t restarts);
  void Heartbeat(int index);
  void CountResponse(int index, int http_status);
  std::vector<WorkerInfo> Workers() const;
  // Steady-clock heartbeat of a worker slot (0 if never).
  int64_t LastHeartbeatMs(int index) const;

  Impl* impl() { return impl_.get(); }

 private:
  explicit Segment(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
  std::unique_ptr<Registry> registry_;
};

// Milliseconds on the steady clock (shared by all processes of the machine) and the wall clock.
int64_t SteadyNowMs();
int64_t WallNowMs();

}  // namespace shm

#endif  // SHM_SEGMENT_H_
