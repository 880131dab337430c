// MULTI, EXEC, DISCARD, WATCH, UNWATCH (Redis's "transactions" group). EXEC runs the queued
// commands one after the other; isolation is the transactions issue's (docs/resp.md).
#include <string>
#include <utility>
#include <vector>

#include "internal.h"

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

uint64_t VersionOf(Segment* segment, std::string_view key) {
  DictValue value;
  bool ok = WithStrings(segment, false, [&](Dict& d) { return d.Get(key, &value); }).ok();
  return ok ? value.version : 0;
}

void Watch(Call& c) {
  if (c.client->in_multi) return c.w.Error("ERR WATCH inside MULTI is not allowed");
  for (size_t i = 1; i < c.args.size(); ++i) {
    c.client->watched.emplace_back(std::string(c.args[i]), VersionOf(c.segment(), c.args[i]));
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
  for (const auto& [key, version] : watched) {
    if (VersionOf(c.segment(), key) != version) return c.w.NullArray();
  }
  c.w.Array(queued.size());
  for (const std::vector<std::string>& command : queued) {
    std::vector<std::string_view> args(command.begin(), command.end());
    RunQueued(c, args);
  }
}

}  // namespace

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
