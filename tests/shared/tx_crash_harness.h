// The harness of the transaction crash tests (transaction_crash_test.cc,
// transaction_lists_crash_test.cc): a scenario is a set of objects (Objects::Open), a starting
// state (populate), what the test reads back (snapshot) and one transaction (run). A child
// process runs the transaction and dies at a named crash point; after the manager's recovery of
// the dead process, the state must be the one before the transaction or the one after it (as
// the same transaction leaves a model segment), as the case says. Test-only.
#ifndef SHM_TESTS_SHARED_TX_CRASH_HARNESS_H_
#define SHM_TESTS_SHARED_TX_CRASH_HARNESS_H_

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "common/status_assert.h"
#include "common/test_util.h"
#include "crash_point.h"
#include "shm/segment.h"
#include "shm/status.h"

namespace shm::test {

using TxState = std::map<std::string, std::string>;

struct TxCrashCase {
  const char* point;
  int hit;       // Which arrival at the point dies (1: the first).
  bool applied;  // Whether the transaction must be whole (true) or absent after the death.
};

inline std::string TxCrashCaseName(const testing::TestParamInfo<TxCrashCase>& info) {
  return std::string(info.param.point) + "_" + std::to_string(info.param.hit);
}

template <class Objects>
struct TxScenario {
  Status (*populate)(Objects&);
  TxState (*snapshot)(Objects&);
  Status (*run)(Segment*, Objects&);
};

inline constexpr size_t kTxCrashSegmentBytes = size_t{32} << 20;
inline constexpr uint32_t kTxCrashRegistryEntries = 256;

// Populates `seg` through *o, lets a child die at c's point inside the scenario's transaction,
// recovers the child and checks the state is *before or *after (both set, for further checks).
// Call with ASSERT_NO_FATAL_FAILURE.
template <class Objects>
void DieInTransactionAndRecover(const TxCrashCase& c, const TxScenario<Objects>& scenario,
                                Segment* seg, Objects* o, TxState* before, TxState* after) {
  ASSERT_OK(o->Open(seg));
  ASSERT_OK(scenario.populate(*o));
  *before = scenario.snapshot(*o);
  {
    ScopedSegment model_seg(kTxCrashSegmentBytes, kTxCrashRegistryEntries);
    Objects model;
    ASSERT_OK(model.Open(model_seg.get()));
    ASSERT_OK(scenario.populate(model));
    ASSERT_OK(scenario.run(model_seg.get(), model));
    *after = scenario.snapshot(model);
  }
  ASSERT_NE(*before, *after);
  pid_t child = ForkChild([&] {
    SetCrashPoint(c.point, c.hit);
    Objects mine;
    if (!mine.Open(seg).ok()) return 2;
    return scenario.run(seg, mine).ok() ? 0 : 3;
  });
  ChildExit exit = WaitChild(child);
  ASSERT_TRUE(exit.exited);
  ASSERT_EQ(exit.code, kCrashPointExitCode) << "the crash point was never reached";
  ASSERT_OK(seg->RecoverDeadProcess(child, nullptr));
  EXPECT_EQ(scenario.snapshot(*o), c.applied ? *after : *before);
}

// Populates `seg` through *o and lets a child die right after the scenario's transaction set
// its commit word, with nothing applied yet: the record a repairer must settle. The child's pid
// goes to *committer (recover it after the repairers). Call with ASSERT_NO_FATAL_FAILURE.
template <class Objects>
void CommitAndDie(const TxScenario<Objects>& scenario, Segment* seg, Objects* o, pid_t* committer) {
  ASSERT_OK(o->Open(seg));
  ASSERT_OK(scenario.populate(*o));
  *committer = ForkChild([&] {
    SetCrashPoint("tx_after_commit");
    Objects mine;
    if (!mine.Open(seg).ok()) return 2;
    return scenario.run(seg, mine).ok() ? 0 : 3;
  });
  ASSERT_EQ(WaitChild(*committer).code, kCrashPointExitCode) << "the committer did not commit";
}

// A child whose `touch` takes a lock of a dead committer's record, so settles the record, and
// dies at `point` inside that settling. Its pid goes to *repairer. Call with
// ASSERT_NO_FATAL_FAILURE.
template <class Objects, class Touch>
void SettleAndDie(const char* point, Segment* seg, Touch touch, pid_t* repairer) {
  *repairer = ForkChild([&] {
    SetCrashPoint(point);
    Objects mine;
    if (!mine.Open(seg).ok()) return 2;
    return touch(mine).ok() ? 0 : 3;
  });
  ASSERT_EQ(WaitChild(*repairer).code, kCrashPointExitCode)
      << "the repairer did not settle the record at " << point;
}

// The end of a kill-loop round: the writer SIGKILLed, its checking reader killed too. Reads the
// reader's verdicts ('+' for each committed transaction that saw a right state) until EOF,
// counting them in *checked and failing at a wrong one; reaps both and recovers what they left.
// *recovered is false when the segment needs the manager's rebuild (a death inside the
// allocator), which the loop answers by starting afresh. Call with ASSERT_NO_FATAL_FAILURE.
inline void EndKillRound(Segment* seg, pid_t writer, pid_t reader, int verdicts_fd,
                         int64_t* checked, bool* recovered) {
  kill(reader, SIGKILL);
  char verdicts[4096];
  ssize_t got = 0;
  while ((got = read(verdicts_fd, verdicts, sizeof verdicts)) > 0) {
    for (ssize_t i = 0; i < got; ++i) {
      ASSERT_EQ(verdicts[i], '+') << "a reader's committed transaction saw a wrong state";
      ++*checked;
    }
  }
  close(verdicts_fd);
  ChildExit exit = WaitChild(writer, 20000);
  ASSERT_TRUE(exit.signaled) << "the writer exited with " << exit.code;
  WaitChild(reader, 20000);
  Status s = seg->RecoverDeadProcess(writer, nullptr);
  if (s.ok()) s = seg->RecoverDeadProcess(reader, nullptr);
  *recovered = s.ok() && seg->Probe().ok();
}

}  // namespace shm::test

#endif  // SHM_TESTS_SHARED_TX_CRASH_HARNESS_H_
