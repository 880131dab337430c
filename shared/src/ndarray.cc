#include "shm/ndarray.h"

#include <sched.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cfloat>
#include <charconv>
#include <cmath>
#include <limits>
#include <new>
#include <type_traits>
#include <utility>

#include "array_kernels.h"
#include "boundary.h"
#include "cow.h"
#include "crash_point.h"
#include "kind_ops.h"
#include "layout.h"
#include "ndarray_rep.h"
#include "object_guard.h"
#include "segment_impl.h"
#include "shm/log.h"
#include "shm/npy.h"

namespace shm {
using namespace array_kernels;  // NOLINT: the kernels are this file's vocabulary.
namespace {

// ---- In-segment helpers -----------------------------------------------------------------------

char* DataOf(Segment::Impl* seg, uint64_t body) { return seg->Ptr<char>(body) + kArrayDataOffset; }

StridedView UndoView(const UndoRep* undo) {
  StridedView view;
  view.offset = undo->offset;
  view.shape.assign(undo->shape, undo->shape + undo->ndim);
  view.strides.assign(undo->strides, undo->strides + undo->ndim);
  return view;
}

// Copies the saved bytes of the write in flight back. REQUIRES: the array's lock; undo != 0.
void RollBackLocked(Segment::Impl* seg, uint64_t body, uint64_t undo) {
  const auto* u = seg->Ptr<UndoRep>(undo);
  Scatter(DataOf(seg, body), UndoView(u), u->itemsize, seg->Ptr<char>(undo) + kUndoDataOffset,
          false);
  seg->Ptr<NdArrayRep>(body)->version.fetch_add(1, std::memory_order_release);
}

void RepairArrayLocked(Segment::Impl* seg, EntryRep* entry) {
  uint64_t body = entry->body.load();
  auto* rep = seg->Ptr<NdArrayRep>(body);
  uint64_t undo = rep->undo.load(std::memory_order_acquire);
  if (!IsBlob(undo)) return;
  RollBackLocked(seg, body, undo);  // Idempotent if this repair dies too.
  rep->undo.store(0, std::memory_order_release);
  seg->Free(undo);
  SHM_LOG(kWarn) << "array '" << std::string_view(entry->name, entry->name_length)
                 << "': rolled back a write interrupted by a dead process";
}

// Waits until no live thread pins `entry` (IntentSlot::pinned; array atomics and lock-free reads
// hold a pin for nanoseconds). A pin left by a dead process is skipped: that process can touch
// nothing any more, and the manager clears its slot. False after a second of pins by live threads
// (a stalled thread): the caller then leaks the body rather than free it under that thread.
bool WaitForPins(Segment::Impl* seg, uint64_t entry) {
  int64_t deadline = 0;
  const uint32_t in_use = seg->root()->intents_in_use.load(std::memory_order_seq_cst);
  for (uint32_t i = 0; i < in_use && i < kMaxIntentSlots; ++i) {
    IntentSlot& slot = seg->root()->intents[i];
    while (slot.pinned.load(std::memory_order_seq_cst) == entry) {
      pid_t pid = slot.owner_pid.load(std::memory_order_relaxed);
      if (pid == 0 || (kill(pid, 0) != 0 && errno == ESRCH)) break;
      if (deadline == 0) deadline = SteadyNowMs() + 1000;
      if (SteadyNowMs() > deadline) return false;
      sched_yield();
    }
  }
  return true;
}

void DestroyArray(Segment::Impl* seg, uint64_t body) {
  auto* rep = seg->Ptr<NdArrayRep>(body);
  if (rep->entry != 0 && !WaitForPins(seg, rep->entry)) {
    SHM_LOG(kWarn) << "array body leaked: a stalled thread still touches it";
    return;
  }
  seg->Free(rep->undo.exchange(0));
  seg->Free(body);
}

// Keeps the array's body from being freed while this thread touches it without the lock: for
// its lifetime, this thread's intent slot names the entry (see WaitForPins). The slot is stored
// before the body is loaded, and a freer publishes before it scans the slots, so one of the two
// sees the other. held() is false when no intent slot is free: the caller then takes the lock.
class Pin {
 public:
  explicit Pin(const ObjectRef& ref) : slot_(ref.segment->impl()->MySlot()) {
    if (slot_ == nullptr) return;
    slot_->pinned.store(ref.segment->impl()->Handle(ref.entry), std::memory_order_seq_cst);
    if (IsCurrent(ref)) body_ = ref.entry->body.load(std::memory_order_seq_cst);
    if (!IsCurrent(ref)) body_ = 0;
  }
  ~Pin() {
    if (slot_ != nullptr) slot_->pinned.store(0, std::memory_order_release);
  }
  Pin(const Pin&) = delete;
  Pin& operator=(const Pin&) = delete;
  bool held() const { return slot_ != nullptr; }
  // 0 when the array is gone.
  uint64_t body() const { return body_; }

