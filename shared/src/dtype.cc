// The process-local side of arrays: dtype names, scalars, ArrayData, casting and reductions.
#include "shm/dtype.h"

#include "array_kernels.h"
#include "shm/ndarray.h"

namespace shm {
using namespace array_kernels;  // NOLINT: the kernels are this file's vocabulary.

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

}  // namespace shm
