// Fuzzes numpy-style slice parsing and application (shm/slice.h).
//
// Input: byte 0 picks the number of dimensions (1..kMaxDims), the next ndim bytes the extents
// (0..15 each), the rest is slice text; a '|' in it separates a second slice applied to the view
// of the first (a view of a view). Checks: Parse never crashes; a parsed slice prints to a text
// that parses back to the same text; every element an applied view can address lies inside the
// array (the bound checks that keep slice writes inside the segment).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.h"
#include "shm/slice.h"

namespace {

using shm::fuzz::Check;

// The lowest and highest element offsets `view` can address must lie in [0, total).
void CheckInside(const shm::StridedView& view, int64_t total, const std::string& context) {
  Check(view.shape.size() == view.strides.size(), "view shape and strides differ", context);
  int64_t lowest = view.offset;
  int64_t highest = view.offset;
  for (size_t i = 0; i < view.shape.size(); ++i) {
    Check(view.shape[i] >= 0, "negative extent in a view", context);
    if (view.shape[i] == 0) return;  // An empty view addresses nothing.
    int64_t reach = (view.shape[i] - 1) * view.strides[i];
    (reach < 0 ? lowest : highest) += reach;
  }
  Check(lowest >= 0 && highest < total, "view reaches outside the array",
        context + ": offsets " + std::to_string(lowest) + ".." + std::to_string(highest) + " of " +
            std::to_string(total));
}

// Parses `text`; when it parses, checks that its canonical text is a fixed point.
bool ParseChecked(std::string_view text, shm::Slice* slice) {
  if (!shm::Slice::Parse(text, slice).ok()) return false;
  std::string canonical = slice->ToString();
  shm::Slice again;
  shm::Status s = shm::Slice::Parse(canonical, &again);
  Check(s.ok(), "canonical slice text does not parse", canonical + ": " + s.ToString());
  Check(again.ToString() == canonical, "canonical slice text is not stable",
        canonical + " -> " + again.ToString());
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  size_t ndim = data[0] % shm::kMaxDims + 1;
  if (size < 1 + ndim) return 0;
  std::vector<int64_t> shape;
  int64_t total = 1;
  for (size_t i = 0; i < ndim; ++i) {
    shape.push_back(data[1 + i] % 16);
    total *= shape.back();
  }
  std::string_view text(reinterpret_cast<const char*>(data) + 1 + ndim, size - 1 - ndim);
  size_t bar = text.find('|');
  std::string_view first = text.substr(0, bar);
  std::string_view second = bar == std::string_view::npos ? "" : text.substr(bar + 1);

  shm::Slice slice;
  if (!ParseChecked(first, &slice)) return 0;
  shm::StridedView view;
  std::string context = shm::ShapeToString(shape) + "[" + slice.ToString() + "]";
  if (!slice.Apply(shape, &view).ok()) return 0;
  CheckInside(view, total, context);

  shm::Slice inner;
  if (bar == std::string_view::npos || !ParseChecked(second, &inner)) return 0;
  shm::StridedView inner_view;
  if (!inner.ApplyTo(view, &inner_view).ok()) return 0;
  CheckInside(inner_view, total, context + "[" + inner.ToString() + "]");
  return 0;
}