 private:
  IntentSlot* const slot_;
  uint64_t body_ = 0;
};

// The body for a lock-free op: pinned, or, when no slot is free to pin with, under the lock.
Status PinnedOrLockedBody(const ObjectRef& ref, const Pin& pin, ObjectGuard* guard,
                          uint64_t* body) {
  if (!pin.held()) {
    SHM_RETURN_IF_ERROR(guard->Lock(ref));
    *body = ref.entry->body.load(std::memory_order_acquire);
    return Status::OK();
  }
  if (pin.body() == 0) return Status::NotFound("array was deleted");
  *body = pin.body();
  return Status::OK();
}

Status CheckShape(const std::vector<int64_t>& shape, DType dtype, uint64_t* nbytes) {
  if (shape.empty() || shape.size() > static_cast<size_t>(kMaxDims)) {
    return Status::InvalidArgument("an array has 1 to " + std::to_string(kMaxDims) +
                                   " dimensions, not " + std::to_string(shape.size()));
  }
  uint64_t total = DTypeSize(dtype);
  for (int64_t d : shape) {
    if (d < 0)
      return Status::InvalidArgument("negative dimension in shape " + ShapeToString(shape));
    if (d != 0 && total > kMaxArrayBytes / static_cast<uint64_t>(d)) {
      return Status::InvalidArgument("array of shape " + ShapeToString(shape) + " " +
                                     std::string(DTypeName(dtype)) + " is larger than " +
                                     std::to_string(kMaxArrayBytes >> 20) + " MiB");
    }
    total *= static_cast<uint64_t>(d);
  }
  *nbytes = total;
  return Status::OK();
}

Status DTypeMismatch(DType array, DType other, std::string_view what) {
  return Status::InvalidArgument("dtype mismatch: array is " + std::string(DTypeName(array)) +
                                 ", " + std::string(what) + " is " + std::string(DTypeName(other)));
}

Status ShapeMismatch(const std::vector<int64_t>& slice, const std::vector<int64_t>& data) {
  return Status::InvalidArgument("shape mismatch: slice has shape " + ShapeToString(slice) +
                                 ", data has shape " + ShapeToString(data));
}

// Creates the body blob: Rep then data, filled by `fill(data)`.
Status MakeBody(Segment::Impl* seg, DType dtype, const std::vector<int64_t>& shape, uint64_t nbytes,
                const std::function<void(char*)>& fill, uint64_t* body) {
  SHM_RETURN_IF_ERROR(seg->Allocate(kArrayDataOffset + nbytes, body, 64));
  auto* rep = new (seg->Ptr<void>(*body)) NdArrayRep();
  rep->dtype = static_cast<uint32_t>(dtype);
  rep->ndim = static_cast<uint32_t>(shape.size());
  rep->itemsize = static_cast<uint32_t>(DTypeSize(dtype));
  for (size_t i = 0; i < shape.size(); ++i) rep->shape[i] = shape[i];
  rep->nbytes = nbytes;
  fill(DataOf(seg, *body));
  return Status::OK();
}

Status CreateArray(Segment* segment, std::string_view name, DType dtype,
                   const std::vector<int64_t>& shape, uint64_t nbytes,
                   const std::function<void(char*)>& fill, ObjectRef* ref) {
  Segment::Impl* seg = segment->impl();
  Registry::OpenSpec spec;
  spec.kind = ObjectKind::kArray;
  spec.mode = OpenMode::kCreateIfMissing;
  bool created = false;
  spec.created = &created;
  spec.make_body = [&](uint64_t* body) { return MakeBody(seg, dtype, shape, nbytes, fill, body); };
  SHM_RETURN_IF_ERROR(segment->registry().Open(name, spec, ref));
  if (!created) return Status::AlreadyExists("array '" + std::string(name) + "' already exists");
  return Status::OK();
}

}  // namespace

// ---- NdArray ----------------------------------------------------------------------------------

Status NdArray::Create(Segment* segment, std::string_view name, DType dtype,
                       const std::vector<int64_t>& shape, Scalar fill, NdArray* result) {
  uint64_t nbytes = 0;
  SHM_RETURN_IF_ERROR(CheckShape(shape, dtype, &nbytes));
  Domain domain;  // Only to refuse an int fill that does not fit an int dtype.
  SHM_RETURN_IF_ERROR(ScalarOperand(dtype, fill, &domain));
  std::string pattern(DTypeSize(dtype), '\0');
  DispatchDType(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T v = ScalarAs<T>(fill);
    std::memcpy(pattern.data(), &v, sizeof(T));
  });
  bool zero = pattern.find_first_not_of('\0') == std::string::npos;
  auto fill_data = [&](char* data) {
    if (zero) {
      std::memset(data, 0, nbytes);
      return;
    }
    // One page element by element, then doubling copies (the registry lock is held meanwhile).
    uint64_t done = std::min<uint64_t>(nbytes, 4096);
    for (uint64_t off = 0; off < done; off += pattern.size()) {
      std::memcpy(data + off, pattern.data(), pattern.size());
    }
    while (done < nbytes) {
      uint64_t n = std::min(done, nbytes - done);
      std::memcpy(data + done, data, n);
      done += n;
    }
  };
  NdArray array;
  SHM_RETURN_IF_ERROR(CreateArray(segment, name, dtype, shape, nbytes, fill_data, &array.ref_));
  SHM_RETURN_IF_ERROR(array.LoadMeta());
  *result = std::move(array);
  return Status::OK();
}

