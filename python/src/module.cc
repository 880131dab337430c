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
#include <structmember.h>

#include <boost/json.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "attachment.h"
#include "convert.h"
#include "register_sync.h"
#include "register_tx.h"
#include "shm/counter.h"
#include "shm/dict.h"
#include "shm/lease_lock.h"
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

// --- The gate every operation goes through
// --------------------------------------------------------

// A proxy of kind Proxy bound to an attachment: opened by name in whatever generation the
// attachment is in, reopened after a move.
template <class Proxy>
class Bound {
 public:
  using Opener = std::function<Status(shm::Segment*, Proxy*)>;

  Bound(std::shared_ptr<Attachment> attachment, Opener open)
      : attachment_(std::move(attachment)), open_(std::move(open)) {
    Run([](Proxy&) { return Status::OK(); });  // Opens (and creates) now, so errors show here.
  }

  // Runs fn(proxy) -> Status as one client operation. With `release_gil`, fn runs without the
  // GIL on a copy of the proxy (another thread may reopen the handle meanwhile).
  template <class F>
  void Run(F&& fn, bool release_gil = false) {
    while (true) {
      std::shared_ptr<shm::Segment> segment = CurrentSegment();
      Status s = segment->EnterClientOp();
      if (s.ok()) {
        s = ReopenIfMovedLocked(segment);
        if (s.ok()) {
          if (release_gil) {
            Proxy proxy = proxy_;
            py::gil_scoped_release nogil;
            s = fn(proxy);
          } else {
            s = fn(proxy_);
          }
        }
        segment->LeaveClientOp();
      }
      // Poisoned: the operation did not happen (the gate refused it, or the allocator failed
      // before the commit); run it again in the successor.
      if (s.IsPoisoned()) {
        Status followed;
        {
          py::gil_scoped_release nogil;
          followed = attachment_->Follow(segment);
        }
        Check(followed);
        continue;
      }
      Check(s);
      return;
    }
  }

  // Run for the hot methods (the fast path below): fn(proxy) -> Status under the GIL, without
  // copying the segment's shared_ptr. It takes the same gate and raises the same errors as Run;
  // whenever the handle must move (a new epoch, a refused gate, a Poisoned answer: the operation
  // did not happen) it hands the call to Run, which follows and reopens.
  template <class F>
  void RunFast(F&& fn) {
    if (segment_ != nullptr && epoch_ == attachment_->epoch()) {
      shm::Segment* segment = segment_.get();  // Kept alive by segment_ (the GIL is held).
      Status s = segment->EnterClientOp();
      if (s.ok()) {
        s = fn(proxy_);
        segment->LeaveClientOp();
        if (!s.IsPoisoned()) {
          Check(s);
          return;
        }
      }
    }
    Run(std::forward<F>(fn));
  }

  const std::shared_ptr<Attachment>& attachment() const { return attachment_; }

 private:
  std::shared_ptr<shm::Segment> CurrentSegment() {
    if (segment_ && epoch_ == attachment_->epoch()) return segment_;
    return attachment_->segment();
  }
  // Called inside the gate of `segment`; the GIL guards proxy_, segment_ and epoch_.
  Status ReopenIfMovedLocked(const std::shared_ptr<shm::Segment>& segment) {
    if (segment == segment_) return Status::OK();
    uint64_t epoch = attachment_->epoch();
    Proxy fresh;
    SHM_RETURN_IF_ERROR(open_(segment.get(), &fresh));
    proxy_ = std::move(fresh);
    segment_ = segment;
    epoch_ = epoch;
    return Status::OK();
  }

