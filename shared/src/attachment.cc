#include "shm/attachment.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <thread>
#include <utility>

namespace shm {

Status Attachment::AttachNewest(const std::string& prefix, std::shared_ptr<Segment>* result) {
  SHM_RETURN_IF_ERROR(Segment::ValidatePrefix(prefix));
  Status last =
      Status::NotFound("no running shmstate server named '" + prefix + "' (no /dev/shm/" + prefix +
                       ".<generation>); start one with: shmstate serve --name " + prefix);
  // Newest first; an older one may be a leftover a crashed manager could not remove.
  for (const std::string& name : Segment::ListGenerations(prefix)) {
    std::unique_ptr<Segment> segment;
    Status s = Segment::Attach(name, &segment);
    if (s.ok() && !segment->serving())
      continue;  // Being filled by a rebuild: the older one
                 // is draining and points at it when done.
    if (s.ok()) {
      *result = std::shared_ptr<Segment>(std::move(segment));
      return Status::OK();
    }
    if (!s.IsNotFound()) last = s;  // Removed between the listing and the attach: try the next.
  }
  return last;
}

Status Attachment::Open(const std::string& prefix, std::chrono::milliseconds follow_timeout,
                        std::shared_ptr<Attachment>* result) {
  std::shared_ptr<Segment> segment;
  // A segment the manager is rebuilding (a process died inside its allocator) is poisoned until
  // its successor serves: wait for that as an attached client's Follow does, up to the same
  // follow_timeout, rather than fail an attach that lands in those few milliseconds.
  auto deadline = std::chrono::steady_clock::now() + follow_timeout;
  for (auto pause = std::chrono::milliseconds(1);;
       pause = std::min(pause * 2, std::chrono::milliseconds(20))) {
    Status s = AttachNewest(prefix, &segment);
    if (s.ok()) break;
    if (!s.IsPoisoned() || std::chrono::steady_clock::now() >= deadline) return s;
    std::this_thread::sleep_for(pause);
  }
  result->reset(new Attachment(prefix, follow_timeout, std::move(segment)));
  return Status::OK();
}

Status Attachment::Shared(const std::string& prefix, std::chrono::milliseconds follow_timeout,
                          std::shared_ptr<Attachment>* result) {
  using Key = std::pair<std::string, int64_t>;
  static Mutex* mu = new Mutex();  // Never destroyed: used from exit-time finalizers.
  static auto* cache = new std::map<Key, std::weak_ptr<Attachment>>();
  MutexLock lock(mu);
  const Key key(prefix, follow_timeout.count());
  if (auto it = cache->find(key); it != cache->end()) {
    if ((*result = it->second.lock()) != nullptr) return Status::OK();
  }
  SHM_RETURN_IF_ERROR(Open(prefix, follow_timeout, result));
  for (auto it = cache->begin(); it != cache->end();) {  // Forget the unmapped ones.
    it = it->second.expired() ? cache->erase(it) : std::next(it);
  }
  (*cache)[key] = *result;
  return Status::OK();
}

void Attachment::Replace(const std::shared_ptr<Segment>& seen, std::shared_ptr<Segment> next) {
  MutexLock lock(&mu_);
  if (segment_ != seen) return;
  segment_ = std::move(next);
  epoch_.fetch_add(1, std::memory_order_acq_rel);
}

Status Attachment::Follow(const std::shared_ptr<Segment>& seen) {
  auto deadline = std::chrono::steady_clock::now() + follow_timeout_;
  auto pause = std::chrono::milliseconds(1);
  while (true) {
    if (this->segment() != seen) return Status::OK();  // Another thread followed already.
    if (uint64_t successor = seen->successor_generation(); successor != 0) {
      std::unique_ptr<Segment> next;
      Status s = Segment::Attach(Segment::ShmName(prefix_, successor), &next);
      std::shared_ptr<Segment> installed;
      if (s.ok()) {
        installed = std::shared_ptr<Segment>(std::move(next));
      } else if (s = AttachNewest(prefix_, &installed); !s.ok()) {
        return s;  // Moved again and gone: the server stopped meanwhile.
      }
      Replace(seen, std::move(installed));
      return Status::OK();
    }
    if (!seen->draining() && !seen->poisoned()) return Status::OK();  // The move was called off.
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status::Poisoned("the server '" + prefix_ + "' stopped or is still moving /dev/shm/" +
                              seen->shm_name() + " after " +
                              std::to_string(follow_timeout_.count()) +
                              " ms; call shmstate.attach() again once it runs");
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
}

}  // namespace shm