Status NdArray::CreateFrom(Segment* segment, std::string_view name, const ArrayData& data,
                           NdArray* result) {
  SHM_RETURN_IF_ERROR(data.Check());
  uint64_t nbytes = 0;
  SHM_RETURN_IF_ERROR(CheckShape(data.shape, data.dtype, &nbytes));
  auto fill_data = [&](char* out) { std::memcpy(out, data.bytes.data(), nbytes); };
  NdArray array;
  SHM_RETURN_IF_ERROR(
      CreateArray(segment, name, data.dtype, data.shape, nbytes, fill_data, &array.ref_));
  SHM_RETURN_IF_ERROR(array.LoadMeta());
  *result = std::move(array);
  return Status::OK();
}

Status NdArray::Open(Segment* segment, std::string_view name, NdArray* result) {
  Registry::OpenSpec spec;
  spec.kind = ObjectKind::kArray;
  NdArray array;
  SHM_RETURN_IF_ERROR(segment->registry().Open(name, spec, &array.ref_));
  SHM_RETURN_IF_ERROR(array.LoadMeta());
  *result = std::move(array);
  return Status::OK();
}

Status NdArray::LoadMeta() {
  ObjectGuard guard;
  SHM_RETURN_IF_ERROR(guard.Lock(ref_));
  Segment::Impl* seg = ref_.segment->impl();
  auto* rep = seg->Ptr<NdArrayRep>(ref_.entry->body.load());
  if (rep->magic != kNdArrayMagic) return Status::Internal("array body has a bad magic");
  if (rep->entry == 0) rep->entry = seg->Handle(ref_.entry);  // Lets destroy find the pins.
  dtype_ = static_cast<DType>(rep->dtype);
  shape_.assign(rep->shape, rep->shape + rep->ndim);
  return Status::OK();
}

