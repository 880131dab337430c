// The module's exception classes (errors.h) and the translation of its C++ exceptions.
#include "errors.h"

#include <exception>
#include <string>
#include <string_view>

#include "convert.h"

namespace py = pybind11;
using shm::Status;

namespace shmstate {
namespace {

struct Exceptions {
  py::object error, not_found, already_exists, wrong_kind, invalid_argument, invalid_type, conflict,
      full, timeout, unavailable, internal;
};
Exceptions* g_exceptions = nullptr;  // Created once at import; lives as long as the module.

py::object NewException(py::module_& m, const char* name, py::tuple bases, const char* doc) {
  std::string qualified = std::string("shmstate.") + name;
  PyObject* type = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, bases.ptr(), nullptr);
  if (type == nullptr) throw py::error_already_set();
  py::object result = py::reinterpret_steal<py::object>(type);
  m.attr(name) = result;
  return result;
}

// Sets `type` raised with `message`, its `code` attribute `code`; a failure to build it leaves
// that failure's error set instead.
void SetError(const py::object& type, std::string_view message, std::string_view code) {
  try {
    py::object value = type(MessageText(message));
    value.attr("code") = std::string(code);
    PyErr_SetObject(type.ptr(), value.ptr());
  } catch (py::error_already_set& e) {
    e.restore();
  }
}

}  // namespace

const py::object& ExceptionFor(Status::Code code) {
  Exceptions& e = *g_exceptions;
  switch (code) {
    case Status::Code::kNotFound:
      return e.not_found;
    case Status::Code::kAlreadyExists:
      return e.already_exists;
    case Status::Code::kWrongType:
      return e.wrong_kind;
    case Status::Code::kInvalidArgument:
      return e.invalid_argument;
    case Status::Code::kConflict:
      return e.conflict;
    case Status::Code::kOutOfSpace:
      return e.full;
    case Status::Code::kTimeout:
      return e.timeout;
    case Status::Code::kPoisoned:
      return e.unavailable;
    case Status::Code::kInternal:
      return e.internal;
    case Status::Code::kOk:
      break;
  }
  return e.error;
}

void SetStatusError(const Status& status) {
  SetError(ExceptionFor(status.code()), status.message(), status.CodeName());
}

void SetInvalidTypeError(std::string_view message) {
  SetError(g_exceptions->invalid_type, message, Status::InvalidArgument("").CodeName());
}

void RegisterErrors(py::module_& m) {
  static Exceptions exceptions;
  g_exceptions = &exceptions;
  py::handle exc = PyExc_Exception;
  exceptions.error = NewException(m, "Error", py::make_tuple(exc),
                                  "Base of every shmstate error; `code` names the library status.");
  auto sub = [&](const char* name, PyObject* builtin, const char* doc) {
    py::tuple bases = builtin ? py::make_tuple(exceptions.error, py::handle(builtin))
                              : py::make_tuple(exceptions.error);
    return NewException(m, name, bases, doc);
  };
  exceptions.not_found = sub("NotFound", PyExc_KeyError, "No such object, key or item.");
  exceptions.already_exists = sub("AlreadyExists", nullptr, "It exists already.");
  exceptions.wrong_kind =
      sub("WrongKind", PyExc_TypeError, "The name belongs to an object of another kind.");
  exceptions.invalid_argument =
      sub("InvalidArgument", PyExc_ValueError, "A bad name, value, index or option.");
  exceptions.invalid_type = NewException(
      m, "InvalidType", py::make_tuple(exceptions.invalid_argument, py::handle(PyExc_TypeError)),
      "An argument of the wrong Python type (an InvalidArgument that is also a TypeError).");
  exceptions.conflict = sub("Conflict", nullptr, "A compare-and-set or lease conflict.");
  exceptions.full = sub("Full", nullptr, "The segment, the object or the intent slots are full.");
  exceptions.timeout =
      sub("Timeout", PyExc_TimeoutError, "A lock or wait ran out of time; retrying may succeed.");
  exceptions.unavailable =
      sub("Unavailable", nullptr, "The server stopped or is moving its state; attach again.");
  exceptions.internal = sub("Internal", nullptr, "A bug or an unexpected system error.");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusError& e) {
      SetStatusError(e.status);
    } catch (const TypeArgumentError& e) {
      SetInvalidTypeError(e.message);
    }
  });
}

}  // namespace shmstate
