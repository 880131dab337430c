// Crash tests of lists and hash fields in transactions: a committer dies at each step of a commit
// that pops and pushes at both ends of registry lists and keys' lists and writes hash fields, a
// repairer dies while settling a list's share, and movers of jobs between lists are SIGKILLed at
// random (kill loop) while a reader counts the jobs in transactions. Afterwards every transaction
// is applied wholly or not at all, exactly once: no job is lost or duplicated.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/status_assert.h"
#include "common/test_util.h"
#include "crash_point.h"
#include "shm/counter.h"
#include "shm/keyspace.h"
#include "shm/list.h"
#include "shm/registry.h"
#include "shm/transaction.h"
#include "tx_crash_harness.h"

namespace shm {
namespace {

struct Objects {
  List jobs, done;
  Keyspace ks;
  Counter moves;
  Status Open(Segment* seg) {
    Counter::Options options;
    options.mode = OpenMode::kCreateIfMissing;
    SHM_RETURN_IF_ERROR(Counter::Open(seg, "moves", options, &moves));
    SHM_RETURN_IF_ERROR(List::Open(seg, "jobs", OpenMode::kCreateIfMissing, ListOptions(), &jobs));
    SHM_RETURN_IF_ERROR(List::Open(seg, "done", OpenMode::kCreateIfMissing, ListOptions(), &done));
    return Keyspace::Open(seg, 0, &ks);
  }
};

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += item + ",";
  return out;
}

std::string KeyList(Keyspace& ks, const std::string& key) {
  std::vector<std::string> items;
  Status s =
      ks.WithList(key, Keyspace::Access::kRead, [&](List& l) { return l.Range(0, -1, &items); });
  if (s.IsNotFound()) return "-";
  return s.ok() ? Join(items) : "?" + s.ToString();
}

std::string HashField(Keyspace& ks, const std::string& key, const std::string& field) {
  std::string value = "-";
  Status s = ks.WithHash(key, Keyspace::Access::kRead, [&](Dict& d) {
    DictValue v;
    Status got = d.Get(field, &v);
    if (got.ok()) value = v.data;
    return got.IsNotFound() ? Status::OK() : got;
  });
  return s.ok() || s.IsNotFound() ? value : "?";
}

std::map<std::string, std::string> Snapshot(Objects& o) {
  std::map<std::string, std::string> out;
  std::vector<std::string> items;
  out["jobs"] = o.jobs.Range(0, -1, &items).ok() ? Join(items) : "?";
  out["done"] = o.done.Range(0, -1, &items).ok() ? Join(items) : "?";
  out["ks/q"] = KeyList(o.ks, "q");
  out["ks/fresh"] = KeyList(o.ks, "fresh");
  out["ks/mid"] = KeyList(o.ks, "mid");
  out["ks/h f"] = HashField(o.ks, "h", "f");
  out["ks/h g"] = HashField(o.ks, "h", "g");
  out["ks/gone f"] = HashField(o.ks, "gone", "f");
  std::string fields;  // In insertion order: a field deleted and set again goes last.
  Status s = o.ks.WithHash("ord", Keyspace::Access::kRead, [&](Dict& d) {
    std::vector<DictItem> listed;
    SHM_RETURN_IF_ERROR(d.Entries(true, &listed));
    for (const DictItem& item : listed) fields += item.key + "=" + item.value + ",";
    return Status::OK();
  });
  out["ks/ord"] = s.ok() ? fields : "?";
  int64_t moves = 0;
  out["moves"] = o.moves.Get(&moves).ok() ? std::to_string(moves) : "?";
  return out;
}

Status Populate(Objects& o) {
  for (const char* job : {"j0", "j1", "j2", "j3", "j4"}) {
    SHM_RETURN_IF_ERROR(o.jobs.Push(List::End::kRight, job));
  }
  SHM_RETURN_IF_ERROR(o.done.Push(List::End::kRight, "d0"));
  SHM_RETURN_IF_ERROR(o.ks.WithList("q", Keyspace::Access::kCreate, [](List& l) {
    SHM_RETURN_IF_ERROR(l.Push(List::End::kRight, "q0"));
    return l.Push(List::End::kRight, "q1");
  }));
  SHM_RETURN_IF_ERROR(o.ks.WithList("mid", Keyspace::Access::kCreate, [](List& l) {
    for (const char* item : {"m0", "m1", "m2"})
      SHM_RETURN_IF_ERROR(l.Push(List::End::kRight, item));
    return Status::OK();
  }));
  auto set = [](const char* field, const char* value) {
    return [=](Dict& d) { return d.Set(field, value, SetOptions()); };
  };
  SHM_RETURN_IF_ERROR(o.ks.WithHash("h", Keyspace::Access::kCreate, set("f", "1")));
  for (const char* field : {"x", "y", "z"}) {
    SHM_RETURN_IF_ERROR(o.ks.WithHash("ord", Keyspace::Access::kCreate, set(field, "1")));
  }
  return o.ks.WithHash("gone", Keyspace::Access::kCreate, set("f", "x"));
}

// Jobs moved at both ends of two registry lists, a key's list emptied (its key goes), another
// created, hash fields set and deleted (one hash's last), a counter added: one transaction.
Status RunTransaction(Segment* seg, Objects& o) {
  Transaction tx(seg);
  std::string item;
  bool got = false;
  SHM_RETURN_IF_ERROR(tx.Pop(o.jobs, List::End::kLeft, &item, &got));
  SHM_RETURN_IF_ERROR(tx.Push(o.done, List::End::kRight, item));
  SHM_RETURN_IF_ERROR(tx.Pop(o.jobs, List::End::kRight, &item, &got));
  SHM_RETURN_IF_ERROR(tx.Push(o.done, List::End::kLeft, item));
  for (int i = 0; i < 2; ++i) {
    SHM_RETURN_IF_ERROR(tx.Pop(o.ks, "q", List::End::kLeft, &item, &got));
    SHM_RETURN_IF_ERROR(tx.Push(o.jobs, List::End::kLeft, item));
  }
  SHM_RETURN_IF_ERROR(tx.Push(o.ks, "fresh", List::End::kRight, "n0"));
  SHM_RETURN_IF_ERROR(tx.HashSet(o.ks, "h", "g", "2"));
  bool existed = false;
  SHM_RETURN_IF_ERROR(tx.HashDelete(o.ks, "h", "f", &existed));
  // Deleted and set again: its blob takes the last place when applied, by a repairer too.
  SHM_RETURN_IF_ERROR(tx.HashDelete(o.ks, "ord", "x", &existed));
  SHM_RETURN_IF_ERROR(tx.HashSet(o.ks, "ord", "x", "X"));
  {  // A command's hash (HDEL) lent into the transaction: the key goes with its last field.
    KeyspaceTransactionScope scope(&tx);
    SHM_RETURN_IF_ERROR(
        o.ks.WithHash("gone", Keyspace::Access::kWrite, [](Dict& d) { return d.Delete("f"); }));
    // An edit in a list's middle (LSET, LINSERT, LREM, LTRIM): a replacement list built, the key
    // staged to name it (one change of the record).
    SHM_RETURN_IF_ERROR(o.ks.RewriteList("mid", [](std::vector<std::string>* items) {
      std::reverse(items->begin(), items->end());
      return Status::OK();
    }));
    if (scope.unsupported()) return Status::Internal("HDEL or LSET did not join the transaction");
  }
  int64_t n = 0;
  SHM_RETURN_IF_ERROR(tx.Add(o.moves, 4, &n));
  return tx.Commit();
}

using test::TxCrashCase;
using test::TxState;

class TransactionListCrashPointTest : public testing::TestWithParam<TxCrashCase> {};

TEST_P(TransactionListCrashPointTest, DeathAtEachStepLeavesAllOrNothing) {
  test::ScopedSegment seg(test::kTxCrashSegmentBytes, test::kTxCrashRegistryEntries);
  Objects o;
  TxState before, after;
  ASSERT_NO_FATAL_FAILURE(test::DieInTransactionAndRecover(
      GetParam(), test::TxScenario<Objects>{Populate, Snapshot, RunTransaction}, seg.get(), &o,
      &before, &after));
  EXPECT_EQ(after.at("jobs"), "q1,q0,j1,j2,j3,");
  EXPECT_EQ(after.at("done"), "j4,d0,j0,");
  EXPECT_EQ(after.at("ks/q"), "-");
  EXPECT_EQ(after.at("ks/gone f"), "-");
  EXPECT_EQ(after.at("ks/mid"), "m2,m1,m0,");
  EXPECT_EQ(after.at("ks/ord"), "y=1,z=1,x=X,");
  // Every lock the child died holding works, and the lists take transactions and plain writes.
  Transaction again(seg.get());
  std::string item;
  bool got = false;
  ASSERT_OK(again.Pop(o.jobs, List::End::kLeft, &item, &got));
  ASSERT_TRUE(got);
  ASSERT_OK(again.Push(o.done, List::End::kRight, item));
  ASSERT_OK(again.Push(o.ks, "q", List::End::kRight, "again"));
  ASSERT_OK(again.Commit());
  ASSERT_OK(o.jobs.Push(List::End::kLeft, "plain"));
  ASSERT_OK(o.done.Pop(List::End::kRight, std::chrono::milliseconds(0), &item, &got));
  EXPECT_TRUE(got);
  ASSERT_OK(seg->Probe());
}

INSTANTIATE_TEST_SUITE_P(
    EveryStep, TransactionListCrashPointTest,
    testing::Values(TxCrashCase{"tx_after_record", 1, false},
                    TxCrashCase{"tx_after_list_record", 1, false},
                    // The middle edit's replacement list built, no key names it: it leaks.
                    TxCrashCase{"tx_after_list_replacement", 1, false},
                    TxCrashCase{"tx_before_commit", 1, false},  // Lists' write counts bumped only.
                    TxCrashCase{"tx_after_commit", 1, true},    // Nothing applied: rolled forward.
                    TxCrashCase{"tx_after_counter", 1, true},
                    TxCrashCase{"tx_list_after_slots", 1, true},  // One list's slots, not its ends.
                    TxCrashCase{"tx_after_list", 1, true},        // One list applied, not released.
                    TxCrashCase{"tx_list_after_slots", 2, true},  // The second list midway.
                    TxCrashCase{"tx_after_list", 4, true},        // Every list, no stripe yet.
                    TxCrashCase{"tx_after_apply", 2, true},       // Stripes midway.
                    TxCrashCase{"tx_after_apply_all", 1, true},
                    TxCrashCase{"tx_before_orphan_delete", 1, true},
                    // The last orphan (q's list, gone's hash, mid's list replaced): it leaks.
                    TxCrashCase{"tx_before_orphan_delete", 3, true}),
    test::TxCrashCaseName);

// The same transaction run while the committer holds every shard lock of the keyspace
// (KeyspaceExclusive: what EXEC does after a batch kept conflicting): its commit uses those
// stripes without locking them again and gives their tx_record back the batch's mark, and a
// death at each step still leaves all or nothing.
Status RunTransactionHoldingTheKeyspace(Segment* seg, Objects& o) {
  KeyspaceExclusive locks;
  SHM_RETURN_IF_ERROR(locks.Lock(o.ks));
  return RunTransaction(seg, o);
}

class TransactionUnderExclusiveCrashPointTest : public testing::TestWithParam<TxCrashCase> {};

TEST_P(TransactionUnderExclusiveCrashPointTest, DeathAtEachStepLeavesAllOrNothing) {
  test::ScopedSegment seg(test::kTxCrashSegmentBytes, test::kTxCrashRegistryEntries);
  Objects o;
  TxState before, after;
  ASSERT_NO_FATAL_FAILURE(test::DieInTransactionAndRecover(
      GetParam(), test::TxScenario<Objects>{Populate, Snapshot, RunTransactionHoldingTheKeyspace},
      seg.get(), &o, &before, &after));
  EXPECT_EQ(after.at("ks/mid"), "m2,m1,m0,");
  // The keyspace's locks and marks work again: a transaction and a plain write.
  Transaction again(seg.get());
  ASSERT_OK(again.Push(o.ks, "q", List::End::kRight, "again"));
  ASSERT_OK(again.Commit());
  EXPECT_EQ(KeyList(o.ks, "q"), GetParam().applied ? "again," : "q0,q1,again,");
  StringSetResult result;
  ASSERT_OK(o.ks.Set("plain", "1", StringSet(), &result));
  ASSERT_OK(seg->Probe());
}

INSTANTIATE_TEST_SUITE_P(EveryStep, TransactionUnderExclusiveCrashPointTest,
                         testing::Values(TxCrashCase{"tx_after_list_replacement", 1, false},
                                         TxCrashCase{"tx_before_commit", 1, false},
                                         TxCrashCase{"tx_after_commit", 1, true},
                                         TxCrashCase{"tx_after_apply", 2, true},
                                         TxCrashCase{"tx_after_apply_all", 1, true}),
                         test::TxCrashCaseName);

// The committer dies after its commit word; the first process to take one of its lists dies
// while applying that list's share; the next holder applies it again (idempotently).
TEST(TransactionListCrashTest, RepairerDyingMidSettleIsSettledAgain) {
  test::ScopedSegment seg(test::kTxCrashSegmentBytes, test::kTxCrashRegistryEntries);
  Objects o;
  pid_t committer = 0;
  ASSERT_NO_FATAL_FAILURE(test::CommitAndDie(
      test::TxScenario<Objects>{Populate, Snapshot, RunTransaction}, seg.get(), &o, &committer));
  std::vector<pid_t> repairers;  // Recovered at the end: recovery settles every list.
  for (const char* point : {"tx_list_after_slots", "tx_settle_list"}) {
    pid_t repairer = 0;
    ASSERT_NO_FATAL_FAILURE(test::SettleAndDie<Objects>(
        point, seg.get(),
        [](Objects& mine) {
          uint64_t length = 0;
          return mine.done.Length(&length);  // Takes done's lock: settles, dies.
        },
        &repairer));
    repairers.push_back(repairer);
  }
  for (pid_t repairer : repairers) ASSERT_OK(seg->RecoverDeadProcess(repairer, nullptr));
  ASSERT_OK(seg->RecoverDeadProcess(committer, nullptr));
  const auto now = Snapshot(o);
  EXPECT_EQ(now.at("jobs"), "q1,q0,j1,j2,j3,");
  EXPECT_EQ(now.at("done"), "j4,d0,j0,");
  EXPECT_EQ(now.at("ks/q"), "-");
  EXPECT_EQ(now.at("ks/fresh"), "n0,");
  EXPECT_EQ(now.at("ks/h g"), "2");
  EXPECT_EQ(now.at("ks/h f"), "-");
  EXPECT_EQ(now.at("moves"), "4");
  uint64_t length = 0;
  ASSERT_OK(o.done.Length(&length));
  EXPECT_EQ(length, 3u);  // head and tail were derived again.
}

// Movers take a job from one of three lists (two registry lists and a key's list, either end)
// and put it on another (either end), counting the move in the same transaction, while being
// SIGKILLed at random, 20 rounds, fixed seed; a reader counts the jobs of all three lists in
// transactions the whole time. Afterwards every job is in exactly one list once, and the move
// counter is every acknowledged move plus at most the one in flight.
TEST(TransactionListCrashLoopTest, SigkilledMovesLoseAndDuplicateNothing) {
  constexpr int kJobs = 40;
  constexpr int kRounds = 20;
  std::mt19937 rng(20261206);
  auto seg = std::make_unique<test::ScopedSegment>(test::kTxCrashSegmentBytes,
                                                   test::kTxCrashRegistryEntries);
  auto populate = [&](Segment* s) {
    Objects o;
    EXPECT_TRUE(o.Open(s).ok());
    for (int i = 0; i < kJobs; ++i) {
      EXPECT_TRUE(o.jobs.Push(List::End::kRight, "job" + std::to_string(i)).ok());
    }
  };
  populate(seg->get());
  int64_t acknowledged = 0;
  int poisoned = 0;
  int64_t reads_checked = 0;
  for (int round = 0; round < kRounds; ++round) {
    int fds[2], rfds[2];
    ASSERT_EQ(pipe(fds), 0);
    ASSERT_EQ(pipe(rfds), 0);
    const uint32_t child_seed = rng();
    Segment* segment = seg->get();
    pid_t reader = test::ForkChild([&] {
      close(rfds[0]);
      close(fds[0]);
      close(fds[1]);
      Objects o;
      if (!o.Open(segment).ok()) return 2;
      for (;;) {
        Transaction tx(segment);
        uint64_t a = 0, b = 0, q = 0;
        if (!tx.Length(o.jobs, &a).ok() || !tx.Length(o.done, &b).ok() ||
            !tx.Length(o.ks, "q", &q).ok() || !tx.Commit().ok()) {
          continue;
        }
        const char* verdict = a + b + q == kJobs ? "+" : "!";
        if (write(rfds[1], verdict, 1) < 0) return 1;
      }
    });
    pid_t child = test::ForkChild([&] {
      close(fds[0]);
      close(rfds[0]);
      close(rfds[1]);
      Objects o;
      if (!o.Open(segment).ok()) return 2;
      std::mt19937 crng(child_seed);
      for (;;) {
        const int from = static_cast<int>(crng() % 3);
        const int to = (from + 1 + static_cast<int>(crng() % 2)) % 3;
        const auto from_end = crng() % 2 == 0 ? List::End::kLeft : List::End::kRight;
        const auto to_end = crng() % 2 == 0 ? List::End::kLeft : List::End::kRight;
        bool moved = false;
        Status s = Transaction::Run(segment, 100, [&](Transaction& tx) {
          std::string item;
          bool got = false;
          moved = false;
          SHM_RETURN_IF_ERROR(from == 2
                                  ? tx.Pop(o.ks, "q", from_end, &item, &got)
                                  : tx.Pop(from == 0 ? o.jobs : o.done, from_end, &item, &got));
          if (!got) return Status::OK();
          SHM_RETURN_IF_ERROR(to == 2 ? tx.Push(o.ks, "q", to_end, item)
                                      : tx.Push(to == 0 ? o.jobs : o.done, to_end, item));
          int64_t n = 0;
          moved = true;
          return tx.Add(o.moves, 1, &n);
        });
        if (!s.ok()) return 3;
        if (moved && write(fds[1], "m", 1) < 0) return 1;
      }
    });
    close(fds[1]);
    close(rfds[1]);
    const int acks_before_kill = 1 + static_cast<int>(rng() % 300);
    int acks = 0;
    char c = 0;
    while (acks < acks_before_kill && read(fds[0], &c, 1) == 1) ++acks;
    kill(child, SIGKILL);
    while (read(fds[0], &c, 1) == 1) ++acks;  // Acknowledged before the kill landed.
    close(fds[0]);
    bool recovered = false;
    ASSERT_NO_FATAL_FAILURE(
        test::EndKillRound(seg->get(), child, reader, rfds[0], &reads_checked, &recovered));
    if (!recovered) {
      ++poisoned;  // Killed inside the allocator: the manager would rebuild. Start afresh.
      seg = std::make_unique<test::ScopedSegment>(test::kTxCrashSegmentBytes,
                                                  test::kTxCrashRegistryEntries);
      populate(seg->get());
      acknowledged = 0;
      continue;
    }
    acknowledged += acks;
    Objects o;
    ASSERT_OK(o.Open(seg->get()));
    std::multiset<std::string> all;
    std::vector<std::string> items;
    ASSERT_OK(o.jobs.Range(0, -1, &items));
    all.insert(items.begin(), items.end());
    ASSERT_OK(o.done.Range(0, -1, &items));
    all.insert(items.begin(), items.end());
    Status s = o.ks.WithList("q", Keyspace::Access::kRead,
                             [&](List& l) { return l.Range(0, -1, &items); });
    ASSERT_TRUE(s.ok() || s.IsNotFound()) << s.ToString();
    if (s.ok()) all.insert(items.begin(), items.end());
    ASSERT_EQ(all.size(), static_cast<size_t>(kJobs)) << "round " << round;
    for (int i = 0; i < kJobs; ++i) {
      ASSERT_EQ(all.count("job" + std::to_string(i)), 1u) << "job " << i << " round " << round;
    }
    int64_t moves = 0;
    ASSERT_OK(o.moves.Get(&moves));
    ASSERT_GE(moves, acknowledged) << "an acknowledged move was lost, round " << round;
    ASSERT_LE(moves, acknowledged + 1) << "more moves than made, round " << round;
    acknowledged = moves;  // The one in flight, if it committed, counts from here on.
  }
  EXPECT_LT(poisoned, kRounds / 2);
  EXPECT_GT(reads_checked, 0);
}

}  // namespace
}  // namespace shm
