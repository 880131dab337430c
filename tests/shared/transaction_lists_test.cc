// Lists and hash fields inside shm::Transaction: pushes and pops at both ends seen by the
// transaction only, applied all at once; Conflict when a list read changed; a key's list or hash
// created with its first element and removed with its last; jobs moved between lists by several
// processes at once, none lost or duplicated.
#include <gtest/gtest.h>
#include <unistd.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/status_assert.h"
#include "common/test_util.h"
#include "shm/keyspace.h"
#include "shm/list.h"
#include "shm/registry.h"
#include "shm/transaction.h"

namespace shm {
namespace {

std::vector<std::string> Items(const List& list) {
  std::vector<std::string> items;
  EXPECT_TRUE(list.Range(0, -1, &items).ok());
  return items;
}

std::vector<std::string> KeyItems(Keyspace& ks, const std::string& key) {
  std::vector<std::string> items;
  Status s =
      ks.WithList(key, Keyspace::Access::kRead, [&](List& l) { return l.Range(0, -1, &items); });
  EXPECT_TRUE(s.ok() || s.IsNotFound()) << s.ToString();
  return items;
}

size_t Aggregates(Segment* seg) {
  std::vector<ObjectInfo> objects;
  EXPECT_TRUE(seg->registry().List("redis:0:", ObjectKind::kNone, 100, "", &objects).ok());
  return objects.size();
}

class TransactionListsTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(List::Open(seg_.get(), "jobs", OpenMode::kCreateIfMissing, ListOptions(), &jobs_));
    ASSERT_OK(List::Open(seg_.get(), "done", OpenMode::kCreateIfMissing, ListOptions(), &done_));
    ASSERT_OK(Keyspace::Open(seg_.get(), 0, &ks_));
  }
  test::ScopedSegment seg_{size_t{32} << 20, 256};
  List jobs_, done_;
  Keyspace ks_;
};

TEST_F(TransactionListsTest, PushesAndPopsAtBothEndsAreVisibleOnlyAfterCommit) {
  ASSERT_OK(jobs_.Push(List::End::kRight, "old"));
  Transaction tx(seg_.get());
  uint64_t length = 0;
  ASSERT_OK(tx.Push(jobs_, List::End::kRight, "new", &length));
  EXPECT_EQ(length, 2u);
  std::string item;
  bool got = false;
  ASSERT_OK(tx.Pop(jobs_, List::End::kLeft, &item, &got));
  EXPECT_TRUE(got);
  EXPECT_EQ(item, "old");
  ASSERT_OK(tx.Pop(jobs_, List::End::kRight, &item, &got));
  EXPECT_EQ(item, "new");
  ASSERT_OK(tx.Pop(jobs_, List::End::kLeft, &item, &got));
  EXPECT_FALSE(got);
  ASSERT_OK(tx.Push(jobs_, List::End::kLeft, "kept"));
  ASSERT_OK(tx.Push(done_, List::End::kLeft, "b"));
  ASSERT_OK(tx.Push(done_, List::End::kLeft, "a"));
  ASSERT_OK(tx.Push(done_, List::End::kRight, "c"));
  ASSERT_OK(tx.Length(done_, &length));
  EXPECT_EQ(length, 3u);
  EXPECT_EQ(Items(jobs_), std::vector<std::string>{"old"});  // Nothing visible yet.
  EXPECT_TRUE(Items(done_).empty());
  ASSERT_OK(tx.Commit());
  EXPECT_EQ(Items(jobs_), std::vector<std::string>{"kept"});
  EXPECT_EQ(Items(done_), (std::vector<std::string>{"a", "b", "c"}));
  // The lists work as before afterwards, at both ends.
  ASSERT_OK(done_.Pop(List::End::kRight, std::chrono::milliseconds(0), &item, &got));
  EXPECT_EQ(item, "c");
  ASSERT_OK(done_.Push(List::End::kLeft, "z"));
  EXPECT_EQ(Items(done_), (std::vector<std::string>{"z", "a", "b"}));
}

