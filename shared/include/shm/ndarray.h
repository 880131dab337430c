// NdArray: a named numpy-like n-d array in the segment, shared by every worker.
//
// An array has a dtype (bool, int8..int64, uint8..uint64, float32, float64), a shape of 1..8
// dimensions fixed at creation, and C-contiguous data aligned to 64 bytes. Slices (shm/slice.h)
// are read, written and updated in place under the array's lock with an undo record, so a reader
// sees a slice write whole or not at all, and a writer killed mid-write is rolled back by the next
// lock holder. Per-element atomics (FetchAdd, CAS, FetchMin/Max) take no lock and are never torn.
// Every write bumps `version`.
//
// Process-safety: an NdArray is a cheap process-local handle (like Counter); use it from any
// thread, never store it in shared memory. After the array is deleted every call is NotFound.
// Atomics and slice writes on the same elements at the same time do not order with each other:
// each element ends up with one of the writes (see docs/arrays.md).
#ifndef SHM_NDARRAY_H_
#define SHM_NDARRAY_H_

#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "shm/dtype.h"
#include "shm/limits.h"
#include "shm/registry.h"
#include "shm/slice.h"
#include "shm/status.h"

namespace shm {

struct ArrayInfo {
  DType dtype = DType::kFloat64;
  std::vector<int64_t> shape;
  uint64_t nbytes = 0;
  uint64_t version = 0;  // Bumped by every write (slice writes, ops, atomics, rollbacks).
};

// The largest array (data bytes); the segment's free space is the other bound.
inline constexpr uint64_t kMaxArrayBytes = limits::kMaxArrayBytes;

// Typed strided access to elements of a view (T is const for reads). Valid only inside the
// callback that received it: the array's lock is held for exactly that long.
template <class T>
class StridedSpan {
 public:
  StridedSpan(T* base, const StridedView& view) : base_(base), view_(view) {}
  int ndim() const { return view_.ndim(); }
  int64_t shape(int axis) const { return view_.shape[axis]; }
  int64_t size() const { return view_.size(); }
  // The element at `index` (one entry per dimension; unchecked, like numpy's C API).
  T& at(std::initializer_list<int64_t> index) const {
    int64_t off = view_.offset;
    int axis = 0;
    for (int64_t i : index) off += i * view_.strides[axis++];
    return base_[off];
  }
  // Calls fn(T&) on every element in C order.
  template <class F>
  void ForEach(F&& fn) const {
    if (size() == 0) return;
    std::vector<int64_t> idx(view_.shape.size(), 0);
    int64_t off = view_.offset;
    while (true) {
      fn(base_[off]);
      int axis = ndim() - 1;
      for (; axis >= 0; --axis) {
        off += view_.strides[axis];
        if (++idx[axis] < view_.shape[axis]) break;
        off -= view_.strides[axis] * view_.shape[axis];
        idx[axis] = 0;
      }
      if (axis < 0) return;
    }
  }

 private:
  T* base_;
  const StridedView& view_;
};

class NdArray {
 public:
  NdArray() = default;

  // Creates a new array filled with `fill` (cast to dtype). AlreadyExists if the name is an
  // array, WrongType if it is another kind; InvalidArgument for 0 or > 8 dims, negative sizes or
  // more than kMaxArrayBytes; OutOfSpace when the segment cannot hold it.
  static Status Create(Segment* segment, std::string_view name, DType dtype,
                       const std::vector<int64_t>& shape, Scalar fill, NdArray* result);
  // Creates a new array holding a copy of `data` (e.g. a parsed .npy body).
  static Status CreateFrom(Segment* segment, std::string_view name, const ArrayData& data,
                           NdArray* result);
  static Status Open(Segment* segment, std::string_view name, NdArray* result);

  Status Info(ArrayInfo* info) const;
  // Fixed for this handle's incarnation.
  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }

  // Copies the slice out under the lock: result->shape is the view's (0-d for all-integer index).
  Status ReadSlice(const Slice& slice, ArrayData* result) const;
  // Same, bytes only (C order, the array's dtype).
  Status ReadSlice(const Slice& slice, std::string* bytes) const;
  // The shape of the slice's view (InvalidArgument for a slice that does not apply).
  Status SliceShape(const Slice& slice, std::vector<int64_t>* shape) const;
  // Copies the slice out, as ReadSlice, into `out` (C order, the array's dtype), which must hold
  // exactly the view's bytes: for callers that own the buffer (a fresh numpy array).
  Status ReadSliceInto(const Slice& slice, void* out, size_t out_bytes) const;
  // Writes C-order bytes of the array's dtype, exactly the slice's size, in place.
  Status WriteSlice(const Slice& slice, std::string_view bytes);
  // Writes `data` (any dtype, cast as by kFill) whose shape must equal the slice's shape.
  Status WriteSlice(const Slice& slice, const ArrayData& data);
  // Sets every element of the slice to `value` (a scalar broadcast).
  Status Fill(const Slice& slice, Scalar value);

