// /v1/arrays: numpy-like shared n-d arrays over HTTP (docs/http-api.md, docs/arrays.md).
//
// Metadata is {"dtype","shape","nbytes","version"}; data goes in and out as JSON nested lists or
// as an .npy body (recognised by its magic). Every parser is strict: unknown members, ragged
// lists, non-numbers, out-of-range values and dtype or shape mismatches are 400 naming both.
#include <string>
#include <vector>

#include "api_util.h"
#include "shm/api.h"
#include "shm/ndarray.h"
#include "shm/npy.h"

namespace shm {
namespace {

using api::json::array;
using api::json::object;
using api::json::value;

// Largest slice answered as JSON (use format=npy beyond).
constexpr int64_t kMaxJsonElements = int64_t{1} << 20;

template <typename Op>
Status WithArray(RequestContext& context, Op&& op) {
  auto open = [](Segment* segment, std::string_view name, NdArray* array) {
    return NdArray::Open(segment, name, array);
  };
  return api::WithObject<NdArray>(context, open, std::forward<Op>(op));
}

value ShapeJson(const std::vector<int64_t>& shape) {
  array out;
  for (int64_t d : shape) out.push_back(d);
  return out;
}

value ScalarJson(const Scalar& s) {
  switch (s.kind) {
    case Scalar::Kind::kBool:
      return value(s.i != 0);
    case Scalar::Kind::kInt:
      return value(s.i);
    case Scalar::Kind::kUInt:
      return value(s.u);
    case Scalar::Kind::kFloat:
      break;
  }
  return value(s.f);
}

// Nested lists of the elements from `*next` on, for the axes from `axis` on.
value NestedJson(const ArrayData& data, size_t axis, int64_t* next) {
  if (axis == data.shape.size()) return ScalarJson(data.Get((*next)++));
  array out;
  out.reserve(static_cast<size_t>(data.shape[axis]));
  for (int64_t i = 0; i < data.shape[axis]; ++i) out.push_back(NestedJson(data, axis + 1, next));
  return out;
}

value DataJson(const ArrayData& data) {
  int64_t next = 0;
  return NestedJson(data, 0, &next);
}

Status ScalarFromJson(const value& v, Scalar* out) {
  if (v.is_bool())
    *out = Scalar::Bool(v.as_bool());
  else if (v.is_int64())
    *out = Scalar::Int(v.as_int64());
  else if (v.is_uint64())
    *out = Scalar::UInt(v.as_uint64());
  else if (v.is_double())
    *out = Scalar::Float(v.as_double());
  else
    return Status::InvalidArgument("array values must be numbers or booleans");
  return Status::OK();
}

// A JSON number or nested list: its shape (empty for a scalar) and its values in C order.
Status ParseNested(const value& v, size_t depth, std::vector<int64_t>* shape,
                   std::vector<Scalar>* values) {
  if (!v.is_array()) {
    if (depth != shape->size()) return Status::InvalidArgument("ragged nested list");
    Scalar s;
    SHM_RETURN_IF_ERROR(ScalarFromJson(v, &s));
    values->push_back(s);
    return Status::OK();
  }
  const array& items = v.as_array();
  if (depth >= static_cast<size_t>(kMaxDims)) {
    return Status::InvalidArgument("nested list deeper than " + std::to_string(kMaxDims));
  }
  if (depth == shape->size()) {
    if (!values->empty()) return Status::InvalidArgument("ragged nested list");
    shape->push_back(static_cast<int64_t>(items.size()));
  } else if ((*shape)[depth] != static_cast<int64_t>(items.size())) {
    return Status::InvalidArgument("ragged nested list");
  }
  for (const value& item : items) SHM_RETURN_IF_ERROR(ParseNested(item, depth + 1, shape, values));
  if (items.empty() && depth + 1 < shape->size()) {
    return Status::InvalidArgument("ragged nested list");
  }
  return Status::OK();
}

Status ParseNestedTop(const value& v, std::vector<int64_t>* shape, std::vector<Scalar>* values) {
  shape->clear();
  values->clear();
  return ParseNested(v, 0, shape, values);
}

// The dtype numpy gives a Python list: bool if all bools, else int64 (uint64 when a value needs
// it), float64 if any float.
DType InferDType(const std::vector<Scalar>& values) {
  bool all_bool = !values.empty(), any_float = false, any_uint = false;
  for (const Scalar& s : values) {
    all_bool &= s.kind == Scalar::Kind::kBool;
    any_float |= s.kind == Scalar::Kind::kFloat;
    any_uint |= s.kind == Scalar::Kind::kUInt;
  }
  if (all_bool) return DType::kBool;
  if (any_float) return DType::kFloat64;
  return any_uint ? DType::kUInt64 : DType::kInt64;
}

Status ParseSliceQuery(const RequestContext& context, Slice* slice) {
  return Slice::Parse(api::QueryString(context, "slice"), slice);
}

Status ParseFormat(const RequestContext& context, bool* npy) {
  std::string_view format = api::QueryString(context, "format", "json");
  if (format != "json" && format != "npy") {
    return Status::InvalidArgument("format must be json or npy, not '" +
                                   std::string(format.substr(0, 16)) + "'");
  }
  *npy = format == "npy";
  return Status::OK();
}

void SetInfo(HttpResponse* response, const ArrayInfo& info, http::status status) {
  api::SetJson(response,
               object{{"dtype", DTypeName(info.dtype)},
                      {"shape", ShapeJson(info.shape)},
                      {"nbytes", info.nbytes},
                      {"version", info.version}},
               status);
}

Status CreateFromJson(RequestContext& context, NdArray* array) {
  object body;
  SHM_RETURN_IF_ERROR(api::ParseJsonObject(context, {"dtype", "shape", "fill"}, &body));
  DType dtype = DType::kFloat64;
  if (const value* d = body.if_contains("dtype")) {
    if (!d->is_string()) return Status::InvalidArgument("'dtype' must be a string");
    SHM_RETURN_IF_ERROR(ParseDType(std::string_view(d->as_string()), &dtype));
  }
  const value* shape_json = body.if_contains("shape");
  if (shape_json == nullptr) return Status::InvalidArgument("missing member 'shape'");
  std::vector<int64_t> shape;
  if (shape_json->is_int64()) {
    shape.push_back(shape_json->as_int64());  // numpy accepts shape=5 for (5,).
  } else if (shape_json->is_array() &&
             shape_json->as_array().size() <= static_cast<size_t>(kMaxDims)) {
    for (const value& d : shape_json->as_array()) {
      if (!d.is_int64()) return Status::InvalidArgument("'shape' must hold integers");
      shape.push_back(d.as_int64());
    }
  } else {
    return Status::InvalidArgument("'shape' must be a list of at most 8 integers");
  }
  Scalar fill = Scalar::Int(0);
  if (const value* f = body.if_contains("fill")) SHM_RETURN_IF_ERROR(ScalarFromJson(*f, &fill));
  return NdArray::Create(context.segment, context.params[0], dtype, shape, fill, array);
}

Status Create(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  const std::string& name = context.params[0];
  SHM_RETURN_IF_ERROR(api::CheckName(name));
  NdArray array;
  const std::string& body = context.request.body();
  if (LooksLikeNpy(body)) {
    ArrayData data;
    SHM_RETURN_IF_ERROR(ParseNpy(body, &data));
    SHM_RETURN_IF_ERROR(NdArray::CreateFrom(context.segment, name, data, &array));
  } else {
    SHM_RETURN_IF_ERROR(CreateFromJson(context, &array));
  }
  api::CacheOf<NdArray>().Forget(name);  // A stale handle of a former incarnation.
  ArrayInfo info;
  SHM_RETURN_IF_ERROR(array.Info(&info));
  SetInfo(response, info, http::status::created);
  return Status::OK();
}

Status GetInfo(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  ArrayInfo info;
  SHM_RETURN_IF_ERROR(WithArray(context, [&](NdArray& a) { return a.Info(&info); }));
  SetInfo(response, info, http::status::ok);
  return Status::OK();
}

Status Delete(RequestContext& context, HttpResponse* response) {
  return api::DeleteObjectOfKind<NdArray>(context, ObjectKind::kArray, response);
}

Status ReadData(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {"slice", "format"}));
  Slice slice;
  bool npy = false;
  SHM_RETURN_IF_ERROR(ParseSliceQuery(context, &slice));
  SHM_RETURN_IF_ERROR(ParseFormat(context, &npy));
  ArrayData data;
  SHM_RETURN_IF_ERROR(WithArray(context, [&](NdArray& a) { return a.ReadSlice(slice, &data); }));
  if (npy) {
    std::string file;
    SHM_RETURN_IF_ERROR(WriteNpy(data, &file));
    response->result(http::status::ok);
    response->set(http::field::content_type, "application/octet-stream");
    response->body() = std::move(file);
    return Status::OK();
  }
  if (data.size() > kMaxJsonElements) {
    return Status::InvalidArgument("slice has " + std::to_string(data.size()) +
                                   " elements, more than JSON answers carry (" +
                                   std::to_string(kMaxJsonElements) + "); use format=npy");
  }
  api::SetJson(response, object{{"dtype", DTypeName(data.dtype)},
                                {"shape", ShapeJson(data.shape)},
                                {"data", DataJson(data)}});
  return Status::OK();
}

