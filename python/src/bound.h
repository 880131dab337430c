// Bound: a library handle (shm::Dict, shm::List, ...) of a named object, bound to this process's
// Attachment of its server: every operation runs inside the segment's client gate, and the
// handle is reopened by name when the server moved its state into a new generation.
//
// Thread-compatibility: the GIL guards a Bound (the module's handles and the Manager's fast
// paths call it with the GIL held; Run releases it around blocking work).
#ifndef SHMSTATE_PYTHON_BOUND_H_
#define SHMSTATE_PYTHON_BOUND_H_

#include <pybind11/pybind11.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <utility>

#include "attachment.h"
#include "convert.h"
#include "shm/attachment.h"
#include "shm/handle.h"
#include "shm/segment.h"
#include "shm/status.h"

namespace shmstate {

// This process's one attachment of the server named by `server` (a str), waiting up to 10 s for
// it to come up: what a Manager proxy's handle binds to. Raises as Check does.
inline std::shared_ptr<Attachment> SharedAttachment(pybind11::handle server) {
  std::shared_ptr<Attachment> attachment;
  Check(Attachment::Shared(ToText(server, "server"), std::chrono::seconds(10), &attachment));
  return attachment;
}

// A proxy of kind Proxy bound to an attachment: the library's Handle (shm/handle.h), opened by
// name in whatever generation the attachment is in and reopened after a move
// (shm::RunClientOp). It stands for the object it opened: a deleted object answers NotFound
// rather than being created again (kKeepStale). The GIL guards it.
template <class Proxy>
class Bound {
 public:
  using Opener = std::function<shm::Status(shm::Segment*, Proxy*)>;

  Bound(std::shared_ptr<Attachment> attachment, Opener open)
      : attachment_(std::move(attachment)),
        open_(std::move(open)),
        handle_(shm::StalePolicy::kKeepStale) {
    Run([](Proxy&) { return shm::Status::OK(); });  // Opens (and creates) now, so errors show here.
  }

  // Runs fn(proxy) -> Status as one client operation. With `release_gil`, fn runs without the
  // GIL on a copy of the proxy (another thread may reopen the handle meanwhile).
  template <class F>
  void Run(F&& fn, bool release_gil = false) {
    auto op = [&](const std::shared_ptr<shm::Segment>& segment) {
      uint64_t epoch = attachment_->epoch();
      return handle_.Run(segment.get(), open_, [&](Proxy& proxy) {
        if (segment_ != segment) {  // Keeps the mapping the handle points into.
          segment_ = segment;
          epoch_ = epoch;
        }
        if (!release_gil) return fn(proxy);
        Proxy copy = proxy;
        py::gil_scoped_release nogil;
        return fn(copy);
      });
    };
    Check(shm::RunClientOp(*attachment_, op, [&](const std::shared_ptr<shm::Segment>& seen) {
      py::gil_scoped_release nogil;
      return attachment_->Follow(seen);
    }));
  }

  // Run for the hot methods (the fast path below): fn(proxy) -> Status under the GIL, without
  // copying the segment's shared_ptr. It takes the same gate and raises the same errors as Run;
  // whenever the handle must move (a new epoch, a refused gate, a Poisoned answer: the operation
  // did not happen) it hands the call to Run, which follows and reopens.
  template <class F>
  void RunFast(F&& fn) {
    if (segment_ != nullptr && epoch_ == attachment_->epoch() && handle_.OpenedIn(segment_.get())) {
      shm::Segment* segment = segment_.get();  // Kept alive by segment_ (the GIL is held).
      shm::Status s = segment->EnterClientOp();
      if (s.ok()) {
        s = fn(handle_.proxy());
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
  std::shared_ptr<Attachment> attachment_;
  Opener open_;
  shm::Handle<Proxy> handle_;
  std::shared_ptr<shm::Segment> segment_;  // The segment handle_ was last used in.
  uint64_t epoch_ = 0;                     // The attachment's epoch then.
};

// Blocking calls wait in slices this long, leaving the client gate between them so that a
// generation move never waits for a long poll, and Ctrl-C ends a long wait.
constexpr std::chrono::milliseconds kWaitSlice{100};

// Calls attempt(slice) -> bool (done) with slices of `total` until it is done (true) or the time
// is up (false). The first call has a slice of 0 when `total` is 0 (no wait at all).
template <class Attempt>
bool WaitInSlices(std::chrono::milliseconds total, Attempt&& attempt) {
  auto deadline = std::chrono::steady_clock::now() + total;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (attempt(std::clamp(left, std::chrono::milliseconds(0), kWaitSlice))) return true;
    if (left <= kWaitSlice) return false;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }
}

}  // namespace shmstate

#endif  // SHMSTATE_PYTHON_BOUND_H_
