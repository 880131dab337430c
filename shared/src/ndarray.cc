#include "shm/ndarray.h"

#include <sched.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cfloat>
#include <charconv>
#include <cmath>
#include <limits>
#include <new>
#include <type_traits>
#include <utility>

#include "boundary.h"
#include "cow.h"
#include "crash_point.h"
#include "kind_ops.h"
#include "layout.h"
#include "ndarray_rep.h"
#include "object_guard.h"
#include "segment_impl.h"
#include "shm/log.h"
#include "shm/npy.h"

namespace shm {
namespace {

constexpr std::string_view kDTypeNames[kDTypeCount] = {"bool",   "int8",    "int16",  "int32",
                                                       "int64",  "uint8",   "uint16", "uint32",
                                                       "uint64", "float32", "float64"};
constexpr size_t kDTypeSizes[kDTypeCount] = {1, 1, 2, 4, 8, 1, 2, 4, 8, 4, 8};

// Calls f(std::type_identity<T>{}) with T the C++ type of `dtype`.
template <class F>
decltype(auto) DispatchDType(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kBool:
      return f(std::type_identity<bool>{});
    case DType::kInt8:
      return f(std::type_identity<int8_t>{});
    case DType::kInt16:
      return f(std::type_identity<int16_t>{});
    case DType::kInt32:
      return f(std::type_identity<int32_t>{});
    case DType::kInt64:
      return f(std::type_identity<int64_t>{});
    case DType::kUInt8:
      return f(std::type_identity<uint8_t>{});
    case DType::kUInt16:
      return f(std::type_identity<uint16_t>{});
    case DType::kUInt32:
      return f(std::type_identity<uint32_t>{});
    case DType::kUInt64:
      return f(std::type_identity<uint64_t>{});
    case DType::kFloat32:
      return f(std::type_identity<float>{});
    case DType::kFloat64:
      break;
  }
  return f(std::type_identity<double>{});
}

// ---- Casting ----------------------------------------------------------------------------------

// float -> int as documented: truncate toward zero, saturate at the type's bounds, NaN -> 0.
template <class To>
To SaturatingTrunc(double v) {
  if (std::isnan(v)) return 0;
  constexpr int kDigits = std::numeric_limits<To>::digits;  // 63 for int64, 64 for uint64.
  const double upper = std::ldexp(1.0, kDigits);            // max + 1, exact.
  const double lower = std::is_signed_v<To> ? -upper : 0.0;
  double t = std::trunc(v);
  if (t < lower) return std::numeric_limits<To>::min();
  if (t >= upper) return std::numeric_limits<To>::max();
  return static_cast<To>(t);
}

// numpy's astype(casting='unsafe'), with a defined float -> int rule (see ndarray.h).
template <class To, class From>
To CastTo(From v) {
  if constexpr (std::is_same_v<To, bool>) {
    return v != From(0);
  } else if constexpr (std::is_same_v<To, float> && std::is_same_v<From, double>) {
    if (std::isfinite(v) && std::fabs(v) > FLT_MAX) {
      return std::copysign(std::numeric_limits<float>::infinity(), static_cast<float>(v));
    }
    return static_cast<float>(v);
  } else if constexpr (std::is_floating_point_v<To>) {
    return static_cast<To>(v);
  } else if constexpr (std::is_floating_point_v<From>) {
    return SaturatingTrunc<To>(static_cast<double>(v));
  } else {
    return static_cast<To>(v);  // Integer to integer: modulo 2^bits (C++20).
  }
}

template <class T>
T ReadElement(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <class T>
Scalar ToScalar(T v) {
  if constexpr (std::is_same_v<T, bool>) {
    return Scalar::Bool(v);
  } else if constexpr (std::is_floating_point_v<T>) {
    return Scalar::Float(v);
  } else if constexpr (std::is_signed_v<T>) {
    return Scalar::Int(v);
  } else {
    return Scalar::UInt(v);
  }
}

// True when an integral scalar fits the integer type T.
template <class T>
bool FitsInteger(const Scalar& s) {
  if (s.kind == Scalar::Kind::kBool) return true;
  if (s.kind == Scalar::Kind::kInt) return std::in_range<T>(s.i);
  return std::in_range<T>(s.u);
}

Status OutOfRange(const Scalar& s, DType dtype) {
  return Status::InvalidArgument("value " + s.ToString() + " is out of bounds for " +
                                 std::string(DTypeName(dtype)));
}

// The scalar as exactly a T: ints must fit, a float for an int type must be integral.
template <class T>
Status ExactScalar(const Scalar& s, DType dtype, T* out) {
  if constexpr (std::is_same_v<T, bool>) {
    *out = s.AsDouble() != 0;
  } else if constexpr (std::is_floating_point_v<T>) {
    *out = CastTo<T>(s.AsDouble());
  } else {
    if (s.kind == Scalar::Kind::kFloat) {
      if (!std::isfinite(s.f) || std::trunc(s.f) != s.f) {
        return Status::InvalidArgument("value " + s.ToString() + " is not an integer (array is " +
                                       std::string(DTypeName(dtype)) + ")");
      }
      if (s.f < static_cast<double>(std::numeric_limits<T>::min()) ||
          s.f >= std::ldexp(1.0, std::numeric_limits<T>::digits)) {
        return OutOfRange(s, dtype);
      }
      *out = static_cast<T>(s.f);
      return Status::OK();
    }
    if (!FitsInteger<T>(s)) return OutOfRange(s, dtype);
    *out = s.kind == Scalar::Kind::kUInt ? static_cast<T>(s.u) : static_cast<T>(s.i);
  }
  return Status::OK();
}

// ---- Strided traversal ------------------------------------------------------------------------

// Merges axes that are contiguous with each other and drops axes of length 1, so whole-array and
// row slices become one long row (one memcpy). Keeps C order.
StridedView Collapse(const StridedView& v) {
  StridedView out;
  out.offset = v.offset;
  for (int i = 0; i < v.ndim(); ++i) {
    if (v.shape[i] == 1) continue;
    if (!out.shape.empty() && out.strides.back() == v.strides[i] * v.shape[i]) {
      out.shape.back() *= v.shape[i];
      out.strides.back() = v.strides[i];
    } else {
      out.shape.push_back(v.shape[i]);
      out.strides.push_back(v.strides[i]);
    }
  }
  return out;
}

// Calls f(offset, count, stride) for each innermost row of the view in C order (in elements).
template <class F>
void ForEachRow(const StridedView& view, F&& f) {
  if (view.size() == 0) return;
  StridedView v = Collapse(view);
  if (v.ndim() == 0) {
    f(v.offset, int64_t{1}, int64_t{1});
    return;
  }
  int last = v.ndim() - 1;
  int64_t idx[kMaxDims] = {};
  int64_t off = v.offset;
  while (true) {
    f(off, v.shape[last], v.strides[last]);
    int axis = last - 1;
    for (; axis >= 0; --axis) {
      off += v.strides[axis];
      if (++idx[axis] < v.shape[axis]) break;
      off -= v.strides[axis] * v.shape[axis];
      idx[axis] = 0;
    }
    if (axis < 0) return;
  }
}

template <size_t N>
void CopyStrided(const char* src, int64_t src_step, char* dst, int64_t dst_step, int64_t n) {
  for (int64_t j = 0; j < n; ++j) std::memcpy(dst + j * dst_step, src + j * src_step, N);
}

void CopyRow(const char* src, int64_t src_step, char* dst, int64_t dst_step, int64_t n,
             size_t itemsize) {
  auto isz = static_cast<int64_t>(itemsize);
  if (src_step == isz && dst_step == isz) {
    std::memcpy(dst, src, static_cast<size_t>(n) * itemsize);
    return;
  }
  switch (itemsize) {
    case 1:
      return CopyStrided<1>(src, src_step, dst, dst_step, n);
    case 2:
      return CopyStrided<2>(src, src_step, dst, dst_step, n);
    case 4:
      return CopyStrided<4>(src, src_step, dst, dst_step, n);
    default:
      return CopyStrided<8>(src, src_step, dst, dst_step, n);
  }
}

// Copies the view's elements into `out` in C order.
void Gather(const char* data, const StridedView& view, size_t itemsize, char* out) {
  auto isz = static_cast<int64_t>(itemsize);
  ForEachRow(view, [&](int64_t off, int64_t n, int64_t stride) {
    CopyRow(data + off * isz, stride * isz, out, isz, n, itemsize);
    out += n * isz;
  });
}

// Copies C-order `in` into the view's elements. `crash_points`: the write loop of a slice write,
// where the crash tests stop a writer half-way.
void Scatter(char* data, const StridedView& view, size_t itemsize, const char* in,
             bool crash_points) {
  auto isz = static_cast<int64_t>(itemsize);
  ForEachRow(view, [&](int64_t off, int64_t n, int64_t stride) {
    CopyRow(in, isz, data + off * isz, stride * isz, n, itemsize);
    in += n * isz;
    if (crash_points) CrashPoint("array_mid_write");
  });
}

// ---- Element-wise ops -------------------------------------------------------------------------

// The type an op computes in: bool, int64 or uint64 (wrapping), or double.
enum class Domain { kBool, kInt, kUInt, kFloat };

Domain DomainOf(DType dtype) {
  if (dtype == DType::kBool) return Domain::kBool;
  if (IsFloatDType(dtype)) return Domain::kFloat;
  return IsSignedDType(dtype) ? Domain::kInt : Domain::kUInt;
}

// numpy's promote_types for these dtypes.
DType PromoteTypes(DType a, DType b) {
  if (a == b || b == DType::kBool) return a;
  if (a == DType::kBool) return b;
  bool fa = IsFloatDType(a), fb = IsFloatDType(b);
  if (fa && fb) return DType::kFloat64;
  if (fa || fb) {
    DType f = fa ? a : b, i = fa ? b : a;
    if (f == DType::kFloat64 || DTypeSize(i) > 2) return DType::kFloat64;
    return DType::kFloat32;
  }
  bool sa = IsSignedDType(a), sb = IsSignedDType(b);
  if (sa == sb) return DTypeSize(a) >= DTypeSize(b) ? a : b;
  DType s = sa ? a : b, u = sa ? b : a;
  if (DTypeSize(s) > DTypeSize(u)) return s;
  switch (DTypeSize(u)) {
    case 1:
      return DType::kInt16;
    case 2:
      return DType::kInt32;
    case 4:
      return DType::kInt64;
    default:
      return DType::kFloat64;
  }
}

int KindRank(Domain d) { return d == Domain::kBool ? 0 : d == Domain::kFloat ? 2 : 1; }
Domain ScalarDomain(const Scalar& s) {
  switch (s.kind) {
    case Scalar::Kind::kBool:
      return Domain::kBool;
    case Scalar::Kind::kInt:
      return Domain::kInt;
    case Scalar::Kind::kUInt:
      return Domain::kUInt;
    case Scalar::Kind::kFloat:
      break;
  }
  return Domain::kFloat;
}

template <class F>
decltype(auto) DispatchDomain(Domain d, F&& f) {
  switch (d) {
    case Domain::kBool:
      return f(std::type_identity<bool>{});
    case Domain::kInt:
      return f(std::type_identity<int64_t>{});
    case Domain::kUInt:
      return f(std::type_identity<uint64_t>{});
    case Domain::kFloat:
      break;
  }
  return f(std::type_identity<double>{});
}

std::string_view ArrayOpName(ArrayOp op) {
  static constexpr std::string_view kNames[] = {"add", "sub", "mul", "div", "min", "max", "fill"};
  return kNames[static_cast<int>(op)];
}

template <class C>
Status CheckOpForDomain(ArrayOp op) {
  if constexpr (std::is_same_v<C, bool>) {
    if (op == ArrayOp::kSub || op == ArrayOp::kDiv) {
      return Status::InvalidArgument(std::string(ArrayOpName(op)) +
                                     " is not supported for bool arrays with a bool operand");
    }
  }
  (void)op;
  return Status::OK();
}

template <class C>
C FloorDiv(C a, C b) {
  if (b == 0) return 0;
  if constexpr (std::is_signed_v<C>) {
    if (b == -1) return static_cast<C>(0 - static_cast<std::make_unsigned_t<C>>(a));  // Wraps.
    C q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
  } else {
    return a / b;
  }
}

template <class C>
C Compute(ArrayOp op, C a, C b) {
  if constexpr (std::is_same_v<C, bool>) {
    switch (op) {
      case ArrayOp::kAdd:
      case ArrayOp::kMax:
        return a || b;
      case ArrayOp::kMul:
      case ArrayOp::kMin:
        return a && b;
      default:
        return b;  // kFill (sub and div were refused).
    }
  } else if constexpr (std::is_floating_point_v<C>) {
    switch (op) {
      case ArrayOp::kAdd:
        return a + b;
      case ArrayOp::kSub:
        return a - b;
      case ArrayOp::kMul:
        return a * b;
      case ArrayOp::kDiv:
        return a / b;
      case ArrayOp::kMin:
        return std::isnan(a) ? a : std::isnan(b) ? b : (b < a ? b : a);
      case ArrayOp::kMax:
        return std::isnan(a) ? a : std::isnan(b) ? b : (b > a ? b : a);
      case ArrayOp::kFill:
        break;
    }
    return b;
  } else {
    using U = std::make_unsigned_t<C>;  // Wrapping arithmetic without signed overflow.
    switch (op) {
      case ArrayOp::kAdd:
        return static_cast<C>(static_cast<U>(a) + static_cast<U>(b));
      case ArrayOp::kSub:
        return static_cast<C>(static_cast<U>(a) - static_cast<U>(b));
      case ArrayOp::kMul:
        return static_cast<C>(static_cast<U>(a) * static_cast<U>(b));
      case ArrayOp::kDiv:
        return FloorDiv(a, b);
      case ArrayOp::kMin:
        return b < a ? b : a;
      case ArrayOp::kMax:
        return b > a ? b : a;
      case ArrayOp::kFill:
        break;
    }
    return b;
  }
}

// data[view] = data[view] <op> operand, element by element in C order; `operand` has one value
// (broadcast) or one per element.
template <class T, class C>
void ApplyKernel(ArrayOp op, char* base, const StridedView& view, const std::vector<C>& operand) {
  T* data = reinterpret_cast<T*>(base);
  bool broadcast = operand.size() == 1;
  size_t k = 0;
  ForEachRow(view, [&](int64_t off, int64_t n, int64_t stride) {
    for (int64_t j = 0; j < n; ++j, ++k) {
      T& e = data[off + j * stride];
      C b = broadcast ? operand[0] : operand[k];
      e = CastTo<T>(Compute<C>(op, CastTo<C>(e), b));
    }
    CrashPoint("array_mid_write");
  });
}

// The scalar in the domain an op with an array of `dtype` computes in (numpy's weak scalars).
Status ScalarOperand(DType dtype, const Scalar& s, Domain* domain) {
  Domain array_domain = DomainOf(dtype);
  if (KindRank(ScalarDomain(s)) > KindRank(array_domain)) {
    *domain = ScalarDomain(s);
    return Status::OK();
  }
  *domain = array_domain;
  if (array_domain == Domain::kInt || array_domain == Domain::kUInt) {
    bool fits = DispatchDType(dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
        return FitsInteger<T>(s);
      } else {
        return true;
      }
    });
    if (!fits) return OutOfRange(s, dtype);
  }
  return Status::OK();
}

