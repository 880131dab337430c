#include "transaction_lists.h"

#include <iterator>
#include <string_view>
#include <utility>
#include <vector>

#include "list_tx.h"
#include "object_guard.h"

namespace shm {

TxListOp* TxLists::Of(const List& list) {
  auto [it, inserted] = ops_.try_emplace(Key{list.ref().entry, list.ref().incarnation});
  if (inserted) it->second.list = list;
  return &it->second;
}

Status TxLists::EnsureRead(TxListOp* op) {
  if (op->writes_seen.has_value()) return Status::OK();
  ListTxView view;
  SHM_RETURN_IF_ERROR(ListTxRead(op->list.ref(), -1, &view, nullptr));
  op->writes_seen = view.writes;
  op->length = view.length;
  return Status::OK();
}

Status TxLists::Push(TxListOp* op, List::End end, std::string_view item, uint64_t* length) {
  if (item.size() > op->list.max_item_bytes()) {
    return Status::InvalidArgument("item of " + std::to_string(item.size()) +
                                   " bytes exceeds the list's max_item_bytes (" +
                                   std::to_string(op->list.max_item_bytes()) + ")");
  }
  // A push that reports the length reads the list; one that does not is a blind write.
  if (length != nullptr) SHM_RETURN_IF_ERROR(EnsureRead(op));
  if (op->writes_seen.has_value() && op->ViewLength() >= op->list.max_items()) {
    return Status::OutOfSpace("list is full: " + std::to_string(op->ViewLength()) +
                              " items (its max_items)");
  }
  if (end == List::End::kLeft) {
    op->left.emplace_front(item);
  } else {
    op->right.emplace_back(item);
  }
  if (length != nullptr) *length = op->ViewLength();
  return Status::OK();
}

Status TxLists::Pop(TxListOp* op, List::End end, std::string* item, bool* got) {
  *got = false;
  const bool left = end == List::End::kLeft;
  std::deque<std::string>& near = left ? op->left : op->right;
  std::deque<std::string>& far = left ? op->right : op->left;
  if (!near.empty()) {  // The transaction's own push at this end comes off first.
    *item = left ? std::move(near.front()) : std::move(near.back());
    left ? near.pop_front() : near.pop_back();
    *got = true;
    return Status::OK();
  }
  SHM_RETURN_IF_ERROR(EnsureRead(op));
  if (op->length > op->pops_left + op->pops_right) {
    // The committed item, read now and checked unchanged (the write count) under the commit's lock.
    const uint64_t index = left ? op->pops_left : op->length - 1 - op->pops_right;
    ListTxView view;
    SHM_RETURN_IF_ERROR(ListTxRead(op->list.ref(), static_cast<int64_t>(index), &view, item));
    if (view.writes != *op->writes_seen) {
      return Status::Conflict("list changed while the transaction read it");
    }
    (left ? op->pops_left : op->pops_right) += 1;
    *got = true;
    return Status::OK();
  }
  if (!far.empty()) {  // Only the transaction's pushes at the other end are left.
    *item = left ? std::move(far.front()) : std::move(far.back());
    left ? far.pop_front() : far.pop_back();
    *got = true;
  }
  return Status::OK();
}

Status TxLists::Length(TxListOp* op, uint64_t* length) {
  SHM_RETURN_IF_ERROR(EnsureRead(op));
  *length = op->ViewLength();
  return Status::OK();
}

Status TxLists::View(TxListOp* op, std::vector<std::string>* items) {
  items->clear();
  SHM_RETURN_IF_ERROR(EnsureRead(op));
  items->assign(op->left.begin(), op->left.end());
  const uint64_t committed = op->length - op->pops_left - op->pops_right;
  const int64_t last = static_cast<int64_t>(op->pops_left + committed) - 1;
  for (int64_t first = static_cast<int64_t>(op->pops_left); first <= last;) {
    std::vector<std::string> chunk;
    bool truncated = false;
    SHM_RETURN_IF_ERROR(op->list.Range(first, last, &chunk, &truncated));
    if (chunk.empty()) return Status::Conflict("list changed while the transaction read it");
    first += static_cast<int64_t>(chunk.size());
    for (std::string& item : chunk) items->push_back(std::move(item));
  }
  ListTxView view;
  SHM_RETURN_IF_ERROR(ListTxRead(op->list.ref(), -1, &view, nullptr));
  if (view.writes != *op->writes_seen) {
    return Status::Conflict("list changed while the transaction read it");
  }
  items->insert(items->end(), op->right.begin(), op->right.end());
  return Status::OK();
}

void TxLists::KeepReadOnly(TxListOp* op) {
  op->pops_left = op->pops_right = 0;
  op->left.clear();
  op->right.clear();
}

void TxLists::Drop(TxListOp* op) {
  ops_.erase(Key{op->list.ref().entry, op->list.ref().incarnation});
}

Status TxLists::Range(TxListOp* op, int64_t start, int64_t stop, std::vector<std::string>* items,
                      bool* truncated) {
  if (op->Changes() > 0) {  // The list as this transaction left it.
    std::vector<std::string> all;
    SHM_RETURN_IF_ERROR(View(op, &all));
    CollectRange(
        static_cast<int64_t>(all.size()), start, stop,
        [&](int64_t i) { return std::string_view(all[static_cast<size_t>(i)]); }, items, truncated);
    return Status::OK();
  }
  SHM_RETURN_IF_ERROR(EnsureRead(op));
  SHM_RETURN_IF_ERROR(op->list.Range(start, stop, items, truncated));
  ListTxView view;
  SHM_RETURN_IF_ERROR(ListTxRead(op->list.ref(), -1, &view, nullptr));
  if (view.writes != *op->writes_seen) {
    return Status::Conflict("list changed while the transaction read it");
  }
  return Status::OK();
}

size_t TxLists::staged() const {
  size_t n = 0;
  for (const auto& [key, op] : ops_) n += op.Changes();
  return n;
}

}  // namespace shm
