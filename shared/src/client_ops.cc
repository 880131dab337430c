// The client side of a generation move (Segment::EnterClientOp and friends) and the manager's
// half of it; the protocol is described next to the declarations in shm/segment.h.
#include <dirent.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <thread>

#include "layout.h"
#include "segment_impl.h"
#include "shm/segment.h"

namespace shm {
namespace {

// Every client operation reads Root::draining (EnterClientOp) and writes its own thread's
// IntentSlot::client_op: neither line may hold what another running process writes, or every
// operation of every process would miss on it. Root's first line holds only fields written at
// creation or by a drain; the registry (its lock, its counters) starts on the next one.
static_assert(alignof(Root) >= 64 && offsetof(Root, draining) < 64 &&
                  offsetof(Root, registry) >= 64,
              "Root::draining shares its cache line with a field written at run time");
static_assert(alignof(IntentSlot) == 64 && sizeof(IntentSlot) % 64 == 0,
              "an intent slot shares a cache line with another thread's");

bool ProcessAlive(pid_t pid) { return pid != 0 && (kill(pid, 0) == 0 || errno != ESRCH); }

uint64_t GenerationOf(std::string_view shm_name) {
  return std::stoull(std::string(shm_name.substr(shm_name.rfind('.') + 1)));
}

}  // namespace

std::vector<std::string> Segment::ListGenerations(std::string_view prefix, std::string_view dir) {
  std::vector<std::string> result;
  std::string dir_text(dir);
  DIR* d = opendir(dir_text.c_str());
  if (d == nullptr) return result;
  while (dirent* e = readdir(d)) {
    std::string_view file = e->d_name;
    if (file.size() <= prefix.size() + 1 || file.substr(0, prefix.size()) != prefix ||
        file[prefix.size()] != '.') {
      continue;
    }
    std::string_view generation = file.substr(prefix.size() + 1);
    // Digits only (not the lock file), and few enough to be a uint64.
    if (generation.size() <= 19 &&
        generation.find_first_not_of("0123456789") == std::string_view::npos) {
      result.emplace_back(file);
    }
  }
  closedir(d);
  std::sort(result.begin(), result.end(), [](const std::string& a, const std::string& b) {
    return GenerationOf(a) > GenerationOf(b);
  });
  return result;
}

Status Segment::EnterClientOp() {
  IntentSlot* slot = impl_->MySlot();
  if (slot == nullptr) return Status::OutOfSpace("every intent slot of the segment is taken");
  // seq_cst store then load, against the manager's seq_cst store of `draining` then loads of
  // the slots: at least one side sees the other's write.
  slot->client_op.store(1, std::memory_order_seq_cst);
  if (impl_->root()->draining.load(std::memory_order_seq_cst) != 0) {
    slot->client_op.store(0, std::memory_order_release);
    return Status::Poisoned("segment '" + shm_name() + "' is being moved or the server stopped");
  }
  return Status::OK();
}

void Segment::LeaveClientOp() {
  IntentSlot* slot = impl_->MySlot();
  if (slot != nullptr) slot->client_op.store(0, std::memory_order_release);
}

bool Segment::draining() const {
  return impl_->root()->draining.load(std::memory_order_seq_cst) != 0;
}

uint64_t Segment::successor_generation() const {
  return impl_->root()->successor_generation.load(std::memory_order_acquire);
}

void Segment::BeginDrain() { impl_->root()->draining.store(1, std::memory_order_seq_cst); }

void Segment::EndDrain() { impl_->root()->draining.store(0, std::memory_order_seq_cst); }

bool Segment::WaitForClientOps(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  Root* root = impl_->root();
  for (auto pause = std::chrono::microseconds(50);;
       pause = std::min(pause * 2, decltype(pause)(5000))) {
    bool busy = false;
    uint32_t in_use = root->intents_in_use.load(std::memory_order_seq_cst);
    for (uint32_t i = 0; i < in_use && !busy; ++i) {
      IntentSlot& slot = root->intents[i];
      busy = slot.client_op.load(std::memory_order_seq_cst) != 0 &&
             ProcessAlive(slot.owner_pid.load(std::memory_order_relaxed));
    }
    if (!busy) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(pause);
  }
}

void Segment::SetSuccessor(uint64_t generation) {
  impl_->root()->successor_generation.store(generation, std::memory_order_release);
}

void Segment::MarkServing() { impl_->root()->serving.store(1, std::memory_order_release); }

bool Segment::serving() const {
  return impl_->root()->serving.load(std::memory_order_acquire) != 0;
}

std::vector<pid_t> Segment::SlotOwners() const {
  std::vector<pid_t> pids;
  Root* root = impl_->root();
  uint32_t in_use = root->intents_in_use.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < in_use; ++i) {
    pid_t pid = root->intents[i].owner_pid.load(std::memory_order_acquire);
    if (pid != 0 && std::find(pids.begin(), pids.end(), pid) == pids.end()) pids.push_back(pid);
  }
  return pids;
}

std::vector<pid_t> Segment::LiveClients() const {
  pid_t manager = impl_->root()->creator_pid;
  std::vector<pid_t> clients;
  std::vector<WorkerInfo> workers = Workers();
  for (pid_t pid : SlotOwners()) {
    bool worker = std::any_of(workers.begin(), workers.end(),
                              [pid](const WorkerInfo& w) { return w.pid == pid; });
    if (!worker && pid != manager && ProcessAlive(pid)) clients.push_back(pid);
  }
  return clients;
}

}  // namespace shm
