#include "shm/ndarray.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "common/status_assert.h"
#include "common/test_util.h"
#include "kind_ops.h"
#include "segment_impl.h"
#include "shm/counter.h"
#include "shm/npy.h"

namespace shm {
namespace {

Slice S(std::string_view text) {
  Slice slice;
  Status s = Slice::Parse(text, &slice);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return slice;
}

template <class T>
std::vector<T> Values(const ArrayData& a) {
  std::vector<T> out(static_cast<size_t>(a.size()));
  if (!out.empty()) std::memcpy(out.data(), a.bytes.data(), a.bytes.size());
  return out;
}

template <class T>
std::vector<T> ReadAll(const NdArray& array, std::string_view slice = "") {
  ArrayData data;
  Status s = array.ReadSlice(S(slice), &data);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(data.dtype, DTypeOf<T>::kValue);
  return Values<T>(data);
}

// An int32 array of shape (3, 4) holding 0..11.
NdArray Arange34(Segment* seg, std::string_view name = "a") {
  NdArray a;
  Status s = NdArray::CreateFrom(
      seg, name, ArrayData::From<int32_t>({3, 4}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}), &a);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return a;
}

TEST(NdArrayTest, EveryDTypeCreatesFillsAndReports) {
  test::ScopedSegment seg;
  for (int i = 0; i < kDTypeCount; ++i) {
    auto dtype = static_cast<DType>(i);
    SCOPED_TRACE(std::string(DTypeName(dtype)));
    DType parsed;
    ASSERT_OK(ParseDType(DTypeName(dtype), &parsed));
    EXPECT_EQ(parsed, dtype);
    NdArray a;
    ASSERT_OK(
        NdArray::Create(seg.get(), "arr" + std::to_string(i), dtype, {2, 3}, Scalar::Int(1), &a));
    ArrayInfo info;
    ASSERT_OK(a.Info(&info));
    EXPECT_EQ(info.dtype, dtype);
    EXPECT_EQ(info.shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(info.nbytes, 6 * DTypeSize(dtype));
    EXPECT_EQ(info.version, 0u);
    ArrayData data;
    ASSERT_OK(a.ReadSlice(Slice(), &data));
    for (int64_t k = 0; k < data.size(); ++k) EXPECT_EQ(data.Get(k).AsDouble(), 1.0);
    Status read_bool = a.Read<bool>(Slice(), [](const StridedSpan<const bool>&) {});
    EXPECT_EQ(read_bool.ok(), dtype == DType::kBool);
    NdArray opened;
    ASSERT_OK(NdArray::Open(seg.get(), "arr" + std::to_string(i), &opened));
    EXPECT_EQ(opened.dtype(), dtype);
  }
  DType d;
  EXPECT_TRUE(ParseDType("float16", &d).IsInvalidArgument());
}

TEST(NdArrayTest, DataIsAlignedTo64Bytes) {
  test::ScopedSegment seg;
  for (int i = 0; i < 4; ++i) {
    NdArray a;
    ASSERT_OK(NdArray::Create(seg.get(), "x" + std::to_string(i), DType::kUInt8, {3 + i},
                              Scalar::Int(0), &a));
    ASSERT_OK(a.Read<uint8_t>(Slice(), [](const StridedSpan<const uint8_t>& span) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(&span.at({0})) % 64, 0u);
    }));
  }
}

// The fill is written a page at a time, then in doubling copies: every element gets it.
TEST(NdArrayTest, FillReachesEveryElementOfALargeArray) {
  test::ScopedSegment seg;
  NdArray a;
  ASSERT_OK(NdArray::Create(seg.get(), "big", DType::kInt16, {3, 5001}, Scalar::Int(-3), &a));
  EXPECT_EQ(ReadAll<int16_t>(a), std::vector<int16_t>(3 * 5001, -3));
}

