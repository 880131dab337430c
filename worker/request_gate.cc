#include "shm/request_gate.h"

#include <boost/beast/core/string.hpp>
#include <charconv>
#include <cstdint>
#include <string>

namespace shm {
namespace {

bool IsHttpError(const boost::system::error_code& ec) {
  return &ec.category() == &http::make_error_code(http::error::end_of_stream).category();
}

HttpResponse BadFraming(std::string_view why, unsigned version) {
  HttpResponse r = ErrorResponse(400, "BadRequest", why, version);
  r.keep_alive(false);  // The rest of the stream cannot be trusted to start a request.
  return r;
}

HttpResponse TooLarge() {
  return ErrorResponse(413, "PayloadTooLarge", "request body is larger than the limit");
}

// A Content-Length the gate can compare with the limit. Beast has already refused a malformed
// one (or several that differ) with the head, so this only reads it.
bool DeclaredLength(const HttpRequest& head, uint64_t* length) {
  auto it = head.find(http::field::content_length);
  if (it == head.end()) return false;
  std::string_view text = it->value();
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *length);
  return ec == std::errc() && end == text.data() + text.size();
}

bool Authorized(const HttpRequest& head, std::string_view token) {
  if (token.empty()) return true;
  std::string_view target = head.target();
  // Liveness probes carry no token; the status page is static markup whose data calls need it.
  std::string_view path = target.substr(0, target.find('?'));
  if (path == "/healthz" || path == "/ui") return true;
  auto it = head.find(http::field::authorization);
  if (it == head.end()) return false;
  std::string_view value = it->value();
  constexpr std::string_view kBearer = "Bearer ";
  if (value.substr(0, kBearer.size()) != kBearer) return false;
  return TokenMatches(value.substr(kBearer.size()), token);
}

}  // namespace

GateOptions GateOptionsOf(const WorkerOptions& options) {
  return GateOptions{options.max_body_bytes, options.max_header_bytes, options.token};
}

void ApplyLimits(const GateOptions& options, RequestParser* parser) {
  parser->body_limit(options.max_body_bytes);
  parser->header_limit(static_cast<uint32_t>(options.max_header_bytes));
}

std::optional<HttpResponse> GateHead(const HttpRequest& head, const GateOptions& options) {
  bool has_length = head.count(http::field::content_length) > 0;
  bool has_coding = head.count(http::field::transfer_encoding) > 0;
  // Request smuggling guard: Beast refuses the pair in one order only.
  if (has_length && has_coding) {
    return BadFraming("both Content-Length and Transfer-Encoding", head.version());
  }
  // RFC 9112 §6.3: a Transfer-Encoding whose last coding is not chunked has no length we can
  // trust; Beast reads it as bodiless, so its body would become the next request.
  if (has_coding && !head.chunked()) {
    return BadFraming("Transfer-Encoding must end in chunked", head.version());
  }
  uint64_t length = 0;
  if (DeclaredLength(head, &length) && length > options.max_body_bytes) {
    HttpResponse r = TooLarge();
    r.keep_alive(false);
    return r;
  }
  if (!Authorized(head, options.token)) {
    HttpResponse r =
        ErrorResponse(401, "Unauthorized", "missing or wrong bearer token", head.version());
    r.set(http::field::www_authenticate, "Bearer");
    r.keep_alive(head.keep_alive());
    return r;
  }
  return std::nullopt;
}

std::optional<HttpResponse> GateReadError(const boost::system::error_code& ec) {
  if (ec == http::error::body_limit) return TooLarge();
  if (ec == http::error::header_limit) {
    return ErrorResponse(431, "HeaderTooLarge", "request header is larger than the limit");
  }
  if (ec == http::error::partial_message || !IsHttpError(ec)) return std::nullopt;
  return ErrorResponse(400, "BadRequest", "malformed request: " + ec.message());
}

bool TokenMatches(std::string_view given, std::string_view expected) {
  if (expected.empty()) return given.empty();  // The loop below indexes `expected`.
  unsigned diff = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); ++i) {
    diff |= static_cast<unsigned char>(given[i]) ^
            static_cast<unsigned char>(expected[i % expected.size()]);
  }
  return diff == 0;
}

}  // namespace shm
