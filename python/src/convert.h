// Converters: the one place a Python argument becomes a C++ value for the _shmstate bindings.
//
// Every binding takes its arguments as py::handle and converts each with one of these, naming
// the parameter, so that no argument reaches the library unchecked and no Python or C++
// exception other than the module's own escapes: a value of the wrong Python type raises
// TypeArgumentError (shmstate.InvalidType, also a TypeError), a value of the right type but out
// of range raises StatusError(InvalidArgument) (shmstate.InvalidArgument, also a ValueError).
// Nothing here touches a segment. Call with the GIL held.
#ifndef SHMSTATE_PYTHON_CONVERT_H_
#define SHMSTATE_PYTHON_CONVERT_H_

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "shm/dict.h"
#include "shm/list.h"
#include "shm/ndarray.h"
#include "shm/slice.h"
#include "shm/status.h"

namespace shmstate {

namespace py = pybind11;

// --- Errors the module translates into its exception classes
// ---------------------------------------

// A library status, raised as the shmstate exception of its code.
struct StatusError {
  shm::Status status;
};
// An argument of the wrong Python type, raised as shmstate.InvalidType.
struct TypeArgumentError {
  std::string message;
};

[[noreturn]] inline void Raise(const shm::Status& status) { throw StatusError{status}; }
inline void Check(const shm::Status& status) {
  if (!status.ok()) Raise(status);
}
[[noreturn]] inline void RaiseInvalid(const std::string& message) {
  Raise(shm::Status::InvalidArgument(message));
}
[[noreturn]] inline void RaiseType(const std::string& message) { throw TypeArgumentError{message}; }

// The Python type name of h ("int", "numpy.ndarray"), for messages.
inline std::string TypeName(py::handle h) {
  PyTypeObject* type = Py_TYPE(h.ptr());
  return type->tp_name != nullptr ? type->tp_name : "?";
}

// Turns the pending Python exception (from a Python API call made on an argument) into the
// module's: a TypeError is a wrong type, anything else (ValueError, OverflowError, numpy's
// IndexError, ...) an invalid argument. `context` prefixes the message.
[[noreturn]] inline void RaisePending(const std::string& context) {
  py::error_already_set e;
  std::string message = context + ": " + py::str(e.value()).cast<std::string>();
  if (e.matches(PyExc_TypeError)) RaiseType(message);
  if (!e.matches(PyExc_Exception)) throw e;  // KeyboardInterrupt, SystemExit: not ours to map.
  RaiseInvalid(message);
}

// A message as str; bytes that are not UTF-8 (an argument quoted in it) are escaped.
inline py::str MessageText(std::string_view message) {
  PyObject* text = PyUnicode_DecodeUTF8(message.data(), static_cast<Py_ssize_t>(message.size()),
                                        "backslashreplace");
  if (text == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(text);
}

// --- numpy, when the caller uses it
// ------------------------------------------------------------------

// numpy's types, or null members when numpy was never imported in this process (then no
// argument can be a numpy object, and the module does not import numpy for nothing).
struct NumpyTypes {
  py::handle bool_, integer, floating, ndarray;
  bool loaded() const { return ndarray.ptr() != nullptr; }
};
inline const NumpyTypes& Numpy() {
  static NumpyTypes types;  // Set once under the GIL; the module objects live forever.
  if (!types.loaded()) {
    PyObject* numpy = PyImport_GetModule(py::str("numpy").ptr());
    if (numpy == nullptr) {
      PyErr_Clear();
      return types;
    }
    py::module_ np = py::reinterpret_steal<py::module_>(numpy);
    types.bool_ = py::object(np.attr("bool_")).release();
    types.integer = py::object(np.attr("integer")).release();
    types.floating = py::object(np.attr("floating")).release();
    types.ndarray = py::object(np.attr("ndarray")).release();
  }
  return types;
}
inline bool IsInstance(py::handle h, py::handle type) {
  if (type.ptr() == nullptr) return false;
  int is = PyObject_IsInstance(h.ptr(), type.ptr());
  if (is < 0) PyErr_Clear();  // A hostile __class__: not a numpy object.
  return is == 1;
}
inline bool IsBool(py::handle h) { return PyBool_Check(h.ptr()) || IsInstance(h, Numpy().bool_); }
inline bool IsNdarray(py::handle h) { return IsInstance(h, Numpy().ndarray); }

// --- Integers
// -------------------------------------------------------------------------------------

// An integer argument: int or anything with __index__ (numpy integers, 0-d integer arrays),
// not bool (True as a count or an index is a bug, and numpy reads it as a mask). Returns a
// Python int.
inline py::int_ ToPyInt(py::handle h, const char* what) {
  if (IsBool(h)) RaiseType(std::string(what) + " must be an integer, not bool");
  if (PyLong_Check(h.ptr())) return py::reinterpret_borrow<py::int_>(h);
  if (!PyIndex_Check(h.ptr())) {
    RaiseType(std::string(what) + " must be an integer, not " + TypeName(h));
  }
  PyObject* index = PyNumber_Index(h.ptr());
  if (index == nullptr) RaisePending(what);
  return py::reinterpret_steal<py::int_>(index);
}

inline int64_t ToInt64(py::handle h, const char* what,
                       int64_t min = std::numeric_limits<int64_t>::min(),
                       int64_t max = std::numeric_limits<int64_t>::max()) {
  py::int_ value = ToPyInt(h, what);
  int overflow = 0;
  long long v = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
  if (v == -1 && PyErr_Occurred()) RaisePending(what);
  if (overflow != 0 || v < min || v > max) {
    RaiseInvalid(std::string(what) + " must be in [" + std::to_string(min) + ", " +
                 std::to_string(max) + "], not " + py::str(value).cast<std::string>());
  }
  return v;
}

inline uint64_t ToUInt64(py::handle h, const char* what,
                         uint64_t max = std::numeric_limits<uint64_t>::max()) {
  py::int_ value = ToPyInt(h, what);
  unsigned long long v = 0;
  bool in_range = PyObject_RichCompareBool(value.ptr(), py::int_(0).ptr(), Py_GE) == 1;
  if (in_range) {
    v = PyLong_AsUnsignedLongLong(value.ptr());
    if (PyErr_Occurred()) {
      PyErr_Clear();
      in_range = false;
    }
  }
  if (!in_range || v > max) {
    RaiseInvalid(std::string(what) + " must be in [0, " + std::to_string(max) + "], not " +
                 py::str(value).cast<std::string>());
  }
  return v;
}

// --- Times
// ----------------------------------------------------------------------------------------

// A real number (int, float, numpy integer or floating, bool): seconds, a fill value's float.
// Ints too large for a double become +-inf. NaN is returned as is.
inline double ToDouble(py::handle h, const char* what) {
  if (PyFloat_Check(h.ptr())) return PyFloat_AS_DOUBLE(h.ptr());
  if (IsBool(h)) return PyObject_IsTrue(h.ptr()) == 1 ? 1.0 : 0.0;
  if (PyLong_Check(h.ptr())) {
    double d = PyLong_AsDouble(h.ptr());
    if (d == -1.0 && PyErr_Occurred()) {
      PyErr_Clear();  // OverflowError: beyond any double.
      return PyObject_RichCompareBool(h.ptr(), py::int_(0).ptr(), Py_LT) == 1
                 ? -std::numeric_limits<double>::infinity()
                 : std::numeric_limits<double>::infinity();
    }
    return d;
  }
  const NumpyTypes& np = Numpy();
  if (IsInstance(h, np.integer)) return ToDouble(ToPyInt(h, what), what);
  if (IsInstance(h, np.floating)) {
    double d = PyFloat_AsDouble(h.ptr());
    if (d == -1.0 && PyErr_Occurred()) RaisePending(what);
    return d;
  }
  RaiseType(std::string(what) + " must be a number, not " + TypeName(h));
}

// A time to live in seconds (positive, at most ~100 years) as milliseconds; None is 0 (no
// expiry) when allowed.
inline int64_t ToTtlMs(py::handle h, const char* what, bool none_is_no_expiry = true) {
  constexpr double kMaxSeconds = 100.0 * 365 * 24 * 3600;
  if (h.is_none() && none_is_no_expiry) return 0;
  double seconds = h.is_none() ? 0 : ToDouble(h, what);
  if (!(seconds > 0 && seconds <= kMaxSeconds)) {  // Also refuses NaN.
    RaiseInvalid(std::string(what) +
                 " must be a positive number of seconds (at most ~100 years), not " +
                 py::repr(h).cast<std::string>());
  }
  return std::max<int64_t>(1, static_cast<int64_t>(std::llround(seconds * 1000)));
}

// A wait in seconds (>= 0; NaN refused), clamped to `max`; None is `none`.
inline std::chrono::milliseconds ToWait(py::handle h, const char* what,
                                        std::chrono::milliseconds none,
                                        std::chrono::milliseconds max) {
  if (h.is_none()) return none;
  double seconds = ToDouble(h, what);
  if (!(seconds >= 0)) {
    RaiseInvalid(std::string(what) + " must be a number of seconds >= 0, not " +
                 py::repr(h).cast<std::string>());
  }
  double ms = std::min(seconds * 1000, static_cast<double>(max.count()));
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(ms)));
}

