// The bindings behind shmstate.Manager's proxies (python/shmstate/manager.py):
//  - _WakeWord: the futex sequence word of a named object (shm/wake_word.h). A proxy keeps its
//    state in an ordinary dict (or list) object, committed by compare-and-set, and sleeps here
//    between checks: the GIL is released while it sleeps, and it never spins.
//  - _SeqList: index access of a list (List::Set, List::Replace) for ListProxy.
// Arguments go through convert.h, as every binding's do: a wrong one raises the module's
// InvalidType or InvalidArgument and changes nothing.
#include "register_sync.h"

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "attachment.h"
#include "convert.h"
#include "shm/dict.h"
#include "shm/list.h"
#include "shm/registry.h"
#include "shm/wake_word.h"

namespace py = pybind11;

namespace shmstate {
namespace {

// The process's one attachment of a server (Attachment::Shared): the module's clients and every
// word and list of a manager's proxies share its mapping.
std::shared_ptr<Attachment> AttachmentFor(const std::string& prefix, shm::Status* status) {
  std::shared_ptr<Attachment> result;
  *status = Attachment::Shared(prefix, std::chrono::seconds(10), &result);
  return status->ok() ? result : nullptr;
}

// Runs fn(segment) (a shared_ptr) as one client operation; a segment the server is moving away from
// refuses it (Poisoned, nothing done), and the operation runs again in the successor.
template <class F>
shm::Status RunOp(Attachment* attachment, F&& fn) {
  return shm::RunClientOp(*attachment, fn, [&](const std::shared_ptr<shm::Segment>& seen) {
    py::gil_scoped_release release;
    return attachment->Follow(seen);
  });
}

class PySeqList {
 public:
  PySeqList(py::handle prefix, py::handle name) : name_(ToText(name, "name")) {
    shm::Status status;
    attachment_ = AttachmentFor(ToText(prefix, "server"), &status);
    if (attachment_ == nullptr) Raise(status);
  }

  // IndexError-worthy NotFound is told apart by the caller (the object itself exists).
  void Set(py::handle index_arg, py::handle item) {
    const int64_t index = ToInt64(index_arg, "index");
    std::string bytes = ToBytes(item, "item");
    Check(RunOp(attachment_.get(), [&](const std::shared_ptr<shm::Segment>& segment) {
      shm::List list;
      SHM_RETURN_IF_ERROR(Open(segment.get(), &list));
      return list.Set(index, bytes);
    }));
  }

  bool Replace(py::handle expected, py::handle items_arg) {
    std::optional<std::vector<std::string>> want;
    if (!expected.is_none()) want = ToByteList(expected, "expected");
    const std::vector<std::string> items = ToByteList(items_arg, "items");
    bool swapped = false;
    Check(RunOp(attachment_.get(), [&](const std::shared_ptr<shm::Segment>& segment) {
      shm::List list;
      SHM_RETURN_IF_ERROR(Open(segment.get(), &list));
      return list.Replace(want ? &*want : nullptr, items, &swapped);
    }));
    return swapped;
  }

 private:
  shm::Status Open(shm::Segment* segment, shm::List* list) {
    return shm::List::Open(segment, name_, shm::OpenMode::kOpenExisting, shm::ListOptions(), list);
  }
  // A list or tuple of bytes-like items.
  static std::vector<std::string> ToByteList(py::handle h, const char* what) {
    if (!PyList_Check(h.ptr()) && !PyTuple_Check(h.ptr())) {
      RaiseType(std::string(what) + " must be a list of bytes, not " + TypeName(h));
    }
    std::vector<std::string> out;
    for (py::handle item : h) out.push_back(ToBytes(item, what));
    return out;
  }

  const std::string name_;
  std::shared_ptr<Attachment> attachment_;
};

class PyWakeWord {
 public:
  PyWakeWord(py::handle prefix, py::handle name, py::handle kind) : name_(ToText(name, "name")) {
    shm::Status status = shm::ParseKind(ToText(kind, "kind"), &kind_);
    if (!status.ok()) Raise(status);
    attachment_ = AttachmentFor(ToText(prefix, "server"), &status);
    if (attachment_ == nullptr) Raise(status);
    if (status.ok()) status = OpenIn(attachment_->segment());
    if (!status.ok()) Raise(status);
  }

  // Also moves the word into the generation the server copied its state into (growth, a
  // poisoned allocator), so waiters keep meeting the wakers; callers re-check at least every
  // few seconds (manager.py), which bounds a sleep begun on the old generation.
  uint32_t Sequence() {
    Refresh();
    return Word().Sequence();
  }

