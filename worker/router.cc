#include "shm/router.h"

#include <unistd.h>

#include <algorithm>
#include <boost/container/small_vector.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <exception>
#include <string>

#include "shm/process_id.h"
#include "shm/utf8.h"

namespace shm {
namespace {

// This worker's pid as header text, formatted once per process (getpid is a system call).
const std::string& WorkerPidText() {
  thread_local pid_t cached_pid = 0;
  thread_local std::string text;
  if (cached_pid != CurrentPid()) {
    cached_pid = CurrentPid();
    text = std::to_string(cached_pid);
  }
  return text;
}

namespace json = boost::json;

constexpr std::string_view kCapture = "{}";  // A {…} segment of a pattern, as Route stores it.

// Splits "/a/b/c" into {"a", "b", "c"} without decoding or normalising anything: "/a//b" has an
// empty segment and "/a/../b" keeps "..", so neither matches a route by accident.
template <typename Segments>
void SplitPath(std::string_view path, Segments* segments) {
  path.remove_prefix(1);  // REQUIRES: path starts with '/'.
  while (true) {
    size_t slash = path.find('/');
    segments->push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
}

std::vector<std::string> SplitPattern(std::string_view pattern) {
  std::vector<std::string_view> pieces;
  SplitPath(pattern, &pieces);
  std::vector<std::string> parts;
  for (std::string_view part : pieces) {
    bool capture = part.size() >= 2 && part.front() == '{' && part.back() == '}';
    parts.emplace_back(capture ? kCapture : part);
  }
  return parts;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Parses "a=1&b=x%20y" strictly: a repeated key, an empty key, too many keys or an over-long value
// is InvalidArgument rather than a silent pick.
Status ParseQuery(std::string_view query, std::map<std::string, std::string>* out) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::string key;
    std::string value;
    SHM_RETURN_IF_ERROR(PercentDecode(pair.substr(0, eq), true, &key));
    if (eq != std::string_view::npos) {
      SHM_RETURN_IF_ERROR(PercentDecode(pair.substr(eq + 1), true, &value));
    }
    if (key.empty()) return Status::InvalidArgument("empty query parameter name");
    if (value.size() > kMaxQueryValueBytes) {
      return Status::InvalidArgument("query parameter '" + key + "' is longer than " +
                                     std::to_string(kMaxQueryValueBytes) + " bytes");
    }
    if (out->size() >= kMaxQueryParams) {
      return Status::InvalidArgument("more than " + std::to_string(kMaxQueryParams) +
                                     " query parameters");
    }
    if (!out->emplace(std::move(key), std::move(value)).second) {
      return Status::InvalidArgument("query parameter repeated");
    }
  }
  return Status::OK();
}

// Alphabetical, each method once, whatever order the routes were added in; HEAD wherever GET is
// (Router::Handle answers HEAD with the GET route).
std::string AllowHeader(std::span<const http::verb> methods) {
  std::vector<std::string_view> names;
  for (http::verb m : methods) {
    names.push_back(http::to_string(m));
    if (m == http::verb::get) names.push_back(http::to_string(http::verb::head));
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  std::string allow;
  for (std::string_view name : names) {
    if (!allow.empty()) allow += ", ";
    allow += name;
  }
  return allow;
}

}  // namespace

Status PercentDecode(std::string_view in, bool plus_is_space, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return Status::InvalidArgument("truncated percent-escape");
      int hi = HexValue(in[i + 1]);
      int lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return Status::InvalidArgument("bad percent-escape");
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  return Status::OK();
}

unsigned HttpStatusFor(const Status& status) {
  switch (status.code()) {
    case Status::Code::kOk:
      return 200;
    case Status::Code::kNotFound:
      return 404;
    case Status::Code::kInvalidArgument:
      return 400;
    case Status::Code::kWrongType:
    case Status::Code::kAlreadyExists:
    case Status::Code::kConflict:
      return 409;
    case Status::Code::kOutOfSpace:
      return 507;
    case Status::Code::kTimeout:
    case Status::Code::kPoisoned:
      return 503;
    case Status::Code::kInternal:
      return 500;
  }
  return 500;
}

namespace {

// Error messages echo request bytes (paths, names); JSON needs UTF-8, so invalid bytes are
// written as the text "\xNN".
std::string AsUtf8Text(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    size_t length = Utf8SequenceAt(text, i);
    if (length == 0) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02X", static_cast<unsigned char>(text[i]));
      out += escaped;
      ++i;
    } else {
      out.append(text.substr(i, length));
      i += length;
    }
  }
  return out;
}

}  // namespace

HttpResponse ErrorResponse(unsigned http_status, std::string_view code, std::string_view message,
                           unsigned version) {
  HttpResponse response{static_cast<http::status>(http_status), version};
  json::object error;
  error["code"] = code;
  error["message"] = AsUtf8Text(message);
  json::object body;
  body["error"] = std::move(error);
  response.set(http::field::content_type, "application/json");
  response.set("X-Worker-Pid", WorkerPidText());
  if (http_status == 503) response.set(http::field::retry_after, "1");
  response.body() = json::serialize(body);
  response.prepare_payload();
  return response;
}

