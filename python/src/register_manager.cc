// The native path of shmstate.Manager's hot proxy methods (python/shmstate/manager.py).
//
// A proxy method written in Python costs a frame, attribute lookups, a pickle and one to three
// pybind11 calls (1-7 us); the methods here are C-API method descriptors installed on the proxy
// classes (fast_call.h), which call the library directly through a Bound handle of the proxy's
// object (`_h`: a _MgrDict or _MgrList). What a fast method does not cover (a blocking wait, a
// slice, a key of an unusual type, an RLock) it hands to the proxy's Python method of the same
// name, kept as `_<name>_slow`: one implementation of every rule, the fast one a shortcut to it.
//
// Values are stored as records: one tag byte, then int64 or double bits (little-endian), UTF-8
// (surrogates kept), raw bytes, or a pickle for any other type. None, bool, int (in int64), float,
// str and bytes of exactly those types round-trip exactly without pickle; a subclass (an IntEnum,
// say) is pickled so that it comes back as itself. A dict entry is 'E', its insertion order
// (int64), the length of its key's record (uint32), the key's record and the value's record.
#include "register_manager.h"

#include <pthread.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "attachment.h"
#include "bound.h"
#include "convert.h"
#include "fast_call.h"
#include "shm/dict.h"
#include "shm/list.h"

namespace py = pybind11;

namespace shmstate {
namespace {

constexpr char kNone = 'N', kTrue = 'T', kFalse = 'F', kInt = 'i', kFloat = 'f', kStr = 's',
               kBytes = 'b', kPickle = 'p', kEntry = 'E';
constexpr size_t kEntryHeader = 1 + 8 + 4;

// Python objects the fast paths use, set once by _install_manager_fast_paths.
struct Globals {
  PyObject* dumps = nullptr;       // pickle.dumps
  PyObject* loads = nullptr;       // pickle.loads
  PyObject* protocol = nullptr;    // pickle.HIGHEST_PROTOCOL
  PyObject* encode_key = nullptr;  // manager._encode_key
  PyObject* owner = nullptr;       // manager._process_owner
  PyObject* h = nullptr;           // Interned attribute names.
  PyObject* rlock = nullptr;
  PyObject* owner_died = nullptr;
  PyObject* fast = nullptr;
  PyTypeObject* dict_type = nullptr;
  PyTypeObject* list_type = nullptr;
};
Globals g;

// --- records
// --------------------------------------------------------------------------------------

void PutU64(std::string* out, uint64_t v) {
  char buf[8];
  for (int i = 0; i < 8; ++i) buf[i] = static_cast<char>(v >> (8 * i));
  out->append(buf, 8);
}
uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

// Appends the record of `obj` to `out`; false with a Python error set.
bool AppendRecord(PyObject* obj, std::string* out) {
  if (obj == Py_None) {
    out->push_back(kNone);
  } else if (obj == Py_True || obj == Py_False) {
    out->push_back(obj == Py_True ? kTrue : kFalse);
  } else if (PyLong_CheckExact(obj)) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) return false;
    if (overflow != 0) goto pickled;
    out->push_back(kInt);
    PutU64(out, static_cast<uint64_t>(v));
  } else if (PyFloat_CheckExact(obj)) {
    double d = PyFloat_AS_DOUBLE(obj);
    uint64_t bits;
    std::memcpy(&bits, &d, sizeof bits);
    out->push_back(kFloat);
    PutU64(out, bits);
  } else if (PyUnicode_CheckExact(obj)) {
    out->push_back(kStr);
    if (PyUnicode_IS_COMPACT_ASCII(obj)) {
      out->append(static_cast<const char*>(PyUnicode_DATA(obj)),
                  static_cast<size_t>(PyUnicode_GET_LENGTH(obj)));
    } else {
      PyObject* utf8 = PyUnicode_AsEncodedString(obj, "utf-8", "surrogatepass");
      if (utf8 == nullptr) return false;
      out->append(PyBytes_AS_STRING(utf8), static_cast<size_t>(PyBytes_GET_SIZE(utf8)));
      Py_DECREF(utf8);
    }
  } else if (PyBytes_CheckExact(obj)) {
    out->push_back(kBytes);
    out->append(PyBytes_AS_STRING(obj), static_cast<size_t>(PyBytes_GET_SIZE(obj)));
  } else {
    goto pickled;
  }
  return true;
pickled:
  PyObject* args[] = {obj, g.protocol};
  PyObject* data = PyObject_Vectorcall(g.dumps, args, 2, nullptr);
  if (data == nullptr) return false;
  out->push_back(kPickle);
  out->append(PyBytes_AS_STRING(data), static_cast<size_t>(PyBytes_GET_SIZE(data)));
  Py_DECREF(data);
  return true;
}

