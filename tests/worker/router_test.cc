#include "shm/router.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "api_test_util.h"

namespace shm {
namespace {

namespace json = boost::json;
using test::ErrorCode;
using test::Json;

// A router with one echo route: answers its captures and query as JSON.
class RouterTest : public testing::Test {
 protected:
  RouterTest() {
    router_.Add(http::verb::get, "/echo/{a}/x/{b}", [](RequestContext& c, HttpResponse* r) {
      json::object q;
      for (auto& [k, v] : c.query) q[k] = v;
      r->body() = json::serialize(json::object{{"a", c.params[0]}, {"b", c.params[1]}, {"q", q}});
      return Status::OK();
    });
    router_.Add(http::verb::post, "/echo/{a}/x/{b}",
                [](RequestContext&, HttpResponse*) { return Status::OK(); });
    router_.Add(http::verb::get, "/throw",
                [](RequestContext&, HttpResponse*) -> Status { throw std::runtime_error("boom"); });
    router_.Add(http::verb::get, "/status/{code}", [](RequestContext& c, HttpResponse*) {
      const std::string& code = c.params[0];
      if (code == "notfound") return Status::NotFound("nf");
      if (code == "invalid") return Status::InvalidArgument("bad");
      if (code == "wrongtype") return Status::WrongType("wt");
      if (code == "exists") return Status::AlreadyExists("ae");
      if (code == "conflict") return Status::Conflict("cf");
      if (code == "space") return Status::OutOfSpace("full");
      if (code == "timeout") return Status::Timeout("slow");
      if (code == "poisoned") return Status::Poisoned("rebuild");
      return Status::Internal("bug");
    });
  }

  HttpResponse Get(std::string_view target, http::verb verb = http::verb::get,
                   std::vector<std::pair<std::string, std::string>> headers = {}) {
    HttpRequest request{verb, target, 11};
    for (auto& [name, value] : headers) request.set(name, value);
    return router_.Handle(request, segment_.get(), 0);
  }

