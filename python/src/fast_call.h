// Fast calls: the pieces of a CPython C-API method (METH_O / METH_FASTCALL) for the module's hot
// methods, so a call goes from the interpreter to the library with no pybind11 dispatch, no
// Python frame and no copy of its key or value.
//
// A fast method is installed on a pure-Python wrapper class (one with a __slots__ member holding
// the native pybind11 handle): NativeOf finds the handle, CppOf its C++ object, ParseArgs reads
// positional and keyword arguments, BytesArg and Int64Arg read them in place (anything else goes
// through convert.h: same messages, same errors as the pybind11 method), and Guarded turns the
// module's C++ exceptions into the shmstate exception. Call everything with the GIL held.
#ifndef SHMSTATE_PYTHON_FAST_CALL_H_
#define SHMSTATE_PYTHON_FAST_CALL_H_

#include <pybind11/pybind11.h>
#include <structmember.h>

#include <initializer_list>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>

#include "convert.h"
#include "errors.h"
#include "shm/status.h"

namespace shmstate {

// Runs fn() -> PyObject* (a new reference, or null with an error set) so that no C++ exception
// crosses the C API: the module's own become its Python exceptions.
template <class F>
PyObject* Guarded(F&& fn) noexcept {
  try {
    return fn();
  } catch (const StatusError& e) {
    SetStatusError(e.status);
  } catch (const TypeArgumentError& e) {
    SetInvalidTypeError(e.message);
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

// A key or value argument as bytes: viewed in place for bytes and ASCII str (whose UTF-8 is
// itself), else converted by convert.h (a copy, its errors). The view lives as long as the
// argument and this object.
class BytesArg {
 public:
  BytesArg(PyObject* h, bool key, const char* what) {
    if (PyBytes_CheckExact(h)) {
      view_ = std::string_view(PyBytes_AS_STRING(h), static_cast<size_t>(PyBytes_GET_SIZE(h)));
    } else if (key && PyUnicode_CheckExact(h) && PyUnicode_IS_COMPACT_ASCII(h)) {
      view_ = std::string_view(static_cast<const char*>(PyUnicode_DATA(h)),
                               static_cast<size_t>(PyUnicode_GET_LENGTH(h)));
    } else {
      copy_ = key ? ToKey(h, what) : ToBytes(h, what);
      view_ = copy_;
    }
  }
  BytesArg(const BytesArg&) = delete;
  BytesArg& operator=(const BytesArg&) = delete;
  std::string_view view() const { return view_; }

 private:
  std::string copy_;
  std::string_view view_;
};

// An int argument without a temporary; anything else through convert.h's ToInt64.
inline int64_t Int64Arg(PyObject* h, const char* what) {
  if (PyLong_CheckExact(h)) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(h, &overflow);
    if (overflow == 0 && !(v == -1 && PyErr_Occurred())) return v;
    PyErr_Clear();
  }
  return ToInt64(h, what);  // Its message for what the fast check did not take.
}

// Positional or keyword arguments `names` (the first `required` of them required) into out; the
// first `positional` of them may be given by position (-1: all). False with TypeError set.
inline bool ParseArgs(const char* fname, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
                      std::initializer_list<const char*> names, size_t required, PyObject** out,
                      Py_ssize_t positional = -1) {
  size_t n = names.size();
  size_t max_positional = positional < 0 ? n : static_cast<size_t>(positional);
  if (static_cast<size_t>(nargs) > max_positional) {
    PyErr_Format(PyExc_TypeError, "%s() takes at most %zu positional arguments (%zd given)", fname,
                 max_positional, nargs);
    return false;
  }
  for (size_t i = 0; i < n; ++i) out[i] = i < static_cast<size_t>(nargs) ? args[i] : nullptr;
  Py_ssize_t nkw = kwnames == nullptr ? 0 : PyTuple_GET_SIZE(kwnames);
  for (Py_ssize_t k = 0; k < nkw; ++k) {
    PyObject* kw = PyTuple_GET_ITEM(kwnames, k);
    size_t i = 0;
    while (i < n && PyUnicode_CompareWithASCIIString(kw, names.begin()[i]) != 0) ++i;
    if (i == n) {
      PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, kw);
      return false;
    }
    if (out[i] != nullptr) {
      PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%U'", fname, kw);
      return false;
    }
    out[i] = args[nargs + k];
  }
  for (size_t i = 0; i < required; ++i) {
    if (out[i] == nullptr) {
      PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names.begin()[i]);
      return false;
    }
  }
  return true;
}

// The object in the __slots__ member at `offset` of `self` (borrowed), or null with
// AttributeError when it is unset.
inline PyObject* SlotValue(PyObject* self, Py_ssize_t offset) {
  PyObject* value = *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(self) + offset);
  if (value == nullptr) PyErr_SetString(PyExc_AttributeError, "the handle is not initialised");
  return value;
}
// Stores a new reference to `value` in the __slots__ member at `offset` (None too).
inline void SetSlotValue(PyObject* self, Py_ssize_t offset, PyObject* value) {
  PyObject** field = reinterpret_cast<PyObject**>(reinterpret_cast<char*>(self) + offset);
  Py_INCREF(value);
  Py_XSETREF(*field, value);
}
// Stores True or False in the __slots__ member at `offset`, with no write when it holds it
// already (a lock's owner_died, set on every acquire).
inline void SetSlotBool(PyObject* self, Py_ssize_t offset, bool value) {
  PyObject* now = *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(self) + offset);
  PyObject* wanted = value ? Py_True : Py_False;
  if (now != wanted) SetSlotValue(self, offset, wanted);
}