template <class C>
C ScalarAs(const Scalar& s) {
  switch (s.kind) {
    case Scalar::Kind::kBool:
    case Scalar::Kind::kInt:
      return CastTo<C>(s.i);
    case Scalar::Kind::kUInt:
      return CastTo<C>(s.u);
    case Scalar::Kind::kFloat:
      break;
  }
  return CastTo<C>(s.f);
}

// The operand array converted to C, element by element in C order.
template <class C>
std::vector<C> ConvertOperand(const ArrayData& a) {
  std::vector<C> out(static_cast<size_t>(a.size()));
  DispatchDType(a.dtype, [&](auto tag) {
    using D = typename decltype(tag)::type;
    for (size_t k = 0; k < out.size(); ++k) {
      out[k] = CastTo<C>(ReadElement<D>(a.bytes.data() + k * sizeof(D)));
    }
  });
  return out;
}

// ---- Reductions -------------------------------------------------------------------------------

DType SumDType(DType dtype) {
  if (IsFloatDType(dtype)) return DType::kFloat64;
  return IsUnsignedDType(dtype) ? DType::kUInt64 : DType::kInt64;
}

template <class A>
A Combine(ReduceOp op, A acc, A x) {
  if (op == ReduceOp::kSum || op == ReduceOp::kMean) {
    if constexpr (std::is_integral_v<A> && !std::is_same_v<A, bool>) {
      using U = std::make_unsigned_t<A>;
      return static_cast<A>(static_cast<U>(acc) + static_cast<U>(x));  // Wraps, as numpy.
    } else {
      return static_cast<A>(acc + x);
    }
  }
  if constexpr (std::is_floating_point_v<A>) {
    if (std::isnan(acc)) return acc;
    if (std::isnan(x)) return x;
  }
  if (op == ReduceOp::kMin) return x < acc ? x : acc;
  return x > acc ? x : acc;
}

