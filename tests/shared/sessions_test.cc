#include "shm/sessions.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/status_assert.h"
#include "common/test_util.h"
#include "shm/dict.h"
#include "test_clock.h"

namespace shm {
namespace {

Sessions OpenSessions(Segment* seg, int64_t idle_ttl_ms = 60000) {
  Sessions sessions;
  Status s = Sessions::Open(seg, "sessions", OpenMode::kCreateIfMissing, idle_ttl_ms, &sessions);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return sessions;
}

std::string NewId() {
  std::string id;
  Status s = Sessions::NewId(&id);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return id;
}

TEST(SessionsTest, NewIdsAreHexOfFixedLengthAndDistinct) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    std::string id = NewId();
    ASSERT_EQ(id.size(), Sessions::kIdLength);
    ASSERT_TRUE(Sessions::ValidateId(id).ok());
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
  EXPECT_TRUE(Sessions::ValidateId("").IsInvalidArgument());
  EXPECT_TRUE(Sessions::ValidateId(std::string(32, 'g')).IsInvalidArgument());
  EXPECT_TRUE(Sessions::ValidateId(std::string(32, 'A')).IsInvalidArgument());
  EXPECT_TRUE(Sessions::ValidateId(std::string(31, 'a')).IsInvalidArgument());
  EXPECT_TRUE(Sessions::ValidateId("../../../../etc/passwd0123456789").IsInvalidArgument());
}

TEST(SessionsTest, PutGetIncrDelete) {
  test::ScopedSegment seg;
  Sessions sessions = OpenSessions(seg.get());
  std::string id = NewId();
  boost::json::object session;
  EXPECT_TRUE(sessions.Get(id, &session).IsNotFound());
  session["user"] = "ada";
  session["cart"] = boost::json::array{1, 2, 3};
  ASSERT_OK(sessions.Put(id, session));
  boost::json::object got;
  ASSERT_OK(sessions.Get(id, &got));
  EXPECT_EQ(got, session);
  int64_t value = 0;
  ASSERT_OK(sessions.Incr(id, "visits", 1, &value));
  EXPECT_EQ(value, 1);
  ASSERT_OK(sessions.Incr(id, "visits", 41, &value));
  EXPECT_EQ(value, 42);
  ASSERT_OK(sessions.Get(id, &got));
  EXPECT_EQ(got["visits"].as_int64(), 42);
  EXPECT_EQ(got["user"].as_string(), "ada");
  EXPECT_TRUE(sessions.Incr(id, "user", 1, &value).IsInvalidArgument());
  EXPECT_TRUE(sessions.Incr(id, "", 1, &value).IsInvalidArgument());
  ASSERT_OK(sessions.Get(id, &got));
  EXPECT_EQ(got["user"].as_string(), "ada");
  ASSERT_OK(sessions.Delete(id));
  EXPECT_TRUE(sessions.Get(id, &got).IsNotFound());
  EXPECT_TRUE(sessions.Delete(id).IsNotFound());
  // Incr creates a missing session.
  std::string other = NewId();
  ASSERT_OK(sessions.Incr(other, "n", -3, &value));
  EXPECT_EQ(value, -3);
  EXPECT_TRUE(sessions.Get("not-an-id", &got).IsInvalidArgument());
  EXPECT_TRUE(sessions.Put("not-an-id", session).IsInvalidArgument());
}

TEST(SessionsTest, LimitsAndOverflow) {
  test::ScopedSegment seg;
  Sessions sessions = OpenSessions(seg.get());
  std::string id = NewId();
  boost::json::object big;
  big["blob"] = std::string(Sessions::kMaxSessionBytes, 'x');
  EXPECT_TRUE(sessions.Put(id, big).IsInvalidArgument());
  boost::json::object got;
  EXPECT_TRUE(sessions.Get(id, &got).IsNotFound());
  boost::json::object session;
  session["n"] = INT64_MAX;
  ASSERT_OK(sessions.Put(id, session));
  int64_t value = 0;
  EXPECT_TRUE(sessions.Incr(id, "n", 1, &value).IsInvalidArgument());
  ASSERT_OK(sessions.Get(id, &got));
  EXPECT_EQ(got["n"].as_int64(), INT64_MAX);
  Sessions bad;
  EXPECT_TRUE(
      Sessions::Open(seg.get(), "x", OpenMode::kCreateIfMissing, 0, &bad).IsInvalidArgument());
}

TEST(SessionsTest, ExistingObjectKeepsItsIdleTimeoutAndKind) {
  test::ScopedSegment seg;
  Sessions first = OpenSessions(seg.get(), 1234);
  EXPECT_EQ(first.idle_ttl_ms(), 1234);
  Sessions second;
  ASSERT_OK(Sessions::Open(seg.get(), "sessions", OpenMode::kOpenExisting, 99999, &second));
  EXPECT_EQ(second.idle_ttl_ms(), 1234);
  Dict dict;
  ASSERT_OK(Dict::Open(seg.get(), "plain", OpenMode::kCreateIfMissing, {}, &dict));
  EXPECT_TRUE(
      Sessions::Open(seg.get(), "plain", OpenMode::kCreateIfMissing, 1000, &second).IsWrongType());
}

// Reads and writes push the expiry back; once idle for the timeout, the session is gone.
TEST(SessionsTest, IdleSessionsExpireAndActivityKeepsThemAlive) {
  test::ScopedSegment seg;
  ScopedWallClockForTesting clock;
  constexpr int64_t kIdle = 60 * 1000;
  Sessions sessions = OpenSessions(seg.get(), kIdle);
  std::string id = NewId();
  boost::json::object session;
  session["a"] = 1;
  ASSERT_OK(sessions.Put(id, session));
  // In use for 3 idle periods: each read, three quarters of the timeout after the last use,
  // pushes the expiry back (the quarter left is a margin the real clock cannot cross meanwhile).
  boost::json::object got;
  for (int i = 0; i < 4; ++i) {
    clock.Advance(kIdle * 3 / 4);
    SCOPED_TRACE(i);
    ASSERT_OK(sessions.Get(id, &got));
  }
  EXPECT_EQ(got.at("a").as_int64(), 1);
  // A write pushes it back too.
  clock.Advance(kIdle * 3 / 4);
  int64_t visits = 0;
  ASSERT_OK(sessions.Incr(id, "visits", 1, &visits));
  clock.Advance(kIdle * 3 / 4);
  ASSERT_OK(sessions.Get(id, &got));
  // Then idle for the whole timeout: gone.
  clock.Advance(kIdle);
  EXPECT_TRUE(sessions.Get(id, &got).IsNotFound());
}

// Field writes are read-modify-writes under the lock: processes writing different fields of one
// session at once all land, and an erase removes exactly its field.
TEST(SessionsTest, ConcurrentFieldWritesFromProcessesAllLand) {
  test::ScopedSegment seg;
  Sessions sessions = OpenSessions(seg.get());
  std::string id = NewId();
  constexpr int kProcesses = 4, kFields = 50;
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    children.push_back(test::ForkChild([&, p] {
      for (int f = 0; f < kFields; ++f) {
        std::string field = "p" + std::to_string(p) + "-f" + std::to_string(f);
        if (!sessions.SetField(id, field, boost::json::value(p * 1000 + f)).ok()) return 1;
      }
      return 0;
    }));
  }
  for (pid_t pid : children) {
    test::ChildExit exit = test::WaitChild(pid);
    EXPECT_TRUE(exit.exited && exit.code == 0) << exit.code;
  }
  boost::json::object got;
  ASSERT_OK(sessions.Get(id, &got));
  ASSERT_EQ(got.size(), size_t{kProcesses * kFields});
  for (int p = 0; p < kProcesses; ++p) {
    for (int f = 0; f < kFields; ++f) {
      std::string field = "p" + std::to_string(p) + "-f" + std::to_string(f);
      ASSERT_TRUE(got.contains(field)) << field;
      EXPECT_EQ(got.at(field).as_int64(), p * 1000 + f);
    }
  }
  ASSERT_OK(sessions.EraseField(id, "p0-f0"));
  EXPECT_TRUE(sessions.EraseField(id, "p0-f0").IsNotFound());
  EXPECT_TRUE(sessions.EraseField(NewId(), "p0-f0").IsNotFound());
  EXPECT_TRUE(sessions.SetField(id, "", boost::json::value(1)).IsInvalidArgument());
  std::string big(Sessions::kMaxSessionBytes, 'x');
  EXPECT_TRUE(sessions.SetField(id, "big", boost::json::value(big)).IsInvalidArgument());
  ASSERT_OK(sessions.Get(id, &got));
  EXPECT_EQ(got.size(), size_t{kProcesses * kFields - 1});
  EXPECT_FALSE(got.contains("big"));
}

// 4 forked processes increment the same session field: no increment is lost.
TEST(SessionsTest, ForkedIncrementsAreExact) {
  test::ScopedSegment seg;
  Sessions sessions = OpenSessions(seg.get());
  std::string id = NewId();
  constexpr int kProcesses = 4;
  constexpr int kIncrements = 1000;
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    children.push_back(test::ForkChild([&] {
      int64_t value = 0;
      for (int i = 0; i < kIncrements; ++i) {
        if (!sessions.Incr(id, "hits", 1, &value).ok()) return 1;
        if (!sessions.Incr(id, "other", 2, &value).ok()) return 2;
      }
      return 0;
    }));
  }
  for (pid_t pid : children) {
    test::ChildExit exit = test::WaitChild(pid);
    EXPECT_TRUE(exit.exited && exit.code == 0) << exit.code << " signal " << exit.signal;
  }
  boost::json::object got;
  ASSERT_OK(sessions.Get(id, &got));
  EXPECT_EQ(got["hits"].as_int64(), kProcesses * kIncrements);
  EXPECT_EQ(got["other"].as_int64(), 2 * kProcesses * kIncrements);
}

}  // namespace
}  // namespace shm
