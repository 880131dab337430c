// A writer that dies in the middle of a slice write or an op leaves the old slice intact: the next
// holder of the array's lock rolls the half-done write back from the undo record.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "crash_point.h"
#include "shm/ndarray.h"

namespace shm {
namespace {

constexpr int kRows = 64, kCols = 64;

Slice S(std::string_view text) {
  Slice slice;
  EXPECT_TRUE(Slice::Parse(text, &slice).ok());
  return slice;
}

std::vector<int32_t> ReadAll(const NdArray& a) {
  ArrayData data;
  Status s = a.ReadSlice(Slice(), &data);
  EXPECT_TRUE(s.ok()) << s.ToString();
  std::vector<int32_t> out(static_cast<size_t>(data.size()));
  std::memcpy(out.data(), data.bytes.data(), data.bytes.size());
  return out;
}

// A kRows x kCols int32 array of 7s named "a".
NdArray SevensArray(Segment* seg) {
  NdArray a;
  EXPECT_TRUE(NdArray::Create(seg, "a", DType::kInt32, {kRows, kCols}, Scalar::Int(7), &a).ok());
  return a;
}

// Runs `op` in a child armed to die at the crash point's `hit`-th arrival; checks that it died
// there (returning means the point was never reached) and returns its pid.
pid_t DieAtCrashPoint(const char* point, int hit, const std::function<Status()>& op) {
  pid_t pid = test::ForkChild([&] {
    SetCrashPoint(point, hit);
    return op().ok() ? 0 : 1;
  });
  test::ChildExit exit = test::WaitChild(pid);
  EXPECT_TRUE(exit.exited && exit.code == kCrashPointExitCode)
      << point << " not reached: exit " << exit.code << ", signal " << exit.signal;
  return pid;
}

// Runs `write` in a child armed to die at the crash point's `hit`-th arrival, then checks that
// the array still holds its old values once this process takes the lock, that the undo record
// was freed, and that the array takes writes again.
void ExpectRolledBack(const char* point, int hit, const std::function<Status(NdArray&)>& write) {
  SCOPED_TRACE(std::string(point) + ":" + std::to_string(hit));
  test::ScopedSegment seg;
  NdArray a = SevensArray(seg.get());
  ArrayInfo before;
  ASSERT_TRUE(a.Info(&before).ok());
  size_t free_before = seg->free_bytes();
  pid_t pid = DieAtCrashPoint(point, hit, [&] { return write(a); });

  EXPECT_EQ(ReadAll(a), std::vector<int32_t>(kRows * kCols, 7));  // Repairs, then reads.
  ArrayInfo after;
  ASSERT_TRUE(a.Info(&after).ok());
  EXPECT_GT(after.version, before.version);   // The rollback is a write too.
  EXPECT_EQ(seg->free_bytes(), free_before);  // The undo blob was freed by the repair.
  ASSERT_TRUE(seg->RecoverDeadProcess(pid, nullptr).ok());
  EXPECT_EQ(seg->free_bytes(), free_before);

  ASSERT_TRUE(a.Fill(S("::2"), Scalar::Int(1)).ok());
  std::vector<int32_t> values = ReadAll(a);
  EXPECT_EQ(values[0], 1);
  EXPECT_EQ(values[kCols], 7);
}

TEST(NdArrayCrashTest, WriterDyingMidSliceWriteIsRolledBack) {
  std::string rows(static_cast<size_t>(kRows / 2) * kCols * sizeof(int32_t), '\x01');
  ExpectRolledBack("array_mid_write", 5, [&](NdArray& a) { return a.WriteSlice(S("::2"), rows); });
}

TEST(NdArrayCrashTest, WriterDyingBeforeTheCommitIsRolledBack) {
  std::string rows(static_cast<size_t>(kRows / 2) * kCols * sizeof(int32_t), '\x01');
  ExpectRolledBack("array_before_commit", 1,
                   [&](NdArray& a) { return a.WriteSlice(S("1::2,::-1"), rows); });
}

TEST(NdArrayCrashTest, OpDyingMidwayIsRolledBack) {
  ExpectRolledBack("array_mid_write", 10, [](NdArray& a) {
    return a.Apply(ArrayOp::kMul, S("::-1,1:"), Scalar::Float(2.5));
  });
}

TEST(NdArrayCrashTest, TypedUpdateDyingMidwayIsRolledBack) {
  ExpectRolledBack("array_mid_write", 1, [](NdArray& a) {
    return a.Update<int32_t>(S("::3"), [](StridedSpan<int32_t>& span) {
      span.ForEach([](int32_t& v) { v = -v; });
      CrashPoint("array_mid_write");
    });
  });
}

// A write of the whole array fills a new body and publishes it (copy-on-write): a writer dying
// before the publish leaves the old array and no repair to do; dying after it leaves the new one.
// Either way the manager's recovery of the dead process frees the orphaned body.
void ExpectWholeWriteSettled(const char* point, int32_t expected) {
  SCOPED_TRACE(point);
  test::ScopedSegment seg;
  NdArray a = SevensArray(seg.get());
  ArrayInfo before;
  ASSERT_TRUE(a.Info(&before).ok());
  size_t free_before = seg->free_bytes();
  std::vector<int32_t> nines(kRows * kCols, 9);
  std::string_view bytes(reinterpret_cast<const char*>(nines.data()),
                         nines.size() * sizeof(int32_t));
  pid_t pid = DieAtCrashPoint(point, 1, [&] { return a.WriteSlice(Slice(), bytes); });

  EXPECT_EQ(ReadAll(a), std::vector<int32_t>(kRows * kCols, expected));
  ArrayInfo after;
  ASSERT_TRUE(a.Info(&after).ok());
  EXPECT_EQ(after.version, before.version + (expected == 7 ? 0 : 1));
  EXPECT_LT(seg->free_bytes(), free_before);  // The orphan waits in the dead thread's slot...
  ASSERT_TRUE(seg->RecoverDeadProcess(pid, nullptr).ok());
  EXPECT_EQ(seg->free_bytes(), free_before);  // ...until the manager frees it.

  ASSERT_TRUE(a.Fill(S("::2"), Scalar::Int(1)).ok());
  std::vector<int32_t> values = ReadAll(a);
  EXPECT_EQ(values[0], 1);
  EXPECT_EQ(values[kCols], expected);
}

TEST(NdArrayCrashTest, WholeArrayWriterDyingBeforeThePublishLeavesTheOldArray) {
  ExpectWholeWriteSettled("array_before_replace", 7);
}

TEST(NdArrayCrashTest, WholeArrayWriterDyingAfterThePublishLeavesTheNewArray) {
  ExpectWholeWriteSettled("array_after_replace", 9);
}

// Whole-array writes replace the body while another process runs lock-free atomics on it: the
// old body is freed only after the atomics touching it are done, so nothing is written to freed
// memory (the segment's free space balances exactly once the array is deleted).
TEST(NdArrayCrashTest, WholeArrayWritesRacingAtomicsFreeEveryBodyOnce) {
  test::ScopedSegment seg;
  size_t free_before = seg->free_bytes();
  NdArray a;
  ASSERT_TRUE(
      NdArray::Create(seg.get(), "a", DType::kInt64, {kRows, kCols}, Scalar::Int(0), &a).ok());
  constexpr int kAdds = 200000, kMaxWrites = 100000;
  pid_t adder = test::ForkChild([&] {
    Scalar old;
    for (int i = 0; i < kAdds; ++i) {
      if (!a.FetchAdd({i % kRows, 0}, Scalar::Int(1), &old).ok()) return 1;
    }
    return 0;
  });
  // Writes for as long as the adder runs (bounded), so the two overlap on any machine.
  std::vector<int64_t> values(kRows * kCols);
  int64_t writes = 0;
  int wait_status = 0;
  pid_t reaped = 0;
  while (reaped == 0 && writes < kMaxWrites) {
    ++writes;
    std::fill(values.begin(), values.end(), writes << 32);
    std::string_view bytes(reinterpret_cast<const char*>(values.data()),
                           values.size() * sizeof(int64_t));
    ASSERT_TRUE(a.WriteSlice(Slice(), bytes).ok());
    reaped = waitpid(adder, &wait_status, WNOHANG);
  }
  if (reaped == 0) reaped = waitpid(adder, &wait_status, 0);
  ASSERT_EQ(reaped, adder);
  ASSERT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) << wait_status;
  RecordProperty("whole_array_writes", static_cast<int>(writes));
  ArrayData data;
  ASSERT_TRUE(a.ReadSlice(Slice(), &data).ok());
  const auto* v = data.data<int64_t>();
  for (int64_t i = 0; i < kRows * kCols; ++i) {
    ASSERT_EQ(v[i] >> 32, writes) << i;  // Every element holds the last write (plus adds).
    if (i % kCols != 0) {
      ASSERT_EQ(v[i], writes << 32) << i;
    }
  }
  ASSERT_TRUE(seg->registry().Delete("a").ok());
  EXPECT_EQ(seg->free_bytes(), free_before);
}

// A process that dies in the middle of an atomic leaves its pin in its intent slot. A dead
// process touches nothing, so a whole-array swap and a delete free the bodies at once instead of
// waiting for it (and leaking them, as a pin count would).
TEST(NdArrayCrashTest, PinOfADeadProcessHoldsNothingBack) {
  test::ScopedSegment seg;
  size_t free_before = seg->free_bytes();
  NdArray a = SevensArray(seg.get());
  size_t free_with_array = seg->free_bytes();
  Scalar old;
  pid_t pid = DieAtCrashPoint("array_atomic_pinned", 1, [&] {
    return a.FetchAdd({0, 0}, Scalar::Int(1), &old);
  });

  std::vector<int32_t> nines(kRows * kCols, 9);
  ASSERT_TRUE(a.WriteSlice(Slice(), std::string_view(reinterpret_cast<const char*>(nines.data()),
                                                     nines.size() * sizeof(int32_t)))
                  .ok());
  EXPECT_EQ(ReadAll(a), nines);
  EXPECT_EQ(seg->free_bytes(), free_with_array);  // The old body was freed, not leaked.
  ASSERT_TRUE(seg->registry().Delete("a").ok());
  EXPECT_EQ(seg->free_bytes(), free_before);
  ASSERT_TRUE(seg->RecoverDeadProcess(pid, nullptr).ok());
  EXPECT_EQ(seg->free_bytes(), free_before);
}

// SIGKILL in the middle of a stream of whole-array writes: the array always holds one write's
// value everywhere, never a mix. The parent watches the data lock-free and kills the writer once a
// write has visibly started (its last row, written first, changed).
TEST(NdArrayCrashTest, SigkilledWriterNeverLeavesATornArray) {
  constexpr int kRounds = 4;
  constexpr int64_t kRowsBig = 4096, kColsBig = 256;  // 4 MiB of int32 per write.
  int rolled_back = 0;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    test::ScopedSegment seg(size_t{32} << 20);
    NdArray a;
    ASSERT_TRUE(
        NdArray::Create(seg.get(), "a", DType::kInt32, {kRowsBig, kColsBig}, Scalar::Int(0), &a)
            .ok());
    pid_t pid = test::ForkChild([&] {
      for (int32_t k = 1;; ++k) {
        if (!a.Fill(S("::-1"), Scalar::Int(k)).ok()) return 1;
      }
    });
    int64_t deadline = SteadyNowMs() + 20000;
    ArrayInfo info;
    while (a.Info(&info).ok() && info.version < static_cast<uint64_t>(2 + round) &&
           SteadyNowMs() < deadline) {
      sched_yield();
    }
    Scalar first, last;
    ASSERT_TRUE(a.Load({0, 0}, &first).ok());
    do {
      ASSERT_TRUE(a.Load({-1, -1}, &last).ok());
    } while (last == first && SteadyNowMs() < deadline);
    kill(pid, SIGKILL);
    test::ChildExit exit = test::WaitChild(pid);
    ASSERT_TRUE(exit.signaled);

    ArrayData data;
    ASSERT_TRUE(a.ReadSlice(Slice(), &data).ok());  // Rolls back if the kill landed mid-write.
    const auto* v = data.data<int32_t>();
    int64_t torn = 0;
    for (int64_t i = 1; i < kRowsBig * kColsBig; ++i) torn += v[i] != v[0];
    EXPECT_EQ(torn, 0) << "first element " << v[0];
    EXPECT_GE(v[0], first.i);
    rolled_back += v[0] == first.i;
    Status s = seg->RecoverDeadProcess(pid, nullptr);
    if (s.ok()) s = a.Fill(Slice(), Scalar::Int(-1));
    if (s.IsPoisoned()) continue;  // Killed inside the allocator: the manager would rebuild.
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  // Usually every round kills a write midway (the writer needs a millisecond per write, the kill
  // lands in microseconds), but on a loaded machine the write may finish first: that round then
  // checks a whole array too, so the count is reported rather than asserted.
  RecordProperty("rolled_back_rounds", rolled_back);
}

}  // namespace
}  // namespace shm