TEST(NdArrayTest, BadCreatesChangeNothing) {
  test::ScopedSegment seg(size_t{16} << 20);
  NdArray a;
  EXPECT_TRUE(
      NdArray::Create(seg.get(), "a", DType::kInt32, {}, Scalar::Int(0), &a).IsInvalidArgument());
  EXPECT_TRUE(
      NdArray::Create(seg.get(), "a", DType::kInt32, std::vector<int64_t>(9, 1), Scalar::Int(0), &a)
          .IsInvalidArgument());
  EXPECT_TRUE(NdArray::Create(seg.get(), "a", DType::kInt32, {2, -1}, Scalar::Int(0), &a)
                  .IsInvalidArgument());
  Status s =
      NdArray::Create(seg.get(), "a", DType::kFloat64, {1 << 20, 1 << 8}, Scalar::Int(0), &a);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("larger than 1024 MiB"), std::string_view::npos);
  s = NdArray::Create(seg.get(), "a", DType::kFloat64, {4 << 20}, Scalar::Int(0), &a);
  EXPECT_TRUE(s.IsOutOfSpace()) << s.ToString();  // 32 MiB in a 16 MiB segment.
  s = NdArray::Create(seg.get(), "a", DType::kInt8, {4}, Scalar::Int(300), &a);
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_EQ(s.message(), "value 300 is out of bounds for int8");
  EXPECT_TRUE(
      NdArray::Create(seg.get(), "a/b", DType::kInt8, {4}, Scalar::Int(0), &a).IsInvalidArgument());
  EXPECT_EQ(seg->registry().live(), 0u);
  ASSERT_OK(NdArray::Create(seg.get(), "a", DType::kInt8, {4}, Scalar::Int(0), &a));
  EXPECT_TRUE(
      NdArray::Create(seg.get(), "a", DType::kInt8, {4}, Scalar::Int(0), &a).IsAlreadyExists());
  Counter c;
  ASSERT_OK(Counter::Open(seg.get(), "c", {OpenMode::kCreateIfMissing, 0, 0}, &c));
  EXPECT_TRUE(NdArray::Create(seg.get(), "c", DType::kInt8, {4}, Scalar::Int(0), &a).IsWrongType());
  EXPECT_TRUE(NdArray::Open(seg.get(), "c", &a).IsWrongType());
  EXPECT_TRUE(NdArray::Open(seg.get(), "missing", &a).IsNotFound());
}

TEST(NdArrayTest, ReadAndWriteSlicesAsNumpy) {
  test::ScopedSegment seg;
  NdArray a = Arange34(seg.get());
  EXPECT_EQ(ReadAll<int32_t>(a, "1:,::-1"), (std::vector<int32_t>{7, 6, 5, 4, 11, 10, 9, 8}));
  ArrayData one;
  ASSERT_OK(a.ReadSlice(S("1,2"), &one));
  EXPECT_TRUE(one.shape.empty());
  EXPECT_EQ(one.Get(0), Scalar::Int(6));

  // a[::2, ::-2] = [[-1, -2], [-3, -4]]
  std::vector<int32_t> block = {-1, -2, -3, -4};
  ASSERT_OK(a.WriteSlice(S("::2,::-2"),
                         std::string_view(reinterpret_cast<const char*>(block.data()), 16)));
  EXPECT_EQ(ReadAll<int32_t>(a), (std::vector<int32_t>{0, -2, 2, -1, 4, 5, 6, 7, 8, -4, 10, -3}));
  ArrayInfo info;
  ASSERT_OK(a.Info(&info));
  EXPECT_EQ(info.version, 1u);

  // Wrong sizes, shapes and slices change nothing.
  Status s = a.WriteSlice(S("::2,::-2"), std::string_view("abc"));
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.message().find("needs 16 bytes, got 3"), std::string_view::npos);
  s = a.WriteSlice(S("0"), ArrayData::From<int64_t>({3}, {1, 2, 3}));
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_EQ(s.message(), "shape mismatch: slice has shape (4,), data has shape (3,)");
  EXPECT_TRUE(a.WriteSlice(S("3"), std::string_view()).IsInvalidArgument());
  EXPECT_TRUE(a.Fill(S("::0"), Scalar::Int(1)).IsInvalidArgument());
  ASSERT_OK(a.Info(&info));
  EXPECT_EQ(info.version, 1u);

  // Another dtype is cast (float -> int truncates toward zero).
  ASSERT_OK(a.WriteSlice(S("2"), ArrayData::From<double>({4}, {1.9, -1.9, 1e20, NAN})));
  EXPECT_EQ(ReadAll<int32_t>(a, "2"),
            (std::vector<int32_t>{1, -1, std::numeric_limits<int32_t>::max(), 0}));
  ASSERT_OK(a.Fill(S("...,0"), Scalar::Int(42)));
  EXPECT_EQ(ReadAll<int32_t>(a, ":,0"), (std::vector<int32_t>{42, 42, 42}));
  // Empty slices are fine and write nothing.
  ASSERT_OK(a.Fill(S("5:"), Scalar::Int(1)));
}

