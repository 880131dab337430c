// Registration of the transaction bindings behind shmstate.Client.transaction (register_tx.cc).
#ifndef SHMSTATE_PYTHON_REGISTER_TX_H_
#define SHMSTATE_PYTHON_REGISTER_TX_H_

#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <string_view>

#include "attachment.h"

namespace shmstate {

// A new _Transaction on the attachment's current segment.
pybind11::object BeginTransaction(const std::shared_ptr<Attachment>& attachment);

// _Transaction, _TxCounter, _TxDict, _TxList.
void RegisterTransaction(pybind11::module_& m);

// For the fast path of the Dict wrapper (register_dict.cc), which serves a _TxDict without
// pybind11's dispatch: whether `native` is a _TxDict; its get (true: found, the bytes in *value)
// and its set with the default options. They raise as the methods do (StatusError). GIL held.
bool IsTxDict(PyObject* native);
bool TxDictGet(PyObject* native, std::string_view key, std::string* value);
void TxDictSet(PyObject* native, std::string_view key, std::string_view value);

}  // namespace shmstate

#endif  // SHMSTATE_PYTHON_REGISTER_TX_H_
