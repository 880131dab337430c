#include "shm/registry.h"

#include <gtest/gtest.h>

#include "common/test_util.h"
#include "shm/counter.h"
#include "test_clock.h"

namespace shm {
namespace {

Counter OpenCounter(Segment* seg, std::string_view name, int64_t init = 0, int64_t ttl = 0) {
  Counter c;
  Counter::Options options{OpenMode::kCreateIfMissing, init, ttl};
  Status s = Counter::Open(seg, name, options, &c);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return c;
}

TEST(RegistryTest, ValidateName) {
  EXPECT_TRUE(ValidateName("a").ok());
  EXPECT_TRUE(ValidateName("Abc.def_ghi:jkl-0").ok());
  EXPECT_TRUE(ValidateName(std::string(200, 'x')).ok());
  EXPECT_TRUE(ValidateName("").IsInvalidArgument());
  EXPECT_TRUE(ValidateName(std::string(201, 'x')).IsInvalidArgument());
  EXPECT_TRUE(ValidateName(".hidden").IsInvalidArgument());
  EXPECT_TRUE(ValidateName("..").IsInvalidArgument());
  EXPECT_TRUE(ValidateName("a/b").IsInvalidArgument());
  EXPECT_TRUE(ValidateName("a b").IsInvalidArgument());
  EXPECT_TRUE(ValidateName("caf\xc3\xa9").IsInvalidArgument());
  EXPECT_TRUE(ValidateName(std::string("a\0b", 3)).IsInvalidArgument());
}

TEST(RegistryTest, KindNamesRoundTrip) {
  for (uint32_t i = 1; i < kObjectKindCount; ++i) {
    ObjectKind kind;
    ASSERT_TRUE(ParseKind(KindName(static_cast<ObjectKind>(i)), &kind).ok());
    EXPECT_EQ(static_cast<uint32_t>(kind), i);
  }
  ObjectKind kind;
  EXPECT_TRUE(ParseKind("table", &kind).IsInvalidArgument());
}

TEST(RegistryTest, OpenExistingMissingIsNotFound) {
  test::ScopedSegment seg;
  Counter c;
  Status s = Counter::Open(seg.get(), "nope", {}, &c);
  EXPECT_TRUE(s.IsNotFound());
  EXPECT_NE(s.message().find("no counter named 'nope'"), std::string_view::npos);
}

TEST(RegistryTest, LookupListAndDelete) {
  test::ScopedSegment seg;
  OpenCounter(seg.get(), "b:2");
  OpenCounter(seg.get(), "a:1");
  OpenCounter(seg.get(), "b:1");
  Registry& reg = seg->registry();
  EXPECT_EQ(reg.live(), 3u);

  std::vector<ObjectInfo> list;
  ASSERT_TRUE(reg.List("b:", ObjectKind::kNone, 100, "", &list).ok());
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, "b:1");
  EXPECT_EQ(list[1].name, "b:2");
  ASSERT_TRUE(reg.List("", ObjectKind::kCounter, 1, "a:1", &list).ok());
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].name, "b:1");
  ASSERT_TRUE(reg.List("", ObjectKind::kDict, 10, "", &list).ok());
  EXPECT_TRUE(list.empty());

  ObjectInfo info;
  ASSERT_TRUE(reg.Lookup("a:1", &info).ok());
  EXPECT_EQ(info.kind, ObjectKind::kCounter);
  ASSERT_TRUE(reg.Delete("a:1").ok());
  EXPECT_TRUE(reg.Lookup("a:1", &info).IsNotFound());
  EXPECT_TRUE(reg.Delete("a:1").IsNotFound());
  EXPECT_EQ(reg.live(), 2u);
  EXPECT_EQ(reg.CountByKind()[static_cast<int>(ObjectKind::kCounter)], 2u);
}

// A typed delete checks the kind and deletes in one hold of the registry lock: another kind is
// WrongType and stays, the right kind goes.
TEST(RegistryTest, TypedDeleteRefusesAnotherKindAndKeepsIt) {
  test::ScopedSegment seg;
  Counter c = OpenCounter(seg.get(), "c", 5);
  Registry& reg = seg->registry();
  Status s = reg.Delete("c", ObjectKind::kArray);
  EXPECT_TRUE(s.IsWrongType()) << s.ToString();
  EXPECT_EQ(s.message(), "'c' is a counter, not an array");
  int64_t v = 0;
  ASSERT_TRUE(c.Get(&v).ok());
  EXPECT_EQ(v, 5);
  EXPECT_TRUE(reg.Delete("absent", ObjectKind::kCounter).IsNotFound());
  ASSERT_TRUE(reg.Delete("c", ObjectKind::kCounter).ok());
  EXPECT_TRUE(c.Get(&v).IsNotFound());
  EXPECT_EQ(reg.live(), 0u);
}

