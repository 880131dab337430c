// The bindings behind shmstate.Client.transaction (python/shmstate/__init__.py):
//  - _Transaction: one shm::Transaction (shm/transaction.h) on the segment the attachment used
//    when it began; opens the handles below, commits or aborts.
//  - _TxCounter, _TxDict, _TxList: the methods of _Counter, _Dict and _List, from the same
//    tables (method_tables.h), staged in the transaction (reads see its own writes), so the
//    shmstate.Counter, Dict and List wrappers work on them unchanged. What a transaction cannot do
//    (list a dict's keys, its stats, a list's range, a pop that waits) raises InvalidArgument.
//
// A conditional write (mode add/replace, if_version, cas) and a delete read the entry in the
// transaction first, so the answer they give (False: not written) is validated at commit like any
// read. Every call runs inside the segment's client gate; a segment the server is moving away from
// refuses it (nothing done) and dooms the transaction: Client.transaction runs fn again in the
// successor. Conflict dooms it too. Arguments go through convert.h, as every binding's do.
#include "register_tx.h"

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "convert.h"
#include "method_tables.h"
#include "shm/counter.h"
#include "shm/dict.h"
#include "shm/list.h"
#include "shm/segment.h"
#include "shm/transaction.h"

namespace py = pybind11;

namespace shmstate {
namespace {

using shm::Status;

[[noreturn]] void RaiseNotInTransaction(const std::string& what) {
  RaiseInvalid(what + " is not available inside a transaction");
}

// The proxies transactions of this process opened, by segment and name, so that a transaction
// does not take the registry lock to find an object an earlier one found. A proxy is reused while
// it is of the same segment and its object is still the one it opened (ObjectRef::live);
// otherwise it is opened again. The GIL guards the map.
template <class Proxy>
class OpenedObjects {
 public:
  static bool Find(const shm::Segment& segment, const std::string& name, Proxy* proxy) {
    auto it = map().find(Key{segment.shm_name(), name});
    if (it == map().end() || it->second.segment.lock().get() != &segment ||
        !it->second.proxy.ref().live()) {
      return false;
    }
    *proxy = it->second.proxy;
    return true;
  }
  static void Keep(const std::shared_ptr<shm::Segment>& segment, const std::string& name,
                   const Proxy& proxy) {
    if (map().size() >= kMaxEntries) map().clear();  // Bounded; opening again is cheap enough.
    map().insert_or_assign(Key{segment->shm_name(), name}, Entry{segment, proxy});
  }

 private:
  static constexpr size_t kMaxEntries = 4096;
  using Key = std::pair<std::string, std::string>;  // The segment's shm name, the object's.
  struct Entry {
    std::weak_ptr<shm::Segment> segment;
    Proxy proxy;
  };
  static std::map<Key, Entry>& map() {
    static auto* entries = new std::map<Key, Entry>();  // Never destroyed: no exit-order issue.
    return *entries;
  }
};

class PyTransaction {
 public:
  explicit PyTransaction(const std::shared_ptr<Attachment>& attachment)
      : attachment_(attachment), segment_(attachment->segment()), tx_(segment_.get()) {}

  // Runs fn(tx) -> Status as one client operation of this transaction.
  template <class F>
  void Run(F&& fn) {
    if (done_) RaiseInvalid("the transaction is over: use its handles only inside fn");
    Status s = segment_->EnterClientOp();
    if (s.ok()) {
      s = fn(tx_);
      segment_->LeaveClientOp();
    }
    if (s.IsPoisoned()) {
      moved_ = doomed_ = true;
      Raise(Status::Conflict("the server is moving its state: the transaction runs again there"));
    }
    if (s.IsConflict()) doomed_ = true;
    Check(s);
  }

  // Opens (creating) the object `name` in this transaction's segment; the proxy lives as long as
  // the transaction, which refers to it until it commits. Proxies are reused from transaction to
  // transaction (OpenedObjects) while their object is live.
  template <class Proxy, class Open>
  const Proxy* OpenObject(std::deque<Proxy>* store, const std::string& name, Open&& open) {
    Proxy proxy;
    if (!OpenedObjects<Proxy>::Find(*segment_, name, &proxy)) {
      Run([&](shm::Transaction&) { return open(segment_.get(), &proxy); });
      OpenedObjects<Proxy>::Keep(segment_, name, proxy);
    }
    store->push_back(std::move(proxy));
    return &store->back();
  }

