#include "shm/segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/version.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <new>
#include <thread>
#include <vector>

#include "blob_cache.h"
#include "layout.h"
#include "object_guard.h"
#include "segment_impl.h"
#include "shm/format_size.h"
#include "shm/mutex.h"
#include "shm/process_id.h"
#include "shm/registry.h"
#include "shm/version.h"
#include "test_clock.h"

namespace shm {
namespace {

// The only named object: it holds the handle of Root, which is allocated 64-byte aligned (its
// slots are cache-line aligned; construct<> only guarantees 16).
constexpr char kRootAnchorName[] = "shmstate.root";
struct RootAnchor {
  uint64_t root = 0;
};
// Room for Boost's own bookkeeping on top of Root and the registry tables.
constexpr size_t kSegmentOverhead = 64 * 1024;

std::atomic<uint64_t> g_next_instance_id{1};

Status CheckShmSpace(size_t size) {
  struct statvfs fs;
  if (statvfs("/dev/shm", &fs) != 0) {
    return Status::Internal(std::string("cannot stat /dev/shm: ") + strerror(errno));
  }
  uint64_t available = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  if (available < size) {
    return Status::OutOfSpace("not enough space in /dev/shm for a " + FormatSize(size) +
                              " segment: " + FormatSize(available) +
                              " free (use a smaller --size, or e.g. docker --shm-size)");
  }
  return Status::OK();
}

// Lays out the registry tables right after Root. Runs once, in the creating process.
Status InitRegistry(Segment::Impl* impl, uint32_t capacity) {
  RegistryRep& reg = impl->root()->registry;
  uint32_t index_size = 16;
  while (index_size < capacity * 2) index_size *= 2;
  uint64_t entries = 0;
  uint64_t index = 0;
  SHM_RETURN_IF_ERROR(impl->Allocate(sizeof(EntryRep) * capacity, &entries, alignof(EntryRep)));
  SHM_RETURN_IF_ERROR(impl->Allocate(sizeof(std::atomic<uint32_t>) * index_size, &index, 64));
  auto* entry_array = impl->Ptr<EntryRep>(entries);
  for (uint32_t i = 0; i < capacity; ++i) new (&entry_array[i]) EntryRep();
  auto* words = impl->Ptr<std::atomic<uint32_t>>(index);
  for (uint32_t i = 0; i < index_size; ++i) new (&words[i]) std::atomic<uint32_t>(0);
  reg.capacity = capacity;
  reg.index_size = index_size;
  reg.entries = entries;
  reg.index = index;
  RepairRegistryLocked(impl);  // Builds the free list from the (all free) entries.
  return Status::OK();
}

// The first fields of Root (magic, layout_version, boost_version) never move (layout.h), so a
// build of any layout version reads them right and refuses what it cannot read, naming both
// sides and what to do, instead of misreading the rest.
Status VerifyVersions(uint32_t layout_version, uint32_t boost_version, std::string_view where) {
  if (layout_version != kLayoutVersion) {
    const bool newer = layout_version > kLayoutVersion;
    return Status::InvalidArgument(
        std::string(where) + " has layout v" + std::to_string(layout_version) +
        " but this build (shmstate " + SHMSTATE_VERSION + ") reads layout v" +
        std::to_string(kLayoutVersion) + ": " +
        (newer ? "the server is newer; upgrade this module/client to the server's release"
               : "the server is older; upgrade the server (stop it with --snapshot, install the "
                 "new release, start it again: docs/deploy.md#upgrades)") +
        ", or run the same shmstate release on both sides");
  }
  if (boost_version != BOOST_VERSION) {
    return Status::InvalidArgument(std::string(where) + " was made with Boost " +
                                   std::to_string(boost_version) + " but this build uses " +
                                   std::to_string(BOOST_VERSION) +
                                   ": build the server and its clients with the same Boost");
  }
  return Status::OK();
}

Status VerifyRoot(const Root* root, std::string_view shm_name) {
  std::string where = "segment '" + std::string(shm_name) + "'";
  if (root->magic != kSegmentMagic) {
    return Status::InvalidArgument("not a shmstate segment (bad magic) in " + where);
  }
  SHM_RETURN_IF_ERROR(VerifyVersions(root->layout_version, root->boost_version, where));
  std::string_view gen_text = shm_name.substr(shm_name.rfind('.') + 1);
  if (gen_text != std::to_string(root->generation)) {
    return Status::InvalidArgument(where + " records generation " +
                                   std::to_string(root->generation));
  }
  return Status::OK();
}

// Reads the versions of a segment before Boost parses anything in it: the segment manager's own
// header (and the index that finds Root) may differ in a segment of another release, and Boost
// would then misread it. Root is the first allocation, 64-byte aligned, within the first 64 KiB;
// its frozen prefix is found there by its magic. Nothing found (or no read access) is left to
// the regular checks after the open.
Status PrecheckVersions(const std::string& shm_name) {
  int fd = shm_open(("/" + shm_name).c_str(), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return Status::OK();
  std::vector<char> head(64 * 1024);
  ssize_t got = pread(fd, head.data(), head.size(), 0);
  close(fd);
  struct Prefix {
    uint64_t magic;
    uint32_t layout_version;
    uint32_t boost_version;
  };
  for (ssize_t at = 0; at + static_cast<ssize_t>(sizeof(Prefix)) <= got; at += alignof(Root)) {
    Prefix prefix;
    memcpy(&prefix, head.data() + at, sizeof prefix);
    if (prefix.magic == kSegmentMagic) {
      return VerifyVersions(prefix.layout_version, prefix.boost_version,
                            "segment '" + shm_name + "'");
    }
  }
  return Status::OK();
}

// Mode 0660 and `group` on the shared-memory object just created (Boost made it 0600).
Status GiveToGroup(const std::string& shm_name, gid_t group) {
  int fd = shm_open(("/" + shm_name).c_str(), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0)
    return Status::Internal("cannot reopen segment '" + shm_name + "': " + strerror(errno));
  Status s;
  if (fchown(fd, static_cast<uid_t>(-1), group) != 0) {
    s = Status::InvalidArgument("cannot give segment '" + shm_name + "' to group " +
                                std::to_string(group) + ": " + strerror(errno) +
                                " (the server's user must be a member of the group)");
  } else if (fchmod(fd, 0660) != 0) {
    s = Status::Internal("cannot chmod segment '" + shm_name + "': " + strerror(errno));
  }
  close(fd);
  return s;
}

}  // namespace

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

namespace {
// Zero outside tests; a relaxed load costs nothing next to reading the clock.
std::atomic<int64_t> wall_clock_advance_ms{0};
}  // namespace

int64_t WallNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
             .count() +
         wall_clock_advance_ms.load(std::memory_order_relaxed);
}

void AdvanceWallClockForTesting(int64_t ms) {
  wall_clock_advance_ms.fetch_add(ms, std::memory_order_relaxed);
}

void ResetWallClockForTesting() { wall_clock_advance_ms.store(0, std::memory_order_relaxed); }

// ---------------------------------------------------------------------------------------------
// Segment::Impl

namespace {

// Mappings of this process that are still mapped, by instance id: a thread that exits releases
// its slots only in those (a slot of an unmapped segment is not memory it may touch).
struct LiveInstanceSet {
  Mutex mu;
  std::vector<uint64_t> ids GUARDED_BY(mu);
};
LiveInstanceSet& LiveInstances() {
  static auto* set = new LiveInstanceSet;  // Never destroyed: threads may exit during teardown.
  return *set;
}

}  // namespace

Segment::Impl::Impl(ManagedSegment&& managed, std::string shm_name)
    : managed_(std::move(managed)),
      shm_name_(std::move(shm_name)),
      base_(static_cast<char*>(managed_.get_address())),
      size_(managed_.get_size()),
      root_(nullptr),
      instance_id_(g_next_instance_id.fetch_add(1)) {
  RootAnchor* anchor = managed_.find<RootAnchor>(kRootAnchorName).first;
  if (anchor != nullptr && anchor->root != 0) root_ = Ptr<Root>(anchor->root);
  LiveInstanceSet& live = LiveInstances();
  MutexLock lock(&live.mu);
  live.ids.push_back(instance_id_);
}

namespace {

// Runs `allocate` (Status()) on the allocator unless the segment is poisoned, and turns what the
// allocator throws into a Status: the one boundary of Allocate and AllocateMany.
template <typename Fn>
Status WithAllocator(Segment::Impl* segment, Fn&& allocate) {
  auto poisoned = [] {
    return Status::Poisoned("segment allocator is poisoned; the manager is rebuilding it");
  };
  if (segment->root() != nullptr && segment->root()->poisoned.load(std::memory_order_acquire)) {
    return poisoned();
  }
  try {
    return allocate();
  } catch (const SegmentPoisoned&) {
    segment->MarkPoisoned();
    return poisoned();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("allocate: ") + e.what());
  }
}

}  // namespace

