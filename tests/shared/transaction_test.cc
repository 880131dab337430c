// shm::Transaction: staged writes seen by the transaction only, all or nothing at Commit,
// Conflict when a read changed (nothing applied), and serializable transfers between accounts
// from several processes at once, checked by readers in transactions.
#include "shm/transaction.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <string>
#include <vector>

#include "common/status_assert.h"
#include "common/test_util.h"
#include "shm/counter.h"
#include "shm/dict.h"
#include "shm/keyspace.h"
#include "shm/registry.h"
#include "test_clock.h"

namespace shm {
namespace {

std::string GetOr(const Dict& d, const std::string& key, const std::string& missing = "<none>") {
  DictValue v;
  Status s = d.Get(key, &v);
  return s.ok() ? v.data : missing;
}

class TransactionTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(Dict::Open(seg_.get(), "a", OpenMode::kCreateIfMissing, DictOptions(), &a_));
    ASSERT_OK(Dict::Open(seg_.get(), "b", OpenMode::kCreateIfMissing, DictOptions(), &b_));
  }
  test::ScopedSegment seg_{size_t{32} << 20, 256};
  Dict a_, b_;
};

TEST_F(TransactionTest, StagedWritesAreInvisibleUntilCommitThenAllVisible) {
  ASSERT_OK(a_.Set("x", "1", SetOptions()));
  Transaction tx(seg_.get());
  ASSERT_OK(tx.Set(a_, "x", "2"));
  ASSERT_OK(tx.Set(b_, "y", "3"));
  DictValue v;
  ASSERT_OK(tx.Get(a_, "x", &v));  // Read your own write.
  EXPECT_EQ(v.data, "2");
  EXPECT_EQ(GetOr(a_, "x"), "1");
  EXPECT_EQ(GetOr(b_, "y"), "<none>");
  EXPECT_EQ(tx.staged_writes(), 2u);
  ASSERT_OK(tx.Commit());
  EXPECT_EQ(GetOr(a_, "x"), "2");
  EXPECT_EQ(GetOr(b_, "y"), "3");
  EXPECT_EQ(tx.staged_writes(), 0u);
  ASSERT_OK(a_.Get("x", &v));
  EXPECT_GT(v.version, 0u);
}

TEST_F(TransactionTest, ConflictAppliesNothing) {
  ASSERT_OK(a_.Set("from", "10", SetOptions()));
  ASSERT_OK(a_.Set("to", "0", SetOptions()));
  Transaction tx(seg_.get());
  int64_t left = 0, right = 0;
  ASSERT_OK(tx.Incr(a_, "from", -3, 0, 0, &left));
  ASSERT_OK(tx.Incr(a_, "to", 3, 0, 0, &right));
  ASSERT_OK(tx.Set(b_, "log", "moved"));
  ASSERT_OK(a_.Set("from", "11", SetOptions()));  // Someone else, after the read.
  Status s = tx.Commit();
  EXPECT_TRUE(s.IsConflict()) << s.ToString();
  EXPECT_EQ(GetOr(a_, "from"), "11");
  EXPECT_EQ(GetOr(a_, "to"), "0");
  EXPECT_EQ(GetOr(b_, "log"), "<none>");
}