// --- Text and bytes
// -------------------------------------------------------------------------------

// Text: str (a lone surrogate is refused) or UTF-8 bytes. Names, modes, ids, JSON: what may
// come back to Python as str.
inline std::string ToText(py::handle h, const char* what) {
  if (PyBytes_Check(h.ptr())) {
    std::string bytes(py::reinterpret_borrow<py::bytes>(h));
    PyObject* decoded =
        PyUnicode_DecodeUTF8(bytes.data(), static_cast<Py_ssize_t>(bytes.size()), "strict");
    if (decoded == nullptr) {
      PyErr_Clear();
      RaiseInvalid(std::string(what) + " must be text: these bytes are not UTF-8");
    }
    Py_DECREF(decoded);
    return bytes;
  }
  if (!PyUnicode_Check(h.ptr())) {
    RaiseType(std::string(what) + " must be str, not " + TypeName(h));
  }
  Py_ssize_t size = 0;
  const char* data = PyUnicode_AsUTF8AndSize(h.ptr(), &size);
  if (data == nullptr) {
    PyErr_Clear();
    RaiseInvalid(std::string(what) + " must be valid text (it holds a lone surrogate)");
  }
  return std::string(data, static_cast<size_t>(size));
}

// Any object with the buffer protocol, copied (a non-contiguous buffer is gathered in C order).
// Returns false when h has no buffer.
inline bool CopyBuffer(py::handle h, std::string* out) {
  if (PyBytes_Check(h.ptr())) {
    *out = std::string(py::reinterpret_borrow<py::bytes>(h));
    return true;
  }
  if (!PyObject_CheckBuffer(h.ptr())) return false;
  Py_buffer view;
  if (PyObject_GetBuffer(h.ptr(), &view, PyBUF_FULL_RO) != 0) {
    PyErr_Clear();  // E.g. numpy's object arrays, a released memoryview.
    return false;
  }
  out->assign(static_cast<size_t>(view.len), '\0');
  int copied = PyBuffer_ToContiguous(out->data(), &view, view.len, 'C');
  PyBuffer_Release(&view);
  if (copied != 0) {
    PyErr_Clear();
    return false;
  }
  return true;
}