Status Segment::Impl::Allocate(size_t bytes, uint64_t* handle, size_t alignment) {
  return WithAllocator(this, [&] {
    void* p = alignment <= 16 ? managed_.allocate(bytes, std::nothrow)
                              : managed_.allocate_aligned(bytes, alignment, std::nothrow);
    if (p == nullptr) {
      return Status::OutOfSpace("segment full: cannot allocate " + FormatSize(bytes) + " (" +
                                FormatSize(managed_.get_free_memory()) + " free)");
    }
    *handle = Handle(p);
    return Status::OK();
  });
}

Status Segment::Impl::AllocateMany(size_t bytes, size_t n, uint64_t* handles, size_t* got) {
  *got = 0;
  Status s = WithAllocator(this, [&] {
    ManagedSegment::segment_manager::multiallocation_chain chain;
    managed_.get_segment_manager()->allocate_many(std::nothrow, bytes, n, chain);
    while (!chain.empty() && *got < n) handles[(*got)++] = Handle(chain.pop_front());
    if (*got == 0) return Status::OutOfSpace("segment full: cannot allocate " + FormatSize(bytes));
    return Status::OK();
  });
  if (s.ok()) PopulateAhead(handles[0], handles[*got - 1] + bytes);
  return s;
}

void Segment::Impl::PopulateAhead(uint64_t from, uint64_t to) {
  // Blocks of one call are carved in address order from one free block; a batch that crosses a
  // window boundary is (in a segment that grows) at the frontier of written memory.
  if (from / kPopulateWindow == to / kPopulateWindow) return;
  const uint64_t start = to / kPopulateWindow * kPopulateWindow + kPopulateWindow;
  if (start >= size_) return;
  Populate(start, std::min<uint64_t>(kPopulateWindow, size_ - start));
}

