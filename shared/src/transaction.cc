#include "shm/transaction.h"

#include <utility>

namespace shm {

// Staged operations and reads. The commit protocol is being built (issue 24): until then every
// operation answers Internal, so no caller mistakes the stub for a transaction.
struct Transaction::State {};

namespace {
Status NotYet() { return Status::Internal("transactions are not implemented yet"); }
}  // namespace

Transaction::Transaction(Segment* segment) : segment_(segment), state_(std::make_unique<State>()) {}
Transaction::~Transaction() = default;
Transaction::Transaction(Transaction&&) noexcept = default;
Transaction& Transaction::operator=(Transaction&&) noexcept = default;

Status Transaction::Get(const Dict&, std::string_view, DictValue*) { return NotYet(); }
Status Transaction::Set(const Dict&, std::string_view, std::string_view, const SetOptions&) {
  return NotYet();
}
Status Transaction::Delete(const Dict&, std::string_view, std::optional<uint64_t>) {
  return NotYet();
}
Status Transaction::Incr(const Dict&, std::string_view, int64_t, int64_t, int64_t, int64_t*) {
  return NotYet();
}
Status Transaction::Expect(const Dict&, std::string_view, std::optional<uint64_t>) {
  return NotYet();
}
Status Transaction::Get(const Counter&, int64_t*) { return NotYet(); }
Status Transaction::Add(const Counter&, int64_t, int64_t*) { return NotYet(); }
Status Transaction::Set(const Counter&, int64_t) { return NotYet(); }
Status Transaction::Push(const List&, List::End, std::string_view, uint64_t*) { return NotYet(); }
Status Transaction::Pop(const List&, List::End, std::string*, bool*) { return NotYet(); }
Status Transaction::Length(const List&, uint64_t*) { return NotYet(); }
Status Transaction::Type(const Keyspace&, std::string_view, KeyType*) { return NotYet(); }
Status Transaction::Watch(const Keyspace&, std::string_view, uint64_t) { return NotYet(); }
Status Transaction::Get(const Keyspace&, std::string_view, std::string*) { return NotYet(); }
Status Transaction::Set(const Keyspace&, std::string_view, std::string_view, const StringSet&,
                        StringSetResult*) {
  return NotYet();
}
Status Transaction::IncrBy(const Keyspace&, std::string_view, int64_t, int64_t*) {
  return NotYet();
}
Status Transaction::Delete(const Keyspace&, std::string_view, bool*) { return NotYet(); }
Status Transaction::Rename(const Keyspace&, std::string_view, std::string_view, bool, bool*) {
  return NotYet();
}
Status Transaction::Push(const Keyspace&, std::string_view, List::End, std::string_view,
                         uint64_t*) {
  return NotYet();
}
Status Transaction::Pop(const Keyspace&, std::string_view, List::End, std::string*, bool*) {
  return NotYet();
}
Status Transaction::Length(const Keyspace&, std::string_view, uint64_t*) { return NotYet(); }
Status Transaction::HashGet(const Keyspace&, std::string_view, std::string_view, std::string*) {
  return NotYet();
}
Status Transaction::HashSet(const Keyspace&, std::string_view, std::string_view, std::string_view,
                            bool*) {
  return NotYet();
}
Status Transaction::HashDelete(const Keyspace&, std::string_view, std::string_view, bool*) {
  return NotYet();
}
Status Transaction::Commit() { return NotYet(); }
void Transaction::Reset() {}
size_t Transaction::staged_writes() const { return 0; }

Status Transaction::Run(Segment* segment, int attempts,
                        const std::function<Status(Transaction&)>& fn) {
  Status last = Status::Conflict("no attempt made");
  for (int i = 0; i < attempts; ++i) {
    Transaction tx(segment);
    last = fn(tx);
    if (last.ok()) last = tx.Commit();
    if (!last.IsConflict()) return last;
  }
  return last;
}

}  // namespace shm