// Values: any bytes-like object (bytes, bytearray, memoryview, array.array, numpy arrays).
inline std::string ToBytes(py::handle h, const char* what) {
  std::string bytes;
  if (CopyBuffer(h, &bytes)) return bytes;
  if (PyUnicode_Check(h.ptr())) {
    RaiseType(std::string(what) + " must be bytes: encode the str first (e.g. value.encode())");
  }
  RaiseType(std::string(what) + " must be bytes-like, not " + TypeName(h));
}

// Keys: bytes-like, or str as UTF-8 where lone surrogates U+DC80..U+DCFF stand for the bytes
// 0x80..0xFF (Python's "surrogateescape", as os.fsencode), so a key decoded that way round-trips.
inline std::string ToKey(py::handle h, const char* what) {
  if (PyUnicode_Check(h.ptr())) {
    PyObject* encoded = PyUnicode_AsEncodedString(h.ptr(), "utf-8", "surrogateescape");
    if (encoded == nullptr) {
      PyErr_Clear();
      RaiseInvalid(std::string(what) +
                   " must be valid text (it holds a surrogate other than U+DC80..U+DCFF)");
    }
    return std::string(py::reinterpret_steal<py::bytes>(encoded));
  }
  std::string bytes;
  if (CopyBuffer(h, &bytes)) return bytes;
  RaiseType(std::string(what) + " must be bytes or str, not " + TypeName(h));
}

