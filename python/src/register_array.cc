// _Array: a shm::NdArray bound to an attachment, read and written as numpy arrays (handles.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bound.h"
#include "convert.h"
#include "handles.h"
#include "shm/ndarray.h"
#include "shm/slice.h"

namespace py = pybind11;
using shm::Status;

namespace shmstate {
namespace {

py::dtype NumpyDType(shm::DType dtype) { return py::dtype(std::string(shm::DTypeName(dtype))); }

class PyArray {
 public:
  using Opener = Bound<shm::NdArray>::Opener;

  PyArray(std::shared_ptr<Attachment> a, std::string name, Opener open)
      : name_(std::move(name)), bound_(std::move(a), std::move(open)) {
    bound_.Run([&](shm::NdArray& arr) {
      dtype_ = arr.dtype();
      shape_ = arr.shape();
      return Status::OK();
    });
  }

  // A fresh numpy array (or a numpy scalar for an all-integer index) copied from the slice,
  // exactly as numpy's `array[key]` would give it. Advanced indexing (integer arrays, boolean
  // masks) copies the whole array and lets numpy select from the copy.
  py::object Read(const py::handle& key_arg) {
    ArrayKey key = ToArrayKey(key_arg);
    if (key.advanced) return ReadAdvanced(key_arg);
    std::vector<int64_t> sliced = SlicedShape(key);
    std::vector<int64_t> shape = key.ResultShape(sliced);
    py::array out(NumpyDType(dtype_), std::vector<py::ssize_t>(shape.begin(), shape.end()));
    void* data = out.mutable_data();
    size_t nbytes = static_cast<size_t>(out.nbytes());
    bound_.Run([&](shm::NdArray& arr) { return arr.ReadSliceInto(key.slice, data, nbytes); },
               /*release_gil=*/true);
    if (shape.empty()) return out[py::tuple()];
    return out;
  }
  // `values`: a C-contiguous numpy array of this array's dtype and of the key's shape (the
  // Python layer broadcasts and casts with numpy first).
  void Write(const py::handle& key_arg, const py::handle& values_arg) {
    ArrayKey key = ToBasicKey(key_arg);
    std::vector<int64_t> sliced = SlicedShape(key);
    std::vector<int64_t> shape = key.ResultShape(sliced);
    if (!IsNdarray(values_arg)) {
      RaiseType("values must be a numpy array of dtype " + std::string(shm::DTypeName(dtype_)) +
                " (a[key] = values broadcasts and casts), not " + TypeName(values_arg));
    }
    py::array values = py::reinterpret_borrow<py::array>(values_arg);
    std::vector<int64_t> have(values.shape(), values.shape() + values.ndim());
    if (!values.dtype().equal(NumpyDType(dtype_))) {
      RaiseInvalid("values must have the array's dtype " + std::string(shm::DTypeName(dtype_)) +
                   ", not " + py::str(values.dtype()).cast<std::string>());
    }
    if (have != shape && have != sliced) {
      RaiseInvalid("values of shape " + shm::ShapeToString(have) + " for a slice of shape " +
                   shm::ShapeToString(shape));
    }
    if (!(values.flags() & py::array::c_style)) RaiseInvalid("values must be C-contiguous");
    const char* data = static_cast<const char*>(values.data());
    std::string_view bytes(data, static_cast<size_t>(values.nbytes()));
    bound_.Run([&](shm::NdArray& arr) { return arr.WriteSlice(key.slice, bytes); },
               /*release_gil=*/true);
  }
  // The shape numpy gives `array[key]` (basic keys only: a key that can be written).
  std::vector<int64_t> SliceShape(const py::handle& key_arg) {
    ArrayKey key = ToBasicKey(key_arg);
    return key.ResultShape(SlicedShape(key));
  }
  void Fill(const py::handle& key_arg, const py::handle& value) {
    ArrayKey key = ToBasicKey(key_arg);
    shm::Scalar scalar = ToScalar(value, "value");
    bound_.Run([&](shm::NdArray& arr) { return arr.Fill(key.slice, scalar); }, true);
  }
  py::object Atomic(const py::handle& op, const py::handle& index, const py::handle& value,
                    const py::handle& expected) {
    shm::AtomicOp parsed;
    Check(shm::ParseAtomicOp(ToText(op, "op"), &parsed));
    std::vector<int64_t> idx = ToElementIndex(index);
    shm::Scalar v = ToScalar(value, "value");
    shm::Scalar e = expected.is_none() ? shm::Scalar() : ToScalar(expected, "expected");
    shm::Scalar old;
    bool swapped = true;
    bound_.Run([&](shm::NdArray& arr) {
      Status s = arr.Atomic(parsed, idx, v, e, &old);
      if (parsed == shm::AtomicOp::kCas && s.IsConflict()) {
        swapped = false;
        return Status::OK();
      }
      return s;
    });
    if (parsed == shm::AtomicOp::kCas) return py::make_tuple(swapped, FromScalar(old));
    return FromScalar(old);
  }
  void Apply(const py::handle& op, const py::handle& key_arg, const py::handle& value) {
    shm::ArrayOp parsed;
    Check(shm::ParseArrayOp(ToText(op, "op"), &parsed));
    ArrayKey key = ToBasicKey(key_arg);
    shm::Scalar scalar = ToScalar(value, "value");
    bound_.Run([&](shm::NdArray& arr) { return arr.Apply(parsed, key.slice, scalar); }, true);
  }
  uint64_t Version() {
    shm::ArrayInfo info;
    bound_.Run([&](shm::NdArray& arr) { return arr.Info(&info); });
    return info.version;
  }
  py::dtype dtype() const { return NumpyDType(dtype_); }
  py::tuple shape() const {
    py::tuple t(shape_.size());
    for (size_t i = 0; i < shape_.size(); ++i) t[i] = shape_[i];
    return t;
  }
  const std::string& name() const { return name_; }

