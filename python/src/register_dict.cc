// _Dict: a shm::Dict bound to an attachment, and the fast path of shmstate.Dict's get, d[k],
// d[k] = v, k in d and incr (handles.h). Inside a transaction the wrapper holds a _TxDict, which
// the fast path serves too (register_tx.h).
#include <pybind11/pybind11.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bound.h"
#include "convert.h"
#include "errors.h"
#include "fast_call.h"
#include "handles.h"
#include "method_tables.h"
#include "register_tx.h"
#include "shm/dict.h"

namespace py = pybind11;
using shm::Status;

namespace shmstate {
namespace {

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
    shm::DictValue value;
    if (!Read(ToKey(key, "key"), &value)) return py::reinterpret_borrow<py::object>(absent);
    return Bytes(value.data);
  }
  // (value, version, expires_at_ms) or None.
  py::object GetEntry(const py::handle& key) {
    shm::DictValue value;
    if (!Read(ToKey(key, "key"), &value)) return py::none();
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
  // Whether `key` is present; its entry in *value then.
  bool Read(const std::string& key, shm::DictValue* value) {
    bool found = false;
    bound_.Run([&](shm::Dict& d) {
      Status s = d.Get(key, value);
      found = s.ok();
      return s.IsNotFound() ? Status::OK() : s;
    });
    return found;
  }

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

// The native type, where shmstate.Dict keeps its handle (Dict._d), and its Python incr for
// handles of another backend.
PyTypeObject* g_native = nullptr;
Py_ssize_t g_slot = 0;
PyObject* g_python_incr = nullptr;

// The value, or `absent` (a new reference) when there is none; null with an error set. With
// `want_value` false, any object but `absent` when present (the native path copies nothing).
PyObject* DictLookup(PyObject* self, PyObject* key, PyObject* absent, bool want_value = true) {
  PyObject* native = SlotValue(self, g_slot);
  if (native == nullptr) return nullptr;
  PyDict* dict = CppOf<PyDict>(native, g_native);
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
  PyObject* error = PyObject_CallOneArg(ExceptionFor(Status::Code::kNotFound).ptr(), key);
  if (error != nullptr) {
    PyErr_SetObject(ExceptionFor(Status::Code::kNotFound).ptr(), error);
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
  PyObject* native = SlotValue(self, g_slot);
  if (native == nullptr) return nullptr;
  PyDict* dict = CppOf<PyDict>(native, g_native);
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
  PyObject* native = SlotValue(self, g_slot);
  if (native == nullptr) return nullptr;
  PyDict* dict = CppOf<PyDict>(native, g_native);
  if (dict == nullptr) return CallPython(g_python_incr, self, args, nargs, kwnames);
  return Guarded([&] {
    BytesArg key(parsed[0], true, "key");  // The slow path's order: key, by, init, ttl.
    int64_t by = parsed[1] == nullptr ? 1 : Int64Arg(parsed[1], "by");
    int64_t init = parsed[2] == nullptr ? 0 : Int64Arg(parsed[2], "init");
    int64_t ttl_ms = parsed[3] == nullptr ? 0 : ToTtlMs(parsed[3], "ttl");
    return PyLong_FromLongLong(dict->IncrFast(key.view(), by, init, ttl_ms));
  });
}

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

}  // namespace

py::object NewDict(const std::shared_ptr<Attachment>& attachment, const py::handle& name,
                   const py::handle& max_bytes, const py::handle& eviction,
                   const py::handle& default_ttl) {
  shm::DictOptions options = ToDictOptions(max_bytes, eviction, default_ttl);
  return py::cast(std::make_shared<PyDict>(attachment, ToText(name, "name"), options));
}

void RegisterDict(py::module_& m) {
  py::class_<PyDict, std::shared_ptr<PyDict>> dict(m, "_Dict");
  BindDictMethods(dict);
}

void InstallDictFastPaths(const py::type& dict_cls) {
  g_native = reinterpret_cast<PyTypeObject*>(py::type::of<PyDict>().ptr());
  g_slot = SlotOffset(dict_cls, "_d");
  g_python_incr = PythonMethod(dict_cls, "incr");
  InstallMethods(dict_cls, kDictFast);
}

}  // namespace shmstate