// Past the handful of keys a transaction finds by a scan, its staging is indexed: every key
// (the same names in two dicts are different entries) is found again, reads its own write, and
// a change by someone else to the last key read is a conflict.
TEST_F(TransactionTest, ManyKeysInTwoDictsAreEachTheirOwnEntry) {
  constexpr int kKeys = 40;
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_OK(a_.Set("k" + std::to_string(i), std::to_string(i), SetOptions()));
    ASSERT_OK(b_.Set("k" + std::to_string(i), std::to_string(1000 + i), SetOptions()));
  }
  for (bool disturb : {true, false}) {
    Transaction tx(seg_.get());
    for (int i = 0; i < kKeys; ++i) {
      int64_t ignored = 0;
      ASSERT_OK(tx.Incr(a_, "k" + std::to_string(i), 1, 0, 0, &ignored));
      ASSERT_OK(tx.Incr(b_, "k" + std::to_string(i), -1, 0, 0, &ignored));
    }
    for (int i = 0; i < kKeys; ++i) {
      DictValue v;
      ASSERT_OK(tx.Get(a_, "k" + std::to_string(i), &v));
      EXPECT_EQ(v.data, std::to_string(i + 1));
      ASSERT_OK(tx.Get(b_, "k" + std::to_string(i), &v));
      EXPECT_EQ(v.data, std::to_string(1000 + i - 1));
    }
    ASSERT_OK(tx.Expect(a_, "absent", std::nullopt));
    EXPECT_EQ(tx.staged_writes(), 2u * kKeys);
    if (disturb) ASSERT_OK(a_.Set("absent", "now here", SetOptions()));
    Status s = tx.Commit();
    if (disturb) {
      EXPECT_TRUE(s.IsConflict()) << s.ToString();
      EXPECT_EQ(GetOr(a_, "k7"), "7");
      ASSERT_OK(a_.Delete("absent"));
    } else {
      ASSERT_OK(s);
      for (int i = 0; i < kKeys; ++i) {
        EXPECT_EQ(GetOr(a_, "k" + std::to_string(i)), std::to_string(i + 1));
        EXPECT_EQ(GetOr(b_, "k" + std::to_string(i)), std::to_string(1000 + i - 1));
      }
    }
  }
}

TEST_F(TransactionTest, AbsenceIsARead) {
  Transaction tx(seg_.get());
  DictValue v;
  EXPECT_TRUE(tx.Get(a_, "k", &v).IsNotFound());
  ASSERT_OK(tx.Set(b_, "seen", "absent"));
  ASSERT_OK(a_.Set("k", "now here", SetOptions()));
  EXPECT_TRUE(tx.Commit().IsConflict());
  EXPECT_EQ(GetOr(b_, "seen"), "<none>");
}