// out[o, i] = reduce over k of in[o, k, i]; out is outer * inner values of A.
template <class T, class A>
void ReduceKernel(const char* in, ReduceOp op, int64_t outer, int64_t n, int64_t inner, A* out) {
  bool from_first = op == ReduceOp::kMin || op == ReduceOp::kMax;
  for (int64_t o = 0; o < outer; ++o) {
    A* acc = out + o * inner;
    for (int64_t i = 0; i < inner; ++i) {
      acc[i] =
          from_first ? static_cast<A>(ReadElement<T>(in + (o * n * inner + i) * sizeof(T))) : A(0);
    }
    for (int64_t k = from_first ? 1 : 0; k < n; ++k) {
      const char* row = in + ((o * n + k) * inner) * static_cast<int64_t>(sizeof(T));
      for (int64_t i = 0; i < inner; ++i) {
        acc[i] = Combine<A>(op, acc[i], static_cast<A>(ReadElement<T>(row + i * sizeof(T))));
      }
    }
  }
}

// ---- Atomics ----------------------------------------------------------------------------------

template <class T>
constexpr bool kAtomicRefLockFree = std::atomic_ref<T>::is_always_lock_free;
static_assert(kAtomicRefLockFree<int8_t> && kAtomicRefLockFree<int16_t> &&
              kAtomicRefLockFree<int32_t> && kAtomicRefLockFree<int64_t>);
static_assert(kAtomicRefLockFree<uint8_t> && kAtomicRefLockFree<uint16_t> &&
              kAtomicRefLockFree<uint32_t> && kAtomicRefLockFree<uint64_t>);
static_assert(kAtomicRefLockFree<float> && kAtomicRefLockFree<double>);

// One lock-free read-modify-write; returns the previous value. *changed: whether it stored.
template <class T>
T AtomicKernel(T* p, AtomicOp op, T value, T expected, bool* changed) {
  std::atomic_ref<T> ref(*p);
  *changed = true;
  if constexpr (std::is_integral_v<T>) {
    if (op == AtomicOp::kAdd) return ref.fetch_add(value, std::memory_order_acq_rel);
  }
  T cur = ref.load(std::memory_order_acquire);
  while (true) {
    T next = cur;
    if (op == AtomicOp::kAdd) {
      next = static_cast<T>(cur + value);
    } else if (op == AtomicOp::kCas) {
      if (!(cur == expected)) break;
      next = value;
    } else {
      next = static_cast<T>(
          Compute<T>(op == AtomicOp::kMin ? ArrayOp::kMin : ArrayOp::kMax, cur, value));
      if (std::memcmp(&next, &cur, sizeof(T)) == 0) break;  // Already the min/max: no write.
    }
    if (ref.compare_exchange_weak(cur, next, std::memory_order_acq_rel)) return cur;
  }
  *changed = false;
  return cur;
}

// ---- In-segment helpers -----------------------------------------------------------------------

char* DataOf(Segment::Impl* seg, uint64_t body) { return seg->Ptr<char>(body) + kArrayDataOffset; }

StridedView UndoView(const UndoRep* undo) {
  StridedView view;
  view.offset = undo->offset;
  view.shape.assign(undo->shape, undo->shape + undo->ndim);
  view.strides.assign(undo->strides, undo->strides + undo->ndim);
  return view;
}

// Copies the saved bytes of the write in flight back. REQUIRES: the array's lock; undo != 0.
void RollBackLocked(Segment::Impl* seg, uint64_t body, uint64_t undo) {
  const auto* u = seg->Ptr<UndoRep>(undo);
  Scatter(DataOf(seg, body), UndoView(u), u->itemsize, seg->Ptr<char>(undo) + kUndoDataOffset,
          false);
  seg->Ptr<NdArrayRep>(body)->version.fetch_add(1, std::memory_order_release);
}

void RepairArrayLocked(Segment::Impl* seg, EntryRep* entry) {
  uint64_t body = entry->body.load();
  auto* rep = seg->Ptr<NdArrayRep>(body);
  uint64_t undo = rep->undo.load(std::memory_order_acquire);
  if (!IsBlob(undo)) return;
  RollBackLocked(seg, body, undo);  // Idempotent if this repair dies too.
  rep->undo.store(0, std::memory_order_release);
  seg->Free(undo);
  SHM_LOG(kWarn) << "array '" << std::string_view(entry->name, entry->name_length)
                 << "': rolled back a write interrupted by a dead process";
}

