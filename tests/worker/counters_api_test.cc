#include <gtest/gtest.h>

#include <limits>
#include <string>

#include "api_test_util.h"
#include "segment_impl.h"
#include "shm/counter.h"
#include "test_clock.h"

namespace shm {
namespace {

namespace json = boost::json;
using test::ErrorCode;
using test::Json;
using test::ValueOf;
using V = http::verb;

class CountersApiTest : public testing::Test, public test::ApiFixture {};

TEST_F(CountersApiTest, IncrCreatesAtInitThenAdds) {
  HttpResponse r = Call(V::post, "/v1/counters/hits/incr?init=10&by=5");
  ASSERT_EQ(r.result_int(), 200u) << r.body();
  EXPECT_EQ(ValueOf(r), 15);
  EXPECT_EQ(r[http::field::content_type], "application/json");
  EXPECT_EQ(test::PidHeader(r), test::MyPid());
  EXPECT_EQ(ValueOf(Call(V::post, "/v1/counters/hits/incr?init=1000")), 16);
  EXPECT_EQ(ValueOf(Call(V::post, "/v1/counters/hits/incr?by=-20")), -4);
  EXPECT_EQ(ValueOf(Call(V::get, "/v1/counters/hits")), -4);
}

// The hot answers are written without a JSON value: the bytes are still exactly JSON's.
TEST_F(CountersApiTest, ValueBodiesAreExactJsonAtTheLimits) {
  HttpResponse r = Call(V::post, "/v1/counters/edge/incr?init=-9223372036854775807&by=-1");
  ASSERT_EQ(r.result_int(), 200u) << r.body();
  EXPECT_EQ(r.body(), R"({"value":-9223372036854775808})");
  EXPECT_EQ(r[http::field::content_type], "application/json");
  r = Call(V::put, "/v1/counters/edge", R"({"value": 9223372036854775807})");
  EXPECT_EQ(r.body(), R"({"value":9223372036854775807})");
  r = Call(V::put, "/v1/counters/edge", R"({"value": 0})");
  EXPECT_EQ(r.body(), R"({"value":0})");
  EXPECT_EQ(r.body(), json::serialize(json::object{{"value", 0}}));
  r = Call(V::get, "/v1/counters/edge");
  EXPECT_EQ(r.body(), R"({"value":0})");
}

TEST_F(CountersApiTest, GetPutDelete) {
  EXPECT_EQ(Call(V::get, "/v1/counters/c").result_int(), 404u);
  EXPECT_EQ(ErrorCode(Call(V::get, "/v1/counters/c")), "NotFound");
  HttpResponse put = Call(V::put, "/v1/counters/c", R"({"value": 42})");
  ASSERT_EQ(put.result_int(), 200u) << put.body();
  EXPECT_EQ(ValueOf(put), 42);
  EXPECT_EQ(ValueOf(Call(V::get, "/v1/counters/c")), 42);
  EXPECT_EQ(ValueOf(Call(V::put, "/v1/counters/c", R"({"value": -7})")), -7);
  EXPECT_EQ(ValueOf(Call(V::get, "/v1/counters/c")), -7);
  EXPECT_EQ(Call(V::delete_, "/v1/counters/c").result_int(), 204u);
  EXPECT_EQ(Call(V::get, "/v1/counters/c").result_int(), 404u);
  EXPECT_EQ(Call(V::delete_, "/v1/counters/c").result_int(), 404u);
}

// The cached proxy goes stale when the counter is deleted behind this worker's back (another
// worker, or the registry directly): the next incr re-opens and creates a fresh one.
TEST_F(CountersApiTest, StaleCachedProxyIsReopened) {
  EXPECT_EQ(ValueOf(Call(V::post, "/v1/counters/s/incr?by=5")), 5);
  ASSERT_TRUE(segment()->registry().Delete("s").ok());
  EXPECT_EQ(Call(V::get, "/v1/counters/s").result_int(), 404u);
  EXPECT_EQ(ValueOf(Call(V::post, "/v1/counters/s/incr?by=2&init=100")), 102);
  // Re-created under the same name by someone else: the handle follows the new incarnation.
  ASSERT_TRUE(segment()->registry().Delete("s").ok());
  Counter c;
  ASSERT_TRUE(Counter::Open(segment(), "s", {OpenMode::kCreateIfMissing, 7, 0}, &c).ok());
  EXPECT_EQ(ValueOf(Call(V::get, "/v1/counters/s")), 7);
}

// The cache is keyed by (segment, shm name, object name), looked up without copying the names:
// names longer than a short-string buffer, and names that share a prefix, stay distinct.
TEST_F(CountersApiTest, CachedProxiesAreKeyedByTheFullName) {
  const std::string long_name = "a-counter-name-longer-than-any-short-string-buffer";
  EXPECT_EQ(ValueOf(Call(V::post, "/v1/counters/" + long_name + "/incr")), 1);
  EXPECT_EQ(ValueOf(Call(V::post, "/v1/counters/" + long_name + "/incr")), 2);
  EXPECT_EQ(ValueOf(Call(V::post, "/v1/counters/" + long_name + "x/incr?by=10")), 10);
  EXPECT_EQ(ValueOf(Call(V::post, "/v1/counters/a-counter/incr?by=20")), 20);
  EXPECT_EQ(ValueOf(Call(V::get, "/v1/counters/" + long_name)), 2);
  EXPECT_EQ(Call(V::delete_, "/v1/counters/" + long_name).result_int(), 204u);
  EXPECT_EQ(Call(V::get, "/v1/counters/" + long_name).result_int(), 404u);
  EXPECT_EQ(ValueOf(Call(V::get, "/v1/counters/" + long_name + "x")), 10);
  EXPECT_EQ(ValueOf(Call(V::post, "/v1/counters/" + long_name + "/incr")), 1);
}

TEST_F(CountersApiTest, CompareAndSet) {
  EXPECT_EQ(Call(V::post, "/v1/counters/k/cas", R"({"expected":0,"value":1})").result_int(), 404u);
  Call(V::put, "/v1/counters/k", R"({"value": 5})");
  HttpResponse miss = Call(V::post, "/v1/counters/k/cas", R"({"expected":4,"value":9})");
  EXPECT_EQ(miss.result_int(), 409u);
  EXPECT_EQ(ErrorCode(miss), "Conflict");
  EXPECT_EQ(ValueOf(miss), 5);
  EXPECT_EQ(test::PidHeader(miss), test::MyPid());
  HttpResponse hit = Call(V::post, "/v1/counters/k/cas", R"({"expected":5,"value":9})");
  EXPECT_EQ(hit.result_int(), 200u);
  EXPECT_EQ(ValueOf(hit), 9);
  EXPECT_EQ(ValueOf(Call(V::get, "/v1/counters/k")), 9);
}

TEST_F(CountersApiTest, StrictQueryIntegers) {
  for (const char* q : {"by=1.5", "by=", "by=+1", "by=%201", "by=1e3", "by=0x10", "init=abc",
                        "by=9223372036854775808", "ttl=-1", "ttl=1.2345", "ttl=abc", "bogus=1"}) {
    HttpResponse r = Call(V::post, std::string("/v1/counters/q/incr?") + q);
    EXPECT_EQ(r.result_int(), 400u) << q;
    EXPECT_EQ(ErrorCode(r), "InvalidArgument") << q;
  }
  // Nothing was created by the refused requests.
  EXPECT_EQ(Call(V::get, "/v1/counters/q").result_int(), 404u);
  EXPECT_EQ(ValueOf(Call(V::post, "/v1/counters/q/incr?by=-9223372036854775808")),
            std::numeric_limits<int64_t>::min());
}

TEST_F(CountersApiTest, OverflowIs400AndLeavesTheValue) {
  Call(V::put, "/v1/counters/o", R"({"value": 9223372036854775807})");
  HttpResponse r = Call(V::post, "/v1/counters/o/incr");
  EXPECT_EQ(r.result_int(), 400u);
  EXPECT_EQ(ValueOf(Call(V::get, "/v1/counters/o")), std::numeric_limits<int64_t>::max());
}

TEST_F(CountersApiTest, BadBodiesAre400) {
  for (const char* body : {"", "{", "[1]", R"({"value":1.5})", R"({"value":"1"})", R"({})",
                           R"({"value":1,"extra":2})", R"({"value":18446744073709551615})"}) {
    HttpResponse r = Call(V::put, "/v1/counters/b", body);
    EXPECT_EQ(r.result_int(), 400u) << body;
    EXPECT_EQ(ErrorCode(r), "InvalidArgument") << body;
  }
  EXPECT_EQ(Call(V::post, "/v1/counters/b/cas", R"({"expected":1})").result_int(), 400u);
  EXPECT_EQ(Call(V::get, "/v1/counters/b").result_int(), 404u);
}

TEST_F(CountersApiTest, BadNamesAre400AfterDecoding) {
  std::string too_long(201, 'n');
  for (std::string name :
       {std::string("a%2Fb"), std::string(".."), std::string("%2E%2E"), std::string(".hidden"),
        std::string("sp%20ace"), too_long, std::string("a%00b")}) {
    HttpResponse r = Call(V::post, "/v1/counters/" + name + "/incr");
    EXPECT_EQ(r.result_int(), 400u) << name;
    EXPECT_EQ(ErrorCode(r), "InvalidArgument") << name;
    EXPECT_EQ(test::PidHeader(r), test::MyPid());
  }
  EXPECT_EQ(Call(V::post, "/v1/counters/" + std::string(200, 'n') + "/incr").result_int(), 200u);
  EXPECT_EQ(Call(V::post, "/v1/counters/a:b-c_d.e/incr").result_int(), 200u);
  EXPECT_EQ(segment()->registry().live(), 2u);
}

TEST_F(CountersApiTest, WrongTypeIs409) {
  Registry::OpenSpec spec;
  spec.kind = ObjectKind::kList;
  spec.mode = OpenMode::kCreateIfMissing;
  spec.make_body = [&](uint64_t* body) { return segment()->impl()->Allocate(64, body); };
  ObjectRef ref;
  ASSERT_TRUE(segment()->registry().Open("l", spec, &ref).ok());
  for (V verb : {V::get, V::delete_}) {
    HttpResponse r = Call(verb, "/v1/counters/l");
    EXPECT_EQ(r.result_int(), 409u);
    EXPECT_EQ(ErrorCode(r), "WrongType");
  }
  EXPECT_EQ(Call(V::post, "/v1/counters/l/incr").result_int(), 409u);
  ObjectInfo info;
  EXPECT_TRUE(segment()->registry().Lookup("l", &info).ok());
}

TEST_F(CountersApiTest, TtlExpires) {
  ScopedWallClockForTesting clock;
  EXPECT_EQ(ValueOf(Call(V::post, "/v1/counters/t/incr?ttl=60")), 1);
  EXPECT_EQ(Call(V::get, "/v1/counters/t").result_int(), 200u);
  clock.Advance(60 * 1000);
  EXPECT_EQ(Call(V::get, "/v1/counters/t").result_int(), 404u);
  EXPECT_EQ(ValueOf(Call(V::post, "/v1/counters/t/incr?init=50")), 51);
}

}  // namespace
}  // namespace shm
