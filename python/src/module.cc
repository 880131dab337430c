// _shmstate: the CPython extension behind the `shmstate` package. Every call goes straight to
// the library's proxies on the segment mapped in this process (no socket); the pure-Python
// package (python/shmstate/) adds the friendlier surface on top.
//
// Every binding takes its arguments as Python objects and converts each with convert.h before
// anything reaches the library, so a wrong argument is a shmstate.InvalidArgument (or
// InvalidType) and never a crash or a foreign exception (tests/python/test_argument_fuzz.py).
//
// Each handle runs its operations through Bound<Proxy>::Run, which brackets them with the
// segment's client gate (Attachment) and reopens the proxy by name when the server moved its
// state into a new generation. Blocking calls and array copies run without the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <boost/json.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "attachment.h"
#include "bound.h"
#include "convert.h"
#include "fast_call.h"
#include "method_tables.h"
#include "register_manager.h"
#include "register_sync.h"
#include "register_tx.h"
#include "shm/counter.h"
#include "shm/dict.h"
#include "shm/handle.h"
#include "shm/lease_lock.h"
#include "shm/limits.h"
#include "shm/list.h"
#include "shm/ndarray.h"
#include "shm/registry.h"
#include "shm/sessions.h"
#include "shm/slice.h"

namespace py = pybind11;
using shm::Status;