// --- Array values and indexes
// -----------------------------------------------------------------------

// A real scalar for an array: bool, int (int64 or uint64 range), float, numpy bool, integer or
// floating scalar, or a 0-d array of those. Complex, str, None, ... are refused.
inline shm::Scalar ToScalar(py::handle h, const char* what) {
  if (IsBool(h)) return shm::Scalar::Bool(PyObject_IsTrue(h.ptr()) == 1);
  if (PyFloat_Check(h.ptr())) return shm::Scalar::Float(PyFloat_AS_DOUBLE(h.ptr()));
  const NumpyTypes& np = Numpy();
  if (PyLong_Check(h.ptr()) || IsInstance(h, np.integer)) {
    py::int_ value = ToPyInt(h, what);
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
    if (overflow == 0 && !(v == -1 && PyErr_Occurred())) return shm::Scalar::Int(v);
    PyErr_Clear();
    unsigned long long u = PyLong_AsUnsignedLongLong(value.ptr());
    if (PyErr_Occurred()) {
      PyErr_Clear();
      RaiseInvalid(std::string(what) +
                   " is out of the int64/uint64 range: " + py::str(value).cast<std::string>());
    }
    return shm::Scalar::UInt(u);
  }
  if (IsInstance(h, np.floating)) return shm::Scalar::Float(ToDouble(h, what));
  if (IsNdarray(h)) {
    py::array array = py::reinterpret_borrow<py::array>(h);
    char kind = array.dtype().kind();
    if (array.ndim() == 0 && (kind == 'b' || kind == 'i' || kind == 'u' || kind == 'f')) {
      py::object scalar = array[py::tuple()];  // A numpy scalar: no further recursion.
      return ToScalar(scalar, what);
    }
  }
  RaiseType(std::string(what) + " must be a real number (bool, int, float or a numpy one), not " +
            TypeName(h));
}

// numpy's limit on the dimensions of an array (NPY_MAXDIMS in numpy 1.x).
inline constexpr size_t kNumpyMaxDims = 32;

// An array key as numpy reads it. Basic indexing (integers, slices, `...`, None) becomes a
// library Slice plus the positions of the new axes; anything numpy treats as advanced indexing
// (integer arrays, lists, boolean masks, a bool) is only flagged: it selects a copy, which the
// binding makes with numpy itself.
struct ArrayKey {
  enum class Item { kIndex, kRange, kEllipsis, kNewAxis };
  shm::Slice slice;         // The items other than None, in order.
  std::vector<Item> items;  // Every item, in order (for the result's shape).
  bool advanced = false;
  std::string advanced_form;  // E.g. "a boolean mask", for messages.

  // The shape numpy gives: the library's `sliced` shape with a 1 for each None.
  std::vector<int64_t> ResultShape(const std::vector<int64_t>& sliced) const {
    size_t ranges = 0;
    bool ellipsis = false;
    for (Item item : items) {
      ranges += item == Item::kRange;
      ellipsis = ellipsis || item == Item::kEllipsis;
    }
    // The axes that "..." (or the implicit trailing full ranges) leave.
    size_t rest = sliced.size() - ranges;
    std::vector<int64_t> out;
    size_t next = 0;
    for (Item item : items) {
      if (item == Item::kNewAxis) {
        out.push_back(1);
      } else if (item == Item::kRange) {
        out.push_back(sliced[next++]);
      } else if (item == Item::kEllipsis) {
        for (size_t k = 0; k < rest; ++k) out.push_back(sliced[next++]);
      }
    }
    while (next < sliced.size()) out.push_back(sliced[next++]);
    if (out.size() > kNumpyMaxDims) {
      RaiseInvalid("the index gives " + std::to_string(out.size()) +
                   " dimensions; numpy allows at most " + std::to_string(kNumpyMaxDims));
    }
    return out;
  }
};