 private:
  // A key that selects elements in place (writes, fills): advanced indexing makes a copy in
  // numpy, so writing through it would change nothing there and is refused here.
  static ArrayKey ToBasicKey(const py::handle& key_arg) {
    ArrayKey key = ToArrayKey(key_arg);
    if (key.advanced) {
      RaiseInvalid("an index with " + key.advanced_form +
                   " (numpy's advanced indexing) selects a copy: it can be read, not written; "
                   "write with integers, slices, ... and None");
    }
    return key;
  }
  std::vector<int64_t> SlicedShape(const ArrayKey& key) {
    std::vector<int64_t> shape;
    bound_.Run([&](shm::NdArray& arr) { return arr.SliceShape(key.slice, &shape); });
    return shape;
  }
  py::object ReadAdvanced(const py::handle& key_arg) {
    py::object whole = Read(py::tuple());
    PyObject* result = PyObject_GetItem(whole.ptr(), key_arg.ptr());
    if (result == nullptr) RaisePending("index");
    return py::reinterpret_steal<py::object>(result);
  }

  std::string name_;
  Bound<shm::NdArray> bound_;
  shm::DType dtype_ = shm::DType::kFloat64;
  std::vector<int64_t> shape_;
};

void CheckMatches(const PyArray& array, const std::optional<shm::DType>& dtype,
                  const std::optional<std::vector<int64_t>>& shape) {
  if (!dtype) return;
  std::string have = py::str(array.dtype().attr("name"));
  std::string want = std::string(shm::DTypeName(*dtype));
  py::tuple want_shape = py::cast(*shape);
  if (have != want || !array.shape().equal(want_shape)) {
    Raise(Status::AlreadyExists("array '" + array.name() + "' exists as " + have + " " +
                                std::string(py::str(array.shape())) + ", not " + want + " " +
                                std::string(py::str(want_shape))));
  }
}

}  // namespace

// Opens an existing array, or creates one when dtype and shape are given. Opening checks a
// given dtype/shape against the array's (InvalidArgument on a mismatch).
py::object NewArray(const std::shared_ptr<Attachment>& attachment, const py::handle& name_arg,
                    const py::handle& dtype_arg, const py::handle& shape_arg,
                    const py::handle& fill) {
  std::string name = ToText(name_arg, "name");
  if (dtype_arg.is_none() != shape_arg.is_none()) {
    RaiseInvalid("give both dtype and shape to create an array, or neither");
  }
  std::optional<shm::DType> dtype;
  std::optional<std::vector<int64_t>> shape;
  if (!dtype_arg.is_none()) {
    dtype = ToDType(dtype_arg);
    shape = ToShape(shape_arg);
  }
  shm::Scalar fill_value = fill.is_none() ? shm::Scalar::Int(0) : ToScalar(fill, "fill");
  auto array = std::make_shared<PyArray>(attachment, name, [=](shm::Segment* seg, shm::NdArray* a) {
    Status s = shm::NdArray::Open(seg, name, a);
    if (s.IsNotFound() && dtype) {
      s = shm::NdArray::Create(seg, name, *dtype, *shape, fill_value, a);
      if (s.IsAlreadyExists()) s = shm::NdArray::Open(seg, name, a);  // Lost a race.
    }
    return s;
  });
  CheckMatches(*array, dtype, shape);
  return py::cast(array);
}
// `values`: a numpy array or anything numpy.asarray takes; copied in C order, native byte
// order.
py::object NewArrayFromNumpy(const std::shared_ptr<Attachment>& attachment,
                             const py::handle& name_arg, const py::handle& values_arg) {
  std::string name = ToText(name_arg, "name");
  py::module_ np = py::module_::import("numpy");
  PyObject* converted = PyObject_CallOneArg(np.attr("ascontiguousarray").ptr(), values_arg.ptr());
  if (converted == nullptr) RaisePending("values");
  py::array values = py::reinterpret_steal<py::array>(converted);
  shm::ArrayData data;
  Check(shm::ParseDType(values.dtype().attr("name").cast<std::string>(), &data.dtype));
  if (!values.dtype().equal(NumpyDType(data.dtype))) {  // Another byte order: swap to native.
    values = values.attr("astype")(NumpyDType(data.dtype));
  }
  data.shape.assign(values.shape(), values.shape() + values.ndim());
  data.bytes.assign(static_cast<const char*>(values.data()), static_cast<size_t>(values.nbytes()));
  return py::cast(std::make_shared<PyArray>(
      attachment, name,
      [name, data, created = std::make_shared<bool>(false)](shm::Segment* seg, shm::NdArray* a) {
        // Created once; a reopen after a move finds the copy the manager carried over.
        if (*created) return shm::NdArray::Open(seg, name, a);
        *created = true;
        return shm::NdArray::CreateFrom(seg, name, data, a);
      }));
}

void RegisterArray(py::module_& m) {
  using py::arg;
  py::class_<PyArray, std::shared_ptr<PyArray>>(m, "_Array")
      .def("read", &PyArray::Read, arg("key"))
      .def("write", &PyArray::Write, arg("key"), arg("values"))
      .def("slice_shape", &PyArray::SliceShape, arg("key"))
      .def("fill", &PyArray::Fill, arg("key"), arg("value"))
      .def("atomic", &PyArray::Atomic, arg("op"), arg("index"), arg("value"),
           arg("expected") = py::none())
      .def("apply", &PyArray::Apply, arg("op"), arg("key"), arg("value"))
      .def("version", &PyArray::Version)
      .def_property_readonly("dtype", &PyArray::dtype)
      .def_property_readonly("shape", &PyArray::shape)
      .def_property_readonly("name", &PyArray::name);
}

}  // namespace shmstate
