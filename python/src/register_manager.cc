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

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "attachment.h"
#include "bound.h"
#include "convert.h"
#include "fast_call.h"
#include "py_wake_word.h"
#include "shm/dict.h"
#include "shm/list.h"

namespace py = pybind11;

namespace shmstate {
namespace {

constexpr char kNone = 'N', kTrue = 'T', kFalse = 'F', kInt = 'i', kFloat = 'f', kStr = 's',
               kBytes = 'b', kPickle = 'p', kEntry = 'E';
// A managed dict's entry: kEntry, its insertion order (8 bytes, little endian), the size of its
// key's record (4 bytes), that record, then the value's record.
constexpr size_t kEntryOrderOffset = 1, kEntryOrderSize = 8;
constexpr size_t kEntryHeader = kEntryOrderOffset + kEntryOrderSize + 4;

// Python objects the fast paths use, set once by _install_manager_fast_paths.
struct Globals {
  PyObject* dumps = nullptr;       // pickle.dumps
  PyObject* loads = nullptr;       // pickle.loads
  PyObject* protocol = nullptr;    // pickle.HIGHEST_PROTOCOL
  PyObject* encode_key = nullptr;  // manager._encode_key
  PyObject* owner = nullptr;       // manager._process_owner
  PyObject* word = nullptr;        // Interned attribute names.
  PyObject* delitem = nullptr;
  // Offsets of the proxies' __slots__ members the fast methods read on every call (a member at
  // a fixed offset costs a load; a lookup by name, a type and an instance dict lookup).
  Py_ssize_t h_slot = 0;           // BaseProxy._h: the native handle.
  Py_ssize_t word_slot = 0;        // BaseProxy._word_: the wake word, None until first used.
  Py_ssize_t owner_died_slot = 0;  // AcquirerProxy.owner_died.
  Py_ssize_t fast_slot = 0;        // QueueProxy._fast.
};
Globals g;

// --- scratch
// --------------------------------------------------------------------------------------

// A T (a std::string, a DictValue) taken from a small per-process pool and given back at scope
// exit, so a warm fast call allocates nothing on the heap: a record, a key or a value read
// reuses the capacity a previous call left. Leased rather than static because a call may run
// Python code (a pickle's __reduce__) that calls another proxy. The GIL guards the pool.
template <class T>
class Leased {
 public:
  Leased() {
    std::vector<T*>& pool = Pool();
    if (pool.empty()) {
      value_ = new T();
    } else {
      value_ = pool.back();
      pool.pop_back();
      Clear(value_);
    }
  }
  ~Leased() {
    std::vector<T*>& pool = Pool();
    if (pool.size() < kPoolSize && Capacity(*value_) <= kKeepBytes) {
      pool.push_back(value_);  // Within the reserved capacity: no allocation.
    } else {
      delete value_;
    }
  }
  Leased(const Leased&) = delete;
  Leased& operator=(const Leased&) = delete;
  T* get() { return value_; }
  T* operator->() { return value_; }
  T& operator*() { return *value_; }