PyObject* BadRecord() {
  PyErr_SetString(PyExc_ValueError, "shmstate.Manager: not a stored value (a foreign entry?)");
  return nullptr;
}

// The object of the record `r` (a new reference), or null with an error set.
PyObject* FromRecord(std::string_view r) {
  if (r.empty()) return BadRecord();
  const char* p = r.data() + 1;
  const size_t n = r.size() - 1;
  switch (r[0]) {
    case kNone:
      Py_RETURN_NONE;
    case kTrue:
      Py_RETURN_TRUE;
    case kFalse:
      Py_RETURN_FALSE;
    case kInt:
      if (n != 8) return BadRecord();
      return PyLong_FromLongLong(static_cast<long long>(GetU64(p)));
    case kFloat: {
      if (n != 8) return BadRecord();
      uint64_t bits = GetU64(p);
      double d;
      std::memcpy(&d, &bits, sizeof d);
      return PyFloat_FromDouble(d);
    }
    case kStr:
      return PyUnicode_DecodeUTF8(p, static_cast<Py_ssize_t>(n), "surrogatepass");
    case kBytes:
      return PyBytes_FromStringAndSize(p, static_cast<Py_ssize_t>(n));
    case kPickle: {
      PyObject* view =
          PyMemoryView_FromMemory(const_cast<char*>(p), static_cast<Py_ssize_t>(n), PyBUF_READ);
      if (view == nullptr) return nullptr;
      PyObject* obj = PyObject_CallOneArg(g.loads, view);
      Py_DECREF(view);
      return obj;
    }
    default:
      return BadRecord();
  }
}

PyObject* ToPyBytes(const std::string& s) {
  return PyBytes_FromStringAndSize(s.data(), static_cast<Py_ssize_t>(s.size()));
}

// An entry's parts: its order, its key's record and its value's record.
struct EntryView {
  int64_t order = 0;
  std::string_view key;
  std::string_view value;
};

bool ParseEntry(std::string_view e, EntryView* out) {
  if (e.size() < kEntryHeader || e[0] != kEntry) return false;
  out->order = static_cast<int64_t>(GetU64(e.data() + 1));
  uint32_t klen = 0;
  for (int i = 0; i < 4; ++i) klen |= uint32_t{static_cast<unsigned char>(e[9 + i])} << (8 * i);
  if (e.size() - kEntryHeader < klen) return false;
  out->key = e.substr(kEntryHeader, klen);
  out->value = e.substr(kEntryHeader + klen);
  return true;
}

// The entry with `order`, the key record `key` and the value record `value`.
void MakeEntry(int64_t order, std::string_view key, std::string_view value, std::string* out) {
  out->clear();
  out->push_back(kEntry);
  PutU64(out, static_cast<uint64_t>(order));
  const auto klen = static_cast<uint32_t>(key.size());
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(klen >> (8 * i)));
  out->append(key);
  out->append(value);
}

// --- handles
// --------------------------------------------------------------------------------------

std::shared_ptr<Attachment> SharedAttachment(py::handle server) {
  std::shared_ptr<Attachment> attachment;
  Check(Attachment::Shared(ToText(server, "server"), std::chrono::seconds(10), &attachment));
  return attachment;
}

// The dict object of a proxy (every kind but list and queue items).
class MgrDict {
 public:
  MgrDict(py::handle server, py::handle name)
      : bound_(
            SharedAttachment(server), [n = ToText(name, "name")](shm::Segment* seg, shm::Dict* d) {
              return shm::Dict::Open(seg, n, shm::OpenMode::kOpenExisting, shm::DictOptions(), d);
            }) {}

