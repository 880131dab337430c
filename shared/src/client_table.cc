// ClientTable (shm/client_table.h): rows of Root::clients.
#include "shm/client_table.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "layout.h"
#include "segment_impl.h"

namespace shm {
namespace {

static_assert(ClientTable::kMaxRows == static_cast<int>(kMaxClientSlots));
// Where each text field lives in ClientSlot::text, in 8-byte words.
struct TextField {
  size_t word;
  size_t words;
};
constexpr TextField kAddr{0, 6}, kLaddr{6, 6}, kName{12, 8}, kCmd{20, 6};
static_assert(kCmd.word + kCmd.words == kClientTextWords);
static_assert(ClientTable::kMaxAddress == kAddr.words * 8 &&
              ClientTable::kMaxName == kName.words * 8 &&
              ClientTable::kMaxCommand == kCmd.words * 8);
// A reader gives a row this many tries while its writer is writing.
constexpr int kReadTries = 64;

ClientSlot* Slots(Segment* segment) { return segment->impl()->root()->clients; }

void WriteText(ClientSlot& slot, TextField field, std::string_view text) {
  text = text.substr(0, field.words * 8);
  for (size_t w = 0; w < field.words; ++w) {
    uint64_t word = 0;
    size_t at = w * 8;
    if (at < text.size())
      std::memcpy(&word, text.data() + at, std::min<size_t>(8, text.size() - at));
    slot.text[field.word + w].store(word, std::memory_order_relaxed);
  }
}

std::string ReadText(const uint64_t* words, TextField field) {
  std::string text(reinterpret_cast<const char*>(words + field.word), field.words * 8);
  text.resize(std::strlen(text.c_str()));  // NUL-padded; no field holds a NUL.
  return text;
}

// Runs `write` on the row's text inside the seqlock, if the row is still `id`'s.
template <typename Write>
void Locked(ClientSlot& slot, uint64_t id, Write&& write) {
  if (slot.id.load(std::memory_order_acquire) != id) return;
  slot.seq.fetch_add(1, std::memory_order_acq_rel);  // Odd: readers retry.
  write();
  slot.seq.fetch_add(1, std::memory_order_release);
}

bool Valid(int slot) { return slot >= 0 && slot < ClientTable::kMaxRows; }

// Clears a row and frees it (its owner, or the recovery of its dead owner).
void Free(ClientSlot& slot) {
  slot.seq.fetch_add(1, std::memory_order_acq_rel);
  for (auto& word : slot.text) word.store(0, std::memory_order_relaxed);
  slot.flags.store(0, std::memory_order_relaxed);
  slot.pid.store(0, std::memory_order_relaxed);
  // Even again, also when a writer died mid-write (odd + 1 would stay odd).
  uint32_t seq = slot.seq.load(std::memory_order_relaxed);
  slot.seq.store(seq + (seq & 1u), std::memory_order_release);
  slot.id.store(0, std::memory_order_release);
}

}  // namespace

int ClientTable::Claim(uint64_t id, pid_t pid, int fd, std::string_view addr,
                       std::string_view laddr, int64_t now_ms) {
  if (id == 0) return -1;
  ClientSlot* slots = Slots(segment_);
  for (int i = 0; i < kMaxRows; ++i) {
    uint64_t expected = 0;
    if (slots[i].id.load(std::memory_order_relaxed) != 0 ||
        !slots[i].id.compare_exchange_strong(expected, id, std::memory_order_acq_rel)) {
      continue;
    }
    ClientSlot& slot = slots[i];
    Locked(slot, id, [&] {
      slot.pid.store(pid, std::memory_order_relaxed);
      slot.fd.store(fd, std::memory_order_relaxed);
      slot.connected_ms.store(now_ms, std::memory_order_relaxed);
      slot.last_ms.store(now_ms, std::memory_order_relaxed);
      slot.flags.store(0, std::memory_order_relaxed);
      slot.resp.store(2, std::memory_order_relaxed);
      slot.db.store(0, std::memory_order_relaxed);
      WriteText(slot, kAddr, addr);
      WriteText(slot, kLaddr, laddr);
      WriteText(slot, kName, "");
      WriteText(slot, kCmd, "NULL");
    });
    return i;
  }
  return -1;
}

void ClientTable::Release(int slot, uint64_t id) {
  if (!Valid(slot)) return;
  ClientSlot& s = Slots(segment_)[slot];
  if (s.id.load(std::memory_order_acquire) == id) Free(s);
}

void ClientTable::SetName(int slot, uint64_t id, std::string_view name) {
  if (!Valid(slot)) return;
  ClientSlot& s = Slots(segment_)[slot];
  Locked(s, id, [&] { WriteText(s, kName, name); });
}

void ClientTable::SetCommand(int slot, uint64_t id, std::string_view cmd, int64_t now_ms) {
  if (!Valid(slot)) return;
  ClientSlot& s = Slots(segment_)[slot];
  s.last_ms.store(now_ms, std::memory_order_relaxed);
  Locked(s, id, [&] { WriteText(s, kCmd, cmd); });
}

void ClientTable::Touch(int slot, uint64_t id, int64_t now_ms) {
  if (!Valid(slot)) return;
  ClientSlot& s = Slots(segment_)[slot];
  if (s.id.load(std::memory_order_relaxed) == id)
    s.last_ms.store(now_ms, std::memory_order_relaxed);
}

void ClientTable::SetFlag(int slot, uint64_t id, uint32_t flag, bool on) {
  if (!Valid(slot)) return;
  ClientSlot& s = Slots(segment_)[slot];
  if (s.id.load(std::memory_order_acquire) != id) return;
  on ? s.flags.fetch_or(flag, std::memory_order_relaxed)
     : s.flags.fetch_and(~flag, std::memory_order_relaxed);
}

void ClientTable::SetProtocol(int slot, uint64_t id, int resp) {
  if (!Valid(slot)) return;
  ClientSlot& s = Slots(segment_)[slot];
  if (s.id.load(std::memory_order_acquire) == id) s.resp.store(resp, std::memory_order_relaxed);
}

std::vector<ClientRow> ClientTable::List() const {
  std::vector<ClientRow> rows;
  ClientSlot* slots = Slots(segment_);
  for (int i = 0; i < kMaxRows; ++i) {
    ClientSlot& s = slots[i];
    for (int attempt = 0; attempt < kReadTries; ++attempt) {
      uint64_t id = s.id.load(std::memory_order_acquire);
      if (id == 0) break;
      uint32_t before = s.seq.load(std::memory_order_acquire);
      if (before & 1u) continue;
      ClientRow row;
      row.slot = i;
      row.id = id;
      row.pid = s.pid.load(std::memory_order_relaxed);
      row.fd = s.fd.load(std::memory_order_relaxed);
      row.connected_ms = s.connected_ms.load(std::memory_order_relaxed);
      row.last_ms = s.last_ms.load(std::memory_order_relaxed);
      row.flags = s.flags.load(std::memory_order_relaxed);
      row.resp = s.resp.load(std::memory_order_relaxed);
      row.db = s.db.load(std::memory_order_relaxed);
      uint64_t words[kClientTextWords + 1] = {};
      for (size_t w = 0; w < kClientTextWords; ++w) {
        words[w] = s.text[w].load(std::memory_order_relaxed);
      }
      std::atomic_thread_fence(std::memory_order_acquire);
      if (s.seq.load(std::memory_order_relaxed) != before ||
          s.id.load(std::memory_order_relaxed) != id) {
        continue;
      }
      row.addr = ReadText(words, kAddr);
      row.laddr = ReadText(words, kLaddr);
      row.name = ReadText(words, kName);
      row.cmd = ReadText(words, kCmd);
      rows.push_back(std::move(row));
      break;
    }
  }
  return rows;
}

bool ClientTable::RequestKill(uint64_t id) {
  if (id == 0) return false;
  ClientSlot* slots = Slots(segment_);
  for (int i = 0; i < kMaxRows; ++i) {
    if (slots[i].id.load(std::memory_order_acquire) != id) continue;
    slots[i].flags.fetch_or(ClientRow::kKillRequested, std::memory_order_release);
    return true;
  }
  return false;
}

bool ClientTable::KillRequested(int slot, uint64_t id) const {
  if (!Valid(slot)) return false;
  const ClientSlot& s = Slots(segment_)[slot];
  return s.id.load(std::memory_order_acquire) == id &&
         (s.flags.load(std::memory_order_acquire) & ClientRow::kKillRequested) != 0;
}

bool ClientTable::RequestUnblock(uint64_t id, bool error) {
  if (id == 0) return false;
  ClientSlot* slots = Slots(segment_);
  for (int i = 0; i < kMaxRows; ++i) {
    if (slots[i].id.load(std::memory_order_acquire) != id) continue;
    if ((slots[i].flags.load(std::memory_order_acquire) & ClientRow::kBlocked) == 0) return false;
    slots[i].flags.fetch_or(error ? ClientRow::kUnblockError : ClientRow::kUnblockTimeout,
                            std::memory_order_release);
    return true;
  }
  return false;
}

uint32_t ClientTable::TakeUnblock(int slot, uint64_t id) {
  if (!Valid(slot)) return 0;
  ClientSlot& s = Slots(segment_)[slot];
  if (s.id.load(std::memory_order_acquire) != id) return 0;
  constexpr uint32_t kUnblock = ClientRow::kUnblockTimeout | ClientRow::kUnblockError;
  uint32_t taken = s.flags.fetch_and(~kUnblock, std::memory_order_acq_rel) & kUnblock;
  return (taken & ClientRow::kUnblockError) ? ClientRow::kUnblockError : taken;
}

bool ClientTable::AnyKillRequested(pid_t pid) const {
  const ClientSlot* slots = Slots(segment_);
  for (int i = 0; i < kMaxRows; ++i) {
    if (slots[i].id.load(std::memory_order_relaxed) != 0 &&
        (slots[i].flags.load(std::memory_order_acquire) & ClientRow::kKillRequested) != 0 &&
        slots[i].pid.load(std::memory_order_relaxed) == pid) {
      return true;
    }
  }
  return false;
}

int ClientTable::ReleaseRowsOf(pid_t pid) {
  int released = 0;
  for (int i = 0; i < kMaxRows; ++i) {
    ClientSlot& s = Slots(segment_)[i];
    if (s.id.load(std::memory_order_acquire) == 0 || s.pid.load(std::memory_order_acquire) != pid) {
      continue;
    }
    Free(s);
    ++released;
  }
  return released;
}

}  // namespace shm
