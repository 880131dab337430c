// MULTI, EXEC, DISCARD, WATCH, UNWATCH (Redis's "transactions" group), and RunIsolated, what
// EXEC and the multi-key commands run in: one shm::Transaction (atomic and isolated), retried
// on conflicts, then retried holding every shard lock of the client's keyspace; only a batch
// that cannot be staged or still conflicts runs under those locks alone (isolated). WATCH's
// versions are checked inside the same isolation (docs/resp.md).
#include <string>
#include <utility>
#include <vector>

#include "internal.h"
#include "shm/transaction.h"

namespace shm::resp {
namespace {

void Multi(Call& c) {
  if (c.client->in_multi) return c.w.Error("ERR MULTI calls can not be nested");
  c.client->in_multi = true;
  c.client->multi_failed = false;
  c.client->queued.clear();
  c.w.Simple("OK");
}

void Discard(Call& c) {
  if (!c.client->in_multi) return c.w.Error("ERR DISCARD without MULTI");
  c.client->in_multi = false;
  c.client->queued.clear();
  c.client->watched.clear();
  c.w.Simple("OK");
}

uint64_t VersionOf(Call& c, std::string_view key) {
  return KeyVersion(c.segment(), c.client->db, key);
}

void Watch(Call& c) {
  if (c.client->in_multi) return c.w.Error("ERR WATCH inside MULTI is not allowed");
  for (size_t i = 1; i < c.args.size(); ++i) {
    c.client->watched.emplace_back(std::string(c.args[i]), VersionOf(c, c.args[i]));
  }
  c.w.Simple("OK");
}

void Unwatch(Call& c) {
  c.client->watched.clear();
  c.w.Simple("OK");
}

void Exec(Call& c) {
  RespClient* client = c.client;
  if (!client->in_multi) return c.w.Error("ERR EXEC without MULTI");
  client->in_multi = false;
  std::vector<std::vector<std::string>> queued = std::move(client->queued);
  client->queued.clear();
  std::vector<std::pair<std::string, uint64_t>> watched = std::move(client->watched);
  client->watched.clear();
  if (client->multi_failed) {
    return c.w.Error("EXECABORT Transaction discarded because of previous errors.");
  }
  // The database each attempt starts in (a queued SELECT changes it).
  const int db = client->db;
  auto watched_unchanged = [&] {
    client->db = db;
    for (const auto& [key, version] : watched) {
      if (VersionOf(c, key) != version) {
        c.w.NullArray();
        return false;
      }
    }
    return true;
  };
  RunIsolated(c, watched_unchanged, [&] {
    c.w.Array(queued.size());
    for (const std::vector<std::string>& command : queued) {
      std::vector<std::string_view> args(command.begin(), command.end());
      RunQueued(c, args);
    }
  });
}

}  // namespace

namespace {

enum class Attempt { kDone, kConflict, kUnsupported };

// One run of the batch as a transaction, its replies kept only when it commits.
Attempt RunAsTransaction(Call& c, const std::function<bool()>& check,
                         const std::function<void()>& body, size_t mark, int db) {
  std::string* out = c.w.buffer();
  out->resize(mark);
  c.client->db = db;
  Transaction tx(c.segment());
  bool unsupported = false;
  {
    KeyspaceTransactionScope scope(&tx);
    if (!check || check()) body();
    unsupported = scope.unsupported();
  }
  if (unsupported) return Attempt::kUnsupported;
  Status s = tx.Commit();
  if (s.ok()) return Attempt::kDone;
  if (s.IsConflict()) return Attempt::kConflict;  // A key read changed: run the batch again.
  out->resize(mark);
  ReplyStatus(c.w, s);
  return Attempt::kDone;
}

}  // namespace

void RunIsolated(Call& c, const std::function<bool()>& check, const std::function<void()>& body) {
  if (KeyspaceTransactionScope::Active() || KeyspaceExclusive::HeldByThisThread()) {
    if (!check || check()) body();
    return;
  }
  constexpr int kAttempts = 16;  // Then the same holding the database's locks.
  const size_t mark = c.w.buffer()->size();
  const int db = c.client->db;
  Attempt outcome = Attempt::kConflict;
  for (int attempt = 0; attempt < kAttempts && outcome == Attempt::kConflict; ++attempt) {
    outcome = RunAsTransaction(c, check, body, mark, db);
  }
  if (outcome == Attempt::kDone) return;
  // Contended (or not stageable): every shard lock of the client's database held, so no other
  // client of it can change what the batch reads; still a transaction (atomic across a crash)
  // unless it cannot be staged, or it keeps conflicting on what the locks do not cover (another
  // database, a registry object), when it runs under the locks alone (isolated).
  c.w.buffer()->resize(mark);
  c.client->db = db;
  Keyspace* ks = KS(c);
  if (ks == nullptr) return;
  KeyspaceExclusive locks;
  Status s = locks.Lock(*ks);
  if (!s.ok()) return ReplyStatus(c.w, s);
  for (int attempt = 0; attempt < kAttempts && outcome == Attempt::kConflict; ++attempt) {
    outcome = RunAsTransaction(c, check, body, mark, db);
  }
  if (outcome == Attempt::kDone) return;
  c.w.buffer()->resize(mark);
  c.client->db = db;
  if (!check || check()) body();
}

void RegisterTransactionCommands(CommandTable* table) {
  // kUnqueued: they run at once inside MULTI (Redis's processCommand exempts the same ones).
  constexpr uint32_t kTx = kNoScript | kLoading | kStale | kFast | kAllowBusy | kUnqueued;
  constexpr KeyPositions kNone{};
  for (const CommandRow& row : {
           CommandRow{"multi", 1, kTx, kNone, Multi},
           CommandRow{"exec", 1, kNoScript | kLoading | kStale | kUnqueued, kNone, Exec},
           CommandRow{"discard", 1, kTx, kNone, Discard},
           CommandRow{"watch", -2, kTx, {1, -1, 1}, Watch},
           CommandRow{"unwatch", 1, kNoScript | kLoading | kStale | kFast | kAllowBusy, kNone,
                      Unwatch},
       }) {
    table->Add(row);
  }
}

}  // namespace shm::resp