  // False when absent.
  bool Get(std::string_view key, shm::DictValue* value) {
    bool found = false;
    bound_.RunFast([&](shm::Dict& d) {
      shm::Status s = d.Get(key, value);
      found = s.ok();
      return s.IsNotFound() ? shm::Status::OK() : s;
    });
    return found;
  }
  // mode kAdd: false when present; if_version: false on a mismatch.
  bool Set(std::string_view key, std::string_view value, shm::SetMode mode,
           std::optional<uint64_t> if_version = std::nullopt) {
    shm::SetOptions options;
    options.mode = mode;
    options.if_version = if_version;
    bool applied = true;
    bound_.RunFast([&](shm::Dict& d) {
      shm::Status s = d.Set(key, value, options);
      if (s.IsAlreadyExists() || (s.IsConflict() && if_version)) {
        applied = false;
        return shm::Status::OK();
      }
      return s;
    });
    return applied;
  }
  // False when absent (or, with if_version, changed).
  bool Delete(std::string_view key, std::optional<uint64_t> if_version = std::nullopt) {
    bool deleted = false;
    bound_.RunFast([&](shm::Dict& d) {
      shm::Status s = d.Delete(key, if_version);
      deleted = s.ok();
      return s.IsNotFound() || s.IsConflict() ? shm::Status::OK() : s;
    });
    return deleted;
  }
  // Rewrites the entry's value record in place of its old one, keeping its order and key (one
  // read-modify-write under the dict's lock); false when the key is absent (nothing written).
  bool ReplaceValue(std::string_view key, std::string_view value_record, bool* malformed) {
    bool present = false;
    bound_.RunFast([&](shm::Dict& d) {
      return d.Update(key, [&](const shm::DictValue* current, shm::DictUpdate* update) {
        present = current != nullptr;
        EntryView old;
        if (!present || !ParseEntry(current->data, &old)) {
          *malformed = present;
          update->write = false;
          return shm::Status::OK();
        }
        update->data.assign(current->data, 0, kEntryHeader + old.key.size());
        update->data.append(value_record);
        update->keep_expiry = true;
        return shm::Status::OK();
      });
    });
    return present && !*malformed;
  }
  int64_t Incr(std::string_view key, int64_t by) {
    int64_t result = 0;
    bound_.RunFast([&](shm::Dict& d) { return d.Incr(key, by, 0, 0, &result); });
    return result;
  }
  // Whether a sleeper counted itself in `!w` (manager.py's _Blocking._wait_until).
  bool HasWaiters() {
    shm::DictValue v;
    return Get("!w", &v) && !v.data.empty() && v.data != "0" && v.data[0] != '-';
  }

 private:
  Bound<shm::Dict> bound_;
};

// A list object: a ListProxy's items or a Queue's.
class MgrList {
 public:
  MgrList(py::handle server, py::handle name)
      : bound_(
            SharedAttachment(server), [n = ToText(name, "name")](shm::Segment* seg, shm::List* l) {
              return shm::List::Open(seg, n, shm::OpenMode::kOpenExisting, shm::ListOptions(), l);
            }) {}

  // OutOfSpace (a full queue, a full segment) comes back as its status, for the caller to
  // hand the call to the slow path or raise.
  shm::Status Push(std::string_view item) {
    shm::Status result;
    bound_.RunFast([&](shm::List& l) {
      result = l.Push(shm::List::End::kRight, item);
      return result.IsOutOfSpace() ? shm::Status::OK() : result;
    });
    return result;
  }
  bool Pop(std::string* item) {
    bool got = false;
    bound_.RunFast([&](shm::List& l) {
      return l.Pop(shm::List::End::kLeft, std::chrono::milliseconds(0), item, &got);
    });
    return got;
  }
  bool At(int64_t index, std::string* item) {
    std::vector<std::string> items;
    bound_.RunFast([&](shm::List& l) { return l.Range(index, index, &items); });
    if (items.empty()) return false;
    *item = std::move(items[0]);
    return true;
  }

 private:
  Bound<shm::List> bound_;
};

// --- fast methods
// ---------------------------------------------------------------------------------

template <class T>
T* HandleOf(PyObject* self, PyTypeObject* type) {
  PyObject* h = PyObject_GetAttr(self, g.h);
  if (h == nullptr) return nullptr;
  T* cpp = CppOf<T>(h, type);
  Py_DECREF(h);  // The proxy keeps it.
  if (cpp == nullptr) PyErr_SetString(PyExc_TypeError, "not a shmstate.Manager proxy handle");
  return cpp;
}

// Calls self._<name>_slow(*args): the Python method the fast one stands in for.
PyObject* Slow(PyObject* self, const char* name, PyObject* const* args, Py_ssize_t nargs,
               PyObject* kwnames) {
  PyObject* fn = PyObject_GetAttrString(self, name);
  if (fn == nullptr) return nullptr;
  PyObject* result = PyObject_Vectorcall(fn, args, static_cast<size_t>(nargs), kwnames);
  Py_DECREF(fn);
  return result;
}

