// /v1/locks: lease locks. Acquire answers a token; release and refresh need it back.
#include <charconv>
#include <string>

#include "api_util.h"
#include "shm/api.h"
#include "shm/lease_lock.h"

namespace shm {
namespace {

using api::json::object;

constexpr int64_t kDefaultTtlMs = 30 * 1000;

template <typename Op>
Status WithLock(RequestContext& context, bool create, Op&& op) {
  OpenMode mode = create ? OpenMode::kCreateIfMissing : OpenMode::kOpenExisting;
  auto open = [&](Segment* segment, std::string_view name, LeaseLock* lock) {
    return LeaseLock::Open(segment, name, mode, lock);
  };
  return api::WithObject<LeaseLock>(context, open, std::forward<Op>(op));
}

// Tokens travel as decimal strings: JSON numbers past 2^53 do not survive JavaScript.
std::string TokenText(uint64_t token) { return std::to_string(token); }

Status ParseToken(const RequestContext& context, uint64_t* token) {
  api::json::object body;
  SHM_RETURN_IF_ERROR(api::ParseJsonObject(context, {"token"}, &body));
  const api::json::value* value = body.if_contains("token");
  if (value == nullptr || !value->is_string()) {
    return Status::InvalidArgument("body must be {\"token\": \"<token from acquire>\"}");
  }
  std::string_view text = value->as_string();
  uint64_t parsed = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), parsed);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || parsed == 0) {
    return Status::InvalidArgument("token must be the decimal string acquire answered");
  }
  *token = parsed;
  return Status::OK();
}

void SetAcquired(HttpResponse* response, uint64_t token, int64_t expires_at_ms) {
  api::SetJson(response, object{{"token", TokenText(token)}, {"expires_at_ms", expires_at_ms}});
}

// Parked: tried in arrival order among this worker's acquirers of the lock (worker/wait_hub.h).
Status ParkAcquire(RequestContext& context, int64_t ttl_ms, int64_t wait_ms, std::string owner) {
  const std::string& name = context.params[0];
  SHM_RETURN_IF_ERROR(api::CheckName(name));
  Segment* segment = context.segment;
  auto open = [](Segment* seg, std::string_view lock_name, LeaseLock* lock) {
    return LeaseLock::Open(seg, lock_name, OpenMode::kCreateIfMissing, lock);
  };
  ObjectRef object;  // Watched for releases while the acquire waits.
  if (wait_ms > 0) {
    api::WithNamedObject<LeaseLock>(segment, name, open, [&](LeaseLock& lock) {
      object = lock.ref();
      return Status::OK();
    }).ok();  // An error is the attempt's to answer.
  }
  // One try: Conflict while another holds it.
  auto try_once = [segment, name, ttl_ms, owner, open](HttpResponse* response) {
    uint64_t token = 0;
    int64_t expires_at_ms = 0;
    Status s = api::WithNamedObject<LeaseLock>(segment, name, open, [&](LeaseLock& lock) {
      return lock.Acquire(ttl_ms, std::chrono::milliseconds(0), owner, &token, &expires_at_ms);
    });
    if (s.ok()) SetAcquired(response, token, expires_at_ms);
    return s;
  };
  auto attempt = [try_once](HttpResponse* response, Status* status) {
    Status s = try_once(response);
    if (s.IsConflict()) return false;
    *status = s;
    return true;
  };
  auto give_up = [try_once](HttpResponse* response, bool stopping) {
    if (stopping) return Status::Timeout("the worker is stopping; retry the acquire");  // 503.
    return try_once(response);  // 409 naming the holder, unless it was just released.
  };
  api::ParkWait(context, "lock:" + name, object, wait_ms, std::move(attempt), std::move(give_up));
  return Status::OK();
}

// 200 {"token","expires_at_ms"}; 409 naming the holder when it stayed held for `wait`.
Status Acquire(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {"ttl", "wait", "owner"}));
  int64_t ttl_ms = 0;
  int64_t wait_ms = 0;
  SHM_RETURN_IF_ERROR(
      api::QuerySecondsMs(context, "ttl", kDefaultTtlMs, LeaseLock::kMaxTtlMs, &ttl_ms));
  if (ttl_ms < LeaseLock::kMinTtlMs) return Status::InvalidArgument("ttl must be positive");
  SHM_RETURN_IF_ERROR(api::QuerySecondsMs(context, "wait", 0, api::kMaxWaitMs, &wait_ms));
  std::string owner(api::QueryString(context, "owner", "http"));
  if (api::CanPark(context, wait_ms)) return ParkAcquire(context, ttl_ms, wait_ms, owner);
  uint64_t token = 0;
  int64_t expires_at_ms = 0;
  SHM_RETURN_IF_ERROR(
      api::WaitInSlices(context, wait_ms, [&](std::chrono::milliseconds slice, bool* retry) {
        Status s = WithLock(context, true, [&](LeaseLock& lock) {
          return lock.Acquire(ttl_ms, slice, owner, &token, &expires_at_ms);
        });
        *retry = s.IsConflict();
        if (s.IsConflict() && wait_ms > 0 && api::BlockingWaitsStopped()) {
          return Status::Timeout("the worker is stopping; retry the acquire");  // 503.
        }
        return s;
      }));
  SetAcquired(response, token, expires_at_ms);
  return Status::OK();
}

Status Release(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  uint64_t token = 0;
  SHM_RETURN_IF_ERROR(ParseToken(context, &token));
  SHM_RETURN_IF_ERROR(
      WithLock(context, false, [&](LeaseLock& lock) { return lock.Release(token); }));
  response->result(http::status::no_content);
  return Status::OK();
}

Status Refresh(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {"ttl"}));
  int64_t ttl_ms = 0;
  SHM_RETURN_IF_ERROR(
      api::QuerySecondsMs(context, "ttl", kDefaultTtlMs, LeaseLock::kMaxTtlMs, &ttl_ms));
  if (ttl_ms < LeaseLock::kMinTtlMs) return Status::InvalidArgument("ttl must be positive");
  uint64_t token = 0;
  SHM_RETURN_IF_ERROR(ParseToken(context, &token));
  int64_t expires_at_ms = 0;
  SHM_RETURN_IF_ERROR(WithLock(context, false, [&](LeaseLock& lock) {
    return lock.Refresh(token, ttl_ms, &expires_at_ms);
  }));
  api::SetJson(response, object{{"expires_at_ms", expires_at_ms}});
  return Status::OK();
}

Status Info(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  LeaseInfo info;
  SHM_RETURN_IF_ERROR(WithLock(context, false, [&](LeaseLock& lock) { return lock.Get(&info); }));
  object body{{"held", info.held}, {"acquisitions", info.acquisitions}};
  if (info.held) {
    body["owner"] = info.owner;
    body["expires_at_ms"] = info.expires_at_ms;
    body["remaining_ms"] = info.remaining_ms;
  }
  api::SetJson(response, body);
  return Status::OK();
}

}  // namespace

void RegisterLockRoutes(Router* router) {
  router->Add(http::verb::post, "/v1/locks/{name}/acquire", Acquire);
  router->Add(http::verb::post, "/v1/locks/{name}/release", Release);
  router->Add(http::verb::post, "/v1/locks/{name}/refresh", Refresh);
  router->Add(http::verb::get, "/v1/locks/{name}", Info);
}

}  // namespace shm
