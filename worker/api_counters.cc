// /v1/counters: atomic signed 64-bit counters, {"value": n} in and out.
#include <string>

#include "api_util.h"
#include "shm/api.h"
#include "shm/counter.h"

namespace shm {
namespace {

using api::json::object;

// Opens `name` (creating it at `init` with `ttl_ms` when `create`) and runs `op` on it.
template <typename Op>
Status WithCounter(RequestContext& context, bool create, int64_t init, int64_t ttl_ms, Op&& op) {
  Counter::Options options{create ? OpenMode::kCreateIfMissing : OpenMode::kOpenExisting, init,
                           ttl_ms};
  auto open = [&](Segment* segment, std::string_view name, Counter* counter) {
    return Counter::Open(segment, name, options, counter);
  };
  return api::WithObject<Counter>(context, open, std::forward<Op>(op));
}

Status Increment(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {"by", "init", "ttl"}));
  int64_t by = 1;
  int64_t init = 0;
  int64_t ttl_ms = 0;
  SHM_RETURN_IF_ERROR(api::QueryInt64(context, "by", 1, &by));
  SHM_RETURN_IF_ERROR(api::QueryInt64(context, "init", 0, &init));
  SHM_RETURN_IF_ERROR(api::QuerySecondsMs(context, "ttl", 0, api::kMaxTtlMs, &ttl_ms));
  int64_t value = 0;
  SHM_RETURN_IF_ERROR(
      WithCounter(context, true, init, ttl_ms, [&](Counter& c) { return c.Add(by, &value); }));
  api::SetValue(response, value);
  return Status::OK();
}

Status Get(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  int64_t value = 0;
  SHM_RETURN_IF_ERROR(WithCounter(context, false, 0, 0, [&](Counter& c) { return c.Get(&value); }));
  api::SetValue(response, value);
  return Status::OK();
}

// Creates the counter when missing (with `ttl`), then sets it.
Status Put(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {"ttl"}));
  int64_t ttl_ms = 0;
  SHM_RETURN_IF_ERROR(api::QuerySecondsMs(context, "ttl", 0, api::kMaxTtlMs, &ttl_ms));
  object body;
  int64_t value = 0;
  SHM_RETURN_IF_ERROR(api::ParseJsonObject(context, {"value"}, &body));
  SHM_RETURN_IF_ERROR(api::JsonInt64(body, "value", &value));
  SHM_RETURN_IF_ERROR(
      WithCounter(context, true, value, ttl_ms, [&](Counter& c) { return c.Set(value); }));
  api::SetValue(response, value);
  return Status::OK();
}

Status Delete(RequestContext& context, HttpResponse* response) {
  return api::DeleteObjectOfKind<Counter>(context, ObjectKind::kCounter, response);
}

// A mismatch is 409 with the value seen, so the client can retry without another GET.
Status CompareAndSet(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  object body;
  int64_t expected = 0;
  int64_t desired = 0;
  SHM_RETURN_IF_ERROR(api::ParseJsonObject(context, {"expected", "value"}, &body));
  SHM_RETURN_IF_ERROR(api::JsonInt64(body, "expected", &expected));
  SHM_RETURN_IF_ERROR(api::JsonInt64(body, "value", &desired));
  int64_t actual = 0;
  Status s = WithCounter(context, false, 0, 0,
                         [&](Counter& c) { return c.CompareAndSet(expected, desired, &actual); });
  if (s.IsConflict()) {
    api::SetConflict(response, s, "value", actual);
    return Status::OK();
  }
  SHM_RETURN_IF_ERROR(s);
  api::SetValue(response, actual);
  return Status::OK();
}

}  // namespace

void RegisterCounterRoutes(Router* router) {
  router->Add(http::verb::post, "/v1/counters/{name}/incr", Increment);
  router->Add(http::verb::get, "/v1/counters/{name}", Get);
  router->Add(http::verb::put, "/v1/counters/{name}", Put);
  router->Add(http::verb::delete_, "/v1/counters/{name}", Delete);
  router->Add(http::verb::post, "/v1/counters/{name}/cas", CompareAndSet);
}

}  // namespace shm