TEST_F(TransactionListsTest, PopsReachTheOtherEndsPushesOnceTheCommittedItemsAreGone) {
  ASSERT_OK(jobs_.Push(List::End::kRight, "1"));
  Transaction tx(seg_.get());
  ASSERT_OK(tx.Push(jobs_, List::End::kRight, "2"));
  ASSERT_OK(tx.Push(jobs_, List::End::kRight, "3"));
  std::string item;
  bool got = false;
  std::vector<std::string> popped;
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK(tx.Pop(jobs_, List::End::kLeft, &item, &got));
    ASSERT_TRUE(got);
    popped.push_back(item);
  }
  EXPECT_EQ(popped, (std::vector<std::string>{"1", "2", "3"}));
  ASSERT_OK(tx.Commit());
  EXPECT_TRUE(Items(jobs_).empty());
}

TEST_F(TransactionListsTest, ConflictWhenAListReadChangedAndNothingApplied) {
  ASSERT_OK(jobs_.Push(List::End::kRight, "j1"));
  Transaction tx(seg_.get());
  std::string item;
  bool got = false;
  ASSERT_OK(tx.Pop(jobs_, List::End::kLeft, &item, &got));
  ASSERT_OK(tx.Push(done_, List::End::kRight, item));
  ASSERT_OK(jobs_.Push(List::End::kRight, "j2"));  // Someone else's write to a list read.
  EXPECT_TRUE(tx.Commit().IsConflict());
  EXPECT_EQ(Items(jobs_), (std::vector<std::string>{"j1", "j2"}));
  EXPECT_TRUE(Items(done_).empty());
}

TEST_F(TransactionListsTest, BlindPushesDoNotConflictAndPushesRespectMaxItems) {
  Transaction tx(seg_.get());
  ASSERT_OK(tx.Push(done_, List::End::kRight, "mine"));
  ASSERT_OK(done_.Push(List::End::kRight, "theirs"));
  ASSERT_OK(tx.Commit());  // The push read nothing.
  EXPECT_EQ(Items(done_), (std::vector<std::string>{"theirs", "mine"}));

  ListOptions small;
  small.max_items = 2;
  List tiny;
  ASSERT_OK(List::Open(seg_.get(), "tiny", OpenMode::kCreateIfMissing, small, &tiny));
  ASSERT_OK(tiny.Push(List::End::kRight, "x"));
  Transaction blind(seg_.get());
  ASSERT_OK(blind.Push(tiny, List::End::kRight, "y"));
  ASSERT_OK(blind.Push(tiny, List::End::kRight, "z"));
  ASSERT_OK(blind.Push(jobs_, List::End::kRight, "not applied either"));
  EXPECT_TRUE(blind.Commit().IsOutOfSpace());
  EXPECT_EQ(Items(tiny), std::vector<std::string>{"x"});
  EXPECT_TRUE(Items(jobs_).empty());
  Transaction counted(seg_.get());
  uint64_t length = 0;
  ASSERT_OK(counted.Push(tiny, List::End::kRight, "y", &length));
  EXPECT_TRUE(counted.Push(tiny, List::End::kRight, "z", &length).IsOutOfSpace());
  std::string big(tiny.max_item_bytes() + 1, 'b');
  EXPECT_TRUE(counted.Push(tiny, List::End::kRight, big).IsInvalidArgument());
  ASSERT_OK(counted.Commit());
  EXPECT_EQ(Items(tiny), (std::vector<std::string>{"x", "y"}));
}

TEST_F(TransactionListsTest, ManyPushesGrowTheRingFirst) {
  for (int i = 0; i < 5; ++i) ASSERT_OK(jobs_.Push(List::End::kRight, "c" + std::to_string(i)));
  Transaction tx(seg_.get());
  std::vector<std::string> expected;
  for (int i = 299; i >= 0; --i)
    ASSERT_OK(tx.Push(jobs_, List::End::kLeft, "l" + std::to_string(i)));
  for (int i = 0; i < 300; ++i) expected.push_back("l" + std::to_string(i));
  std::string item;
  bool got = false;
  ASSERT_OK(tx.Pop(jobs_, List::End::kRight, &item, &got));  // c4
  EXPECT_EQ(item, "c4");
  for (int i = 0; i < 4; ++i) expected.push_back("c" + std::to_string(i));
  for (int i = 0; i < 300; ++i) {
    ASSERT_OK(tx.Push(jobs_, List::End::kRight, "r" + std::to_string(i)));
    expected.push_back("r" + std::to_string(i));
  }
  ASSERT_OK(tx.Commit());
  std::vector<std::string> items;
  for (int64_t first = 0;;) {
    std::vector<std::string> chunk;
    bool truncated = false;
    ASSERT_OK(jobs_.Range(first, -1, &chunk, &truncated));
    first += static_cast<int64_t>(chunk.size());
    items.insert(items.end(), chunk.begin(), chunk.end());
    if (!truncated) break;
  }
  EXPECT_EQ(items, expected);
}