Status NdArray::Info(ArrayInfo* info) const {
  ObjectGuard guard;
  SHM_RETURN_IF_ERROR(guard.Lock(ref_));
  const auto* rep = ref_.segment->impl()->Ptr<NdArrayRep>(ref_.entry->body.load());
  info->dtype = dtype_;
  info->shape = shape_;
  info->nbytes = rep->nbytes;
  info->version = rep->version.load(std::memory_order_acquire);
  return Status::OK();
}

Status NdArray::ViewOf(const Slice& slice, StridedView* view) const {
  if (!ref_.valid()) return Status::InvalidArgument("array handle is not open");
  return slice.Apply(shape_, view);
}

Status NdArray::Inspect(const Slice& slice, DType dtype, const InspectFn& fn) const {
  if (dtype != dtype_) return DTypeMismatch(dtype_, dtype, "view type");
  StridedView view;
  SHM_RETURN_IF_ERROR(ViewOf(slice, &view));
  ObjectGuard guard;
  SHM_RETURN_IF_ERROR(guard.Lock(ref_));
  try {
    fn(DataOf(ref_.segment->impl(), ref_.entry->body.load()), view);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("array read: ") + e.what());
  }
  return Status::OK();
}

Status NdArray::Mutate(const Slice& slice, DType dtype, const MutateFn& fn) {
  if (dtype != dtype_) return DTypeMismatch(dtype_, dtype, "view type");
  StridedView view;
  SHM_RETURN_IF_ERROR(ViewOf(slice, &view));
  return MutateView(view, fn);
}

// The write protocol of ndarray_rep.h: undo blob allocated outside the lock, filled and published
// under it, then the in-place write, then the commit (undo = 0), then the blob is freed.
Status NdArray::MutateView(const StridedView& view, const MutateFn& fn) {
  Segment::Impl* seg = ref_.segment->impl();
  ObjectGuard guard;
  if (view.size() == 0) return guard.Lock(ref_);  // Nothing to write; still NotFound if gone.
  CowWriter writer(seg);
  if (!writer.ok()) return NoIntentSlot();
  size_t itemsize = DTypeSize(dtype_);
  uint64_t saved = static_cast<uint64_t>(view.size()) * itemsize;
  uint64_t undo = 0;
  SHM_RETURN_IF_ERROR(seg->Allocate(kUndoDataOffset + saved, &undo, 64));
  writer.Stage(undo);  // Freed by ~CowWriter if we return before publishing it.
  SHM_RETURN_IF_ERROR(guard.Lock(ref_));
  uint64_t body = ref_.entry->body.load();
  auto* rep = seg->Ptr<NdArrayRep>(body);
  auto* u = new (seg->Ptr<void>(undo)) UndoRep();
  u->offset = view.offset;
  u->ndim = static_cast<uint32_t>(view.ndim());
  u->itemsize = static_cast<uint32_t>(itemsize);
  for (int i = 0; i < view.ndim(); ++i) {
    u->shape[i] = view.shape[i];
    u->strides[i] = view.strides[i];
  }
  u->saved_bytes = saved;
  Gather(DataOf(seg, body), view, itemsize, seg->Ptr<char>(undo) + kUndoDataOffset);
  uint64_t entry = seg->Handle(ref_.entry);
  writer.PublishLocked(entry, &rep->undo, undo);        // From here a crash rolls back.
  std::atomic_thread_fence(std::memory_order_release);  // Lock-free readers see undo first.
  Status status;
  try {
    fn(DataOf(seg, body), view);
  } catch (const std::exception& e) {
    RollBackLocked(seg, body, undo);
    status = Status::Internal(std::string("array write: ") + e.what());
  }
  rep->version.fetch_add(1, std::memory_order_release);
  CrashPoint("array_before_commit");
  writer.PublishLocked(entry, &rep->undo, 0);  // The commit.
  guard.Unlock();
  writer.ReleaseGarbage();
  return status;
}