  // True: applied. False: a conflict (or the server moved its state): nothing applied, run fn
  // again.
  bool Commit() {
    if (done_) RaiseInvalid("the transaction is over: it commits once");
    done_ = true;
    if (doomed_) return FollowIfMoved();
    Status s = segment_->EnterClientOp();
    if (s.ok()) {
      {
        py::gil_scoped_release nogil;  // Commit may wait for a lock another process holds.
        s = tx_.Commit();
      }
      segment_->LeaveClientOp();
    }
    if (s.IsPoisoned()) moved_ = true;
    if (s.IsConflict() || s.IsPoisoned()) return FollowIfMoved();
    Check(s);
    return true;
  }

  // Drops what was staged. True when the transaction was doomed (fn then runs again: what it
  // read may have been inconsistent).
  bool Abort() {
    done_ = true;
    tx_.Reset();
    FollowIfMoved();
    return doomed_;
  }

  std::deque<shm::Counter> counters;
  std::deque<shm::Dict> dicts;
  std::deque<shm::List> lists;
  const std::shared_ptr<shm::Segment>& segment() const { return segment_; }

 private:
  // Waits for the successor of a segment the server moved away from; false (run again).
  bool FollowIfMoved() {
    if (moved_) {
      Status followed;
      {
        py::gil_scoped_release nogil;
        followed = attachment_->Follow(segment_);
      }
      Check(followed);
      moved_ = false;
    }
    return false;
  }

  std::shared_ptr<Attachment> attachment_;
  std::shared_ptr<shm::Segment> segment_;  // The segment the transaction reads and writes.
  shm::Transaction tx_;
  bool done_ = false;    // Committed or aborted: no more calls.
  bool doomed_ = false;  // A conflict or a move seen: it cannot commit.
  bool moved_ = false;   // The segment refused an operation: follow before running again.
};

class PyTxCounter {
 public:
  PyTxCounter(std::shared_ptr<PyTransaction> tx, std::string name, int64_t init, int64_t ttl_ms)
      : tx_(std::move(tx)), name_(std::move(name)) {
    counter_ = tx_->OpenObject(&tx_->counters, name_, [&](shm::Segment* seg, shm::Counter* c) {
      return shm::Counter::Open(seg, name_, {shm::OpenMode::kCreateIfMissing, init, ttl_ms}, c);
    });
  }

  int64_t Value() {
    int64_t value = 0;
    tx_->Run([&](shm::Transaction& tx) { return tx.Get(*counter_, &value); });
    return value;
  }
  int64_t Incr(const py::handle& by_arg) {
    int64_t by = ToInt64(by_arg, "by");
    int64_t value = 0;
    tx_->Run([&](shm::Transaction& tx) { return tx.Add(*counter_, by, &value); });
    return value;
  }
  void Set(const py::handle& value_arg) {
    int64_t value = ToInt64(value_arg, "value");
    tx_->Run([&](shm::Transaction& tx) { return tx.Set(*counter_, value); });
  }
  bool Cas(const py::handle& expected_arg, const py::handle& desired_arg) {
    int64_t expected = ToInt64(expected_arg, "expected");
    int64_t desired = ToInt64(desired_arg, "value");
    if (Value() != expected) return false;
    tx_->Run([&](shm::Transaction& tx) { return tx.Set(*counter_, desired); });
    return true;
  }
  const std::string& name() const { return name_; }

 private:
  std::shared_ptr<PyTransaction> tx_;
  std::string name_;
  const shm::Counter* counter_ = nullptr;
};

class PyTxDict {
 public:
  PyTxDict(std::shared_ptr<PyTransaction> tx, std::string name, const shm::DictOptions& options)
      : tx_(std::move(tx)), name_(std::move(name)) {
    dict_ = tx_->OpenObject(&tx_->dicts, name_, [&](shm::Segment* seg, shm::Dict* d) {
      return shm::Dict::Open(seg, name_, shm::OpenMode::kCreateIfMissing, options, d);
    });
  }

