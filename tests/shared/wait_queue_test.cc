// WaitQueue: arrival order per key, one try per key and round, deadlines, stop, cancel and the
// poll schedule, driven by hand (the queue has no clock of its own: Poll takes `now`).
#include "shm/wait_queue.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace shm {
namespace {

using std::chrono::milliseconds;
using Clock = WaitQueue::Clock;

// Objects with a number of items each; waits take one item of their key and record who got it.
struct World {
  std::map<std::string, int> items;
  std::vector<std::string> served;      // "<waiter>" in the order they got an item.
  std::vector<std::string> gave_up;     // "<waiter>:deadline" or "<waiter>:stopping".
  std::map<std::string, int> attempts;  // Tries per key.

  WaitQueue::Wait Waiter(const std::string& name, const std::string& key,
                         Clock::time_point deadline) {
    return WaitQueue::Wait{key, deadline,
                           [this, name, key] {
                             ++attempts[key];
                             if (items[key] == 0) return false;
                             --items[key];
                             served.push_back(name);
                             return true;
                           },
                           [this, name](bool stopping) {
                             gave_up.push_back(name + (stopping ? ":stopping" : ":deadline"));
                           }};
  }
};

const Clock::time_point kFar = Clock::now() + std::chrono::hours(1);

TEST(WaitQueueTest, WaitersOfAKeyAreServedInArrivalOrder) {
  World world;
  WaitQueue queue;
  uint64_t id = 0;
  for (const char* name : {"w1", "w2", "w3"}) {
    EXPECT_FALSE(queue.Submit(world.Waiter(name, "list:a", kFar), &id));
  }
  EXPECT_EQ(queue.size(), 3u);
  world.items["list:a"] = 2;
  queue.Kick();
  queue.Poll(Clock::now());
  EXPECT_EQ(world.served, (std::vector<std::string>{"w1", "w2"}));
  EXPECT_EQ(queue.size(), 1u);
  // An item is there, but w3 waits for it: a newcomer queues behind instead of taking it.
  world.items["list:a"] = 1;
  EXPECT_FALSE(queue.Submit(world.Waiter("late", "list:a", kFar), &id));
  EXPECT_LE(queue.NextPoll(), Clock::now());  // Looks again at once.
  queue.Poll(Clock::now());
  EXPECT_EQ(world.served, (std::vector<std::string>{"w1", "w2", "w3"}));
  EXPECT_EQ(queue.size(), 1u);
}

// `arrive` runs as a wait is submitted, before its first try, also for a wait queued behind
// others (which is not tried then): a front end's line across processes gets the queue's order.
TEST(WaitQueueTest, ArriveRunsAtSubmitBeforeAnyTryInSubmitOrder) {
  World world;
  WaitQueue queue;
  std::vector<std::string> events;
  auto waiter = [&](const std::string& name) {
    WaitQueue::Wait wait = world.Waiter(name, "k", kFar);
    wait.arrive = [&events, name] { events.push_back("arrive " + name); };
    auto attempt = std::move(wait.attempt);
    wait.attempt = [&events, name, attempt] {
      events.push_back("try " + name);
      return attempt();
    };
    return wait;
  };
  uint64_t id = 0;
  EXPECT_FALSE(queue.Submit(waiter("a"), &id));
  EXPECT_FALSE(queue.Submit(waiter("b"), &id));  // Behind a: arrives, is not tried.
  EXPECT_EQ(events, (std::vector<std::string>{"arrive a", "try a", "arrive b"}));
  world.items["k"] = 2;
  queue.Kick();
  queue.Poll(Clock::now());
  EXPECT_EQ(world.served, (std::vector<std::string>{"a", "b"}));
}

TEST(WaitQueueTest, ARoundTriesEachKeyOnceWhileItIsEmptyAndKeysAreIndependent) {
  World world;
  WaitQueue queue;
  uint64_t id = 0;
  for (int i = 0; i < 5; ++i) {
    queue.Submit(world.Waiter("a" + std::to_string(i), "list:a", kFar), &id);
  }
  queue.Submit(world.Waiter("b0", "list:b", kFar), &id);
  world.attempts.clear();
  world.items["list:b"] = 1;
  queue.Kick();
  queue.Poll(Clock::now());
  EXPECT_EQ(world.attempts["list:a"], 1);  // Its first waiter found nothing: the rest wait.
  EXPECT_EQ(world.served, (std::vector<std::string>{"b0"}));
  EXPECT_EQ(queue.size(), 5u);
}

TEST(WaitQueueTest, AnAvailableItemIsTakenAtOnceWhenNobodyWaits) {
  World world;
  WaitQueue queue;
  world.items["list:a"] = 1;
  uint64_t id = 0;
  EXPECT_TRUE(queue.Submit(world.Waiter("now", "list:a", kFar), &id));
  EXPECT_EQ(world.served, (std::vector<std::string>{"now"}));
  EXPECT_EQ(queue.size(), 0u);
  EXPECT_EQ(queue.NextPoll(), Clock::time_point::max());
}

TEST(WaitQueueTest, PastItsDeadlineAWaitGivesUp) {
  World world;
  WaitQueue queue;
  uint64_t id = 0;
  const Clock::time_point start = Clock::now();
  // Already past: answered in Submit, after one try.
  EXPECT_TRUE(queue.Submit(world.Waiter("zero", "list:a", start), &id));
  // Polled at a time of the test's choosing: no race with the real clock.
  const Clock::time_point soon = start + std::chrono::seconds(60);
  EXPECT_FALSE(queue.Submit(world.Waiter("short", "list:a", soon), &id));
  EXPECT_FALSE(queue.Submit(world.Waiter("long", "list:a", kFar), &id));
  EXPECT_LE(queue.NextPoll(), soon);
  queue.Poll(soon);
  EXPECT_EQ(world.gave_up, (std::vector<std::string>{"zero:deadline", "short:deadline"}));
  EXPECT_EQ(queue.size(), 1u);
}

TEST(WaitQueueTest, StopAnswersEveryWaitAndEveryLaterOneThatWouldWait) {
  World world;
  WaitQueue queue;
  uint64_t id = 0;
  queue.Submit(world.Waiter("w1", "list:a", kFar), &id);
  queue.Submit(world.Waiter("w2", "lock:l", kFar), &id);
  queue.Stop();
  EXPECT_EQ(world.gave_up, (std::vector<std::string>{"w1:stopping", "w2:stopping"}));
  EXPECT_EQ(queue.size(), 0u);
  EXPECT_TRUE(queue.Submit(world.Waiter("after", "list:a", kFar), &id));
  EXPECT_EQ(world.gave_up.back(), "after:stopping");
  world.items["list:a"] = 1;
  EXPECT_TRUE(queue.Submit(world.Waiter("lucky", "list:a", kFar), &id));  // Still served.
  EXPECT_EQ(world.served, (std::vector<std::string>{"lucky"}));
}

TEST(WaitQueueTest, ACancelledWaitTakesNothingAndTheNextWaiterIsServed) {
  World world;
  WaitQueue queue;
  uint64_t first = 0;
  uint64_t second = 0;
  queue.Submit(world.Waiter("gone", "list:a", kFar), &first);
  queue.Submit(world.Waiter("here", "list:a", kFar), &second);
  EXPECT_TRUE(queue.Cancel(first));
  EXPECT_FALSE(queue.Cancel(first));
  world.items["list:a"] = 1;
  queue.Kick();
  queue.Poll(Clock::now());
  EXPECT_EQ(world.served, (std::vector<std::string>{"here"}));
  EXPECT_TRUE(world.gave_up.empty());
  EXPECT_FALSE(queue.Cancel(second));  // Answered already.
}

TEST(WaitQueueTest, ThePollBacksOffFromOneToTwentyMillisecondsAndKickResetsIt) {
  World world;
  WaitQueue queue;
  uint64_t id = 0;
  queue.Submit(world.Waiter("w", "list:a", kFar), &id);
  Clock::time_point now = Clock::now();
  std::vector<int64_t> gaps;
  for (int i = 0; i < 7; ++i) {
    now = queue.NextPoll();
    queue.Poll(now);
    gaps.push_back(std::chrono::duration_cast<milliseconds>(queue.NextPoll() - now).count());
  }
  EXPECT_EQ(gaps, (std::vector<int64_t>{1, 2, 4, 8, 16, 20, 20}));
  queue.Kick();
  EXPECT_LE(queue.NextPoll(), Clock::now());
  queue.Poll(Clock::now());  // Nothing there: the backoff starts again at 1 ms.
  now = queue.NextPoll();
  queue.Poll(now);
  EXPECT_EQ(std::chrono::duration_cast<milliseconds>(queue.NextPoll() - now).count(), 2);
}

}  // namespace
}  // namespace shm
