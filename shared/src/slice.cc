#include "shm/slice.h"

#include <charconv>
#include <limits>

namespace shm {
namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

Status BadSlice(std::string_view why, std::string_view text) {
  return Status::InvalidArgument("bad slice '" + std::string(text) + "': " + std::string(why));
}

// Parses a whole string as an int64 ("-3", "+4"); false on anything else or overflow.
bool ParseInt(std::string_view text, int64_t* value) {
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  if (text.empty()) return false;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *value);
  return ec == std::errc() && ptr == end;
}

// One part of start:stop:step; empty or "None" is omitted.
Status ParseBound(std::string_view part, std::string_view item, std::optional<int64_t>* bound) {
  part = Trim(part);
  if (part.empty() || part == "None") {
    bound->reset();
    return Status::OK();
  }
  int64_t value = 0;
  if (!ParseInt(part, &value))
    return BadSlice("'" + std::string(part) + "' is not an integer", item);
  *bound = value;
  return Status::OK();
}

Status ParseItem(std::string_view item, Slice* slice) {
  std::string_view text = Trim(item);
  if (text == "...") {
    slice->Ellipsis();
    return Status::OK();
  }
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    int64_t index = 0;
    if (!ParseInt(text, &index)) {
      return BadSlice("'" + std::string(text) + "' is not an integer, a range or '...'", item);
    }
    slice->Index(index);
    return Status::OK();
  }
  std::string_view rest = text.substr(colon + 1);
  size_t colon2 = rest.find(':');
  std::string_view stop_text = rest.substr(0, colon2);
  std::string_view step_text = colon2 == std::string_view::npos ? "" : rest.substr(colon2 + 1);
  if (step_text.find(':') != std::string_view::npos) return BadSlice("too many ':'", item);
  std::optional<int64_t> start, stop, step;
  SHM_RETURN_IF_ERROR(ParseBound(text.substr(0, colon), item, &start));
  SHM_RETURN_IF_ERROR(ParseBound(stop_text, item, &stop));
  SHM_RETURN_IF_ERROR(ParseBound(step_text, item, &step));
  slice->Range(start, stop, step);
  return Status::OK();
}

// Python's PySlice_AdjustIndices: clamps a bound of a range over `n` elements.
int64_t ClampBound(std::optional<int64_t> bound, int64_t n, int64_t step, bool is_start) {
  if (!bound) {
    if (is_start) return step < 0 ? n - 1 : 0;
    return step < 0 ? -1 : n;
  }
  int64_t v = *bound;
  if (v < 0) {
    v = v < -n ? -1 : v + n;  // -n..-1 count from the end; below that is before the start.
    if (v < 0) return step < 0 ? -1 : 0;
    return v;
  }
  if (v >= n) return step < 0 ? n - 1 : n;
  return v;
}

// Appends the axis a range leaves; `stride` is the axis's stride in the base view.
Status ApplyRange(const Slice::Item& item, int64_t n, int64_t stride, StridedView* view) {
  int64_t step = item.step.value_or(1);
  if (step == 0) return Status::InvalidArgument("slice step cannot be zero");
  if (step < -kInt64Max) step = -kInt64Max;  // Python clamps the same way; keeps -step defined.
  int64_t start = ClampBound(item.start, n, step, true);
  int64_t stop = ClampBound(item.stop, n, step, false);
  int64_t length = 0;
  if (step > 0 && start < stop) length = (stop - start - 1) / step + 1;
  if (step < 0 && stop < start) length = (start - stop - 1) / -step + 1;
  if (length > 0) view->offset += start * stride;
  view->shape.push_back(length);
  // With two or more elements |step| < n, so the product stays within the array's extent.
  view->strides.push_back(length > 1 ? stride * step : stride);
  return Status::OK();
}

Status ApplyIndex(int64_t index, int axis, int64_t n, int64_t stride, StridedView* view) {
  if (index < -n || index >= n) {
    return Status::InvalidArgument("index " + std::to_string(index) +
                                   " is out of bounds for axis " + std::to_string(axis) +
                                   " with size " + std::to_string(n));
  }
  if (index < 0) index += n;
  view->offset += index * stride;
  return Status::OK();
}

}  // namespace

int64_t StridedView::size() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

