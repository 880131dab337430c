#include "shm/snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/crc.hpp>
#include <cerrno>
#include <cstring>
#include <vector>

#include "byte_io.h"
#include "kind_ops.h"
#include "layout.h"
#include "object_guard.h"
#include "segment_impl.h"
#include "shm/registry.h"

namespace shm {
namespace {

constexpr std::string_view kMagic{"SHMSNAP\0", 8};
constexpr std::string_view kTrailerMagic{"SHMEND\0\0", 8};
constexpr uint32_t kFormatVersion = 1;
constexpr size_t kHeaderSize = 8 + 4 + 4 + 8;
constexpr size_t kTrailerSize = 8 + 8 + 4;

uint32_t Crc32(std::string_view bytes) {
  boost::crc_32_type crc;
  crc.process_bytes(bytes.data(), bytes.size());
  return crc.checksum();
}

struct Record {
  ObjectKind kind;
  int64_t expires_at_ms;
  int64_t counter;
  std::string_view name;
  std::string_view payload;
};

// Body of one record: kind, expiry, counter value, name, payload (the kind's own bytes).
void AppendRecord(const Record& record, std::string* out) {
  std::string body;
  ByteWriter w(&body);
  w.Put<uint32_t>(static_cast<uint32_t>(record.kind));
  w.Put<int64_t>(record.expires_at_ms);
  w.Put<int64_t>(record.counter);
  w.PutBytes(record.name);
  w.PutBytes(record.payload);
  ByteWriter framed(out);
  framed.Put<uint64_t>(body.size());
  framed.Put<uint32_t>(Crc32(body));
  framed.PutRaw(body);
}

Status Corrupt(const std::string& what) {
  return Status::InvalidArgument("snapshot is corrupt or truncated: " + what);
}

Status ParseRecord(std::string_view body, Record* record) {
  ByteReader r(body);
  uint32_t kind = 0;
  if (!r.Get(&kind) || !r.Get(&record->expires_at_ms) || !r.Get(&record->counter) ||
      !r.GetBytes(&record->name) || !r.GetBytes(&record->payload) || r.remaining() != 0) {
    return Corrupt("malformed record");
  }
  if (kind == 0 || kind >= kObjectKindCount) return Corrupt("unknown kind " + std::to_string(kind));
  record->kind = static_cast<ObjectKind>(kind);
  Status name_ok = ValidateName(record->name);
  if (!name_ok.ok()) return Corrupt(std::string(name_ok.message()));
  return Status::OK();
}

// Checks the whole input and splits it into records, before anything is restored.
Status ParseSnapshot(std::string_view data, std::vector<Record>* records) {
  if (data.size() < kHeaderSize + kTrailerSize) return Corrupt("too short");
  ByteReader header(data.substr(0, kHeaderSize));
  std::string_view magic;
  uint32_t version = 0;
  uint32_t reserved = 0;
  uint64_t created_ms = 0;
  header.GetRaw(8, &magic);
  header.Get(&version);
  header.Get(&reserved);
  header.Get(&created_ms);
  if (magic != kMagic) return Status::InvalidArgument("not a shmstate snapshot (bad magic)");
  if (version != kFormatVersion) {
    return Status::InvalidArgument("snapshot format v" + std::to_string(version) + ", expected v" +
                                   std::to_string(kFormatVersion));
  }
  std::string_view covered = data.substr(0, data.size() - 4);
  ByteReader trailer(data.substr(data.size() - kTrailerSize));
  std::string_view trailer_magic;
  uint64_t count = 0;
  uint32_t checksum = 0;
  trailer.GetRaw(8, &trailer_magic);
  trailer.Get(&count);
  trailer.Get(&checksum);
  if (trailer_magic != kTrailerMagic) return Corrupt("no trailer");
  if (Crc32(covered) != checksum) return Corrupt("checksum mismatch");
  ByteReader r(data.substr(kHeaderSize, data.size() - kHeaderSize - kTrailerSize));
  while (r.remaining() > 0) {
    uint64_t size = 0;
    uint32_t crc = 0;
    std::string_view body;
    if (!r.Get(&size) || !r.Get(&crc) || !r.GetRaw(size, &body)) return Corrupt("cut record");
    if (Crc32(body) != crc) return Corrupt("record checksum mismatch");
    Record record;
    SHM_RETURN_IF_ERROR(ParseRecord(body, &record));
    records->push_back(record);
  }
  if (records->size() != count) {
    return Corrupt("trailer says " + std::to_string(count) + " objects, found " +
                   std::to_string(records->size()));
  }
  return Status::OK();
}

// Copies one live entry under its lock. Sets *skip when it vanished or expired meanwhile.
Status SerializeEntry(Segment::Impl* impl, EntryRep* e, int64_t now, std::string* out,
                      SnapshotStats* stats) {
  ObjectGuard guard;
  SHM_RETURN_IF_ERROR(guard.LockEntry(impl, e));
  if (e->state.load() != static_cast<uint32_t>(EntryState::kLive)) return Status::OK();
  if (EntryExpired(e, now)) {
    ++stats->expired;
    return Status::OK();
  }
  Record record;
  record.kind = static_cast<ObjectKind>(e->kind.load());
  record.expires_at_ms = e->expires_at_ms.load();
  record.counter = e->counter.load();
  record.name = std::string_view(e->name, e->name_length);
  std::string payload;
  if (!StateInEntry(record.kind)) {
    const KindOps& ops = KindOpsFor(record.kind);
    if (ops.serialize_locked == nullptr) {
      return Status::Internal("objects of kind " + std::string(KindName(record.kind)) +
                              " cannot be snapshotted yet");
    }
    SHM_RETURN_IF_ERROR(ops.serialize_locked(impl, e, &payload));
  }
  record.payload = payload;
  AppendRecord(record, out);
  ++stats->objects;
  return Status::OK();
}

Status Errno(const std::string& what, const std::string& path) {
  return Status::Internal(what + " '" + path + "': " + std::strerror(errno));
}

}  // namespace

Status SerializeSegment(Segment* segment, std::string* out, SnapshotStats* stats) {
  SnapshotStats local;
  if (stats == nullptr) stats = &local;
  *stats = SnapshotStats();
  Segment::Impl* impl = segment->impl();
  out->clear();
  ByteWriter w(out);
  w.PutRaw(kMagic);
  w.Put<uint32_t>(kFormatVersion);
  w.Put<uint32_t>(0);
  w.Put<uint64_t>(static_cast<uint64_t>(WallNowMs()));
  int64_t now = WallNowMs();
  uint32_t capacity = impl->root()->registry.capacity;
  for (uint32_t i = 0; i < capacity; ++i) {
    EntryRep* e = impl->Entry(i);
    if (e->state.load() != static_cast<uint32_t>(EntryState::kLive)) continue;
    SHM_RETURN_IF_ERROR(SerializeEntry(impl, e, now, out, stats));
  }
  w.PutRaw(kTrailerMagic);
  w.Put<uint64_t>(stats->objects);
  w.Put<uint32_t>(Crc32(*out));
  stats->bytes = out->size();
  return Status::OK();
}

namespace {

// Restores one record; sets *created when it made an object (so a failure can undo it).
Status RestoreRecord(const Record& record, int64_t now, Segment* into, bool* created) {
  Segment::Impl* impl = into->impl();
  Registry::OpenSpec spec;
  spec.kind = record.kind;
  spec.mode = OpenMode::kCreateIfMissing;
  spec.ttl_ms = record.expires_at_ms == 0 ? 0 : record.expires_at_ms - now;
  spec.counter_init = record.counter;
  spec.created = created;
  if (!StateInEntry(record.kind)) {
    const KindOps& ops = KindOpsFor(record.kind);
    if (ops.deserialize == nullptr) {
      return Status::Internal("objects of kind " + std::string(KindName(record.kind)) +
                              " cannot be restored yet");
    }
    spec.make_body = [&](uint64_t* body) { return ops.deserialize(impl, record.payload, body); };
  }
  ObjectRef ref;
  Status s = into->registry().Open(record.name, spec, &ref);
  if (s.IsWrongType() || (s.ok() && !*created)) {
    return Status::AlreadyExists("'" + std::string(record.name) + "' already exists");
  }
  return s;
}

}  // namespace

Status RestoreSegment(std::string_view snapshot, Segment* into, SnapshotStats* stats) {
  SnapshotStats local;
  if (stats == nullptr) stats = &local;
  *stats = SnapshotStats();
  std::vector<Record> records;
  SHM_RETURN_IF_ERROR(ParseSnapshot(snapshot, &records));
  int64_t now = WallNowMs();
  std::vector<std::string_view> restored;
  for (const Record& record : records) {
    if (record.expires_at_ms != 0 && record.expires_at_ms <= now) {
      ++stats->expired;
      continue;
    }
    bool created = false;
    Status s = RestoreRecord(record, now, into, &created);
    if (!s.ok()) {
      // Never half-loaded: a record the framing checks could not judge (a malformed payload)
      // undoes every object this call restored.
      for (std::string_view name : restored) into->registry().Delete(name);
      if (created) into->registry().Delete(record.name);
      *stats = SnapshotStats();
      return s;
    }
    restored.push_back(record.name);
    ++stats->objects;
  }
  stats->bytes = snapshot.size();
  return Status::OK();
}

Status CopyIntoNewSegment(Segment* from, const SegmentOptions& options,
                          std::unique_ptr<Segment>* result, SnapshotStats* stats) {
  std::string bytes;
  SHM_RETURN_IF_ERROR(SerializeSegment(from, &bytes, stats));
  std::unique_ptr<Segment> fresh;
  SHM_RETURN_IF_ERROR(Segment::Create(options, &fresh));
  Status s = RestoreSegment(bytes, fresh.get(), stats);
  if (!s.ok()) {
    std::string name = fresh->shm_name();
    fresh.reset();
    Segment::Remove(name);
    return s;
  }
  *result = std::move(fresh);
  return Status::OK();
}

Status WriteFileAtomically(const std::string& path, std::string_view data) {
  std::string temp = path + ".tmp." + std::to_string(getpid());
  int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("cannot create", temp);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status s = Errno("cannot write", temp);
      close(fd);
      unlink(temp.c_str());
      return s;
    }
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    Status s = Errno("cannot sync", temp);
    unlink(temp.c_str());
    return s;
  }
  if (rename(temp.c_str(), path.c_str()) != 0) {
    Status s = Errno("cannot rename to", path);
    unlink(temp.c_str());
    return s;
  }
  std::string folder = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  if (folder.empty()) folder = "/";
  int dir = open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    fsync(dir);
    close(dir);
  }
  return Status::OK();
}

Status ReadWholeFile(const std::string& path, std::string* data) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound("no file '" + path + "'");
    return Errno("cannot open", path);
  }
  data->clear();
  char buffer[1 << 16];
  while (true) {
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status s = Errno("cannot read", path);
      close(fd);
      return s;
    }
    if (n == 0) break;
    data->append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return Status::OK();
}

}  // namespace shm
