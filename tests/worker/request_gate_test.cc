#include "shm/request_gate.h"

#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <string>
#include <string_view>

#include "api_test_util.h"

namespace shm {
namespace {

namespace json = boost::json;
using test::ErrorCode;
using test::Json;

GateOptions Limits(size_t body, size_t header, std::string_view token = {}) {
  GateOptions options;
  options.max_body_bytes = body;
  options.max_header_bytes = header;
  options.token = token;
  return options;
}

HttpRequest Post(std::string_view target) {
  HttpRequest request{http::verb::post, target, 11};
  request.set(http::field::host, "t");
  return request;
}

std::string Message(const HttpResponse& response) {
  json::value v = Json(response);
  return std::string(v.at("error").at("message").as_string());
}

// Feeds `bytes` to a fresh parser with the gate's limits, as the Session's reads would, and
// returns the parser's verdict; `eof` then ends the stream as a client hanging up would.
boost::system::error_code Parse(std::string_view bytes, const GateOptions& options,
                                bool eof = false) {
  RequestParser parser;
  ApplyLimits(options, &parser);
  parser.eager(true);
  boost::system::error_code ec;
  boost::asio::const_buffer rest(bytes.data(), bytes.size());
  while (rest.size() > 0 && !parser.is_done()) {
    size_t used = parser.put(rest, ec);
    rest += used;
    if (ec == http::error::need_more) {
      ec = {};
      break;
    }
    if (ec) return ec;
  }
  if (eof && !parser.is_done()) parser.put_eof(ec);
  return ec;
}

TEST(RequestGateTest, PlainRequestPasses) {
  HttpRequest request = Post("/v1/counters/a/incr");
  request.set(http::field::content_length, "3");
  EXPECT_FALSE(GateHead(request, Limits(1024, 1024)));
  HttpRequest chunked = Post("/v1/counters/a/incr");
  chunked.set(http::field::transfer_encoding, "gzip, chunked");
  EXPECT_FALSE(GateHead(chunked, Limits(1024, 1024)));
}

TEST(RequestGateTest, LengthAndTransferEncodingTogetherIs400AndCloses) {
  HttpRequest request = Post("/v1/counters/a/incr");
  request.set(http::field::content_length, "5");
  request.set(http::field::transfer_encoding, "chunked");
  auto refusal = GateHead(request, Limits(1024, 1024));
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->result_int(), 400u);
  EXPECT_EQ(ErrorCode(*refusal), "BadRequest");
  EXPECT_EQ(Message(*refusal), "both Content-Length and Transfer-Encoding");
  EXPECT_FALSE(refusal->keep_alive());
  EXPECT_NE(refusal->find("X-Worker-Pid"), refusal->end());
}

TEST(RequestGateTest, TransferEncodingNotEndingInChunkedIs400AndCloses) {
  for (std::string_view coding : {"gzip", "chunked, gzip"}) {
    HttpRequest request = Post("/v1/counters/a/incr");
    request.set(http::field::transfer_encoding, coding);
    auto refusal = GateHead(request, Limits(1024, 1024));
    ASSERT_TRUE(refusal) << coding;
    EXPECT_EQ(refusal->result_int(), 400u);
    EXPECT_EQ(Message(*refusal), "Transfer-Encoding must end in chunked");
    EXPECT_FALSE(refusal->keep_alive());
  }
}

TEST(RequestGateTest, DeclaredBodyOverTheLimitIs413AndCloses) {
  HttpRequest request = Post("/v1/dicts/d/k");
  request.set(http::field::content_length, "11");
  auto refusal = GateHead(request, Limits(10, 1024));
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->result_int(), 413u);
  EXPECT_EQ(ErrorCode(*refusal), "PayloadTooLarge");
  EXPECT_FALSE(refusal->keep_alive());
  request.set(http::field::content_length, "10");
  EXPECT_FALSE(GateHead(request, Limits(10, 1024)));
}