// A JSON write body: a nested list, a scalar, or {"data": ...}.
Status ParseJsonData(const RequestContext& context, value* data) {
  boost::system::error_code ec;
  value v = api::json::parse(context.request.body(), ec);
  if (ec) return Status::InvalidArgument("body is not valid JSON: " + ec.message());
  if (v.is_object()) {
    const object& o = v.as_object();
    if (o.size() != 1 || !o.contains("data")) {
      return Status::InvalidArgument("a JSON write is a nested list or {\"data\": ...}");
    }
    *data = o.at("data");
  } else {
    *data = std::move(v);
  }
  return Status::OK();
}

Status WriteData(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {"slice", "format"}));
  Slice slice;
  bool npy_format = false;
  SHM_RETURN_IF_ERROR(ParseSliceQuery(context, &slice));
  SHM_RETURN_IF_ERROR(ParseFormat(context, &npy_format));
  const std::string& body = context.request.body();
  ArrayInfo info;
  SHM_RETURN_IF_ERROR(WithArray(context, [&](NdArray& a) -> Status {
    StridedView view;
    SHM_RETURN_IF_ERROR(slice.Apply(a.shape(), &view));
    ArrayData data;
    if (LooksLikeNpy(body)) {
      SHM_RETURN_IF_ERROR(ParseNpy(body, &data));
      if (data.dtype != a.dtype()) {
        return Status::InvalidArgument("dtype mismatch: array is " +
                                       std::string(DTypeName(a.dtype())) + ", data is " +
                                       std::string(DTypeName(data.dtype)));
      }
    } else {
      if (npy_format) return Status::InvalidArgument("format=npy but the body is not .npy");
      value json_data;
      std::vector<int64_t> shape;
      std::vector<Scalar> values;
      SHM_RETURN_IF_ERROR(ParseJsonData(context, &json_data));
      SHM_RETURN_IF_ERROR(ParseNestedTop(json_data, &shape, &values));
      if (shape.empty()) {
        SHM_RETURN_IF_ERROR(a.Fill(slice, values[0]));  // A scalar broadcasts.
        return a.Info(&info);
      }
      SHM_RETURN_IF_ERROR(ArrayFromScalars(values, shape, a.dtype(), &data));
    }
    if (data.shape != view.shape) {
      return Status::InvalidArgument("shape mismatch: slice has shape " +
                                     ShapeToString(view.shape) + ", data has shape " +
                                     ShapeToString(data.shape));
    }
    SHM_RETURN_IF_ERROR(a.WriteSlice(slice, std::string_view(data.bytes)));
    return a.Info(&info);
  }));
  SetInfo(response, info, http::status::ok);
  return Status::OK();
}

