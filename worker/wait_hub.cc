#include "wait_hub.h"

#include <exception>
#include <memory>
#include <string>
#include <utility>

namespace shm {
namespace {

// A throwing attempt or give_up is a handler bug: its request gets a 500, the others go on.
template <typename Fn>
Status Guarded(const Fn& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("wait failed: ") + e.what());
  } catch (...) {
    return Status::Internal("wait failed");
  }
}

}  // namespace

bool WaitHub::SubmitHttp(ParkedWait wait, Done done, uint64_t* id) {
  struct Call {
    ParkedWait wait;
    Done done;
  };
  auto call = std::make_shared<Call>(Call{std::move(wait), std::move(done)});
  auto attempt = [call] {
    HttpResponse response;
    bool answered = true;
    Status status = Guarded([&] {
      Status s;
      answered = call->wait.attempt(&response, &s);
      return s;
    });
    if (answered) call->done(std::move(status), std::move(response));
    return answered;
  };
  auto give_up = [call](bool stopping) {
    HttpResponse response;
    Status status = Guarded([&] { return call->wait.give_up(&response, stopping); });
    call->done(std::move(status), std::move(response));
  };
  WaitQueue::Wait queued{call->wait.key, call->wait.deadline, std::move(attempt),
                         std::move(give_up)};
  return queue_.Submit(std::move(queued), id);
}

void WaitHub::Stop() {
  queue_.Stop();
  MutexLock lock(&mu_);
  ++generation_;
  armed_ = false;
  timer_.cancel();
}

void WaitHub::Arm() {
  MutexLock lock(&mu_);
  const Clock::time_point when = queue_.NextPoll();
  if (when == Clock::time_point::max() || (armed_ && armed_at_ <= when)) return;
  armed_ = true;
  armed_at_ = when;
  const uint64_t generation = ++generation_;
  timer_.expires_at(when);  // Cancels the earlier wait, whose handler then does nothing.
  timer_.async_wait([this, generation](const boost::system::error_code& ec) {
    if (!ec) OnTimer(generation);
  });
}

void WaitHub::OnTimer(uint64_t generation) {
  {
    MutexLock lock(&mu_);
    if (generation != generation_) return;
    armed_ = false;
  }
  queue_.Poll(Clock::now());
  Arm();
}

}  // namespace shm