  py::object Get(const py::handle& key, const py::handle& absent) {
    shm::DictValue value;
    if (!Read(ToKey(key, "key"), &value)) return py::reinterpret_borrow<py::object>(absent);
    return Bytes(value.data);
  }
  py::object GetEntry(const py::handle& key) {
    shm::DictValue value;
    if (!Read(ToKey(key, "key"), &value)) return py::none();
    return py::make_tuple(Bytes(value.data), value.version, value.expires_at_ms);
  }
  bool Set(const py::handle& key, const py::handle& value, const py::handle& ttl,
           const py::handle& mode_arg, const py::handle& if_version) {
    std::string k = ToKey(key, "key");
    std::string v = ToBytes(value, "value");
    shm::SetOptions options;
    options.ttl_ms = ToTtlMs(ttl, "ttl");
    std::optional<uint64_t> version;
    if (!if_version.is_none()) version = ToUInt64(if_version, "if_version");
    shm::SetMode mode = ToSetMode(mode_arg);
    if (mode != shm::SetMode::kSet || version) {
      shm::DictValue current;
      bool exists = Read(k, &current);
      if ((mode == shm::SetMode::kAdd && exists) || (mode == shm::SetMode::kReplace && !exists) ||
          (version && (!exists || current.version != *version))) {
        return false;
      }
    }
    Write(k, v, options);
    return true;
  }
  bool Delete(const py::handle& key) {
    std::string k = ToKey(key, "key");
    shm::DictValue current;
    if (!Read(k, &current)) return false;
    tx_->Run([&](shm::Transaction& tx) { return tx.Delete(*dict_, k); });
    return true;
  }
  int64_t Incr(const py::handle& key, const py::handle& by_arg, const py::handle& init_arg,
               const py::handle& ttl) {
    std::string k = ToKey(key, "key");
    int64_t by = ToInt64(by_arg, "by");
    int64_t init = ToInt64(init_arg, "init");
    int64_t ttl_ms = ToTtlMs(ttl, "ttl");
    int64_t result = 0;
    tx_->Run([&](shm::Transaction& tx) { return tx.Incr(*dict_, k, by, init, ttl_ms, &result); });
    return result;
  }
  // Writes `value` only if the value is `expected` (None: only if absent), keeping the entry's
  // content type and expiry.
  bool Cas(const py::handle& key, const py::handle& expected, const py::handle& desired) {
    std::string k = ToKey(key, "key");
    std::optional<std::string> want;
    if (!expected.is_none()) want = ToBytes(expected, "expected");
    std::string next = ToBytes(desired, "value");
    shm::DictValue current;
    bool exists = Read(k, &current);
    if (exists != want.has_value() || (exists && current.data != *want)) return false;
    shm::SetOptions options;
    if (exists) {
      options.content_type = current.content_type;
      if (current.expires_at_ms > 0) {
        options.ttl_ms = std::max<int64_t>(1, current.expires_at_ms - shm::WallNowMs());
      }
    }
    Write(k, next, options);
    return true;
  }
  // The fast path's get and set (register_dict.cc): keys and values viewed in place.
  bool GetFast(std::string_view key, std::string* value) {
    bool found = Read(key, &scratch_);
    if (found) value->assign(scratch_.data);
    return found;
  }
  void SetFast(std::string_view key, std::string_view value) { Write(key, value, {}); }
  py::tuple Keys(const py::handle&, const py::handle&, const py::handle&) {
    RaiseNotInTransaction("listing a dict's keys");
  }
  py::dict Stats() { RaiseNotInTransaction("a dict's stats (and len)"); }
  const std::string& name() const { return name_; }

 private:
  // The entry as this transaction sees it (the read is recorded: absence too).
  bool Read(std::string_view key, shm::DictValue* value) {
    bool found = false;
    tx_->Run([&](shm::Transaction& tx) {
      Status s = tx.Get(*dict_, key, value);
      found = s.ok();
      return s.IsNotFound() ? Status::OK() : s;
    });
    return found;
  }
  void Write(std::string_view key, std::string_view value, const shm::SetOptions& options) {
    tx_->Run([&](shm::Transaction& tx) { return tx.Set(*dict_, key, value, options); });
  }

  std::shared_ptr<PyTransaction> tx_;
  std::string name_;
  const shm::Dict* dict_ = nullptr;
  shm::DictValue scratch_;  // GetFast's; the GIL guards it.
};

PyTypeObject* g_tx_dict_type = nullptr;  // _TxDict, set at registration.

PyTxDict* TxDictFrom(PyObject* native) {
  auto* inst = reinterpret_cast<py::detail::instance*>(native);
  return inst->get_value_and_holder().value_ptr<PyTxDict>();
}

class PyTxList {
 public:
  PyTxList(std::shared_ptr<PyTransaction> tx, std::string name, const shm::ListOptions& options)
      : tx_(std::move(tx)), name_(std::move(name)) {
    list_ = tx_->OpenObject(&tx_->lists, name_, [&](shm::Segment* seg, shm::List* l) {
      return shm::List::Open(seg, name_, shm::OpenMode::kCreateIfMissing, options, l);
    });
  }