// Waits until no live thread pins `entry` (IntentSlot::pinned; array atomics and lock-free reads
// hold a pin for nanoseconds). A pin left by a dead process is skipped: that process can touch
// nothing any more, and the manager clears its slot. False after a second of pins by live threads
// (a stalled thread): the caller then leaks the body rather than free it under that thread.
bool WaitForPins(Segment::Impl* seg, uint64_t entry) {
  int64_t deadline = 0;
  const uint32_t in_use = seg->root()->intents_in_use.load(std::memory_order_seq_cst);
  for (uint32_t i = 0; i < in_use && i < kMaxIntentSlots; ++i) {
    IntentSlot& slot = seg->root()->intents[i];
    while (slot.pinned.load(std::memory_order_seq_cst) == entry) {
      pid_t pid = slot.owner_pid.load(std::memory_order_relaxed);
      if (pid == 0 || (kill(pid, 0) != 0 && errno == ESRCH)) break;
      if (deadline == 0) deadline = SteadyNowMs() + 1000;
      if (SteadyNowMs() > deadline) return false;
      sched_yield();
    }
  }
  return true;
}

void DestroyArray(Segment::Impl* seg, uint64_t body) {
  auto* rep = seg->Ptr<NdArrayRep>(body);
  if (rep->entry != 0 && !WaitForPins(seg, rep->entry)) {
    SHM_LOG(kWarn) << "array body leaked: a stalled thread still touches it";
    return;
  }
  seg->Free(rep->undo.exchange(0));
  seg->Free(body);
}

// Keeps the array's body from being freed while this thread touches it without the lock: for
// its lifetime, this thread's intent slot names the entry (see WaitForPins). The slot is stored
// before the body is loaded, and a freer publishes before it scans the slots, so one of the two
// sees the other. held() is false when no intent slot is free: the caller then takes the lock.
class Pin {
 public:
  explicit Pin(const ObjectRef& ref) : slot_(ref.segment->impl()->MySlot()) {
    if (slot_ == nullptr) return;
    slot_->pinned.store(ref.segment->impl()->Handle(ref.entry), std::memory_order_seq_cst);
    if (IsCurrent(ref)) body_ = ref.entry->body.load(std::memory_order_seq_cst);
    if (!IsCurrent(ref)) body_ = 0;
  }
  ~Pin() {
    if (slot_ != nullptr) slot_->pinned.store(0, std::memory_order_release);
  }
  Pin(const Pin&) = delete;
  Pin& operator=(const Pin&) = delete;
  bool held() const { return slot_ != nullptr; }
  // 0 when the array is gone.
  uint64_t body() const { return body_; }

 private:
  IntentSlot* const slot_;
  uint64_t body_ = 0;
};

// The body for a lock-free op: pinned, or, when no slot is free to pin with, under the lock.
Status PinnedOrLockedBody(const ObjectRef& ref, const Pin& pin, ObjectGuard* guard,
                          uint64_t* body) {
  if (!pin.held()) {
    SHM_RETURN_IF_ERROR(guard->Lock(ref));
    *body = ref.entry->body.load(std::memory_order_acquire);
    return Status::OK();
  }
  if (pin.body() == 0) return Status::NotFound("array was deleted");
  *body = pin.body();
  return Status::OK();
}

Status CheckShape(const std::vector<int64_t>& shape, DType dtype, uint64_t* nbytes) {
  if (shape.empty() || shape.size() > static_cast<size_t>(kMaxDims)) {
    return Status::InvalidArgument("an array has 1 to " + std::to_string(kMaxDims) +
                                   " dimensions, not " + std::to_string(shape.size()));
  }
  uint64_t total = DTypeSize(dtype);
  for (int64_t d : shape) {
    if (d < 0)
      return Status::InvalidArgument("negative dimension in shape " + ShapeToString(shape));
    if (d != 0 && total > kMaxArrayBytes / static_cast<uint64_t>(d)) {
      return Status::InvalidArgument("array of shape " + ShapeToString(shape) + " " +
                                     std::string(DTypeName(dtype)) + " is larger than " +
                                     std::to_string(kMaxArrayBytes >> 20) + " MiB");
    }
    total *= static_cast<uint64_t>(d);
  }
  *nbytes = total;
  return Status::OK();
}

Status DTypeMismatch(DType array, DType other, std::string_view what) {
  return Status::InvalidArgument("dtype mismatch: array is " + std::string(DTypeName(array)) +
                                 ", " + std::string(what) + " is " + std::string(DTypeName(other)));
}

Status ShapeMismatch(const std::vector<int64_t>& slice, const std::vector<int64_t>& data) {
  return Status::InvalidArgument("shape mismatch: slice has shape " + ShapeToString(slice) +
                                 ", data has shape " + ShapeToString(data));
}

// Creates the body blob: Rep then data, filled by `fill(data)`.
Status MakeBody(Segment::Impl* seg, DType dtype, const std::vector<int64_t>& shape, uint64_t nbytes,
                const std::function<void(char*)>& fill, uint64_t* body) {
  SHM_RETURN_IF_ERROR(seg->Allocate(kArrayDataOffset + nbytes, body, 64));
  auto* rep = new (seg->Ptr<void>(*body)) NdArrayRep();
  rep->dtype = static_cast<uint32_t>(dtype);
  rep->ndim = static_cast<uint32_t>(shape.size());
  rep->itemsize = static_cast<uint32_t>(DTypeSize(dtype));
  for (size_t i = 0; i < shape.size(); ++i) rep->shape[i] = shape[i];
  rep->nbytes = nbytes;
  fill(DataOf(seg, *body));
  return Status::OK();
}

Status CreateArray(Segment* segment, std::string_view name, DType dtype,
                   const std::vector<int64_t>& shape, uint64_t nbytes,
                   const std::function<void(char*)>& fill, ObjectRef* ref) {
  Segment::Impl* seg = segment->impl();
  Registry::OpenSpec spec;
  spec.kind = ObjectKind::kArray;
  spec.mode = OpenMode::kCreateIfMissing;
  bool created = false;
  spec.created = &created;
  spec.make_body = [&](uint64_t* body) { return MakeBody(seg, dtype, shape, nbytes, fill, body); };
  SHM_RETURN_IF_ERROR(segment->registry().Open(name, spec, ref));
  if (!created) return Status::AlreadyExists("array '" + std::string(name) + "' already exists");
  return Status::OK();
}

}  // namespace

// ---- Public free functions --------------------------------------------------------------------

std::string_view DTypeName(DType dtype) { return kDTypeNames[static_cast<int>(dtype)]; }
size_t DTypeSize(DType dtype) { return kDTypeSizes[static_cast<int>(dtype)]; }
bool IsFloatDType(DType d) { return d == DType::kFloat32 || d == DType::kFloat64; }
bool IsSignedDType(DType d) { return d >= DType::kInt8 && d <= DType::kInt64; }
bool IsUnsignedDType(DType d) { return d >= DType::kUInt8 && d <= DType::kUInt64; }

