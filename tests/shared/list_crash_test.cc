// A list writer dies at each step of the commit protocol, with the list's lock held: the parent
// sees every acknowledged item exactly once and the in-flight one fully present or absent, the
// list stays usable, RecoverDeadProcess frees the garbage, and nothing leaks or is freed twice.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "crash_point.h"
#include "list_rep.h"
#include "segment_impl.h"
#include "shm/list.h"
#include "shm/registry.h"

namespace shm {
namespace {

using std::chrono::milliseconds;
using End = List::End;
using Items = std::vector<std::string>;

List OpenList(Segment* seg, std::string_view name) {
  List list;
  Status s = List::Open(seg, name, OpenMode::kCreateIfMissing, {}, &list);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return list;
}

Items All(const List& list) {
  Items items;
  Status s = list.Range(0, -1, &items);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return items;
}

enum class Op { kPushRight, kPushLeft, kPopLeft, kPopRight };

// The list after `op` on `before` (`item` is the pushed item).
Items Apply(Items before, Op op, const std::string& item) {
  switch (op) {
    case Op::kPushRight:
      before.push_back(item);
      break;
    case Op::kPushLeft:
      before.insert(before.begin(), item);
      break;
    case Op::kPopLeft:
      before.erase(before.begin());
      break;
    case Op::kPopRight:
      before.pop_back();
      break;
  }
  return before;
}

Status RunOp(List& list, Op op, const std::string& pushed) {
  std::string item;
  bool got = false;
  switch (op) {
    case Op::kPushRight:
      return list.Push(End::kRight, pushed);
    case Op::kPushLeft:
      return list.Push(End::kLeft, pushed);
    case Op::kPopLeft:
      return list.Pop(End::kLeft, milliseconds(0), &item, &got);
    case Op::kPopRight:
      return list.Pop(End::kRight, milliseconds(0), &item, &got);
  }
  return Status::Internal("unknown op");
}

struct CrashCase {
  Op op;
  const char* point;
  int hit;
  size_t prefill;  // 7 fills the first ring (8 slots, one kept free): the push grows it.
  // Items of at most 7 bytes live in their slot word (list_rep.h): no blob, no intent, one crash
  // point between the slot's store and the end's. Else every item is a blob.
  bool inline_items = false;
};

std::string PushedItem(const CrashCase& c) { return c.inline_items ? "new" : "new-item"; }
std::string PrefillItem(const CrashCase& c, size_t i) {
  return (c.inline_items ? "a" : "a-block-") + std::to_string(i);
}

// ReleaseGarbage takes the replaced blob out of the intent slot before freeing it to the allocator
// (so a free is never repeated): a writer dying at before_free leaks exactly that blob, the safe
// direction. (A blob it pushes onto its cache instead stays recorded until it is there.)
// Its handle, read before the crash, so the test can free it by hand and still check for leaks.
uint64_t BlobFreedAfterTheCommit(Segment* seg, const List& list, const CrashCase& c) {
  Segment::Impl* impl = seg->impl();
  auto* rep = impl->Ptr<ListRep>(list.ref().entry->body.load());
  if (c.op == Op::kPushRight || c.op == Op::kPushLeft) {
    return c.prefill == 7 ? rep->ring.load() : 0;  // A growth replaces the ring; a push nothing.
  }
  auto* ring = impl->Ptr<ListRingRep>(rep->ring.load());
  int64_t pos = c.op == Op::kPopLeft ? rep->head.load() : rep->tail.load() - 1;
  return RingSlots(ring)[static_cast<uint64_t>(pos) & (ring->capacity - 1)].load();
}

class ListCrashTest : public ::testing::TestWithParam<CrashCase> {};

TEST_P(ListCrashTest, DeathMidProtocolLosesNothingAcknowledgedAndLeaksNothing) {
  const CrashCase c = GetParam();
  test::ScopedSegment seg;
  const size_t baseline = seg->free_bytes();
  List list = OpenList(seg.get(), "crashy");
  Items before;
  for (size_t i = 0; i < c.prefill; ++i) {
    before.push_back(PrefillItem(c, i));
    ASSERT_TRUE(list.Push(End::kRight, before.back()).ok());
  }
  const Items after = Apply(before, c.op, PushedItem(c));
  const uint64_t leaked_at_before_free = BlobFreedAfterTheCommit(seg.get(), list, c);

  pid_t child = test::ForkChild([&] {
    SetCrashPoint(c.point, c.hit);
    return RunOp(list, c.op, PushedItem(c)).ok() ? 0 : 1;
  });
  test::ChildExit exit = test::WaitChild(child, 20000);
  ASSERT_TRUE(exit.exited);
  ASSERT_EQ(exit.code, kCrashPointExitCode) << "the crash point was never reached";

  // The first lock after the death repairs; the in-flight op is all there or not at all.
  Items now = All(list);
  EXPECT_TRUE(now == before || now == after) << "length " << now.size();
  uint64_t length = 0;
  ASSERT_TRUE(list.Length(&length).ok());
  EXPECT_EQ(length, now.size());

  RecoveryReport report;
  ASSERT_TRUE(seg->RecoverDeadProcess(child, &report).ok());
  // An inline push or pop claims no intent slot (it has nothing to record); growing a ring does.
  EXPECT_EQ(report.slots_released, c.inline_items && c.prefill != 7 ? 0 : 1);
  // Unless the blob was on its way into the dead writer's cache (still recorded, so the recovery
  // freed it), dying at before_free leaks it by design.
  if (std::string_view(c.point) == "before_free" && report.blobs_freed == 0) {
    seg->impl()->Free(leaked_at_before_free);
  }
  EXPECT_TRUE(seg->Probe().ok());

  ASSERT_TRUE(list.Push(End::kRight, "later").ok());
  now.push_back("later");
  std::string item;
  bool got = false;
  ASSERT_TRUE(list.Pop(End::kLeft, milliseconds(0), &item, &got).ok());
  ASSERT_TRUE(got);
  EXPECT_EQ(item, now.front());
  now.erase(now.begin());
  EXPECT_EQ(All(list), now);

  ASSERT_TRUE(seg->registry().Delete("crashy").ok());
  EXPECT_EQ(seg->free_bytes(), baseline)
      << "leak (or double free) of " << static_cast<int64_t>(baseline - seg->free_bytes());
}

std::string CaseName(const ::testing::TestParamInfo<CrashCase>& info) {
  const char* ops[] = {"PushRight", "PushLeft", "PopLeft", "PopRight"};
  std::string name = std::string(ops[static_cast<int>(info.param.op)]) + "_" + info.param.point +
                     "_" + std::to_string(info.param.hit);
  if (info.param.prefill != 3) name += "_prefill" + std::to_string(info.param.prefill);
  if (info.param.inline_items) name += "_inline";
  return name;
}

INSTANTIATE_TEST_SUITE_P(
    EveryStep, ListCrashTest,
    ::testing::Values(CrashCase{Op::kPushRight, "after_allocate", 1, 3},
                      CrashCase{Op::kPushRight, "after_intent", 1, 3},
                      CrashCase{Op::kPushRight, "after_commit", 1, 3},
                      CrashCase{Op::kPushRight, "before_free", 1, 3},
                      CrashCase{Op::kPushLeft, "after_allocate", 1, 3},
                      CrashCase{Op::kPushLeft, "after_intent", 1, 3},
                      CrashCase{Op::kPushLeft, "after_commit", 1, 3},
                      CrashCase{Op::kPushLeft, "before_free", 1, 3},
                      CrashCase{Op::kPopLeft, "after_intent", 1, 3},
                      CrashCase{Op::kPopLeft, "after_commit", 1, 3},
                      CrashCase{Op::kPopLeft, "before_free", 1, 3},
                      CrashCase{Op::kPopRight, "after_intent", 1, 3},
                      CrashCase{Op::kPopRight, "after_commit", 1, 3},
                      CrashCase{Op::kPopRight, "before_free", 1, 3},
                      CrashCase{Op::kPopLeft, "after_commit", 1, 1},
                      // Growth: the ring is replaced copy-on-write before the item goes in.
                      CrashCase{Op::kPushRight, "after_allocate", 2, 7},
                      CrashCase{Op::kPushRight, "after_intent", 1, 7},
                      CrashCase{Op::kPushRight, "after_commit", 1, 7},
                      CrashCase{Op::kPushRight, "before_free", 1, 7},
                      CrashCase{Op::kPushLeft, "after_intent", 2, 7},
                      CrashCase{Op::kPushLeft, "after_commit", 2, 7},
                      // Inline items: the slot word is published, the end not yet moved.
                      CrashCase{Op::kPushRight, "list_inline_published", 1, 3, true},
                      CrashCase{Op::kPushLeft, "list_inline_published", 1, 3, true},
                      CrashCase{Op::kPopLeft, "list_inline_published", 1, 3, true},
                      CrashCase{Op::kPopRight, "list_inline_published", 1, 3, true},
                      CrashCase{Op::kPopLeft, "list_inline_published", 1, 1, true},
                      // Growth with inline items: the ring copy commits, then the item.
                      CrashCase{Op::kPushRight, "after_commit", 1, 7, true},
                      CrashCase{Op::kPushLeft, "list_inline_published", 1, 7, true}),
    CaseName);

// ListRep::places counts the line's taken places so that pops skip scanning it when none is: a
// process dying between a ticket's store and the count's (joining, or leaving) leaves the count
// one too high, never too low, and the repair at the next lock recounts it. A pop meanwhile still
// serves in the line's order: this process's own place, older than the dead one's, comes first.
TEST(ListPlacesCrashTest, DeathBetweenTicketAndCountOverCountsUntilTheRepair) {
  for (const char* point : {"list_place_counted", "list_place_freed"}) {
    SCOPED_TRACE(point);
    test::ScopedSegment seg;
    List list = OpenList(seg.get(), "line");
    auto* rep = seg->impl()->Ptr<ListRep>(list.ref().entry->body.load());
    auto taken = [&] {
      return std::count_if(std::begin(rep->line), std::end(rep->line),
                           [](const ListPlaceRep& p) { return p.ticket.load() != 0; });
    };
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
    ListPlace mine(deadline);
    ASSERT_TRUE(list.Join(&mine).ok());
    ASSERT_TRUE(mine.in_line());
    EXPECT_EQ(rep->places.load(), 1u);

    pid_t child = test::ForkChild([&] {
      SetCrashPoint(point, 1);
      ListPlace theirs(deadline);
      if (!list.Join(&theirs).ok()) return 1;
      theirs.Leave();  // Reaches list_place_freed.
      return 2;
    });
    test::ChildExit exit = test::WaitChild(child, 20000);
    ASSERT_TRUE(exit.exited);
    ASSERT_EQ(exit.code, kCrashPointExitCode) << "the crash point was never reached";
    EXPECT_EQ(rep->places.load(), 2u);  // Over-counted, and the dead child holds the lock.
    EXPECT_EQ(taken(), 1);

    ASSERT_TRUE(list.Push(End::kRight, "a").ok());  // The first lock repairs.
    EXPECT_EQ(rep->places.load(), 1u);
    std::string item;
    bool got = false;
    ASSERT_TRUE(list.Pop(End::kLeft, milliseconds(0), &item, &got, &mine).ok());
    EXPECT_TRUE(got);
    EXPECT_EQ(item, "a");
    EXPECT_FALSE(mine.in_line());  // Served: left the line.
    EXPECT_EQ(rep->places.load(), 0u);
    EXPECT_EQ(taken(), 0);
    RecoveryReport report;
    ASSERT_TRUE(seg->RecoverDeadProcess(child, &report).ok());
  }
}

// A child pushes and pops at random, reporting each op before and after doing it; the parent
// SIGKILLs it at a random moment (~50 times, fixed seed) and checks the list against the model
// after recovery. A kill inside the allocator poisons the segment: counted, then a fresh one.
TEST(ListCrashLoopTest, SigkillAtRandomKeepsTheModel) {
  std::mt19937 rng(424242);
  auto seg = std::make_unique<test::ScopedSegment>();
  List list = OpenList(seg->get(), "loop");
  std::deque<std::string> model;
  int poisoned = 0;
  for (int round = 0; round < 50; ++round) {
    int pipe_fds[2];
    ASSERT_EQ(pipe(pipe_fds), 0);
    const uint32_t child_seed = rng();
    pid_t child = test::ForkChild([&] {
      close(pipe_fds[0]);
      std::mt19937 child_rng(child_seed);
      for (int n = 0;; ++n) {
        // Line "<op><tag>\n" before the op and "+\n" once it is acknowledged.
        int op = static_cast<int>(child_rng() % 4);
        // Half the items inline (at most 7 bytes, up to round 9), half blobs.
        std::string tag = "r" + std::to_string(round) + "-" + std::to_string(n);
        if (child_rng() % 2 == 0) tag += "-block";
        std::string intent = std::to_string(op) + tag + "\n";
        if (write(pipe_fds[1], intent.data(), intent.size()) < 0) return 1;
        std::string item;
        bool got = false;
        Status s = op < 2
                       ? list.Push(op == 0 ? End::kLeft : End::kRight, tag)
                       : list.Pop(op == 2 ? End::kLeft : End::kRight, milliseconds(0), &item, &got);
        if (!s.ok()) return 2;
        if (write(pipe_fds[1], "+\n", 2) < 0) return 1;
      }
    });
    close(pipe_fds[1]);
    FILE* in = fdopen(pipe_fds[0], "r");
    ASSERT_NE(in, nullptr);
    const int acks_before_kill = 1 + static_cast<int>(rng() % 400);
    struct Pending {
      int op = -1;
      std::string tag;
    } pending;
    auto apply = [](const Pending& p, std::deque<std::string>* m) {
      if (p.op == 0) m->push_front(p.tag);
      if (p.op == 1) m->push_back(p.tag);
      if (p.op == 2 && !m->empty()) m->pop_front();
      if (p.op == 3 && !m->empty()) m->pop_back();
    };
    int acks = 0;
    bool killed = false;
    char line[128];
    while (fgets(line, sizeof line, in) != nullptr) {
      if (line[0] == '+') {
        apply(pending, &model);
        pending = Pending();
        if (++acks == acks_before_kill && !killed) {
          kill(child, SIGKILL);
          killed = true;
        }
      } else {
        std::string text(line);
        pending.op = text[0] - '0';
        pending.tag = text.substr(1, text.size() - 2);
      }
    }
    fclose(in);
    test::ChildExit exit = test::WaitChild(child, 20000);
    ASSERT_TRUE(exit.signaled) << "child exited with " << exit.code;

    Items now;
    ASSERT_TRUE(list.Range(0, -1, &now).ok());
    // The op in flight when the child died (if any) may or may not have committed.
    Items without(model.begin(), model.end());
    std::deque<std::string> with_model = model;
    apply(pending, &with_model);
    Items with(with_model.begin(), with_model.end());
    ASSERT_TRUE(now == without || now == with)
        << "round " << round << ": " << now.size() << " items, model " << without.size();
    model.assign(now.begin(), now.end());
    Status recovered = (*seg)->RecoverDeadProcess(child, nullptr);
    if (!recovered.ok() || !(*seg)->Probe().ok()) {
      ++poisoned;  // Killed inside the allocator: the manager would rebuild. Start afresh.
      seg = std::make_unique<test::ScopedSegment>();
      list = OpenList(seg->get(), "loop");
      model.clear();
    }
  }
  std::cout << "[ list crash loop ] 50 kills, " << poisoned << " inside the allocator\n";
  Items now;
  ASSERT_TRUE(list.Range(0, -1, &now).ok());
  EXPECT_EQ(now, Items(model.begin(), model.end()));
}

}  // namespace
}  // namespace shm