// A dict key's entry key (manager._encode_key): short str keys here, anything else there.
bool EntryKey(PyObject* key, std::string* out) {
  if (PyUnicode_CheckExact(key) && PyUnicode_IS_COMPACT_ASCII(key) &&
      PyUnicode_GET_LENGTH(key) < 240) {
    out->assign(1, 's');
    out->append(static_cast<const char*>(PyUnicode_DATA(key)),
                static_cast<size_t>(PyUnicode_GET_LENGTH(key)));
    return true;
  }
  PyObject* encoded = PyObject_CallOneArg(g.encode_key, key);
  if (encoded == nullptr) return false;
  out->assign(PyBytes_AS_STRING(encoded), static_cast<size_t>(PyBytes_GET_SIZE(encoded)));
  Py_DECREF(encoded);
  return true;
}

// The value of `key`, or null: with an error set, or (absent) without.
PyObject* DictLookup(PyObject* self, PyObject* key, bool* absent) {
  *absent = false;
  MgrDict* d = HandleOf<MgrDict>(self, g.dict_type);
  if (d == nullptr) return nullptr;
  return Guarded([&]() -> PyObject* {
    std::string ekey;
    if (!EntryKey(key, &ekey)) return nullptr;
    shm::DictValue value;
    if (!d->Get(ekey, &value)) {
      *absent = true;
      return nullptr;
    }
    EntryView entry;
    if (!ParseEntry(value.data, &entry)) return BadRecord();
    return FromRecord(entry.value);
  });
}

PyObject* DictGetItem(PyObject* self, PyObject* key) {
  bool absent;
  PyObject* value = DictLookup(self, key, &absent);
  if (absent) PyErr_SetObject(PyExc_KeyError, key);
  return value;
}

PyObject* DictGet(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* parsed[2];
  if (!ParseArgs("get", args, nargs, kwnames, {"key", "default"}, 1, parsed)) return nullptr;
  bool absent;
  PyObject* value = DictLookup(self, parsed[0], &absent);
  if (!absent) return value;
  PyObject* fallback = parsed[1] == nullptr ? Py_None : parsed[1];
  Py_INCREF(fallback);
  return fallback;
}

PyObject* DictContains(PyObject* self, PyObject* key) {
  MgrDict* d = HandleOf<MgrDict>(self, g.dict_type);
  if (d == nullptr) return nullptr;
  return Guarded([&]() -> PyObject* {
    std::string ekey;
    if (!EntryKey(key, &ekey)) return nullptr;
    shm::DictValue value;
    return PyBool_FromLong(d->Get(ekey, &value));
  });
}

// d[key] = value: an existing key keeps its order and first-written key (compare-and-set on the
// entry's version); a new one takes the next order and is added only if still absent.
PyObject* DictSetItem(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "__setitem__ takes a key and a value");
    return nullptr;
  }
  MgrDict* d = HandleOf<MgrDict>(self, g.dict_type);
  if (d == nullptr) return nullptr;
  return Guarded([&]() -> PyObject* {
    std::string ekey, value_record, key_record, entry;
    if (!EntryKey(args[0], &ekey) || !AppendRecord(args[1], &value_record)) return nullptr;
    while (true) {
      bool malformed = false;
      if (d->ReplaceValue(ekey, value_record, &malformed)) break;
      if (malformed) return BadRecord();
      if (key_record.empty() && !AppendRecord(args[0], &key_record)) return nullptr;
      int64_t order = d->Incr("!order", 1);
      MakeEntry(order, key_record, value_record, &entry);
      if (d->Set(ekey, entry, shm::SetMode::kAdd)) break;  // Else added meanwhile: replace it.
    }
    Py_RETURN_NONE;
  });
}

// The `v` entry of a Value or an Event.
PyObject* ValueGet(PyObject* self, PyObject* = nullptr) {
  MgrDict* d = HandleOf<MgrDict>(self, g.dict_type);
  if (d == nullptr) return nullptr;
  return Guarded([&]() -> PyObject* {
    shm::DictValue value;
    if (!d->Get("v", &value)) {
      PyErr_SetString(PyExc_ReferenceError, "the managed object no longer exists");
      return nullptr;
    }
    return FromRecord(value.data);
  });
}