namespace shmstate {
namespace {

// --- Errors ------------------------------------------------------------------------------------

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

}  // namespace

void SetStatusError(const Status& status) {
  const py::object& type = ExceptionFor(status.code());
  try {
    py::object value = type(MessageText(status.message()));
    value.attr("code") = std::string(status.CodeName());
    PyErr_SetObject(type.ptr(), value.ptr());
  } catch (py::error_already_set& e) {
    e.restore();
  }
}

void SetInvalidTypeError(std::string_view message) {
  const py::object& type = g_exceptions->invalid_type;
  try {
    py::object value = type(MessageText(message));
    value.attr("code") = std::string(Status::InvalidArgument("").CodeName());
    PyErr_SetObject(type.ptr(), value.ptr());
  } catch (py::error_already_set& e) {
    e.restore();
  }
}

namespace {

// --- Conversions --------------------------------------------------------------------------------

// Argument conversions are in convert.h; these turn library values into Python ones.

py::bytes Bytes(const std::string& s) { return py::bytes(s.data(), s.size()); }

py::object FromScalar(const shm::Scalar& s) {
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

// --- Handles
// --------------------------------------------------------------------------------------

class PyCounter {
 public:
  PyCounter(std::shared_ptr<Attachment> a, std::string name, int64_t init, int64_t ttl_ms)
      : name_(name), bound_(std::move(a), [name, init, ttl_ms](shm::Segment* seg, shm::Counter* c) {
          shm::Counter::Options options;
          options.mode = shm::OpenMode::kCreateIfMissing;
          options.init = init;
          options.ttl_ms = ttl_ms;
          return shm::Counter::Open(seg, name, options, c);
        }) {}

  int64_t Incr(const py::handle& by_arg) {
    int64_t by = ToInt64(by_arg, "by");
    int64_t value = 0;
    bound_.Run([&](shm::Counter& c) { return c.Add(by, &value); });
    return value;
  }
  int64_t Value() {
    int64_t value = 0;
    bound_.Run([&](shm::Counter& c) { return c.Get(&value); });
    return value;
  }
  void Set(const py::handle& value_arg) {
    int64_t value = ToInt64(value_arg, "value");
    bound_.Run([&](shm::Counter& c) { return c.Set(value); });
  }
  bool Cas(const py::handle& expected_arg, const py::handle& desired_arg) {
    int64_t expected = ToInt64(expected_arg, "expected");
    int64_t desired = ToInt64(desired_arg, "value");
    bool swapped = false;
    bound_.Run([&](shm::Counter& c) {
      int64_t actual = 0;
      Status s = c.CompareAndSet(expected, desired, &actual);
      swapped = s.ok();
      return s.IsConflict() ? Status::OK() : s;
    });
    return swapped;
  }
  int64_t IncrFast(int64_t by) {
    int64_t value = 0;
    bound_.RunFast([&](shm::Counter& c) { return c.Add(by, &value); });
    return value;
  }
  int64_t ValueFast() {
    int64_t value = 0;
    bound_.RunFast([&](shm::Counter& c) { return c.Get(&value); });
    return value;
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  Bound<shm::Counter> bound_;
};

// The largest page of Dict keys one call returns.
constexpr uint64_t kMaxKeysPage = 100000;

class PyDict {
 public:
  PyDict(std::shared_ptr<Attachment> a, std::string name, const shm::DictOptions& options)
      : name_(name), bound_(std::move(a), [name, options](shm::Segment* seg, shm::Dict* d) {
          return shm::Dict::Open(seg, name, shm::OpenMode::kCreateIfMissing, options, d);
        }) {}

  // `absent` (None by default) when absent.
  py::object Get(const py::handle& key, const py::handle& absent) {
    std::string k = ToKey(key, "key");
    shm::DictValue value;
    bool found = false;
    bound_.Run([&](shm::Dict& d) {
      Status s = d.Get(k, &value);
      found = s.ok();
      return s.IsNotFound() ? Status::OK() : s;
    });
    if (!found) return py::reinterpret_borrow<py::object>(absent);
    return Bytes(value.data);
  }
  // (value, version, expires_at_ms) or None.
  py::object GetEntry(const py::handle& key) {
    std::string k = ToKey(key, "key");
    shm::DictValue value;
    bool found = false;
    bound_.Run([&](shm::Dict& d) {
      Status s = d.Get(k, &value);
      found = s.ok();
      return s.IsNotFound() ? Status::OK() : s;
    });
    if (!found) return py::none();
    return py::make_tuple(Bytes(value.data), value.version, value.expires_at_ms);
  }
  // mode "set" | "add" | "replace"; False when add/replace did not apply; version-checked with
  // if_version (False on a mismatch).
  bool Set(const py::handle& key, const py::handle& value, const py::handle& ttl,
           const py::handle& mode_arg, const py::handle& if_version) {
    std::string k = ToKey(key, "key");
    std::string v = ToBytes(value, "value");
    shm::SetOptions options;
    options.ttl_ms = ToTtlMs(ttl, "ttl");
    if (!if_version.is_none()) options.if_version = ToUInt64(if_version, "if_version");
    options.mode = ToSetMode(mode_arg);
    bool applied = true;
    bound_.Run([&](shm::Dict& d) {
      Status s = d.Set(k, v, options);
      if (s.IsAlreadyExists() || (s.IsNotFound() && options.mode == shm::SetMode::kReplace) ||
          (s.IsConflict() && options.if_version)) {
        applied = false;
        return Status::OK();
      }
      applied = s.ok();
      return s;
    });
    return applied;
  }
  bool Delete(const py::handle& key) {
    std::string k = ToKey(key, "key");
    bool deleted = false;
    bound_.Run([&](shm::Dict& d) {
      Status s = d.Delete(k);
      deleted = s.ok();
      return s.IsNotFound() ? Status::OK() : s;
    });
    return deleted;
  }
  int64_t Incr(const py::handle& key, const py::handle& by_arg, const py::handle& init_arg,
               const py::handle& ttl) {
    std::string k = ToKey(key, "key");
    int64_t by = ToInt64(by_arg, "by");
    int64_t init = ToInt64(init_arg, "init");
    int64_t ttl_ms = ToTtlMs(ttl, "ttl");
    int64_t result = 0;
    bound_.Run([&](shm::Dict& d) { return d.Incr(k, by, init, ttl_ms, &result); });
    return result;
  }
  // Writes `desired` only if the value is `expected` (None: only if absent).
  bool Cas(const py::handle& key, const py::handle& expected, const py::handle& desired) {
    std::string k = ToKey(key, "key");
    std::optional<std::string> want;
    if (!expected.is_none()) want = ToBytes(expected, "expected");
    std::string next = ToBytes(desired, "value");
    bool swapped = false;
    bound_.Run([&](shm::Dict& d) {
      return d.Update(k, [&](const shm::DictValue* current, shm::DictUpdate* update) {
        bool match = current == nullptr ? !want : (want && current->data == *want);
        swapped = match;
        update->write = match;
        if (match) {
          update->data = next;
          update->keep_expiry = current != nullptr;
          if (current != nullptr) update->content_type = current->content_type;
        }
        return Status::OK();
      });
    });
    return swapped;
  }
  // One page of keys: (keys, next_cursor); next_cursor 0 = done.
  py::tuple Keys(const py::handle& prefix_arg, const py::handle& cursor_arg,
                 const py::handle& limit_arg) {
    std::string prefix = ToKey(prefix_arg, "prefix");
    uint64_t cursor = ToUInt64(cursor_arg, "cursor");
    size_t limit = ToUInt64(limit_arg, "limit", kMaxKeysPage);
    std::vector<std::string> keys;
    uint64_t next = 0;
    bound_.Run([&](shm::Dict& d) { return d.ListKeys(prefix, limit, cursor, &keys, &next); });
    py::list out;
    for (const std::string& k : keys) out.append(Bytes(k));
    return py::make_tuple(out, next);
  }
  py::dict Stats() {
    shm::DictStats st;
    bound_.Run([&](shm::Dict& d) { return d.Stats(&st); });
    py::dict out;
    out["hits"] = st.hits;
    out["misses"] = st.misses;
    out["evictions"] = st.evictions;
    out["expirations"] = st.expirations;
    out["entries"] = st.entries;
    out["bytes"] = st.bytes;
    out["max_bytes"] = st.max_bytes;
    return out;
  }
  // The value as a new bytes, or null when absent (no Python error set then): built straight
  // from the segment's bytes, one copy. With `want_value` false, Py_True when present: the
  // presence alone, no copy.
  PyObject* GetFast(std::string_view key, bool want_value = true) {
    BytesReader reader(want_value);
    bool found = false;
    bound_.RunFast([&](shm::Dict& d) {
      Status s = d.Read(key, &reader);
      found = s.ok();
      return s.IsNotFound() || reader.failed() ? Status::OK() : s;
    });
    if (reader.failed()) throw py::error_already_set();  // Python's MemoryError.
    return found ? reader.release() : nullptr;
  }
  int64_t IncrFast(std::string_view key, int64_t by, int64_t init, int64_t ttl_ms) {
    int64_t result = 0;
    bound_.RunFast([&](shm::Dict& d) { return d.Incr(key, by, init, ttl_ms, &result); });
    return result;
  }
  // set(key, value): no ttl (the dict's default), mode "set".
  void SetFast(std::string_view key, std::string_view value) {
    shm::SetOptions options;
    options.ttl_ms = set_ttl_ms_;
    bound_.RunFast([&](shm::Dict& d) { return d.Set(key, value, options); });
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  Bound<shm::Dict> bound_;
  // GetFast's reader: the value as a new bytes (or Py_True when only presence is wanted). Takes
  // the GIL's protection from its caller.
  class BytesReader final : public shm::DictReader {
   public:
    explicit BytesReader(bool want_value) : want_value_(want_value) {}
    ~BytesReader() override { Py_XDECREF(result_); }
    BytesReader(const BytesReader&) = delete;
    BytesReader& operator=(const BytesReader&) = delete;

    Status Take(std::string_view data, std::string_view, uint64_t, int64_t) override {
      Py_CLEAR(result_);  // A disturbed read's copy.
      if (!want_value_) {
        result_ = Py_NewRef(Py_True);
        return Status::OK();
      }
      result_ = PyBytes_FromStringAndSize(data.data(), static_cast<Py_ssize_t>(data.size()));
      if (result_ != nullptr) return Status::OK();
      failed_ = true;
      return Status::OutOfSpace("no memory for the value");
    }
    bool failed() const { return failed_; }
    PyObject* release() { return std::exchange(result_, nullptr); }

   private:
    const bool want_value_;
    bool failed_ = false;
    PyObject* result_ = nullptr;
  };
  const int64_t set_ttl_ms_ = ToTtlMs(py::none(), "ttl");  // What Set makes of ttl=None.
};

// Blocking calls wait in slices this long, leaving the client gate between them so that a
// generation move never waits for a long poll, and Ctrl-C ends a long wait.
constexpr std::chrono::milliseconds kWaitSlice{100};

// Calls attempt(slice) -> bool (done) with slices of `total` until it is done (true) or the time
// is up (false). The first call has a slice of 0 when `total` is 0 (no wait at all).
template <class Attempt>
bool WaitInSlices(std::chrono::milliseconds total, Attempt&& attempt) {
  auto deadline = std::chrono::steady_clock::now() + total;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (attempt(std::clamp(left, std::chrono::milliseconds(0), kWaitSlice))) return true;
    if (left <= kWaitSlice) return false;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }
}

class PyList {
 public:
  PyList(std::shared_ptr<Attachment> a, std::string name, const shm::ListOptions& options)
      : name_(name), bound_(std::move(a), [name, options](shm::Segment* seg, shm::List* l) {
          return shm::List::Open(seg, name, shm::OpenMode::kCreateIfMissing, options, l);
        }) {}

  uint64_t Push(const py::handle& item, const py::handle& end) {
    std::string v = ToBytes(item, "item");
    shm::List::End e = ToListEnd(end);
    uint64_t length = 0;
    bound_.Run([&](shm::List& l) { return l.Push(e, v, &length); });
    return length;
  }
  py::object Pop(const py::handle& wait, const py::handle& end) {
    auto total = ToWait(wait, "wait", std::chrono::milliseconds(0), shm::List::kMaxWait);
    shm::List::End e = ToListEnd(end);
    std::string item;
    // One place in the list's line for the whole wait, across its slices (arrival order).
    shm::ListPlace place(std::chrono::steady_clock::now() + total);
    shm::ListPlace* line = total.count() > 0 ? &place : nullptr;
    bool got = WaitInSlices(total, [&](auto slice) {
      bool popped = false;
      bound_.Run([&](shm::List& l) { return l.Pop(e, slice, &item, &popped, line); },
                 /*release_gil=*/slice.count() > 0);
      return popped;
    });
    return got ? py::object(Bytes(item)) : py::object(py::none());
  }
  uint64_t Length() {
    uint64_t length = 0;
    bound_.Run([&](shm::List& l) { return l.Length(&length); });
    return length;
  }
  py::list Range(const py::handle& start_arg, const py::handle& stop_arg) {
    int64_t start = ToInt64(start_arg, "start");
    int64_t stop = ToInt64(stop_arg, "stop");
    std::vector<std::string> items;
    bound_.Run([&](shm::List& l) { return l.Range(start, stop, &items); });
    py::list out;
    for (const std::string& item : items) out.append(Bytes(item));
    return out;
  }
  uint64_t PushFast(shm::List::End end, std::string_view item) {
    uint64_t length = 0;
    bound_.RunFast([&](shm::List& l) { return l.Push(end, item, &length); });
    return length;
  }
  // pop() without a wait: the item as a new bytes, or null when the list is empty (no Python
  // error set then). The item lands in scratch_ (its buffer reused from call to call).
  PyObject* PopFast(shm::List::End end) {
    bool popped = false;
    bound_.RunFast([&](shm::List& l) {
      return l.Pop(end, std::chrono::milliseconds(0), &scratch_, &popped, nullptr);
    });
    if (!popped) return nullptr;
    PyObject* item =
        PyBytes_FromStringAndSize(scratch_.data(), static_cast<Py_ssize_t>(scratch_.size()));
    if (item == nullptr) throw py::error_already_set();
    return item;
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  Bound<shm::List> bound_;
  std::string scratch_;  // PopFast's; the GIL guards it.
};

class PyLock {
 public:
  PyLock(std::shared_ptr<Attachment> a, std::string name)
      : name_(name), bound_(std::move(a), [name](shm::Segment* seg, shm::LeaseLock* l) {
          return shm::LeaseLock::Open(seg, name, shm::OpenMode::kCreateIfMissing, l);
        }) {}

  // The token, or None when still held by someone else after `timeout` seconds.
  py::object Acquire(const py::handle& ttl, const py::handle& timeout,
                     const py::handle& owner_arg) {
    int64_t ttl_ms = ToTtlMs(ttl, "ttl", /*none_is_no_expiry=*/false);
    auto total = ToWait(timeout, "timeout", shm::LeaseLock::kMaxWait, shm::LeaseLock::kMaxWait);
    std::string owner = ToText(owner_arg, "owner");
    uint64_t token = 0;
    bool got = WaitInSlices(total, [&](auto slice) {
      bool held_by_other = false;
      bound_.Run(
          [&](shm::LeaseLock& l) {
            int64_t expires = 0;
            Status s = l.Acquire(ttl_ms, slice, owner, &token, &expires);
            held_by_other = s.IsConflict();
            return held_by_other ? Status::OK() : s;
          },
          /*release_gil=*/slice.count() > 0);
      return !held_by_other;
    });
    return got ? py::object(py::int_(token)) : py::object(py::none());
  }
  bool Release(const py::handle& token_arg) {
    uint64_t token = ToUInt64(token_arg, "token");
    bool released = false;
    bound_.Run([&](shm::LeaseLock& l) {
      Status s = l.Release(token);
      released = s.ok();
      return s.IsConflict() ? Status::OK() : s;
    });
    return released;
  }
  bool Refresh(const py::handle& token_arg, const py::handle& ttl) {
    uint64_t token = ToUInt64(token_arg, "token");
    int64_t ttl_ms = ToTtlMs(ttl, "ttl", /*none_is_no_expiry=*/false);
    bool refreshed = false;
    bound_.Run([&](shm::LeaseLock& l) {
      Status s = l.Refresh(token, ttl_ms);
      refreshed = s.ok();
      return s.IsConflict() ? Status::OK() : s;
    });
    return refreshed;
  }
  // Acquire's arguments, converted in its order; one try under the GIL without a wait first
  // (the lease is free: no GIL release), else Acquire itself. The token as an int, or None.
  PyObject* AcquireFast(PyObject* ttl, PyObject* timeout, PyObject* owner_arg) {
    int64_t ttl_ms = ToTtlMs(ttl, "ttl", /*none_is_no_expiry=*/false);
    auto total = ToWait(timeout, "timeout", shm::LeaseLock::kMaxWait, shm::LeaseLock::kMaxWait);
    if (!PyUnicode_CheckExact(owner_arg) || !PyUnicode_IS_COMPACT_ASCII(owner_arg)) {
      return Acquire(ttl, timeout, owner_arg).release().ptr();  // ToText's rules and errors.
    }
    std::string_view owner(static_cast<const char*>(PyUnicode_DATA(owner_arg)),
                           static_cast<size_t>(PyUnicode_GET_LENGTH(owner_arg)));
    uint64_t token = 0;
    bool held_by_other = false;
    bound_.RunFast([&](shm::LeaseLock& l) {
      int64_t expires = 0;
      Status s = l.Acquire(ttl_ms, std::chrono::milliseconds(0), owner, &token, &expires);
      held_by_other = s.IsConflict();
      return held_by_other ? Status::OK() : s;
    });
    if (!held_by_other) return PyLong_FromUnsignedLongLong(token);
    if (total.count() == 0) Py_RETURN_NONE;
    return Acquire(ttl, timeout, owner_arg).release().ptr();
  }
  bool ReleaseFast(PyObject* token_arg) {
    uint64_t token = ToUInt64(token_arg, "token");
    bool released = false;
    bound_.RunFast([&](shm::LeaseLock& l) {
      Status s = l.Release(token);
      released = s.ok();
      return s.IsConflict() ? Status::OK() : s;
    });
    return released;
  }
  py::dict Info() {
    shm::LeaseInfo info;
    bound_.Run([&](shm::LeaseLock& l) { return l.Get(&info); });
    py::dict out;
    out["held"] = info.held;
    out["owner"] = info.owner;
    out["expires_at_ms"] = info.expires_at_ms;
    out["remaining_ms"] = info.remaining_ms;
    out["acquisitions"] = info.acquisitions;
    return out;
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  Bound<shm::LeaseLock> bound_;
};

// Sessions speak JSON text; the Python layer turns it into dicts.
class PySessions {
 public:
  PySessions(std::shared_ptr<Attachment> a, std::string name, int64_t idle_ms)
      : name_(name), bound_(std::move(a), [name, idle_ms](shm::Segment* seg, shm::Sessions* s) {
          return shm::Sessions::Open(seg, name, shm::OpenMode::kCreateIfMissing, idle_ms, s);
        }) {}

  std::string Create(const py::handle& json) {
    boost::json::object session = ParseObject(ToText(json, "json"));
    std::string id;
    Check(shm::Sessions::NewId(&id));
    bound_.Run([&](shm::Sessions& s) { return s.Put(id, session); });
    return id;
  }
  // JSON text, or None.
  py::object Get(const py::handle& id_arg) {
    std::string id = ToText(id_arg, "sid");
    boost::json::object session;
    bool found = false;
    bound_.Run([&](shm::Sessions& s) {
      Status st = s.Get(id, &session);
      found = st.ok();
      return st.IsNotFound() ? Status::OK() : st;
    });
    if (!found) return py::none();
    return py::str(boost::json::serialize(session));
  }
  void Put(const py::handle& id_arg, const py::handle& json) {
    std::string id = ToText(id_arg, "sid");
    boost::json::object session = ParseObject(ToText(json, "json"));
    bound_.Run([&](shm::Sessions& s) { return s.Put(id, session); });
  }
  bool Delete(const py::handle& id_arg) {
    std::string id = ToText(id_arg, "sid");
    bool deleted = false;
    bound_.Run([&](shm::Sessions& s) {
      Status st = s.Delete(id);
      deleted = st.ok();
      return st.IsNotFound() ? Status::OK() : st;
    });
    return deleted;
  }
  void SetField(const py::handle& id_arg, const py::handle& field_arg, const py::handle& json) {
    std::string id = ToText(id_arg, "sid");
    std::string field = ToText(field_arg, "field");
    boost::json::value value = ParseValue(ToText(json, "json"));
    bound_.Run([&](shm::Sessions& s) { return s.SetField(id, field, value); });
  }
  bool EraseField(const py::handle& id_arg, const py::handle& field_arg) {
    std::string id = ToText(id_arg, "sid");
    std::string field = ToText(field_arg, "field");
    bool erased = false;
    bound_.Run([&](shm::Sessions& s) {
      Status st = s.EraseField(id, field);
      erased = st.ok();
      return st.IsNotFound() ? Status::OK() : st;
    });
    return erased;
  }
  int64_t Incr(const py::handle& id_arg, const py::handle& field_arg, const py::handle& by_arg) {
    std::string id = ToText(id_arg, "sid");
    std::string field = ToText(field_arg, "field");
    int64_t by = ToInt64(by_arg, "by");
    int64_t result = 0;
    bound_.Run([&](shm::Sessions& s) { return s.Incr(id, field, by, &result); });
    return result;
  }
  double idle_ttl() {
    int64_t ms = 0;
    bound_.Run([&](shm::Sessions& s) {
      ms = s.idle_ttl_ms();
      return Status::OK();
    });
    return static_cast<double>(ms) / 1000;
  }
  const std::string& name() const { return name_; }

 private:
  static boost::json::value ParseValue(const std::string& json) {
    boost::system::error_code ec;
    boost::json::value value = boost::json::parse(json, ec);
    if (ec) Raise(Status::InvalidArgument("not JSON: " + ec.message()));
    return value;
  }
  static boost::json::object ParseObject(const std::string& json) {
    boost::json::value value = ParseValue(json);
    if (!value.is_object()) Raise(Status::InvalidArgument("a session is a JSON object"));
    return std::move(value.as_object());
  }

  std::string name_;
  Bound<shm::Sessions> bound_;
};

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

// --- The attachment as Python sees it
// -------------------------------------------------------------

// How long an operation waits for the server's next generation by default, and at most.
constexpr std::chrono::milliseconds kDefaultFollow{10000};
constexpr std::chrono::milliseconds kMaxFollow = std::chrono::hours(24);

class PyClient {
 public:
  PyClient(const py::handle& name, const py::handle& follow_timeout) {
    std::string prefix = ToText(name, "name");
    auto ms = ToWait(follow_timeout, "follow_timeout", kDefaultFollow, kMaxFollow);
    Status attached;
    {
      py::gil_scoped_release release;  // It may wait for a rebuild (Attachment::Open).
      attached = Attachment::Shared(prefix, ms, &attachment_);
    }
    Check(attached);
  }

  std::shared_ptr<PyCounter> Counter(const py::handle& name, const py::handle& init,
                                     const py::handle& ttl) {
    return std::make_shared<PyCounter>(attachment_, ToText(name, "name"), ToInt64(init, "init"),
                                       ToTtlMs(ttl, "ttl"));
  }
  std::shared_ptr<PyDict> Dict(const py::handle& name, const py::handle& max_bytes,
                               const py::handle& eviction_arg, const py::handle& default_ttl) {
    shm::DictOptions options = ToDictOptions(max_bytes, eviction_arg, default_ttl);
    return std::make_shared<PyDict>(attachment_, ToText(name, "name"), options);
  }
  std::shared_ptr<PyList> List(const py::handle& name, const py::handle& max_items,
                               const py::handle& max_item_bytes) {
    shm::ListOptions options = ToListOptions(max_items, max_item_bytes);
    return std::make_shared<PyList>(attachment_, ToText(name, "name"), options);
  }
  std::shared_ptr<PyLock> Lock(const py::handle& name) {
    return std::make_shared<PyLock>(attachment_, ToText(name, "name"));
  }
  std::shared_ptr<PySessions> Sessions(const py::handle& name, const py::handle& idle_ttl) {
    return std::make_shared<PySessions>(attachment_, ToText(name, "name"),
                                        ToTtlMs(idle_ttl, "idle_ttl", /*none_is_no_expiry=*/false));
  }
  // Opens an existing array, or creates one when dtype and shape are given. Opening checks a
  // given dtype/shape against the array's (InvalidArgument on a mismatch).
  std::shared_ptr<PyArray> Array(const py::handle& name_arg, const py::handle& dtype_arg,
                                 const py::handle& shape_arg, const py::handle& fill) {
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
    auto array =
        std::make_shared<PyArray>(attachment_, name, [=](shm::Segment* seg, shm::NdArray* a) {
          Status s = shm::NdArray::Open(seg, name, a);
          if (s.IsNotFound() && dtype) {
            s = shm::NdArray::Create(seg, name, *dtype, *shape, fill_value, a);
            if (s.IsAlreadyExists()) s = shm::NdArray::Open(seg, name, a);  // Lost a race.
          }
          return s;
        });
    CheckMatches(*array, dtype, shape);
    return array;
  }
  // `values`: a numpy array or anything numpy.asarray takes; copied in C order, native byte
  // order.
  std::shared_ptr<PyArray> ArrayFromNumpy(const py::handle& name_arg,
                                          const py::handle& values_arg) {
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
    data.bytes.assign(static_cast<const char*>(values.data()),
                      static_cast<size_t>(values.nbytes()));
    return std::make_shared<PyArray>(
        attachment_, name,
        [name, data, created = std::make_shared<bool>(false)](shm::Segment* seg, shm::NdArray* a) {
          // Created once; a reopen after a move finds the copy the manager carried over.
          if (*created) return shm::NdArray::Open(seg, name, a);
          *created = true;
          return shm::NdArray::CreateFrom(seg, name, data, a);
        });
  }
  // [(name, kind)] of live objects whose name starts with prefix.
  py::list Objects(const py::handle& prefix_arg) {
    std::string prefix = ToText(prefix_arg, "prefix");
    std::vector<shm::ObjectInfo> objects;
    Bound<shm::Segment*> bound(attachment_, [](shm::Segment* seg, shm::Segment** out) {
      *out = seg;
      return Status::OK();
    });
    py::list out;
    std::string after;
    while (true) {
      objects.clear();
      bound.Run([&](shm::Segment*& seg) {
        return seg->registry().List(prefix, shm::ObjectKind::kNone, 1000, after, &objects);
      });
      for (const shm::ObjectInfo& o : objects) {
        out.append(py::make_tuple(o.name, std::string(shm::KindName(o.kind))));
      }
      if (objects.size() < 1000) return out;
      after = objects.back().name;
    }
  }
  bool Delete(const py::handle& name_arg) {
    std::string name = ToText(name_arg, "name");
    bool deleted = false;
    Bound<shm::Segment*> bound(attachment_, [](shm::Segment* seg, shm::Segment** out) {
      *out = seg;
      return Status::OK();
    });
    bound.Run([&](shm::Segment*& seg) {
      Status s = seg->registry().Delete(name);
      deleted = s.ok();
      return s.IsNotFound() ? Status::OK() : s;
    });
    return deleted;
  }
  py::object Transaction() { return BeginTransaction(attachment_); }
  std::string SegmentName() const { return attachment_->segment()->shm_name(); }
  uint64_t Generation() const { return attachment_->segment()->generation(); }
  const std::string& name() const { return attachment_->prefix(); }

 private:
  static void CheckMatches(const PyArray& array, const std::optional<shm::DType>& dtype,
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

  std::shared_ptr<Attachment> attachment_;
};

// --- The fast path of the hot methods
// ------------------------------------------------------------
//
// Counter.incr/value, Dict.get/__getitem__/__setitem__/__contains__/incr, List.push/pop and
// Lock.acquire/release/__enter__/__exit__ are C-API descriptors installed on the Python classes
// themselves (install_fast_paths, called by shmstate/__init__.py): a call goes from the
// interpreter to here with no pybind11 dispatch and no Python frame. A descriptor reads the
// wrapper's native handle from its __slots__ member, keys and values in place from a bytes (or
// ASCII str) argument, and runs through Bound::RunFast. Anything else takes the same converters
// (their messages), and a handle of another kind (the Redis backend's) runs the wrapper's own
// Python method, kept at install time, so arguments, results and errors are those of the slow
// path (fast_call.h).

// Where the wrappers keep their native handle, the native types the fast path knows, and the
// wrappers' Python methods for handles of another backend.
struct FastPaths {
  PyTypeObject* counter = nullptr;   // _Counter
  PyTypeObject* dict = nullptr;      // _Dict
  PyTypeObject* list = nullptr;      // _List
  PyTypeObject* lock = nullptr;      // _Lock
  PyTypeObject* lock_cls = nullptr;  // shmstate.Lock
  Py_ssize_t counter_slot = 0;       // Counter._c
  Py_ssize_t dict_slot = 0;          // Dict._d
  Py_ssize_t list_slot = 0;          // List._l
  // Lock._k, .ttl, .timeout, .owner, .token
  Py_ssize_t lock_slot = 0, lock_ttl = 0, lock_timeout = 0, lock_owner = 0, lock_token = 0;
  PyObject* missing = nullptr;  // shmstate._MISSING: Lock.acquire's "timeout not given".
  // The Python methods the descriptors replace, by name (strong references, kept forever).
  PyObject* dict_incr = nullptr;
  PyObject* list_push = nullptr;
  PyObject* list_pop = nullptr;
  PyObject* lock_acquire = nullptr;
  PyObject* lock_release = nullptr;
};
FastPaths g_fast;

// Calls the Python function `fn` as the method of `self` with a vectorcall's arguments.
PyObject* CallPython(PyObject* fn, PyObject* self, PyObject* const* args, Py_ssize_t nargs,
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

PyObject* CounterIncr(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* by = nullptr;
  if ((nargs != 0 || kwnames != nullptr) &&
      !ParseArgs("incr", args, nargs, kwnames, {"by"}, 0, &by)) {
    return nullptr;
  }
  PyObject* native = SlotValue(self, g_fast.counter_slot);
  if (native == nullptr) return nullptr;
  PyCounter* counter = CppOf<PyCounter>(native, g_fast.counter);
  if (counter == nullptr) {
    return by == nullptr ? PyObject_CallMethod(native, "incr", nullptr)
                         : PyObject_CallMethod(native, "incr", "(O)", by);
  }
  return Guarded([&] {
    return PyLong_FromLongLong(counter->IncrFast(by == nullptr ? 1 : Int64Arg(by, "by")));
  });
}

PyObject* CounterValue(PyObject* self, void*) {
  PyObject* native = SlotValue(self, g_fast.counter_slot);
  if (native == nullptr) return nullptr;
  PyCounter* counter = CppOf<PyCounter>(native, g_fast.counter);
  if (counter == nullptr) return PyObject_CallMethod(native, "value", nullptr);
  return Guarded([&] { return PyLong_FromLongLong(counter->ValueFast()); });
}

// The value, or `absent` (a new reference) when there is none; null with an error set. With
// `want_value` false, any object but `absent` when present (the native path copies nothing).
PyObject* DictLookup(PyObject* self, PyObject* key, PyObject* absent, bool want_value = true) {
  PyObject* native = SlotValue(self, g_fast.dict_slot);
  if (native == nullptr) return nullptr;
  PyDict* dict = CppOf<PyDict>(native, g_fast.dict);
  if (dict == nullptr && IsTxDict(native)) {  // Inside a transaction (register_tx.cc).
    return Guarded([&] {
      std::string value;
      if (!TxDictGet(native, BytesArg(key, true, "key").view(), &value)) {
        Py_INCREF(absent);
        return absent;
      }
      PyObject* bytes =
          PyBytes_FromStringAndSize(value.data(), static_cast<Py_ssize_t>(value.size()));
      if (bytes == nullptr) throw py::error_already_set();
      return bytes;
    });
  }
  if (dict == nullptr) {
    return PyObject_CallMethod(native, "get", "OO", key, absent);
  }
  return Guarded([&] {
    PyObject* value = dict->GetFast(BytesArg(key, true, "key").view(), want_value);
    if (value != nullptr) return value;
    Py_INCREF(absent);
    return absent;
  });
}

PyObject* DictGet(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* parsed[2];
  if (nargs == 1 && kwnames == nullptr) {
    parsed[0] = args[0];
    parsed[1] = nullptr;
  } else if (!ParseArgs("get", args, nargs, kwnames, {"key", "default"}, 1, parsed)) {
    return nullptr;
  }
  return DictLookup(self, parsed[0], parsed[1] == nullptr ? Py_None : parsed[1]);
}

PyObject* DictGetItem(PyObject* self, PyObject* key) {
  PyObject* value = DictLookup(self, key, Py_None);
  if (value != Py_None) return value;
  Py_DECREF(value);
  PyObject* error = PyObject_CallOneArg(g_exceptions->not_found.ptr(), key);
  if (error != nullptr) {
    PyErr_SetObject(g_exceptions->not_found.ptr(), error);
    Py_DECREF(error);
  }
  return nullptr;
}

PyObject* DictContains(PyObject* self, PyObject* key) {
  PyObject* value = DictLookup(self, key, Py_None, false);
  if (value == nullptr) return nullptr;
  bool found = value != Py_None;
  Py_DECREF(value);
  return PyBool_FromLong(found);
}

PyObject* DictSetItem(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2) {
    PyErr_Format(PyExc_TypeError, "__setitem__() takes 2 arguments (%zd given)", nargs);
    return nullptr;
  }
  PyObject* native = SlotValue(self, g_fast.dict_slot);
  if (native == nullptr) return nullptr;
  PyDict* dict = CppOf<PyDict>(native, g_fast.dict);
  if (dict == nullptr && IsTxDict(native)) {  // Inside a transaction (register_tx.cc).
    return Guarded([&] {
      BytesArg key(args[0], true, "key");
      BytesArg value(args[1], false, "value");
      TxDictSet(native, key.view(), value.view());
      Py_RETURN_NONE;
    });
  }
  if (dict == nullptr) {
    PyObject* r = PyObject_CallMethod(native, "set", "OO", args[0], args[1]);
    if (r == nullptr) return nullptr;
    Py_DECREF(r);
    Py_RETURN_NONE;
  }
  return Guarded([&] {
    BytesArg key(args[0], true, "key");
    BytesArg value(args[1], false, "value");
    dict->SetFast(key.view(), value.view());
    Py_RETURN_NONE;
  });
}

// incr(key, by=1, init=0, ttl=None) -> int
PyObject* DictIncr(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* parsed[4];
  if (!ParseArgs("incr", args, nargs, kwnames, {"key", "by", "init", "ttl"}, 1, parsed)) {
    return nullptr;
  }
  PyObject* native = SlotValue(self, g_fast.dict_slot);
  if (native == nullptr) return nullptr;
  PyDict* dict = CppOf<PyDict>(native, g_fast.dict);
  if (dict == nullptr) return CallPython(g_fast.dict_incr, self, args, nargs, kwnames);
  return Guarded([&] {
    BytesArg key(parsed[0], true, "key");  // The slow path's order: key, by, init, ttl.
    int64_t by = parsed[1] == nullptr ? 1 : Int64Arg(parsed[1], "by");
    int64_t init = parsed[2] == nullptr ? 0 : Int64Arg(parsed[2], "init");
    int64_t ttl_ms = parsed[3] == nullptr ? 0 : ToTtlMs(parsed[3], "ttl");
    return PyLong_FromLongLong(dict->IncrFast(key.view(), by, init, ttl_ms));
  });
}

// `end` ("left"/"right") compared in place; anything else through ToListEnd (its errors).
shm::List::End EndArg(PyObject* end, shm::List::End absent) {
  if (end == nullptr) return absent;
  if (PyUnicode_CheckExact(end) && PyUnicode_IS_COMPACT_ASCII(end)) {
    if (PyUnicode_CompareWithASCIIString(end, "left") == 0) return shm::List::End::kLeft;
    if (PyUnicode_CompareWithASCIIString(end, "right") == 0) return shm::List::End::kRight;
  }
  return ToListEnd(end);
}

// push(item, *, end="right") -> int
PyObject* ListPush(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* parsed[2];
  if (nargs == 1 && kwnames == nullptr) {
    parsed[0] = args[0];
    parsed[1] = nullptr;
  } else if (!ParseArgs("push", args, nargs, kwnames, {"item", "end"}, 1, parsed, 1)) {
    return nullptr;
  }
  PyObject* native = SlotValue(self, g_fast.list_slot);
  if (native == nullptr) return nullptr;
  PyList* list = CppOf<PyList>(native, g_fast.list);
  if (list == nullptr) return CallPython(g_fast.list_push, self, args, nargs, kwnames);
  return Guarded([&] {
    BytesArg item(parsed[0], false, "item");  // The slow path's order: item, end.
    shm::List::End end = EndArg(parsed[1], shm::List::End::kRight);
    return PyLong_FromUnsignedLongLong(list->PushFast(end, item.view()));
  });
}

// pop(wait=None, *, end="left") -> bytes | None; a wait releases the GIL (the slow path's).
PyObject* ListPop(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* parsed[2] = {nullptr, nullptr};
  if ((nargs != 0 || kwnames != nullptr) &&
      !ParseArgs("pop", args, nargs, kwnames, {"wait", "end"}, 0, parsed, 1)) {
    return nullptr;
  }
  PyObject* native = SlotValue(self, g_fast.list_slot);
  if (native == nullptr) return nullptr;
  PyList* list = CppOf<PyList>(native, g_fast.list);
  if (list == nullptr) return CallPython(g_fast.list_pop, self, args, nargs, kwnames);
  return Guarded([&]() -> PyObject* {
    PyObject* wait = parsed[0] == nullptr ? Py_None : parsed[0];
    if (wait != Py_None) {  // May block: the slow path, which waits without the GIL.
      py::object end =
          parsed[1] == nullptr ? py::str("left") : py::reinterpret_borrow<py::object>(parsed[1]);
      return list->Pop(wait, end).release().ptr();
    }
    PyObject* item = list->PopFast(EndArg(parsed[1], shm::List::End::kLeft));
    if (item != nullptr) return item;
    Py_RETURN_NONE;
  });
}

// Raises shmstate.Timeout as Lock.acquire does when the lease stayed taken.
void RaiseLockTimeout(PyLock* lock, PyObject* wait) {
  py::str name(lock->name());
  PyObject* message = PyUnicode_FromFormat("lock %R still held after %S s", name.ptr(), wait);
  if (message == nullptr) throw py::error_already_set();
  PyObject* error = PyObject_CallOneArg(g_exceptions->timeout.ptr(), message);
  Py_DECREF(message);
  if (error == nullptr) throw py::error_already_set();
  PyErr_SetObject(g_exceptions->timeout.ptr(), error);
  Py_DECREF(error);
  throw py::error_already_set();
}

// acquire(*, ttl=None, timeout=<the lock's>) -> int: the token (also in .token).
PyObject* LockAcquire(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* parsed[2] = {nullptr, nullptr};
  if ((nargs != 0 || kwnames != nullptr) &&
      !ParseArgs("acquire", args, nargs, kwnames, {"ttl", "timeout"}, 0, parsed, 0)) {
    return nullptr;
  }
  PyObject* native = SlotValue(self, g_fast.lock_slot);
  if (native == nullptr) return nullptr;
  PyLock* lock = CppOf<PyLock>(native, g_fast.lock);
  if (lock == nullptr) return CallPython(g_fast.lock_acquire, self, args, nargs, kwnames);
  PyObject* ttl =
      parsed[0] != nullptr && parsed[0] != Py_None ? parsed[0] : SlotValue(self, g_fast.lock_ttl);
  PyObject* wait = parsed[1] != nullptr && parsed[1] != g_fast.missing
                       ? parsed[1]
                       : SlotValue(self, g_fast.lock_timeout);
  PyObject* owner = SlotValue(self, g_fast.lock_owner);
  if (ttl == nullptr || wait == nullptr || owner == nullptr) return nullptr;
  return Guarded([&] {
    PyObject* token = lock->AcquireFast(ttl, wait, owner);
    if (token == Py_None) {
      Py_DECREF(token);
      RaiseLockTimeout(lock, wait);
    }
    SetSlotValue(self, g_fast.lock_token, token);
    return token;
  });
}

// release() -> bool: False if the lease was no longer ours (or never taken).
PyObject* LockRelease(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  if (nargs != 0 || (kwnames != nullptr && PyTuple_GET_SIZE(kwnames) != 0)) {
    PyErr_SetString(PyExc_TypeError, "release() takes no arguments");
    return nullptr;
  }
  PyObject* native = SlotValue(self, g_fast.lock_slot);
  if (native == nullptr) return nullptr;
  PyLock* lock = CppOf<PyLock>(native, g_fast.lock);
  if (lock == nullptr) return CallPython(g_fast.lock_release, self, args, nargs, kwnames);
  PyObject** field =
      reinterpret_cast<PyObject**>(reinterpret_cast<char*>(self) + g_fast.lock_token);
  PyObject* token = *field;  // Taken out first, as the slow path does: None even if it raises.
  Py_INCREF(Py_None);
  *field = Py_None;
  py::object owned = py::reinterpret_steal<py::object>(token);
  if (token == nullptr || token == Py_None) Py_RETURN_FALSE;
  return Guarded([&] { return PyBool_FromLong(lock->ReleaseFast(token)); });
}

PyObject* LockEnter(PyObject* self, PyObject*) {
  // self.acquire(): straight to the descriptor unless a subclass may have replaced it.
  PyObject* token = Py_TYPE(self) == g_fast.lock_cls
                        ? LockAcquire(self, nullptr, 0, nullptr)
                        : PyObject_CallMethod(self, "acquire", nullptr);
  if (token == nullptr) return nullptr;
  Py_DECREF(token);
  Py_INCREF(self);
  return self;
}

PyObject* LockExit(PyObject* self, PyObject* const*, Py_ssize_t) {
  PyObject* released = Py_TYPE(self) == g_fast.lock_cls
                           ? LockRelease(self, nullptr, 0, nullptr)
                           : PyObject_CallMethod(self, "release", nullptr);
  if (released == nullptr) return nullptr;
  Py_DECREF(released);
  Py_RETURN_NONE;
}

PyMethodDef kCounterFast[] = {
    {"incr", AsCFunction(CounterIncr), METH_FASTCALL | METH_KEYWORDS,
     "incr(by=1) -> int: adds `by` atomically and returns the new value."},
    {nullptr, nullptr, 0, nullptr}};
PyGetSetDef kCounterValue = {"value", CounterValue, nullptr, "The current value.", nullptr};
PyMethodDef kDictFast[] = {
    {"get", AsCFunction(DictGet), METH_FASTCALL | METH_KEYWORDS,
     "get(key, default=None) -> bytes | default."},
    {"__getitem__", DictGetItem, METH_O, "d[key] -> bytes; NotFound (a KeyError) when absent."},
    {"__contains__", DictContains, METH_O, "key in d."},
    {"__setitem__", AsCFunction(DictSetItem), METH_FASTCALL, "d[key] = value."},
    {"incr", AsCFunction(DictIncr), METH_FASTCALL | METH_KEYWORDS,
     "incr(key, by=1, init=0, ttl=None) -> int: adds `by` to the integer at `key` (created at "
     "`init`) and returns the new value."},
    {nullptr, nullptr, 0, nullptr}};
PyMethodDef kListFast[] = {
    {"push", AsCFunction(ListPush), METH_FASTCALL | METH_KEYWORDS,
     "push(item, *, end='right') -> int: adds `item` at `end`; returns the new length."},
    {"pop", AsCFunction(ListPop), METH_FASTCALL | METH_KEYWORDS,
     "pop(wait=None, *, end='left') -> bytes | None: removes the item at `end`, waiting up to "
     "`wait` seconds for one (the GIL is released while waiting)."},
    {nullptr, nullptr, 0, nullptr}};
PyMethodDef kLockFast[] = {
    {"acquire", AsCFunction(LockAcquire), METH_FASTCALL | METH_KEYWORDS,
     "acquire(*, ttl=None, timeout=<the lock's>) -> int: takes the lease; Timeout if it is still "
     "held after `timeout` s."},
    {"release", AsCFunction(LockRelease), METH_FASTCALL | METH_KEYWORDS,
     "release() -> bool: gives the lease back; False if it was no longer ours."},
    {"__enter__", LockEnter, METH_NOARGS, "acquire(); returns the lock."},
    {"__exit__", AsCFunction(LockExit), METH_FASTCALL, "release()."},
    {nullptr, nullptr, 0, nullptr}};

// A new reference to the function `name` of the Python class `cls` (the method a descriptor
// replaces, for handles of another backend).
PyObject* PythonMethod(const py::handle& cls, const char* name) {
  PyObject* fn = PyDict_GetItemString(reinterpret_cast<PyTypeObject*>(cls.ptr())->tp_dict, name);
  if (fn == nullptr || !PyFunction_Check(fn)) {
    throw py::type_error(std::string("no Python method ") + name);
  }
  Py_INCREF(fn);
  return fn;
}

void InstallFastPaths(const py::type& counter_cls, const py::type& dict_cls,
                      const py::type& list_cls, const py::type& lock_cls,
                      const py::object& missing) {
  g_fast.counter = reinterpret_cast<PyTypeObject*>(py::type::of<PyCounter>().ptr());
  g_fast.dict = reinterpret_cast<PyTypeObject*>(py::type::of<PyDict>().ptr());
  g_fast.list = reinterpret_cast<PyTypeObject*>(py::type::of<PyList>().ptr());
  g_fast.lock = reinterpret_cast<PyTypeObject*>(py::type::of<PyLock>().ptr());
  g_fast.counter_slot = SlotOffset(counter_cls, "_c");
  g_fast.dict_slot = SlotOffset(dict_cls, "_d");
  g_fast.list_slot = SlotOffset(list_cls, "_l");
  g_fast.lock_cls = reinterpret_cast<PyTypeObject*>(lock_cls.ptr());
  g_fast.lock_slot = SlotOffset(lock_cls, "_k");
  g_fast.lock_ttl = SlotOffset(lock_cls, "ttl");
  g_fast.lock_timeout = SlotOffset(lock_cls, "timeout");
  g_fast.lock_owner = SlotOffset(lock_cls, "owner");
  g_fast.lock_token = SlotOffset(lock_cls, "token");
  g_fast.missing = missing.inc_ref().ptr();
  g_fast.dict_incr = PythonMethod(dict_cls, "incr");
  g_fast.list_push = PythonMethod(list_cls, "push");
  g_fast.list_pop = PythonMethod(list_cls, "pop");
  g_fast.lock_acquire = PythonMethod(lock_cls, "acquire");
  g_fast.lock_release = PythonMethod(lock_cls, "release");
  InstallMethods(counter_cls, kCounterFast);
  InstallGetSet(counter_cls, &kCounterValue);
  InstallMethods(dict_cls, kDictFast);
  InstallMethods(list_cls, kListFast);
  InstallMethods(lock_cls, kLockFast);
}
}  // namespace
}  // namespace shmstate

PYBIND11_MODULE(_shmstate, m) {
  using namespace shmstate;
  m.doc() = "In-process access to a running shmstate server's shared memory (see shmstate).";
  // What attach() checks against the segment (docs/deploy.md#upgrades).
  m.attr("LAYOUT_VERSION") = shm::Segment::LayoutVersion();
  // The library's size limits (shm/limits.h), the one table every front end reads.
  py::dict limits;
  limits["key"] = shm::limits::kMaxKey;
  limits["value"] = shm::limits::kMaxValue;
  limits["content_type"] = shm::limits::kMaxContentType;
  limits["object_name"] = shm::limits::kMaxObjectName;
  limits["page"] = shm::limits::kMaxPage;
  limits["list_items"] = shm::limits::kMaxListItems;
  limits["list_item_bytes"] = shm::limits::kMaxListItemBytes;
  limits["array_bytes"] = shm::limits::kMaxArrayBytes;
  limits["ttl_ms"] = shm::limits::kMaxTtlMs;
  limits["session_bytes"] = shm::limits::kMaxSessionBytes;
  limits["session_field"] = shm::limits::kMaxSessionField;
  m.attr("LIMITS") = limits;

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
      const py::object& type = ExceptionFor(e.status.code());
      py::object value = type(MessageText(e.status.message()));
      value.attr("code") = std::string(e.status.CodeName());
      PyErr_SetObject(type.ptr(), value.ptr());
    } catch (const TypeArgumentError& e) {
      const py::object& type = g_exceptions->invalid_type;
      py::object value = type(MessageText(e.message));
      value.attr("code") = std::string(Status::InvalidArgument("").CodeName());
      PyErr_SetObject(type.ptr(), value.ptr());
    }
  });

  using py::arg;
  // The argument rules of convert.h for the pure-Python backend (shmstate/redis_backend.py), so
  // that both backends accept and refuse the same arguments with the same errors.
  m.def("_to_text", [](py::handle h, const std::string& what) { return ToText(h, what.c_str()); });
  m.def("_to_key",
        [](py::handle h, const std::string& what) { return Bytes(ToKey(h, what.c_str())); });
  m.def("_to_bytes",
        [](py::handle h, const std::string& what) { return Bytes(ToBytes(h, what.c_str())); });
  m.def("_to_int64",
        [](py::handle h, const std::string& what) { return ToInt64(h, what.c_str()); });
  m.def(
      "_to_uint64",
      [](py::handle h, const std::string& what, uint64_t max) {
        return ToUInt64(h, what.c_str(), max);
      },
      arg("h"), arg("what"), arg("max") = std::numeric_limits<uint64_t>::max());
  m.def("_to_ttl_ms", [](py::handle h, const std::string& what, bool none_is_no_expiry) {
    return ToTtlMs(h, what.c_str(), none_is_no_expiry);
  });
  m.def("_to_wait_s", [](py::handle h, const std::string& what, double none_s, double max_s) {
    auto ms = [](double s) { return std::chrono::milliseconds(std::llround(s * 1000)); };
    return ToWait(h, what.c_str(), ms(none_s), ms(max_s)).count() / 1000.0;
  });
  m.def("_to_scalar", [](py::handle h, const std::string& what) {
    return FromScalar(ToScalar(h, what.c_str()));
  });
  m.def("_to_element_index", [](py::handle h) { return ToElementIndex(h); });
  m.def("_to_shape", [](py::handle h) { return ToShape(h); });
  m.def("_to_dtype_name", [](py::handle h) { return std::string(shm::DTypeName(ToDType(h))); });
  // None for a basic key, else what makes it advanced ("a boolean mask", ...).
  m.def("_advanced_form", [](py::handle h) -> py::object {
    ArrayKey key = ToArrayKey(h);
    return key.advanced ? py::object(py::str(key.advanced_form)) : py::object(py::none());
  });

  py::class_<PyCounter, std::shared_ptr<PyCounter>> counter(m, "_Counter");
  BindCounterMethods(counter);
  py::class_<PyDict, std::shared_ptr<PyDict>> dict(m, "_Dict");
  BindDictMethods(dict);
  py::class_<PyList, std::shared_ptr<PyList>> list(m, "_List");
  BindListMethods(list);
  py::class_<PyLock, std::shared_ptr<PyLock>>(m, "_Lock")
      .def("acquire", &PyLock::Acquire, arg("ttl"), arg("timeout") = py::none(), arg("owner") = "")
      .def("release", &PyLock::Release, arg("token"))
      .def("refresh", &PyLock::Refresh, arg("token"), arg("ttl"))
      .def("info", &PyLock::Info)
      .def_property_readonly("name", &PyLock::name);
  py::class_<PySessions, std::shared_ptr<PySessions>>(m, "_Sessions")
      .def("create", &PySessions::Create, arg("json") = "{}")
      .def("get", &PySessions::Get, arg("sid"))
      .def("put", &PySessions::Put, arg("sid"), arg("json"))
      .def("delete", &PySessions::Delete, arg("sid"))
      .def("set_field", &PySessions::SetField, arg("sid"), arg("field"), arg("json"))
      .def("erase_field", &PySessions::EraseField, arg("sid"), arg("field"))
      .def("incr", &PySessions::Incr, arg("sid"), arg("field"), arg("by") = 1)
      .def("idle_ttl", &PySessions::idle_ttl)
      .def_property_readonly("name", &PySessions::name);
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
  py::class_<PyClient, std::shared_ptr<PyClient>>(m, "_Client")
      .def(py::init<const py::handle&, const py::handle&>(), arg("name"),
           arg("follow_timeout") = 10.0)
      .def("counter", &PyClient::Counter, arg("name"), arg("init") = 0, arg("ttl") = py::none())
      .def("dict", &PyClient::Dict, arg("name"), arg("max_bytes") = 0, arg("eviction") = "none",
           arg("default_ttl") = py::none())
      .def("list", &PyClient::List, arg("name"), arg("max_items") = uint64_t{1} << 20,
           arg("max_item_bytes") = uint64_t{1} << 20)
      .def("lock", &PyClient::Lock, arg("name"))
      .def("sessions", &PyClient::Sessions, arg("name"), arg("idle_ttl"))
      .def("array", &PyClient::Array, arg("name"), arg("dtype") = py::none(),
           arg("shape") = py::none(), arg("fill") = py::none())
      .def("array_from_numpy", &PyClient::ArrayFromNumpy, arg("name"), arg("values"))
      .def("objects", &PyClient::Objects, arg("prefix") = "")
      .def("delete", &PyClient::Delete, arg("name"))
      .def("transaction", &PyClient::Transaction)
      .def_property_readonly("segment_name", &PyClient::SegmentName)
      .def_property_readonly("generation", &PyClient::Generation)
      .def_property_readonly("name", &PyClient::name);

  // The C-API fast path of the wrappers' hot methods (shmstate/__init__.py calls it once).
  m.def("_install_fast_paths", &InstallFastPaths, arg("counter_cls"), arg("dict_cls"),
        arg("list_cls"), arg("lock_cls"), arg("missing"));

  RegisterSync(m);         // shmstate.Manager's blocking proxies (register_sync.cc).
  RegisterManager(m);      // Its hot paths and value records (register_manager.cc).
  RegisterTransaction(m);  // shmstate.Client.transaction (register_tx.cc).
}