Status NdArray::ReadSlice(const Slice& slice, ArrayData* result) const {
  ArrayData out;
  out.dtype = dtype_;
  StridedView view;
  SHM_RETURN_IF_ERROR(ReadView(slice, &view, &out.bytes));
  out.shape = std::move(view.shape);
  *result = std::move(out);
  return Status::OK();
}

Status NdArray::ReadSlice(const Slice& slice, std::string* bytes) const {
  StridedView view;
  return ReadView(slice, &view, bytes);
}

namespace {

// Copies the view without taking the lock, as a seqlock reader: it starts only when no write is in
// flight (`undo == 0`) and keeps the copy only if none started or finished meanwhile (`undo` still
// 0, `version` unchanged; every in-place write and rollback bumps the version before clearing
// `undo`, and MutateView fences its data stores after publishing `undo`). A whole-array write
// swaps the body, so a copy of the pinned old body is a consistent copy from before it. False:
// retry or take the lock (a write in flight, a dead writer's undo waiting for repair, an atomic
// that bumped the version, or the array gone). ThreadSanitizer would report the discarded racy
// copies, so its builds always take the lock.
bool TryCopyWithoutLock(const ObjectRef& ref, const StridedView& view, size_t itemsize, char* out) {
#if defined(__SANITIZE_THREAD__)
  return false;
#else
  Pin pin(ref);
  if (!pin.held() || pin.body() == 0) return false;
  Segment::Impl* seg = ref.segment->impl();
  const auto* rep = seg->Ptr<NdArrayRep>(pin.body());
  const uint64_t version = rep->version.load(std::memory_order_acquire);
  if (rep->undo.load(std::memory_order_acquire) != 0) return false;
  Gather(DataOf(seg, pin.body()), view, itemsize, out);
  std::atomic_thread_fence(std::memory_order_acquire);
  // Acquire: a commit seen here (undo back to 0) brings its version bump with it.
  return rep->undo.load(std::memory_order_acquire) == 0 &&
         rep->version.load(std::memory_order_relaxed) == version;
#endif
}

constexpr int kUnlockedReadAttempts = 3;

}  // namespace

Status NdArray::ReadView(const Slice& slice, StridedView* view, std::string* bytes) const {
  SHM_RETURN_IF_ERROR(ViewOf(slice, view));
  // Outside the lock; a buffer of the right size already (a caller reading in a loop) is reused
  // without being cleared first.
  bytes->resize(static_cast<size_t>(view->size()) * DTypeSize(dtype_));
  return CopyViewOut(*view, bytes->data());
}

Status NdArray::CopyViewOut(const StridedView& view, char* out) const {
  for (int attempt = 0; attempt < kUnlockedReadAttempts; ++attempt) {
    if (TryCopyWithoutLock(ref_, view, DTypeSize(dtype_), out)) return Status::OK();
  }
  ObjectGuard guard;
  SHM_RETURN_IF_ERROR(guard.Lock(ref_));
  Gather(DataOf(ref_.segment->impl(), ref_.entry->body.load()), view, DTypeSize(dtype_), out);
  return Status::OK();
}

Status NdArray::SliceShape(const Slice& slice, std::vector<int64_t>* shape) const {
  StridedView view;
  SHM_RETURN_IF_ERROR(ViewOf(slice, &view));
  *shape = std::move(view.shape);
  return Status::OK();
}