PyObject* ValueSet(PyObject* self, PyObject* value) {
  MgrDict* d = HandleOf<MgrDict>(self, g.dict_type);
  if (d == nullptr) return nullptr;
  return Guarded([&]() -> PyObject* {
    std::string record;
    if (!AppendRecord(value, &record)) return nullptr;
    d->Set("v", record, shm::SetMode::kSet);
    Py_RETURN_NONE;
  });
}

PyObject* ValueGetter(PyObject* self, void*) { return ValueGet(self); }
int ValueSetter(PyObject* self, PyObject* value, void*) {
  if (value == nullptr) {
    PyErr_SetString(PyExc_AttributeError, "can't delete attribute");
    return -1;
  }
  PyObject* done = ValueSet(self, value);
  if (done == nullptr) return -1;
  Py_DECREF(done);
  return 0;
}

// Event.set(): the value, then a wake if anybody sleeps.
PyObject* EventSet(PyObject* self, PyObject*) {
  MgrDict* d = HandleOf<MgrDict>(self, g.dict_type);
  if (d == nullptr) return nullptr;
  PyObject* done = ValueSet(self, Py_True);
  if (done == nullptr) return nullptr;
  Py_DECREF(done);
  bool waiters = false;
  PyObject* ok = Guarded([&]() -> PyObject* {
    waiters = d->HasWaiters();
    Py_RETURN_NONE;
  });
  if (ok == nullptr) return nullptr;
  Py_DECREF(ok);
  if (waiters) return PyObject_CallMethod(self, "_wake", nullptr);
  Py_RETURN_NONE;
}

// A Lock's holder entry `h` holds this process's owner record (manager._process_owner); the
// record is computed once per process (a fork starts over).
PyObject* g_owner_record = nullptr;
void ForgetOwner() { g_owner_record = nullptr; }  // In the child: the parent's stays referenced.

bool OwnerRecord(std::string_view* out) {
  if (g_owner_record == nullptr) {
    g_owner_record = PyObject_CallNoArgs(g.owner);
    if (g_owner_record == nullptr) return false;
  }
  *out = std::string_view(PyBytes_AS_STRING(g_owner_record),
                          static_cast<size_t>(PyBytes_GET_SIZE(g_owner_record)));
  return true;
}

// An RLock's holder entry (manager._rlock_value): this thread's key (the process's owner record
// and the thread's ident) and the count, little-endian.
bool RLockKey(std::string* key) {
  std::string_view owner;
  if (!OwnerRecord(&owner)) return false;
  key->assign(owner);
  PutU64(key, static_cast<uint64_t>(PyThread_get_thread_ident()));
  return true;
}

// The count of `holder` if this thread (`key`) holds the RLock, else 0.
uint64_t MyCount(const std::string& holder, const std::string& key) {
  if (holder.size() != key.size() + 8 || holder.compare(0, key.size(), key) != 0) return 0;
  return GetU64(holder.data() + key.size());
}

