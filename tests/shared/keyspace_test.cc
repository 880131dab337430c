// Keyspace: one typed entry per key, type checks and commits under one lock, aggregates removed
// with their last element, expiry of every type, background expiry, and processes racing two
// types for one key.
#include "shm/keyspace.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "common/status_assert.h"
#include "common/test_util.h"
#include "dict_rep.h"
#include "segment_impl.h"
#include "shm/block_lines.h"
#include "shm/integer.h"
#include "shm/limits.h"
#include "shm/registry.h"
#include "shm/snapshot.h"
#include "shm/transaction.h"
#include "shm/wake_word.h"
#include "test_clock.h"

namespace shm {
namespace {

using Access = Keyspace::Access;

Keyspace Open(Segment* seg, int db = 0) {
  Keyspace ks;
  Status s = Keyspace::Open(seg, db, &ks);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return ks;
}

KeyType TypeOf(const Keyspace& ks, std::string_view key) {
  KeyType type = KeyType::kNone;
  Status s = ks.Type(key, &type);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return type;
}

Status Push(Keyspace& ks, std::string_view key, std::string_view item) {
  return ks.WithList(key, Access::kCreate,
                     [&](List& list) { return list.Push(List::End::kRight, item); });
}

Status PopLeft(Keyspace& ks, std::string_view key, std::string* item) {
  return ks.WithList(key, Access::kWrite, [&](List& list) {
    bool got = false;
    SHM_RETURN_IF_ERROR(list.Pop(List::End::kLeft, std::chrono::milliseconds(0), item, &got));
    return got ? Status::OK() : Status::NotFound("empty");
  });
}

Status HSet(Keyspace& ks, std::string_view key, std::string_view field, std::string_view value) {
  return ks.WithHash(key, Access::kCreate,
                     [&](Dict& hash) { return hash.Set(field, value, SetOptions()); });
}

Status Set(Keyspace& ks, std::string_view key, std::string_view value,
           StringSet::Cond cond = StringSet::Cond::kAlways, bool* written = nullptr) {
  StringSet options;
  options.cond = cond;
  StringSetResult result;
  Status s = ks.Set(key, value, options, &result);
  if (written != nullptr) *written = result.written;
  return s;
}

// Registry objects that are aggregates of database 0's keys.
size_t Aggregates(Segment* seg) {
  std::vector<ObjectInfo> objects;
  EXPECT_TRUE(seg->registry().List("redis:0:", ObjectKind::kNone, 1000, "", &objects).ok());
  return objects.size();
}

TEST(KeyspaceTest, StringsIncludingTheEmptyKey) {
  test::ScopedSegment seg;
  Keyspace ks = Open(seg.get());
  ASSERT_OK(Set(ks, "", "empty key"));
  ASSERT_OK(Set(ks, "k", ""));
  std::string value;
  ASSERT_OK(ks.Get("", &value));
  EXPECT_EQ(value, "empty key");
  ASSERT_OK(ks.Get("k", &value));
  EXPECT_EQ(value, "");
  EXPECT_EQ(TypeOf(ks, ""), KeyType::kString);
  EXPECT_TRUE(ks.Get("missing", &value).IsNotFound());
  EXPECT_EQ(TypeOf(ks, "missing"), KeyType::kNone);
  uint64_t count = 0;
  ASSERT_OK(ks.Count(&count));
  EXPECT_EQ(count, 2u);
}

TEST(KeyspaceTest, SetReplacesAHashOrListUnlessItsConditionSaysNo) {
  test::ScopedSegment seg;
  Keyspace ks = Open(seg.get());
  ASSERT_OK(HSet(ks, "hx", "f", "v"));
  bool written = false;
  // SET hx s XX: the key exists (as a hash), so Redis replaces it.
  ASSERT_OK(Set(ks, "hx", "s", StringSet::Cond::kIfPresent, &written));
  EXPECT_TRUE(written);
  EXPECT_EQ(TypeOf(ks, "hx"), KeyType::kString);
  EXPECT_EQ(Aggregates(seg.get()), 0u);  // The hash went with it.
  // SET lx v NX on a list: not written, and the list is untouched.
  ASSERT_OK(Push(ks, "lx", "a"));
  ASSERT_OK(Set(ks, "lx", "v", StringSet::Cond::kIfAbsent, &written));
  EXPECT_FALSE(written);
  EXPECT_EQ(TypeOf(ks, "lx"), KeyType::kList);
  std::string item;
  ASSERT_OK(PopLeft(ks, "lx", &item));
  EXPECT_EQ(item, "a");
}

TEST(KeyspaceTest, SetGetOnAnotherTypeIsWrongTypeAndChangesNothing) {
  test::ScopedSegment seg;
  Keyspace ks = Open(seg.get());
  ASSERT_OK(Push(ks, "l", "a"));
  StringSet options;
  options.get = true;
  StringSetResult result;
  EXPECT_TRUE(ks.Set("l", "v", options, &result).IsWrongType());
  EXPECT_EQ(TypeOf(ks, "l"), KeyType::kList);
}

TEST(KeyspaceTest, ListsAndHashesGoWithTheirLastElement) {
  test::ScopedSegment seg;
  Keyspace ks = Open(seg.get());
  ASSERT_OK(Push(ks, "q", "a"));
  EXPECT_EQ(Aggregates(seg.get()), 1u);
  std::string item;
  ASSERT_OK(PopLeft(ks, "q", &item));
  EXPECT_EQ(TypeOf(ks, "q"), KeyType::kNone);
  EXPECT_EQ(Aggregates(seg.get()), 0u);
  std::string value;
  EXPECT_TRUE(ks.Get("q", &value).IsNotFound());  // Not WRONGTYPE.
  int64_t n = 0;
  ASSERT_OK(ks.IncrBy("q", 1, &n));
  EXPECT_EQ(n, 1);
  EXPECT_TRUE(PopLeft(ks, "absent", &item).IsNotFound());

  ASSERT_OK(HSet(ks, "h", "f", "v"));
  ASSERT_OK(ks.WithHash("h", Access::kWrite, [](Dict& hash) { return hash.Delete("f"); }));
  EXPECT_EQ(TypeOf(ks, "h"), KeyType::kNone);
  EXPECT_EQ(Aggregates(seg.get()), 0u);
  uint64_t count = 0;
  ASSERT_OK(ks.Count(&count));
  EXPECT_EQ(count, 1u);  // "q", the counter.
}

TEST(KeyspaceTest, AFailedFirstWriteCreatesNothing) {
  test::ScopedSegment seg;
  Keyspace ks = Open(seg.get());
  Status s =
      ks.WithHash("h", Access::kCreate, [](Dict&) { return Status::InvalidArgument("refused"); });
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_EQ(TypeOf(ks, "h"), KeyType::kNone);
  EXPECT_EQ(Aggregates(seg.get()), 0u);
}

TEST(KeyspaceTest, TypeChecksComeFirst) {
  test::ScopedSegment seg;
  Keyspace ks = Open(seg.get());
  ASSERT_OK(Push(ks, "l", "a"));
  ASSERT_OK(HSet(ks, "h", "f", "v"));
  ASSERT_OK(Set(ks, "s", "abc"));
  std::string value;
  int64_t n = 0;
  EXPECT_TRUE(ks.Get("l", &value).IsWrongType());
  EXPECT_TRUE(ks.IncrBy("h", 1, &n).IsWrongType());
  EXPECT_TRUE(ks.WithHash("l", Access::kCreate, [](Dict&) { return Status::OK(); }).IsWrongType());
  EXPECT_TRUE(Push(ks, "s", "x").IsWrongType());
  EXPECT_TRUE(Push(ks, "h", "x").IsWrongType());
  EXPECT_EQ(Aggregates(seg.get()), 2u);
}

TEST(KeyspaceTest, IncrByIsRedisStrictWithOneOverflowRule) {
  test::ScopedSegment seg;
  Keyspace ks = Open(seg.get());
  int64_t n = 0;
  for (const char* bad : {"01", "+1", " 1", "1.5", "-0", "", "9223372036854775808"}) {
    ASSERT_OK(Set(ks, "k", bad));
    Status s = ks.IncrBy("k", 1, &n);
    EXPECT_TRUE(s.IsInvalidArgument()) << bad;
    EXPECT_EQ(s.message(), "value is not an integer or out of range") << bad;
  }
  ASSERT_OK(Set(ks, "k", "9223372036854775806"));
  ASSERT_OK(ks.IncrBy("k", 1, &n));
  EXPECT_EQ(n, INT64_MAX);
  Status s = ks.IncrBy("k", 1, &n);
  EXPECT_EQ(s.message(), "increment or decrement would overflow");
  std::string value;
  ASSERT_OK(ks.Get("k", &value));
  EXPECT_EQ(value, "9223372036854775807");
  ASSERT_OK(Set(ks, "m", "-9223372036854775808"));
  ASSERT_OK(ks.IncrBy("m", 0, &n));
  EXPECT_EQ(n, INT64_MIN);
}

// INCR keeps the key's expiry (as Redis does), counts an absent key from 0, and changes nothing
// when it refuses.
TEST(KeyspaceTest, IncrByKeepsTheExpiryAndRefusesWithoutWriting) {
  test::ScopedSegment seg;
  Keyspace ks = Open(seg.get());
  int64_t n = 0;
  ASSERT_OK(ks.IncrBy("fresh", 5, &n));
  EXPECT_EQ(n, 5);
  std::string value;
  int64_t expires_at_ms = -1;
  ASSERT_OK(ks.Get("fresh", &value, &expires_at_ms));
  EXPECT_EQ(value, "5");
  EXPECT_EQ(expires_at_ms, 0);
  const int64_t later = WallNowMs() + 3'600'000;
  bool applied = false;
  ASSERT_OK(ks.Expire("fresh", later, ExpireIf::kAlways, &applied));
  ASSERT_TRUE(applied);
  ASSERT_OK(ks.IncrBy("fresh", -7, &n));
  EXPECT_EQ(n, -2);
  ASSERT_OK(ks.Get("fresh", &value, &expires_at_ms));
  EXPECT_EQ(value, "-2");
  EXPECT_EQ(expires_at_ms, later);
  ASSERT_OK(Set(ks, "text", "abc"));
  EXPECT_TRUE(ks.IncrBy("text", 1, &n).IsInvalidArgument());
  ASSERT_OK(ks.Get("text", &value));
  EXPECT_EQ(value, "abc");
}

TEST(IntegerTest, StrictAndDecimalSyntax) {
  int64_t v = 0;
  EXPECT_TRUE(ParseInt64("007", &v, IntSyntax::kDecimal));
  EXPECT_EQ(v, 7);
  EXPECT_FALSE(ParseInt64("007", &v, IntSyntax::kRedisStrict));
  EXPECT_TRUE(ParseInt64("0", &v, IntSyntax::kRedisStrict));
  EXPECT_TRUE(ParseInt64("-12", &v, IntSyntax::kRedisStrict));
  EXPECT_EQ(v, -12);
  EXPECT_FALSE(ParseInt64("-", &v, IntSyntax::kRedisStrict));
  EXPECT_FALSE(ParseInt64("1e3", &v));
  int64_t sum = 5;
  EXPECT_FALSE(AddInt64(INT64_MIN, -1, &sum));
  EXPECT_EQ(sum, 5);
}

TEST(KeyspaceTest, EveryTypeExpiresPersistsAndRenames) {
  test::ScopedSegment seg;
  ScopedWallClockForTesting clock;
  Keyspace ks = Open(seg.get());
  ASSERT_OK(Set(ks, "s", "v"));
  ASSERT_OK(Push(ks, "l", "a"));
  ASSERT_OK(HSet(ks, "h", "f", "v"));
  const int64_t later = WallNowMs() + 10'000;
  for (const char* key : {"s", "l", "h"}) {
    bool applied = false;
    ASSERT_OK(ks.Expire(key, later, ExpireIf::kAlways, &applied));
    EXPECT_TRUE(applied) << key;
    int64_t at = 0;
    ASSERT_OK(ks.ExpiryOf(key, &at));
    EXPECT_EQ(at, later);
  }
  bool removed = false;
  ASSERT_OK(ks.Persist("h", &removed));
  EXPECT_TRUE(removed);
  bool renamed = false;
  ASSERT_OK(ks.Rename("l", "l2", false, &renamed));
  EXPECT_TRUE(renamed);
  EXPECT_EQ(TypeOf(ks, "l"), KeyType::kNone);
  EXPECT_EQ(TypeOf(ks, "l2"), KeyType::kList);
  int64_t at = 0;
  ASSERT_OK(ks.ExpiryOf("l2", &at));
  EXPECT_EQ(at, later);                            // The expiry moves with the key.
  ASSERT_OK(ks.Rename("s", "h", true, &renamed));  // RENAMENX onto an existing key.
  EXPECT_FALSE(renamed);
  ASSERT_OK(ks.Rename("s", "h", false, &renamed));  // RENAME replaces the hash.
  EXPECT_EQ(TypeOf(ks, "h"), KeyType::kString);
  EXPECT_EQ(Aggregates(seg.get()), 1u);  // Only l2's list.

  clock.Advance(10'001);
  EXPECT_EQ(TypeOf(ks, "l2"), KeyType::kNone);
  EXPECT_EQ(TypeOf(ks, "h"), KeyType::kNone);
  std::string item;
  EXPECT_TRUE(PopLeft(ks, "l2", &item).IsNotFound());
}

// A list another front end emptied (its registry object popped directly, not through the key)
// is no key: RENAME of it says no such key, and RENAMENX onto it renames (Redis has no key there).
TEST(KeyspaceTest, RenameSeesAListEmptiedElsewhereAsNoKey) {
  test::ScopedSegment seg;
  Keyspace ks = Open(seg.get());
  ASSERT_OK(Push(ks, "drained", "a"));
  ASSERT_OK(Push(ks, "target", "b"));
  ASSERT_OK(Set(ks, "s", "v"));
  std::vector<ObjectInfo> lists;
  ASSERT_OK(seg->registry().List("redis:0:", ObjectKind::kList, 1000, "", &lists));
  ASSERT_EQ(lists.size(), 2u);
  for (const ObjectInfo& info : lists) {  // Both lists emptied behind the keyspace's back.
    List list;
    ASSERT_OK(List::Open(seg.get(), info.name, OpenMode::kOpenExisting, ListOptions(), &list));
    std::string item;
    bool got = false;
    ASSERT_OK(list.Pop(List::End::kLeft, std::chrono::milliseconds(0), &item, &got));
    ASSERT_TRUE(got);
  }
  bool renamed = true;
  EXPECT_TRUE(ks.Rename("drained", "elsewhere", false, &renamed).IsNotFound());
  EXPECT_FALSE(renamed);
  EXPECT_EQ(TypeOf(ks, "elsewhere"), KeyType::kNone);
  ASSERT_OK(ks.Rename("s", "target", true, &renamed));
  EXPECT_TRUE(renamed);
  EXPECT_EQ(TypeOf(ks, "target"), KeyType::kString);
  EXPECT_EQ(Aggregates(seg.get()), 0u);  // Both dead lists went with their entries.
}

TEST(KeyspaceTest, ExpireConditionsAndTimesRedisAllows) {
  test::ScopedSegment seg;
  Keyspace ks = Open(seg.get());
  ASSERT_OK(Push(ks, "l", "a"));
  bool applied = false;
  ASSERT_OK(ks.Expire("l", WallNowMs() + 5000, ExpireIf::kXx, &applied));
  EXPECT_FALSE(applied);  // XX: no expiry yet.
  ASSERT_OK(ks.Expire("l", WallNowMs() + 5000, ExpireIf::kGt, &applied));
  EXPECT_FALSE(applied);  // GT: none counts as infinitely late.
  ASSERT_OK(ks.Expire("l", WallNowMs() + 5000, ExpireIf::kNx, &applied));
  EXPECT_TRUE(applied);
  ASSERT_OK(ks.Expire("l", WallNowMs() + 9000, ExpireIf::kLt, &applied));
  EXPECT_FALSE(applied);
  // An absolute time after 2069 (no 100-year cap on an absolute time).
  const int64_t far = int64_t{3153600001} * 1000;
  ASSERT_OK(ks.Expire("l", far, ExpireIf::kGt, &applied));
  EXPECT_TRUE(applied);
  int64_t at = 0;
  ASSERT_OK(ks.ExpiryOf("l", &at));
  EXPECT_EQ(at, far);
  // A time in the past (negative included) deletes the key and its list.
  ASSERT_OK(ks.Expire("l", -9223372036854770000, ExpireIf::kAlways, &applied));
  EXPECT_TRUE(applied);
  EXPECT_EQ(TypeOf(ks, "l"), KeyType::kNone);
  EXPECT_EQ(Aggregates(seg.get()), 0u);
  ASSERT_OK(ks.Expire("l", far, ExpireIf::kAlways, &applied));
  EXPECT_FALSE(applied);  // Absent.
}

TEST(KeyspaceTest, SweepRemovesExpiredKeysSoCountIsExact) {
  test::ScopedSegment seg;
  ScopedWallClockForTesting clock;
  Keyspace ks = Open(seg.get());
  for (int i = 0; i < 200; ++i) ASSERT_OK(Set(ks, "s" + std::to_string(i), "v"));
  ASSERT_OK(Push(ks, "l", "a"));
  ASSERT_OK(HSet(ks, "h", "f", "v"));
  const int64_t soon = WallNowMs() + 1000;
  for (int i = 0; i < 100; ++i) {
    bool applied = false;
    ASSERT_OK(ks.Expire("s" + std::to_string(i), soon, ExpireIf::kAlways, &applied));
  }
  bool applied = false;
  ASSERT_OK(ks.Expire("l", soon, ExpireIf::kAlways, &applied));
  ASSERT_OK(ks.Expire("h", soon, ExpireIf::kAlways, &applied));
  clock.Advance(1001);
  uint64_t count = 0;
  ASSERT_OK(ks.Count(&count));
  EXPECT_EQ(count, 202u);  // Not yet swept: counted, as in Redis.
  size_t removed = 0, total = 0;
  // Bounded work per call: repeated ticks get there.
  for (int tick = 0; tick < 100 && total < 102; ++tick) {
    ASSERT_OK(ks.SweepExpired(4, &removed));
    total += removed;
  }
  EXPECT_EQ(total, 102u);
  ASSERT_OK(ks.Count(&count));
  EXPECT_EQ(count, 100u);
  EXPECT_EQ(Aggregates(seg.get()), 0u);
  std::string value;
  ASSERT_OK(ks.Get("s150", &value));
}

// A key whose list or hash expired, overwritten before the sweep reached it, takes its list or
// hash with it: by SET, by a new list or hash of the key, and by a transaction's writes (a blind
// SET and a read one); DEL and reads leave the expired entry to the sweep, which deletes both.
// Nothing is left that no key names.
TEST(KeyspaceTest, OverwritingAnExpiredListOrHashDeletesIt) {
  test::ScopedSegment seg;
  ScopedWallClockForTesting clock;
  Keyspace ks = Open(seg.get());
  const std::vector<std::string> keys = {"set",      "push",    "hset", "del",
                                         "tx-blind", "tx-read", "read"};
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_OK(i % 2 == 0 ? Push(ks, keys[i], "item") : HSet(ks, keys[i], "f", "v"));
    bool applied = false;
    ASSERT_OK(ks.Expire(keys[i], WallNowMs() + 1000, ExpireIf::kAlways, &applied));
  }
  ASSERT_EQ(Aggregates(seg.get()), keys.size());
  clock.Advance(1001);
  ASSERT_OK(Set(ks, "set", "s"));
  ASSERT_OK(Push(ks, "push", "new"));
  ASSERT_OK(HSet(ks, "hset", "g", "w"));
  bool existed = true;
  ASSERT_OK(ks.Delete("del", &existed));
  EXPECT_FALSE(existed);  // Expired: absent, as in Redis.
  std::string value;      // Reads see it absent and leave it (and its list) to the sweep.
  EXPECT_TRUE(ks.Get("read", &value).IsNotFound());
  KeyType type = KeyType::kString;
  ASSERT_OK(ks.Type("read", &type));
  EXPECT_EQ(type, KeyType::kNone);
  Transaction tx(seg.get());
  StringSetResult set;
  ASSERT_OK(tx.Set(ks, "tx-blind", "s", StringSet(), &set));
  StringSet get;
  get.get = true;
  ASSERT_OK(tx.Set(ks, "tx-read", "s", get, &set));
  EXPECT_FALSE(set.old.has_value());
  ASSERT_OK(tx.Commit());
  size_t removed = 0;  // DEL and reads of an expired key left it: the sweep's, with its list.
  for (int tick = 0; tick < 100; ++tick) ASSERT_OK(ks.SweepExpired(64, &removed));
  EXPECT_EQ(Aggregates(seg.get()), 2u);  // push's new list and hset's new hash.
  ASSERT_OK(ks.Type("push", &type));
  EXPECT_EQ(type, KeyType::kList);
  ASSERT_OK(ks.Type("hset", &type));
  EXPECT_EQ(type, KeyType::kHash);
}

TEST(KeyspaceTest, VersionsMoveWithEveryWriteOfEveryType) {
  test::ScopedSegment seg;
  Keyspace ks = Open(seg.get());
  uint64_t v0 = 0, v1 = 0, v2 = 0;
  ASSERT_OK(ks.Version("l", &v0));
  EXPECT_EQ(v0, 0u);
  ASSERT_OK(Push(ks, "l", "a"));
  ASSERT_OK(ks.Version("l", &v1));
  ASSERT_OK(Push(ks, "l", "b"));
  ASSERT_OK(ks.Version("l", &v2));
  EXPECT_NE(v1, 0u);
  EXPECT_NE(v1, v2);
  ASSERT_OK(ks.WithList("l", Access::kRead, [](List& list) {
    uint64_t n = 0;
    return list.Length(&n);
  }));
  ASSERT_OK(ks.Version("l", &v1));
  EXPECT_EQ(v1, v2);  // A read leaves it.
}

// PrefetchFields is a hint: on a hash, on a key of another type, on an absent or over-long key,
// it changes no key, no version, no statistic of the hash, and the reads that follow answer as
// without it.
TEST(KeyspaceTest, PrefetchFieldsChangesNothing) {
  test::ScopedSegment seg;
  Keyspace ks = Open(seg.get());
  for (int i = 0; i < 50; ++i) ASSERT_OK(HSet(ks, "h", "f" + std::to_string(i), "v"));
  ASSERT_OK(Push(ks, "l", "a"));
  ASSERT_OK(Set(ks, "s", "x"));
  const std::vector<std::string> keys = {"h",      "l", "s",
                                         "absent", "",  std::string(limits::kMaxKey + 1, 'k')};
  auto state = [&] {
    std::vector<uint64_t> out;
    for (const std::string& key : keys) {
      uint64_t version = 0;
      EXPECT_OK(ks.Version(key.size() > limits::kMaxKey ? "absent" : key, &version));
      out.push_back(version);
    }
    DictStats stats;
    EXPECT_OK(ks.WithHash("h", Access::kRead, [&](Dict& d) { return d.Stats(&stats); }));
    out.insert(out.end(), {stats.entries, stats.hits, stats.misses, stats.bytes});
    return out;
  };
  const std::vector<uint64_t> before = state();
  const std::vector<std::string_view> fields = {"f1", "f2", "absent", ""};
  for (const std::string& key : keys) {
    ks.PrefetchFields(key, fields);
    ks.PrefetchFields(key, {});
  }
  EXPECT_EQ(state(), before);
  EXPECT_EQ(TypeOf(ks, "h"), KeyType::kHash);
  EXPECT_EQ(TypeOf(ks, "l"), KeyType::kList);
  EXPECT_EQ(TypeOf(ks, "s"), KeyType::kString);
  EXPECT_EQ(TypeOf(ks, "absent"), KeyType::kNone);
}

TEST(KeyspaceTest, DatabasesAreSeparateAndFlushEmptiesOne) {
  test::ScopedSegment seg;
  Keyspace db0 = Open(seg.get(), 0), db1 = Open(seg.get(), 1);
  ASSERT_OK(Set(db0, "k", "zero"));
  ASSERT_OK(Push(db1, "k", "one"));
  EXPECT_EQ(TypeOf(db0, "k"), KeyType::kString);
  EXPECT_EQ(TypeOf(db1, "k"), KeyType::kList);
  ASSERT_OK(db1.Flush());
  EXPECT_EQ(TypeOf(db1, "k"), KeyType::kNone);
  EXPECT_EQ(TypeOf(db0, "k"), KeyType::kString);
  Keyspace bad;
  EXPECT_TRUE(Keyspace::Open(seg.get(), 16, &bad).IsInvalidArgument());
  std::vector<ObjectInfo> objects;
  ASSERT_OK(seg->registry().List("redis:1:", ObjectKind::kNone, 10, "", &objects));
  EXPECT_TRUE(objects.empty());
}

TEST(KeyspaceTest, TheKeyspaceIsNotADictToOtherFrontEnds) {
  test::ScopedSegment seg;
  Keyspace ks = Open(seg.get());
  EXPECT_EQ(ks.db(), 0);
  Dict dict;
  EXPECT_TRUE(Dict::Open(seg.get(), "redis:0", OpenMode::kOpenExisting, DictOptions(), &dict)
                  .IsWrongType());
}

// A snapshot of `from` restored into `into`.
Status SnapshotInto(Segment* from, Segment* into) {
  std::string bytes;
  SHM_RETURN_IF_ERROR(SerializeSegment(from, &bytes, nullptr));
  return RestoreSegment(bytes, into, nullptr);
}

TEST(KeyspaceTest, ASnapshotKeepsEveryTypeAndTheKeyspaceLocks) {
  test::ScopedSegment from;
  Keyspace ks = Open(from.get());
  ASSERT_OK(Set(ks, "s", "v"));
  ASSERT_OK(Push(ks, "l", "a"));
  ASSERT_OK(HSet(ks, "h", "f", "v"));
  bool applied = false;
  ASSERT_OK(ks.Expire("s", WallNowMs() + 600'000, ExpireIf::kAlways, &applied));
  test::ScopedSegment into;
  ASSERT_OK(SnapshotInto(from.get(), into.get()));
  Keyspace restored = Open(into.get());
  EXPECT_EQ(TypeOf(restored, "s"), KeyType::kString);
  EXPECT_EQ(TypeOf(restored, "l"), KeyType::kList);
  EXPECT_EQ(TypeOf(restored, "h"), KeyType::kHash);
  int64_t at = 0;
  ASSERT_OK(restored.ExpiryOf("s", &at));
  EXPECT_GT(at, WallNowMs());
  // Restored on the keyspace stripes, so a hash's own shard lock can be taken under the key's.
  auto* rep = into->impl()->Ptr<DictRep>(restored.ref().entry->body.load());
  EXPECT_EQ(rep->stripe_set, 1u);
  ASSERT_OK(HSet(restored, "h", "g", "w"));
  std::string item;
  ASSERT_OK(PopLeft(restored, "l", &item));
  EXPECT_EQ(item, "a");
  EXPECT_EQ(TypeOf(restored, "l"), KeyType::kNone);
}

// A list or hash key that expired but is not yet swept: the snapshot keeps its entry with its
// object, so the restored keyspace's sweep removes both. Skipping the entry restored the object
// named by no key, which no sweep finds.
TEST(KeyspaceTest, ASnapshotOfAnExpiredUnsweptListOrHashLeavesNoObjectBehind) {
  test::ScopedSegment from;
  ScopedWallClockForTesting clock;
  Keyspace ks = Open(from.get());
  ASSERT_OK(Push(ks, "expired-list", "a"));
  ASSERT_OK(HSet(ks, "expired-hash", "f", "v"));
  ASSERT_OK(Push(ks, "kept", "b"));
  ASSERT_OK(Set(ks, "expired-string", "s"));
  bool applied = false;
  for (const char* key : {"expired-list", "expired-hash", "expired-string"}) {
    ASSERT_OK(ks.Expire(key, WallNowMs() + 1000, ExpireIf::kAlways, &applied));
  }
  clock.Advance(1001);
  test::ScopedSegment into;
  ASSERT_OK(SnapshotInto(from.get(), into.get()));
  Keyspace restored = Open(into.get());
  EXPECT_EQ(TypeOf(restored, "expired-list"), KeyType::kNone);
  EXPECT_EQ(TypeOf(restored, "expired-hash"), KeyType::kNone);
  EXPECT_EQ(TypeOf(restored, "expired-string"), KeyType::kNone);
  size_t removed = 0;
  for (int tick = 0; tick < 100; ++tick) ASSERT_OK(restored.SweepExpired(64, &removed));
  EXPECT_EQ(Aggregates(into.get()), 1u);  // kept's list alone.
  EXPECT_EQ(TypeOf(restored, "kept"), KeyType::kList);
  uint64_t keys = 0;
  ASSERT_OK(restored.Count(&keys));
  EXPECT_EQ(keys, 1u);
}

// Processes race SET NX and RPUSH on the same new keys: for each key exactly one of them wins
// and the key has that one type; the loser saw the winner (not written / WRONGTYPE). With strings
// and lists in separate structures, both could win and leave two types for one key.
TEST(KeyspaceTest, ProcessesRacingTwoTypesForOneKeyLeaveOne) {
  test::ScopedSegment seg(size_t{64} << 20, 4096);
  Keyspace ks = Open(seg.get());
  constexpr int kKeys = 600;
  auto* go =
      static_cast<std::atomic<int>*>(mmap(nullptr, sizeof(std::atomic<int>), PROT_READ | PROT_WRITE,
                                          MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(go, MAP_FAILED);
  new (go) std::atomic<int>(0);
  auto racer = [&](bool strings) {
    return test::ForkChild([&, strings] {
      Keyspace mine;
      if (!Keyspace::Open(seg.get(), 0, &mine).ok()) return 2;
      go->fetch_add(1);
      while (go->load() < 2) {
      }
      for (int i = 0; i < kKeys; ++i) {
        std::string key = "race" + std::to_string(i);
        if (strings) {
          bool written = false;
          if (!Set(mine, key, "s", StringSet::Cond::kIfAbsent, &written).ok()) return 3;
        } else {
          Status s = Push(mine, key, "x");
          if (!s.ok() && !s.IsWrongType()) return 3;
        }
      }
      return 0;
    });
  };
  pid_t a = racer(true), b = racer(false);
  test::ChildExit ea = test::WaitChild(a), eb = test::WaitChild(b);
  ASSERT_TRUE(ea.exited && ea.code == 0) << ea.code;
  ASSERT_TRUE(eb.exited && eb.code == 0) << eb.code;
  int strings = 0, lists = 0;
  for (int i = 0; i < kKeys; ++i) {
    std::string key = "race" + std::to_string(i);
    KeyType type = TypeOf(ks, key);
    ASSERT_TRUE(type == KeyType::kString || type == KeyType::kList) << key;
    if (type == KeyType::kString) {
      ++strings;
      std::string value;
      ASSERT_OK(ks.Get(key, &value));
      EXPECT_EQ(value, "s");
    } else {
      ++lists;
      ASSERT_OK(ks.WithList(key, Access::kRead, [](List& list) {
        uint64_t n = 0;
        SHM_RETURN_IF_ERROR(list.Length(&n));
        return n == 1 ? Status::OK() : Status::Internal("length " + std::to_string(n));
      }));
    }
  }
  EXPECT_EQ(strings + lists, kKeys);
  EXPECT_EQ(Aggregates(seg.get()), static_cast<size_t>(lists));  // No orphan, none shared.
  munmap(go, sizeof(std::atomic<int>));
}

// INFO keyspace's expires=: every key with an expiry, of any type, counted exactly as expiries
// are set, removed, renamed and deleted with their key.
TEST(KeyspaceTest, CountsTheKeysWithAnExpiry) {
  test::ScopedSegment seg;
  Keyspace ks = Open(seg.get());
  auto counts = [&ks]() {
    uint64_t keys = 0, expiring = 0;
    EXPECT_TRUE(ks.Count(&keys, &expiring).ok());
    return std::make_pair(keys, expiring);
  };
  const int64_t later = WallNowMs() + 100'000;
  ASSERT_OK(Set(ks, "plain", "v"));
  StringSet with_ttl;
  with_ttl.expires_at_ms = later;
  StringSetResult result;
  ASSERT_OK(ks.Set("s", "v", with_ttl, &result));
  ASSERT_OK(Push(ks, "l", "a"));
  ASSERT_OK(HSet(ks, "h", "f", "v"));
  bool applied = false;
  ASSERT_OK(ks.Expire("l", later, ExpireIf::kAlways, &applied));
  ASSERT_OK(ks.Expire("h", later, ExpireIf::kAlways, &applied));
  EXPECT_EQ(counts(), std::make_pair(uint64_t{4}, uint64_t{3}));
  bool removed = false;
  ASSERT_OK(ks.Persist("h", &removed));
  ASSERT_OK(Push(ks, "l", "b"));  // A write of the list keeps its key's expiry.
  EXPECT_EQ(counts(), std::make_pair(uint64_t{4}, uint64_t{2}));
  bool renamed = false;
  ASSERT_OK(ks.Rename("s", "plain", false, &renamed));  // Replaces a key without one.
  EXPECT_EQ(counts(), std::make_pair(uint64_t{3}, uint64_t{2}));
  ASSERT_OK(Set(ks, "plain", "again"));  // A plain SET clears the expiry.
  bool existed = false;
  ASSERT_OK(ks.Delete("l", &existed));
  EXPECT_EQ(counts(), std::make_pair(uint64_t{2}, uint64_t{0}));
}

// Keys (and hash fields) up to limits::kMaxKey bytes, far past the old 1 KiB; one more is refused
// and changes nothing.
// Every write that may make a list key non-empty reports the key once committed (issue 23): to
// the thread's ReadyListSink when one is installed (the Redis protocol serves the key's blocked
// pops before its reply), else by waking the database's blocked pops (its keyspace's futex word),
// and a push made to a key's list object directly (HTTP, Python) wakes them too. Only while some
// pop is blocked; reads, pops and hash writes report nothing.
TEST(KeyspaceTest, EveryWriteThatMayFillAListKeyReportsIt) {
  test::ScopedSegment seg;
  Keyspace ks = Open(seg.get());
  Keyspace db1 = Open(seg.get(), 1);
  const WakeWord word = WakeWord::Of(ks.ref());
  ASSERT_OK(Push(ks, "src", "a"));
  std::vector<ObjectInfo> lists;
  ASSERT_OK(seg->registry().List("redis:0:", ObjectKind::kList, 10, "", &lists));
  ASSERT_EQ(lists.size(), 1u);
  List object;  // The key's list, as HTTP and Python open it: by name.
  ASSERT_OK(List::Open(seg.get(), lists[0].name, OpenMode::kOpenExisting, ListOptions(), &object));
  List unrelated;
  ASSERT_OK(List::Open(seg.get(), "jobs", OpenMode::kCreateIfMissing, ListOptions(), &unrelated));

  // No pop blocked: nothing rings.
  uint32_t seen = word.Sequence();
  ASSERT_OK(Push(ks, "q", "x"));
  ASSERT_OK(object.Push(List::End::kRight, "b"));
  EXPECT_EQ(word.Sequence(), seen);

  BlockLines lines(seg.get());
  BlockLines::Place place;
  ASSERT_OK(lines.Join(0, std::vector<std::string>{"waiting"}, 0, &place));
  // Without a sink: each of these wakes database 0's pops.
  auto rings = [&](const char* what, const std::function<Status()>& write) {
    SCOPED_TRACE(what);
    const uint32_t before = word.Sequence();
    ASSERT_OK(write());
    EXPECT_NE(word.Sequence(), before);
  };
  rings("keyspace push", [&] { return Push(ks, "q", "y"); });
  rings("push to the key's list object", [&] { return object.Push(List::End::kLeft, "c"); });
  bool renamed = false;
  rings("rename of a list", [&] { return ks.Rename("q", "q2", false, &renamed); });
  seen = word.Sequence();
  ASSERT_OK(unrelated.Push(List::End::kRight, "j"));  // Not a key's list.
  std::string item;
  ASSERT_OK(PopLeft(ks, "q2", &item));
  ASSERT_OK(HSet(ks, "h", "f", "v"));
  ASSERT_OK(Set(ks, "s", "v"));
  ASSERT_OK(ks.Rename("s", "s2", false, &renamed));
  EXPECT_EQ(word.Sequence(), seen);

  // With a sink: the keys are collected, once each, and nothing rings.
  std::vector<std::pair<int, std::string>> ready;
  {
    ReadyListSink sink(&ready);
    seen = word.Sequence();
    ASSERT_OK(Push(ks, "k1", "a"));
    ASSERT_OK(Push(ks, "k1", "b"));
    ASSERT_OK(ks.Rename("k1", "k2", false, &renamed));
    ASSERT_OK(ks.RewriteList("k2", [](std::vector<std::string>* items) {
      items->push_back("c");
      return Status::OK();
    }));
    ASSERT_OK(Push(db1, "k3", "a"));
    ASSERT_OK(PopLeft(ks, "k2", &item));
    ASSERT_OK(HSet(ks, "h", "g", "v"));
    EXPECT_EQ(word.Sequence(), seen);
  }
  using Ready = std::vector<std::pair<int, std::string>>;
  EXPECT_EQ(ready, (Ready{{0, "k1"}, {0, "k2"}, {1, "k3"}}));
  rings("a push after the sink is gone", [&] { return Push(ks, "k2", "d"); });

  lines.Leave(place);
  seen = word.Sequence();
  ASSERT_OK(Push(ks, "k2", "e"));
  EXPECT_EQ(word.Sequence(), seen);
}

TEST(KeyspaceTest, KeysUpToTheLimit) {
  test::ScopedSegment seg;
  Keyspace ks = Open(seg.get());
  const std::string longest(limits::kMaxKey, 'k');
  ASSERT_OK(Set(ks, longest, "v"));
  ASSERT_OK(HSet(ks, "h", longest, "v"));
  std::string value;
  ASSERT_OK(ks.Get(longest, &value));
  EXPECT_EQ(value, "v");
  const std::string too_long(limits::kMaxKey + 1, 'k');
  EXPECT_TRUE(Set(ks, too_long, "v").IsInvalidArgument());
  EXPECT_TRUE(HSet(ks, "h", too_long, "v").IsInvalidArgument());
  uint64_t keys = 0;
  ASSERT_OK(ks.Count(&keys));
  EXPECT_EQ(keys, 2u);
}

}  // namespace
}  // namespace shm
