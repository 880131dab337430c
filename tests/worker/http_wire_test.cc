#include "shm/http_wire.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

namespace shm {
namespace {

// What Beast's own serializer sends for `response`.
std::string BeastWire(const HttpResponse& response) {
  std::ostringstream stream;
  stream << response;
  return stream.str();
}

HttpResponse Prepared(http::status status, unsigned version, std::string body) {
  HttpResponse response{status, version};
  response.set(http::field::content_type, "application/json");
  response.set("X-Worker-Pid", "4242");
  response.body() = std::move(body);
  response.prepare_payload();
  return response;
}

TEST(HttpWireTest, SmallJsonResponseHasExactBytes) {
  HttpResponse response = Prepared(http::status::ok, 11, R"({"value":7})");
  std::string wire;
  SerializeResponse(response, &wire);
  EXPECT_EQ(wire,
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: application/json\r\n"
            "X-Worker-Pid: 4242\r\n"
            "Content-Length: 11\r\n"
            "\r\n"
            R"({"value":7})");
  EXPECT_EQ(wire, BeastWire(response));
}

TEST(HttpWireTest, MatchesBeastForVersionsStatusesAndFields) {
  std::vector<HttpResponse> responses;
  responses.push_back(Prepared(http::status::not_found, 11, R"({"error":{}})"));
  responses.push_back(Prepared(http::status::ok, 10, "hello"));  // HTTP/1.0 keeps its version.
  HttpResponse closing = Prepared(http::status::service_unavailable, 11, "x");
  closing.set(http::field::retry_after, "1");
  closing.keep_alive(false);
  responses.push_back(closing);
  HttpResponse empty{http::status::no_content, 11};
  empty.prepare_payload();
  responses.push_back(empty);
  HttpResponse not_modified{http::status::not_modified, 11};
  not_modified.set(http::field::etag, "\"3\"");
  not_modified.prepare_payload();
  responses.push_back(not_modified);
  HttpResponse custom = Prepared(http::status::ok, 11, "");
  custom.reason("Fine Thanks");          // A reason set by a handler is sent as is.
  custom.set("x-lower-case", "Value ");  // Unknown names keep their spelling.
  custom.insert("Set-Cookie", "a=1");    // Repeated fields stay in insertion order.
  custom.insert("Set-Cookie", "b=2");
  responses.push_back(custom);
  HttpResponse unknown_status{static_cast<http::status>(599), 11};  // No reason phrase known.
  unknown_status.prepare_payload();
  responses.push_back(unknown_status);
  for (const HttpResponse& response : responses) {
    std::string wire = "stale bytes of an earlier response";
    SerializeResponse(response, &wire);
    EXPECT_EQ(wire, BeastWire(response)) << response.result_int();
  }
}

TEST(HttpWireTest, LargeBinaryBodyIsCopiedExactly) {
  std::string body(100000, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(i * 131);
  HttpResponse response = Prepared(http::status::ok, 11, body);
  std::string wire;
  SerializeResponse(response, &wire);
  EXPECT_EQ(wire, BeastWire(response));
  ASSERT_GE(wire.size(), body.size());
  EXPECT_EQ(wire.substr(wire.size() - body.size()), body);
}

TEST(HttpWireTest, HeadIsEverythingButTheBodyAndAppends) {
  HttpResponse response = Prepared(http::status::ok, 11, "0123456789");
  std::string head = "prefix|";
  AppendResponseHead(response, &head);
  EXPECT_EQ(head, "prefix|" + BeastWire(response).substr(0, BeastWire(response).size() - 10));
  EXPECT_EQ(head.substr(head.size() - 4), "\r\n\r\n");
}

TEST(HttpWireTest, ChunkedResponseIsChunkEncodedLikeBeast) {
  HttpResponse response{http::status::ok, 11};
  response.body() = "abc";
  response.chunked(true);
  std::string wire;
  SerializeResponse(response, &wire);
  EXPECT_EQ(wire, BeastWire(response));
  EXPECT_NE(wire.find("\r\n3\r\nabc\r\n0\r\n\r\n"), std::string::npos) << wire;
}

}  // namespace
}  // namespace shm