struct OpCase {
  DType dtype;
  double start;
  ArrayOp op;
  Scalar value;
  double expected;
};

TEST(NdArrayTest, ScalarOpsFollowTheDocumentedCasting) {
  const double kNaN = std::numeric_limits<double>::quiet_NaN();
  const std::vector<OpCase> cases = {
      {DType::kInt8, 127, ArrayOp::kAdd, Scalar::Int(1), -128},  // Wraps, as numpy.
      {DType::kUInt8, 0, ArrayOp::kSub, Scalar::Int(1), 255},
      {DType::kInt16, 300, ArrayOp::kMul, Scalar::Int(300), 24464},  // 90000 mod 2^16.
      {DType::kInt32, -7, ArrayOp::kDiv, Scalar::Int(2), -4},        // Floor division.
      {DType::kInt32, 7, ArrayOp::kDiv, Scalar::Int(-2), -4},
      {DType::kInt32, 7, ArrayOp::kDiv, Scalar::Int(0), 0},
      {DType::kInt64, -9223372036854775807.0 - 1, ArrayOp::kDiv, Scalar::Int(-1),
       -9223372036854775807.0 - 1},
      {DType::kUInt32, 7, ArrayOp::kDiv, Scalar::Int(2), 3},
      {DType::kInt32, 3, ArrayOp::kMul, Scalar::Float(0.5), 1},    // 1.5 truncated.
      {DType::kInt32, -3, ArrayOp::kMul, Scalar::Float(0.5), -1},  // -1.5 truncated.
      {DType::kInt32, 7, ArrayOp::kDiv, Scalar::Float(2), 3},      // True division, truncated.
      {DType::kInt8, 0, ArrayOp::kAdd, Scalar::Float(1000), 127},  // Saturates.
      {DType::kUInt8, 5, ArrayOp::kSub, Scalar::Float(10), 0},
      {DType::kInt32, 5, ArrayOp::kAdd, Scalar::Float(kNaN), 0},
      {DType::kFloat32, 1, ArrayOp::kDiv, Scalar::Int(3), 1.0f / 3.0f},
      {DType::kFloat64, 1, ArrayOp::kDiv, Scalar::Int(0), INFINITY},
      {DType::kFloat64, 1, ArrayOp::kMin, Scalar::Float(kNaN), kNaN},
      {DType::kFloat64, 1, ArrayOp::kMax, Scalar::Float(-1), 1},
      {DType::kInt32, 1, ArrayOp::kMin, Scalar::Int(-5), -5},
      {DType::kUInt64, 1, ArrayOp::kFill, Scalar::UInt(UINT64_MAX), 18446744073709551615.0},
      {DType::kBool, 0, ArrayOp::kAdd, Scalar::Bool(true), 1},   // or
      {DType::kBool, 1, ArrayOp::kMul, Scalar::Bool(false), 0},  // and
      {DType::kBool, 0, ArrayOp::kAdd, Scalar::Int(2), 1},       // int64 2 -> true
      {DType::kBool, 1, ArrayOp::kMul, Scalar::Float(0.0), 0},
  };
  test::ScopedSegment seg;
  int n = 0;
  for (const OpCase& c : cases) {
    SCOPED_TRACE(std::string(DTypeName(c.dtype)) + " " + std::to_string(c.start) + " op " +
                 std::to_string(static_cast<int>(c.op)) + " " + c.value.ToString());
    NdArray a;
    Scalar start = c.dtype == DType::kUInt64 ? Scalar::UInt(static_cast<uint64_t>(c.start))
                   : IsFloatDType(c.dtype)   ? Scalar::Float(c.start)
                                             : Scalar::Int(static_cast<int64_t>(c.start));
    ASSERT_OK(NdArray::Create(seg.get(), "op" + std::to_string(n++), c.dtype, {2}, start, &a));
    ASSERT_OK(a.Apply(c.op, Slice(), c.value));
    ArrayData data;
    ASSERT_OK(a.ReadSlice(Slice(), &data));
    double got = data.Get(1).AsDouble();
    if (std::isnan(c.expected)) {
      EXPECT_TRUE(std::isnan(got)) << got;
    } else {
      EXPECT_EQ(got, c.expected);
    }
  }
}