  std::shared_ptr<Attachment> attachment_;
  Opener open_;
  std::shared_ptr<shm::Segment> segment_;  // The segment proxy_ was opened in.
  uint64_t epoch_ = 0;
  Proxy proxy_;
};

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
  // The value as a new bytes, or null when absent (no Python error set then). The segment's
  // bytes land in scratch_ (its buffer reused from call to call) and then in the bytes.
  PyObject* GetFast(std::string_view key) {
    bool found = false;
    bound_.RunFast([&](shm::Dict& d) {
      Status s = d.Get(key, &scratch_);
      found = s.ok();
      return s.IsNotFound() ? Status::OK() : s;
    });
    if (!found) return nullptr;
    PyObject* value = PyBytes_FromStringAndSize(scratch_.data.data(),
                                                static_cast<Py_ssize_t>(scratch_.data.size()));
    if (value == nullptr) throw py::error_already_set();
    return value;
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
  shm::DictValue scratch_;                                 // GetFast's; the GIL guards it.
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
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  Bound<shm::List> bound_;
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
    Check(Attachment::Open(prefix, ms, &attachment_));
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
// Counter.incr/value and Dict.get/__getitem__/__setitem__/__contains__ are C-API descriptors
// installed on the Python classes themselves (install_fast_paths, called by shmstate/__init__.py):
// a call goes from the interpreter to here with no pybind11 dispatch and no Python frame. A
// descriptor reads the wrapper's native handle from its __slots__ member, keys and values in
// place from a bytes (or ASCII str) argument, and runs through Bound::RunFast. Anything else
// (other argument types, a handle of the Redis backend) takes the same converters or calls the
// handle's own method, so arguments, results and errors are those of the slow path.

// Sets the shmstate exception of a caught StatusError / TypeArgumentError, as the translator.
void SetModuleError(const py::object& type, std::string_view message, const Status& status) {
  try {
    py::object value = type(MessageText(message));
    value.attr("code") = std::string(status.CodeName());
    PyErr_SetObject(type.ptr(), value.ptr());
  } catch (py::error_already_set& e) {
    e.restore();
  }
}

template <class F>
PyObject* Guarded(F&& fn) noexcept {
  try {
    return fn();
  } catch (const StatusError& e) {
    SetModuleError(ExceptionFor(e.status.code()), e.status.message(), e.status);
  } catch (const TypeArgumentError& e) {
    SetModuleError(g_exceptions->invalid_type, e.message, Status::InvalidArgument(""));
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
// itself), else converted by convert.h (a copy, its errors).
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
  std::string_view view() const { return view_; }

 private:
  std::string copy_;
  std::string_view view_;
};

int64_t Int64Arg(PyObject* h, const char* what) {
  if (PyLong_CheckExact(h)) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(h, &overflow);
    if (overflow == 0 && !(v == -1 && PyErr_Occurred())) return v;
    PyErr_Clear();
  }
  return ToInt64(h, what);  // Its message for what the fast check did not take.
}

// Where the wrappers keep their native handle, and the native types the fast path knows.
struct FastPaths {
  PyTypeObject* counter = nullptr;  // _Counter
  PyTypeObject* dict = nullptr;     // _Dict
  Py_ssize_t counter_slot = 0;      // Counter._c
  Py_ssize_t dict_slot = 0;         // Dict._d
};
FastPaths g_fast;

// The wrapper's native handle (borrowed), or null with AttributeError when unset.
PyObject* NativeOf(PyObject* self, Py_ssize_t slot) {
  PyObject* native = *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(self) + slot);
  if (native == nullptr) PyErr_SetString(PyExc_AttributeError, "the handle is not initialised");
  return native;
}
template <class T>
T* CppOf(PyObject* native, PyTypeObject* type) {
  if (Py_TYPE(native) != type) return nullptr;  // The Redis backend's handle, say.
  auto* inst = reinterpret_cast<py::detail::instance*>(native);
  return inst->get_value_and_holder().value_ptr<T>();
}

