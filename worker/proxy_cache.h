// ProxyCache: a process-local map (segment, name) -> proxy, so a request does not take the
// registry lock to find an object another request of this worker already opened.
//
// A cached proxy goes stale when its object is deleted or expires; every call through it then
// answers NotFound. With() notices that (the proxy's ObjectRef is no longer live), drops the entry,
// re-opens and runs the operation once more. Thread-safe: the map is guarded by a mutex held only
// for the lookup; operations run on a copy of the proxy (proxies are cheap handles).
#ifndef SHM_WORKER_PROXY_CACHE_H_
#define SHM_WORKER_PROXY_CACHE_H_

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

#include "shm/mutex.h"
#include "shm/registry.h"
#include "shm/segment.h"
#include "shm/status.h"

namespace shm::api {

template <typename Proxy>
class ProxyCache {
 public:
  using Opener = std::function<Status(Proxy* proxy)>;

  // Runs `op(proxy)` on the cached proxy of `name`, opening it with `open` when it is not cached
  // or went stale. `op` must change nothing when it answers NotFound for a stale proxy.
  template <typename Op>
  Status With(Segment* segment, std::string_view name, const Opener& open, Op&& op) {
    Proxy proxy;
    KeyView key{segment, segment->shm_name(), name};
    bool cached = Lookup(key, &proxy);
    if (!cached) SHM_RETURN_IF_ERROR(OpenAndStore(key, open, &proxy));
    Status s = op(proxy);
    if (!cached || !s.IsNotFound() || proxy.ref().live()) return s;
    Erase(key);
    SHM_RETURN_IF_ERROR(OpenAndStore(key, open, &proxy));
    return op(proxy);
  }

  // Forgets `name` (e.g. after this worker deleted it).
  void Forget(Segment* segment, std::string_view name) {
    Erase(KeyView{segment, segment->shm_name(), name});
  }

 private:
  // The shm name guards against a new segment mapped where a destroyed one was.
  using Key = std::tuple<Segment*, std::string, std::string>;
  // Looks a Key up without copying the names (the map's comparator is transparent).
  using KeyView = std::tuple<Segment*, std::string_view, std::string_view>;
  static constexpr size_t kMaxEntries = 8192;
  // Orders Keys and KeyViews alike. Spelled out: comparing tuples of different element types
  // through std::less<> does not compile with clang and libstdc++ in C++20 (the fuzz build).
  struct KeyLess {
    using is_transparent = void;
    static KeyView View(const Key& k) { return {std::get<0>(k), std::get<1>(k), std::get<2>(k)}; }
    static const KeyView& View(const KeyView& k) { return k; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return View(a) < View(b);
    }
  };

  bool Lookup(const KeyView& key, Proxy* proxy) {
    MutexLock lock(&mu_);
    auto it = proxies_.find(key);
    if (it == proxies_.end()) return false;
    *proxy = it->second;
    return true;
  }

  Status OpenAndStore(const KeyView& key, const Opener& open, Proxy* proxy) {
    SHM_RETURN_IF_ERROR(open(proxy));
    MutexLock lock(&mu_);
    if (proxies_.size() >= kMaxEntries) proxies_.clear();  // Bounded; re-opening is cheap enough.
    auto [segment, shm_name, name] = key;
    proxies_.insert_or_assign(Key{segment, std::string(shm_name), std::string(name)}, *proxy);
    return Status::OK();
  }

  void Erase(const KeyView& key) {
    MutexLock lock(&mu_);
    auto it = proxies_.find(key);
    if (it != proxies_.end()) proxies_.erase(it);
  }

  Mutex mu_;
  std::map<Key, Proxy, KeyLess> proxies_ GUARDED_BY(mu_);
};

}  // namespace shm::api

#endif  // SHM_WORKER_PROXY_CACHE_H_
