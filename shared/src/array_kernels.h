// Array kernels: the dtype dispatch, casting, strided copies, element-wise ops, reductions and
// atomics that NdArray (shared memory) and the process-local ArrayData functions (dtype.cc)
// share. Internal to the library; everything here works on plain memory (the writers mark their
// steps with crash points, as they also write arrays in place in the segment).
#ifndef SHM_SRC_ARRAY_KERNELS_H_
#define SHM_SRC_ARRAY_KERNELS_H_

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "crash_point.h"
#include "shm/dtype.h"
#include "shm/slice.h"
#include "shm/status.h"

namespace shm {
namespace array_kernels {

inline constexpr std::string_view kDTypeNames[kDTypeCount] = {
    "bool",   "int8",   "int16",  "int32",   "int64",  "uint8",
    "uint16", "uint32", "uint64", "float32", "float64"};
inline constexpr size_t kDTypeSizes[kDTypeCount] = {1, 1, 2, 4, 8, 1, 2, 4, 8, 4, 8};

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

inline Status OutOfRange(const Scalar& s, DType dtype) {
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
inline StridedView Collapse(const StridedView& v) {
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

inline void CopyRow(const char* src, int64_t src_step, char* dst, int64_t dst_step, int64_t n,
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
inline void Gather(const char* data, const StridedView& view, size_t itemsize, char* out) {
  auto isz = static_cast<int64_t>(itemsize);
  ForEachRow(view, [&](int64_t off, int64_t n, int64_t stride) {
    CopyRow(data + off * isz, stride * isz, out, isz, n, itemsize);
    out += n * isz;
  });
}

// Copies C-order `in` into the view's elements. `crash_points`: the write loop of a slice write,
// where the crash tests stop a writer half-way.
inline void Scatter(char* data, const StridedView& view, size_t itemsize, const char* in,
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

inline Domain DomainOf(DType dtype) {
  if (dtype == DType::kBool) return Domain::kBool;
  if (IsFloatDType(dtype)) return Domain::kFloat;
  return IsSignedDType(dtype) ? Domain::kInt : Domain::kUInt;
}

// numpy's promote_types for these dtypes.
inline DType PromoteTypes(DType a, DType b) {
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

inline int KindRank(Domain d) { return d == Domain::kBool ? 0 : d == Domain::kFloat ? 2 : 1; }
inline Domain ScalarDomain(const Scalar& s) {
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

inline std::string_view ArrayOpName(ArrayOp op) {
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
inline Status ScalarOperand(DType dtype, const Scalar& s, Domain* domain) {
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

inline DType SumDType(DType dtype) {
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
inline constexpr bool kAtomicRefLockFree = std::atomic_ref<T>::is_always_lock_free;
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

}  // namespace array_kernels
}  // namespace shm

#endif  // SHM_SRC_ARRAY_KERNELS_H_