void Segment::Impl::Populate(uint64_t handle, uint64_t bytes) {
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t start = handle / page * page;
  const uint64_t end = std::min<uint64_t>(size_, (handle + bytes + page - 1) / page * page);
  if (start >= end) return;
  // Best effort: a kernel without MADV_POPULATE_WRITE (before 5.14), or a full /dev/shm, leaves
  // the pages to fault in one by one as before (a full /dev/shm then shows as SIGBUS either way).
  madvise(base_ + start, end - start, MADV_POPULATE_WRITE);
}

void Segment::Impl::Free(uint64_t handle) {
  if (!IsBlob(handle)) return;
  try {
    managed_.deallocate(Ptr<void>(handle));
  } catch (const SegmentPoisoned&) {
    MarkPoisoned();  // Leaked; the rebuild reclaims it.
  } catch (const std::exception&) {
    MarkPoisoned();
  }
}

void Segment::Impl::FreeMany(const uint64_t* handles, size_t n) {
  try {
    ManagedSegment::segment_manager::multiallocation_chain chain;
    for (size_t i = 0; i < n; ++i) {
      if (IsBlob(handles[i])) chain.push_back(Ptr<void>(handles[i]));
    }
    if (!chain.empty()) managed_.get_segment_manager()->deallocate_many(chain);
  } catch (const SegmentPoisoned&) {
    MarkPoisoned();  // Leaked; the rebuild reclaims them.
  } catch (const std::exception&) {
    MarkPoisoned();
  }
}

