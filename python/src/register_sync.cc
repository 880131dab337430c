// _shmstate._WakeWord: the futex sequence word of a named object (shm/wake_word.h), for the
// blocking calls of shmstate.Manager's proxies (python/shmstate/manager.py). A proxy keeps its
// state in an ordinary dict (or list) object, committed by compare-and-set, and sleeps here
// between checks: the GIL is released while it sleeps, and it never spins.
#include "register_sync.h"

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "attachment.h"
#include "shm/registry.h"
#include "shm/wake_word.h"

namespace py = pybind11;

namespace shmstate {
namespace {

// One attachment per server name and process, shared by every word (a word of a manager's
// object is opened once per proxy; mapping the segment once per proxy would not scale).
std::shared_ptr<Attachment> AttachmentFor(const std::string& prefix, shm::Status* status) {
  static std::mutex mu;
  static auto* cache = new std::map<std::string, std::shared_ptr<Attachment>>();
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(prefix);
  if (it != cache->end()) return it->second;
  std::shared_ptr<Attachment> result;
  *status = Attachment::Open(prefix, std::chrono::seconds(10), &result);
  if (!status->ok()) return nullptr;
  (*cache)[prefix] = result;
  return result;
}

[[noreturn]] void RaiseStatus(const shm::Status& status) {
  py::module_ core = py::module_::import("shmstate._shmstate");
  const char* type = "Error";
  if (status.IsNotFound()) type = "NotFound";
  if (status.IsWrongType()) type = "WrongKind";
  py::object exc = core.attr(type)(std::string(status.message()));
  exc.attr("code") = std::string(status.CodeName());
  PyErr_SetObject(core.attr(type).ptr(), exc.ptr());
  throw py::error_already_set();
}

class PyWakeWord {
 public:
  PyWakeWord(const std::string& prefix, const std::string& name, const std::string& kind) {
    shm::Status status;
    attachment_ = AttachmentFor(prefix, &status);
    if (attachment_ == nullptr) RaiseStatus(status);
    segment_ = attachment_->segment();
    shm::ObjectKind object_kind;
    status = shm::ParseKind(kind, &object_kind);
    if (status.ok()) status = segment_->EnterClientOp();
    if (status.ok()) {
      status = shm::WakeWord::Open(segment_.get(), name, object_kind, &word_);
      segment_->LeaveClientOp();
    }
    if (!status.ok()) RaiseStatus(status);
  }

  uint32_t Sequence() const { return word_.Sequence(); }

  void Wait(uint32_t seen, double timeout_seconds) const {
    if (!(timeout_seconds > 0)) return;
    auto timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::duration<double>(std::min(timeout_seconds, 86400.0)));
    py::gil_scoped_release release;
    word_.Wait(seen, timeout);
  }

  void WakeAll() const { word_.WakeAll(); }

 private:
  std::shared_ptr<Attachment> attachment_;
  std::shared_ptr<shm::Segment> segment_;  // Keeps the mapping the word lives in.
  shm::WakeWord word_;
};

}  // namespace

void RegisterSync(py::module_& m) {
  py::class_<PyWakeWord, std::shared_ptr<PyWakeWord>>(m, "_WakeWord")
      .def(py::init<const std::string&, const std::string&, const std::string&>(),
           py::arg("server"), py::arg("name"), py::arg("kind"))
      .def("seq", &PyWakeWord::Sequence)
      .def("wait", &PyWakeWord::Wait, py::arg("seen"), py::arg("timeout"))
      .def("wake", &PyWakeWord::WakeAll);
}

}  // namespace shmstate
