// The bindings behind shmstate.Manager's proxies (python/shmstate/manager.py):
//  - _WakeWord: the futex sequence word of a named object (py_wake_word.h). A proxy keeps its
//    state in an ordinary dict (or list) object, committed by compare-and-set, and sleeps here
//    between checks: the GIL is released while it waits (a spin of a few microseconds at most,
//    then the futex sleep: shm/wake_word.h).
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
#include "py_wake_word.h"
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

}  // namespace

PyWakeWord::PyWakeWord(py::handle prefix, py::handle name, py::handle kind)
    : name_(ToText(name, "name")) {
  shm::Status status = shm::ParseKind(ToText(kind, "kind"), &kind_);
  if (!status.ok()) Raise(status);
  attachment_ = AttachmentFor(ToText(prefix, "server"), &status);
  if (attachment_ == nullptr) Raise(status);
  status = OpenIn();
  if (!status.ok()) Raise(status);
}

uint32_t PyWakeWord::Sequence() {
  Refresh();
  return Word().Sequence();
}

void PyWakeWord::Wait(uint32_t seen, std::chrono::nanoseconds timeout) {
  if (timeout.count() <= 0) return;
  shm::WakeWord word = Word();
  py::gil_scoped_release release;
  word.Wait(seen, timeout);
}

void PyWakeWord::WakeAll() {
  Refresh();
  Word().WakeAll();
}

void PyWakeWord::WakeWaiters() {
  Refresh();
  Word().WakeWaiters();
}

bool PyWakeWord::DeleteIf(py::handle key, py::handle version_arg) {
  const std::string k = ToKey(key, "key");
  const uint64_t version = ToUInt64(version_arg, "version");
  shm::Status status = RunOp(attachment_.get(), [&](const std::shared_ptr<shm::Segment>& segment) {
    shm::Dict dict;
    SHM_RETURN_IF_ERROR(shm::Dict::Open(segment.get(), name_, shm::OpenMode::kOpenExisting,
                                        shm::DictOptions(), &dict));
    return dict.Delete(k, version);
  });
  if (status.IsConflict() || status.IsNotFound()) return false;
  if (!status.ok()) Raise(status);
  return true;
}

// Opens the word in the segment the attachment maps now (following a move in progress).
shm::Status PyWakeWord::OpenIn() {
  std::shared_ptr<shm::Segment> opened_in;
  shm::WakeWord word;
  shm::Status status = RunOp(attachment_.get(), [&](const std::shared_ptr<shm::Segment>& segment) {
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

void PyWakeWord::Refresh() {
  std::shared_ptr<shm::Segment> segment = Segment();
  if (segment->successor_generation() != 0) {
    py::gil_scoped_release release;
    (void)attachment_->Follow(segment);  // Its failure shows in the next operation.
  }
  if (attachment_->segment() != segment) {
    shm::Status status = OpenIn();
    if (!status.ok()) Raise(status);
  }
}

std::shared_ptr<shm::Segment> PyWakeWord::Segment() {
  std::lock_guard<std::mutex> lock(mu_);
  return segment_;
}

shm::WakeWord PyWakeWord::Word() {
  std::lock_guard<std::mutex> lock(mu_);
  return word_;
}

void RegisterSync(py::module_& m) {
  py::class_<PyWakeWord, std::shared_ptr<PyWakeWord>> word(m, "_WakeWord");
  word.def(py::init<py::handle, py::handle, py::handle>(), py::arg("server"), py::arg("name"),
           py::arg("kind"))
      .def("seq", &PyWakeWord::Sequence)
      .def(
          "wait",
          [](PyWakeWord& self, py::handle seen, py::handle timeout) {
            self.Wait(static_cast<uint32_t>(ToUInt64(seen, "seen", UINT32_MAX)),
                      ToWait(timeout, "timeout", std::chrono::hours(24), std::chrono::hours(24)));
          },
          py::arg("seen"), py::arg("timeout"))
      .def("wake", &PyWakeWord::WakeAll)
      .def("wake_waiters", &PyWakeWord::WakeWaiters)
      .def("delete_if", &PyWakeWord::DeleteIf, py::arg("key"), py::arg("version"));
  PyWakeWord::type = reinterpret_cast<PyTypeObject*>(word.ptr());
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