bool ReleaseIntentSlot(Segment::Impl* segment, IntentSlot& slot, bool owner_alive) {
  if (owner_alive) {
    // The manager may be trimming this cache right now; that takes microseconds.
    uint32_t expected = kCacheFree;
    for (int spin = 0; !slot.cache_owner.compare_exchange_strong(expected, kCacheOwnerThread);
         ++spin) {
      if (spin == 100000) return false;  // A trimmer that died: the slot is settled with its pid.
      expected = kCacheFree;
      std::this_thread::yield();
    }
  }
  DropSlotCache(segment, slot);
  slot.cache_owner.store(kCacheFree);
  slot.pinned.store(0);
  slot.client_op.store(0);
  slot.owner_tid.store(0);
  slot.owner_pid.store(0);
  return true;
}

namespace {

struct CachedSlot {
  uint64_t instance_id = 0;
  Segment::Impl* segment = nullptr;  // Valid while instance_id is among LiveInstances().
  IntentSlot* slot = nullptr;
};

// The slot this thread used last, MySlot's hot path (every operation's client gate asks for
// it). Kept apart from t_slot_cache because that one has a destructor: each access to it goes
// through its thread_local guard, and, from a module loaded with dlopen (the Python extension),
// through __tls_get_addr; together a fifth of a Counter.incr. This one is trivial and in the
// initial-exec model (a few bytes of the static TLS glibc keeps for such modules): one load off
// the thread pointer. Only ever a copy of a t_slot_cache entry; cleared when that one goes.
struct LastSlot {
  uint64_t instance_id;
  IntentSlot* slot;
  pid_t pid;
  pid_t tid;
};
__attribute__((tls_model("initial-exec"))) thread_local LastSlot t_last_slot{0, nullptr, 0, 0};

// This thread's slots, one per mapping it used. When the thread exits, the slots it holds go
// back to the pool (threads that come and go, e.g. one per request, would otherwise use up the
// segment's slots); a slot with a commit in flight cannot be left mid-way by a thread that
// returns normally, and is kept for the dead-process repair if it somehow is. The same goes for
// the slot of a mapping evicted from the cache (MySlot).
void ReleaseCachedSlot(const CachedSlot& c) {
  LiveInstanceSet& instances = LiveInstances();
  MutexLock lock(&instances.mu);
  if (c.slot == nullptr ||
      std::find(instances.ids.begin(), instances.ids.end(), c.instance_id) == instances.ids.end()) {
    return;
  }
  IntentSlot& slot = *c.slot;
  if (slot.owner_pid.load() != CurrentPid() || slot.owner_tid.load() != CurrentTid()) return;
  if (t_last_slot.slot == c.slot) t_last_slot = LastSlot{0, nullptr, 0, 0};
  if (slot.in_cs.load() || slot.new_off.load() || slot.old_off.load()) return;
  // Not while this thread is inside an operation on that segment (an eviction can happen from a
  // nested use of another mapping).
  if (slot.client_op.load() || slot.pinned.load() || slot.cache_owner.load() != kCacheFree) return;
  ReleaseIntentSlot(c.segment, slot, /*owner_alive=*/true);
}

struct ThreadSlots {
  CachedSlot cached[4];
  ~ThreadSlots() {
    for (CachedSlot& c : cached) ReleaseCachedSlot(c);
  }
};
thread_local ThreadSlots t_slot_cache;

}  // namespace

Segment::Impl::~Impl() {
  LiveInstanceSet& instances = LiveInstances();
  MutexLock lock(&instances.mu);
  std::vector<uint64_t>& live = instances.ids;
  live.erase(std::remove(live.begin(), live.end(), instance_id_), live.end());
}

IntentSlot* Segment::Impl::MySlot() {
  // The same checks as the loop below, with the pid and tid the entry was made with (this
  // thread's, while the process is the one that made it: a fork child has another pid).
  const LastSlot& last = t_last_slot;
  pid_t pid = CurrentPid();
  if (last.instance_id == instance_id_ && last.pid == pid &&
      last.slot->owner_pid.load(std::memory_order_relaxed) == pid &&
      last.slot->owner_tid.load(std::memory_order_relaxed) == last.tid) {
    return last.slot;
  }
  return MySlotSlow();
}