// Positional or keyword arguments `names` (the first `required` of them required) into out.
bool ParseArgs(const char* fname, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
               std::initializer_list<const char*> names, size_t required, PyObject** out) {
  size_t n = names.size();
  if (static_cast<size_t>(nargs) > n) {
    PyErr_Format(PyExc_TypeError, "%s() takes at most %zu arguments (%zd given)", fname, n, nargs);
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

PyObject* CounterIncr(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* by = nullptr;
  if ((nargs != 0 || kwnames != nullptr) &&
      !ParseArgs("incr", args, nargs, kwnames, {"by"}, 0, &by)) {
    return nullptr;
  }
  PyObject* native = NativeOf(self, g_fast.counter_slot);
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
  PyObject* native = NativeOf(self, g_fast.counter_slot);
  if (native == nullptr) return nullptr;
  PyCounter* counter = CppOf<PyCounter>(native, g_fast.counter);
  if (counter == nullptr) return PyObject_CallMethod(native, "value", nullptr);
  return Guarded([&] { return PyLong_FromLongLong(counter->ValueFast()); });
}

// The value, or `absent` (a new reference) when there is none; null with an error set.
PyObject* DictLookup(PyObject* self, PyObject* key, PyObject* absent) {
  PyObject* native = NativeOf(self, g_fast.dict_slot);
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
    PyObject* value = dict->GetFast(BytesArg(key, true, "key").view());
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
  PyObject* value = DictLookup(self, key, Py_None);
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
  PyObject* native = NativeOf(self, g_fast.dict_slot);
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

template <class F>
PyCFunction AsCFunction(F* fn) {
  return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fn));
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
    {nullptr, nullptr, 0, nullptr}};

// The offset of the __slots__ member `name` of the Python class `cls`.
Py_ssize_t SlotOffset(const py::handle& cls, const char* name) {
  PyObject* member =
      PyDict_GetItemString(reinterpret_cast<PyTypeObject*>(cls.ptr())->tp_dict, name);
  if (member == nullptr || Py_TYPE(member) != &PyMemberDescr_Type) {
    throw py::type_error(std::string("no __slots__ member ") + name);
  }
  PyMemberDef* def = reinterpret_cast<PyMemberDescrObject*>(member)->d_member;
  if (def->type != T_OBJECT_EX) throw py::type_error(std::string("not an object slot: ") + name);
  return def->offset;
}

void InstallMethods(const py::handle& cls, PyMethodDef* defs) {
  auto* type = reinterpret_cast<PyTypeObject*>(cls.ptr());
  for (PyMethodDef* def = defs; def->ml_name != nullptr; ++def) {
    py::object descr = py::reinterpret_steal<py::object>(PyDescr_NewMethod(type, def));
    if (!descr) throw py::error_already_set();
    py::setattr(cls, def->ml_name, descr);
  }
}

void InstallFastPaths(const py::type& counter_cls, const py::type& dict_cls) {
  g_fast.counter = reinterpret_cast<PyTypeObject*>(py::type::of<PyCounter>().ptr());
  g_fast.dict = reinterpret_cast<PyTypeObject*>(py::type::of<PyDict>().ptr());
  g_fast.counter_slot = SlotOffset(counter_cls, "_c");
  g_fast.dict_slot = SlotOffset(dict_cls, "_d");
  InstallMethods(counter_cls, kCounterFast);
  py::object value = py::reinterpret_steal<py::object>(
      PyDescr_NewGetSet(reinterpret_cast<PyTypeObject*>(counter_cls.ptr()), &kCounterValue));
  if (!value) throw py::error_already_set();
  py::setattr(counter_cls, "value", value);
  InstallMethods(dict_cls, kDictFast);
}

}  // namespace
}  // namespace shmstate

PYBIND11_MODULE(_shmstate, m) {
  using namespace shmstate;
  m.doc() = "In-process access to a running shmstate server's shared memory (see shmstate).";
  // What attach() checks against the segment (docs/deploy.md#upgrades).
  m.attr("LAYOUT_VERSION") = shm::Segment::LayoutVersion();

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

  py::class_<PyCounter, std::shared_ptr<PyCounter>>(m, "_Counter")
      .def("incr", &PyCounter::Incr, arg("by") = 1)
      .def("value", &PyCounter::Value)
      .def("set", &PyCounter::Set, arg("value"))
      .def("cas", &PyCounter::Cas, arg("expected"), arg("value"))
      .def_property_readonly("name", &PyCounter::name);
  py::class_<PyDict, std::shared_ptr<PyDict>>(m, "_Dict")
      .def("get", &PyDict::Get, arg("key"), arg("default") = py::none())
      .def("get_entry", &PyDict::GetEntry, arg("key"))
      .def("set", &PyDict::Set, arg("key"), arg("value"), arg("ttl") = py::none(),
           arg("mode") = "set", arg("if_version") = py::none())
      .def("delete", &PyDict::Delete, arg("key"))
      .def("incr", &PyDict::Incr, arg("key"), arg("by") = 1, arg("init") = 0,
           arg("ttl") = py::none())
      .def("cas", &PyDict::Cas, arg("key"), arg("expected"), arg("value"))
      .def("keys_page", &PyDict::Keys, arg("prefix") = "", arg("cursor") = 0, arg("limit") = 1000)
      .def("stats", &PyDict::Stats)
      .def_property_readonly("name", &PyDict::name);
  py::class_<PyList, std::shared_ptr<PyList>>(m, "_List")
      .def("push", &PyList::Push, arg("item"), arg("end") = "right")
      .def("pop", &PyList::Pop, arg("wait") = py::none(), arg("end") = "left")
      .def("length", &PyList::Length)
      .def("range", &PyList::Range, arg("start") = 0, arg("stop") = -1)
      .def_property_readonly("name", &PyList::name);
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
  m.def("_install_fast_paths", &InstallFastPaths, arg("counter_cls"), arg("dict_cls"));

  RegisterSync(m);         // shmstate.Manager's blocking proxies (register_sync.cc).
  RegisterTransaction(m);  // shmstate.Client.transaction (register_tx.cc).
}