  test::ScopedSegment segment_;
  Router router_;
};

TEST_F(RouterTest, CapturesArePercentDecodedAfterSplitting) {
  HttpResponse r = Get("/echo/a%2Fb/x/%41%20c?k=v%26w&plus=a+b");
  ASSERT_EQ(r.result_int(), 200u);
  json::object body = Json(r).as_object();
  EXPECT_EQ(body["a"].as_string(), "a/b");
  EXPECT_EQ(body["b"].as_string(), "A c");
  EXPECT_EQ(body["q"].as_object()["k"].as_string(), "v&w");
  EXPECT_EQ(body["q"].as_object()["plus"].as_string(), "a b");
  EXPECT_EQ(test::PidHeader(r), test::MyPid());
}

TEST_F(RouterTest, UnknownPathIs404AndPathsAreNotNormalised) {
  for (const char* target : {"/nope", "/echo/a/x", "/echo/a/x/b/", "/echo//x/b", "/echo/a/../x/b/c",
                             "/echo/a/y/b", "/", "//echo/a/x/b"}) {
    HttpResponse r = Get(target);
    EXPECT_EQ(r.result_int(), 404u) << target;
    EXPECT_EQ(ErrorCode(r), "NotFound") << target;
    EXPECT_EQ(test::PidHeader(r), test::MyPid()) << target;
  }
}

// Error messages echo the path; bytes that are not UTF-8 must not make the body invalid JSON
// (found by the request fuzzer).
TEST_F(RouterTest, ErrorBodiesStayValidJsonWhateverThePathBytes) {
  HttpResponse r = Get("/v1/counte\xa2s/x\xff\xc3\xa9");
  EXPECT_EQ(r.result_int(), 404u);
  json::value body;
  ASSERT_NO_THROW(body = json::parse(r.body())) << r.body();
  std::string message(body.at("error").at("message").as_string());
  EXPECT_NE(message.find("counte\\xA2s/x\\xFF\xc3\xa9"), std::string::npos) << message;
}

TEST_F(RouterTest, KnownPathWithOtherMethodIs405WithAllow) {
  HttpResponse r = Get("/echo/a/x/b", http::verb::delete_);
  EXPECT_EQ(r.result_int(), 405u);
  EXPECT_EQ(ErrorCode(r), "MethodNotAllowed");
  EXPECT_EQ(r[http::field::allow], "GET, HEAD, POST");
  EXPECT_EQ(test::PidHeader(r), test::MyPid());
}

// HEAD runs the GET route: same status and fields; the session drops the body on the wire.
TEST_F(RouterTest, HeadRunsTheGetRoute) {
  HttpResponse get = Get("/echo/a/x/b");
  HttpResponse head = Get("/echo/a/x/b", http::verb::head);
  ASSERT_EQ(head.result_int(), 200u);
  EXPECT_EQ(head[http::field::content_length], get[http::field::content_length]);
  EXPECT_EQ(head.body(), get.body());
  EXPECT_EQ(Get("/status/notfound", http::verb::head).result_int(), 404u);
  EXPECT_EQ(Get("/nothing", http::verb::head).result_int(), 404u);
}

TEST_F(RouterTest, BadEscapesAndBadQueriesAre400) {
  for (const char* target : {"/echo/%zz/x/b", "/echo/a/x/%4", "/echo/a/x/b?k=%g1",
                             "/echo/a/x/b?k=1&k=2", "/echo/a/x/b?=1", "noslash"}) {
    HttpResponse r = Get(target);
    EXPECT_EQ(r.result_int(), 400u) << target;
    EXPECT_EQ(ErrorCode(r), "InvalidArgument") << target;
    EXPECT_EQ(test::PidHeader(r), test::MyPid()) << target;
  }
}

// A shape match with another method is checked before the matching route: its bad escape is
// 400, not a silent skip to the next route.
TEST_F(RouterTest, BadEscapeIs400EvenWhenOnlyAnotherMethodsRouteHasTheShape) {
  HttpResponse r = Get("/echo/%zz/x/b", http::verb::delete_);
  EXPECT_EQ(r.result_int(), 400u);
  EXPECT_EQ(ErrorCode(r), "InvalidArgument");
  EXPECT_EQ(Get("/echo/%zz/x/b", http::verb::post).result_int(), 400u);
}

// Paths with more segments than any route (past the matcher's inline capacity) are plain 404s;
// routes that deep still match.
TEST_F(RouterTest, DeepPathsMatchOnlyRoutesOfTheirDepth) {
  router_.Add(http::verb::get, "/a/b/c/d/e/f/g/h/i/j/{k}", [](RequestContext& c, HttpResponse* r) {
    r->body() = c.params[0];
    return Status::OK();
  });
  HttpResponse deep = Get("/a/b/c/d/e/f/g/h/i/j/k%21");
  ASSERT_EQ(deep.result_int(), 200u) << deep.body();
  EXPECT_EQ(deep.body(), "k!");
  EXPECT_EQ(Get("/a/b/c/d/e/f/g/h/i/j/k/l").result_int(), 404u);
  EXPECT_EQ(Get("/a/b/c/d/e/f/g/h/i/x/k").result_int(), 404u);
  std::string very_deep;
  for (int i = 0; i < 200; ++i) very_deep += "/s";
  EXPECT_EQ(Get(very_deep).result_int(), 404u);
}

TEST_F(RouterTest, AllowListsEachMethodOnceAlphabetically) {
  router_.Add(http::verb::put, "/echo/{a}/x/{b}",
              [](RequestContext&, HttpResponse*) { return Status::OK(); });
  router_.Add(http::verb::get, "/echo/{a}/x/{b}", [](RequestContext&, HttpResponse*) {
    return Status::Internal("shadowed by the first GET route");
  });
  router_.Add(http::verb::delete_, "/echo/{a}/x/{b}",
              [](RequestContext&, HttpResponse*) { return Status::OK(); });
  HttpResponse r = Get("/echo/a/x/b", http::verb::patch);
  EXPECT_EQ(r.result_int(), 405u);
  EXPECT_EQ(r[http::field::allow], "DELETE, GET, HEAD, POST, PUT");
  EXPECT_EQ(Get("/echo/a/x/b").result_int(), 200u);  // The first GET route wins.
  // Routes added in another order give the same header.
  Router reversed;
  for (http::verb m : {http::verb::put, http::verb::delete_, http::verb::post, http::verb::get}) {
    reversed.Add(m, "/r", [](RequestContext&, HttpResponse*) { return Status::OK(); });
  }
  HttpRequest request{http::verb::patch, "/r", 11};
  EXPECT_EQ(reversed.Handle(request, segment_.get(), 0)[http::field::allow],
            "DELETE, GET, HEAD, POST, PUT");
}

TEST_F(RouterTest, QueryLimits) {
  std::string many = "/echo/a/x/b?";
  for (size_t i = 0; i <= kMaxQueryParams; ++i) many += "k" + std::to_string(i) + "=1&";
  EXPECT_EQ(Get(many).result_int(), 400u);
  std::string long_value = "/echo/a/x/b?k=" + std::string(kMaxQueryValueBytes + 1, 'v');
  EXPECT_EQ(Get(long_value).result_int(), 400u);
  std::string fits = "/echo/a/x/b?k=" + std::string(kMaxQueryValueBytes, 'v');
  EXPECT_EQ(Get(fits).result_int(), 200u);
}

TEST_F(RouterTest, StatusTableAndJsonErrorBodies) {
  struct Case {
    const char* code;
    unsigned http;
    const char* name;
  };
  for (const Case& c : {Case{"notfound", 404, "NotFound"}, Case{"invalid", 400, "InvalidArgument"},
                        Case{"wrongtype", 409, "WrongType"}, Case{"exists", 409, "AlreadyExists"},
                        Case{"conflict", 409, "Conflict"}, Case{"space", 507, "OutOfSpace"},
                        Case{"timeout", 503, "Timeout"}, Case{"poisoned", 503, "Poisoned"},
                        Case{"other", 500, "Internal"}}) {
    HttpResponse r = Get(std::string("/status/") + c.code);
    EXPECT_EQ(r.result_int(), c.http) << c.code;
    EXPECT_EQ(ErrorCode(r), c.name) << c.code;
    EXPECT_EQ(r[http::field::content_type], "application/json");
    EXPECT_EQ(test::PidHeader(r), test::MyPid());
    EXPECT_EQ(r.count(http::field::retry_after), c.http == 503 ? 1u : 0u) << c.code;
  }
}

TEST_F(RouterTest, ConflictUnderIfMatchIs412) {
  HttpResponse r = Get("/status/conflict", http::verb::get, {{"If-Match", "\"3\""}});
  EXPECT_EQ(r.result_int(), 412u);
  EXPECT_EQ(ErrorCode(r), "Conflict");
}

TEST_F(RouterTest, ThrowingHandlerIs500AndRouterKeepsServing) {
  HttpResponse r = Get("/throw");
  EXPECT_EQ(r.result_int(), 500u);
  EXPECT_EQ(ErrorCode(r), "Internal");
  EXPECT_EQ(test::PidHeader(r), test::MyPid());
  EXPECT_EQ(Get("/echo/a/x/b").result_int(), 200u);
}

// The response is complete when Handle returns: Content-Length is set, and a body that HTTP
// forbids (on a 204) is the handler's bug, answered 500 instead of an exception.
TEST_F(RouterTest, ResponsesArePreparedAndBadPayloadsAre500) {
  HttpResponse r = Get("/echo/a/x/b?k=v");
  EXPECT_EQ(r[http::field::content_length], std::to_string(r.body().size()));
  router_.Add(http::verb::get, "/bad204", [](RequestContext&, HttpResponse* response) {
    response->result(http::status::no_content);
    response->body() = "not allowed";
    return Status::OK();
  });
  HttpResponse bad;
  ASSERT_NO_THROW(bad = Get("/bad204"));
  EXPECT_EQ(bad.result_int(), 500u);
  EXPECT_EQ(ErrorCode(bad), "Internal");
  EXPECT_EQ(bad[http::field::content_length], std::to_string(bad.body().size()));
}

TEST(PercentDecodeTest, DecodesStrictly) {
  std::string out;
  ASSERT_TRUE(PercentDecode("a%2fb%2F+", false, &out).ok());
  EXPECT_EQ(out, "a/b/+");
  ASSERT_TRUE(PercentDecode("a+b", true, &out).ok());
  EXPECT_EQ(out, "a b");
  EXPECT_TRUE(PercentDecode("%", false, &out).IsInvalidArgument());
  EXPECT_TRUE(PercentDecode("%1", false, &out).IsInvalidArgument());
  EXPECT_TRUE(PercentDecode("%x1", false, &out).IsInvalidArgument());
}

}  // namespace
}  // namespace shm