IntentSlot* Segment::Impl::MySlotSlow() {
  pid_t tid = CurrentTid();
  pid_t pid = CurrentPid();
  for (CachedSlot& cached : t_slot_cache.cached) {
    if (cached.instance_id == instance_id_ && cached.slot != nullptr &&
        cached.slot->owner_tid.load(std::memory_order_relaxed) == tid &&
        cached.slot->owner_pid.load(std::memory_order_relaxed) == pid) {
      t_last_slot = LastSlot{instance_id_, cached.slot, pid, tid};
      return cached.slot;
    }
  }
  IntentSlot* claimed = nullptr;
  for (uint32_t i = 0; i < kMaxIntentSlots; ++i) {
    IntentSlot& slot = root_->intents[i];
    pid_t expected = 0;
    if (slot.owner_pid.compare_exchange_strong(expected, pid)) {
      slot.owner_tid.store(tid);
      claimed = &slot;
      uint32_t in_use = root_->intents_in_use.load();
      while (in_use < i + 1 && !root_->intents_in_use.compare_exchange_weak(in_use, i + 1)) {
      }
      break;
    }
  }
  if (claimed == nullptr) return nullptr;
  CachedSlot* victim = &t_slot_cache.cached[0];
  for (CachedSlot& cached : t_slot_cache.cached) {
    if (cached.instance_id == instance_id_ || cached.instance_id == 0) {
      victim = &cached;
      break;
    }
  }
  // A thread that uses more mappings than the cache holds (a process with several segments)
  // gives the evicted mapping's slot back; kept, it would be forgotten here and claimed again
  // on the next use, until that segment ran out of slots.
  if (victim->instance_id != 0 && victim->instance_id != instance_id_) ReleaseCachedSlot(*victim);
  *victim = CachedSlot{instance_id_, this, claimed};
  t_last_slot = LastSlot{instance_id_, claimed, pid, tid};
  return claimed;
}

void Segment::Impl::ReleaseSlotsOfThisProcess() {
  pid_t pid = CurrentPid();
  for (IntentSlot& slot : root_->intents) {
    if (slot.owner_pid.load() != pid) continue;
    if (slot.in_cs.load() || slot.new_off.load() || slot.old_off.load()) continue;
    ReleaseIntentSlot(this, slot, /*owner_alive=*/true);
  }
}

// ---------------------------------------------------------------------------------------------
// Segment

Segment::Segment(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)), registry_(std::make_unique<Registry>(this)) {}

Segment::~Segment() {
  if (impl_ && impl_->root()) impl_->ReleaseSlotsOfThisProcess();
}

std::string Segment::ShmName(std::string_view prefix, uint64_t generation) {
  return std::string(prefix) + "." + std::to_string(generation);
}

Status Segment::ValidatePrefix(std::string_view prefix) {
  Status s = ValidateName(prefix);
  if (!s.ok()) return Status::InvalidArgument("bad segment name: " + std::string(s.message()));
  if (prefix.size() > 100) return Status::InvalidArgument("segment name longer than 100 bytes");
  return Status::OK();
}

uint32_t Segment::LayoutVersion() { return kLayoutVersion; }

size_t Segment::MinimumSize(uint32_t max_objects) {
  return sizeof(Root) + kSegmentOverhead +
         size_t{max_objects} * (sizeof(EntryRep) + 2 * sizeof(uint32_t) * 2);
}

