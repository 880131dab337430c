// Helpers shared by the REST handlers: strict query and JSON parsing, JSON responses.
//
// Every parser rejects rather than guesses: "1.5", "+1", " 1" or "1e3" is not an integer, an
// unknown query parameter or JSON member is InvalidArgument. Stateless and thread-safe.
#ifndef SHM_WORKER_API_UTIL_H_
#define SHM_WORKER_API_UTIL_H_

#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>

#include "shm/handle.h"
#include "shm/registry.h"
#include "shm/router.h"
#include "shm/status.h"

namespace shm::api {

namespace json = boost::json;

inline constexpr int64_t kMaxTtlMs = int64_t{10} * 365 * 24 * 3600 * 1000;  // Ten years.
inline constexpr size_t kMaxListLimit = 1000;

// "-12" -> -12; anything but an optional '-' and 1-19 digits that fit is InvalidArgument.
Status ParseInt64(std::string_view text, int64_t* value);
// "12" -> 12; 1-20 digits that fit in uint64, nothing else.
Status ParseUint64(std::string_view text, uint64_t* value);
// Seconds as "5", "0.25" (at most millisecond precision), into milliseconds in [0, max_ms].
Status ParseSecondsMs(std::string_view text, int64_t max_ms, int64_t* ms);

// InvalidArgument naming the first query parameter not in `allowed`.
Status CheckQueryKeys(const RequestContext& context,
                      std::initializer_list<std::string_view> allowed);
// The parameter `key` parsed strictly, or `fallback` when absent.
Status QueryInt64(const RequestContext& context, std::string_view key, int64_t fallback,
                  int64_t* value);
// A count in [0, max], or `fallback` when absent.
Status QueryCount(const RequestContext& context, std::string_view key, size_t fallback, size_t max,
                  size_t* value);
// A duration in seconds (see ParseSecondsMs), or `fallback_ms` when absent.
Status QuerySecondsMs(const RequestContext& context, std::string_view key, int64_t fallback_ms,
                      int64_t max_ms, int64_t* ms);
// The parameter, or `fallback` when absent.
std::string_view QueryString(const RequestContext& context, std::string_view key,
                             std::string_view fallback = {});

// The body as a JSON object whose members are all in `allowed`.
Status ParseJsonObject(const RequestContext& context,
                       std::initializer_list<std::string_view> allowed, json::object* object);
// Member `key` as an exact int64 (no fraction, no string); InvalidArgument if missing.
Status JsonInt64(const json::object& object, std::string_view key, int64_t* value);

// Checks an object name taken from the path (after percent-decoding).
Status CheckName(std::string_view name);
// DELETE of the object named by the first path capture, without query parameters: with `kind`
// other than kNone it must be of that kind (NotFound, or WrongType naming both kinds). Answers
// 204 No Content.
Status DeleteNamedObject(RequestContext& context, ObjectKind kind, HttpResponse* response);
std::string Base64Encode(std::string_view bytes);

// Longest a request may wait (pop, acquire).
inline constexpr int64_t kMaxWaitMs = 30 * 1000;
// Logs (debug) that the request may wait `wait_ms`, and answers whether the server parks it
// (context.park): a handler then stores a ParkedWait (ParkWait) instead of blocking.
bool CanPark(const RequestContext& context, int64_t wait_ms);
// Parks `attempt`/`give_up` on the object `key` (`object` when known) until `wait_ms` from now.
void ParkWait(RequestContext& context, std::string key, ObjectRef object, int64_t wait_ms,
              std::function<bool(HttpResponse* response, Status* status)> attempt,
              std::function<Status(HttpResponse* response, bool stopping)> give_up,
              std::function<void()> arrive = {});
// Without parking (Router::Handle called directly): runs `attempt(slice, &retry)` on this thread
// until it answers without `retry` or `wait_ms` has passed, in
// slices of at most 250 ms with a heartbeat between them, so a long wait does not look like a
// hung worker. Stops early (as if the wait ran out) once StopBlockingWaits was called.
//
// A wait may be cut short by the drain: BlockingWaitsStopped() then tells the caller, which
// answers as the wait running out (an empty pop) or 503 with Retry-After (a lock still held).
bool BlockingWaitsStopped();
Status WaitInSlices(
    RequestContext& context, int64_t wait_ms,
    const std::function<Status(std::chrono::milliseconds slice, bool* retry)>& attempt);

// Sets a JSON body, content type and status. Doubles are written in their shortest round-trip
// form ("0.0", "0.7316522598266602", "1e+100"); NaN and infinities as Python's json writes them.
void SetJson(HttpResponse* response, const json::value& value,
             http::status status = http::status::ok);
// {"<key>":n} with status 200, the bytes json::serialize writes, without building a JSON value
// (the hot answers of counters and dicts). `key` must need no JSON escaping.
void SetJsonInteger(HttpResponse* response, std::string_view key, int64_t value);
void SetJsonInteger(HttpResponse* response, std::string_view key, uint64_t value);
// {"value":n}.
void SetValue(HttpResponse* response, int64_t value);
// 409 {"error": {"code", "message"}, "<member>": seen}: a failed compare-and-set answers with the
// value it found, so the client can retry without reading first.
void SetConflict(HttpResponse* response, const Status& conflict, std::string_view member,
                 json::value seen);

// The HTTP API's handles of one proxy type: this thread's (shm/handle.h), so a request takes no
// lock to find an object another request of this thread already opened.
template <typename Proxy>
HandleMap<Proxy>& CacheOf() {
  return HandleMap<Proxy>::ThisThread();
}

// Runs `op(proxy)` on the object `name` (already checked) through CacheOf<Proxy>(), opening it
// with `open(segment, name, &proxy)` when it is not cached: what a parked wait does once its
// request context is gone.
template <typename Proxy, typename Open, typename Op>
Status WithNamedObject(Segment* segment, const std::string& name, Open&& open, Op&& op) {
  auto opener = [&](Segment* seg, Proxy* proxy) { return open(seg, name, proxy); };
  return CacheOf<Proxy>().Run(segment, name, opener, std::forward<Op>(op));
}

// Runs `op(proxy)` on the object named by the request's first path capture (checked with
// CheckName), through CacheOf<Proxy>(); `open(segment, name, &proxy)` opens it when it is not
// cached (or went stale).
template <typename Proxy, typename Open, typename Op>
Status WithObject(RequestContext& context, Open&& open, Op&& op) {
  const std::string& name = context.params[0];
  SHM_RETURN_IF_ERROR(CheckName(name));
  return WithNamedObject<Proxy>(context.segment, name, std::forward<Open>(open),
                                std::forward<Op>(op));
}

// DELETE of a typed route (/v1/counters/{name}, /v1/arrays/{name}): DeleteNamedObject of `kind`,
// and this worker's cached proxy is dropped at once rather than found stale by the next request.
template <typename Proxy>
Status DeleteObjectOfKind(RequestContext& context, ObjectKind kind, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(DeleteNamedObject(context, kind, response));
  CacheOf<Proxy>().Forget(context.params[0]);
  return Status::OK();
}

}  // namespace shm::api

#endif  // SHM_WORKER_API_UTIL_H_