Status Ops(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  object body;
  SHM_RETURN_IF_ERROR(api::ParseJsonObject(context, {"op", "value", "array", "slice"}, &body));
  const value* op_json = body.if_contains("op");
  if (op_json == nullptr || !op_json->is_string()) {
    return Status::InvalidArgument("'op' must be one of add, sub, mul, div, min, max, fill");
  }
  ArrayOp op;
  SHM_RETURN_IF_ERROR(ParseArrayOp(std::string_view(op_json->as_string()), &op));
  Slice slice;
  if (const value* s = body.if_contains("slice")) {
    if (!s->is_string()) return Status::InvalidArgument("'slice' must be a string");
    SHM_RETURN_IF_ERROR(Slice::Parse(std::string_view(s->as_string()), &slice));
  }
  const value* scalar = body.if_contains("value");
  const value* operand = body.if_contains("array");
  if ((scalar == nullptr) == (operand == nullptr)) {
    return Status::InvalidArgument("give exactly one of 'value' and 'array'");
  }
  ArrayInfo info;
  SHM_RETURN_IF_ERROR(WithArray(context, [&](NdArray& a) -> Status {
    if (scalar != nullptr) {
      Scalar v;
      SHM_RETURN_IF_ERROR(ScalarFromJson(*scalar, &v));
      SHM_RETURN_IF_ERROR(a.Apply(op, slice, v));
    } else {
      std::vector<int64_t> shape;
      std::vector<Scalar> values;
      SHM_RETURN_IF_ERROR(ParseNestedTop(*operand, &shape, &values));
      ArrayData data;
      SHM_RETURN_IF_ERROR(ArrayFromScalars(values, shape, InferDType(values), &data));
      SHM_RETURN_IF_ERROR(a.Apply(op, slice, data));
    }
    return a.Info(&info);
  }));
  SetInfo(response, info, http::status::ok);
  return Status::OK();
}