Status ParseDType(std::string_view name, DType* dtype) {
  for (int i = 0; i < kDTypeCount; ++i) {
    if (kDTypeNames[i] == name) {
      *dtype = static_cast<DType>(i);
      return Status::OK();
    }
  }
  return Status::InvalidArgument("unknown dtype '" + std::string(name) +
                                 "' (bool, int8, int16, int32, int64, uint8, uint16, uint32, "
                                 "uint64, float32, float64)");
}

namespace {
template <class E, size_t N>
Status ParseName(std::string_view name, const std::string_view (&names)[N], std::string_view what,
                 E* out) {
  std::string all;
  for (size_t i = 0; i < N; ++i) {
    if (names[i] == name) {
      *out = static_cast<E>(i);
      return Status::OK();
    }
    all += (i ? ", " : "") + std::string(names[i]);
  }
  return Status::InvalidArgument("unknown " + std::string(what) + " '" + std::string(name) + "' (" +
                                 all + ")");
}
}  // namespace

Status ParseArrayOp(std::string_view name, ArrayOp* op) {
  static constexpr std::string_view kNames[] = {"add", "sub", "mul", "div", "min", "max", "fill"};
  return ParseName(name, kNames, "op", op);
}
Status ParseAtomicOp(std::string_view name, AtomicOp* op) {
  static constexpr std::string_view kNames[] = {"add", "min", "max", "cas"};
  return ParseName(name, kNames, "atomic op", op);
}
Status ParseReduceOp(std::string_view name, ReduceOp* op) {
  static constexpr std::string_view kNames[] = {"sum", "mean", "min", "max"};
  return ParseName(name, kNames, "reduction", op);
}

double Scalar::AsDouble() const {
  switch (kind) {
    case Kind::kBool:
    case Kind::kInt:
      return static_cast<double>(i);
    case Kind::kUInt:
      return static_cast<double>(u);
    case Kind::kFloat:
      break;
  }
  return f;
}

std::string Scalar::ToString() const {
  switch (kind) {
    case Kind::kBool:
      return i ? "true" : "false";
    case Kind::kInt:
      return std::to_string(i);
    case Kind::kUInt:
      return std::to_string(u);
    case Kind::kFloat:
      break;
  }
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), f);
  return std::string(buf, end);
}

int64_t ArrayData::size() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Scalar ArrayData::Get(int64_t i) const {
  return DispatchDType(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return ToScalar(ReadElement<T>(bytes.data() + i * static_cast<int64_t>(sizeof(T))));
  });
}

Status ArrayData::Check() const {
  if (shape.size() > static_cast<size_t>(kMaxDims)) {
    return Status::InvalidArgument("more than " + std::to_string(kMaxDims) + " dimensions");
  }
  uint64_t expected = DTypeSize(dtype);
  for (int64_t d : shape) {
    if (d < 0)
      return Status::InvalidArgument("negative dimension in shape " + ShapeToString(shape));
    if (d != 0 && expected > kMaxArrayBytes / static_cast<uint64_t>(d)) {
      return Status::InvalidArgument("array of shape " + ShapeToString(shape) + " is too large");
    }
    expected *= static_cast<uint64_t>(d);
  }
  if (bytes.size() != expected) {
    return Status::InvalidArgument(
        "data of shape " + ShapeToString(shape) + " " + std::string(DTypeName(dtype)) + " needs " +
        std::to_string(expected) + " bytes, got " + std::to_string(bytes.size()));
  }
  return Status::OK();
}

Status CastArray(const ArrayData& in, DType dtype, ArrayData* result) {
  SHM_RETURN_IF_ERROR(in.Check());
  ArrayData out;
  out.dtype = dtype;
  out.shape = in.shape;
  out.bytes.resize(static_cast<size_t>(in.size()) * DTypeSize(dtype));
  DispatchDType(dtype, [&](auto to_tag) {
    using To = typename decltype(to_tag)::type;
    DispatchDType(in.dtype, [&](auto from_tag) {
      using From = typename decltype(from_tag)::type;
      for (int64_t k = 0; k < in.size(); ++k) {
        To v = CastTo<To>(ReadElement<From>(in.bytes.data() + k * sizeof(From)));
        std::memcpy(out.bytes.data() + k * sizeof(To), &v, sizeof(To));
      }
    });
  });
  *result = std::move(out);
  return Status::OK();
}

Status ArrayFromScalars(const std::vector<Scalar>& values, std::vector<int64_t> shape, DType dtype,
                        ArrayData* result) {
  ArrayData out;
  out.dtype = dtype;
  out.shape = std::move(shape);
  uint64_t n = 1;  // Product of the dimensions, stopping before it could overflow.
  for (int64_t d : out.shape) {
    if (d < 0 || (d != 0 && n > values.size() / static_cast<uint64_t>(d) + 1)) {
      n = values.size() + 1;
      break;
    }
    n *= static_cast<uint64_t>(d);
  }
  if (n != values.size()) {
    return Status::InvalidArgument("shape " + ShapeToString(out.shape) + " does not hold " +
                                   std::to_string(values.size()) + " values");
  }
  out.bytes.resize(values.size() * DTypeSize(dtype));
  for (const Scalar& v : values) {
    Domain domain;
    SHM_RETURN_IF_ERROR(ScalarOperand(dtype, v, &domain));
  }
  DispatchDType(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (size_t k = 0; k < values.size(); ++k) {
      T v = ScalarAs<T>(values[k]);
      std::memcpy(out.bytes.data() + k * sizeof(T), &v, sizeof(T));
    }
  });
  SHM_RETURN_IF_ERROR(out.Check());
  *result = std::move(out);
  return Status::OK();
}

Status ReduceArray(const ArrayData& in, ReduceOp op, std::optional<int> axis, ArrayData* result) {
  SHM_RETURN_IF_ERROR(in.Check());
  int nd = static_cast<int>(in.shape.size());
  int64_t outer = 1, n = in.size(), inner = 1;
  std::vector<int64_t> out_shape;
  if (axis) {
    int a = *axis;
    if (a < -nd || a >= nd) {
      return Status::InvalidArgument("axis " + std::to_string(a) +
                                     " is out of bounds for array of dimension " +
                                     std::to_string(nd));
    }
    if (a < 0) a += nd;
    n = in.shape[a];
    for (int i = 0; i < nd; ++i) {
      if (i < a) outer *= in.shape[i];
      if (i > a) inner *= in.shape[i];
      if (i != a) out_shape.push_back(in.shape[i]);
    }
  }
  if ((op == ReduceOp::kMin || op == ReduceOp::kMax) && n == 0) {
    return Status::InvalidArgument(std::string("zero-size array to reduction operation ") +
                                   (op == ReduceOp::kMin ? "minimum" : "maximum") +
                                   " which has no identity");
  }
  ArrayData out;
  out.shape = out_shape;
  out.dtype = op == ReduceOp::kSum    ? SumDType(in.dtype)
              : op == ReduceOp::kMean ? DType::kFloat64
                                      : in.dtype;
  out.bytes.assign(static_cast<size_t>(outer * inner) * DTypeSize(out.dtype), '\0');
  DispatchDType(in.dtype, [&](auto in_tag) {
    using T = typename decltype(in_tag)::type;
    DispatchDType(out.dtype, [&](auto out_tag) {
      using A = typename decltype(out_tag)::type;
      if constexpr (std::is_same_v<A, T> || std::is_same_v<A, int64_t> ||
                    std::is_same_v<A, uint64_t> || std::is_same_v<A, double>) {
        auto* acc = reinterpret_cast<A*>(out.bytes.data());
        ReduceKernel<T, A>(in.bytes.data(), op, outer, n, inner, acc);
        if constexpr (std::is_same_v<A, double>) {
          if (op == ReduceOp::kMean) {
            for (int64_t i = 0; i < outer * inner; ++i) acc[i] /= static_cast<double>(n);
          }
        }
      }
    });
  });
  *result = std::move(out);
  return Status::OK();
}