Status NdArray::ReadSliceInto(const Slice& slice, void* out, size_t out_bytes) const {
  StridedView view;
  SHM_RETURN_IF_ERROR(ViewOf(slice, &view));
  size_t needed = static_cast<size_t>(view.size()) * DTypeSize(dtype_);
  if (out_bytes != needed) {
    return Status::InvalidArgument("slice of shape " + ShapeToString(view.shape) + " needs " +
                                   std::to_string(needed) + " bytes, the buffer holds " +
                                   std::to_string(out_bytes));
  }
  return CopyViewOut(view, static_cast<char*>(out));
}

Status NdArray::WriteSlice(const Slice& slice, std::string_view bytes) {
  StridedView view;
  SHM_RETURN_IF_ERROR(ViewOf(slice, &view));
  uint64_t expected = static_cast<uint64_t>(view.size()) * DTypeSize(dtype_);
  if (bytes.size() != expected) {
    return Status::InvalidArgument(
        "slice of shape " + ShapeToString(view.shape) + " " + std::string(DTypeName(dtype_)) +
        " needs " + std::to_string(expected) + " bytes, got " + std::to_string(bytes.size()));
  }
  if (view.offset == 0 && view.shape == shape_ &&
      view.strides == StridedView::Contiguous(shape_).strides) {
    return ReplaceData(bytes);
  }
  size_t itemsize = DTypeSize(dtype_);
  return MutateView(view, [&](char* data, const StridedView& v) {
    Scatter(data, v, itemsize, bytes.data(), true);
  });
}

// A write of every element in C order needs none of the old bytes, so instead of saving them in an
// undo record and writing in place (two copies under the lock) it fills a new body outside the
// lock and publishes it with the COW protocol: one copy, and a crash before the publish leaves
// the old body untouched. Atomics still touching the old body are waited for before it is freed
// (DestroyArray); one that lands there after the copy is ordered before this write, which
// overwrites its element anyway.
Status NdArray::ReplaceData(std::string_view bytes) {
  Segment::Impl* seg = ref_.segment->impl();
  CowWriter writer(seg);
  if (!writer.ok()) return NoIntentSlot();
  uint64_t fresh = 0;
  SHM_RETURN_IF_ERROR(MakeBody(
      seg, dtype_, shape_, bytes.size(),
      [&](char* data) { std::memcpy(data, bytes.data(), bytes.size()); }, &fresh));
  writer.Stage(fresh);  // Freed by ~CowWriter if we return before publishing it.
  ObjectGuard guard;
  SHM_RETURN_IF_ERROR(guard.Lock(ref_));
  const auto* old_rep = seg->Ptr<NdArrayRep>(ref_.entry->body.load());
  auto* rep = seg->Ptr<NdArrayRep>(fresh);
  rep->entry = old_rep->entry;
  rep->version.store(old_rep->version.load(std::memory_order_acquire) + 1,
                     std::memory_order_relaxed);
  CrashPoint("array_before_replace");
  writer.PublishBodyLocked(seg->Handle(ref_.entry), &ref_.entry->body, fresh,
                           static_cast<uint32_t>(ObjectKind::kArray));
  guard.Unlock();
  CrashPoint("array_after_replace");
  writer.ReleaseGarbage(DestroyArray);
  return Status::OK();
}

Status NdArray::WriteSlice(const Slice& slice, const ArrayData& data) {
  if (data.dtype == dtype_) {
    SHM_RETURN_IF_ERROR(data.Check());
    StridedView view;
    SHM_RETURN_IF_ERROR(ViewOf(slice, &view));
    if (view.shape != data.shape) return ShapeMismatch(view.shape, data.shape);
    return WriteSlice(slice, std::string_view(data.bytes));
  }
  return Apply(ArrayOp::kFill, slice, data);
}

Status NdArray::Fill(const Slice& slice, Scalar value) {
  return Apply(ArrayOp::kFill, slice, value);
}