// Calls self.<name>(*args, **kwnames): the Python method (`_<method>_slow`) a fast method stands
// in for when called in a form it does not take.
inline PyObject* Slow(PyObject* self, const char* name, PyObject* const* args, Py_ssize_t nargs,
                      PyObject* kwnames) {
  PyObject* fn = PyObject_GetAttrString(self, name);
  if (fn == nullptr) return nullptr;
  PyObject* result = PyObject_Vectorcall(fn, args, static_cast<size_t>(nargs), kwnames);
  Py_DECREF(fn);
  return result;
}

// The C++ object of a pybind11 instance of exactly `type`; null for anything else (a handle of
// the Redis backend, say: the caller then calls its Python method).
template <class T>
T* CppOf(PyObject* native, PyTypeObject* type) {
  if (Py_TYPE(native) != type) return nullptr;
  auto* inst = reinterpret_cast<py::detail::instance*>(native);
  return inst->get_value_and_holder().value_ptr<T>();
}

template <class F>
PyCFunction AsCFunction(F* fn) {
  return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fn));
}

// The offset of the __slots__ member `name` of the Python class `cls`.
inline Py_ssize_t SlotOffset(const py::handle& cls, const char* name) {
  PyObject* member =
      PyDict_GetItemString(reinterpret_cast<PyTypeObject*>(cls.ptr())->tp_dict, name);
  if (member == nullptr || Py_TYPE(member) != &PyMemberDescr_Type) {
    throw py::type_error(std::string("no __slots__ member ") + name);
  }
  PyMemberDef* def = reinterpret_cast<PyMemberDescrObject*>(member)->d_member;
  if (def->type != T_OBJECT_EX) throw py::type_error(std::string("not an object slot: ") + name);
  return def->offset;
}

// The offset of the __slots__ member `name` of `cls` or of a class it derives from.
inline Py_ssize_t InheritedSlotOffset(const py::handle& cls, const char* name) {
  py::object member = py::getattr(cls, name);  // On the class: the member descriptor itself.
  if (Py_TYPE(member.ptr()) != &PyMemberDescr_Type) {
    throw py::type_error(std::string("no __slots__ member ") + name);
  }
  PyMemberDef* def = reinterpret_cast<PyMemberDescrObject*>(member.ptr())->d_member;
  if (def->type != T_OBJECT_EX) throw py::type_error(std::string("not an object slot: ") + name);
  return def->offset;
}

// Replaces the methods `defs` (ending with a null name) of `cls` with C-API method descriptors.
inline void InstallMethods(const py::handle& cls, PyMethodDef* defs) {
  auto* type = reinterpret_cast<PyTypeObject*>(cls.ptr());
  for (PyMethodDef* def = defs; def->ml_name != nullptr; ++def) {
    py::object descr = py::reinterpret_steal<py::object>(PyDescr_NewMethod(type, def));
    if (!descr) throw py::error_already_set();
    py::setattr(cls, def->ml_name, descr);
  }
}

// Points the subscript slots of the Python class `cls` (mp_subscript: x[k]; mp_ass_subscript,
// unless null: x[k] = v and del x[k]) straight at C functions, so the interpreter calls them
// without looking __getitem__/__setitem__ up by name and calling the method through a vectorcall
// (slot_mp_subscript). Call after InstallMethods of those names (assigning a dunder method resets
// its slot). The class's own type only: a subclass keeps the by-name dispatch.
inline void InstallSubscriptSlots(const py::handle& cls, binaryfunc get, objobjargproc set) {
  auto* type = reinterpret_cast<PyTypeObject*>(cls.ptr());
  if ((type->tp_flags & Py_TPFLAGS_HEAPTYPE) == 0 || type->tp_as_mapping == nullptr) {
    throw py::type_error("subscript slots of a class defined in Python only");
  }
  type->tp_as_mapping->mp_subscript = get;
  if (set != nullptr) type->tp_as_mapping->mp_ass_subscript = set;
  PyType_Modified(type);
}

// Replaces the property `def->name` of `cls` with a C-API getset descriptor.
inline void InstallGetSet(const py::handle& cls, PyGetSetDef* def) {
  py::object descr = py::reinterpret_steal<py::object>(
      PyDescr_NewGetSet(reinterpret_cast<PyTypeObject*>(cls.ptr()), def));
  if (!descr) throw py::error_already_set();
  py::setattr(cls, def->name, descr);
}

// Calls the Python function `fn` as the method of `self` with a vectorcall's arguments.
inline PyObject* CallPython(PyObject* fn, PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                            PyObject* kwnames) {
  constexpr Py_ssize_t kMax = 8;
  Py_ssize_t total = nargs + (kwnames == nullptr ? 0 : PyTuple_GET_SIZE(kwnames));
  if (total >= kMax) {
    PyErr_SetString(PyExc_TypeError, "too many arguments");
    return nullptr;
  }
  PyObject* all[kMax];
  all[0] = self;
  for (Py_ssize_t i = 0; i < total; ++i) all[i + 1] = args[i];
  return PyObject_Vectorcall(fn, all, static_cast<size_t>(nargs + 1), kwnames);
}

// A new reference to the function `name` of the Python class `cls` (the method a descriptor
// replaces, for handles of another backend).
inline PyObject* PythonMethod(const py::handle& cls, const char* name) {
  PyObject* fn = PyDict_GetItemString(reinterpret_cast<PyTypeObject*>(cls.ptr())->tp_dict, name);
  if (fn == nullptr || !PyFunction_Check(fn)) {
    throw py::type_error(std::string("no Python method ") + name);
  }
  Py_INCREF(fn);
  return fn;
}

}  // namespace shmstate

#endif  // SHMSTATE_PYTHON_FAST_CALL_H_
