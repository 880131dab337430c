// Registration of the transaction bindings behind shmstate.Client.transaction (register_tx.cc).
#ifndef SHMSTATE_PYTHON_REGISTER_TX_H_
#define SHMSTATE_PYTHON_REGISTER_TX_H_

#include <pybind11/pybind11.h>

#include <memory>

#include "attachment.h"

namespace shmstate {

// A new _Transaction on the attachment's current segment.
pybind11::object BeginTransaction(const std::shared_ptr<Attachment>& attachment);

// _Transaction, _TxCounter, _TxDict, _TxList.
void RegisterTransaction(pybind11::module_& m);

}  // namespace shmstate

#endif  // SHMSTATE_PYTHON_REGISTER_TX_H_