Status NdArray::Apply(ArrayOp op, const Slice& slice, Scalar value) {
  StridedView view;
  SHM_RETURN_IF_ERROR(ViewOf(slice, &view));
  Domain domain;
  SHM_RETURN_IF_ERROR(ScalarOperand(dtype_, value, &domain));
  return DispatchDomain(domain, [&](auto ctag) {
    using C = typename decltype(ctag)::type;
    SHM_RETURN_IF_ERROR(CheckOpForDomain<C>(op));
    std::vector<C> operand{ScalarAs<C>(value)};
    return DispatchDType(dtype_, [&](auto ttag) {
      using T = typename decltype(ttag)::type;
      return MutateView(
          view, [&](char* data, const StridedView& v) { ApplyKernel<T, C>(op, data, v, operand); });
    });
  });
}

Status NdArray::Apply(ArrayOp op, const Slice& slice, const ArrayData& operand) {
  SHM_RETURN_IF_ERROR(operand.Check());
  StridedView view;
  SHM_RETURN_IF_ERROR(ViewOf(slice, &view));
  if (view.shape != operand.shape) return ShapeMismatch(view.shape, operand.shape);
  Domain domain = DomainOf(PromoteTypes(dtype_, operand.dtype));
  return DispatchDomain(domain, [&](auto ctag) {
    using C = typename decltype(ctag)::type;
    SHM_RETURN_IF_ERROR(CheckOpForDomain<C>(op));
    std::vector<C> values = ConvertOperand<C>(operand);  // Outside the lock.
    return DispatchDType(dtype_, [&](auto ttag) {
      using T = typename decltype(ttag)::type;
      return MutateView(
          view, [&](char* data, const StridedView& v) { ApplyKernel<T, C>(op, data, v, values); });
    });
  });
}

Status NdArray::Reduce(ReduceOp op, const Slice& slice, std::optional<int> axis,
                       ArrayData* result) const {
  ArrayData data;
  SHM_RETURN_IF_ERROR(ReadSlice(slice, &data));  // Copy under the lock, compute outside it.
  return ReduceArray(data, op, axis, result);
}

Status NdArray::ElementOffset(const std::vector<int64_t>& index, int64_t* offset) const {
  if (!ref_.valid()) return Status::InvalidArgument("array handle is not open");
  if (index.size() != shape_.size()) {
    return Status::InvalidArgument("an element index needs " + std::to_string(shape_.size()) +
                                   " integers, got " + std::to_string(index.size()));
  }
  Slice slice;
  for (int64_t i : index) slice.Index(i);
  StridedView view;
  SHM_RETURN_IF_ERROR(slice.Apply(shape_, &view));
  *offset = view.offset;
  return Status::OK();
}

Status NdArray::Atomic(AtomicOp op, const std::vector<int64_t>& index, Scalar value,
                       Scalar expected, Scalar* old) {
  if (dtype_ == DType::kBool) {
    return Status::InvalidArgument("atomic ops need an integer or float array, not bool");
  }
  int64_t offset = 0;
  SHM_RETURN_IF_ERROR(ElementOffset(index, &offset));
  return DispatchDType(dtype_, [&](auto tag) -> Status {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, bool>) {
      return Status::Internal("unreachable");
    } else {
      T v{}, e{};
      SHM_RETURN_IF_ERROR(ExactScalar<T>(value, dtype_, &v));
      if (op == AtomicOp::kCas) SHM_RETURN_IF_ERROR(ExactScalar<T>(expected, dtype_, &e));
      Pin pin(ref_);
      ObjectGuard guard;
      uint64_t body = 0;
      SHM_RETURN_IF_ERROR(PinnedOrLockedBody(ref_, pin, &guard, &body));
      Segment::Impl* seg = ref_.segment->impl();
      T* p = reinterpret_cast<T*>(DataOf(seg, body)) + offset;
      CrashPoint("array_atomic_pinned");
      bool changed = false;
      T before = AtomicKernel<T>(p, op, v, e, &changed);
      if (changed) seg->Ptr<NdArrayRep>(body)->version.fetch_add(1, std::memory_order_relaxed);
      *old = ToScalar(before);
      if (op == AtomicOp::kCas && !changed) {
        return Status::Conflict("element is " + old->ToString() + ", expected " +
                                ToScalar(e).ToString());
      }
      return Status::OK();
    }
  });
}