TEST(RegistryTest, DeletedHandleIsStaleEvenIfTheNameIsReused) {
  test::ScopedSegment seg;
  Counter first = OpenCounter(seg.get(), "x", 5);
  ASSERT_TRUE(seg->registry().Delete("x").ok());
  int64_t v = 0;
  EXPECT_TRUE(first.Get(&v).IsNotFound());
  Counter second = OpenCounter(seg.get(), "x", 7);
  EXPECT_TRUE(first.Add(1, &v).IsNotFound());
  ASSERT_TRUE(second.Get(&v).ok());
  EXPECT_EQ(v, 7);
}

TEST(RegistryTest, FullRegistryIsOutOfSpaceAndRecoversAfterDelete) {
  test::ScopedSegment seg(4 << 20, 8);
  for (int i = 0; i < 8; ++i) OpenCounter(seg.get(), "c" + std::to_string(i));
  Counter c;
  Status s = Counter::Open(seg.get(), "c8", {OpenMode::kCreateIfMissing}, &c);
  EXPECT_TRUE(s.IsOutOfSpace()) << s.ToString();
  ASSERT_TRUE(seg->registry().Delete("c3").ok());
  EXPECT_TRUE(Counter::Open(seg.get(), "c8", {OpenMode::kCreateIfMissing}, &c).ok());
}

TEST(RegistryTest, ChurnDoesNotExhaustTheIndex) {
  test::ScopedSegment seg(4 << 20, 16);
  for (int i = 0; i < 2000; ++i) {
    std::string name = "churn" + std::to_string(i);
    OpenCounter(seg.get(), name);
    ASSERT_TRUE(seg->registry().Delete(name).ok()) << i;
  }
  EXPECT_EQ(seg->registry().live(), 0u);
  OpenCounter(seg.get(), "last");
  ObjectInfo info;
  EXPECT_TRUE(seg->registry().Lookup("last", &info).ok());
}

TEST(RegistryTest, ExpiredObjectIsGoneAndRecreated) {
  test::ScopedSegment seg;
  ScopedWallClockForTesting clock;
  constexpr int64_t kTtl = 60 * 1000;
  Counter c = OpenCounter(seg.get(), "ttl", 10, kTtl);
  int64_t v = 0;
  ASSERT_TRUE(c.Get(&v).ok());
  ObjectInfo info;
  ASSERT_TRUE(seg->registry().Lookup("ttl", &info).ok());
  clock.Advance(info.expires_at_ms - 10'000 - WallNowMs());  // A margin the real clock won't cross.
  ASSERT_TRUE(c.Get(&v).ok());
  EXPECT_EQ(v, 10);
  clock.Advance(info.expires_at_ms - WallNowMs());
  EXPECT_TRUE(c.Get(&v).IsNotFound());
  EXPECT_TRUE(c.Add(1, &v).IsNotFound());
  EXPECT_TRUE(seg->registry().Lookup("ttl", &info).IsNotFound());
  Counter again = OpenCounter(seg.get(), "ttl", 1);
  ASSERT_TRUE(again.Get(&v).ok());
  EXPECT_EQ(v, 1);
}

// ObjectRef::live is what a proxy cache asks after a NotFound: stale (deleted, re-created under
// the same name, or expired) or still the object it opened.
TEST(RegistryTest, RefIsLiveUntilDeletedOrExpired) {
  test::ScopedSegment seg;
  ScopedWallClockForTesting clock;
  EXPECT_FALSE(ObjectRef{}.live());
  Counter plain = OpenCounter(seg.get(), "plain");
  EXPECT_TRUE(plain.ref().live());
  ASSERT_TRUE(seg->registry().Delete("plain").ok());
  EXPECT_FALSE(plain.ref().live());
  Counter reborn = OpenCounter(seg.get(), "plain");
  EXPECT_TRUE(reborn.ref().live());
  EXPECT_FALSE(plain.ref().live());  // Same name, another incarnation.

  Counter ttl = OpenCounter(seg.get(), "ttl", 0, 60 * 1000);
  ObjectInfo info;
  ASSERT_TRUE(seg->registry().Lookup("ttl", &info).ok());
  clock.Advance(info.expires_at_ms - 10'000 - WallNowMs());
  EXPECT_TRUE(ttl.ref().live());
  clock.Advance(info.expires_at_ms - WallNowMs());
  EXPECT_FALSE(ttl.ref().live());
  EXPECT_TRUE(reborn.ref().live());  // Without a TTL, no clock makes it expire.
}

}  // namespace
}  // namespace shm
