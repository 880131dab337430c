// Slice: numpy basic indexing ("2:10,::-1", "1,...,::2") turned into a strided view.
//
// A Slice is a list of items, one per indexed axis: an integer (drops the axis), a range
// start:stop:step (any part may be omitted, negative values count from the end, out-of-range
// bounds are clamped) or "..." (as many full ranges as needed). Fewer items than dimensions leave
// the trailing axes whole. Applying a Slice to a shape gives a StridedView in elements, exactly as
// numpy would: out-of-range integers, a zero step, two ellipses or too many indices are
// InvalidArgument. Newaxis (None) and fancy indexing are not supported.
// Process-safety: Slice and StridedView are plain values with no link to any segment.
#ifndef SHM_SLICE_H_
#define SHM_SLICE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shm/status.h"

namespace shm {

// Arrays have 1..kMaxDims dimensions (a view may have 0: a scalar).
inline constexpr int kMaxDims = 8;
// Longest slice text Parse accepts.
inline constexpr size_t kMaxSliceTextBytes = 4096;

// A view into a C-contiguous buffer: element (i0, i1, ...) is at
// offset + i0 * strides[0] + i1 * strides[1] + ... elements from the start.
struct StridedView {
  int64_t offset = 0;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // In elements; negative for reversed axes.

  int ndim() const { return static_cast<int>(shape.size()); }
  // Number of elements (1 for a 0-d view).
  int64_t size() const;
  // The view of a whole C-contiguous array of `shape`.
  static StridedView Contiguous(const std::vector<int64_t>& shape);
};

class Slice {
 public:
  struct Item {
    enum class Kind { kIndex, kRange, kEllipsis };
    Kind kind = Kind::kRange;
    int64_t index = 0;             // kIndex.
    std::optional<int64_t> start;  // kRange; empty = omitted.
    std::optional<int64_t> stop;
    std::optional<int64_t> step;
  };

  // The empty slice: the whole array.
  Slice() = default;

  // Parses numpy's text: items separated by commas, each "i", "start:stop[:step]" (parts may be
  // empty or "None") or "..."; spaces are ignored; "" is the whole array.
  static Status Parse(std::string_view text, Slice* result);

  // Builders, for C++ callers: Slice().Range(2, 10).Index(-1).
  Slice& Index(int64_t i);
  Slice& Range(std::optional<int64_t> start = std::nullopt,
               std::optional<int64_t> stop = std::nullopt,
               std::optional<int64_t> step = std::nullopt);
  Slice& Ellipsis();

  // Applies the slice to a C-contiguous array of `shape` (numpy semantics).
  Status Apply(const std::vector<int64_t>& shape, StridedView* view) const;
  // Applies the slice to an existing view (a view of a view).
  Status ApplyTo(const StridedView& base, StridedView* view) const;

  const std::vector<Item>& items() const { return items_; }
  // Canonical text, e.g. "1:3,::-1,..." ("" for the whole array).
  std::string ToString() const;

 private:
  std::vector<Item> items_;
};

// "(2, 3)" as numpy prints a shape ("(3,)" for one dimension, "()" for none).
std::string ShapeToString(const std::vector<int64_t>& shape);

}  // namespace shm

#endif  // SHM_SLICE_H_
