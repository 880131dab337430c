// Helpers for the socket-less handler tests: build a request, run it through a Router, read JSON.
#ifndef SHM_TESTS_WORKER_API_TEST_UTIL_H_
#define SHM_TESTS_WORKER_API_TEST_UTIL_H_

#include <unistd.h>

#include <boost/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "common/test_util.h"
#include "shm/api.h"
#include "shm/router.h"

namespace shm::test {

namespace json = boost::json;

// A router with the whole built-in API and a segment of its own.
class ApiFixture {
 public:
  ApiFixture() { RegisterApiRoutes(&router_); }

  HttpResponse Call(http::verb verb, std::string_view target, std::string body = "",
                    std::vector<std::pair<std::string, std::string>> headers = {}) {
    HttpRequest request{verb, target, 11};
    for (auto& [name, value] : headers) request.set(name, value);
    request.body() = std::move(body);
    request.prepare_payload();
    return router_.Handle(request, segment_.get(), 0);
  }

  Segment* segment() { return segment_.get(); }
  Router& router() { return router_; }

 private:
  ScopedSegment segment_;
  Router router_;
};

inline json::value Json(const HttpResponse& response) {
  boost::system::error_code ec;
  json::value v = json::parse(response.body(), ec);
  return ec ? json::value(nullptr) : v;
}

// The "code" of a JSON error body, or "" when the body is not one.
inline std::string ErrorCode(const HttpResponse& response) {
  json::value v = Json(response);
  if (!v.is_object() || !v.as_object().contains("error")) return "";
  const json::value& error = v.as_object().at("error");
  if (!error.is_object() || !error.as_object().contains("message")) return "";
  const json::value* code = error.as_object().if_contains("code");
  return code && code->is_string() ? std::string(code->as_string()) : "";
}

inline int64_t ValueOf(const HttpResponse& response) {
  json::value v = Json(response);
  return v.is_object() && v.as_object().contains("value") ? v.as_object().at("value").as_int64()
                                                          : INT64_MIN;
}

inline std::string PidHeader(const HttpResponse& response) {
  return std::string(response["X-Worker-Pid"]);
}

inline std::string MyPid() { return std::to_string(getpid()); }

}  // namespace shm::test

#endif  // SHM_TESTS_WORKER_API_TEST_UTIL_H_