TEST(NdArrayTest, BadOpsAreInvalidAndChangeNothing) {
  test::ScopedSegment seg;
  NdArray b, i8;
  ASSERT_OK(NdArray::Create(seg.get(), "b", DType::kBool, {2}, Scalar::Bool(true), &b));
  EXPECT_TRUE(b.Apply(ArrayOp::kSub, Slice(), Scalar::Bool(true)).IsInvalidArgument());
  EXPECT_TRUE(b.Apply(ArrayOp::kDiv, Slice(), Scalar::Bool(true)).IsInvalidArgument());
  ASSERT_OK(NdArray::Create(seg.get(), "i8", DType::kInt8, {2}, Scalar::Int(1), &i8));
  Status s = i8.Apply(ArrayOp::kAdd, Slice(), Scalar::Int(300));
  EXPECT_EQ(s.message(), "value 300 is out of bounds for int8");
  EXPECT_TRUE(i8.Apply(ArrayOp::kAdd, Slice(), Scalar::Int(-1)).ok());
  EXPECT_TRUE(
      NdArray().Apply(ArrayOp::kAdd, Slice(), Scalar::Int(1)).IsInvalidArgument());  // Not open.
  NdArray u8;
  ASSERT_OK(NdArray::Create(seg.get(), "u8", DType::kUInt8, {2}, Scalar::Int(1), &u8));
  EXPECT_TRUE(u8.Apply(ArrayOp::kSub, Slice(), Scalar::Int(-1)).IsInvalidArgument());
  EXPECT_EQ(ReadAll<uint8_t>(u8), (std::vector<uint8_t>{1, 1}));
  ArrayOp op;
  EXPECT_TRUE(ParseArrayOp("pow", &op).IsInvalidArgument());
  ASSERT_OK(ParseArrayOp("div", &op));
  EXPECT_EQ(op, ArrayOp::kDiv);
}

TEST(NdArrayTest, ArrayOperandsPromoteAsNumpy) {
  test::ScopedSegment seg;
  NdArray a;
  ASSERT_OK(NdArray::Create(seg.get(), "a", DType::kInt8, {3}, Scalar::Int(50), &a));
  // int8 with int64 computes in int64: max(50, 300) = 300, then 300 -> int8 wraps to 44.
  ASSERT_OK(a.Apply(ArrayOp::kMax, Slice(), ArrayData::From<int64_t>({3}, {300, 10, -300})));
  EXPECT_EQ(ReadAll<int8_t>(a), (std::vector<int8_t>{44, 50, 50}));
  // A float operand computes in float64 then truncates.
  ASSERT_OK(a.Apply(ArrayOp::kMul, Slice(), ArrayData::From<float>({3}, {0.5f, -0.5f, 2.0f})));
  EXPECT_EQ(ReadAll<int8_t>(a), (std::vector<int8_t>{22, -25, 100}));
  // On a 2-D slice, the operand has the slice's shape.
  NdArray m = Arange34(seg.get(), "m");
  ASSERT_OK(
      m.Apply(ArrayOp::kAdd, S("1:,::-2"), ArrayData::From<int32_t>({2, 2}, {100, 200, 300, 400})));
  EXPECT_EQ(ReadAll<int32_t>(m),
            (std::vector<int32_t>{0, 1, 2, 3, 4, 205, 6, 107, 8, 409, 10, 311}));
  Status s = m.Apply(ArrayOp::kAdd, S("1:"), ArrayData::From<int32_t>({4}, {1, 2, 3, 4}));
  EXPECT_EQ(s.message(), "shape mismatch: slice has shape (2, 4), data has shape (4,)");
}

