// RequestGate: the checks an HTTP request must pass before any handler sees it.
//
// Framing (a request smuggled past a proxy through Content-Length plus Transfer-Encoding, or a
// Transfer-Encoding that does not end in chunked), the bearer token, and the body and header
// limits (413 and 431). Pure functions of the request's head, the limits and the token: no
// socket, no clock, no shared state, so every refusal can be tested on a request built in
// memory. The Session applies the limits to each fresh parser, asks GateReadError when the
// parser fails and GateHead when a head (or a whole request) is in; the RESP front end checks
// its AUTH password with the same constant-time TokenMatches. Stateless and thread-safe.
#ifndef SHM_REQUEST_GATE_H_
#define SHM_REQUEST_GATE_H_

#include <boost/beast/http.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <optional>
#include <string_view>

#include "shm/router.h"
#include "shm/worker.h"

namespace shm {

struct GateOptions {
  size_t max_body_bytes = size_t{1} << 20;    // A larger body (declared or read) gets 413.
  size_t max_header_bytes = size_t{8} << 10;  // A larger head gets 431.
  std::string_view token;                     // Non-empty: Authorization: Bearer <token> needed.
};

// The gate of a worker: its limits and token. The view into options.token lives as long as
// `options`.
GateOptions GateOptionsOf(const WorkerOptions& options);

using RequestParser = http::request_parser<http::string_body>;

// Sets the gate's limits on a fresh parser, so the parser stops at the first byte past them
// (a Content-Length over the body limit fails with the head) instead of buffering it.
void ApplyLimits(const GateOptions& options, RequestParser* parser);

// The refusal of a request on its head alone, or nothing when it may go on: 400 (and the
// connection must close: keep_alive false) for ambiguous framing, 413 (closing) for a declared
// body over the limit, 401 with WWW-Authenticate: Bearer for a missing or wrong token (except
// GET /healthz and /ui, which carry none). `head` may be a whole request.
std::optional<HttpResponse> GateHead(const HttpRequest& head, const GateOptions& options);

// The answer to a request the parser refused: 413 past the body limit, 431 past the header
// limit, 400 for any other malformed request. Nothing when there is no one to answer (a
// message cut short, an I/O error). The connection closes after any of them.
std::optional<HttpResponse> GateReadError(const boost::system::error_code& ec);

// Whether `given` equals `expected`, in time independent of where they differ, so a timing
// probe learns nothing about a prefix of the token.
bool TokenMatches(std::string_view given, std::string_view expected);

}  // namespace shm

#endif  // SHM_REQUEST_GATE_H_