// What numpy would make of one item of a key that is not a tuple.
inline void AddKeyItem(py::handle item, ArrayKey* key) {
  auto advanced = [&](const char* form) {
    if (!key->advanced) key->advanced_form = form;
    key->advanced = true;
  };
  if (item.is_none()) {
    key->items.push_back(ArrayKey::Item::kNewAxis);
  } else if (item.ptr() == Py_Ellipsis) {
    key->items.push_back(ArrayKey::Item::kEllipsis);
    key->slice.Ellipsis();
  } else if (PySlice_Check(item.ptr())) {
    Py_ssize_t start = 0, stop = 0, step = 0;
    // Python's own clamping of the bounds (as numpy does), None replaced by the ends.
    if (PySlice_Unpack(item.ptr(), &start, &stop, &step) != 0) RaisePending("slice");
    key->items.push_back(ArrayKey::Item::kRange);
    key->slice.Range(start, stop, step);
  } else if (IsBool(item)) {
    advanced("a bool (a 0-d boolean mask)");
  } else if (PyLong_Check(item.ptr()) ||
             (PyIndex_Check(item.ptr()) && !IsNdarray(item) && !PySequence_Check(item.ptr()))) {
    py::int_ value = ToPyInt(item, "index");
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
    if (overflow != 0) {
      RaiseInvalid("index " + py::str(value).cast<std::string>() + " is out of bounds");
    }
    key->items.push_back(ArrayKey::Item::kIndex);
    key->slice.Index(v);
  } else if (IsNdarray(item)) {
    py::array array = py::reinterpret_borrow<py::array>(item);
    char kind = array.dtype().kind();
    if (array.ndim() == 0 && (kind == 'i' || kind == 'u')) {
      py::object scalar = array[py::tuple()];  // numpy reads a 0-d integer array as an integer.
      AddKeyItem(scalar, key);
    } else {
      advanced(kind == 'b' ? "a boolean mask" : "an integer array");
    }
  } else if (PyUnicode_Check(item.ptr()) || PyBytes_Check(item.ptr())) {
    RaiseType("an index cannot be " + TypeName(item) +
              ": numpy takes integers, slices, ..., None and integer or boolean arrays");
  } else if (PySequence_Check(item.ptr()) || py::hasattr(item, "__array__")) {
    advanced("a list or array-like of indices");
  } else {
    RaiseType("an index cannot be " + TypeName(item) +
              ": numpy takes integers, slices, ..., None and integer or boolean arrays");
  }
}

inline ArrayKey ToArrayKey(py::handle h) {
  ArrayKey key;
  if (PyTuple_Check(h.ptr())) {
    for (py::handle item : py::reinterpret_borrow<py::tuple>(h)) AddKeyItem(item, &key);
  } else {
    AddKeyItem(h, &key);
  }
  if (key.items.size() > kNumpyMaxDims * 2 + 1) {  // Cheap bound before any work on the shape.
    RaiseInvalid("too many indices: " + std::to_string(key.items.size()));
  }
  return key;
}

// One element's index for the atomics: an integer (1-d arrays) or a tuple/list of integers,
// negative counting from the end.
inline std::vector<int64_t> ToElementIndex(py::handle h) {
  std::vector<int64_t> index;
  auto add = [&index](py::handle i) {
    if (IsNdarray(i) && py::reinterpret_borrow<py::array>(i).ndim() != 0) {
      RaiseType("an element index is an int or a tuple of ints, not an array");
    }
    int64_t v = ToInt64(i, "index");
    index.push_back(v);
  };
  if (PyTuple_Check(h.ptr()) || PyList_Check(h.ptr())) {
    if (PySequence_Size(h.ptr()) > static_cast<Py_ssize_t>(shm::kMaxDims)) {
      RaiseInvalid("an element index has at most " + std::to_string(shm::kMaxDims) + " items");
    }
    for (py::handle i : h) add(i);
  } else {
    add(h);
  }
  return index;
}