TEST_F(TransactionListsTest, KeyListsAreCreatedWithTheirFirstItemAndGoWithTheirLast) {
  uint64_t watched = 0;
  ASSERT_OK(ks_.Version("q", &watched));
  {
    Transaction tx(seg_.get());
    uint64_t length = 0;
    ASSERT_OK(tx.Push(ks_, "q", List::End::kRight, "a", &length));
    ASSERT_OK(tx.Push(ks_, "q", List::End::kRight, "b", &length));
    EXPECT_EQ(length, 2u);
    KeyType type = KeyType::kNone;
    ASSERT_OK(tx.Type(ks_, "q", &type));
    EXPECT_EQ(type, KeyType::kList);
    ASSERT_OK(ks_.Type("q", &type));
    EXPECT_EQ(type, KeyType::kNone);  // Not before the commit.
    ASSERT_OK(tx.Commit());
  }
  EXPECT_EQ(KeyItems(ks_, "q"), (std::vector<std::string>{"a", "b"}));
  uint64_t version = 0;
  ASSERT_OK(ks_.Version("q", &version));
  EXPECT_NE(version, watched);
  {  // A move to another key that empties the first: the first key goes, its list with it.
    Transaction tx(seg_.get());
    std::string item;
    bool got = false;
    for (int i = 0; i < 2; ++i) {
      ASSERT_OK(tx.Pop(ks_, "q", List::End::kLeft, &item, &got));
      ASSERT_TRUE(got);
      ASSERT_OK(tx.Push(ks_, "p", List::End::kLeft, item));
    }
    ASSERT_OK(tx.Pop(ks_, "q", List::End::kLeft, &item, &got));
    EXPECT_FALSE(got);
    uint64_t length = 7;
    ASSERT_OK(tx.Length(ks_, "q", &length));
    EXPECT_EQ(length, 0u);
    ASSERT_OK(tx.Commit());
  }
  KeyType type = KeyType::kNone;
  ASSERT_OK(ks_.Type("q", &type));
  EXPECT_EQ(type, KeyType::kNone);
  EXPECT_EQ(KeyItems(ks_, "p"), (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(Aggregates(seg_.get()), 1u);
  // A watched push conflicts; a transaction that does not commit leaves no list behind.
  uint64_t before = 0;
  ASSERT_OK(ks_.Version("p", &before));
  ASSERT_OK(ks_.WithList("p", Keyspace::Access::kWrite,
                         [](List& l) { return l.Push(List::End::kRight, "c"); }));
  {
    Transaction tx(seg_.get());
    ASSERT_OK(tx.Watch(ks_, "p", before).IsConflict() ? Status::OK() : Status::Internal("no"));
    ASSERT_OK(tx.Push(ks_, "fresh", List::End::kRight, "x"));
    EXPECT_EQ(Aggregates(seg_.get()), 2u);
  }
  EXPECT_EQ(Aggregates(seg_.get()), 1u);
  StringSetResult set;
  ASSERT_OK(ks_.Set("s", "v", StringSet(), &set));
  Transaction wrong(seg_.get());
  EXPECT_TRUE(wrong.Push(ks_, "s", List::End::kRight, "x").IsWrongType());
}

TEST_F(TransactionListsTest, HashFieldsJoinAndTheKeyGoesWithItsLastField) {
  {
    Transaction tx(seg_.get());
    bool created = false;
    ASSERT_OK(tx.HashSet(ks_, "h", "f1", "v1", &created));
    EXPECT_TRUE(created);
    ASSERT_OK(tx.HashSet(ks_, "h", "f2", "v2", &created));
    ASSERT_OK(tx.HashSet(ks_, "h", "f1", "v1b", &created));
    EXPECT_FALSE(created);
    std::string value;
    ASSERT_OK(tx.HashGet(ks_, "h", "f1", &value));
    EXPECT_EQ(value, "v1b");
    KeyType type = KeyType::kNone;
    ASSERT_OK(ks_.Type("h", &type));
    EXPECT_EQ(type, KeyType::kNone);
    ASSERT_OK(tx.Commit());
  }
  std::string value;
  ASSERT_OK(ks_.WithHash("h", Keyspace::Access::kRead, [&](Dict& d) {
    DictValue v;
    SHM_RETURN_IF_ERROR(d.Get("f2", &v));
    value = v.data;
    return Status::OK();
  }));
  EXPECT_EQ(value, "v2");
  uint64_t watched = 0;
  ASSERT_OK(ks_.Version("h", &watched));
  {
    Transaction tx(seg_.get());
    bool existed = false;
    ASSERT_OK(tx.HashDelete(ks_, "h", "f1", &existed));
    EXPECT_TRUE(existed);
    ASSERT_OK(tx.HashDelete(ks_, "h", "nope", &existed));
    EXPECT_FALSE(existed);
    ASSERT_OK(tx.Commit());
  }
  uint64_t version = 0;
  ASSERT_OK(ks_.Version("h", &version));
  EXPECT_NE(version, watched);  // WATCH sees a transaction's field write.
  {
    Transaction tx(seg_.get());
    bool existed = false;
    ASSERT_OK(tx.HashDelete(ks_, "h", "f2", &existed));
    EXPECT_TRUE(existed);
    EXPECT_TRUE(tx.HashGet(ks_, "h", "f2", &value).IsNotFound());
    ASSERT_OK(tx.Commit());
  }
  KeyType type = KeyType::kNone;
  ASSERT_OK(ks_.Type("h", &type));
  EXPECT_EQ(type, KeyType::kNone);
  EXPECT_EQ(Aggregates(seg_.get()), 0u);
}

// The hash commands' Dict calls on a key's hash lent by WithHash inside a KeyspaceTransactionScope
// (MULTI/EXEC): staged in the transaction, seen by its later reads, visible only after Commit; a
// listing of a hash it changed cannot join (the batch then runs exclusively).
TEST_F(TransactionListsTest, HashLentToACommandJoinsTheTransaction) {
  auto incr = [](Dict& d, const char* field, int64_t by) {
    return d.Update(field, [by](const DictValue* current, DictUpdate* u) {
      int64_t value = current == nullptr ? 0 : std::stoll(current->data);
      u->data = std::to_string(value + by);
      return Status::OK();
    });
  };
  ASSERT_OK(ks_.WithHash("h", Keyspace::Access::kCreate, [&](Dict& d) { return incr(d, "a", 5); }));
  Transaction tx(seg_.get());
  {
    KeyspaceTransactionScope scope(&tx);
    ASSERT_OK(ks_.WithHash("h", Keyspace::Access::kCreate, [&](Dict& d) {
      SHM_RETURN_IF_ERROR(incr(d, "a", 10));
      SHM_RETURN_IF_ERROR(incr(d, "b", 1));
      DictValue v;
      SHM_RETURN_IF_ERROR(d.Get("a", &v));
      EXPECT_EQ(v.data, "15");
      DictStats stats;
      SHM_RETURN_IF_ERROR(d.Stats(&stats));
      EXPECT_EQ(stats.entries, 2u);
      // Listed as this transaction left it: "a" rewritten in place, "b" new, last.
      std::vector<DictItem> items;
      SHM_RETURN_IF_ERROR(d.Entries(true, &items));
      EXPECT_EQ(items.size(), 2u);
      EXPECT_EQ(items[0].key + "=" + items[0].value + " " + items[1].key + "=" + items[1].value,
                "a=15 b=1");
      return Status::OK();
    }));
    EXPECT_FALSE(scope.unsupported());
  }
  tx.Reset();
  {
    KeyspaceTransactionScope scope(&tx);
    ASSERT_OK(
        ks_.WithHash("h", Keyspace::Access::kCreate, [&](Dict& d) { return incr(d, "a", 10); }));
    ASSERT_OK(
        ks_.WithHash("g", Keyspace::Access::kCreate, [&](Dict& d) { return incr(d, "x", 1); }));
    ASSERT_OK(ks_.WithHash("h", Keyspace::Access::kWrite, [&](Dict& d) {
      EXPECT_TRUE(d.Delete("nope").IsNotFound());
      return Status::OK();
    }));
    EXPECT_FALSE(scope.unsupported());
  }
  std::string value;
  ASSERT_OK(tx.HashGet(ks_, "h", "a", &value));
  EXPECT_EQ(value, "15");
  KeyType type = KeyType::kNone;
  ASSERT_OK(ks_.Type("g", &type));
  EXPECT_EQ(type, KeyType::kNone);  // Not before the commit.
  // Another writer of a field this transaction read: Conflict, nothing applied.
  Transaction loser(seg_.get());
  {
    KeyspaceTransactionScope scope(&loser);
    ASSERT_OK(
        ks_.WithHash("h", Keyspace::Access::kCreate, [&](Dict& d) { return incr(d, "a", 1); }));
  }
  ASSERT_OK(tx.Commit());
  EXPECT_TRUE(loser.Commit().IsConflict());
  ASSERT_OK(ks_.WithHash("h", Keyspace::Access::kRead, [&](Dict& d) {
    std::vector<DictItem> items;
    SHM_RETURN_IF_ERROR(d.Entries(true, &items));
    EXPECT_EQ(items.size(), 1u);
    EXPECT_EQ(items[0].value, "15");
    return Status::OK();
  }));
  // The last field deleted through a lent hash removes the key in the same commit.
  {
    KeyspaceTransactionScope scope(&tx);
    ASSERT_OK(ks_.WithHash("g", Keyspace::Access::kWrite, [&](Dict& d) { return d.Delete("x"); }));
    EXPECT_FALSE(scope.unsupported());
  }
  ASSERT_OK(ks_.Type("g", &type));
  EXPECT_EQ(type, KeyType::kHash);
  ASSERT_OK(tx.Commit());
  ASSERT_OK(ks_.Type("g", &type));
  EXPECT_EQ(type, KeyType::kNone);
  EXPECT_EQ(Aggregates(seg_.get()), 1u);  // h's.
}

std::string Listing(const std::vector<DictItem>& items) {
  std::string out;
  for (const DictItem& item : items) out += item.key + "=" + item.value + " ";
  return out;
}

// Entries and ListKeys of a key's hash the transaction changed: its staged fields laid over the
// committed ones in Redis's order (a rewrite in place, a field deleted and written again or a new
// one last, in the order written), which is the order the commit leaves; the listing is a read,
// so another writer of the hash before the commit is a Conflict.
TEST_F(TransactionListsTest, ListingsOfAChangedHashSeeItAsTheCommitWillLeaveIt) {
  auto set = [](Dict& d, const std::string& field, const std::string& value) {
    return d.Update(field, [value](const DictValue*, DictUpdate* u) {
      u->data = value;
      return Status::OK();
    });
  };
  ASSERT_OK(ks_.WithHash("h", Keyspace::Access::kCreate, [&](Dict& d) {
    for (const char* f : {"a", "b", "c", "d"}) SHM_RETURN_IF_ERROR(set(d, f, "0"));
    return Status::OK();
  }));
  const std::string expected = "b=2 d=0 y=1 a=3 x=4 ";
  Transaction tx(seg_.get());
  {
    KeyspaceTransactionScope scope(&tx);
    ASSERT_OK(ks_.WithHash("h", Keyspace::Access::kWrite, [&](Dict& d) {
      DictValue v;
      EXPECT_TRUE(d.Get("x", &v).IsNotFound());  // Read absent first: x still goes last.
      SHM_RETURN_IF_ERROR(d.Delete("a"));
      SHM_RETURN_IF_ERROR(d.Delete("c"));
      SHM_RETURN_IF_ERROR(set(d, "y", "1"));
      SHM_RETURN_IF_ERROR(set(d, "b", "2"));
      SHM_RETURN_IF_ERROR(set(d, "a", "3"));
      SHM_RETURN_IF_ERROR(set(d, "x", "4"));
      std::vector<DictItem> items;
      SHM_RETURN_IF_ERROR(d.Entries(true, &items));
      EXPECT_EQ(Listing(items), expected);
      std::vector<std::string> keys;
      uint64_t next = 0;
      SHM_RETURN_IF_ERROR(d.ListKeys("", Dict::kMaxListLimit, 0, &keys, &next));
      EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()),
                (std::set<std::string>{"a", "b", "d", "x", "y"}));
      EXPECT_EQ(next, 0u);
      return Status::OK();
    }));
    EXPECT_FALSE(scope.unsupported());
  }
  ASSERT_OK(tx.Commit());
  std::vector<DictItem> items;
  ASSERT_OK(
      ks_.WithHash("h", Keyspace::Access::kRead, [&](Dict& d) { return d.Entries(true, &items); }));
  EXPECT_EQ(Listing(items), expected);
  // A listing read the hash: another write of it before the commit is a Conflict.
  Transaction reader(seg_.get());
  {
    KeyspaceTransactionScope scope(&reader);
    ASSERT_OK(ks_.WithHash("h", Keyspace::Access::kWrite, [&](Dict& d) {
      SHM_RETURN_IF_ERROR(set(d, "z", "5"));
      return d.Entries(true, &items);
    }));
  }
  EXPECT_EQ(Listing(items), expected + "z=5 ");
  ASSERT_OK(ks_.WithHash("h", Keyspace::Access::kWrite, [&](Dict& d) { return set(d, "b", "9"); }));
  EXPECT_TRUE(reader.Commit().IsConflict());
  ASSERT_OK(
      ks_.WithHash("h", Keyspace::Access::kRead, [&](Dict& d) { return d.Entries(true, &items); }));
  EXPECT_EQ(Listing(items), "b=9 d=0 y=1 a=3 x=4 ");
}

