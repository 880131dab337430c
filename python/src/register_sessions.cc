// _Sessions: a shm::Sessions store bound to an attachment (handles.h).
#include <pybind11/pybind11.h>

#include <boost/json.hpp>
#include <memory>
#include <string>
#include <utility>

#include "bound.h"
#include "convert.h"
#include "handles.h"
#include "shm/sessions.h"

namespace py = pybind11;
using shm::Status;

namespace shmstate {
namespace {

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

}  // namespace

py::object NewSessions(const std::shared_ptr<Attachment>& attachment, const py::handle& name,
                       const py::handle& idle_ttl) {
  return py::cast(
      std::make_shared<PySessions>(attachment, ToText(name, "name"),
                                   ToTtlMs(idle_ttl, "idle_ttl", /*none_is_no_expiry=*/false)));
}

void RegisterSessions(py::module_& m) {
  using py::arg;
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
}

}  // namespace shmstate