// RLock.acquire() without arguments: an add-if-absent (*took), or this thread's count + 1 (a
// compare-and-set). False when neither applied (the caller runs the Python method) or on an
// error (set).
bool RLockTryAcquire(MgrDict* d, bool* took) {
  std::string key, value;
  if (!RLockKey(&key)) return false;
  value = key;
  PutU64(&value, 1);
  PyObject* ok = Guarded([&]() -> PyObject* {
    if (d->Set("h", value, shm::SetMode::kAdd)) {
      *took = true;
      Py_RETURN_TRUE;
    }
    shm::DictValue current;
    uint64_t count = 0;
    if (d->Get("h", &current) && (count = MyCount(current.data, key)) != 0) {
      value = key;
      PutU64(&value, count + 1);
      if (d->Set("h", value, shm::SetMode::kSet, current.version)) Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
  });
  if (ok == nullptr) return false;
  const bool result = ok == Py_True;
  Py_DECREF(ok);
  return result;
}

// RLock.release() by its holding thread: its count - 1, or the entry's delete at 1 (both
// compare-and-set on the version read). False when neither applied (the caller runs the Python
// method, which raises or retries) or on an error (set).
bool RLockTryRelease(MgrDict* d, bool* waiters) {
  std::string key;
  if (!RLockKey(&key)) return false;
  PyObject* ok = Guarded([&]() -> PyObject* {
    shm::DictValue current;
    uint64_t count = 0;
    if (!d->Get("h", &current) || (count = MyCount(current.data, key)) == 0) Py_RETURN_FALSE;
    if (count > 1) {
      std::string value = key;
      PutU64(&value, count - 1);
      return PyBool_FromLong(d->Set("h", value, shm::SetMode::kSet, current.version));
    }
    if (!d->Delete("h", current.version)) Py_RETURN_FALSE;
    *waiters = d->HasWaiters();
    Py_RETURN_TRUE;
  });
  if (ok == nullptr) return false;
  const bool result = ok == Py_True;
  Py_DECREF(ok);
  return result;
}

// Lock.acquire() without arguments: one add-if-absent (an RLock: RLockTryAcquire); else (held,
// a timeout) the Python method's rules.
PyObject* LockAcquire(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  if (nargs != 0 || kwnames != nullptr) return Slow(self, "_acquire_slow", args, nargs, kwnames);
  PyObject* rlock = PyObject_GetAttr(self, g.rlock);
  if (rlock == nullptr) return nullptr;
  const bool is_rlock = rlock == Py_True;
  Py_DECREF(rlock);
  MgrDict* d = HandleOf<MgrDict>(self, g.dict_type);
  if (d == nullptr) return nullptr;
  if (is_rlock) {
    bool took = false;
    if (!RLockTryAcquire(d, &took)) {
      return PyErr_Occurred() ? nullptr : Slow(self, "_acquire_slow", args, nargs, kwnames);
    }
    if (took && PyObject_SetAttr(self, g.owner_died, Py_False) != 0) return nullptr;
    Py_RETURN_TRUE;
  }
  std::string_view owner;
  if (!OwnerRecord(&owner)) return nullptr;
  PyObject* added = Guarded(
      [&]() -> PyObject* { return PyBool_FromLong(d->Set("h", owner, shm::SetMode::kAdd)); });
  if (added != Py_True) {
    Py_XDECREF(added);
    return added == nullptr ? nullptr : Slow(self, "_acquire_slow", args, nargs, kwnames);
  }
  if (PyObject_SetAttr(self, g.owner_died, Py_False) != 0) {
    Py_DECREF(added);
    return nullptr;
  }
  return added;
}

PyObject* LockRelease(PyObject* self, PyObject*) {
  PyObject* rlock = PyObject_GetAttr(self, g.rlock);
  if (rlock == nullptr) return nullptr;
  const bool is_rlock = rlock == Py_True;
  Py_DECREF(rlock);
  MgrDict* d = HandleOf<MgrDict>(self, g.dict_type);
  if (d == nullptr) return nullptr;
  bool deleted = false, waiters = false;
  if (is_rlock) {
    if (!RLockTryRelease(d, &waiters)) {
      return PyErr_Occurred() ? nullptr : Slow(self, "_release_slow", nullptr, 0, nullptr);
    }
    if (waiters) return PyObject_CallMethod(self, "_wake", nullptr);
    Py_RETURN_NONE;
  }
  PyObject* ok = Guarded([&]() -> PyObject* {
    deleted = d->Delete("h");
    if (deleted) waiters = d->HasWaiters();
    Py_RETURN_NONE;
  });
  if (ok == nullptr) return nullptr;
  Py_DECREF(ok);
  if (!deleted) {
    PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
    return nullptr;
  }
  if (waiters) return PyObject_CallMethod(self, "_wake", nullptr);
  Py_RETURN_NONE;
}

PyObject* LockExit(PyObject* self, PyObject* const*, Py_ssize_t) {
  PyObject* done = LockRelease(self, nullptr);
  if (done == nullptr) return nullptr;
  Py_DECREF(done);
  Py_RETURN_NONE;
}

// list.append(item): one push.
PyObject* ListAppend(PyObject* self, PyObject* item) {
  MgrList* l = HandleOf<MgrList>(self, g.list_type);
  if (l == nullptr) return nullptr;
  return Guarded([&]() -> PyObject* {
    std::string record;
    if (!AppendRecord(item, &record)) return nullptr;
    Check(l->Push(record));
    Py_RETURN_NONE;
  });
}

// list[i] for an int i; slices and other indexes through the Python method.
PyObject* ListGetItem(PyObject* self, PyObject* index) {
  if (!PyLong_CheckExact(index)) return Slow(self, "_getitem_slow", &index, 1, nullptr);
  MgrList* l = HandleOf<MgrList>(self, g.list_type);
  if (l == nullptr) return nullptr;
  return Guarded([&]() -> PyObject* {
    int overflow = 0;
    long long i = PyLong_AsLongLongAndOverflow(index, &overflow);
    if (i == -1 && PyErr_Occurred()) return nullptr;
    std::string item;
    if (overflow != 0 || !l->At(i, &item)) {
      PyErr_SetString(PyExc_IndexError, "list index out of range");
      return nullptr;
    }
    return FromRecord(item);
  });
}

// Queue.put(item) and get() of a queue with no bound and no task count (`_fast`): one push or
// pop; a get that finds the queue empty, and every other form, through the Python method.
bool FastQueue(PyObject* self) {
  PyObject* fast = PyObject_GetAttr(self, g.fast);
  if (fast == nullptr) {
    PyErr_Clear();
    return false;
  }
  const bool result = fast == Py_True;
  Py_DECREF(fast);
  return result;
}

PyObject* QueuePut(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  if (nargs != 1 || kwnames != nullptr || !FastQueue(self)) {
    return Slow(self, "_put_slow", args, nargs, kwnames);
  }
  MgrList* l = HandleOf<MgrList>(self, g.list_type);
  if (l == nullptr) return nullptr;
  bool full = false;
  PyObject* done = Guarded([&]() -> PyObject* {
    std::string record;
    if (!AppendRecord(args[0], &record)) return nullptr;
    shm::Status s = l->Push(record);
    full = s.IsOutOfSpace();
    if (!full) Check(s);
    Py_RETURN_NONE;
  });
  if (done == nullptr || !full) return done;
  Py_DECREF(done);
  return Slow(self, "_put_slow", args, nargs, kwnames);  // queue.Full, as the Python put says.
}

PyObject* QueueGet(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  if (nargs != 0 || kwnames != nullptr || !FastQueue(self)) {
    return Slow(self, "_get_slow", args, nargs, kwnames);
  }
  MgrList* l = HandleOf<MgrList>(self, g.list_type);
  if (l == nullptr) return nullptr;
  bool got = false;
  PyObject* value = Guarded([&]() -> PyObject* {
    std::string item;
    got = l->Pop(&item);
    if (!got) Py_RETURN_NONE;
    return FromRecord(item);
  });
  if (value == nullptr || got) return value;
  Py_DECREF(value);
  return Slow(self, "_get_slow", args, nargs, kwnames);  // Empty: wait there.
}

PyMethodDef kDictFast[] = {
    {"__getitem__", reinterpret_cast<PyCFunction>(DictGetItem), METH_O, "d[key]"},
    {"__contains__", reinterpret_cast<PyCFunction>(DictContains), METH_O, "key in d"},
    {"__setitem__", AsCFunction(DictSetItem), METH_FASTCALL, "d[key] = value"},
    {"get", AsCFunction(DictGet), METH_FASTCALL | METH_KEYWORDS, "d.get(key, default=None)"},
    {nullptr, nullptr, 0, nullptr}};
PyMethodDef kValueFast[] = {
    {"get", reinterpret_cast<PyCFunction>(ValueGet), METH_NOARGS, "The value."},
    {"set", reinterpret_cast<PyCFunction>(ValueSet), METH_O, "Sets the value."},
    {nullptr, nullptr, 0, nullptr}};
PyGetSetDef kValueProperty = {"value", ValueGetter, ValueSetter, "The value.", nullptr};
PyMethodDef kEventFast[] = {
    {"is_set", reinterpret_cast<PyCFunction>(ValueGet), METH_NOARGS, "Whether it is set."},
    {"set", reinterpret_cast<PyCFunction>(EventSet), METH_NOARGS, "Sets it; wakes the waiters."},
    {nullptr, nullptr, 0, nullptr}};
PyMethodDef kLockFast[] = {
    {"acquire", AsCFunction(LockAcquire), METH_FASTCALL | METH_KEYWORDS, "acquire()"},
    {"release", reinterpret_cast<PyCFunction>(LockRelease), METH_NOARGS, "release()"},
    {"__enter__", AsCFunction(LockAcquire), METH_FASTCALL | METH_KEYWORDS, "acquire()"},
    {"__exit__", AsCFunction(LockExit), METH_FASTCALL, "release()"},
    {nullptr, nullptr, 0, nullptr}};
PyMethodDef kListFast[] = {
    {"append", reinterpret_cast<PyCFunction>(ListAppend), METH_O, "Appends one item."},
    {"__getitem__", reinterpret_cast<PyCFunction>(ListGetItem), METH_O, "l[i]"},
    {nullptr, nullptr, 0, nullptr}};
PyMethodDef kQueueFast[] = {
    {"put", AsCFunction(QueuePut), METH_FASTCALL | METH_KEYWORDS, "put(item, ...)"},
    {"get", AsCFunction(QueueGet), METH_FASTCALL | METH_KEYWORDS, "get(...)"},
    {nullptr, nullptr, 0, nullptr}};

PyObject* NewRef(const py::object& o) { return o.inc_ref().ptr(); }

void Install(const py::dict& classes, const py::object& encode_key, const py::object& owner) {
  py::module_ pickle = py::module_::import("pickle");
  g.dumps = NewRef(pickle.attr("dumps"));
  g.loads = NewRef(pickle.attr("loads"));
  g.protocol = NewRef(pickle.attr("HIGHEST_PROTOCOL"));
  g.encode_key = NewRef(encode_key);
  g.owner = NewRef(owner);
  g.h = PyUnicode_InternFromString("_h");
  g.rlock = PyUnicode_InternFromString("_rlock");
  g.owner_died = PyUnicode_InternFromString("owner_died");
  g.fast = PyUnicode_InternFromString("_fast");
  g.dict_type = reinterpret_cast<PyTypeObject*>(py::type::of<MgrDict>().ptr());
  g.list_type = reinterpret_cast<PyTypeObject*>(py::type::of<MgrList>().ptr());
  pthread_atfork(nullptr, nullptr, ForgetOwner);
  InstallMethods(classes["dict"], kDictFast);
  InstallMethods(classes["Value"], kValueFast);
  InstallGetSet(classes["Value"], &kValueProperty);
  InstallMethods(classes["Event"], kEventFast);
  InstallMethods(classes["Lock"], kLockFast);
  InstallMethods(classes["list"], kListFast);
  InstallMethods(classes["Queue"], kQueueFast);
}

}  // namespace