 private:
  static constexpr size_t kPoolSize = 16;
  static constexpr size_t kKeepBytes = 64 << 10;  // A large value's buffer goes back to malloc.
  static std::vector<T*>& Pool() {
    static auto* pool = [] {  // Never destroyed: used until the very exit.
      auto* p = new std::vector<T*>();
      p->reserve(kPoolSize);
      return p;
    }();
    return *pool;
  }
  static void Clear(std::string* s) { s->clear(); }
  static void Clear(shm::DictValue* v) { v->data.clear(); }
  static size_t Capacity(const std::string& s) { return s.capacity(); }
  static size_t Capacity(const shm::DictValue& v) { return v.data.capacity(); }
  T* value_;
};

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
  out->order = static_cast<int64_t>(GetU64(e.data() + kEntryOrderOffset));
  uint32_t klen = 0;
  for (size_t i = 0; i < 4; ++i) {
    klen |= uint32_t{static_cast<unsigned char>(e[kEntryOrderOffset + kEntryOrderSize + i])}
            << (8 * i);
  }
  if (e.size() - kEntryHeader < klen) return false;
  out->key = e.substr(kEntryHeader, klen);
  out->value = e.substr(kEntryHeader + klen);
  return true;
}

// Writes `order` into the entry `entry` (whose header is whole).
void SetEntryOrder(int64_t order, char* entry) {
  for (size_t i = 0; i < kEntryOrderSize; ++i) {
    entry[kEntryOrderOffset + i] = static_cast<char>(static_cast<uint64_t>(order) >> (8 * i));
  }
}

// Starts `out` as an entry with `order` whose key record has `key_size` bytes: the header, in one
// append. The key record and the value record follow.
void StartEntry(int64_t order, uint32_t key_size, std::string* out) {
  char header[kEntryHeader] = {kEntry};
  SetEntryOrder(order, header);
  for (size_t i = 0; i < 4; ++i) {
    header[kEntryOrderOffset + kEntryOrderSize + i] = static_cast<char>(key_size >> (8 * i));
  }
  out->assign(header, sizeof header);
}

// The entry with `order`, the key record `key` and the value record `value`.
void MakeEntry(int64_t order, std::string_view key, std::string_view value, std::string* out) {
  StartEntry(order, static_cast<uint32_t>(key.size()), out);
  out->append(key);
  out->append(value);
}

// The object of the record `r` when making it can run no Python code and raise nothing but
// MemoryError (None, bool, an int or a float of exactly 8 bytes, bytes, ASCII str; a new
// reference), else null with no error set (the caller copies the record and uses FromRecord).
// Safe on bytes a concurrent writer is changing: at worst a wrong object, which the caller drops.
PyObject* FromRecordInPlace(std::string_view r) {
  if (r.empty()) return nullptr;
  const char* p = r.data() + 1;
  const size_t n = r.size() - 1;
  switch (r[0]) {
    case kNone:
    case kTrue:
    case kFalse:
    case kBytes:
      return n == 0 || r[0] == kBytes ? FromRecord(r) : nullptr;
    case kInt:
    case kFloat:
      return n == 8 ? FromRecord(r) : nullptr;
    case kStr: {
      unsigned char high = 0;
      for (size_t i = 0; i < n; ++i) high |= static_cast<unsigned char>(p[i]);
      if (high >= 0x80) return nullptr;  // UTF-8 beyond ASCII: decoding may fail.
      PyObject* str = PyUnicode_New(static_cast<Py_ssize_t>(n), 127);
      if (str != nullptr) std::memcpy(PyUnicode_1BYTE_DATA(str), p, n);
      return str;
    }
    default:
      return nullptr;
  }
}

// The value of a managed dict's entry (or, with kRecord, of an entry that is a bare record: the
// `v` of a Value or an Event), read by Dict::Read straight from the segment: an immutable value
// is built from the segment's bytes (one copy), any other record is copied out and made after the
// read (a pickle runs Python code, which must not run inside the library's call, nor twice). A
// read without the lock may call Take with an entry a writer is changing, then again under the
// lock: an entry that does not parse asks for that retry (Internal), and the last call's value
// is the answer.
class EntryValueReader : public shm::DictReader {
 public:
  enum Kind { kDictEntry, kRecord };
  explicit EntryValueReader(std::string* record, Kind kind = kDictEntry)
      : record_(record), kind_(kind) {}
  ~EntryValueReader() override { Py_XDECREF(value_); }
  EntryValueReader(const EntryValueReader&) = delete;
  EntryValueReader& operator=(const EntryValueReader&) = delete;

  shm::Status Take(std::string_view data, std::string_view, uint64_t, int64_t) override {
    Py_CLEAR(value_);
    record_->clear();
    malformed_ = false;
    if (no_memory_) PyErr_Clear();  // A retry under the lock: that error was the last try's.
    no_memory_ = false;
    EntryView entry;
    if (kind_ == kRecord) {
      entry.value = data;
    } else if (!ParseEntry(data, &entry)) {
      malformed_ = true;
      return shm::Status::Internal("not a managed dict's entry");
    }
    value_ = FromRecordInPlace(entry.value);
    if (value_ == nullptr) {
      if (PyErr_Occurred()) {  // MemoryError.
        no_memory_ = true;
        return shm::Status::Internal("out of memory");
      }
      record_->assign(entry.value);
    }
    return shm::Status::OK();
  }
  // After a Read that answered OK: the value (a new reference), or null with an error set.
  PyObject* Value() {
    if (value_ != nullptr) return std::exchange(value_, nullptr);
    return FromRecord(*record_);
  }
  bool malformed() const { return malformed_; }

