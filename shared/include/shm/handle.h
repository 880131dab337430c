// Handle<Proxy> and HandleMap<Proxy>: the one way a front end (HTTP, Redis, the Python module)
// keeps a proxy of a named object from one operation to the next.
//
// A proxy is a cheap process-local reference to one incarnation of an object in one mapping of
// a segment. It goes stale in two ways: its object is deleted or expires (every call through it
// then answers NotFound; ObjectRef::live() tells), or the segment it was opened in is no longer
// the one operations run in (a client followed the server into a new generation, a worker sees
// another mapping). A Handle notices both: Run opens the proxy in the segment it is given when it
// was opened in another one (Segment::instance_id, never reused in a process), and, with
// kReopenStale, opens it again by name once when an operation answers NotFound through a stale
// proxy. Nothing is allocated per call: the opener is a template argument, called only to open.
//
// HandleMap keeps the handles of one thread by name (HTTP routes, the Redis keyspace's lists and
// hashes), bounded, dropped when the thread first sees another segment. Per thread, so a lookup
// takes no lock: the locking strategy of every handle is "one thread owns it" (the module's are
// guarded by the GIL).
//
// Process-safety: neither class is thread-safe; HandleMap::ThisThread() gives each thread its
// own. For following a server into its next generation, see shm/attachment.h.
#ifndef SHM_HANDLE_H_
#define SHM_HANDLE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "shm/registry.h"
#include "shm/segment.h"
#include "shm/status.h"

namespace shm {

// Whether a handle opens its object again by name when it was deleted (the name is what it
// stands for: HTTP routes, Redis keys) or keeps answering NotFound (it stands for the object it
// opened: a Python handle, whose deleted object is not silently created again).
enum class StalePolicy { kReopenStale, kKeepStale };

template <typename Proxy>
class Handle {
 public:
  explicit Handle(StalePolicy policy = StalePolicy::kReopenStale) : policy_(policy) {}

  // Whether the proxy was opened in `segment` (this mapping of it).
  bool OpenedIn(const Segment* segment) const {
    return segment_id_ != 0 && segment_id_ == segment->instance_id();
  }
  // The proxy as opened; for a caller that checked OpenedIn (the hot paths).
  Proxy& proxy() { return proxy_; }

  // Runs op(proxy) -> Status in `segment`, opening the proxy first with open(segment, &proxy)
  // -> Status when it was not opened there. With kReopenStale, when op answers NotFound and the
  // proxy is stale, opens it once more and runs op again: `op` must change nothing when it
  // answers NotFound through a stale proxy.
  template <typename Open, typename Op>
  Status Run(Segment* segment, Open&& open, Op&& op) {
    bool fresh = !OpenedIn(segment);
    if (fresh) SHM_RETURN_IF_ERROR(Reopen(segment, open));
    Status s = op(proxy_);
    if (fresh || !s.IsNotFound() || !Stale()) return s;
    SHM_RETURN_IF_ERROR(Reopen(segment, open));
    return op(proxy_);
  }

  // The proxy, opened in `segment` and (with kReopenStale) live: for a caller that keeps it for a
  // moment (an existing Redis aggregate). The reference is valid until the next call.
  template <typename Open>
  Status Get(Segment* segment, Open&& open, Proxy** proxy) {
    if (Proxy* current = Current(segment); current != nullptr) {
      *proxy = current;
      return Status::OK();
    }
    SHM_RETURN_IF_ERROR(Reopen(segment, open));
    *proxy = &proxy_;
    return Status::OK();
  }
  // Get's answer when it needs no opening, else nullptr (the caller then calls Get): for a path
  // that runs per command, where Get's Status and opener are measurable.
  Proxy* Current(const Segment* segment) {
    return OpenedIn(segment) && !Stale() ? &proxy_ : nullptr;
  }

  // Takes `proxy`, opened in `segment` by the caller (it created the object).
  void Set(Segment* segment, const Proxy& proxy) {
    proxy_ = proxy;
    segment_id_ = segment->instance_id();
  }
  // Forgets the proxy: the next Run opens it again.
  void Reset() { segment_id_ = 0; }

 private:
  bool Stale() const {
    if constexpr (requires(const Proxy& p) { p.ref().live(); }) {
      return policy_ == StalePolicy::kReopenStale && !proxy_.ref().live();
    } else {
      return false;
    }
  }
  template <typename Open>
  Status Reopen(Segment* segment, Open& open) {
    segment_id_ = 0;  // Not valid until open succeeds.
    Proxy fresh;
    SHM_RETURN_IF_ERROR(open(segment, &fresh));
    proxy_ = std::move(fresh);
    segment_id_ = segment->instance_id();
    return Status::OK();
  }

  StalePolicy policy_;
  uint64_t segment_id_ = 0;  // Segment::instance_id of the mapping proxy_ was opened in; 0: none.
  Proxy proxy_;
};

// This thread's handles of one proxy type, by object name (kReopenStale).
template <typename Proxy>
class HandleMap {
 public:
  static constexpr size_t kMaxEntries = 8192;  // Bounded; opening again is cheap enough.

  static HandleMap& ThisThread() {
    thread_local HandleMap map;
    return map;
  }

  // Runs op(proxy) on the handle of `name` in `segment` (Handle::Run); open(segment, &proxy)
  // opens it when it is not there or went stale.
  template <typename Open, typename Op>
  Status Run(Segment* segment, std::string_view name, Open&& open, Op&& op) {
    return Of(segment, name).Run(segment, open, op);
  }
  // The live proxy of `name` (Handle::Get), valid until the next call on this map.
  template <typename Open>
  Status Get(Segment* segment, std::string_view name, Open&& open, Proxy** proxy) {
    return Of(segment, name).Get(segment, open, proxy);
  }
  // Records `proxy` of `name`, just opened (created) in `segment` by the caller.
  void Set(Segment* segment, std::string_view name, const Proxy& proxy) {
    Of(segment, name).Set(segment, proxy);
  }
  // Forgets `name` (e.g. after this thread deleted it).
  void Forget(std::string_view name) {
    if (auto it = handles_.find(name); it != handles_.end()) {
      if (&*it == last_) last_ = nullptr;
      handles_.erase(it);
    }
  }

 private:
  // std::string keys found by a string_view without a copy.
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view name) const { return std::hash<std::string_view>()(name); }
  };

  Handle<Proxy>& Of(Segment* segment, std::string_view name) {
    if (segment_id_ != segment->instance_id()) {  // Another mapping: none of these is valid.
      Clear();
      segment_id_ = segment->instance_id();
    }
    // A pipeline's commands mostly name the object the previous one did (LPUSH mylist ...):
    // one compare instead of hashing the name.
    if (last_ != nullptr && last_->first == name) return last_->second;
    auto it = handles_.find(name);
    if (it == handles_.end()) {
      if (handles_.size() >= kMaxEntries) Clear();
      it = handles_.try_emplace(std::string(name)).first;
    }
    last_ = &*it;
    return it->second;
  }
  void Clear() {
    handles_.clear();
    last_ = nullptr;
  }

  using Map = std::unordered_map<std::string, Handle<Proxy>, NameHash, std::equal_to<>>;
  uint64_t segment_id_ = 0;
  Map handles_;
  typename Map::value_type* last_ = nullptr;  // The node Of returned last (nodes never move).
};

}  // namespace shm

#endif  // SHM_HANDLE_H_