TEST(NdArrayTest, ReductionsOverAllOrOneAxis) {
  test::ScopedSegment seg;
  NdArray a;
  ASSERT_OK(NdArray::Create(seg.get(), "a", DType::kInt8, {2, 3}, Scalar::Int(100), &a));
  ArrayData r;
  ASSERT_OK(a.Reduce(ReduceOp::kSum, Slice(), std::nullopt, &r));
  EXPECT_EQ(r.dtype, DType::kInt64);  // Does not wrap at int8.
  EXPECT_TRUE(r.shape.empty());
  EXPECT_EQ(r.Get(0), Scalar::Int(600));

  NdArray m = Arange34(seg.get(), "m");
  ASSERT_OK(m.Reduce(ReduceOp::kSum, Slice(), 0, &r));
  EXPECT_EQ(r.shape, (std::vector<int64_t>{4}));
  EXPECT_EQ(Values<int64_t>(r), (std::vector<int64_t>{12, 15, 18, 21}));
  ASSERT_OK(m.Reduce(ReduceOp::kMax, Slice(), -1, &r));
  EXPECT_EQ(r.dtype, DType::kInt32);
  EXPECT_EQ(Values<int32_t>(r), (std::vector<int32_t>{3, 7, 11}));
  ASSERT_OK(m.Reduce(ReduceOp::kMin, S("::-1,1:"), 1, &r));
  EXPECT_EQ(Values<int32_t>(r), (std::vector<int32_t>{9, 5, 1}));
  ASSERT_OK(m.Reduce(ReduceOp::kMean, Slice(), std::nullopt, &r));
  EXPECT_EQ(r.dtype, DType::kFloat64);
  EXPECT_EQ(r.Get(0), Scalar::Float(5.5));
  Status s = m.Reduce(ReduceOp::kSum, Slice(), 2, &r);
  EXPECT_EQ(s.message(), "axis 2 is out of bounds for array of dimension 2");
  s = m.Reduce(ReduceOp::kMin, S("3:"), std::nullopt, &r);
  EXPECT_TRUE(s.IsInvalidArgument());
  ASSERT_OK(m.Reduce(ReduceOp::kSum, S("3:"), std::nullopt, &r));
  EXPECT_EQ(r.Get(0), Scalar::Int(0));

  NdArray u, f, b;
  ASSERT_OK(NdArray::Create(seg.get(), "u", DType::kUInt64, {2}, Scalar::UInt(UINT64_MAX), &u));
  ASSERT_OK(u.Reduce(ReduceOp::kSum, Slice(), std::nullopt, &r));
  EXPECT_EQ(r.dtype, DType::kUInt64);
  EXPECT_EQ(r.Get(0), Scalar::UInt(UINT64_MAX - 1));  // Wraps, as numpy.
  ASSERT_OK(NdArray::Create(seg.get(), "f", DType::kFloat32, {3}, Scalar::Float(0.1), &f));
  ASSERT_OK(f.Reduce(ReduceOp::kSum, Slice(), std::nullopt, &r));
  EXPECT_EQ(r.dtype, DType::kFloat64);
  EXPECT_EQ(r.Get(0).f, 3.0 * static_cast<double>(0.1f));
  ASSERT_OK(f.Fill(S("1"), Scalar::Float(NAN)));
  ASSERT_OK(f.Reduce(ReduceOp::kMax, Slice(), std::nullopt, &r));
  EXPECT_TRUE(std::isnan(r.Get(0).f));
  ASSERT_OK(NdArray::Create(seg.get(), "b", DType::kBool, {3}, Scalar::Bool(true), &b));
  ASSERT_OK(b.Reduce(ReduceOp::kSum, Slice(), std::nullopt, &r));
  EXPECT_EQ(r.Get(0), Scalar::Int(3));
}

