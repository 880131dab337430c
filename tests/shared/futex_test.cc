// The futex waits of src/futex.h: the spin advisor's rule (a word whose spins do not pay stops
// being spun on, and earns its credit back through probes), and waits between real processes on
// a word in shared memory, where every hand-off races the waiter's spin, mark and sleep.
#include "futex.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <new>

#include "common/test_util.h"

namespace shm {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Waits on `word` until the advisor lets one spin; their count, the spinning one included.
uint32_t WaitsUntilASpin(SpinAdvisor* advisor, const void* word) {
  uint32_t waits = 1;
  while (!advisor->ShouldSpin(word) && waits <= 2 * SpinAdvisor::kMaxProbeEvery) ++waits;
  return waits;
}

TEST(SpinAdvisorTest, AWordWhoseSpinsDoNotPayIsProbedEverLessOften) {
  auto advisor = std::make_unique<SpinAdvisor>();
  std::atomic<uint32_t> word{0};
  for (int32_t i = 0; i < SpinAdvisor::kFreshCredit; ++i) {
    ASSERT_TRUE(advisor->ShouldSpin(&word)) << i;  // A new word gets its chances.
    advisor->Record(&word, false);
  }
  // No credit left: a probe at the kProbeEvery-th wait, then twice as far after each probe that
  // did not pay, up to kMaxProbeEvery.
  uint32_t every = SpinAdvisor::kProbeEvery;
  for (int probe = 0; probe < 10; ++probe) {
    EXPECT_EQ(WaitsUntilASpin(advisor.get(), &word), every) << probe;
    advisor->Record(&word, false);
    every = std::min(every * 2, SpinAdvisor::kMaxProbeEvery);
  }
  EXPECT_EQ(every, SpinAdvisor::kMaxProbeEvery);
}

TEST(SpinAdvisorTest, ASpinThatPaysGivesTheWordItsFullCredit) {
  auto advisor = std::make_unique<SpinAdvisor>();
  std::atomic<uint32_t> word{0};
  for (int32_t i = 0; i < SpinAdvisor::kFreshCredit; ++i) {
    ASSERT_TRUE(advisor->ShouldSpin(&word));
    advisor->Record(&word, false);
  }
  EXPECT_EQ(WaitsUntilASpin(advisor.get(), &word), SpinAdvisor::kProbeEvery);
  advisor->Record(&word, false);  // Probes grow apart...
  EXPECT_EQ(WaitsUntilASpin(advisor.get(), &word), 2 * SpinAdvisor::kProbeEvery);
  advisor->Record(&word, true);  // ...until one pays: spins again, through kFullCredit unpaid ones,
  for (int32_t i = 0; i < SpinAdvisor::kFullCredit; ++i) {
    ASSERT_TRUE(advisor->ShouldSpin(&word)) << i;
    advisor->Record(&word, false);
  }
  EXPECT_EQ(WaitsUntilASpin(advisor.get(), &word), SpinAdvisor::kProbeEvery);  // and probes anew.
}

// Two words in an anonymous shared mapping, seen by a forked child at the same address.
struct SharedWords {
  std::atomic<uint32_t> turn{0};    // Whose turn: even the parent's, odd the child's.
  std::atomic<uint32_t> wanted{0};  // The waiters' mark (FutexWaitWanted).
};

SharedWords* MapSharedWords() {
  void* p =
      mmap(nullptr, sizeof(SharedWords), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : new (p) SharedWords();
}

// Waits (10 s at most per hand-off) until `turn` reaches `value`.
bool AwaitTurn(SharedWords* w, uint32_t value, bool wanted) {
  const auto deadline = std::chrono::steady_clock::now() + seconds(10);
  while (true) {
    const uint32_t seen = w->turn.load();
    if (seen == value) return true;
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left.count() <= 0) return false;
    if (wanted) {
      FutexWaitWanted(&w->turn, &w->wanted, seen, left);
    } else {
      FutexWait(&w->turn, seen, left);
    }
  }
}

void HandOff(SharedWords* w, uint32_t value, bool wanted) {
  if (wanted) {
    w->turn.store(value - 1);  // FutexWakeIfWanted's bump makes it `value`.
    FutexWakeIfWanted(&w->turn, &w->wanted);
  } else {
    w->turn.store(value - 1);
    FutexWakeAll(&w->turn);
  }
}

// 2000 strict turns between two processes. A wake lost between a waiter's spin, its mark and
// its sleep would leave it asleep until its 10 s bound: the turn count comes up short. Waiters
// that slept and waiters whose spin saw the turn both occur, in proportions the machine decides.
void PlayTurns(bool wanted) {
  SharedWords* w = MapSharedWords();
  ASSERT_NE(w, nullptr);
  constexpr uint32_t kTurns = 2000;
  pid_t child = test::ForkChild([&] {
    for (uint32_t turn = 1; turn < kTurns; turn += 2) {
      if (!AwaitTurn(w, turn, wanted)) return 1;
      HandOff(w, turn + 1, wanted);
    }
    return 0;
  });
  uint32_t reached = 0;
  for (uint32_t turn = 0; turn < kTurns; turn += 2) {
    if (!AwaitTurn(w, turn, wanted)) break;
    reached = turn;
    HandOff(w, turn + 1, wanted);
  }
  test::ChildExit exit = test::WaitChild(child);
  EXPECT_EQ(reached, kTurns - 2);
  EXPECT_TRUE(exit.exited && exit.code == 0) << exit.code << " " << exit.signal;
  munmap(w, sizeof(SharedWords));
}

TEST(FutexTest, TurnsBetweenProcessesLoseNoWake) { PlayTurns(false); }

TEST(FutexTest, TurnsWithTheWantedMarkLoseNoWake) { PlayTurns(true); }

// A sleeper that marked the word (its spin over) is woken by FutexWakeIfWanted, which clears
// the mark; a waker that finds no mark makes no system call and leaves none.
TEST(FutexTest, AWaiterAsleepIsWokenAndItsMarkCleared) {
  SharedWords* w = MapSharedWords();
  ASSERT_NE(w, nullptr);
  pid_t child = test::ForkChild([&] { return AwaitTurn(w, 1, true) ? 0 : 1; });
  ASSERT_TRUE(test::WaitUntilInFutex(child, 10000));
  EXPECT_EQ(w->wanted.load(), 1u);  // It spun at most kSpinBudget, then marked and slept.
  FutexWakeIfWanted(&w->turn, &w->wanted);
  test::ChildExit exit = test::WaitChild(child);
  EXPECT_TRUE(exit.exited && exit.code == 0) << exit.code << " " << exit.signal;
  EXPECT_EQ(w->wanted.load(), 0u);
  munmap(w, sizeof(SharedWords));
}

TEST(FutexTest, AWaitWithoutTimeLeftReturnsAtOnce) {
  std::atomic<uint32_t> word{7}, wanted{0};
  FutexWait(&word, 7, std::chrono::nanoseconds(0));
  FutexWaitWanted(&word, &wanted, 7, milliseconds(-1));
  EXPECT_EQ(wanted.load(), 0u);  // Nothing marked: it never meant to sleep.
  EXPECT_EQ(word.load(), 7u);
}

}  // namespace
}  // namespace shm