Status Atomic(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  object body;
  SHM_RETURN_IF_ERROR(api::ParseJsonObject(context, {"op", "index", "value", "expected"}, &body));
  const value* op_json = body.if_contains("op");
  AtomicOp op;
  if (op_json == nullptr || !op_json->is_string()) {
    return Status::InvalidArgument("'op' must be one of add, min, max, cas");
  }
  SHM_RETURN_IF_ERROR(ParseAtomicOp(std::string_view(op_json->as_string()), &op));
  std::vector<int64_t> index;
  const value* index_json = body.if_contains("index");
  if (index_json != nullptr && index_json->is_int64()) {
    index.push_back(index_json->as_int64());
  } else if (index_json != nullptr && index_json->is_array() &&
             index_json->as_array().size() <= static_cast<size_t>(kMaxDims)) {
    for (const value& i : index_json->as_array()) {
      if (!i.is_int64()) return Status::InvalidArgument("'index' must hold integers");
      index.push_back(i.as_int64());
    }
  } else {
    return Status::InvalidArgument("'index' must be a list of integers, one per dimension");
  }
  Scalar v, expected;
  const value* value_json = body.if_contains("value");
  if (value_json == nullptr) return Status::InvalidArgument("missing member 'value'");
  SHM_RETURN_IF_ERROR(ScalarFromJson(*value_json, &v));
  if (op == AtomicOp::kCas) {
    const value* e = body.if_contains("expected");
    if (e == nullptr) return Status::InvalidArgument("cas needs member 'expected'");
    SHM_RETURN_IF_ERROR(ScalarFromJson(*e, &expected));
  } else if (body.contains("expected")) {
    return Status::InvalidArgument("'expected' is only for cas");
  }
  Scalar old;
  Status s = WithArray(context, [&](NdArray& a) { return a.Atomic(op, index, v, expected, &old); });
  if (s.IsConflict()) {
    api::SetConflict(response, s, "old", ScalarJson(old));
    return Status::OK();
  }
  SHM_RETURN_IF_ERROR(s);
  api::SetJson(response, object{{"old", ScalarJson(old)}});
  return Status::OK();
}

Status Reduce(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {"op", "axis", "slice"}));
  ReduceOp op;
  SHM_RETURN_IF_ERROR(ParseReduceOp(api::QueryString(context, "op"), &op));
  std::optional<int> axis;
  if (context.query.count("axis") != 0) {
    int64_t a = 0;
    SHM_RETURN_IF_ERROR(api::QueryInt64(context, "axis", 0, &a));
    if (a < -kMaxDims || a > kMaxDims) {
      return Status::InvalidArgument("axis " + std::to_string(a) + " is out of bounds");
    }
    axis = static_cast<int>(a);
  }
  Slice slice;
  SHM_RETURN_IF_ERROR(ParseSliceQuery(context, &slice));
  ArrayData result;
  SHM_RETURN_IF_ERROR(
      WithArray(context, [&](NdArray& a) { return a.Reduce(op, slice, axis, &result); }));
  if (result.size() > kMaxJsonElements) {
    return Status::InvalidArgument("reduction result too large for JSON");
  }
  api::SetJson(response, object{{"value", DataJson(result)}});
  return Status::OK();
}

}  // namespace

void RegisterArrayRoutes(Router* router) {
  router->Add(http::verb::post, "/v1/arrays/{name}", Create);
  router->Add(http::verb::get, "/v1/arrays/{name}", GetInfo);
  router->Add(http::verb::delete_, "/v1/arrays/{name}", Delete);
  router->Add(http::verb::get, "/v1/arrays/{name}/data", ReadData);
  router->Add(http::verb::put, "/v1/arrays/{name}/data", WriteData);
  router->Add(http::verb::post, "/v1/arrays/{name}/ops", Ops);
  router->Add(http::verb::post, "/v1/arrays/{name}/atomic", Atomic);
  router->Add(http::verb::get, "/v1/arrays/{name}/reduce", Reduce);
}

}  // namespace shm
