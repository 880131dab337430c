#include <gtest/gtest.h>
#include <unistd.h>

#include <map>
#include <string>

#include "api_test_util.h"
#include "shm/dict.h"

namespace shm {
namespace {

namespace json = boost::json;
using test::ErrorCode;
using test::Json;
using V = http::verb;

class AdminApiTest : public testing::Test, public test::ApiFixture {};

TEST_F(AdminApiTest, ListObjectsFiltersAndPages) {
  for (const char* name : {"a1", "a2", "a3", "b1"}) {
    ASSERT_EQ(Call(V::post, std::string("/v1/counters/") + name + "/incr").result_int(), 200u);
  }
  HttpResponse r = Call(V::get, "/v1/objects?prefix=a&kind=counter&limit=2");
  ASSERT_EQ(r.result_int(), 200u) << r.body();
  json::object body = Json(r).as_object();
  json::array objects = body["objects"].as_array();
  ASSERT_EQ(objects.size(), 2u);
  EXPECT_EQ(objects[0].as_object()["name"].as_string(), "a1");
  EXPECT_EQ(objects[0].as_object()["kind"].as_string(), "counter");
  EXPECT_EQ(body["next"].as_string(), "a2");
  json::object rest = Json(Call(V::get, "/v1/objects?prefix=a&limit=2&after=a2")).as_object();
  ASSERT_EQ(rest["objects"].as_array().size(), 1u);
  EXPECT_EQ(rest["objects"].as_array()[0].as_object()["name"].as_string(), "a3");
  EXPECT_EQ(Json(Call(V::get, "/v1/objects")).as_object()["objects"].as_array().size(), 4u);
  EXPECT_EQ(Json(Call(V::get, "/v1/objects?kind=dict")).as_object()["objects"].as_array().size(),
            0u);
}

// Each listed object carries what it holds and the time it has left.
TEST_F(AdminApiTest, ListObjectsReportsSizesAndTtl) {
  ASSERT_EQ(Call(V::post, "/v1/counters/c/incr?by=41&init=1&ttl=100").result_int(), 200u);
  ASSERT_EQ(Call(V::put, "/v1/dicts/d/k1", "abc").result_int(), 200u);
  ASSERT_EQ(Call(V::put, "/v1/dicts/d/k22", "defgh").result_int(), 200u);
  for (const char* item : {"x", "yz", "uvw"}) {
    ASSERT_EQ(Call(V::post, "/v1/lists/l/push", item).result_int(), 200u);
  }
  ASSERT_EQ(Call(V::post, "/v1/arrays/a", R"({"dtype":"int32","shape":[3,5]})").result_int(), 201u);
  ASSERT_EQ(Call(V::post, "/v1/locks/k/acquire?ttl=5").result_int(), 200u);
  json::array objects = Json(Call(V::get, "/v1/objects")).as_object()["objects"].as_array();
  ASSERT_EQ(objects.size(), 5u);
  std::map<std::string, json::object> by_name;
  for (json::value& o : objects)
    by_name[std::string(o.as_object()["name"].as_string())] = o.as_object();
  json::object& counter = by_name["c"];
  EXPECT_EQ(counter["value"].as_int64(), 42);
  EXPECT_EQ(counter["size_bytes"].to_number<uint64_t>(), 8u);
  EXPECT_FALSE(counter.contains("length"));
  int64_t ttl = counter["ttl_ms"].as_int64();
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 100000);
  json::object& dict = by_name["d"];
  EXPECT_EQ(dict["length"].as_int64(), 2);
  // Keys, values and content types (application/octet-stream by default), 40 bytes each.
  DictStats stats;
  Dict d;
  ASSERT_TRUE(Dict::Open(segment(), "d", OpenMode::kOpenExisting, {}, &d).ok());
  ASSERT_TRUE(d.Stats(&stats).ok());
  EXPECT_EQ(dict["size_bytes"].to_number<uint64_t>(), stats.bytes);
  EXPECT_TRUE(dict["ttl_ms"].is_null());
  EXPECT_FALSE(dict.contains("value"));
  EXPECT_EQ(by_name["l"]["length"].as_int64(), 3);
  EXPECT_EQ(by_name["l"]["size_bytes"].to_number<uint64_t>(), 6u);
  EXPECT_EQ(by_name["a"]["length"].as_int64(), 15);
  EXPECT_EQ(by_name["a"]["size_bytes"].to_number<uint64_t>(), 60u);
  EXPECT_EQ(by_name["k"]["size_bytes"].to_number<uint64_t>(), 0u);
  EXPECT_FALSE(by_name["k"].contains("length"));
  // A pop and a delete show in the next listing.
  ASSERT_EQ(Call(V::post, "/v1/lists/l/pop").result_int(), 200u);
  ASSERT_EQ(Call(V::delete_, "/v1/dicts/d/k1").result_int(), 204u);
  objects = Json(Call(V::get, "/v1/objects?prefix=l")).as_object()["objects"].as_array();
  EXPECT_EQ(objects[0].as_object()["length"].as_int64(), 2);
  EXPECT_EQ(objects[0].as_object()["size_bytes"].to_number<uint64_t>(), 5u);
  objects = Json(Call(V::get, "/v1/objects?prefix=d")).as_object()["objects"].as_array();
  EXPECT_EQ(objects[0].as_object()["length"].as_int64(), 1);
}

// The status page: HTML whose only script and style carry this response's nonce.
TEST_F(AdminApiTest, UiPageCarriesAFreshNonce) {
  HttpResponse first = Call(V::get, "/ui");
  ASSERT_EQ(first.result_int(), 200u);
  EXPECT_EQ(first[http::field::content_type], "text/html; charset=utf-8");
  std::string csp(first["Content-Security-Policy"]);
  size_t at = csp.find("'nonce-");
  ASSERT_NE(at, std::string::npos) << csp;
  std::string nonce = csp.substr(at + 7, csp.find('\'', at + 7) - at - 7);
  EXPECT_EQ(nonce.size(), 32u);
  EXPECT_NE(first.body().find("<script nonce=\"" + nonce + "\">"), std::string::npos);
  EXPECT_NE(first.body().find("<style nonce=\"" + nonce + "\">"), std::string::npos);
  EXPECT_EQ(first.body().find("@NONCE@"), std::string::npos);
  EXPECT_EQ(first["X-Content-Type-Options"], "nosniff");
  HttpResponse second = Call(V::get, "/ui");
  EXPECT_EQ(second["Content-Security-Policy"].find(nonce), std::string::npos);
  EXPECT_EQ(Call(V::get, "/ui?x=1").result_int(), 400u);
  EXPECT_EQ(Call(V::post, "/ui").result_int(), 405u);
}

TEST_F(AdminApiTest, ListObjectsRejectsBadParameters) {
  for (const char* q : {"kind=bogus", "limit=-1", "limit=1001", "limit=1.5", "sort=name"}) {
    HttpResponse r = Call(V::get, std::string("/v1/objects?") + q);
    EXPECT_EQ(r.result_int(), 400u) << q;
    EXPECT_EQ(ErrorCode(r), "InvalidArgument") << q;
  }
}

TEST_F(AdminApiTest, DeleteObject) {
  Call(V::post, "/v1/counters/gone/incr");
  EXPECT_EQ(Call(V::delete_, "/v1/objects/gone").result_int(), 204u);
  EXPECT_EQ(Call(V::get, "/v1/counters/gone").result_int(), 404u);
  EXPECT_EQ(Call(V::delete_, "/v1/objects/gone").result_int(), 404u);
  EXPECT_EQ(Call(V::delete_, "/v1/objects/..").result_int(), 400u);
  EXPECT_EQ(Call(V::get, "/v1/objects/gone").result_int(), 405u);
}

TEST_F(AdminApiTest, StatsReportSegmentObjectsAndWorkers) {
  segment()->RegisterWorker(0, getpid(), 3);
  Call(V::post, "/v1/counters/x/incr");
  segment()->CountResponse(0, 200);
  segment()->CountResponse(0, 404);
  HttpResponse r = Call(V::get, "/v1/stats");
  ASSERT_EQ(r.result_int(), 200u);
  json::object body = Json(r).as_object();
  json::object seg = body["segment"].as_object();
  EXPECT_EQ(seg["size_bytes"].to_number<uint64_t>(), segment()->size());
  EXPECT_GT(seg["free_bytes"].to_number<uint64_t>(), 0u);
  // The counter's create went through this thread's writer, which keeps a blob cache.
  EXPECT_EQ(seg["cached_bytes"].to_number<uint64_t>(), segment()->cached_bytes());
  EXPECT_GT(seg["cached_bytes"].to_number<uint64_t>(), 0u);
  EXPECT_LE(seg["cached_bytes"].to_number<uint64_t>(), seg["free_bytes"].to_number<uint64_t>());
  EXPECT_EQ(seg["poisoned"].as_bool(), false);
  json::object objects = body["objects"].as_object();
  EXPECT_EQ(objects["live"].to_number<int>(), 1);
  EXPECT_EQ(objects["by_kind"].as_object()["counter"].to_number<int>(), 1);
  EXPECT_EQ(objects["by_kind"].as_object()["dict"].to_number<int>(), 0);
  json::array workers = body["workers"].as_array();
  ASSERT_EQ(workers.size(), 1u);
  json::object w = workers[0].as_object();
  EXPECT_EQ(w["pid"].to_number<int>(), getpid());
  EXPECT_EQ(w["restarts"].to_number<int>(), 3);
  EXPECT_EQ(w["requests"].to_number<int>(), 2);
  EXPECT_EQ(w["client_errors"].to_number<int>(), 1);
  EXPECT_GE(body["uptime_seconds"].to_number<int64_t>(), 0);
}

TEST_F(AdminApiTest, MetricsArePrometheusText) {
  segment()->RegisterWorker(2, 4242, 1);
  segment()->CountResponse(2, 200);
  segment()->CountResponse(2, 503);
  Call(V::post, "/v1/counters/m/incr");
  HttpResponse r = Call(V::get, "/metrics");
  ASSERT_EQ(r.result_int(), 200u);
  EXPECT_EQ(r[http::field::content_type], "text/plain; version=0.0.4");
  const std::string& text = r.body();
  EXPECT_NE(text.find("# TYPE shmstate_http_responses_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("shmstate_http_responses_total{worker=\"2\",pid=\"4242\"} 2\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("shmstate_http_server_errors_total{worker=\"2\",pid=\"4242\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("shmstate_worker_restarts_total{worker=\"2\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("shmstate_objects{kind=\"counter\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("shmstate_segment_size_bytes " + std::to_string(segment()->size())),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE shmstate_segment_cached_bytes gauge\nshmstate_segment_cached_bytes " +
                      std::to_string(segment()->cached_bytes()) + "\n"),
            std::string::npos)
      << text;
}

TEST_F(AdminApiTest, Healthz) {
  HttpResponse r = Call(V::get, "/healthz");
  EXPECT_EQ(r.result_int(), 200u);
  EXPECT_EQ(Json(r).as_object()["status"].as_string(), "ok");
  EXPECT_EQ(test::PidHeader(r), test::MyPid());
  EXPECT_EQ(Call(V::post, "/healthz").result_int(), 405u);
}

}  // namespace
}  // namespace shm
