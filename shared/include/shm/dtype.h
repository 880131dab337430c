// DType, Scalar and ArrayData: the value types of n-d arrays, and what can be done with them in
// process-local memory (casting, reductions, building from scalars).
//
// These are plain values with no link to any segment; NdArray (shm/ndarray.h) reads and writes
// them from and to shared memory. Thread safety: values; const use from many threads is safe.
#ifndef SHM_DTYPE_H_
#define SHM_DTYPE_H_

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shm/status.h"

namespace shm {

enum class DType : uint8_t {
  kBool = 0,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kUInt8,
  kUInt16,
  kUInt32,
  kUInt64,
  kFloat32,
  kFloat64,
};
inline constexpr int kDTypeCount = 11;

// numpy's names: "bool", "int8", ..., "uint64", "float32", "float64".
std::string_view DTypeName(DType dtype);
// Inverse of DTypeName; InvalidArgument naming the accepted names otherwise.
Status ParseDType(std::string_view name, DType* dtype);
size_t DTypeSize(DType dtype);
bool IsFloatDType(DType dtype);
bool IsSignedDType(DType dtype);    // int8..int64.
bool IsUnsignedDType(DType dtype);  // uint8..uint64.

template <class T>
struct DTypeOf;
#define SHM_DTYPE_OF(type, value)                 \
  template <>                                     \
  struct DTypeOf<type> {                          \
    static constexpr DType kValue = DType::value; \
  }
SHM_DTYPE_OF(bool, kBool);
SHM_DTYPE_OF(int8_t, kInt8);
SHM_DTYPE_OF(int16_t, kInt16);
SHM_DTYPE_OF(int32_t, kInt32);
SHM_DTYPE_OF(int64_t, kInt64);
SHM_DTYPE_OF(uint8_t, kUInt8);
SHM_DTYPE_OF(uint16_t, kUInt16);
SHM_DTYPE_OF(uint32_t, kUInt32);
SHM_DTYPE_OF(uint64_t, kUInt64);
SHM_DTYPE_OF(float, kFloat32);
SHM_DTYPE_OF(double, kFloat64);
#undef SHM_DTYPE_OF

// One number as a caller gives it (a Python/JSON scalar): its kind decides the casting, as
// numpy's "weak" Python scalars do (an int scalar keeps an int8 array's arithmetic in int8).
struct Scalar {
  enum class Kind : uint8_t { kBool, kInt, kUInt, kFloat };
  Kind kind = Kind::kInt;
  int64_t i = 0;   // kInt (and kBool: 0 or 1).
  uint64_t u = 0;  // kUInt.
  double f = 0;    // kFloat.

  static Scalar Bool(bool v) { return {Kind::kBool, v ? 1 : 0, 0, 0}; }
  static Scalar Int(int64_t v) { return {Kind::kInt, v, 0, 0}; }
  static Scalar UInt(uint64_t v) { return {Kind::kUInt, 0, v, 0}; }
  static Scalar Float(double v) { return {Kind::kFloat, 0, 0, v}; }
  double AsDouble() const;
  // "3", "-1", "2.5", "true".
  std::string ToString() const;
  bool operator==(const Scalar& o) const = default;
};

// A process-local dense array: what reads return and writes take. `bytes` is C order, little
// endian, DTypeSize(dtype) * product(shape) long. A 0-d array (empty shape) holds one scalar.
struct ArrayData {
  DType dtype = DType::kFloat64;
  std::vector<int64_t> shape;
  std::string bytes;

  int64_t size() const;
  // Element i (C order) as a Scalar.
  Scalar Get(int64_t i) const;
  template <class T>
  const T* data() const {
    return reinterpret_cast<const T*>(bytes.data());
  }
  // Builds from typed values; shape must match values.size() (checked by callers' Status paths).
  template <class T>
  static ArrayData From(std::vector<int64_t> shape, const std::vector<T>& values) {
    ArrayData a;
    a.dtype = DTypeOf<T>::kValue;
    a.shape = std::move(shape);
    a.bytes.resize(values.size() * sizeof(T));
    if (!values.empty()) std::memcpy(a.bytes.data(), values.data(), a.bytes.size());
    return a;
  }
  // OK when bytes.size() matches dtype and shape, InvalidArgument otherwise.
  Status Check() const;
};

// Element-wise in-place ops. Integer div is floor division (numpy //; x // 0 is 0); see Apply.
enum class ArrayOp { kAdd, kSub, kMul, kDiv, kMin, kMax, kFill };
// "add", "sub", "mul", "div", "min", "max", "fill".
Status ParseArrayOp(std::string_view name, ArrayOp* op);
enum class AtomicOp { kAdd, kMin, kMax, kCas };
// "add", "min", "max", "cas".
Status ParseAtomicOp(std::string_view name, AtomicOp* op);
enum class ReduceOp { kSum, kMean, kMin, kMax };
// "sum", "mean", "min", "max".
Status ParseReduceOp(std::string_view name, ReduceOp* op);

// Reduction of a process-local array (what NdArray::Reduce does after copying the slice).
Status ReduceArray(const ArrayData& in, ReduceOp op, std::optional<int> axis, ArrayData* result);
// Casts every element to `dtype` with the rules of NdArray::Apply's kFill.
Status CastArray(const ArrayData& in, DType dtype, ArrayData* result);
// Builds an array of `dtype` from scalars in C order (e.g. parsed JSON), each cast as Fill casts
// a scalar: an int must fit an int dtype (InvalidArgument otherwise), a float is truncated.
Status ArrayFromScalars(const std::vector<Scalar>& values, std::vector<int64_t> shape, DType dtype,
                        ArrayData* result);

}  // namespace shm

#endif  // SHM_DTYPE_H_
