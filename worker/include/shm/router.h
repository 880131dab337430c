// Router: maps (method, path pattern) to handlers; the HTTP side of an application.
//
// The built-in REST API (RegisterApiRoutes in shm/api.h) is registered through the same Router
// an application uses for its own routes. Handlers are pure functions of the request and the
// shared state: they return a Status, and Router::Handle turns a non-OK Status into the JSON error
// response in one place ({"error": {"code", "message"}} with the status of the design's table).
//
// Thread-safety: register every route before serving; Handle is then safe from many threads.
#ifndef SHM_ROUTER_H_
#define SHM_ROUTER_H_

#include <boost/beast/http.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shm/registry.h"
#include "shm/segment.h"
#include "shm/status.h"

namespace shm {

namespace http = boost::beast::http;
using HttpRequest = http::request<http::string_body>;
using HttpResponse = http::response<http::string_body>;

// A request that waits for another process (a pop for a push, an acquire for a release) without
// holding a thread. The handler describes the wait; the server retries it on its event loop
// until it answers, the deadline passes or the server stops (worker/wait_hub.h).
struct ParkedWait {
  // The object waited on ("list:<name>"). Waits with the same key are tried in arrival order,
  // and a wait behind others of its key is never tried before them.
  std::string key;
  std::chrono::steady_clock::time_point deadline;
  // The object, when known: a change to it by any process retries the wait at once (else the
  // server's poll finds it).
  ObjectRef object;
  // One try that never blocks: true when it is the answer (response filled, or *status an
  // error); false to wait on.
  std::function<bool(HttpResponse* response, Status* status)> attempt;
  // The answer when the deadline passed (`stopping` false) or the server is stopping (true).
  std::function<Status(HttpResponse* response, bool stopping)> give_up;
  // Optional: runs once as the wait arrives in the worker's queue, before its first try (a pop
  // takes its place in the list's line here: WaitQueue::Wait::arrive).
  std::function<void()> arrive;
};

// What a handler sees of one request.
struct RequestContext {
  const HttpRequest& request;
  Segment* segment;
  int worker_index;
  std::vector<std::string> params;           // Percent-decoded {captures}, in pattern order.
  std::map<std::string, std::string> query;  // Percent-decoded query parameters.
  // Non-null when the server can park waits: a handler that must wait stores its wait here and
  // returns OK, and the server answers later. Null (Router::Handle without it): the handler
  // waits on the calling thread.
  std::optional<ParkedWait>* park = nullptr;
};

// Limits the router applies before any handler runs.
inline constexpr size_t kMaxQueryParams = 32;
inline constexpr size_t kMaxQueryValueBytes = 1024;

// Fills `response` (status, body, content type) and returns OK, or returns the error.
using Handler = std::function<Status(RequestContext& context, HttpResponse* response)>;

class Router {
 public:
  // `pattern` is a path such as "/v1/counters/{name}/incr"; each {…} captures one segment.
  void Add(http::verb method, std::string_view pattern, Handler handler);
  // Builds the response for `request`: 404 for an unknown path, 405 for a known path with
  // another method (Allow: the path's methods in alphabetical order), the handler's response or
  // its mapped error otherwise (a handler that throws, or leaves a body on a 204 or 304, gets a
  // 500). HEAD runs the GET route and keeps its body: the caller sends the head only. Never
  // throws. The payload is prepared (Content-Length set, none on a 204 or 304), so the response
  // can be written as is.
  HttpResponse Handle(const HttpRequest& request, Segment* segment, int worker_index) const {
    return Handle(request, segment, worker_index, nullptr);
  }
  // As above, but a handler may park its wait in `*park` (see RequestContext::park): the
  // returned response is then meaningless, and the caller answers with Finish once the wait
  // ends.
  HttpResponse Handle(const HttpRequest& request, Segment* segment, int worker_index,
                      std::optional<ParkedWait>* park) const;
  // The response for a handler's outcome: `response` as filled when `status` is OK, else the
  // mapped error (412 for a Conflict of a conditional request). Prepared as Handle's. Never
  // throws.
  static HttpResponse Finish(const HttpRequest& request, const Status& status,
                             HttpResponse response);

 private:
  struct Route {
    http::verb method;
    std::vector<std::string> parts;  // Literal segments; "{}" marks a capture.
    size_t captures;                 // How many parts are "{}".
    Handler handler;
  };
  // True when the path's segments match the route's literals, with a non-empty segment for each
  // capture. Allocates nothing.
  static bool HasShape(const Route& route, std::span<const std::string_view> segments);
  // Appends the route's percent-decoded captures to `params` (or, when null, only checks that
  // they decode); InvalidArgument when one is badly escaped.
  static Status DecodeCaptures(const Route& route, std::span<const std::string_view> segments,
                               std::vector<std::string>* params);

  std::vector<Route> routes_;
};

// The HTTP status for a Status code (the design's table). Conflict is 409, or 412 when the
// request made it conditional with If-Match or If-None-Match (Router::Handle decides that).
unsigned HttpStatusFor(const Status& status);

// A complete JSON error response {"error": {"code", "message"}} carrying X-Worker-Pid; 503s also
// carry Retry-After. Used for every error the worker answers, routed or not.
HttpResponse ErrorResponse(unsigned http_status, std::string_view code, std::string_view message,
                           unsigned version = 11);

// Percent-decodes `in` ("%2F" -> "/"); with `plus_is_space` (query strings) '+' becomes ' '.
// InvalidArgument on a malformed escape.
Status PercentDecode(std::string_view in, bool plus_is_space, std::string* out);

}  // namespace shm

#endif  // SHM_ROUTER_H_