Status Segment::Create(const SegmentOptions& options, std::unique_ptr<Segment>* result) {
  SHM_RETURN_IF_ERROR(ValidatePrefix(options.name));
  if (options.max_objects < 1 || options.max_objects > (1u << 24)) {
    return Status::InvalidArgument("max_objects must be between 1 and 16777216");
  }
  size_t minimum = MinimumSize(options.max_objects);
  if (options.size < minimum) {
    return Status::InvalidArgument("segment size " + FormatSize(options.size) +
                                   " is too small for " + std::to_string(options.max_objects) +
                                   " objects: at least " + FormatSize(minimum) + " needed");
  }
  SHM_RETURN_IF_ERROR(CheckShmSpace(options.size));
  std::string shm_name = ShmName(options.name, options.generation);
  std::unique_ptr<Impl> impl;
  try {
    bip::permissions perm;
    perm.set_permissions(0600);
    ManagedSegment managed(bip::create_only, shm_name.c_str(), options.size, nullptr, perm);
    void* memory = managed.allocate_aligned(sizeof(Root), alignof(Root));
    Root* root = new (memory) Root();
    managed.construct<RootAnchor>(kRootAnchorName)()->root = static_cast<uint64_t>(
        static_cast<char*>(memory) - static_cast<char*>(managed.get_address()));
    root->magic = kSegmentMagic;
    root->layout_version = kLayoutVersion;
    root->boost_version = BOOST_VERSION;
    root->generation = options.generation;
    root->size = options.size;
    root->creator_pid = getpid();
    root->created_ms = WallNowMs();
    impl = std::make_unique<Impl>(std::move(managed), shm_name);
  } catch (const bip::interprocess_exception& e) {
    if (e.get_error_code() == bip::already_exists_error) {
      return Status::AlreadyExists("shared-memory segment '" + shm_name + "' already exists");
    }
    bip::shared_memory_object::remove(shm_name.c_str());
    return Status::Internal("cannot create segment '" + shm_name + "': " + e.what());
  }
  Status s = options.group == SegmentOptions::kNoGroup ? Status::OK()
                                                       : GiveToGroup(shm_name, options.group);
  if (s.ok()) s = InitRegistry(impl.get(), options.max_objects);
  if (!s.ok()) {
    impl.reset();
    bip::shared_memory_object::remove(shm_name.c_str());
    return s;
  }
  result->reset(new Segment(std::move(impl)));
  return Status::OK();
}

Status Segment::Attach(std::string_view shm_name, std::unique_ptr<Segment>* result) {
  std::string name(shm_name);
  SHM_RETURN_IF_ERROR(PrecheckVersions(name));
  std::unique_ptr<Impl> impl;
  try {
    ManagedSegment managed(bip::open_only, name.c_str());
    impl = std::make_unique<Impl>(std::move(managed), name);
  } catch (const SegmentPoisoned&) {
    return Status::Poisoned("segment '" + name + "' is poisoned");
  } catch (const bip::interprocess_exception& e) {
    if (e.get_error_code() == bip::not_found_error) {
      return Status::NotFound("no shared-memory segment named '" + name + "'");
    }
    std::string hint = e.get_native_error() == EACCES
                           ? " (only the server's user, or with `shmstate serve --group G` members "
                             "of G, may attach: docs/deploy.md#permissions)"
                           : "";
    return Status::InvalidArgument("cannot attach to segment '" + name + "': " + e.what() + hint);
  }
  if (impl->root() == nullptr) {
    return Status::InvalidArgument("not a shmstate segment (no root) in segment '" + name + "'");
  }
  SHM_RETURN_IF_ERROR(VerifyRoot(impl->root(), name));
  result->reset(new Segment(std::move(impl)));
  return Status::OK();
}

Status Segment::Remove(std::string_view shm_name) {
  std::string name(shm_name);
  if (!bip::shared_memory_object::remove(name.c_str())) {
    return Status::NotFound("no shared-memory segment named '" + name + "'");
  }
  return Status::OK();
}

const std::string& Segment::shm_name() const { return impl_->shm_name(); }
uint64_t Segment::instance_id() const { return impl_->instance_id(); }
uint64_t Segment::generation() const { return impl_->root()->generation; }
size_t Segment::size() const { return impl_->managed().get_size(); }
size_t Segment::free_bytes() const {
  return impl_->managed().get_free_memory() + CachedBytes(impl_.get());
}
size_t Segment::cached_bytes() const { return CachedBytes(impl_.get()); }
size_t Segment::TrimIdleCaches() { return impl_->TrimIdleCaches(); }
Registry& Segment::registry() { return *registry_; }

bool Segment::poisoned() const {
  return impl_->root()->poisoned.load(std::memory_order_acquire) != 0;
}

Status Segment::Probe() {
  // The name index's lock first: a process that died holding it (attaching, or naming an object)
  // is found by nobody else until some process attaches, and that one can only fail.
  try {
    impl_->managed().find<RootAnchor>(kRootAnchorName);
  } catch (const SegmentPoisoned&) {
    impl_->MarkPoisoned();
  }
  uint64_t handle = 0;
  SHM_RETURN_IF_ERROR(impl_->Allocate(8, &handle));
  impl_->Free(handle);
  return poisoned() ? Status::Poisoned("segment allocator is poisoned") : Status::OK();
}

}  // namespace shm