// ---- NdArray ----------------------------------------------------------------------------------

Status NdArray::Create(Segment* segment, std::string_view name, DType dtype,
                       const std::vector<int64_t>& shape, Scalar fill, NdArray* result) {
  uint64_t nbytes = 0;
  SHM_RETURN_IF_ERROR(CheckShape(shape, dtype, &nbytes));
  Domain domain;  // Only to refuse an int fill that does not fit an int dtype.
  SHM_RETURN_IF_ERROR(ScalarOperand(dtype, fill, &domain));
  std::string pattern(DTypeSize(dtype), '\0');
  DispatchDType(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T v = ScalarAs<T>(fill);
    std::memcpy(pattern.data(), &v, sizeof(T));
  });
  bool zero = pattern.find_first_not_of('\0') == std::string::npos;
  auto fill_data = [&](char* data) {
    if (zero) {
      std::memset(data, 0, nbytes);
      return;
    }
    // One page element by element, then doubling copies (the registry lock is held meanwhile).
    uint64_t done = std::min<uint64_t>(nbytes, 4096);
    for (uint64_t off = 0; off < done; off += pattern.size()) {
      std::memcpy(data + off, pattern.data(), pattern.size());
    }
    while (done < nbytes) {
      uint64_t n = std::min(done, nbytes - done);
      std::memcpy(data + done, data, n);
      done += n;
    }
  };
  NdArray array;
  SHM_RETURN_IF_ERROR(CreateArray(segment, name, dtype, shape, nbytes, fill_data, &array.ref_));
  SHM_RETURN_IF_ERROR(array.LoadMeta());
  *result = std::move(array);
  return Status::OK();
}

Status NdArray::CreateFrom(Segment* segment, std::string_view name, const ArrayData& data,
                           NdArray* result) {
  SHM_RETURN_IF_ERROR(data.Check());
  uint64_t nbytes = 0;
  SHM_RETURN_IF_ERROR(CheckShape(data.shape, data.dtype, &nbytes));
  auto fill_data = [&](char* out) { std::memcpy(out, data.bytes.data(), nbytes); };
  NdArray array;
  SHM_RETURN_IF_ERROR(
      CreateArray(segment, name, data.dtype, data.shape, nbytes, fill_data, &array.ref_));
  SHM_RETURN_IF_ERROR(array.LoadMeta());
  *result = std::move(array);
  return Status::OK();
}

Status NdArray::Open(Segment* segment, std::string_view name, NdArray* result) {
  Registry::OpenSpec spec;
  spec.kind = ObjectKind::kArray;
  NdArray array;
  SHM_RETURN_IF_ERROR(segment->registry().Open(name, spec, &array.ref_));
  SHM_RETURN_IF_ERROR(array.LoadMeta());
  *result = std::move(array);
  return Status::OK();
}

Status NdArray::LoadMeta() {
  ObjectGuard guard;
  SHM_RETURN_IF_ERROR(guard.Lock(ref_));
  Segment::Impl* seg = ref_.segment->impl();
  auto* rep = seg->Ptr<NdArrayRep>(ref_.entry->body.load());
  if (rep->magic != kNdArrayMagic) return Status::Internal("array body has a bad magic");
  if (rep->entry == 0) rep->entry = seg->Handle(ref_.entry);  // Lets destroy find the pins.
  dtype_ = static_cast<DType>(rep->dtype);
  shape_.assign(rep->shape, rep->shape + rep->ndim);
  return Status::OK();
}

Status NdArray::Info(ArrayInfo* info) const {
  ObjectGuard guard;
  SHM_RETURN_IF_ERROR(guard.Lock(ref_));
  const auto* rep = ref_.segment->impl()->Ptr<NdArrayRep>(ref_.entry->body.load());
  info->dtype = dtype_;
  info->shape = shape_;
  info->nbytes = rep->nbytes;
  info->version = rep->version.load(std::memory_order_acquire);
  return Status::OK();
}

Status NdArray::ViewOf(const Slice& slice, StridedView* view) const {
  if (!ref_.valid()) return Status::InvalidArgument("array handle is not open");
  return slice.Apply(shape_, view);
}

Status NdArray::Inspect(const Slice& slice, DType dtype, const InspectFn& fn) const {
  if (dtype != dtype_) return DTypeMismatch(dtype_, dtype, "view type");
  StridedView view;
  SHM_RETURN_IF_ERROR(ViewOf(slice, &view));
  ObjectGuard guard;
  SHM_RETURN_IF_ERROR(guard.Lock(ref_));
  try {
    fn(DataOf(ref_.segment->impl(), ref_.entry->body.load()), view);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("array read: ") + e.what());
  }
  return Status::OK();
}

Status NdArray::Mutate(const Slice& slice, DType dtype, const MutateFn& fn) {
  if (dtype != dtype_) return DTypeMismatch(dtype_, dtype, "view type");
  StridedView view;
  SHM_RETURN_IF_ERROR(ViewOf(slice, &view));
  return MutateView(view, fn);
}

// The write protocol of ndarray_rep.h: undo blob allocated outside the lock, filled and published
// under it, then the in-place write, then the commit (undo = 0), then the blob is freed.
Status NdArray::MutateView(const StridedView& view, const MutateFn& fn) {
  Segment::Impl* seg = ref_.segment->impl();
  ObjectGuard guard;
  if (view.size() == 0) return guard.Lock(ref_);  // Nothing to write; still NotFound if gone.
  CowWriter writer(seg);
  if (!writer.ok()) return NoIntentSlot();
  size_t itemsize = DTypeSize(dtype_);
  uint64_t saved = static_cast<uint64_t>(view.size()) * itemsize;
  uint64_t undo = 0;
  SHM_RETURN_IF_ERROR(seg->Allocate(kUndoDataOffset + saved, &undo, 64));
  writer.Stage(undo);  // Freed by ~CowWriter if we return before publishing it.
  SHM_RETURN_IF_ERROR(guard.Lock(ref_));
  uint64_t body = ref_.entry->body.load();
  auto* rep = seg->Ptr<NdArrayRep>(body);
  auto* u = new (seg->Ptr<void>(undo)) UndoRep();
  u->offset = view.offset;
  u->ndim = static_cast<uint32_t>(view.ndim());
  u->itemsize = static_cast<uint32_t>(itemsize);
  for (int i = 0; i < view.ndim(); ++i) {
    u->shape[i] = view.shape[i];
    u->strides[i] = view.strides[i];
  }
  u->saved_bytes = saved;
  Gather(DataOf(seg, body), view, itemsize, seg->Ptr<char>(undo) + kUndoDataOffset);
  uint64_t entry = seg->Handle(ref_.entry);
  writer.PublishLocked(entry, &rep->undo, undo);        // From here a crash rolls back.
  std::atomic_thread_fence(std::memory_order_release);  // Lock-free readers see undo first.
  Status status;
  try {
    fn(DataOf(seg, body), view);
  } catch (const std::exception& e) {
    RollBackLocked(seg, body, undo);
    status = Status::Internal(std::string("array write: ") + e.what());
  }
  rep->version.fetch_add(1, std::memory_order_release);
  CrashPoint("array_before_commit");
  writer.PublishLocked(entry, &rep->undo, 0);  // The commit.
  guard.Unlock();
  writer.ReleaseGarbage();
  return status;
}