  // slice <op>= value, in place. Casting, as numpy's ufunc with out=array, casting='unsafe':
  //  * int scalar on an int array: computed in the array's dtype with wraparound; the scalar
  //    must fit the dtype (InvalidArgument otherwise, like numpy 2's OverflowError);
  //  * float scalar on an int or bool array: computed in float64 (div is true division), then cast
  //    back: truncation toward zero, saturating at the dtype's min/max, NaN -> 0;
  //  * float arrays compute in float64 and round to the dtype (exact for float32 + - * /);
  //  * bool arrays with a bool scalar: add = or, mul = and, min = and, max = or; sub and div are
  //    InvalidArgument (an int or float scalar computes in int64 or float64, then != 0);
  //  * integer div is floor division; x div 0 is 0; INT_MIN div -1 wraps to INT_MIN.
  Status Apply(ArrayOp op, const Slice& slice, Scalar value);
  // Same with an operand array of the slice's shape; types promote as numpy's result_type (e.g.
  // int8 with int64 computes in int64, uint64 with int64 in float64) and the result is cast back.
  Status Apply(ArrayOp op, const Slice& slice, const ArrayData& operand);

  // Reduces the slice over all axes (axis empty: 0-d result) or one (negative counts from the
  // end). sum: bool and signed ints in int64, unsigned in uint64, floats in float64 (float32 sums
  // are accumulated and returned in float64, unlike numpy); mean: float64; min/max: the dtype,
  // NaN propagates, empty is InvalidArgument.
  Status Reduce(ReduceOp op, const Slice& slice, std::optional<int> axis, ArrayData* result) const;

  // Lock-free per-element atomics on an int or float array (bool is InvalidArgument). `index`
  // has one entry per dimension (negative counts from the end). `value` must be representable
  // in the dtype (an integral value within range for ints). Returns the previous value in *old.
  // kCas stores `value` if the element equals `expected` numerically; otherwise Conflict with the
  // element in *old. Int adds wrap around, as numpy's.
  Status Atomic(AtomicOp op, const std::vector<int64_t>& index, Scalar value, Scalar expected,
                Scalar* old);
  Status FetchAdd(const std::vector<int64_t>& index, Scalar delta, Scalar* old) {
    return Atomic(AtomicOp::kAdd, index, delta, Scalar(), old);
  }
  // Reads one element without the lock (an atomic load).
  Status Load(const std::vector<int64_t>& index, Scalar* value) const;

  // Zero-copy in-place compute: fn(StridedSpan<T>&) runs under the lock on the slice, with an
  // undo record, so a crash inside fn is rolled back. T must be the array's dtype.
  template <class T, class F>
  Status Update(const Slice& slice, F&& fn) {
    return Mutate(slice, DTypeOf<T>::kValue, [&](char* base, const StridedView& view) {
      StridedSpan<T> span(reinterpret_cast<T*>(base), view);
      fn(span);
    });
  }
  // Zero-copy read under the lock: fn(StridedSpan<const T>&).
  template <class T, class F>
  Status Read(const Slice& slice, F&& fn) const {
    return Inspect(slice, DTypeOf<T>::kValue, [&](const char* base, const StridedView& view) {
      StridedSpan<const T> span(reinterpret_cast<const T*>(base), view);
      fn(span);
    });
  }

  const ObjectRef& ref() const { return ref_; }

 private:
  using MutateFn = std::function<void(char* base, const StridedView& view)>;
  using InspectFn = std::function<void(const char* base, const StridedView& view)>;

  // Runs fn on the slice's view under the lock, inside an undo record. `dtype` must match.
  Status Mutate(const Slice& slice, DType dtype, const MutateFn& fn);
  Status MutateView(const StridedView& view, const MutateFn& fn);
  Status ReplaceData(std::string_view bytes);
  Status Inspect(const Slice& slice, DType dtype, const InspectFn& fn) const;
  Status ViewOf(const Slice& slice, StridedView* view) const;
  // Copies the slice's bytes out under the lock; *view gets the slice's view.
  Status ReadView(const Slice& slice, StridedView* view, std::string* bytes) const;
  // Copies `view` (checked) into `out`, which holds its bytes.
  Status CopyViewOut(const StridedView& view, char* out) const;
  // Element offset of a full index; InvalidArgument when out of range.
  Status ElementOffset(const std::vector<int64_t>& index, int64_t* offset) const;
  Status LoadMeta();

  ObjectRef ref_;
  DType dtype_ = DType::kFloat64;
  std::vector<int64_t> shape_;
};

}  // namespace shm

#endif  // SHM_NDARRAY_H_