StridedView StridedView::Contiguous(const std::vector<int64_t>& shape) {
  StridedView view;
  view.shape = shape;
  view.strides.assign(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;) view.strides[i - 1] = view.strides[i] * shape[i];
  return view;
}

Status Slice::Parse(std::string_view text, Slice* result) {
  if (text.size() > kMaxSliceTextBytes) {
    return Status::InvalidArgument("slice text longer than " + std::to_string(kMaxSliceTextBytes) +
                                   " bytes");
  }
  Slice slice;
  std::string_view rest = Trim(text);
  if (!rest.empty() && rest.back() == ',') {
    rest.remove_suffix(1);  // "1," is the tuple (1,); "," alone is nothing.
    if (Trim(rest).empty()) return BadSlice("empty item", text);
  }
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    if (Trim(item).empty()) return BadSlice("empty item", text);
    SHM_RETURN_IF_ERROR(ParseItem(item, &slice));
    if (slice.items_.size() > 2 * kMaxDims + 1) return BadSlice("too many items", text);
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
    if (Trim(rest).empty()) return BadSlice("empty item", text);
  }
  *result = std::move(slice);
  return Status::OK();
}

Slice& Slice::Index(int64_t i) {
  Item item;
  item.kind = Item::Kind::kIndex;
  item.index = i;
  items_.push_back(item);
  return *this;
}

Slice& Slice::Range(std::optional<int64_t> start, std::optional<int64_t> stop,
                    std::optional<int64_t> step) {
  Item item;
  item.kind = Item::Kind::kRange;
  item.start = start;
  item.stop = stop;
  item.step = step;
  items_.push_back(item);
  return *this;
}

Slice& Slice::Ellipsis() {
  Item item;
  item.kind = Item::Kind::kEllipsis;
  items_.push_back(item);
  return *this;
}

Status Slice::Apply(const std::vector<int64_t>& shape, StridedView* view) const {
  return ApplyTo(StridedView::Contiguous(shape), view);
}

Status Slice::ApplyTo(const StridedView& base, StridedView* view) const {
  int ellipses = 0;
  for (const Item& item : items_) ellipses += item.kind == Item::Kind::kEllipsis;
  if (ellipses > 1)
    return Status::InvalidArgument("an index can only have a single ellipsis ('...')");
  int indexed = static_cast<int>(items_.size()) - ellipses;
  if (indexed > base.ndim()) {
    return Status::InvalidArgument("too many indices for array: array is " +
                                   std::to_string(base.ndim()) + "-dimensional, but " +
                                   std::to_string(indexed) + " were indexed");
  }
  StridedView out;
  out.offset = base.offset;
  Item whole;  // A full range, for "..." and the trailing axes.
  int axis = 0;
  for (const Item& item : items_) {
    if (item.kind == Item::Kind::kEllipsis) {
      for (int k = 0; k < base.ndim() - indexed; ++k, ++axis) {
        SHM_RETURN_IF_ERROR(ApplyRange(whole, base.shape[axis], base.strides[axis], &out));
      }
    } else if (item.kind == Item::Kind::kIndex) {
      SHM_RETURN_IF_ERROR(ApplyIndex(item.index, axis, base.shape[axis], base.strides[axis], &out));
      ++axis;
    } else {
      SHM_RETURN_IF_ERROR(ApplyRange(item, base.shape[axis], base.strides[axis], &out));
      ++axis;
    }
  }
  for (; axis < base.ndim(); ++axis) {
    SHM_RETURN_IF_ERROR(ApplyRange(whole, base.shape[axis], base.strides[axis], &out));
  }
  *view = std::move(out);
  return Status::OK();
}

std::string Slice::ToString() const {
  std::string text;
  auto bound = [](const std::optional<int64_t>& b) { return b ? std::to_string(*b) : ""; };
  for (const Item& item : items_) {
    if (!text.empty()) text += ',';
    if (item.kind == Item::Kind::kEllipsis) {
      text += "...";
    } else if (item.kind == Item::Kind::kIndex) {
      text += std::to_string(item.index);
    } else {
      text += bound(item.start) + ":" + bound(item.stop);
      if (item.step) text += ":" + std::to_string(*item.step);
    }
  }
  return text;
}

std::string ShapeToString(const std::vector<int64_t>& shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  if (shape.size() == 1) text += ",";
  return text + ")";
}

}  // namespace shm
