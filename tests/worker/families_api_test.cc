// Dict, list, lock and session routes through Router::Handle (no sockets).
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "api_test_util.h"
#include "shm/list.h"

namespace shm {
namespace {

namespace json = boost::json;
using test::ErrorCode;
using test::Json;
using test::ValueOf;
using V = http::verb;

class FamiliesApiTest : public testing::Test, public test::ApiFixture {};

TEST_F(FamiliesApiTest, DictPutGetKeepsContentTypeAndETag) {
  HttpResponse put = Call(V::put, "/v1/dicts/d/k%2F1", "hello", {{"Content-Type", "text/x-a"}});
  ASSERT_EQ(put.result_int(), 200u) << put.body();
  std::string etag(put[http::field::etag]);
  EXPECT_EQ(etag, "\"" + std::to_string(Json(put).at("version").to_number<uint64_t>()) + "\"");
  EXPECT_EQ(put.body(), "{\"version\":" + etag.substr(1, etag.size() - 2) + "}");
  EXPECT_EQ(put[http::field::content_type], "application/json");
  HttpResponse get = Call(V::get, "/v1/dicts/d/k%2F1");
  ASSERT_EQ(get.result_int(), 200u);
  EXPECT_EQ(get.body(), "hello");
  EXPECT_EQ(get[http::field::content_type], "text/x-a");
  EXPECT_EQ(get[http::field::etag], etag);
  EXPECT_EQ(Call(V::get, "/v1/dicts/d/k%2F1", "", {{"If-None-Match", etag}}).result_int(), 304u);
  EXPECT_EQ(Call(V::get, "/v1/dicts/d/other").result_int(), 404u);
  EXPECT_EQ(Call(V::get, "/v1/dicts/nodict/k").result_int(), 404u);
}

TEST_F(FamiliesApiTest, DictModesAndIfMatch) {
  EXPECT_EQ(Call(V::put, "/v1/dicts/d/k?mode=replace", "x").result_int(), 404u);
  ASSERT_EQ(Call(V::put, "/v1/dicts/d/k?mode=add", "v1").result_int(), 200u);
  HttpResponse again = Call(V::put, "/v1/dicts/d/k?mode=add", "v2");
  EXPECT_EQ(again.result_int(), 409u);
  EXPECT_EQ(ErrorCode(again), "AlreadyExists");
  std::string etag(Call(V::get, "/v1/dicts/d/k")[http::field::etag]);
  HttpResponse stale = Call(V::put, "/v1/dicts/d/k", "v3", {{"If-Match", "\"999999\""}});
  EXPECT_EQ(stale.result_int(), 412u);
  EXPECT_EQ(ErrorCode(stale), "Conflict");
  EXPECT_EQ(Call(V::get, "/v1/dicts/d/k").body(), "v1");
  EXPECT_EQ(Call(V::put, "/v1/dicts/d/k", "v4", {{"If-Match", etag}}).result_int(), 200u);
  EXPECT_EQ(Call(V::get, "/v1/dicts/d/k").body(), "v4");
  EXPECT_EQ(Call(V::delete_, "/v1/dicts/d/k", "", {{"If-Match", etag}}).result_int(), 412u);
  EXPECT_EQ(Call(V::delete_, "/v1/dicts/d/k").result_int(), 204u);
  EXPECT_EQ(Call(V::delete_, "/v1/dicts/d/k").result_int(), 404u);
  for (const char* q : {"mode=upsert", "ttl=x", "ttl=1.5555", "foo=1"}) {
    EXPECT_EQ(Call(V::put, std::string("/v1/dicts/d/k?") + q, "v").result_int(), 400u) << q;
  }
  EXPECT_EQ(Call(V::put, "/v1/dicts/d/k", "v", {{"If-Match", "1\""}}).result_int(), 400u);
}

TEST_F(FamiliesApiTest, DictListingPagesWithCursor) {
  for (int i = 0; i < 25; ++i) {
    Call(V::put, "/v1/dicts/d/a" + std::to_string(i), "v");
  }
  Call(V::put, "/v1/dicts/d/b0", "v");
  std::set<std::string> seen;
  std::string cursor = "0";
  for (int page = 0; page < 100; ++page) {
    HttpResponse r = Call(V::get, "/v1/dicts/d?prefix=a&limit=7&cursor=" + cursor);
    ASSERT_EQ(r.result_int(), 200u) << r.body();
    json::object body = Json(r).as_object();
    for (auto& key : body["keys"].as_array()) seen.insert(std::string(key.as_string()));
    cursor = body["cursor"].as_string();
    if (cursor == "0") break;
  }
  EXPECT_EQ(cursor, "0");
  EXPECT_EQ(seen.size(), 25u);
  EXPECT_EQ(seen.count("b0"), 0u);
  EXPECT_EQ(Call(V::get, "/v1/dicts/d?limit=0").result_int(), 400u);
  EXPECT_EQ(Call(V::get, "/v1/dicts/d?cursor=-1").result_int(), 400u);
  EXPECT_EQ(Call(V::get, "/v1/dicts/none").result_int(), 404u);
}

TEST_F(FamiliesApiTest, DictCreateWithOptions) {
  HttpResponse r = Call(V::post, "/v1/dicts/cache",
                        R"({"max_bytes": 100000, "eviction": "clock", "default_ttl": 60})");
  ASSERT_EQ(r.result_int(), 201u) << r.body();
  EXPECT_EQ(Call(V::post, "/v1/dicts/cache", "{}").result_int(), 409u);
  EXPECT_EQ(Call(V::post, "/v1/dicts/x", R"({"eviction": "lru"})").result_int(), 400u);
  EXPECT_EQ(Call(V::post, "/v1/dicts/x", R"({"max_bytes": -1})").result_int(), 400u);
  EXPECT_EQ(Call(V::post, "/v1/dicts/x", R"({"colour": 1})").result_int(), 400u);
  ObjectInfo info;
  EXPECT_TRUE(segment()->registry().Lookup("x", &info).IsNotFound());
}

TEST_F(FamiliesApiTest, OneNamespaceAcrossKinds) {
  Call(V::post, "/v1/counters/n/incr");
  HttpResponse r = Call(V::put, "/v1/dicts/n/k", "v");
  EXPECT_EQ(r.result_int(), 409u);
  EXPECT_EQ(ErrorCode(r), "WrongType");
  EXPECT_EQ(Call(V::post, "/v1/lists/n/push", "v").result_int(), 409u);
  EXPECT_EQ(Call(V::post, "/v1/locks/n/acquire").result_int(), 409u);
  EXPECT_EQ(ValueOf(Call(V::get, "/v1/counters/n")), 1);
}

TEST_F(FamiliesApiTest, ListPushPopRange) {
  EXPECT_EQ(Json(Call(V::post, "/v1/lists/q/push", "a")).at("length").to_number<uint64_t>(), 1u);
  EXPECT_EQ(Json(Call(V::post, "/v1/lists/q/push", "b")).at("length").to_number<uint64_t>(), 2u);
  EXPECT_EQ(
      Json(Call(V::post, "/v1/lists/q/push?end=left", "z")).at("length").to_number<uint64_t>(), 3u);
  EXPECT_EQ(Json(Call(V::get, "/v1/lists/q")).at("length").to_number<uint64_t>(), 3u);
  HttpResponse all = Call(V::get, "/v1/lists/q/items");
  ASSERT_EQ(all.result_int(), 200u);
  EXPECT_EQ(json::serialize(Json(all).at("items")), R"(["z","a","b"])");
  HttpResponse tail = Call(V::get, "/v1/lists/q/items?start=-2&stop=-1");
  EXPECT_EQ(json::serialize(Json(tail).at("items")), R"(["a","b"])");
  HttpResponse pop = Call(V::post, "/v1/lists/q/pop");
  EXPECT_EQ(pop.result_int(), 200u);
  EXPECT_EQ(pop.body(), "z");
  EXPECT_EQ(Call(V::post, "/v1/lists/q/pop?end=right").body(), "b");
  EXPECT_EQ(Call(V::post, "/v1/lists/q/pop").body(), "a");
  EXPECT_EQ(Call(V::post, "/v1/lists/q/pop").result_int(), 204u);
  EXPECT_EQ(Call(V::post, "/v1/lists/q/pop?wait=0.3").result_int(), 204u);
  EXPECT_EQ(Call(V::post, "/v1/lists/missing/pop").result_int(), 204u);
  EXPECT_EQ(Call(V::get, "/v1/lists/missing").result_int(), 404u);
  for (const char* q : {"end=middle", "wait=31", "wait=-1", "wait=x"}) {
    EXPECT_EQ(Call(V::post, std::string("/v1/lists/q/pop?") + q).result_int(), 400u) << q;
  }
}

TEST_F(FamiliesApiTest, ListItemsNeedBase64WhenNotUtf8) {
  Call(V::post, "/v1/lists/bin/push", std::string("\xff\x00\x01", 3));
  HttpResponse r = Call(V::get, "/v1/lists/bin/items");
  EXPECT_EQ(r.result_int(), 400u);
  EXPECT_EQ(ErrorCode(r), "InvalidArgument");
  HttpResponse b = Call(V::get, "/v1/lists/bin/items?encoding=base64");
  ASSERT_EQ(b.result_int(), 200u);
  EXPECT_EQ(json::serialize(Json(b).at("items")), R"(["/wAB"])");
  EXPECT_EQ(Call(V::get, "/v1/lists/bin/items?encoding=hex").result_int(), 400u);
  EXPECT_EQ(Call(V::get, "/v1/lists/bin/items?start=0.5").result_int(), 400u);
}

TEST_F(FamiliesApiTest, LockAcquireReleaseRefresh) {
  HttpResponse a = Call(V::post, "/v1/locks/L/acquire?ttl=10&owner=me");
  ASSERT_EQ(a.result_int(), 200u) << a.body();
  std::string token(Json(a).at("token").as_string());
  HttpResponse busy = Call(V::post, "/v1/locks/L/acquire?ttl=10&wait=0.3");
  EXPECT_EQ(busy.result_int(), 409u);
  EXPECT_EQ(ErrorCode(busy), "Conflict");
  json::object info = Json(Call(V::get, "/v1/locks/L")).as_object();
  EXPECT_TRUE(info["held"].as_bool());
  EXPECT_EQ(info["owner"].as_string(), "me");
  std::string body = R"({"token":")" + token + R"("})";
  EXPECT_EQ(Call(V::post, "/v1/locks/L/refresh?ttl=20", body).result_int(), 200u);
  EXPECT_EQ(Call(V::post, "/v1/locks/L/release", R"({"token":"12345"})").result_int(), 409u);
  EXPECT_EQ(Call(V::post, "/v1/locks/L/release", R"({"token":12345})").result_int(), 400u);
  EXPECT_EQ(Call(V::post, "/v1/locks/L/release", "{}").result_int(), 400u);
  EXPECT_EQ(Call(V::post, "/v1/locks/L/release", body).result_int(), 204u);
  EXPECT_EQ(Call(V::post, "/v1/locks/L/release", body).result_int(), 409u);
  EXPECT_EQ(Call(V::post, "/v1/locks/L/acquire").result_int(), 200u);
  EXPECT_EQ(Call(V::post, "/v1/locks/none/release", body).result_int(), 404u);
  EXPECT_EQ(Call(V::post, "/v1/locks/L/acquire?ttl=0").result_int(), 400u);
  EXPECT_EQ(Call(V::post, "/v1/locks/L/acquire?ttl=86401").result_int(), 400u);
}

// A waiting acquire gets the lock once the holder's lease runs out.
TEST_F(FamiliesApiTest, LockWaitOutlastsShortLease) {
  ASSERT_EQ(Call(V::post, "/v1/locks/W/acquire?ttl=0.2").result_int(), 200u);
  EXPECT_EQ(Call(V::post, "/v1/locks/W/acquire?ttl=5&wait=5").result_int(), 200u);
}

TEST_F(FamiliesApiTest, SessionCookieLifecycle) {
  EXPECT_EQ(Call(V::get, "/v1/session/cart").result_int(), 404u);
  HttpResponse put = Call(V::put, "/v1/session/cart", R"({"value": [1, 2]})");
  ASSERT_EQ(put.result_int(), 200u) << put.body();
  std::string cookie(put[http::field::set_cookie]);
  ASSERT_EQ(cookie.rfind("shmsid=", 0), 0u) << cookie;
  EXPECT_NE(cookie.find("HttpOnly"), std::string::npos);
  EXPECT_NE(cookie.find("SameSite=Lax"), std::string::npos);
  std::string sid = cookie.substr(0, cookie.find(';'));
  std::vector<std::pair<std::string, std::string>> with = {{"Cookie", "a=b; " + sid}};
  HttpResponse get = Call(V::get, "/v1/session/cart", "", with);
  ASSERT_EQ(get.result_int(), 200u);
  EXPECT_EQ(json::serialize(Json(get).at("value")), "[1,2]");
  EXPECT_EQ(get.count(http::field::set_cookie), 0u);
  EXPECT_EQ(ValueOf(Call(V::post, "/v1/session/n/incr?by=3", "", with)), 3);
  EXPECT_EQ(ValueOf(Call(V::post, "/v1/session/n/incr", "", with)), 4);
  EXPECT_EQ(Call(V::delete_, "/v1/session/cart", "", with).result_int(), 204u);
  EXPECT_EQ(Call(V::get, "/v1/session/cart", "", with).result_int(), 404u);
  EXPECT_EQ(ValueOf(Call(V::get, "/v1/session/n", "", with)), 4);
  // Another client (no cookie) does not see it; a planted id is replaced by a fresh one.
  EXPECT_EQ(Call(V::get, "/v1/session/n").result_int(), 404u);
  std::string planted = "shmsid=" + std::string(32, 'a');
  HttpResponse fresh = Call(V::post, "/v1/session/n/incr", "", {{"Cookie", planted}});
  EXPECT_EQ(ValueOf(fresh), 1);
  EXPECT_EQ(std::string(fresh[http::field::set_cookie]).find(std::string(32, 'a')),
            std::string::npos);
  EXPECT_EQ(Call(V::put, "/v1/session/k", R"({"v": 1})").result_int(), 400u);
  EXPECT_EQ(Call(V::post, "/v1/session/n/incr?by=x", "", with).result_int(), 400u);
}

}  // namespace
}  // namespace shm