TEST(RequestGateTest, TokenIsRequiredExceptForHealthzAndUi) {
  const GateOptions options = Limits(1024, 1024, "s3cret");
  HttpRequest request = Post("/v1/counters/a/incr");
  auto refusal = GateHead(request, options);
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->result_int(), 401u);
  EXPECT_EQ(ErrorCode(*refusal), "Unauthorized");
  EXPECT_EQ((*refusal)[http::field::www_authenticate], "Bearer");
  EXPECT_TRUE(refusal->keep_alive());  // A refused token is no reason to drop the connection.

  for (std::string_view wrong :
       {"Bearer s3cre", "Bearer s3cret2", "Bearer ", "bearer s3cret", "Basic s3cret", "s3cret"}) {
    request.set(http::field::authorization, wrong);
    auto wrong_refusal = GateHead(request, options);
    ASSERT_TRUE(wrong_refusal) << wrong;
    EXPECT_EQ(wrong_refusal->result_int(), 401u) << wrong;
  }
  request.set(http::field::authorization, "Bearer s3cret");
  EXPECT_FALSE(GateHead(request, options));

  for (std::string_view open : {"/healthz", "/ui", "/ui?x=1", "/healthz?probe"}) {
    HttpRequest get{http::verb::get, open, 11};
    EXPECT_FALSE(GateHead(get, options)) << open;
  }
  HttpRequest near{http::verb::get, "/healthz/x", 11};
  EXPECT_TRUE(GateHead(near, options));
}

TEST(RequestGateTest, FramingIsCheckedBeforeTheToken) {
  HttpRequest request = Post("/v1/counters/a/incr");
  request.set(http::field::transfer_encoding, "gzip");
  auto refusal = GateHead(request, Limits(1024, 1024, "tok"));
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->result_int(), 400u);
}

TEST(RequestGateTest, ParserLimitsBecome413And431) {
  const GateOptions options = Limits(16, 256);
  std::string big_header =
      "GET / HTTP/1.1\r\nHost: t\r\nX-Pad: " + std::string(400, 'p') + "\r\n\r\n";
  boost::system::error_code ec = Parse(big_header, options);
  EXPECT_EQ(ec, http::error::header_limit);
  auto answer = GateReadError(ec);
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->result_int(), 431u);
  EXPECT_EQ(ErrorCode(*answer), "HeaderTooLarge");

  // A declared length over the limit fails with the head, before any body byte is read.
  ec = Parse("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 17\r\n\r\n", options);
  EXPECT_EQ(ec, http::error::body_limit);
  // A chunked body has no declared length: it fails once the limit is crossed.
  ec = Parse("POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n11\r\n" +
                 std::string(17, 'b') + "\r\n0\r\n\r\n",
             options);
  EXPECT_EQ(ec, http::error::body_limit);
  answer = GateReadError(ec);
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->result_int(), 413u);
  EXPECT_EQ(ErrorCode(*answer), "PayloadTooLarge");

  EXPECT_FALSE(Parse(
      "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 16\r\n\r\n" + std::string(16, 'b'), options));
}

TEST(RequestGateTest, MalformedRequestIs400AndAHangUpIsNotAnswered) {
  boost::system::error_code ec = Parse("GET / HTTP/1.1\r\nBad Header\r\n\r\n", Limits(16, 256));
  ASSERT_TRUE(ec);
  auto answer = GateReadError(ec);
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->result_int(), 400u);
  EXPECT_EQ(ErrorCode(*answer), "BadRequest");
  EXPECT_EQ(Message(*answer).rfind("malformed request: ", 0), 0u);

  ec = Parse("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\n\r\nabc", Limits(16, 256),
             /*eof=*/true);
  EXPECT_EQ(ec, http::error::partial_message);
  EXPECT_FALSE(GateReadError(ec));
  EXPECT_FALSE(GateReadError(boost::asio::error::connection_reset));
}

TEST(RequestGateTest, TokenMatchesOnlyTheWholeToken) {
  EXPECT_TRUE(TokenMatches("s3cret", "s3cret"));
  EXPECT_FALSE(TokenMatches("s3cre", "s3cret"));
  EXPECT_FALSE(TokenMatches("s3cret2", "s3cret"));
  EXPECT_FALSE(TokenMatches("S3cret", "s3cret"));
  EXPECT_FALSE(TokenMatches("", "s3cret"));
  EXPECT_FALSE(TokenMatches("x", ""));
  EXPECT_TRUE(TokenMatches("", ""));
}

TEST(RequestGateTest, OptionsComeFromTheWorkerOptions) {
  WorkerOptions worker;
  worker.max_body_bytes = 123;
  worker.max_header_bytes = 456;
  worker.token = "tok";
  GateOptions options = GateOptionsOf(worker);
  EXPECT_EQ(options.max_body_bytes, 123u);
  EXPECT_EQ(options.max_header_bytes, 456u);
  EXPECT_EQ(options.token, "tok");
}

}  // namespace
}  // namespace shm