Status NdArray::Load(const std::vector<int64_t>& index, Scalar* value) const {
  int64_t offset = 0;
  SHM_RETURN_IF_ERROR(ElementOffset(index, &offset));
  Pin pin(ref_);
  ObjectGuard guard;
  uint64_t body = 0;
  SHM_RETURN_IF_ERROR(PinnedOrLockedBody(ref_, pin, &guard, &body));
  char* data = DataOf(ref_.segment->impl(), body);
  *value = DispatchDType(dtype_, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = reinterpret_cast<T*>(data) + offset;
    return ToScalar(std::atomic_ref<T>(*p).load(std::memory_order_acquire));
  });
  return Status::OK();
}

namespace {

// Snapshots store an array as a .npy file.
Status SerializeArrayLocked(Segment::Impl* seg, const EntryRep* entry, std::string* out) {
  uint64_t body = entry->body.load();
  const auto* rep = seg->Ptr<NdArrayRep>(body);
  ArrayData data;
  data.dtype = static_cast<DType>(rep->dtype);
  data.shape.assign(rep->shape, rep->shape + rep->ndim);
  data.bytes.assign(DataOf(seg, body), rep->nbytes);
  std::string npy;
  SHM_RETURN_IF_ERROR(WriteNpy(data, &npy));
  out->append(npy);
  return Status::OK();
}

Status DeserializeArray(Segment::Impl* seg, std::string_view bytes, uint64_t* body) {
  ArrayData data;
  SHM_RETURN_IF_ERROR(ParseNpy(bytes, &data));
  uint64_t nbytes = 0;
  SHM_RETURN_IF_ERROR(CheckShape(data.shape, data.dtype, &nbytes));
  return MakeBody(
      seg, data.dtype, data.shape, nbytes,
      [&](char* out) { std::memcpy(out, data.bytes.data(), nbytes); }, body);
}

// An array's body is replaced whole by ReplaceData (same dtype and shape, so the same sizes),
// which bumps reclaim_seq before it frees the old one: the sizes read are kept only if it did not
// move. ThreadSanitizer would report the racy read of a body freed meanwhile, so its builds take
// the entry's lock (the registry lock is held: registry -> object is the lock order).
void ArrayUsage(Segment::Impl* seg, const EntryRep* entry, ObjectInfo* info) {
#if defined(__SANITIZE_THREAD__)
  ObjectGuard guard;
  if (!guard.LockEntry(seg, const_cast<EntryRep*>(entry)).ok()) return;
#endif
  for (int attempt = 0; attempt < 4; ++attempt) {
    uint64_t seq = entry->reclaim_seq.load(std::memory_order_seq_cst);
    uint64_t body = entry->body.load(std::memory_order_acquire);
    if (!seg->Contains(body, sizeof(NdArrayRep))) return;
    const auto* rep = seg->Ptr<NdArrayRep>(body);
    uint64_t nbytes = rep->nbytes;
    uint32_t itemsize = rep->itemsize;
    std::atomic_thread_fence(std::memory_order_acquire);
    if (entry->reclaim_seq.load(std::memory_order_seq_cst) != seq) continue;
    info->size_bytes = nbytes;
    info->length = itemsize == 0 ? 0 : static_cast<int64_t>(nbytes / itemsize);
    return;
  }
}

}  // namespace

const KindOps kArrayOps = {RepairArrayLocked, DestroyArray, SerializeArrayLocked, DeserializeArray,
                           ArrayUsage};

}  // namespace shm