TEST(NdArrayTest, AtomicsReturnTheOldValue) {
  test::ScopedSegment seg;
  NdArray a, f, b;
  ASSERT_OK(NdArray::Create(seg.get(), "a", DType::kInt32, {2, 2}, Scalar::Int(10), &a));
  Scalar old;
  ASSERT_OK(a.FetchAdd({1, -1}, Scalar::Int(5), &old));
  EXPECT_EQ(old, Scalar::Int(10));
  ASSERT_OK(a.Atomic(AtomicOp::kMin, {1, 1}, Scalar::Int(3), Scalar(), &old));
  EXPECT_EQ(old, Scalar::Int(15));
  ASSERT_OK(a.Atomic(AtomicOp::kMax, {1, 1}, Scalar::Int(2), Scalar(), &old));
  EXPECT_EQ(old, Scalar::Int(3));
  Status s = a.Atomic(AtomicOp::kCas, {1, 1}, Scalar::Int(9), Scalar::Int(4), &old);
  EXPECT_TRUE(s.IsConflict());
  EXPECT_EQ(old, Scalar::Int(3));
  ASSERT_OK(a.Atomic(AtomicOp::kCas, {1, 1}, Scalar::Int(9), Scalar::Float(3.0), &old));
  ASSERT_OK(a.Load({1, 1}, &old));
  EXPECT_EQ(old, Scalar::Int(9));
  ArrayInfo info;
  ASSERT_OK(a.Info(&info));
  EXPECT_EQ(info.version, 3u);  // add, min, cas; the max and the missed cas changed nothing.

  EXPECT_TRUE(a.FetchAdd({2, 0}, Scalar::Int(1), &old).IsInvalidArgument());
  EXPECT_TRUE(a.FetchAdd({0}, Scalar::Int(1), &old).IsInvalidArgument());
  EXPECT_TRUE(a.FetchAdd({0, 0}, Scalar::Float(0.5), &old).IsInvalidArgument());
  EXPECT_TRUE(a.FetchAdd({0, 0}, Scalar::Int(int64_t{1} << 40), &old).IsInvalidArgument());

  ASSERT_OK(NdArray::Create(seg.get(), "f", DType::kFloat64, {1}, Scalar::Float(0.5), &f));
  ASSERT_OK(f.FetchAdd({0}, Scalar::Float(0.25), &old));
  EXPECT_EQ(old, Scalar::Float(0.5));
  ASSERT_OK(f.Atomic(AtomicOp::kCas, {0}, Scalar::Int(2), Scalar::Float(0.75), &old));
  ASSERT_OK(f.Load({0}, &old));
  EXPECT_EQ(old, Scalar::Float(2.0));
  ASSERT_OK(NdArray::Create(seg.get(), "b", DType::kBool, {1}, Scalar::Bool(false), &b));
  EXPECT_TRUE(b.FetchAdd({0}, Scalar::Int(1), &old).IsInvalidArgument());
}

// 4 processes build one histogram with lock-free adds: every count is exact.
TEST(NdArrayTest, ForkedProcessesBuildAnExactHistogram) {
  test::ScopedSegment seg;
  constexpr int kBins = 16, kProcesses = 4, kAdds = 20000;
  NdArray ints, floats;
  ASSERT_OK(NdArray::Create(seg.get(), "hist", DType::kInt64, {kBins}, Scalar::Int(0), &ints));
  ASSERT_OK(NdArray::Create(seg.get(), "fhist", DType::kFloat32, {kBins}, Scalar::Int(0), &floats));
  std::vector<int64_t> expected(kBins, 0);
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    std::mt19937 rng(1234 + p);
    for (int i = 0; i < kAdds; ++i) ++expected[rng() % kBins];
    children.push_back(test::ForkChild([&, p] {
      std::mt19937 child_rng(1234 + p);
      Scalar old;
      for (int i = 0; i < kAdds; ++i) {
        int64_t bin = static_cast<int64_t>(child_rng() % kBins);
        if (!ints.FetchAdd({bin}, Scalar::Int(1), &old).ok()) return 1;
        if (!floats.FetchAdd({bin}, Scalar::Float(1), &old).ok()) return 2;
      }
      return 0;
    }));
  }
  for (pid_t pid : children) {
    test::ChildExit exit = test::WaitChild(pid);
    EXPECT_TRUE(exit.exited && exit.code == 0) << exit.code;
  }
  EXPECT_EQ(ReadAll<int64_t>(ints), expected);
  std::vector<float> as_float(expected.begin(), expected.end());
  EXPECT_EQ(ReadAll<float>(floats), as_float);  // Exact: counts are far below 2^24.
}

