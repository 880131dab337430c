// The bytes of an HTTP response on the wire, written by the worker itself into one flat buffer.
//
// Beast's serializer walks a concatenated buffer sequence (status line, each field, body) several
// times per write; a worker answering small requests spent more time there than in the state
// itself. These functions produce exactly the bytes Beast would send, in one pass. Stateless and
// thread-safe.
#ifndef SHM_HTTP_WIRE_H_
#define SHM_HTTP_WIRE_H_

#include <string>

#include "shm/router.h"

namespace shm {

// Appends the head of `response`: status line, fields in their order, blank line. The body
// follows as is, so the response must not be chunked (prepare_payload on a string body never
// leaves it chunked).
void AppendResponseHead(const HttpResponse& response, std::string* out);

// Replaces `*out` with the whole response: head and body, chunk-encoded (by Beast) when the
// response is chunked. Call prepare_payload first, as for any write. `out` keeps its capacity,
// so a connection can reuse one buffer.
void SerializeResponse(const HttpResponse& response, std::string* out);

}  // namespace shm

#endif  // SHM_HTTP_WIRE_H_