 private:
  std::string* record_;
  const Kind kind_;
  PyObject* value_ = nullptr;
  bool malformed_ = false;
  bool no_memory_ = false;  // The last Take set MemoryError.
};

// --- handles
// --------------------------------------------------------------------------------------

// The dict object of a proxy (every kind but list and queue items).
class MgrDict {
 public:
  static inline PyTypeObject* type = nullptr;  // Its Python class, set by Install.

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
  // The value of the entry `key` into `reader`: false when absent. A malformed entry or a
  // MemoryError ends the read with the reader saying so (no exception).
  bool ReadEntryValue(std::string_view key, EntryValueReader* reader) {
    bool found = false;
    bound_.RunFast([&](shm::Dict& d) {
      shm::Status s = d.Read(key, reader);
      found = s.ok();
      return s.IsNotFound() || reader->malformed() || PyErr_Occurred() ? shm::Status::OK() : s;
    });
    return found;
  }
  // The value record of `key` (the `v` of a Value or an Event) into a new object; null with an
  // error set, or without one when absent.
  PyObject* GetRecord(std::string_view key) {
    Leased<std::string> record;
    EntryValueReader reader(record.get(), EntryValueReader::kRecord);
    const bool found = ReadEntryValue(key, &reader);
    return found && !PyErr_Occurred() ? reader.Value() : nullptr;
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
  enum class Rewrite { kWritten, kAbsent, kForeign };
  // Rewrites the existing entry `key` with `entry`, keeping the current entry's order (its bytes
  // 1..8) and expiry in the same commit: kAbsent when the key is absent, kForeign (nothing
  // written) when the current value is not a managed dict's entry.
  Rewrite RewriteKeepingOrder(std::string_view key, std::string_view entry) {
    shm::SetOptions options;
    options.mode = shm::SetMode::kReplace;
    options.keep_expiry = true;
    options.keep_offset = kEntryOrderOffset;  // After the tag, which must match.
    options.keep_length = kEntryOrderSize;
    Rewrite result = Rewrite::kWritten;
    bound_.RunFast([&](shm::Dict& d) {
      shm::Status s = d.Set(key, entry, options);
      if (s.IsNotFound() || s.IsConflict()) {
        result = s.IsNotFound() ? Rewrite::kAbsent : Rewrite::kForeign;
        return shm::Status::OK();
      }
      return s;
    });
    return result;
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
    struct Change {
      std::string_view value_record;
      bool present = false;
      bool malformed = false;
    } change{value_record};
    // Dict::Update takes the callback by reference (FunctionRef): no copy, no allocation per call.
    auto rewrite = [c = &change](const shm::DictValue* current, shm::DictUpdate* update) {
      c->present = current != nullptr;
      EntryView old;
      if (!c->present || !ParseEntry(current->data, &old)) {
        c->malformed = c->present;
        update->write = false;
        return shm::Status::OK();
      }
      update->data.reserve(kEntryHeader + old.key.size() + c->value_record.size());
      update->data.assign(current->data, 0, kEntryHeader + old.key.size());
      update->data.append(c->value_record);
      update->keep_expiry = true;
      return shm::Status::OK();
    };
    bound_.RunFast([&](shm::Dict& d) { return d.Update(key, rewrite); });
    *malformed = change.malformed;
    return change.present && !change.malformed;
  }
  int64_t Incr(std::string_view key, int64_t by) {
    int64_t result = 0;
    bound_.RunFast([&](shm::Dict& d) { return d.Incr(key, by, 0, 0, &result); });
    return result;
  }
  // Whether a sleeper counted itself in `!w` (manager.py's _Blocking._wait_until).
  bool HasWaiters() {
    // The count as read, straight from the segment (the last Take's answer, as in Read).
    struct Positive : shm::DictReader {
      bool positive = false;
      shm::Status Take(std::string_view data, std::string_view, uint64_t, int64_t) override {
        positive = !data.empty() && data != "0" && data[0] != '-';
        return shm::Status::OK();
      }
    } count;
    bool found = false;
    bound_.RunFast([&](shm::Dict& d) {
      shm::Status s = d.Read("!w", &count);
      found = s.ok();
      return s.IsNotFound() ? shm::Status::OK() : s;
    });
    return found && count.positive;
  }

 private:
  Bound<shm::Dict> bound_;
};

// A list object: a ListProxy's items or a Queue's.
class MgrList {
 public:
  static inline PyTypeObject* type = nullptr;

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
//
// Every fast method is body(handle) for the proxy's native handle (`_h`, a MgrDict or a MgrList)
// under Guarded: OnHandle below is the one frame around them.

// The handle of kind H of a proxy (borrowed: the proxy keeps it), or null with an error set.
// `self` is an instance of a proxy class (a method descriptor checks that before the call), so
// the slot is there.
template <class H>
H* HandleOf(PyObject* self) {
  PyObject* h = SlotValue(self, g.h_slot);
  if (h == nullptr) return nullptr;
  H* cpp = CppOf<H>(h, H::type);
  if (cpp == nullptr) PyErr_SetString(PyExc_TypeError, "not a shmstate.Manager proxy handle");
  return cpp;
}

// body(H&) -> PyObject* (a new reference, or null with an error set) on the proxy's handle.
template <class H, class F>
PyObject* OnHandle(PyObject* self, F&& body) {
  H* h = HandleOf<H>(self);
  if (h == nullptr) return nullptr;
  return Guarded([&]() -> PyObject* { return body(*h); });
}

// fn() -> void under Guarded: false with the error set.
template <class F>
bool Done(F&& fn) {
  PyObject* none = Guarded([&]() -> PyObject* {
    fn();
    Py_RETURN_NONE;
  });
  if (none == nullptr) return false;
  Py_DECREF(none);
  return true;
}

// The proxy's wake word (`_word`, made on first use; borrowed: the proxy keeps it), or null with
// an error set.
PyWakeWord* WordOf(PyObject* self) {
  PyObject* made = SlotValue(self, g.word_slot);
  if (made == nullptr) return nullptr;
  if (Py_TYPE(made) == PyWakeWord::type) return CppOf<PyWakeWord>(made, PyWakeWord::type);
  PyObject* word = PyObject_GetAttr(self, g.word);  // The property makes it.
  if (word == nullptr) return nullptr;
  PyWakeWord* cpp = CppOf<PyWakeWord>(word, PyWakeWord::type);
  Py_DECREF(word);
  if (cpp == nullptr) PyErr_SetString(PyExc_TypeError, "not a shmstate.Manager wake word");
  return cpp;
}

// After a change a sleeper may wait for (_Blocking._wake, LockRelease): wakes the word's
// sleepers, with no system call if each saw the change while spinning.
PyObject* Wake(PyObject* self) {
  PyWakeWord* word = WordOf(self);
  if (word == nullptr || !Done([&] { word->WakeWaiters(); })) return nullptr;
  Py_RETURN_NONE;
}

// The longest single sleep of a native wait (manager._FOREVER): a sleep begun in a generation
// the server has left is bounded by it (py_wake_word.h).
constexpr std::chrono::seconds kLongestSleep{2};

// Whether the entry key of `key` is made here rather than by manager._encode_key: a short ASCII
// str, whose entry key is 's' and its text.
bool IsShortStrKey(PyObject* key) {
  return PyUnicode_CheckExact(key) && PyUnicode_IS_COMPACT_ASCII(key) &&
         PyUnicode_GET_LENGTH(key) < 240;
}

// A dict key's entry key (manager._encode_key): short str keys here, anything else there.
bool EntryKey(PyObject* key, std::string* out) {
  if (IsShortStrKey(key)) {
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
  return OnHandle<MgrDict>(self, [&](MgrDict& d) -> PyObject* {
    Leased<std::string> ekey, record;
    if (!EntryKey(key, ekey.get())) return nullptr;
    EntryValueReader reader(record.get());
    const bool found = d.ReadEntryValue(*ekey, &reader);
    if (PyErr_Occurred()) return nullptr;
    if (reader.malformed()) return BadRecord();
    if (!found) {
      *absent = true;
      return nullptr;
    }
    return reader.Value();
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
  return OnHandle<MgrDict>(self, [&](MgrDict& d) -> PyObject* {
    Leased<std::string> ekey;
    Leased<shm::DictValue> value;
    if (!EntryKey(key, ekey.get())) return nullptr;
    return PyBool_FromLong(d.Get(*ekey, value.get()));
  });
}

// d[key] = value: an existing key keeps its order and first-written key, a new one takes the
// next order and is added only if still absent.

// For a key whose first-written key may be another type's (1, 1.0, True): the existing entry is
// read without the lock and rewritten, with its key record, if it still has the version read (a
// compare-and-set); one with an expiry (set by another front end) is rewritten under the lock by
// ReplaceValue, which keeps it. A race with another writer of the key retries.
PyObject* SetReadingEntry(MgrDict& d, PyObject* key, std::string_view ekey,
                          std::string_view value_record) {
  Leased<std::string> entry;
  std::optional<Leased<std::string>> key_record;  // Made for an insert only.
  while (true) {
    {
      Leased<shm::DictValue> current;
      if (d.Get(ekey, current.get())) {
        EntryView old;
        if (!ParseEntry(current->data, &old)) return BadRecord();
        if (current->expires_at_ms != 0) {
          bool malformed = false;
          if (d.ReplaceValue(ekey, value_record, &malformed)) break;
          if (malformed) return BadRecord();
          continue;  // Deleted meanwhile.
        }
        entry->assign(current->data, 0, kEntryHeader + old.key.size());
        entry->append(value_record);
        if (d.Set(ekey, *entry, shm::SetMode::kSet, current->version)) break;
        continue;  // Changed or deleted meanwhile.
      }
    }
    if (!key_record) {
      key_record.emplace();
      if (!AppendRecord(key, key_record->get())) return nullptr;
    }
    int64_t order = d.Incr("!order", 1);
    MakeEntry(order, **key_record, value_record, entry.get());
    if (d.Set(ekey, *entry, shm::SetMode::kAdd)) break;  // Else added meanwhile: replace it.
  }
  Py_RETURN_NONE;
}

// The entry of a short str key (the keys EntryKey encodes itself) with order 0 and no value
// record yet, and the size of its entry key (*key_size): false for any other key. Such a key's
// entry key is also its record, and only a str of that text has it, so every managed entry under it
// holds that same key record.
bool StrKeyEntry(PyObject* key, std::string* out, size_t* key_size) {
  if (!IsShortStrKey(key)) return false;
  const auto n = static_cast<size_t>(PyUnicode_GET_LENGTH(key));
  *key_size = 1 + n;
  StartEntry(0, static_cast<uint32_t>(*key_size), out);
  out->push_back(kStr);
  out->append(static_cast<const char*>(PyUnicode_DATA(key)), n);
  return true;
}

// For a short str key, whose `entry` (StrKeyEntry + the value record) is whole but for its
// order: an existing entry is rewritten by one Set that keeps its order (and expiry) from the
// current entry under the dict's lock (MgrDict::RewriteKeepingOrder), with no read before it; the
// new entry is allocated and filled before the lock is taken. An absent key is added with the
// next order, a race with another insert of it retrying.
PyObject* SetStrKey(MgrDict& d, PyObject* key, std::string* entry, size_t key_size) {
  const std::string_view ekey = std::string_view(*entry).substr(kEntryHeader, key_size);
  while (true) {
    const MgrDict::Rewrite done = d.RewriteKeepingOrder(ekey, *entry);
    if (done == MgrDict::Rewrite::kWritten) Py_RETURN_NONE;
    if (done == MgrDict::Rewrite::kForeign) {  // Not a managed entry: the read says what it is.
      return SetReadingEntry(d, key, ekey,
                             std::string_view(*entry).substr(kEntryHeader + key_size));
    }
    SetEntryOrder(d.Incr("!order", 1), entry->data());
    if (d.Set(ekey, *entry, shm::SetMode::kAdd)) Py_RETURN_NONE;  // Else added meanwhile.
  }
}

PyObject* DictSetItem(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "__setitem__ takes a key and a value");
    return nullptr;
  }
  return OnHandle<MgrDict>(self, [&](MgrDict& d) -> PyObject* {
    Leased<std::string> entry;
    size_t key_size = 0;
    if (StrKeyEntry(args[0], entry.get(), &key_size)) {
      if (!AppendRecord(args[1], entry.get())) return nullptr;
      return SetStrKey(d, args[0], entry.get(), key_size);
    }
    Leased<std::string> ekey, value_record;
    if (!EntryKey(args[0], ekey.get()) || !AppendRecord(args[1], value_record.get())) {
      return nullptr;
    }
    return SetReadingEntry(d, args[0], *ekey, *value_record);
  });
}

// The `v` entry of a Value or an Event.
PyObject* ValueGet(PyObject* self, PyObject* = nullptr) {
  return OnHandle<MgrDict>(self, [&](MgrDict& d) -> PyObject* {
    PyObject* value = d.GetRecord("v");
    if (value == nullptr && !PyErr_Occurred()) {
      PyErr_SetString(PyExc_ReferenceError, "the managed object no longer exists");
    }
    return value;
  });
}

PyObject* ValueSet(PyObject* self, PyObject* value) {
  return OnHandle<MgrDict>(self, [&](MgrDict& d) -> PyObject* {
    Leased<std::string> record;
    if (!AppendRecord(value, record.get())) return nullptr;
    d.Set("v", *record, shm::SetMode::kSet);
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
  MgrDict* d = HandleOf<MgrDict>(self);
  if (d == nullptr) return nullptr;
  PyObject* done = ValueSet(self, Py_True);
  if (done == nullptr) return nullptr;
  Py_DECREF(done);
  bool waiters = false;
  if (!Done([&] { waiters = d->HasWaiters(); })) return nullptr;
  if (waiters) return Wake(self);
  Py_RETURN_NONE;
}

PyObject* EventClear(PyObject* self, PyObject*) { return ValueSet(self, Py_False); }

// The timeout of wait(timeout=None) when it is None (*forever) or a finite int or float; false
// for any other form (the Python method's rules and errors apply then).
bool SimpleTimeout(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, bool* forever,
                   double* seconds) {
  PyObject* timeout = nullptr;
  if (nargs == 1 && kwnames == nullptr) {
    timeout = args[0];
  } else if (nargs == 0 && kwnames != nullptr && PyTuple_GET_SIZE(kwnames) == 1 &&
             PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "timeout") == 0) {
    timeout = args[0];
  } else if (nargs != 0 || kwnames != nullptr) {
    return false;
  }
  *forever = timeout == nullptr || timeout == Py_None;
  if (*forever) return true;
  if (!PyFloat_CheckExact(timeout) && !PyLong_CheckExact(timeout)) return false;
  *seconds = PyFloat_AsDouble(timeout);
  if (*seconds == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();  // An int too large for a double: the Python method's rules.
    return false;
  }
  return std::isfinite(*seconds);
}

using Clock = std::chrono::steady_clock;

// The loop of manager.py's _Blocking._wait_until without its Python frames: counted in `!w` (so
// that a change wakes), then the word's sequence, attempt(changed), and the word's wait (a spin
// of a few microseconds at most, then the futex sleep without the GIL: shm/wake_word.h) of at
// most `period`, until attempt gives its result or `deadline` passes (False). attempt(changed)
// returns a new reference, or null: with an error set (the loop ends), or without one (not yet);
// `changed` says whether the word moved during the last wait (false in the first round).
// Signals are handled after every wait, as between the Python loop's calls; the sleeper is
// uncounted on every way out.
template <class Attempt>
PyObject* WaitLoop(MgrDict* d, PyWakeWord* word, Clock::time_point deadline, Clock::duration period,
                   Attempt&& attempt) {
  if (!Done([&] { d->Incr("!w", 1); })) return nullptr;
  PyObject* result = nullptr;
  bool changed = false;
  while (true) {
    uint32_t seen = 0;
    if (!Done([&] { seen = word->Sequence(); })) break;
    result = attempt(changed);
    if (result != nullptr || PyErr_Occurred()) break;
    const Clock::duration remaining = deadline - Clock::now();
    if (remaining.count() <= 0) {
      result = Py_NewRef(Py_False);
      break;
    }
    if (!Done([&] { word->Wait(seen, std::min(remaining, period)); }) ||
        PyErr_CheckSignals() != 0 || !Done([&] { changed = word->Sequence() != seen; })) {
      break;
    }
  }
  PyObject *type, *value, *traceback;  // Uncounted whatever happened; the loop's error wins.
  PyErr_Fetch(&type, &value, &traceback);
  const bool uncounted = Done([&] { d->Incr("!w", -1); });
  if (type != nullptr) {
    Py_CLEAR(result);
    PyErr_Clear();
    PyErr_Restore(type, value, traceback);
    return nullptr;
  }
  if (!uncounted) Py_CLEAR(result);
  return result;
}

// Event.wait(timeout=None): true at once when the Event is set (one read); else WaitLoop on the
// value, for wait() and a timeout of None, an int or a float (other forms: the Python method).
PyObject* EventWait(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* set = ValueGet(self);
  if (set != Py_False) return set;  // Set (or not an Event's value: its error).
  Py_DECREF(set);
  bool forever = true;
  double seconds = 0;
  if (!SimpleTimeout(args, nargs, kwnames, &forever, &seconds)) {
    return Slow(self, "_wait_slow", args, nargs, kwnames);
  }
  if (!forever && seconds <= 0) Py_RETURN_FALSE;
  MgrDict* d = HandleOf<MgrDict>(self);
  PyWakeWord* word = d == nullptr ? nullptr : WordOf(self);
  if (word == nullptr) return nullptr;
  const Clock::time_point deadline =
      forever ? Clock::time_point::max()
              : Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(std::min(seconds, 1e9)));
  return WaitLoop(d, word, deadline, kLongestSleep, [&](bool) -> PyObject* {
    PyObject* value = ValueGet(self);
    if (value == nullptr || value == Py_True) return value;
    Py_DECREF(value);
    return nullptr;
  });
}

// An RLock's holder entry `h` starts with this process's owner record (manager._process_owner);
// the record is computed once per process (a fork starts over).
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
// compare-and-set). *applied false when neither applied (the caller runs the Python method).
// False on an error (set).
bool RLockTryAcquire(MgrDict& d, bool* applied, bool* took) {
  Leased<std::string> key, value;
  if (!RLockKey(key.get())) return false;
  return Done([&] {
    *value = *key;
    PutU64(value.get(), 1);
    if (d.Set("h", *value, shm::SetMode::kAdd)) {
      *applied = *took = true;
      return;
    }
    Leased<shm::DictValue> current;
    uint64_t count = 0;
    if (d.Get("h", current.get()) && (count = MyCount(current->data, *key)) != 0) {
      *value = *key;
      PutU64(value.get(), count + 1);
      *applied = d.Set("h", *value, shm::SetMode::kSet, current->version);
    }
  });
}

// RLock.release() by its holding thread: its count - 1, or the entry's delete at 1 (both
// compare-and-set on the version read). *applied false when neither applied (the caller runs
// the Python method, which raises or retries); *freed when the entry was deleted. False on an
// error (set).
bool RLockTryRelease(MgrDict& d, bool* applied, bool* freed) {
  Leased<std::string> key;
  if (!RLockKey(key.get())) return false;
  return Done([&] {
    Leased<shm::DictValue> current;
    uint64_t count = 0;
    if (!d.Get("h", current.get()) || (count = MyCount(current->data, *key)) == 0) return;
    if (count > 1) {
      Leased<std::string> value;
      *value = *key;
      PutU64(value.get(), count - 1);
      *applied = d.Set("h", *value, shm::SetMode::kSet, current->version);
    } else {
      *applied = *freed = d.Delete("h", current->version);
    }
  });
}

// owner_died = False after a take from a live holder (no write when it already is).
void NoOwnerDied(PyObject* self) { SetSlotBool(self, g.owner_died_slot, false); }

// RLock.acquire() without arguments: one add-if-absent, or this thread's count + 1
// (RLockTryAcquire); anything else (an RLock held by another thread, a timeout) follows the
// Python method's rules. (A Lock is a process lock: register_process_lock.cc.)
PyObject* LockAcquire(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  if (nargs != 0 || kwnames != nullptr) return Slow(self, "_acquire_slow", args, nargs, kwnames);
  bool applied = false, took = false;
  MgrDict* d = HandleOf<MgrDict>(self);
  if (d == nullptr || !RLockTryAcquire(*d, &applied, &took)) return nullptr;
  if (!applied) return Slow(self, "_acquire_slow", args, nargs, kwnames);
  if (took) NoOwnerDied(self);
  Py_RETURN_TRUE;
}

// RLock.release(): RLockTryRelease, then, once the entry is deleted, a wake whether or not
// anybody waits. The wake word's bump costs one atomic on a line both sides touch anyway, and a
// system call only for a waiter that marked the word before its sleep (FutexWakeIfWanted);
// reading the waiters' count `!w` instead cost a dict read, which under a concurrent acquire
// often finds its lock-free read unsure and takes the shard lock the other process is contending
// for.
PyObject* LockRelease(PyObject* self, PyObject*) {
  bool applied = false, freed = false;
  MgrDict* d = HandleOf<MgrDict>(self);
  if (d == nullptr || !RLockTryRelease(*d, &applied, &freed)) return nullptr;
  if (!applied) return Slow(self, "_release_slow", nullptr, 0, nullptr);
  if (freed) return Wake(self);
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
  return OnHandle<MgrList>(self, [&](MgrList& l) -> PyObject* {
    Leased<std::string> record;
    if (!AppendRecord(item, record.get())) return nullptr;
    Check(l.Push(*record));
    Py_RETURN_NONE;
  });
}

// list[i] for an int i; slices and other indexes through the Python method.
PyObject* ListGetItem(PyObject* self, PyObject* index) {
  if (!PyLong_CheckExact(index)) return Slow(self, "_getitem_slow", &index, 1, nullptr);
  return OnHandle<MgrList>(self, [&](MgrList& l) -> PyObject* {
    int overflow = 0;
    long long i = PyLong_AsLongLongAndOverflow(index, &overflow);
    if (i == -1 && PyErr_Occurred()) return nullptr;
    Leased<std::string> item;
    if (overflow != 0 || !l.At(i, item.get())) {
      PyErr_SetString(PyExc_IndexError, "list index out of range");
      return nullptr;
    }
    return FromRecord(*item);
  });
}

// Queue.put(item) and get() of a queue with no bound and no task count (`_fast`): one push or
// pop; a get that finds the queue empty, and every other form, through the Python method.
bool FastQueue(PyObject* self) {
  PyObject* fast = *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(self) + g.fast_slot);
  return fast == Py_True;  // Unset (null) before _set_extra: the Python method.
}

PyObject* QueuePut(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  if (nargs != 1 || kwnames != nullptr || !FastQueue(self)) {
    return Slow(self, "_put_slow", args, nargs, kwnames);
  }
  bool full = false;
  PyObject* done = OnHandle<MgrList>(self, [&](MgrList& l) -> PyObject* {
    Leased<std::string> record;
    if (!AppendRecord(args[0], record.get())) return nullptr;
    shm::Status s = l.Push(*record);
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
  bool got = false;
  PyObject* value = OnHandle<MgrList>(self, [&](MgrList& l) -> PyObject* {
    Leased<std::string> item;
    got = l.Pop(item.get());
    if (!got) Py_RETURN_NONE;
    return FromRecord(*item);
  });
  if (value == nullptr || got) return value;
  Py_DECREF(value);
  return Slow(self, "_get_slow", args, nargs, kwnames);  // Empty: wait there.
}

// d[key] = value and del d[key] from the type's slot (InstallSubscriptSlots); a delete is the
// Python __delitem__'s.
int DictAssSubscript(PyObject* self, PyObject* key, PyObject* value) {
  PyObject* result = nullptr;
  if (value == nullptr) {
    result = PyObject_CallMethodOneArg(self, g.delitem, key);
  } else {
    PyObject* args[] = {key, value};
    result = DictSetItem(self, args, 2);
  }
  if (result == nullptr) return -1;
  Py_DECREF(result);
  return 0;
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
    {"clear", reinterpret_cast<PyCFunction>(EventClear), METH_NOARGS, "Clears it."},
    {"wait", AsCFunction(EventWait), METH_FASTCALL | METH_KEYWORDS, "wait(timeout=None)"},
    {nullptr, nullptr, 0, nullptr}};
PyMethodDef kRLockFast[] = {
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
  g.word = PyUnicode_InternFromString("_word");
  g.h_slot = InheritedSlotOffset(classes["dict"], "_h");
  g.word_slot = InheritedSlotOffset(classes["dict"], "_word_");
  g.owner_died_slot = InheritedSlotOffset(classes["RLock"], "owner_died");
  g.fast_slot = InheritedSlotOffset(classes["Queue"], "_fast");
  g.delitem = PyUnicode_InternFromString("__delitem__");
  MgrDict::type = reinterpret_cast<PyTypeObject*>(py::type::of<MgrDict>().ptr());
  MgrList::type = reinterpret_cast<PyTypeObject*>(py::type::of<MgrList>().ptr());
  pthread_atfork(nullptr, nullptr, ForgetOwner);
  InstallMethods(classes["dict"], kDictFast);
  InstallMethods(classes["Value"], kValueFast);
  InstallGetSet(classes["Value"], &kValueProperty);
  InstallMethods(classes["Event"], kEventFast);
  InstallMethods(classes["RLock"], kRLockFast);
  InstallMethods(classes["list"], kListFast);
  InstallMethods(classes["Queue"], kQueueFast);
  // After the methods: setting __getitem__ on a class resets its slot to the by-name lookup.
  InstallSubscriptSlots(classes["dict"], DictGetItem, DictAssSubscript);
  InstallSubscriptSlots(classes["list"], ListGetItem, nullptr);
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
