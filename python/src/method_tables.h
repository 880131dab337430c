// The Python methods of the counter, dict and list wrappers, one table each, bound on the plain
// handles (_Counter, _Dict, _List: register_<kind>.cc) and on their transaction views
// (_TxCounter, _TxDict, _TxList: register_tx.cc), so a method's name, arguments and defaults are
// written once and a transaction's proxy cannot drift from the plain one.
#ifndef SHMSTATE_PYTHON_METHOD_TABLES_H_
#define SHMSTATE_PYTHON_METHOD_TABLES_H_

#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>

namespace shmstate {

template <class Counter>
void BindCounterMethods(pybind11::class_<Counter, std::shared_ptr<Counter>>& cls) {
  using pybind11::arg;
  cls.def("incr", &Counter::Incr, arg("by") = 1)
      .def("value", &Counter::Value)
      .def("set", &Counter::Set, arg("value"))
      .def("cas", &Counter::Cas, arg("expected"), arg("value"))
      .def_property_readonly("name", &Counter::name);
}

template <class Dict>
void BindDictMethods(pybind11::class_<Dict, std::shared_ptr<Dict>>& cls) {
  using pybind11::arg;
  cls.def("get", &Dict::Get, arg("key"), arg("default") = pybind11::none())
      .def("get_entry", &Dict::GetEntry, arg("key"))
      .def("set", &Dict::Set, arg("key"), arg("value"), arg("ttl") = pybind11::none(),
           arg("mode") = "set", arg("if_version") = pybind11::none())
      .def("delete", &Dict::Delete, arg("key"))
      .def("incr", &Dict::Incr, arg("key"), arg("by") = 1, arg("init") = 0,
           arg("ttl") = pybind11::none())
      .def("cas", &Dict::Cas, arg("key"), arg("expected"), arg("value"))
      .def("keys_page", &Dict::Keys, arg("prefix") = "", arg("cursor") = 0, arg("limit") = 1000)
      .def("stats", &Dict::Stats)
      .def_property_readonly("name", &Dict::name);
}

template <class List>
void BindListMethods(pybind11::class_<List, std::shared_ptr<List>>& cls) {
  using pybind11::arg;
  cls.def("push", &List::Push, arg("item"), arg("end") = "right")
      .def("pop", &List::Pop, arg("wait") = pybind11::none(), arg("end") = "left")
      .def("length", &List::Length)
      .def("range", &List::Range, arg("start") = 0, arg("stop") = -1)
      .def_property_readonly("name", &List::name);
}

}  // namespace shmstate

#endif  // SHMSTATE_PYTHON_METHOD_TABLES_H_