std::set<std::string> AllKeys(Keyspace& ks) {
  std::vector<std::string> keys;
  uint64_t next = 0;
  EXPECT_TRUE(ks.ListKeys("", Dict::kMaxListLimit, 0, &keys, &next).ok());
  EXPECT_EQ(next, 0u);
  return std::set<std::string>(keys.begin(), keys.end());
}

// Keyspace::ListKeys, Count and Flush inside a KeyspaceTransactionScope (KEYS, SCAN, DBSIZE,
// RANDOMKEY, FLUSHDB in MULTI/EXEC): they see the transaction's own keys, a flush stages the
// deletion of every key, and a key added or removed by someone else before the commit is a
// Conflict (a value rewritten is not: the listing read the key set).
TEST_F(TransactionListsTest, KeyListingsCountsAndFlushesJoinTheTransaction) {
  StringSetResult result;
  for (const char* key : {"a", "b"}) ASSERT_OK(ks_.Set(key, "1", StringSet(), &result));
  ASSERT_OK(ks_.WithList("l", Keyspace::Access::kCreate,
                         [](List& l) { return l.Push(List::End::kRight, "x"); }));
  Transaction tx(seg_.get());
  {
    KeyspaceTransactionScope scope(&tx);
    ASSERT_OK(ks_.Set("c", "3", StringSet(), &result));
    bool existed = false;
    ASSERT_OK(ks_.Delete("a", &existed));
    EXPECT_EQ(AllKeys(ks_), (std::set<std::string>{"b", "c", "l"}));
    std::vector<std::string> page;
    uint64_t next = 0;
    ASSERT_OK(ks_.ListKeys("", 1, 0, &page, &next));  // A page, resumed by its cursor.
    EXPECT_EQ(page.size(), 1u);
    uint64_t count = 0;
    ASSERT_OK(ks_.Count(&count));
    EXPECT_EQ(count, 3u);
    EXPECT_FALSE(scope.unsupported());
  }
  EXPECT_EQ(AllKeys(ks_), (std::set<std::string>{"a", "b", "l"}));
  ASSERT_OK(tx.Commit());
  EXPECT_EQ(AllKeys(ks_), (std::set<std::string>{"b", "c", "l"}));

  // Another writer between the listing and the commit.
  for (bool adds_a_key : {true, false}) {
    Transaction reader(seg_.get());
    {
      KeyspaceTransactionScope scope(&reader);
      uint64_t count = 0;
      ASSERT_OK(ks_.Count(&count));
      ASSERT_OK(ks_.Set("mine", "1", StringSet(), &result));
    }
    ASSERT_OK(ks_.Set(adds_a_key ? "d" : "b", "2", StringSet(), &result));
    Status s = reader.Commit();
    EXPECT_EQ(s.IsConflict(), adds_a_key) << s.ToString();
    bool existed = false;
    ASSERT_OK(ks_.Delete("mine", &existed));
    EXPECT_EQ(existed, !adds_a_key);
  }

  // A flush: every key, the list's included, goes in the commit; the batch may write after it.
  Transaction flush(seg_.get());
  {
    KeyspaceTransactionScope scope(&flush);
    ASSERT_OK(ks_.Flush());
    EXPECT_EQ(AllKeys(ks_), (std::set<std::string>{}));
    ASSERT_OK(ks_.Set("after", "1", StringSet(), &result));
    uint64_t count = 0;
    ASSERT_OK(ks_.Count(&count));
    EXPECT_EQ(count, 1u);
    EXPECT_FALSE(scope.unsupported());
  }
  EXPECT_EQ(AllKeys(ks_), (std::set<std::string>{"b", "c", "d", "l"}));
  ASSERT_OK(flush.Commit());
  EXPECT_EQ(AllKeys(ks_), (std::set<std::string>{"after"}));
  EXPECT_EQ(Aggregates(seg_.get()), 0u);  // The list went with its key.
}