// A writer process alternates whole-array writes of the value k done in place (a reversed fill,
// with an undo record) and by a body swap (WriteSlice of everything): readers copy without the
// lock when they can, and must still never see a mix of two writes, nor go back in time.
TEST(NdArrayTest, ReadersNeverSeeATornWriteFromAnotherProcess) {
  test::ScopedSegment seg;
  constexpr int64_t kRows = 64, kCols = 128;
  constexpr int kWrites = 3000, kMaxReads = 200000;
  NdArray a;
  ASSERT_OK(NdArray::Create(seg.get(), "a", DType::kInt64, {kRows, kCols}, Scalar::Int(0), &a));
  pid_t writer = test::ForkChild([&] {
    std::vector<int64_t> values(kRows * kCols);
    for (int64_t k = 1; k <= kWrites; ++k) {
      Status s;
      if (k % 2) {
        s = a.Fill(S("::-1,::-1"), Scalar::Int(k));
      } else {
        std::fill(values.begin(), values.end(), k);
        s = a.WriteSlice(Slice(), std::string_view(reinterpret_cast<const char*>(values.data()),
                                                   values.size() * sizeof(int64_t)));
      }
      if (!s.ok()) return 1;
    }
    return 0;
  });
  int64_t last_seen = 0;
  int reads = 0, mixed = 0, backwards = 0;
  ArrayData whole, strided;
  for (; reads < kMaxReads; ++reads) {
    ASSERT_OK(a.ReadSlice(Slice(), &whole));
    ASSERT_OK(a.ReadSlice(S("1::3,::-5"), &strided));
    const int64_t* w = whole.data<int64_t>();
    for (int64_t i = 1; i < whole.size(); ++i) mixed += w[i] != w[0];
    const int64_t* t = strided.data<int64_t>();
    for (int64_t i = 0; i < strided.size(); ++i) {
      mixed += t[i] != t[0];
      backwards += t[i] < w[0];
    }
    backwards += w[0] < last_seen;
    last_seen = w[0];
    if (last_seen == kWrites) break;
  }
  test::ChildExit exit = test::WaitChild(writer);
  ASSERT_TRUE(exit.exited && exit.code == 0) << exit.code;
  EXPECT_EQ(mixed, 0);
  EXPECT_EQ(backwards, 0);
  EXPECT_EQ(ReadAll<int64_t>(a), std::vector<int64_t>(kRows * kCols, kWrites));
  RecordProperty("reads", reads);
}

TEST(NdArrayTest, TypedViewsComputeInPlace) {
  test::ScopedSegment seg;
  NdArray m = Arange34(seg.get());
  ASSERT_OK(m.Update<int32_t>(S("::2,1:3"), [](StridedSpan<int32_t>& span) {
    EXPECT_EQ(span.ndim(), 2);
    EXPECT_EQ(span.shape(0), 2);
    span.ForEach([](int32_t& v) { v *= -1; });
    span.at({1, 1}) = 99;
  }));
  EXPECT_EQ(ReadAll<int32_t>(m), (std::vector<int32_t>{0, -1, -2, 3, 4, 5, 6, 7, 8, -9, 99, 11}));
  int64_t total = 0;
  ASSERT_OK(m.Read<int32_t>(S("1"), [&](const StridedSpan<const int32_t>& span) {
    span.ForEach([&](const int32_t& v) { total += v; });
  }));
  EXPECT_EQ(total, 4 + 5 + 6 + 7);
  Status s = m.Update<float>(Slice(), [](StridedSpan<float>&) {});
  EXPECT_EQ(s.message(), "dtype mismatch: array is int32, view type is float32");
}

