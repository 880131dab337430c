// Items of at most 7 bytes live in their ring slot word (list_rep.h), bigger ones in a blob. Every
// list operation sees exactly the bytes pushed, whichever form an item has, across the boundary
// (0..7 bytes inline, 8 a blob), binary bytes and NUL included; Set and Replace move an item from
// one form to the other both ways; `bytes` (ObjectInfo::size_bytes) stays exact; snapshots and
// transactions carry inline items; and nothing leaks or is freed twice.
#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "common/status_assert.h"
#include "common/test_util.h"
#include "list_rep.h"
#include "shm/list.h"
#include "shm/registry.h"
#include "shm/snapshot.h"
#include "shm/transaction.h"

namespace shm {
namespace {

using Items = std::vector<std::string>;
using End = List::End;

// One item of each size 0..8, binary: NUL first, 0xff, and a byte with the inline tag's bit.
Items BoundaryItems() {
  Items items;
  for (size_t n = 0; n <= 8; ++n) {
    std::string item;
    for (size_t i = 0; i < n; ++i)
      item.push_back(static_cast<char>("\0\xff\x01z\0\x80\x7f\x03"[i]));
    items.push_back(item);
  }
  return items;
}

List Open(Segment* seg, std::string_view name) {
  List list;
  EXPECT_OK(List::Open(seg, name, OpenMode::kCreateIfMissing, {}, &list));
  return list;
}

Items All(const List& list) {
  Items items;
  EXPECT_OK(list.Range(0, -1, &items));
  return items;
}

// The list's length and byte count as the registry reports them (ListUsage).
void ExpectUsage(Segment* seg, std::string_view name, const Items& model) {
  uint64_t bytes = 0;
  for (const std::string& item : model) bytes += item.size();
  std::vector<ObjectInfo> objects;  // Registry::List fills the usage (Lookup does not).
  ASSERT_OK(seg->registry().List(name, ObjectKind::kList, 10, "", &objects));
  ASSERT_EQ(objects.size(), 1u);
  EXPECT_EQ(objects[0].length, static_cast<int64_t>(model.size()));
  EXPECT_EQ(objects[0].size_bytes, bytes);
}

TEST(ListInlineTest, WordsAreOddNonZeroAndRoundTrip) {
  for (const std::string& item : BoundaryItems()) {
    if (!FitsInline(item)) {
      EXPECT_EQ(item.size(), 8u);
      continue;
    }
    const uint64_t word = InlineItemWord(item);
    EXPECT_NE(word, 0u);
    EXPECT_TRUE(IsInlineItem(word));
    EXPECT_FALSE(IsBlob(word)) << "no free path may take an inline word for a block";
    std::atomic<uint64_t> slot{word};
    EXPECT_EQ(InlineItemView(&slot, word), item);
  }
}

TEST(ListInlineTest, EveryOperationSeesTheSameBytesAcrossTheBoundary) {
  test::ScopedSegment seg;
  const size_t baseline = seg->free_bytes();
  List list = Open(seg.get(), "l");
  const Items items = BoundaryItems();
  std::deque<std::string> model;
  for (size_t i = 0; i < items.size(); ++i) {  // Both ends, so both ends hold both forms.
    ASSERT_OK(list.Push(i % 2 == 0 ? End::kRight : End::kLeft, items[i]));
    i % 2 == 0 ? model.push_back(items[i]) : model.push_front(items[i]);
  }
  Items now(model.begin(), model.end());
  EXPECT_EQ(All(list), now);
  ExpectUsage(seg.get(), "l", now);
  for (int64_t i = 0; i < static_cast<int64_t>(now.size()); ++i) {  // LINDEX-like reads.
    Items one;
    ASSERT_OK(list.Range(i, i, &one));
    ASSERT_EQ(one.size(), 1u);
    EXPECT_EQ(one[0], now[static_cast<size_t>(i)]);
  }

  // Set: every item becomes each other size in turn, inline <-> blob both ways.
  for (size_t at = 0; at < now.size(); ++at) {
    for (const std::string& item : items) {
      ASSERT_OK(list.Set(static_cast<int64_t>(at), item));
      now[at] = item;
      ASSERT_EQ(All(list), now) << "set " << at << " to " << item.size() << " bytes";
      ExpectUsage(seg.get(), "l", now);
    }
    ASSERT_OK(list.Set(static_cast<int64_t>(at), items[at]));
    now[at] = items[at];
  }

  // Replace (what LINSERT, LREM and LTRIM commit): a content swap keeps both forms.
  Items reversed(now.rbegin(), now.rend());
  bool swapped = false;
  ASSERT_OK(list.Replace(&now, reversed, &swapped));
  ASSERT_TRUE(swapped);
  EXPECT_EQ(All(list), reversed);
  ExpectUsage(seg.get(), "l", reversed);

  // Pops from both ends give the bytes back exactly.
  std::deque<std::string> rest(reversed.begin(), reversed.end());
  for (int n = 0; !rest.empty(); ++n) {
    std::string item;
    bool got = false;
    const End end = n % 2 == 0 ? End::kLeft : End::kRight;
    ASSERT_OK(list.Pop(end, std::chrono::milliseconds(0), &item, &got));
    ASSERT_TRUE(got);
    EXPECT_EQ(item, end == End::kLeft ? rest.front() : rest.back());
    end == End::kLeft ? rest.pop_front() : rest.pop_back();
    ExpectUsage(seg.get(), "l", Items(rest.begin(), rest.end()));
  }
  ASSERT_OK(seg->registry().Delete("l"));
  seg->TrimIdleCaches();
  seg->TrimIdleCaches();
  EXPECT_EQ(seg->free_bytes(), baseline) << "leak or double free";
  EXPECT_OK(seg->Probe());
}

// Seeded mixed pushes and pops of inline and blob items, through ring growth and shrinking: the
// byte count stays exact and the content matches a model; deleting frees every blob (Probe).
TEST(ListInlineTest, BytesStayExactUnderMixedPushesAndPops) {
  test::ScopedSegment seg;
  const size_t baseline = seg->free_bytes();
  List list = Open(seg.get(), "mixed");
  std::mt19937 rng(2323);
  std::deque<std::string> model;
  for (int step = 0; step < 4000; ++step) {
    const bool push = model.empty() || rng() % 100 < (step < 2000 ? 65 : 35);
    const End end = rng() % 2 == 0 ? End::kLeft : End::kRight;
    if (push) {
      std::string item(rng() % 13, '\0');
      for (char& c : item) c = static_cast<char>(rng());
      ASSERT_OK(list.Push(end, item));
      end == End::kLeft ? model.push_front(item) : model.push_back(item);
    } else {
      std::string item;
      bool got = false;
      ASSERT_OK(list.Pop(end, std::chrono::milliseconds(0), &item, &got));
      ASSERT_TRUE(got);
      ASSERT_EQ(item, end == End::kLeft ? model.front() : model.back()) << step;
      end == End::kLeft ? model.pop_front() : model.pop_back();
    }
    if (step % 500 == 0) ExpectUsage(seg.get(), "mixed", Items(model.begin(), model.end()));
  }
  EXPECT_EQ(All(list), Items(model.begin(), model.end()));
  ExpectUsage(seg.get(), "mixed", Items(model.begin(), model.end()));
  ASSERT_OK(seg->registry().Delete("mixed"));
  seg->TrimIdleCaches();
  seg->TrimIdleCaches();
  EXPECT_EQ(seg->free_bytes(), baseline) << "leak or double free";
  EXPECT_OK(seg->Probe());
}

// The snapshot (and the rebuild, which copies through the same form) stores bytes, not words:
// inline and blob items come back alike in a fresh segment, with their byte count.
TEST(ListInlineTest, SnapshotRoundTripKeepsInlineAndBlobItems) {
  test::ScopedSegment from;
  List list = Open(from.get(), "snap");
  const Items items = BoundaryItems();
  for (const std::string& item : items) ASSERT_OK(list.Push(End::kRight, item));
  std::string bytes;
  SnapshotStats stats;
  ASSERT_OK(SerializeSegment(from.get(), &bytes, &stats));

  test::ScopedSegment into;
  ASSERT_OK(RestoreSegment(bytes, into.get(), &stats));
  List restored = Open(into.get(), "snap");
  EXPECT_EQ(All(restored), items);
  ExpectUsage(into.get(), "snap", items);
  std::string item;
  bool got = false;
  ASSERT_OK(restored.Pop(End::kRight, std::chrono::milliseconds(0), &item, &got));
  EXPECT_EQ(item, items.back());
  ASSERT_OK(restored.Pop(End::kLeft, std::chrono::milliseconds(0), &item, &got));
  EXPECT_EQ(item, items.front());
  ASSERT_OK(into->registry().Delete("snap"));
  EXPECT_OK(into->Probe());
}

// A transaction's pushes carry inline items in its record and its pops hand inline words back:
// committed content is exact, and neither commit nor abort frees an inline word (Probe, and
// free_bytes back at the baseline).
TEST(ListInlineTest, TransactionsCarryInlineItems) {
  test::ScopedSegment seg;
  const size_t baseline = seg->free_bytes();
  List list = Open(seg.get(), "tx");
  const Items items = BoundaryItems();
  for (const std::string& item : items) ASSERT_OK(list.Push(End::kRight, item));
  {
    Transaction tx(seg.get());
    std::string item;
    bool got = false;
    ASSERT_OK(tx.Pop(list, End::kLeft, &item, &got));  // "" (inline)
    EXPECT_EQ(item, items[0]);
    ASSERT_OK(tx.Pop(list, End::kRight, &item, &got));  // 8 bytes (blob)
    EXPECT_EQ(item, items[8]);
    ASSERT_OK(tx.Push(list, End::kLeft, items[7]));
    ASSERT_OK(tx.Push(list, End::kRight, items[3]));
    ASSERT_OK(tx.Push(list, End::kRight, items[8]));
    ASSERT_OK(tx.Commit());
  }
  Items want{items[7]};
  want.insert(want.end(), items.begin() + 1, items.begin() + 8);
  want.push_back(items[3]);
  want.push_back(items[8]);
  EXPECT_EQ(All(list), want);
  ExpectUsage(seg.get(), "tx", want);
  {
    Transaction tx(seg.get());  // Never committed: its record's items are dropped.
    ASSERT_OK(tx.Push(list, End::kLeft, items[2]));
    ASSERT_OK(tx.Push(list, End::kLeft, items[8]));
  }
  EXPECT_EQ(All(list), want);
  ASSERT_OK(seg->registry().Delete("tx"));
  seg->TrimIdleCaches();
  seg->TrimIdleCaches();
  EXPECT_EQ(seg->free_bytes(), baseline) << "leak or double free";
  EXPECT_OK(seg->Probe());
}

}  // namespace
}  // namespace shm