void Router::Add(http::verb method, std::string_view pattern, Handler handler) {
  std::vector<std::string> parts = SplitPattern(pattern);
  size_t captures = std::count(parts.begin(), parts.end(), kCapture);
  routes_.push_back(Route{method, std::move(parts), captures, std::move(handler)});
}

bool Router::HasShape(const Route& route, std::span<const std::string_view> segments) {
  if (route.parts.size() != segments.size()) return false;
  for (size_t i = 0; i < segments.size(); ++i) {
    bool capture = route.parts[i] == kCapture;
    // An empty segment ("//") captures nothing: such a path is not one of ours.
    if (capture ? segments[i].empty() : route.parts[i] != segments[i]) return false;
  }
  return true;
}

Status Router::DecodeCaptures(const Route& route, std::span<const std::string_view> segments,
                              std::vector<std::string>* params) {
  std::string scratch;
  for (size_t i = 0; i < segments.size(); ++i) {
    if (route.parts[i] != kCapture) continue;
    std::string* decoded = params != nullptr ? &params->emplace_back() : &scratch;
    SHM_RETURN_IF_ERROR(PercentDecode(segments[i], false, decoded));
  }
  return Status::OK();
}

HttpResponse Router::Handle(const HttpRequest& request, Segment* segment, int worker_index,
                            std::optional<ParkedWait>* park) const {
  try {
    std::string_view target = request.target();
    size_t question = target.find('?');
    std::string_view path = target.substr(0, question);
    std::string_view query =
        question == std::string_view::npos ? std::string_view() : target.substr(question + 1);
    if (path.empty() || path.front() != '/') {
      return ErrorResponse(400, "InvalidArgument", "request target must be an absolute path",
                           request.version());
    }
    // Inline capacity for every built-in route: matching allocates nothing.
    boost::container::small_vector<std::string_view, 8> segments;
    SplitPath(path, &segments);
    // The first route of this shape and method wins. A shape match whose captures are badly
    // escaped is 400 whatever its method; one with another method only feeds the 405's Allow.
    // HEAD runs the GET route (RFC 9110 §9.3.2); the session sends its head without the body.
    http::verb method = request.method() == http::verb::head ? http::verb::get : request.method();
    const Route* found = nullptr;
    boost::container::small_vector<http::verb, 8> allowed;
    for (const Route& route : routes_) {
      if (!HasShape(route, segments)) continue;
      if (route.method == method) {
        found = &route;
        break;
      }
      Status s = DecodeCaptures(route, segments, nullptr);
      if (!s.ok()) return ErrorResponse(400, s.CodeName(), s.message(), request.version());
      allowed.push_back(route.method);
    }
    std::vector<std::string> params;
    if (found != nullptr) {
      params.reserve(found->captures);
      Status s = DecodeCaptures(*found, segments, &params);
      if (!s.ok()) return ErrorResponse(400, s.CodeName(), s.message(), request.version());
    }
    if (found == nullptr && allowed.empty()) {
      return ErrorResponse(404, "NotFound", "no route for " + std::string(path), request.version());
    }
    if (found == nullptr) {
      HttpResponse r = ErrorResponse(
          405, "MethodNotAllowed",
          std::string(request.method_string()) + " is not allowed on " + std::string(path),
          request.version());
      r.set(http::field::allow, AllowHeader(allowed));
      return r;
    }
    RequestContext context{request, segment, worker_index, std::move(params), {}, park};
    HttpResponse response;
    Status s = ParseQuery(query, &context.query);
    if (s.ok()) {
      response.version(request.version());
      response.result(http::status::ok);
      s = found->handler(context, &response);
    }
    if (s.ok() && park != nullptr && park->has_value()) return response;  // Answered later.
    return Finish(request, s, std::move(response));
  } catch (const std::exception& e) {
    return ErrorResponse(500, "Internal", std::string("handler failed: ") + e.what(),
                         request.version());
  } catch (...) {
    return ErrorResponse(500, "Internal", "handler failed", request.version());
  }
}

HttpResponse Router::Finish(const HttpRequest& request, const Status& s, HttpResponse response) {
  try {
    if (!s.ok()) {
      unsigned code = HttpStatusFor(s);
      bool conditional = request.find(http::field::if_match) != request.end() ||
                         request.find(http::field::if_none_match) != request.end();
      if (s.IsConflict() && conditional) code = 412;
      return ErrorResponse(code, s.CodeName(), s.message(), request.version());
    }
    response.version(request.version());
    response.set("X-Worker-Pid", WorkerPidText());
    response.prepare_payload();  // Throws for a body on a 204 or 304: a handler bug, so a 500.
    // RFC 9110 §8.6: no Content-Length on a 204; on a 304 only the 200's, which we do not know.
    if (response.result() == http::status::no_content ||
        response.result() == http::status::not_modified) {
      response.erase(http::field::content_length);
    }
  } catch (const std::exception& e) {
    return ErrorResponse(500, "Internal", std::string("handler failed: ") + e.what(),
                         request.version());
  } catch (...) {
    return ErrorResponse(500, "Internal", "handler failed", request.version());
  }
  return response;
}

}  // namespace shm