Status NdArray::ReadSlice(const Slice& slice, ArrayData* result) const {
  ArrayData out;
  out.dtype = dtype_;
  StridedView view;
  SHM_RETURN_IF_ERROR(ReadView(slice, &view, &out.bytes));
  out.shape = std::move(view.shape);
  *result = std::move(out);
  return Status::OK();
}

Status NdArray::ReadSlice(const Slice& slice, std::string* bytes) const {
  StridedView view;
  return ReadView(slice, &view, bytes);
}

namespace {

// Copies the view without taking the lock, as a seqlock reader: it starts only when no write is in
// flight (`undo == 0`) and keeps the copy only if none started or finished meanwhile (`undo` still
// 0, `version` unchanged; every in-place write and rollback bumps the version before clearing
// `undo`, and MutateView fences its data stores after publishing `undo`). A whole-array write
// swaps the body, so a copy of the pinned old body is a consistent copy from before it. False:
// retry or take the lock (a write in flight, a dead writer's undo waiting for repair, an atomic
// that bumped the version, or the array gone). ThreadSanitizer would report the discarded racy
// copies, so its builds always take the lock.
bool TryCopyWithoutLock(const ObjectRef& ref, const StridedView& view, size_t itemsize, char* out) {
#if defined(__SANITIZE_THREAD__)
  return false;
#else
  Pin pin(ref);
  if (!pin.held() || pin.body() == 0) return false;
  Segment::Impl* seg = ref.segment->impl();
  const auto* rep = seg->Ptr<NdArrayRep>(pin.body());
  const uint64_t version = rep->version.load(std::memory_order_acquire);
  if (rep->undo.load(std::memory_order_acquire) != 0) return false;
  Gather(DataOf(seg, pin.body()), view, itemsize, out);
  std::atomic_thread_fence(std::memory_order_acquire);
  // Acquire: a commit seen here (undo back to 0) brings its version bump with it.
  return rep->undo.load(std::memory_order_acquire) == 0 &&
         rep->version.load(std::memory_order_relaxed) == version;
#endif
}

constexpr int kUnlockedReadAttempts = 3;

}  // namespace

Status NdArray::ReadView(const Slice& slice, StridedView* view, std::string* bytes) const {
  SHM_RETURN_IF_ERROR(ViewOf(slice, view));
  // Outside the lock; a buffer of the right size already (a caller reading in a loop) is reused
  // without being cleared first.
  bytes->resize(static_cast<size_t>(view->size()) * DTypeSize(dtype_));
  for (int attempt = 0; attempt < kUnlockedReadAttempts; ++attempt) {
    if (TryCopyWithoutLock(ref_, *view, DTypeSize(dtype_), bytes->data())) return Status::OK();
  }
  ObjectGuard guard;
  SHM_RETURN_IF_ERROR(guard.Lock(ref_));
  Gather(DataOf(ref_.segment->impl(), ref_.entry->body.load()), *view, DTypeSize(dtype_),
         bytes->data());
  return Status::OK();
}

Status NdArray::WriteSlice(const Slice& slice, std::string_view bytes) {
  StridedView view;
  SHM_RETURN_IF_ERROR(ViewOf(slice, &view));
  uint64_t expected = static_cast<uint64_t>(view.size()) * DTypeSize(dtype_);
  if (bytes.size() != expected) {
    return Status::InvalidArgument(
        "slice of shape " + ShapeToString(view.shape) + " " + std::string(DTypeName(dtype_)) +
        " needs " + std::to_string(expected) + " bytes, got " + std::to_string(bytes.size()));
  }
  if (view.offset == 0 && view.shape == shape_ &&
      view.strides == StridedView::Contiguous(shape_).strides) {
    return ReplaceData(bytes);
  }
  size_t itemsize = DTypeSize(dtype_);
  return MutateView(view, [&](char* data, const StridedView& v) {
    Scatter(data, v, itemsize, bytes.data(), true);
  });
}

// A write of every element in C order needs none of the old bytes, so instead of saving them in an
// undo record and writing in place (two copies under the lock) it fills a new body outside the
// lock and publishes it with the COW protocol: one copy, and a crash before the publish leaves
// the old body untouched. Atomics still touching the old body are waited for before it is freed
// (DestroyArray); one that lands there after the copy is ordered before this write, which
// overwrites its element anyway.
Status NdArray::ReplaceData(std::string_view bytes) {
  Segment::Impl* seg = ref_.segment->impl();
  CowWriter writer(seg);
  if (!writer.ok()) return NoIntentSlot();
  uint64_t fresh = 0;
  SHM_RETURN_IF_ERROR(MakeBody(
      seg, dtype_, shape_, bytes.size(),
      [&](char* data) { std::memcpy(data, bytes.data(), bytes.size()); }, &fresh));
  writer.Stage(fresh);  // Freed by ~CowWriter if we return before publishing it.
  ObjectGuard guard;
  SHM_RETURN_IF_ERROR(guard.Lock(ref_));
  const auto* old_rep = seg->Ptr<NdArrayRep>(ref_.entry->body.load());
  auto* rep = seg->Ptr<NdArrayRep>(fresh);
  rep->entry = old_rep->entry;
  rep->version.store(old_rep->version.load(std::memory_order_acquire) + 1,
                     std::memory_order_relaxed);
  CrashPoint("array_before_replace");
  writer.PublishBodyLocked(seg->Handle(ref_.entry), &ref_.entry->body, fresh,
                           static_cast<uint32_t>(ObjectKind::kArray));
  guard.Unlock();
  CrashPoint("array_after_replace");
  writer.ReleaseGarbage(DestroyArray);
  return Status::OK();
}

Status NdArray::WriteSlice(const Slice& slice, const ArrayData& data) {
  if (data.dtype == dtype_) {
    SHM_RETURN_IF_ERROR(data.Check());
    StridedView view;
    SHM_RETURN_IF_ERROR(ViewOf(slice, &view));
    if (view.shape != data.shape) return ShapeMismatch(view.shape, data.shape);
    return WriteSlice(slice, std::string_view(data.bytes));
  }
  return Apply(ArrayOp::kFill, slice, data);
}

Status NdArray::Fill(const Slice& slice, Scalar value) {
  return Apply(ArrayOp::kFill, slice, value);
}

Status NdArray::Apply(ArrayOp op, const Slice& slice, Scalar value) {
  StridedView view;
  SHM_RETURN_IF_ERROR(ViewOf(slice, &view));
  Domain domain;
  SHM_RETURN_IF_ERROR(ScalarOperand(dtype_, value, &domain));
  return DispatchDomain(domain, [&](auto ctag) {
    using C = typename decltype(ctag)::type;
    SHM_RETURN_IF_ERROR(CheckOpForDomain<C>(op));
    std::vector<C> operand{ScalarAs<C>(value)};
    return DispatchDType(dtype_, [&](auto ttag) {
      using T = typename decltype(ttag)::type;
      return MutateView(
          view, [&](char* data, const StridedView& v) { ApplyKernel<T, C>(op, data, v, operand); });
    });
  });
}