void RegisterManager(py::module_& m) {
  py::class_<MgrDict, std::shared_ptr<MgrDict>>(m, "_MgrDict")
      .def(py::init<py::handle, py::handle>(), py::arg("server"), py::arg("name"));
  py::class_<MgrList, std::shared_ptr<MgrList>>(m, "_MgrList")
      .def(py::init<py::handle, py::handle>(), py::arg("server"), py::arg("name"));
  m.def(
      "_mgr_dump",
      [](py::handle obj) {
        std::string out;
        if (!AppendRecord(obj.ptr(), &out)) throw py::error_already_set();
        return py::reinterpret_steal<py::object>(ToPyBytes(out));
      },
      py::arg("value"), "The stored record of a value (docs/manager.md).");
  m.def(
      "_mgr_load",
      [](py::handle data) {
        std::string record = ToBytes(data, "record");
        PyObject* obj = FromRecord(record);
        if (obj == nullptr) throw py::error_already_set();
        return py::reinterpret_steal<py::object>(obj);
      },
      py::arg("record"), "The value of a stored record.");
  m.def(
      "_mgr_entry",
      [](int64_t order, py::handle key, py::handle value) {
        std::string key_record, value_record, out;
        if (!AppendRecord(key.ptr(), &key_record) || !AppendRecord(value.ptr(), &value_record)) {
          throw py::error_already_set();
        }
        MakeEntry(order, key_record, value_record, &out);
        return py::reinterpret_steal<py::object>(ToPyBytes(out));
      },
      py::arg("order"), py::arg("key"), py::arg("value"), "A managed dict's entry.");
  m.def(
      "_mgr_entry_load",
      [](py::handle data) {
        std::string bytes = ToBytes(data, "entry");
        EntryView entry;
        if (!ParseEntry(bytes, &entry)) throw py::value_error("not a managed dict's entry");
        py::object key = py::reinterpret_steal<py::object>(FromRecord(entry.key));
        if (!key) throw py::error_already_set();
        py::object value = py::reinterpret_steal<py::object>(FromRecord(entry.value));
        if (!value) throw py::error_already_set();
        return py::make_tuple(entry.order, key, value);
      },
      py::arg("entry"), "(order, key, value) of a managed dict's entry.");
  m.def("_install_manager_fast_paths", &Install, py::arg("classes"), py::arg("encode_key"),
        py::arg("process_owner"));
}

}  // namespace shmstate
