// Bound: a library handle (shm::Dict, shm::List, ...) of a named object, bound to this process's
// Attachment of its server: every operation runs inside the segment's client gate, and the
// handle is reopened by name when the server moved its state into a new generation.
//
// Thread-compatibility: the GIL guards a Bound (the module's handles and the Manager's fast
// paths call it with the GIL held; Run releases it around blocking work).
#ifndef SHMSTATE_PYTHON_BOUND_H_
#define SHMSTATE_PYTHON_BOUND_H_

#include <pybind11/pybind11.h>

#include <functional>
#include <memory>
#include <utility>

#include "attachment.h"
#include "convert.h"
#include "shm/segment.h"
#include "shm/status.h"

namespace shmstate {

// A proxy of kind Proxy bound to an attachment: opened by name in whatever generation the
// attachment is in, reopened after a move.
template <class Proxy>
class Bound {
 public:
  using Opener = std::function<shm::Status(shm::Segment*, Proxy*)>;

  Bound(std::shared_ptr<Attachment> attachment, Opener open)
      : attachment_(std::move(attachment)), open_(std::move(open)) {
    Run([](Proxy&) { return shm::Status::OK(); });  // Opens (and creates) now, so errors show here.
  }

  // Runs fn(proxy) -> Status as one client operation. With `release_gil`, fn runs without the
  // GIL on a copy of the proxy (another thread may reopen the handle meanwhile).
  template <class F>
  void Run(F&& fn, bool release_gil = false) {
    while (true) {
      std::shared_ptr<shm::Segment> segment = CurrentSegment();
      shm::Status s = segment->EnterClientOp();
      if (s.ok()) {
        s = ReopenIfMovedLocked(segment);
        if (s.ok()) {
          if (release_gil) {
            Proxy proxy = proxy_;
            py::gil_scoped_release nogil;
            s = fn(proxy);
          } else {
            s = fn(proxy_);
          }
        }
        segment->LeaveClientOp();
      }
      // Poisoned: the operation did not happen (the gate refused it, or the allocator failed
      // before the commit); run it again in the successor.
      if (s.IsPoisoned()) {
        shm::Status followed;
        {
          py::gil_scoped_release nogil;
          followed = attachment_->Follow(segment);
        }
        Check(followed);
        continue;
      }
      Check(s);
      return;
    }
  }

  // Run for the hot methods (the fast path below): fn(proxy) -> Status under the GIL, without
  // copying the segment's shared_ptr. It takes the same gate and raises the same errors as Run;
  // whenever the handle must move (a new epoch, a refused gate, a Poisoned answer: the operation
  // did not happen) it hands the call to Run, which follows and reopens.
  template <class F>
  void RunFast(F&& fn) {
    if (segment_ != nullptr && epoch_ == attachment_->epoch()) {
      shm::Segment* segment = segment_.get();  // Kept alive by segment_ (the GIL is held).
      shm::Status s = segment->EnterClientOp();
      if (s.ok()) {
        s = fn(proxy_);
        segment->LeaveClientOp();
        if (!s.IsPoisoned()) {
          Check(s);
          return;
        }
      }
    }
    Run(std::forward<F>(fn));
  }

  const std::shared_ptr<Attachment>& attachment() const { return attachment_; }

 private:
  std::shared_ptr<shm::Segment> CurrentSegment() {
    if (segment_ && epoch_ == attachment_->epoch()) return segment_;
    return attachment_->segment();
  }
  // Called inside the gate of `segment`; the GIL guards proxy_, segment_ and epoch_.
  shm::Status ReopenIfMovedLocked(const std::shared_ptr<shm::Segment>& segment) {
    if (segment == segment_) return shm::Status::OK();
    uint64_t epoch = attachment_->epoch();
    Proxy fresh;
    SHM_RETURN_IF_ERROR(open_(segment.get(), &fresh));
    proxy_ = std::move(fresh);
    segment_ = segment;
    epoch_ = epoch;
    return shm::Status::OK();
  }

  std::shared_ptr<Attachment> attachment_;
  Opener open_;
  std::shared_ptr<shm::Segment> segment_;  // The segment proxy_ was opened in.
  uint64_t epoch_ = 0;
  Proxy proxy_;
};

}  // namespace shmstate

#endif  // SHMSTATE_PYTHON_BOUND_H_
