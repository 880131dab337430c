// Attachment: this process's connection to the segment of a running `shmstate serve --name NAME`,
// for a process the manager did not fork (the Python module, a tool).
//
// The manager moves the state into generation g+1 when it grows the segment or repairs a
// poisoned allocator. Every operation runs between Segment::EnterClientOp and LeaveClientOp (see
// shm/segment.h): when the segment is draining, the operation has not touched it; the attachment
// then waits for the successor, maps it, bumps its epoch, and the operation runs again there.
// Handles opened in the old generation see the new epoch and reopen themselves by name
// (shm/handle.h: a Handle opened in another mapping opens again). RunClientOp is that loop.
//
// Process-safety: one Attachment may be used by every thread of the process; it survives fork
// (the mapping is inherited; the child claims its own intent slots).
#ifndef SHM_ATTACHMENT_H_
#define SHM_ATTACHMENT_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "shm/mutex.h"
#include "shm/segment.h"
#include "shm/status.h"

namespace shm {

class Attachment {
 public:
  // Maps the newest generation of `prefix`. NotFound when no server of that name runs. While the
  // manager rebuilds a poisoned segment, waits (at most follow_timeout) for the new generation.
  static Status Open(const std::string& prefix, std::chrono::milliseconds follow_timeout,
                     std::shared_ptr<Attachment>* result);

  // As Open, but shares the attachment of `prefix` (and `follow_timeout`) that the process has
  // already, so that every client, proxy and wake word of one server maps its segment once.
  // The mapping goes away with the last user (the cache holds it weakly).
  static Status Shared(const std::string& prefix, std::chrono::milliseconds follow_timeout,
                       std::shared_ptr<Attachment>* result);

  // The segment operations run in now, and the epoch it belongs to (bumped on every move).
  std::shared_ptr<Segment> segment() const EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return segment_;
  }
  uint64_t epoch() const { return epoch_.load(std::memory_order_acquire); }

  // `seen` refused an operation (draining or poisoned): waits until it has a successor and maps
  // it (OK: run the operation again), or until the move was called off (OK as well), or until
  // follow_timeout (Poisoned, with a message that says to re-attach). Blocks: call without the
  // GIL.
  Status Follow(const std::shared_ptr<Segment>& seen);

  const std::string& prefix() const { return prefix_; }
  std::chrono::milliseconds follow_timeout() const { return follow_timeout_; }

 private:
  Attachment(std::string prefix, std::chrono::milliseconds follow_timeout,
             std::shared_ptr<Segment> segment)
      : prefix_(std::move(prefix)), follow_timeout_(follow_timeout), segment_(std::move(segment)) {}

  static Status AttachNewest(const std::string& prefix, std::shared_ptr<Segment>* result);
  // Installs `next` unless another thread already moved past `seen`.
  void Replace(const std::shared_ptr<Segment>& seen, std::shared_ptr<Segment> next) EXCLUDES(mu_);

  const std::string prefix_;
  const std::chrono::milliseconds follow_timeout_;
  mutable Mutex mu_;
  std::shared_ptr<Segment> segment_ GUARDED_BY(mu_);
  std::atomic<uint64_t> epoch_{1};  // Written under mu_.
};

// Runs op(segment) -> Status (segment: the shared_ptr of the attachment's current segment) as
// one client operation, between EnterClientOp and LeaveClientOp. When the segment refuses it
// (draining) or op answers Poisoned (the operation did not happen), runs follow(segment) ->
// Status, which must call attachment.Follow(segment) (it blocks: the Python module releases
// the GIL around it), and runs op again in the successor. op opens its handles there itself
// (Handle::Run opens a proxy opened in another mapping again).
template <typename Op, typename FollowFn>
Status RunClientOp(Attachment& attachment, Op&& op, FollowFn&& follow) {
  while (true) {
    std::shared_ptr<Segment> segment = attachment.segment();
    Status s = segment->EnterClientOp();
    if (s.ok()) {
      s = op(segment);
      segment->LeaveClientOp();
    }
    if (!s.IsPoisoned()) return s;
    SHM_RETURN_IF_ERROR(follow(segment));
  }
}

}  // namespace shm

#endif  // SHM_ATTACHMENT_H_