// An array shape: an integer or a sequence of integers (each >= 0: the library checks sizes).
inline std::vector<int64_t> ToShape(py::handle h) {
  std::vector<int64_t> shape;
  if (PyTuple_Check(h.ptr()) || PyList_Check(h.ptr())) {
    if (PySequence_Size(h.ptr()) > static_cast<Py_ssize_t>(shm::kMaxDims)) {
      RaiseInvalid("an array has 1 to " + std::to_string(shm::kMaxDims) + " dimensions");
    }
    for (py::handle d : h) shape.push_back(ToInt64(d, "shape item", 0));
  } else {
    shape.push_back(ToInt64(h, "shape", 0));
  }
  return shape;
}

// A dtype: its name ("float64") or anything numpy.dtype() takes (np.float64, float, a dtype).
inline shm::DType ToDType(py::handle h) {
  shm::DType parsed = shm::DType::kFloat64;
  std::string name;
  if (PyUnicode_Check(h.ptr())) {
    name = ToText(h, "dtype");
    if (shm::ParseDType(name, &parsed).ok()) return parsed;
  }
  if (!name.empty() || !PyUnicode_Check(h.ptr())) {  // "f8", np.float64, float: numpy's names.
    py::module_ np = py::module_::import("numpy");
    PyObject* dtype = PyObject_CallOneArg(np.attr("dtype").ptr(), h.ptr());
    if (dtype == nullptr) RaisePending("dtype");
    name = py::reinterpret_steal<py::object>(dtype).attr("name").cast<std::string>();
  }
  Check(shm::ParseDType(name, &parsed));
  return parsed;
}

// --- Object options and modes
// ---------------------------------------------------------------------------

// A dict's options when it is created: max_bytes, eviction "none" | "clock", default_ttl.
inline shm::DictOptions ToDictOptions(py::handle max_bytes, py::handle eviction_arg,
                                      py::handle default_ttl) {
  shm::DictOptions options;
  options.max_bytes = ToUInt64(max_bytes, "max_bytes");
  std::string eviction = ToText(eviction_arg, "eviction");
  if (eviction == "clock") {
    options.eviction = shm::DictEviction::kClock;
  } else if (eviction != "none") {
    Raise(shm::Status::InvalidArgument("eviction must be 'none' or 'clock'"));
  }
  options.default_ttl_ms = ToTtlMs(default_ttl, "default_ttl");
  return options;
}

inline shm::ListOptions ToListOptions(py::handle max_items, py::handle max_item_bytes) {
  shm::ListOptions options;
  options.max_items = ToUInt64(max_items, "max_items");
  options.max_item_bytes = ToUInt64(max_item_bytes, "max_item_bytes");
  return options;
}

// A dict write's mode: "set" | "add" | "replace".
inline shm::SetMode ToSetMode(py::handle h) {
  std::string mode = ToText(h, "mode");
  if (mode == "set") return shm::SetMode::kSet;
  if (mode == "add") return shm::SetMode::kAdd;
  if (mode == "replace") return shm::SetMode::kReplace;
  Raise(shm::Status::InvalidArgument("mode must be 'set', 'add' or 'replace'"));
}

// A list's end: "left" | "right".
inline shm::List::End ToListEnd(py::handle h) {
  std::string end = ToText(h, "end");
  if (end == "left") return shm::List::End::kLeft;
  if (end == "right") return shm::List::End::kRight;
  Raise(shm::Status::InvalidArgument("end must be 'left' or 'right'"));
}

// The other way: library values as Python objects.
inline py::bytes Bytes(const std::string& s) { return py::bytes(s.data(), s.size()); }

inline py::object FromScalar(const shm::Scalar& s) {
  switch (s.kind) {
    case shm::Scalar::Kind::kBool:
      return py::bool_(s.i != 0);
    case shm::Scalar::Kind::kInt:
      return py::int_(s.i);
    case shm::Scalar::Kind::kUInt:
      return py::int_(s.u);
    case shm::Scalar::Kind::kFloat:
      return py::float_(s.f);
  }
  return py::none();
}

}  // namespace shmstate

#endif  // SHMSTATE_PYTHON_CONVERT_H_