  void Wait(py::handle seen_arg, py::handle timeout_arg) {
    const auto seen = static_cast<uint32_t>(ToUInt64(seen_arg, "seen", UINT32_MAX));
    const std::chrono::nanoseconds timeout =
        ToWait(timeout_arg, "timeout", std::chrono::hours(24), std::chrono::hours(24));
    if (timeout.count() <= 0) return;
    shm::WakeWord word = Word();
    py::gil_scoped_release release;
    word.Wait(seen, timeout);
  }

  void WakeAll() {
    Refresh();
    Word().WakeAll();
  }

  // Deletes `key` of this dict object only if it still has `version` (a pop that returns the
  // value it removed); False if it changed or is gone. One commit: nothing half-done to repair.
  bool DeleteIf(py::handle key, py::handle version_arg) {
    const std::string k = ToKey(key, "key");
    const uint64_t version = ToUInt64(version_arg, "version");
    shm::Status status =
        RunOp(attachment_.get(), [&](const std::shared_ptr<shm::Segment>& segment) {
          shm::Dict dict;
          SHM_RETURN_IF_ERROR(shm::Dict::Open(segment.get(), name_, shm::OpenMode::kOpenExisting,
                                              shm::DictOptions(), &dict));
          return dict.Delete(k, version);
        });
    if (status.IsConflict() || status.IsNotFound()) return false;
    if (!status.ok()) Raise(status);
    return true;
  }

 private:
  // Opens the word in the segment the attachment maps now (following a move in progress).
  shm::Status OpenIn(const std::shared_ptr<shm::Segment>& /*hint*/) {
    std::shared_ptr<shm::Segment> opened_in;
    shm::WakeWord word;
    shm::Status status =
        RunOp(attachment_.get(), [&](const std::shared_ptr<shm::Segment>& segment) {
          SHM_RETURN_IF_ERROR(shm::WakeWord::Open(segment.get(), name_, kind_, &word));
          opened_in = segment;
          return shm::Status::OK();
        });
    if (!status.ok()) return status;
    std::lock_guard<std::mutex> lock(mu_);
    segment_ = std::move(opened_in);
    word_ = word;
    return status;
  }

  void Refresh() {
    std::shared_ptr<shm::Segment> segment = Segment();
    if (segment->successor_generation() != 0) {
      py::gil_scoped_release release;
      (void)attachment_->Follow(segment);  // Its failure shows in the next operation.
    }
    std::shared_ptr<shm::Segment> current = attachment_->segment();
    if (current != segment) {
      shm::Status status = OpenIn(current);
      if (!status.ok()) Raise(status);
    }
  }

  std::shared_ptr<shm::Segment> Segment() {
    std::lock_guard<std::mutex> lock(mu_);
    return segment_;
  }
  shm::WakeWord Word() {
    std::lock_guard<std::mutex> lock(mu_);
    return word_;
  }

  const std::string name_;
  shm::ObjectKind kind_ = shm::ObjectKind::kNone;
  std::shared_ptr<Attachment> attachment_;
  std::mutex mu_;
  std::shared_ptr<shm::Segment> segment_;  // Keeps the mapping the word lives in.
  shm::WakeWord word_;
};

}  // namespace

void RegisterSync(py::module_& m) {
  py::class_<PyWakeWord, std::shared_ptr<PyWakeWord>>(m, "_WakeWord")
      .def(py::init<py::handle, py::handle, py::handle>(), py::arg("server"), py::arg("name"),
           py::arg("kind"))
      .def("seq", &PyWakeWord::Sequence)
      .def("wait", &PyWakeWord::Wait, py::arg("seen"), py::arg("timeout"))
      .def("wake", &PyWakeWord::WakeAll)
      .def("delete_if", &PyWakeWord::DeleteIf, py::arg("key"), py::arg("version"));
  m.def(
      "_segment_free_bytes",
      [](py::handle server) {
        shm::Status status;
        std::shared_ptr<Attachment> attachment = AttachmentFor(ToText(server, "server"), &status);
        if (attachment == nullptr) Raise(status);
        return attachment->segment()->free_bytes();
      },
      py::arg("server"), "Free bytes of the server's segment (for memory accounting).");
  py::class_<PySeqList, std::shared_ptr<PySeqList>>(m, "_SeqList")
      .def(py::init<py::handle, py::handle>(), py::arg("server"), py::arg("name"))
      .def("set", &PySeqList::Set, py::arg("index"), py::arg("item"))
      .def("replace", &PySeqList::Replace, py::arg("expected"), py::arg("items"));
}

}  // namespace shmstate