// A key created whole inside a transaction (COPY, MOVE, RESTORE: a new key's list replaced, a
// new key's hash's fields set) joins it: the list is one the transaction built, replaced in
// place; the fields are staged. Replacing a list someone else can see still cannot be staged.
TEST_F(TransactionListsTest, KeysCreatedWholeJoinTheTransaction) {
  ASSERT_OK(ks_.WithList("old", Keyspace::Access::kCreate,
                         [](List& l) { return l.Push(List::End::kRight, "o"); }));
  Transaction tx(seg_.get());
  {
    KeyspaceTransactionScope scope(&tx);
    ASSERT_OK(ks_.WithList("copy", Keyspace::Access::kCreate, [](List& l) {
      const std::vector<std::string> empty;
      bool swapped = false;
      SHM_RETURN_IF_ERROR(l.Replace(&empty, {"a", "b"}, &swapped));
      EXPECT_TRUE(swapped);
      return l.Push(List::End::kRight, "c");
    }));
    ASSERT_OK(ks_.WithHash("hcopy", Keyspace::Access::kCreate, [](Dict& d) {
      SHM_RETURN_IF_ERROR(d.Set("f", "1", SetOptions()));
      SetOptions add;
      add.mode = SetMode::kAdd;
      EXPECT_TRUE(d.Set("f", "2", add).IsAlreadyExists());
      return d.Set("g", "2", SetOptions());
    }));
    EXPECT_EQ(KeyItems(ks_, "copy"), (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_FALSE(scope.unsupported());
    Status s = ks_.WithList("old", Keyspace::Access::kWrite, [](List& l) {
      bool swapped = false;
      return l.Replace(nullptr, {"x"}, &swapped);
    });
    EXPECT_TRUE(s.IsConflict());
    EXPECT_TRUE(scope.unsupported());
  }
  tx.Reset();
  {
    KeyspaceTransactionScope scope(&tx);
    ASSERT_OK(ks_.WithList("copy", Keyspace::Access::kCreate, [](List& l) {
      bool swapped = false;
      return l.Replace(nullptr, {"a", "b"}, &swapped);
    }));
    ASSERT_OK(ks_.WithHash("hcopy", Keyspace::Access::kCreate,
                           [](Dict& d) { return d.Set("f", "1", SetOptions()); }));
    EXPECT_FALSE(scope.unsupported());
  }
  KeyType type = KeyType::kNone;
  ASSERT_OK(ks_.Type("copy", &type));
  EXPECT_EQ(type, KeyType::kNone);
  ASSERT_OK(tx.Commit());
  EXPECT_EQ(KeyItems(ks_, "copy"), (std::vector<std::string>{"a", "b"}));
  std::vector<DictItem> fields;
  ASSERT_OK(ks_.WithHash("hcopy", Keyspace::Access::kRead,
                         [&](Dict& d) { return d.Entries(true, &fields); }));
  EXPECT_EQ(Listing(fields), "f=1 ");
}

// A key's list edited in its middle (LSET, LINSERT, LREM, LTRIM: Keyspace::RewriteList) inside a
// KeyspaceTransactionScope: staged as a new list the key names, ranged as the transaction left it,
// visible only after Commit; a list edited to nothing goes with its key in the same commit.
TEST_F(TransactionListsTest, ListMiddleEditsJoinTheTransaction) {
  ASSERT_OK(ks_.WithList("q", Keyspace::Access::kCreate, [](List& l) {
    for (const char* item : {"a", "b", "c"}) SHM_RETURN_IF_ERROR(l.Push(List::End::kRight, item));
    return Status::OK();
  }));
  ASSERT_OK(ks_.WithList("gone", Keyspace::Access::kCreate,
                         [](List& l) { return l.Push(List::End::kRight, "x"); }));
  Transaction tx(seg_.get());
  {
    KeyspaceTransactionScope scope(&tx);
    ASSERT_OK(ks_.WithList("q", Keyspace::Access::kWrite,
                           [](List& l) { return l.Push(List::End::kLeft, "first"); }));
    ASSERT_OK(ks_.RewriteList("q", [](std::vector<std::string>* items) {
      EXPECT_EQ(*items, (std::vector<std::string>{"first", "a", "b", "c"}));
      (*items)[2] = "B";
      items->erase(items->begin() + 1);
      return Status::OK();
    }));
    std::vector<std::string> seen;
    ASSERT_OK(ks_.WithList("q", Keyspace::Access::kRead,
                           [&](List& l) { return l.Range(-2, -1, &seen); }));
    EXPECT_EQ(seen, (std::vector<std::string>{"B", "c"}));
    ASSERT_OK(ks_.RewriteList("gone", [](std::vector<std::string>* items) {
      items->clear();
      return Status::OK();
    }));
    EXPECT_TRUE(ks_.RewriteList("nokey", [](std::vector<std::string>*) { return Status::OK(); })
                    .IsNotFound());
    EXPECT_FALSE(scope.unsupported());
  }
  EXPECT_EQ(KeyItems(ks_, "q"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(KeyItems(ks_, "gone"), (std::vector<std::string>{"x"}));
  ASSERT_OK(tx.Commit());
  EXPECT_EQ(KeyItems(ks_, "q"), (std::vector<std::string>{"first", "B", "c"}));
  KeyType type = KeyType::kNone;
  ASSERT_OK(ks_.Type("gone", &type));
  EXPECT_EQ(type, KeyType::kNone);
  EXPECT_EQ(Aggregates(seg_.get()), 1u);  // q's.
}

// Processes move jobs from "jobs" to "done" and back (both ends) in transactions while a reader
// counts both lists in read-only transactions: every committed reader sees every job exactly
// once, and afterwards no job is lost or duplicated.
TEST_F(TransactionListsTest, ConcurrentMovesKeepEveryJobExactlyOnce) {
  constexpr int kJobs = 64, kMovers = 2, kMoves = 1500;
  for (int i = 0; i < kJobs; ++i)
    ASSERT_OK(jobs_.Push(List::End::kRight, "job" + std::to_string(i)));
  Segment* seg = seg_.get();
  std::vector<pid_t> children;
  for (int w = 0; w < kMovers; ++w) {
    children.push_back(test::ForkChild([&, w] {
      std::mt19937 rng(11 + w);
      for (int n = 0; n < kMoves; ++n) {
        const bool forward = rng() % 2 == 0;
        const auto from_end = rng() % 2 == 0 ? List::End::kLeft : List::End::kRight;
        const auto to_end = rng() % 2 == 0 ? List::End::kLeft : List::End::kRight;
        Status s = Transaction::Run(seg, 1000, [&](Transaction& tx) {
          std::string item;
          bool got = false;
          SHM_RETURN_IF_ERROR(tx.Pop(forward ? jobs_ : done_, from_end, &item, &got));
          if (!got) return Status::OK();
          return tx.Push(forward ? done_ : jobs_, to_end, item);
        });
        if (!s.ok()) return 10;
      }
      return 0;
    }));
  }
  children.push_back(test::ForkChild([&] {
    int committed = 0;
    for (int n = 0; n < 3000; ++n) {
      Transaction tx(seg);
      uint64_t a = 0, b = 0;
      Status s = tx.Length(jobs_, &a);
      if (s.ok()) s = tx.Length(done_, &b);
      if (s.ok()) s = tx.Commit();
      if (s.ok()) {
        ++committed;
        if (a + b != kJobs) return 20;
      } else if (!s.IsConflict()) {
        return 21;
      }
    }
    return committed > 0 ? 0 : 22;
  }));
  for (pid_t child : children) {
    test::ChildExit exit = test::WaitChild(child, 120000);
    EXPECT_TRUE(exit.exited && exit.code == 0) << "child exit " << exit.code;
  }
  std::multiset<std::string> all;
  for (const std::string& item : Items(jobs_)) all.insert(item);
  for (const std::string& item : Items(done_)) all.insert(item);
  EXPECT_EQ(all.size(), static_cast<size_t>(kJobs));
  for (int i = 0; i < kJobs; ++i) EXPECT_EQ(all.count("job" + std::to_string(i)), 1u);
}

}  // namespace
}  // namespace shm
