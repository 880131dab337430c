#include "shm/slice.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace shm {
namespace {

// Flat C-order positions of the view's elements: what np.arange(n).reshape(shape)[slice].ravel()
// holds.
std::vector<int64_t> Elements(const StridedView& view) {
  std::vector<int64_t> out;
  if (view.size() == 0) return out;
  std::vector<int64_t> idx(view.shape.size(), 0);
  while (true) {
    int64_t off = view.offset;
    for (size_t i = 0; i < idx.size(); ++i) off += idx[i] * view.strides[i];
    out.push_back(off);
    int axis = view.ndim() - 1;
    for (; axis >= 0; --axis) {
      if (++idx[axis] < view.shape[axis]) break;
      idx[axis] = 0;
    }
    if (axis < 0) return out;
  }
}

struct Case {
  std::vector<int64_t> array_shape;
  std::string text;
  std::vector<int64_t> shape;     // Of the result.
  std::vector<int64_t> elements;  // np.arange(...).reshape(array_shape)[text].ravel().
};

// Written down from numpy's documented basic-indexing semantics (and checked against numpy).
const std::vector<Case> kCases = {
    // 1-D, shape (10,).
    {{10}, "", {10}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
    {{10}, "2:5", {3}, {2, 3, 4}},
    {{10}, " 2 : 5 ", {3}, {2, 3, 4}},
    {{10}, "::-1", {10}, {9, 8, 7, 6, 5, 4, 3, 2, 1, 0}},
    {{10}, "-3:", {3}, {7, 8, 9}},
    {{10}, ":-3", {7}, {0, 1, 2, 3, 4, 5, 6}},
    {{10}, "8:2:-2", {3}, {8, 6, 4}},
    {{10}, "-1:-11:-1", {10}, {9, 8, 7, 6, 5, 4, 3, 2, 1, 0}},
    {{10}, "100:", {0}, {}},
    {{10}, "-100:3", {3}, {0, 1, 2}},
    {{10}, "5:100:3", {2}, {5, 8}},
    {{10}, "::3", {4}, {0, 3, 6, 9}},
    {{10}, "::-3", {4}, {9, 6, 3, 0}},
    {{10}, "5:2", {0}, {}},
    {{10}, "2:5:-1", {0}, {}},
    {{10}, "None:5:None", {5}, {0, 1, 2, 3, 4}},
    {{10}, "-100:-50:-1", {0}, {}},
    {{10}, "100:-100:-4", {3}, {9, 5, 1}},
    {{10}, "3", {}, {3}},
    {{10}, "-1", {}, {9}},
    {{10}, "-10", {}, {0}},
    {{10}, "1,", {}, {1}},
    {{10}, "...", {10}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
    {{10}, "9223372036854775807:", {0}, {}},
    {{10}, "::-9223372036854775808", {1}, {9}},
    {{10}, "::9223372036854775807", {1}, {0}},
    // 2-D, shape (3, 4).
    {{3, 4}, "1", {4}, {4, 5, 6, 7}},
    {{3, 4}, "1:,::-1", {2, 4}, {7, 6, 5, 4, 11, 10, 9, 8}},
    {{3, 4}, ":,1", {3}, {1, 5, 9}},
    {{3, 4}, "...,-1", {3}, {3, 7, 11}},
    {{3, 4}, "-1,...", {4}, {8, 9, 10, 11}},
    {{3, 4}, "::2,1::2", {2, 2}, {1, 3, 9, 11}},
    {{3, 4}, "::-1,::-1", {3, 4}, {11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0}},
    {{3, 4}, "1,2", {}, {6}},
    {{3, 4}, "...,0,0", {}, {0}},
    {{3, 4}, "0,...,0", {}, {0}},
    {{3, 4}, "5:,:", {0, 4}, {}},
    {{3, 4}, ":,10:", {3, 0}, {}},
    // 3-D, shape (2, 3, 4).
    {{2, 3, 4}, "1,...,::2", {3, 2}, {12, 14, 16, 18, 20, 22}},
    {{2, 3, 4}, "...,1", {2, 3}, {1, 5, 9, 13, 17, 21}},
    {{2, 3, 4}, ":,1", {2, 4}, {4, 5, 6, 7, 16, 17, 18, 19}},
    {{2, 3, 4}, "-1,-1,-1", {}, {23}},
    {{2, 3, 4}, "0,::-1,1:3", {3, 2}, {9, 10, 5, 6, 1, 2}},
    {{2, 3, 4}, "::-1,...,-2:", {2, 3, 2}, {14, 15, 18, 19, 22, 23, 2, 3, 6, 7, 10, 11}},
};

TEST(SliceTest, MatchesNumpyTable) {
  for (const Case& c : kCases) {
    SCOPED_TRACE("shape " + ShapeToString(c.array_shape) + " [" + c.text + "]");
    Slice slice;
    Status s = Slice::Parse(c.text, &slice);
    ASSERT_TRUE(s.ok()) << s.ToString();
    StridedView view;
    s = slice.Apply(c.array_shape, &view);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(view.shape, c.shape);
    EXPECT_EQ(Elements(view), c.elements);
  }
}

struct ErrorCase {
  std::vector<int64_t> array_shape;
  std::string text;
  std::string message;  // A part of the expected message.
};

const std::vector<ErrorCase> kErrors = {
    {{10}, "10", "index 10 is out of bounds for axis 0 with size 10"},
    {{10}, "-11", "index -11 is out of bounds for axis 0 with size 10"},
    {{10}, "::0", "slice step cannot be zero"},
    {{10}, "1,2", "too many indices for array: array is 1-dimensional, but 2 were indexed"},
    {{3, 4}, "0,0,0", "array is 2-dimensional, but 3 were indexed"},
    {{3, 4}, "3,0", "index 3 is out of bounds for axis 0 with size 3"},
    {{3, 4}, "0,4", "index 4 is out of bounds for axis 1 with size 4"},
    {{3, 4}, "...,...", "single ellipsis"},
    {{0}, "0", "index 0 is out of bounds for axis 0 with size 0"},
};

TEST(SliceTest, OutOfRangeAndBadStepsAreInvalidArgument) {
  for (const ErrorCase& c : kErrors) {
    SCOPED_TRACE("[" + c.text + "]");
    Slice slice;
    ASSERT_TRUE(Slice::Parse(c.text, &slice).ok());
    StridedView view;
    Status s = slice.Apply(c.array_shape, &view);
    EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
    EXPECT_NE(s.message().find(c.message), std::string_view::npos) << s.ToString();
  }
}

TEST(SliceTest, BadTextIsInvalidArgument) {
  for (const char* text : {"a", "1.5", ",", "1,,2", "1:2:3:4", ":x", "99999999999999999999", "--1",
                           "1 2", ". ..", "[1]"}) {
    Slice slice;
    Status s = Slice::Parse(text, &slice);
    EXPECT_TRUE(s.IsInvalidArgument()) << text << " -> " << s.ToString();
  }
  Slice slice;
  EXPECT_TRUE(Slice::Parse(std::string(kMaxSliceTextBytes + 1, ':'), &slice).IsInvalidArgument());
}

TEST(SliceTest, BuildersAndToStringRoundTrip) {
  Slice built = Slice().Range(1, std::nullopt, -2).Ellipsis().Index(-1);
  EXPECT_EQ(built.ToString(), "1::-2,...,-1");
  Slice parsed;
  ASSERT_TRUE(Slice::Parse(built.ToString(), &parsed).ok());
  StridedView a, b;
  ASSERT_TRUE(built.Apply({5, 6, 7}, &a).ok());
  ASSERT_TRUE(parsed.Apply({5, 6, 7}, &b).ok());
  EXPECT_EQ(a.offset, b.offset);
  EXPECT_EQ(a.shape, b.shape);
  EXPECT_EQ(a.strides, b.strides);
  EXPECT_EQ(Slice().ToString(), "");
}

// a[::-1][1:3] is the same as a[8:6:-1] on 10 elements.
TEST(SliceTest, ViewOfAView) {
  StridedView reversed;
  ASSERT_TRUE(Slice().Range(std::nullopt, std::nullopt, -1).Apply({10}, &reversed).ok());
  StridedView inner;
  ASSERT_TRUE(Slice().Range(1, 3).ApplyTo(reversed, &inner).ok());
  EXPECT_EQ(Elements(inner), (std::vector<int64_t>{8, 7}));
}

TEST(SliceTest, ShapeToStringIsNumpys) {
  EXPECT_EQ(ShapeToString({}), "()");
  EXPECT_EQ(ShapeToString({3}), "(3,)");
  EXPECT_EQ(ShapeToString({3, 4}), "(3, 4)");
}

}  // namespace
}  // namespace shm