// A commit first looks for a key read in the slot where the read found it (DictTxSlotHint): that
// shortcut must never decide. The entry moved to a new table, rewritten with the same bytes in
// place of the one read, deleted and written again, or expired since the read: each is judged
// as by a full look-up.
TEST_F(TransactionTest, ACommitJudgesAKeyReadWhereverItIsNow) {
  ASSERT_OK(a_.Set("k", "5", SetOptions()));
  ASSERT_OK(a_.Set("other", "1", SetOptions()));
  int64_t result = 0;
  {  // Moved: the inserts rebuild the shards' tables between the read and the commit.
    Transaction tx(seg_.get());
    ASSERT_OK(tx.Incr(a_, "k", 1, 0, 0, &result));
    ASSERT_OK(tx.Incr(a_, "other", -1, 0, 0, &result));
    for (int i = 0; i < 3000; ++i) ASSERT_OK(a_.Set("fill" + std::to_string(i), "v", SetOptions()));
    ASSERT_OK(tx.Commit());
    EXPECT_EQ(GetOr(a_, "k"), "6");
    EXPECT_EQ(GetOr(a_, "other"), "0");
    DictStats stats;
    ASSERT_OK(a_.Stats(&stats));
    EXPECT_EQ(stats.entries, 3002u);
  }
  {  // Rewritten with the very bytes read: a new write all the same.
    Transaction tx(seg_.get());
    ASSERT_OK(tx.Incr(a_, "k", 1, 0, 0, &result));
    ASSERT_OK(a_.Set("k", "6", SetOptions()));
    EXPECT_TRUE(tx.Commit().IsConflict());
    EXPECT_EQ(GetOr(a_, "k"), "6");
  }
  {  // Deleted and written again.
    Transaction tx(seg_.get());
    ASSERT_OK(tx.Incr(a_, "k", 1, 0, 0, &result));
    ASSERT_OK(a_.Delete("k"));
    ASSERT_OK(a_.Set("k", "6", SetOptions()));
    EXPECT_TRUE(tx.Commit().IsConflict());
    EXPECT_EQ(GetOr(a_, "k"), "6");
  }
  {  // Deleted only.
    Transaction tx(seg_.get());
    ASSERT_OK(tx.Incr(a_, "k", 1, 0, 0, &result));
    ASSERT_OK(a_.Delete("k"));
    EXPECT_TRUE(tx.Commit().IsConflict());
    EXPECT_EQ(GetOr(a_, "k"), "<none>");
  }
  {  // Expired in its slot (no one removed it): absent now, so the read changed.
    SetOptions ttl;
    ttl.ttl_ms = 60'000;
    ASSERT_OK(a_.Set("k", "6", ttl));
    ScopedWallClockForTesting clock;
    Transaction tx(seg_.get());
    ASSERT_OK(tx.Incr(a_, "k", 1, 0, 0, &result));
    clock.Advance(120'000);
    EXPECT_TRUE(tx.Commit().IsConflict());
  }
  {  // Unchanged: the commit applies, and a second transaction sees its write.
    ASSERT_OK(a_.Set("k", "6", SetOptions()));
    ASSERT_OK(Transaction::Run(
        seg_.get(), 1, [&](Transaction& tx) { return tx.Incr(a_, "k", 1, 0, 0, &result); }));
    ASSERT_OK(Transaction::Run(
        seg_.get(), 1, [&](Transaction& tx) { return tx.Incr(a_, "k", 1, 0, 0, &result); }));
    EXPECT_EQ(GetOr(a_, "k"), "8");
  }
}

TEST_F(TransactionTest, PreconditionsAndDeletes) {
  uint64_t version = 0;
  ASSERT_OK(a_.Set("k", "v", SetOptions(), &version));
  Transaction tx(seg_.get());
  EXPECT_TRUE(tx.Expect(a_, "k", version + 1000).IsConflict());
  EXPECT_OK(tx.Expect(a_, "k", version));
  EXPECT_OK(tx.Expect(a_, "other", std::nullopt));
  SetOptions add;
  add.mode = SetMode::kAdd;
  EXPECT_TRUE(tx.Set(a_, "k", "w", add).IsAlreadyExists());
  EXPECT_OK(tx.Delete(a_, "k", version));
  EXPECT_TRUE(tx.Delete(a_, "k").IsNotFound());  // Already deleted in this transaction.
  EXPECT_OK(tx.Set(a_, "other", "x", add));
  ASSERT_OK(tx.Commit());
  EXPECT_EQ(GetOr(a_, "k"), "<none>");
  EXPECT_EQ(GetOr(a_, "other"), "x");
}

TEST_F(TransactionTest, BadInputIsRefusedWhenStaged) {
  Transaction tx(seg_.get());
  EXPECT_TRUE(tx.Set(a_, std::string(Dict::kMaxKey + 1, 'k'), "v").IsInvalidArgument());
  EXPECT_TRUE(tx.Set(a_, "k", std::string(Dict::kMaxValue + 1, 'v')).IsInvalidArgument());
  SetOptions ctype;
  ctype.content_type = "bad\r\nheader";
  EXPECT_TRUE(tx.Set(a_, "k", "v", ctype).IsInvalidArgument());
  ASSERT_OK(a_.Set("text", "abc", SetOptions()));
  int64_t result = 0;
  EXPECT_TRUE(tx.Incr(a_, "text", 1, 0, 0, &result).IsInvalidArgument());
  // A time to live out of range: the dict's own rule and message, staged or not.
  SetOptions forever;
  forever.ttl_ms = Dict::kMaxTtlMs + 1;
  const Status plain = a_.Set("k", "v", forever);
  EXPECT_TRUE(plain.IsInvalidArgument());
  EXPECT_EQ(tx.Set(a_, "k", "v", forever).ToString(), plain.ToString());
  EXPECT_EQ(tx.Incr(a_, "n", 1, 0, -1, &result).ToString(),
            a_.Incr("n", 1, 0, -1, &result).ToString());
  EXPECT_EQ(tx.staged_writes(), 0u);
  ASSERT_OK(tx.Commit());
  EXPECT_EQ(GetOr(a_, "text"), "abc");
}

// Past kMaxOps operations (reads of absent keys count too) staging is refused with nothing more
// staged; what was staged still commits.
TEST_F(TransactionTest, OperationsPastTheLimitAreRefused) {
  Transaction tx(seg_.get());
  DictValue v;
  for (size_t i = 0; i + 1 < Transaction::kMaxOps; ++i) {
    ASSERT_TRUE(tx.Get(a_, "absent" + std::to_string(i), &v).IsNotFound());
  }
  ASSERT_OK(tx.Set(a_, "last", "fits"));
  EXPECT_TRUE(tx.Set(a_, "one", "too many").IsInvalidArgument());
  EXPECT_TRUE(tx.Get(a_, "another", &v).IsInvalidArgument());
  EXPECT_EQ(tx.staged_writes(), 1u);
  ASSERT_OK(tx.Commit());
  EXPECT_EQ(GetOr(a_, "last"), "fits");
  EXPECT_EQ(GetOr(a_, "one"), "<none>");
}

TEST_F(TransactionTest, ManyInsertsIntoOneDictGrowItsTables) {
  Transaction tx(seg_.get());
  for (int i = 0; i < 3000; ++i) ASSERT_OK(tx.Set(a_, "k" + std::to_string(i), "v"));
  ASSERT_OK(tx.Commit());
  DictStats stats;
  ASSERT_OK(a_.Stats(&stats));
  EXPECT_EQ(stats.entries, 3000u);
  for (int i = 0; i < 3000; i += 97) EXPECT_EQ(GetOr(a_, "k" + std::to_string(i)), "v");
}

TEST_F(TransactionTest, DeletedDictMakesCommitNotFoundAndNothingApplied) {
  Transaction tx(seg_.get());
  ASSERT_OK(tx.Set(a_, "k", "v"));
  ASSERT_OK(tx.Set(b_, "k", "v"));
  ASSERT_OK(seg_->registry().Delete("a"));
  Status s = tx.Commit();
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_EQ(GetOr(b_, "k"), "<none>");
}

TEST_F(TransactionTest, RunRetriesOnConflict) {
  ASSERT_OK(a_.Set("n", "0", SetOptions()));
  int calls = 0;
  ASSERT_OK(Transaction::Run(seg_.get(), 5, [&](Transaction& tx) {
    int64_t n = 0;
    SHM_RETURN_IF_ERROR(tx.Incr(a_, "n", 1, 0, 0, &n));
    if (++calls == 1) SHM_RETURN_IF_ERROR(a_.Set("n", "100", SetOptions()));  // Interferes once.
    return Status::OK();
  }));
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(GetOr(a_, "n"), "101");
  // fn's own error aborts with nothing applied.
  Status s = Transaction::Run(seg_.get(), 5, [&](Transaction& tx) {
    SHM_RETURN_IF_ERROR(tx.Set(a_, "n", "999"));
    return Status::InvalidArgument("changed my mind");
  });
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_EQ(GetOr(a_, "n"), "101");
}

TEST_F(TransactionTest, KeyspaceStringsRenameAndDeleteOfAList) {
  Keyspace ks;
  ASSERT_OK(Keyspace::Open(seg_.get(), 0, &ks));
  StringSetResult set;
  ASSERT_OK(ks.Set("s", "1", StringSet(), &set));
  ASSERT_OK(ks.WithList("l", Keyspace::Access::kCreate,
                        [](List& l) { return l.Push(List::End::kRight, "item"); }));
  uint64_t watched = 0;
  ASSERT_OK(ks.Version("l", &watched));
  Transaction tx(seg_.get());
  ASSERT_OK(tx.Watch(ks, "l", watched));
  int64_t n = 0;
  ASSERT_OK(tx.IncrBy(ks, "s", 41, &n));
  EXPECT_EQ(n, 42);
  std::string value;
  EXPECT_TRUE(tx.Get(ks, "l", &value).IsWrongType());
  bool renamed = false;
  ASSERT_OK(tx.Rename(ks, "s", "t", false, &renamed));
  EXPECT_TRUE(renamed);
  bool existed = false;
  ASSERT_OK(tx.Delete(ks, "l", &existed));
  EXPECT_TRUE(existed);
  ASSERT_OK(tx.Commit());
  KeyType type;
  ASSERT_OK(ks.Type("s", &type));
  EXPECT_EQ(type, KeyType::kNone);
  ASSERT_OK(ks.Get("t", &value));
  EXPECT_EQ(value, "42");
  ASSERT_OK(ks.Type("l", &type));
  EXPECT_EQ(type, KeyType::kNone);
  std::vector<ObjectInfo> objects;  // The list went with its key.
  ASSERT_OK(seg_->registry().List("redis:0:", ObjectKind::kNone, 100, "", &objects));
  EXPECT_TRUE(objects.empty());
}

TEST_F(TransactionTest, WatchSeesAPushToAList) {
  Keyspace ks;
  ASSERT_OK(Keyspace::Open(seg_.get(), 0, &ks));
  ASSERT_OK(ks.WithList("l", Keyspace::Access::kCreate,
                        [](List& l) { return l.Push(List::End::kRight, "a"); }));
  uint64_t watched = 0;
  ASSERT_OK(ks.Version("l", &watched));
  Transaction tx(seg_.get());
  ASSERT_OK(tx.Watch(ks, "l", watched));
  StringSetResult set;
  ASSERT_OK(tx.Set(ks, "flag", "1", StringSet(), &set));
  ASSERT_OK(ks.WithList("l", Keyspace::Access::kWrite,
                        [](List& l) { return l.Push(List::End::kRight, "b"); }));
  EXPECT_TRUE(tx.Commit().IsConflict());
  KeyType type;
  ASSERT_OK(ks.Type("flag", &type));
  EXPECT_EQ(type, KeyType::kNone);
}

// A plain string write stages without reading the key (MSET's pairs): whatever the key holds at
// the commit is replaced, a list or hash that appeared after the staging included, and that list
// or hash is deleted with it (no object left that no key names). A later DEL of the key in the
// same transaction still deletes what the key held.
TEST_F(TransactionTest, BlindStringWritesReplaceWhatTheKeyHoldsAtTheCommit) {
  Keyspace ks;
  ASSERT_OK(Keyspace::Open(seg_.get(), 0, &ks));
  ASSERT_OK(ks.WithList("old-list", Keyspace::Access::kCreate,
                        [](List& l) { return l.Push(List::End::kRight, "a"); }));
  StringSetResult set;
  Transaction tx(seg_.get());
  ASSERT_OK(tx.Set(ks, "old-list", "s1", StringSet(), &set));
  EXPECT_TRUE(set.written);
  ASSERT_OK(tx.Set(ks, "later-list", "s2", StringSet(), &set));
  ASSERT_OK(tx.Set(ks, "later-hash", "s3", StringSet(), &set));
  ASSERT_OK(tx.Set(ks, "deleted", "s4", StringSet(), &set));
  bool existed = false;
  ASSERT_OK(tx.Delete(ks, "deleted", &existed));
  EXPECT_TRUE(existed);  // The transaction's own staged string.
  // After the staging, other clients make lists and a hash of three of the keys.
  ASSERT_OK(ks.WithList("later-list", Keyspace::Access::kCreate,
                        [](List& l) { return l.Push(List::End::kRight, "b"); }));
  ASSERT_OK(ks.WithHash("later-hash", Keyspace::Access::kCreate,
                        [](Dict& h) { return h.Set("f", "v", SetOptions()); }));
  ASSERT_OK(ks.WithList("deleted", Keyspace::Access::kCreate,
                        [](List& l) { return l.Push(List::End::kRight, "c"); }));
  ASSERT_OK(tx.Commit());
  const std::pair<const char*, const char*> strings[] = {
      {"old-list", "s1"}, {"later-list", "s2"}, {"later-hash", "s3"}};
  for (const auto& [key, expected] : strings) {
    std::string value;
    EXPECT_TRUE(ks.Get(key, &value).ok()) << key;
    EXPECT_EQ(value, expected) << key;
  }
  KeyType type = KeyType::kString;
  ASSERT_OK(ks.Type("deleted", &type));
  EXPECT_EQ(type, KeyType::kNone);
  std::vector<ObjectInfo> objects;  // Every list and hash went with its key.
  ASSERT_OK(seg_->registry().List("redis:0:", ObjectKind::kNone, 100, "", &objects));
  EXPECT_TRUE(objects.empty()) << objects.size() << " left, first " << objects[0].name;
}

// Processes transfer random amounts between 16 accounts (two dict entries each, on several
// shards and both dicts) while readers sum all 16 in read-only transactions: every committed
// reader sees the exact total, and afterwards the total is exact and the number of transfers
// logged equals the number acknowledged.
TEST_F(TransactionTest, ConcurrentTransfersKeepTheTotalForEveryReader) {
  constexpr int kAccounts = 16;
  constexpr int64_t kStart = 1000;
  constexpr int kWriters = 2, kReaders = 1, kTransfers = 1500;
  auto account = [&](int i) -> std::pair<Dict*, std::string> {
    return {i % 2 == 0 ? &a_ : &b_, "acct" + std::to_string(i)};
  };
  for (int i = 0; i < kAccounts; ++i) {
    auto [d, key] = account(i);
    ASSERT_OK(d->Set(key, std::to_string(kStart), SetOptions()));
  }
  Segment* seg = seg_.get();
  std::vector<pid_t> children;
  for (int w = 0; w < kWriters; ++w) {
    children.push_back(test::ForkChild([&, w] {
      std::mt19937 rng(7 + w);
      for (int n = 0; n < kTransfers; ++n) {
        const int from = static_cast<int>(rng() % kAccounts);
        const int to = (from + 1 + static_cast<int>(rng() % (kAccounts - 1))) % kAccounts;
        const int64_t amount = static_cast<int64_t>(rng() % 50);
        Status s = Transaction::Run(seg, 1000, [&](Transaction& tx) {
          int64_t ignored = 0;
          auto [fd, fk] = account(from);
          auto [td, tk] = account(to);
          SHM_RETURN_IF_ERROR(tx.Incr(*fd, fk, -amount, 0, 0, &ignored));
          SHM_RETURN_IF_ERROR(tx.Incr(*td, tk, amount, 0, 0, &ignored));
          return tx.Set(b_, "log:" + std::to_string(w) + ":" + std::to_string(n), "1");
        });
        if (!s.ok()) return 10;
      }
      return 0;
    }));
  }
  for (int r = 0; r < kReaders; ++r) {
    children.push_back(test::ForkChild([&] {
      int committed = 0;
      for (int n = 0; n < 3000; ++n) {
        int64_t total = 0;
        Transaction tx(seg);
        bool bad = false;
        for (int i = 0; i < kAccounts; ++i) {
          auto [d, key] = account(i);
          DictValue v;
          if (!tx.Get(*d, key, &v).ok()) bad = true;
          total += bad ? 0 : std::stoll(v.data);
        }
        Status s = bad ? Status::Conflict("read failed") : tx.Commit();
        if (s.ok()) {
          ++committed;
          if (total != kAccounts * kStart) return 20;  // A committed reader saw a torn total.
        } else if (!s.IsConflict()) {
          return 21;
        }
      }
      return committed > 0 ? 0 : 22;
    }));
  }
  for (pid_t child : children) {
    test::ChildExit exit = test::WaitChild(child, 120000);
    EXPECT_TRUE(exit.exited && exit.code == 0) << "child exit " << exit.code;
  }
  int64_t total = 0;
  for (int i = 0; i < kAccounts; ++i) {
    auto [d, key] = account(i);
    total += std::stoll(GetOr(*d, key, "0"));
  }
  EXPECT_EQ(total, kAccounts * kStart);
  std::vector<std::string> keys;
  uint64_t cursor = 0;
  size_t logged = 0;
  do {
    ASSERT_OK(b_.ListKeys("log:", 1000, cursor, &keys, &cursor));
    logged += keys.size();
  } while (cursor != 0);
  EXPECT_EQ(logged, static_cast<size_t>(kWriters * kTransfers));
}

Counter OpenCounter(Segment* seg, const std::string& name, int64_t init) {
  Counter c;
  Counter::Options options;
  options.mode = OpenMode::kCreateIfMissing;
  options.init = init;
  EXPECT_TRUE(Counter::Open(seg, name, options, &c).ok());
  return c;
}

TEST_F(TransactionTest, CountersJoinTransactions) {
  Counter hits = OpenCounter(seg_.get(), "hits", 10);
  Transaction tx(seg_.get());
  int64_t n = 0;
  ASSERT_OK(tx.Add(hits, 5, &n));
  EXPECT_EQ(n, 15);
  ASSERT_OK(tx.Get(hits, &n));  // Its own write.
  EXPECT_EQ(n, 15);
  ASSERT_OK(tx.Set(a_, "log", "hit"));
  int64_t outside = 0;
  ASSERT_OK(hits.Get(&outside));
  EXPECT_EQ(outside, 10);
  ASSERT_OK(tx.Commit());
  ASSERT_OK(hits.Get(&outside));
  EXPECT_EQ(outside, 15);
  ASSERT_OK(hits.Add(1, &outside));  // The fast path works after a transaction.
  EXPECT_EQ(outside, 16);
  // A read that changed is a conflict; nothing applied.
  Transaction late(seg_.get());
  ASSERT_OK(late.Add(hits, 100, &n));
  ASSERT_OK(late.Set(a_, "log", "late"));
  ASSERT_OK(hits.Add(1, &outside));
  EXPECT_TRUE(late.Commit().IsConflict());
  ASSERT_OK(hits.Get(&outside));
  EXPECT_EQ(outside, 17);
  EXPECT_EQ(GetOr(a_, "log"), "hit");
  // Out of a transaction's range: refused when staged.
  EXPECT_TRUE(tx.Set(hits, int64_t{1} << 62).IsInvalidArgument());
}

// Transactions move amounts between three counters while another process adds 1 to the first
// with plain (fast-path) adds: no add is lost or doubled by the commits' locks, and readers in
// transactions see a total that only grows, within its bounds.
TEST_F(TransactionTest, CounterTransfersBesidePlainAdds) {
  constexpr int64_t kStart = 100000;
  constexpr int kAdds = 20000;
  std::vector<Counter> c = {OpenCounter(seg_.get(), "c0", kStart),
                            OpenCounter(seg_.get(), "c1", kStart),
                            OpenCounter(seg_.get(), "c2", kStart)};
  Segment* seg = seg_.get();
  std::vector<pid_t> children;
  children.push_back(test::ForkChild([&] {
    int64_t v = 0;
    for (int i = 0; i < kAdds; ++i) {
      if (!c[0].Add(1, &v).ok()) return 10;
    }
    return 0;
  }));
  children.push_back(test::ForkChild([&] {
    std::mt19937 rng(5);
    for (int i = 0; i < 3000; ++i) {
      const int from = static_cast<int>(rng() % 3), to = (from + 1 + rng() % 2) % 3;
      const int64_t amount = rng() % 100;
      Status s = Transaction::Run(seg, 1000, [&](Transaction& tx) {
        int64_t ignored = 0;
        SHM_RETURN_IF_ERROR(tx.Add(c[from], -amount, &ignored));
        return tx.Add(c[to], amount, &ignored);
      });
      if (!s.ok()) return 11;
    }
    return 0;
  }));
  // The total only grows (plain adds; transfers keep it): a committed reader that saw a
  // transfer half done, or an add undone, would see it fall or leave the bounds.
  children.push_back(test::ForkChild([&] {
    int64_t last = 3 * kStart;
    for (int i = 0; i < 3000; ++i) {
      Transaction tx(seg);
      int64_t total = 0;
      bool read = true;
      for (Counter& counter : c) {
        int64_t v = 0;
        read = read && tx.Get(counter, &v).ok();
        total += v;
      }
      Status s = read ? tx.Commit() : Status::Conflict("read failed");
      if (s.ok()) {
        if (total < last || total > 3 * kStart + kAdds) return 20;
        last = total;
      } else if (!s.IsConflict()) {
        return 21;
      }
    }
    return 0;
  }));
  for (pid_t child : children) {
    test::ChildExit exit = test::WaitChild(child, 120000);
    EXPECT_TRUE(exit.exited && exit.code == 0) << "child exit " << exit.code;
  }
  int64_t total = 0;
  for (Counter& counter : c) {
    int64_t v = 0;
    ASSERT_OK(counter.Get(&v));
    total += v;
  }
  EXPECT_EQ(total, 3 * kStart + kAdds);
}

}  // namespace
}  // namespace shm
