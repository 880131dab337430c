// BlockLines: blocked pops ordered per key by the ticket they blocked with, one notified at a
// time, and a dead process's places freed by whoever meets them and by its recovery.
#include "shm/block_lines.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "common/test_util.h"

namespace shm {
namespace {

using Place = BlockLines::Place;
using State = BlockLines::State;
using Step = BlockLines::Step;

std::vector<std::string> Keys(std::initializer_list<const char*> keys) {
  return std::vector<std::string>(keys.begin(), keys.end());
}

TEST(BlockLinesTest, OnlyTheHeadOfAKeysLineMayTake) {
  test::ScopedSegment segment;
  BlockLines lines(segment.get());
  EXPECT_FALSE(lines.AnyTaken());
  const Place none;
  EXPECT_TRUE(lines.MayTake(none, 0, "q"));
  Place first, second, other;
  ASSERT_TRUE(lines.Join(0, Keys({"q"}), 0, &first).ok());
  ASSERT_TRUE(lines.Join(0, Keys({"other", "q"}), 0, &second).ok());
  ASSERT_TRUE(lines.Join(1, Keys({"q"}), 0, &other).ok());  // Another database: another line.
  EXPECT_TRUE(lines.AnyTaken());
  EXPECT_LT(first.ticket, second.ticket);
  EXPECT_TRUE(lines.MayTake(first, 0, "q"));
  EXPECT_FALSE(lines.MayTake(second, 0, "q"));
  EXPECT_TRUE(lines.MayTake(second, 0, "other"));
  EXPECT_TRUE(lines.MayTake(other, 1, "q"));
  EXPECT_FALSE(lines.MayTake(none, 0, "q"));  // A pop that has not blocked comes after them.
  // A place that took its item and serves a chain holds no line.
  lines.Serve(first);
  EXPECT_TRUE(lines.MayTake(second, 0, "q"));
  lines.Leave(first);
  EXPECT_EQ(lines.StateOf(first), State::kFree);
  lines.Leave(second);
  lines.Leave(other);
  EXPECT_FALSE(lines.AnyTaken());
  EXPECT_TRUE(lines.MayTake(none, 0, "q"));
}

// Pops that reached two workers are lined up by when they arrived, not by which worker ran first.
TEST(BlockLinesTest, ArrivalOrdersTheLineBeforeTheOrderOfJoining) {
  test::ScopedSegment segment;
  BlockLines lines(segment.get());
  Place late, early;
  ASSERT_TRUE(lines.Join(0, Keys({"q"}), 2'000, &late).ok());
  ASSERT_TRUE(lines.Join(0, Keys({"q"}), 1'000, &early).ok());
  EXPECT_TRUE(lines.MayTake(early, 0, "q"));
  EXPECT_FALSE(lines.MayTake(late, 0, "q"));
  Place notified;
  ASSERT_EQ(lines.NotifyNext(0, "q", &notified), Step::kNotified);
  EXPECT_EQ(notified.slot, early.slot);
  // A notified pop still yields to an earlier arrival that joined after it was notified.
  lines.Leave(early);
  ASSERT_EQ(lines.NotifyNext(0, "q", &notified), Step::kNotified);
  EXPECT_EQ(notified.slot, late.slot);
  Place earliest;
  ASSERT_TRUE(lines.Join(0, Keys({"q"}), 500, &earliest).ok());
  EXPECT_FALSE(lines.MayTake(late, 0, "q"));
  EXPECT_TRUE(lines.Rearm(late));
  ASSERT_EQ(lines.NotifyNext(0, "q", &notified), Step::kNotified);
  EXPECT_EQ(notified.slot, earliest.slot);
}

TEST(BlockLinesTest, NotifiesOneAtATimeInBlockingOrder) {
  test::ScopedSegment segment;
  BlockLines lines(segment.get());
  Place a, b;
  ASSERT_TRUE(lines.Join(0, Keys({"q"}), 0, &a).ok());
  ASSERT_TRUE(lines.Join(0, Keys({"q"}), 0, &b).ok());
  Place notified;
  ASSERT_EQ(lines.NotifyNext(0, "q", &notified), Step::kNotified);
  EXPECT_EQ(notified.slot, a.slot);
  EXPECT_EQ(lines.StateOf(a), State::kNotified);
  EXPECT_TRUE(lines.Pending(a));
  Place again;
  EXPECT_EQ(lines.NotifyNext(0, "q", &again), Step::kBusy);  // a's turn is not over.
  EXPECT_EQ(again.slot, a.slot);                             // What the pusher waits for.
  // a found nothing: back to waiting, first in line still.
  EXPECT_TRUE(lines.Rearm(a));
  EXPECT_FALSE(lines.Rearm(a));
  EXPECT_FALSE(lines.Pending(a));
  ASSERT_EQ(lines.NotifyNext(0, "q", &notified), Step::kNotified);
  EXPECT_EQ(notified.slot, a.slot);
  lines.Leave(a);
  EXPECT_FALSE(lines.Pending(a));
  ASSERT_EQ(lines.NotifyNext(0, "q", &notified), Step::kNotified);
  EXPECT_EQ(notified.slot, b.slot);
  lines.Serve(b);
  EXPECT_TRUE(lines.Pending(b));  // Serving its destination: its notifier still waits.
  // A pop's own try makes a pusher wait for it as for a notified one.
  Place c;
  ASSERT_TRUE(lines.Join(0, Keys({"q"}), 0, &c).ok());
  ASSERT_TRUE(lines.BeginTake(c));
  EXPECT_TRUE(lines.Pending(c));
  ASSERT_EQ(lines.NotifyNext(0, "q", &notified), Step::kBusy);
  EXPECT_EQ(notified.slot, c.slot);
  lines.EndTake(c);
  EXPECT_FALSE(lines.Pending(c));
  EXPECT_EQ(lines.StateOf(c), State::kWaiting);
  lines.Leave(c);
  EXPECT_EQ(lines.NotifyNext(0, "q", &notified), Step::kIdle);
  lines.Leave(b);
  EXPECT_EQ(lines.NotifyNext(0, "q", &notified), Step::kIdle);
}

// EXEC's hold: no pop of the database takes (not even the head of a line) unless notified, and
// the holding thread's own pops (a BLPOP inside the transaction) are not held back.
TEST(BlockLinesTest, AHoldKeepsPopsOfItsDatabaseWaitingUnlessNotified) {
  test::ScopedSegment segment;
  BlockLines lines(segment.get());
  Place waiting, hold;
  ASSERT_TRUE(lines.Join(0, Keys({"q"}), 0, &waiting).ok());
  ASSERT_TRUE(lines.Hold(0, &hold).ok());
  EXPECT_EQ(lines.StateOf(hold), State::kHolding);
  EXPECT_TRUE(lines.MayTake(Place(), 1, "q"));  // Another database.
  EXPECT_TRUE(lines.MayTake(waiting, 0, "q"));  // This thread holds: its own pops go on.
  bool other_thread_may = true, notified_may = false;
  std::thread([&] {
    other_thread_may = lines.MayTake(waiting, 0, "q");
    Place notified;
    ASSERT_EQ(lines.NotifyNext(0, "q", &notified), Step::kNotified);
    notified_may = lines.MayTake(waiting, 0, "q");
  }).join();
  EXPECT_FALSE(other_thread_may);
  EXPECT_TRUE(notified_may);
  lines.Leave(hold);
  EXPECT_EQ(lines.StateOf(hold), State::kFree);
  lines.Leave(waiting);
  EXPECT_FALSE(lines.AnyTaken());
}

TEST(BlockLinesTest, FullTableIsAnErrorAndAReleasedPlaceIsReused) {
  test::ScopedSegment segment;
  BlockLines lines(segment.get());
  std::vector<Place> places(BlockLines::kMaxPlaces);
  for (Place& place : places) ASSERT_TRUE(lines.Join(0, Keys({"k"}), 0, &place).ok());
  Place extra;
  Status full = lines.Join(0, Keys({"k"}), 0, &extra);
  EXPECT_TRUE(full.IsOutOfSpace()) << full.ToString();
  EXPECT_NE(std::string(full.message()).find("blocked clients"), std::string::npos);
  lines.Leave(places[7]);
  ASSERT_TRUE(lines.Join(0, Keys({"k"}), 0, &extra).ok());
  EXPECT_EQ(extra.slot, places[7].slot);
  EXPECT_GT(extra.ticket, places.back().ticket);  // A new ticket: the end of the line.
  lines.Leave(places[7]);                         // The old place's owner: no effect.
  EXPECT_EQ(lines.StateOf(extra), State::kWaiting);
}

TEST(BlockLinesTest, TooManyKeysJoinsNoLine) {
  test::ScopedSegment segment;
  BlockLines lines(segment.get());
  std::vector<std::string> many;
  for (size_t i = 0; i <= BlockLines::kMaxKeys; ++i) many.push_back("k" + std::to_string(i));
  Place wide, next;
  ASSERT_TRUE(lines.Join(0, many, 0, &wide).ok());
  ASSERT_TRUE(lines.Join(0, Keys({"k0"}), 0, &next).ok());
  EXPECT_TRUE(lines.MayTake(next, 0, "k0"));
  Place notified;
  ASSERT_EQ(lines.NotifyNext(0, "k0", &notified), Step::kNotified);
  EXPECT_EQ(notified.slot, next.slot);
}

// A place of a process that died (a killed worker) holds no line: the next pop may take, a
// pusher passes it by, and the recovery of its pid frees whatever is left.
TEST(BlockLinesTest, DeadProcessesPlacesAreFreed) {
  test::ScopedSegment segment;
  BlockLines lines(segment.get());
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Place place, notified;
    BlockLines mine(segment.get());
    bool ok = mine.Join(0, Keys({"q"}), 0, &place).ok() &&
              mine.Join(0, Keys({"r"}), 0, &place).ok() &&
              mine.NotifyNext(0, "r", &notified) == Step::kNotified;
    char byte = ok ? 1 : 0;
    (void)!write(pipe_fds[1], &byte, 1);
    _exit(0);
  }
  char byte = 0;
  ASSERT_EQ(read(pipe_fds[0], &byte, 1), 1);
  ASSERT_EQ(byte, 1);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  Place mine;
  ASSERT_TRUE(lines.Join(0, Keys({"q", "r"}), 0, &mine).ok());
  EXPECT_TRUE(lines.MayTake(mine, 0, "q"));  // The dead child's earlier place is freed.
  Place notified;
  EXPECT_EQ(lines.NotifyNext(0, "r", &notified), Step::kNotified);  // Its notified one too.
  EXPECT_EQ(notified.slot, mine.slot);
  lines.Leave(mine);
  EXPECT_FALSE(lines.AnyTaken());
  // The recovery of a pid frees its places.
  Place a, b;
  ASSERT_TRUE(lines.Join(0, Keys({"x"}), 0, &a).ok());
  ASSERT_TRUE(lines.Join(0, Keys({"y"}), 0, &b).ok());
  EXPECT_EQ(lines.ReleaseOf(getpid()), 2);
  EXPECT_FALSE(lines.AnyTaken());
  EXPECT_EQ(lines.StateOf(a), State::kFree);
}

// A barrier is done once every live member answered it; a member that died is passed by.
TEST(BlockLinesTest, BarrierWaitsForEveryLiveMember) {
  test::ScopedSegment segment;
  BlockLines lines(segment.get());
  const int mine = lines.JoinBarrier();
  ASSERT_GE(mine, 0);
  int joined[2], release[2];
  ASSERT_EQ(pipe(joined), 0);
  ASSERT_EQ(pipe(release), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // A second member that answers nothing, until it exits.
    BlockLines(segment.get()).JoinBarrier();
    char byte = 1;
    (void)!write(joined[1], &byte, 1);
    (void)!read(release[0], &byte, 1);
    _exit(0);
  }
  char byte = 0;
  ASSERT_EQ(read(joined[0], &byte, 1), 1);
  EXPECT_EQ(lines.BarrierMembers(), 2);
  const uint32_t word = lines.BarrierWord()->load();
  const uint64_t request = lines.RequestBarrier();
  EXPECT_NE(lines.BarrierWord()->load(), word);  // Rung: members look.
  EXPECT_EQ(lines.BarrierRequested(), request);
  EXPECT_FALSE(lines.BarrierDone(request));
  lines.AckBarrier(mine, request);
  EXPECT_FALSE(lines.BarrierDone(request));  // The child has not answered.
  ASSERT_EQ(write(release[1], &byte, 1), 1);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  for (int fd : {joined[0], joined[1], release[0], release[1]}) close(fd);
  EXPECT_TRUE(lines.BarrierDone(request));  // Dead: passed by, and its slot freed.
  EXPECT_EQ(lines.BarrierMembers(), 1);
  lines.LeaveBarrier(mine);
  EXPECT_EQ(lines.BarrierMembers(), 0);
  EXPECT_TRUE(lines.BarrierDone(lines.RequestBarrier()));
}

}  // namespace
}  // namespace shm