TEST(NdArrayTest, StaleHandlesAreNotFoundAndDeleteFreesEverything) {
  test::ScopedSegment seg;
  size_t free_before = seg->free_bytes();
  NdArray a;
  {
    NdArray m = Arange34(seg.get(), "m");
    ASSERT_OK(m.Apply(ArrayOp::kAdd, S("::-1"), Scalar::Int(1)));
    ASSERT_OK(m.WriteSlice(S("1"), ArrayData::From<int32_t>({4}, {1, 2, 3, 4})));
    Scalar old;
    ASSERT_OK(m.FetchAdd({0, 0}, Scalar::Int(1), &old));
    a = m;
  }
  ASSERT_OK(seg->registry().Delete("m"));
  EXPECT_EQ(seg->free_bytes(), free_before);
  ArrayInfo info;
  Scalar old;
  EXPECT_TRUE(a.Info(&info).IsNotFound());
  EXPECT_TRUE(a.FetchAdd({0, 0}, Scalar::Int(1), &old).IsNotFound());
  EXPECT_TRUE(a.Load({0, 0}, &old).IsNotFound());
  EXPECT_TRUE(a.Fill(Slice(), Scalar::Int(1)).IsNotFound());
  ArrayData data;
  EXPECT_TRUE(a.ReadSlice(Slice(), &data).IsNotFound());
  EXPECT_EQ(seg->free_bytes(), free_before);  // The failed write freed its undo blob.
}

TEST(NdArrayTest, AnotherMappingSeesTheSameData) {
  test::ScopedSegment seg;
  NdArray m = Arange34(seg.get(), "m");
  std::unique_ptr<Segment> other;
  ASSERT_OK(Segment::Attach(seg.shm_name(), &other));  // Mapped at another address.
  NdArray there;
  ASSERT_OK(NdArray::Open(other.get(), "m", &there));
  ASSERT_OK(there.Fill(S("0"), Scalar::Int(-7)));
  EXPECT_EQ(ReadAll<int32_t>(m, "0"), (std::vector<int32_t>{-7, -7, -7, -7}));
}

TEST(NdArrayTest, SnapshotOpsRoundTripThroughNpy) {
  test::ScopedSegment seg;
  NdArray m = Arange34(seg.get(), "m");
  std::string bytes;
  ASSERT_OK(kArrayOps.serialize_locked(seg->impl(), m.ref().entry, &bytes));
  ASSERT_TRUE(LooksLikeNpy(bytes));
  uint64_t body = 0;
  ASSERT_OK(kArrayOps.deserialize(seg->impl(), bytes, &body));
  Registry::OpenSpec spec;
  spec.kind = ObjectKind::kArray;
  spec.mode = OpenMode::kCreateIfMissing;
  spec.make_body = [&](uint64_t* out) {
    *out = body;
    return Status::OK();
  };
  ObjectRef ref;
  ASSERT_OK(seg->registry().Open("copy", spec, &ref));
  NdArray copy;
  ASSERT_OK(NdArray::Open(seg.get(), "copy", &copy));
  EXPECT_EQ(ReadAll<int32_t>(copy), ReadAll<int32_t>(m));
  EXPECT_TRUE(kArrayOps.deserialize(seg->impl(), "junk", &body).IsInvalidArgument());
}

TEST(NdArrayTest, ReduceArrayAndCastArrayWorkOnLocalData) {
  ArrayData in = ArrayData::From<double>({2, 2}, {1.5, -2.5, 3.0, 4.0});
  ArrayData out;
  ASSERT_OK(CastArray(in, DType::kInt16, &out));
  EXPECT_EQ(Values<int16_t>(out), (std::vector<int16_t>{1, -2, 3, 4}));
  ASSERT_OK(ReduceArray(in, ReduceOp::kSum, 1, &out));
  EXPECT_EQ(Values<double>(out), (std::vector<double>{-1.0, 7.0}));
  EXPECT_TRUE(ReduceArray(ArrayData::From<double>({3}, {1}), ReduceOp::kSum, std::nullopt, &out)
                  .IsInvalidArgument());
}

}  // namespace
}  // namespace shm