  uint64_t Push(const py::handle& item, const py::handle& end) {
    std::string v = ToBytes(item, "item");
    shm::List::End e = ToListEnd(end);
    uint64_t length = 0;
    tx_->Run([&](shm::Transaction& tx) { return tx.Push(*list_, e, v, &length); });
    return length;
  }
  py::object Pop(const py::handle& wait, const py::handle& end) {
    auto total = ToWait(wait, "wait", std::chrono::milliseconds(0), shm::List::kMaxWait);
    shm::List::End e = ToListEnd(end);
    if (total.count() > 0) RaiseInvalid("a pop inside a transaction does not wait (wait=None)");
    std::string item;
    bool got = false;
    tx_->Run([&](shm::Transaction& tx) { return tx.Pop(*list_, e, &item, &got); });
    return got ? py::object(Bytes(item)) : py::object(py::none());
  }
  uint64_t Length() {
    uint64_t length = 0;
    tx_->Run([&](shm::Transaction& tx) { return tx.Length(*list_, &length); });
    return length;
  }
  py::list Range(const py::handle& start, const py::handle& stop) {
    ToInt64(start, "start");
    ToInt64(stop, "stop");
    RaiseNotInTransaction("a list's range");
  }
  const std::string& name() const { return name_; }

 private:
  std::shared_ptr<PyTransaction> tx_;
  std::string name_;
  const shm::List* list_ = nullptr;
};

// The handles share the transaction (a shared_ptr), so a handle kept past fn stays safe to call:
// it raises InvalidArgument.
std::shared_ptr<PyTxCounter> OpenCounter(const std::shared_ptr<PyTransaction>& tx,
                                         const py::handle& name, const py::handle& init,
                                         const py::handle& ttl) {
  int64_t init_value = ToInt64(init, "init");
  int64_t ttl_ms = ToTtlMs(ttl, "ttl");
  return std::make_shared<PyTxCounter>(tx, ToText(name, "name"), init_value, ttl_ms);
}

std::shared_ptr<PyTxDict> OpenDict(const std::shared_ptr<PyTransaction>& tx, const py::handle& name,
                                   const py::handle& max_bytes, const py::handle& eviction,
                                   const py::handle& default_ttl) {
  shm::DictOptions options = ToDictOptions(max_bytes, eviction, default_ttl);
  return std::make_shared<PyTxDict>(tx, ToText(name, "name"), options);
}

std::shared_ptr<PyTxList> OpenList(const std::shared_ptr<PyTransaction>& tx, const py::handle& name,
                                   const py::handle& max_items, const py::handle& max_item_bytes) {
  shm::ListOptions options = ToListOptions(max_items, max_item_bytes);
  return std::make_shared<PyTxList>(tx, ToText(name, "name"), options);
}

}  // namespace

bool IsTxDict(PyObject* native) { return Py_TYPE(native) == g_tx_dict_type; }

bool TxDictGet(PyObject* native, std::string_view key, std::string* value) {
  return TxDictFrom(native)->GetFast(key, value);
}

void TxDictSet(PyObject* native, std::string_view key, std::string_view value) {
  TxDictFrom(native)->SetFast(key, value);
}

py::object BeginTransaction(const std::shared_ptr<Attachment>& attachment) {
  return py::cast(std::make_shared<PyTransaction>(attachment));
}

void RegisterTransaction(py::module_& m) {
  using py::arg;
  py::class_<PyTransaction, std::shared_ptr<PyTransaction>>(m, "_Transaction")
      .def("counter", &OpenCounter, arg("name"), arg("init") = 0, arg("ttl") = py::none())
      .def("dict", &OpenDict, arg("name"), arg("max_bytes") = 0, arg("eviction") = "none",
           arg("default_ttl") = py::none())
      .def("list", &OpenList, arg("name"), arg("max_items") = uint64_t{1} << 20,
           arg("max_item_bytes") = uint64_t{1} << 20)
      .def("commit", &PyTransaction::Commit)
      .def("abort", &PyTransaction::Abort);
  py::class_<PyTxCounter, std::shared_ptr<PyTxCounter>> counter(m, "_TxCounter");
  BindCounterMethods(counter);
  py::class_<PyTxDict, std::shared_ptr<PyTxDict>> dict(m, "_TxDict");
  BindDictMethods(dict);
  g_tx_dict_type = reinterpret_cast<PyTypeObject*>(dict.ptr());
  py::class_<PyTxList, std::shared_ptr<PyTxList>> list(m, "_TxList");
  BindListMethods(list);
}

}  // namespace shmstate