Status NdArray::Apply(ArrayOp op, const Slice& slice, const ArrayData& operand) {
  SHM_RETURN_IF_ERROR(operand.Check());
  StridedView view;
  SHM_RETURN_IF_ERROR(ViewOf(slice, &view));
  if (view.shape != operand.shape) return ShapeMismatch(view.shape, operand.shape);
  Domain domain = DomainOf(PromoteTypes(dtype_, operand.dtype));
  return DispatchDomain(domain, [&](auto ctag) {
    using C = typename decltype(ctag)::type;
    SHM_RETURN_IF_ERROR(CheckOpForDomain<C>(op));
    std::vector<C> values = ConvertOperand<C>(operand);  // Outside the lock.
    return DispatchDType(dtype_, [&](auto ttag) {
      using T = typename decltype(ttag)::type;
      return MutateView(
          view, [&](char* data, const StridedView& v) { ApplyKernel<T, C>(op, data, v, values); });
    });
  });
}

Status NdArray::Reduce(ReduceOp op, const Slice& slice, std::optional<int> axis,
                       ArrayData* result) const {
  ArrayData data;
  SHM_RETURN_IF_ERROR(ReadSlice(slice, &data));  // Copy under the lock, compute outside it.
  return ReduceArray(data, op, axis, result);
}

Status NdArray::ElementOffset(const std::vector<int64_t>& index, int64_t* offset) const {
  if (!ref_.valid()) return Status::InvalidArgument("array handle is not open");
  if (index.size() != shape_.size()) {
    return Status::InvalidArgument("an element index needs " + std::to_string(shape_.size()) +
                                   " integers, got " + std::to_string(index.size()));
  }
  Slice slice;
  for (int64_t i : index) slice.Index(i);
  StridedView view;
  SHM_RETURN_IF_ERROR(slice.Apply(shape_, &view));
  *offset = view.offset;
  return Status::OK();
}

Status NdArray::Atomic(AtomicOp op, const std::vector<int64_t>& index, Scalar value,
                       Scalar expected, Scalar* old) {
  if (dtype_ == DType::kBool) {
    return Status::InvalidArgument("atomic ops need an integer or float array, not bool");
  }
  int64_t offset = 0;
  SHM_RETURN_IF_ERROR(ElementOffset(index, &offset));
  return DispatchDType(dtype_, [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, bool>) {
      return Status::Internal("unreachable");
    } else {
      T v{}, e{};
      SHM_RETURN_IF_ERROR(ExactScalar<T>(value, dtype_, &v));
      if (op == AtomicOp::kCas) SHM_RETURN_IF_ERROR(ExactScalar<T>(expected, dtype_, &e));
      Pin pin(ref_);
      ObjectGuard guard;
      uint64_t body = 0;
      SHM_RETURN_IF_ERROR(PinnedOrLockedBody(ref_, pin, &guard, &body));
      Segment::Impl* seg = ref_.segment->impl();
      T* p = reinterpret_cast<T*>(DataOf(seg, body)) + offset;
      CrashPoint("array_atomic_pinned");
      bool changed = false;
      T before = AtomicKernel<T>(p, op, v, e, &changed);
      if (changed) seg->Ptr<NdArrayRep>(body)->version.fetch_add(1, std::memory_order_relaxed);
      *old = ToScalar(before);
      if (op == AtomicOp::kCas && !changed) {
        return Status::Conflict("element is " + old->ToString() + ", expected " +
                                ToScalar(e).ToString());
      }
      return Status::OK();
    }
  });
}

Status NdArray::Load(const std::vector<int64_t>& index, Scalar* value) const {
  int64_t offset = 0;
  SHM_RETURN_IF_ERROR(ElementOffset(index, &offset));
  Pin pin(ref_);
  ObjectGuard guard;
  uint64_t body = 0;
  SHM_RETURN_IF_ERROR(PinnedOrLockedBody(ref_, pin, &guard, &body));
  char* data = DataOf(ref_.segment->impl(), body);
  *value = DispatchDType(dtype_, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = reinterpret_cast<T*>(data) + offset;
    return ToScalar(std::atomic_ref<T>(*p).load(std::memory_order_acquire));
  });
  return Status::OK();
}

namespace {

// Snapshots store an array as a .npy file.
Status SerializeArrayLocked(Segment::Impl* seg, const EntryRep* entry, std::string* out) {
  uint64_t body = entry->body.load();
  const auto* rep = seg->Ptr<NdArrayRep>(body);
  ArrayData data;
  data.dtype = static_cast<DType>(rep->dtype);
  data.shape.assign(rep->shape, rep->shape + rep->ndim);
  data.bytes.assign(DataOf(seg, body), rep->nbytes);
  std::string npy;
  SHM_RETURN_IF_ERROR(WriteNpy(data, &npy));
  out->append(npy);
  return Status::OK();
}

Status DeserializeArray(Segment::Impl* seg, std::string_view bytes, uint64_t* body) {
  ArrayData data;
  SHM_RETURN_IF_ERROR(ParseNpy(bytes, &data));
  uint64_t nbytes = 0;
  SHM_RETURN_IF_ERROR(CheckShape(data.shape, data.dtype, &nbytes));
  return MakeBody(
      seg, data.dtype, data.shape, nbytes,
      [&](char* out) { std::memcpy(out, data.bytes.data(), nbytes); }, body);
}

// An array's body is replaced whole by ReplaceData (same dtype and shape, so the same sizes),
// which bumps reclaim_seq before it frees the old one: the sizes read are kept only if it did not
// move. ThreadSanitizer would report the racy read of a body freed meanwhile, so its builds take
// the entry's lock (the registry lock is held: registry -> object is the lock order).
void ArrayUsage(Segment::Impl* seg, const EntryRep* entry, ObjectInfo* info) {
#if defined(__SANITIZE_THREAD__)
  ObjectGuard guard;
  if (!guard.LockEntry(seg, const_cast<EntryRep*>(entry)).ok()) return;
#endif
  for (int attempt = 0; attempt < 4; ++attempt) {
    uint64_t seq = entry->reclaim_seq.load(std::memory_order_seq_cst);
    uint64_t body = entry->body.load(std::memory_order_acquire);
    if (!seg->Contains(body, sizeof(NdArrayRep))) return;
    const auto* rep = seg->Ptr<NdArrayRep>(body);
    uint64_t nbytes = rep->nbytes;
    uint32_t itemsize = rep->itemsize;
    std::atomic_thread_fence(std::memory_order_acquire);
    if (entry->reclaim_seq.load(std::memory_order_seq_cst) != seq) continue;
    info->size_bytes = nbytes;
    info->length = itemsize == 0 ? 0 : static_cast<int64_t>(nbytes / itemsize);
    return;
  }
}

}  // namespace

const KindOps kArrayOps = {RepairArrayLocked, DestroyArray, SerializeArrayLocked, DeserializeArray,
                           ArrayUsage};

}  // namespace shm
