// _Client: the attachment as Python sees it (shmstate.attach): opens the handles of each kind
// (handles.h), lists and deletes objects, begins transactions.
#include <pybind11/pybind11.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "bound.h"
#include "convert.h"
#include "handles.h"
#include "register_tx.h"
#include "shm/registry.h"

namespace py = pybind11;
using shm::Status;

namespace shmstate {
namespace {

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

  py::object Counter(const py::handle& name, const py::handle& init, const py::handle& ttl) {
    return NewCounter(attachment_, name, init, ttl);
  }
  py::object Dict(const py::handle& name, const py::handle& max_bytes, const py::handle& eviction,
                  const py::handle& default_ttl) {
    return NewDict(attachment_, name, max_bytes, eviction, default_ttl);
  }
  py::object List(const py::handle& name, const py::handle& max_items,
                  const py::handle& max_item_bytes) {
    return NewList(attachment_, name, max_items, max_item_bytes);
  }
  py::object Lock(const py::handle& name) { return NewLock(attachment_, name); }
  py::object Sessions(const py::handle& name, const py::handle& idle_ttl) {
    return NewSessions(attachment_, name, idle_ttl);
  }
  py::object Array(const py::handle& name, const py::handle& dtype, const py::handle& shape,
                   const py::handle& fill) {
    return NewArray(attachment_, name, dtype, shape, fill);
  }
  py::object ArrayFromNumpy(const py::handle& name, const py::handle& values) {
    return NewArrayFromNumpy(attachment_, name, values);
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
  std::shared_ptr<Attachment> attachment_;
};

}  // namespace

void RegisterClient(py::module_& m) {
  using py::arg;
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
}

}  // namespace shmstate
