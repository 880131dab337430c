// Fuzzes what lies behind the snapshot checksums: the record parser and each kind's deserializer.
//
// Input: records as [u16 little-endian length][record body], where a body is what the snapshot
// format frames (kind u32, expiry i64, counter i64, name and payload as u64-length-prefixed
// bytes). The fuzzer adds the header, each record's size and CRC32, and the trailer, so every
// input reaches the records; RestoreTarget (snapshot_check.h) checks the all-or-nothing contract.
#include <boost/crc.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "snapshot_check.h"

namespace {

template <class T>
void PutLittleEndian(T value, std::string* out) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // The platforms we build for are little-endian.
  out->append(bytes, sizeof(T));
}

uint32_t Crc32(std::string_view bytes) {
  boost::crc_32_type crc;
  crc.process_bytes(bytes.data(), bytes.size());
  return crc.checksum();
}

// A well-framed snapshot around the record bodies of `in` (format v1, shared/src/snapshot.cc).
std::string Frame(std::string_view in) {
  std::string out("SHMSNAP\0", 8);
  PutLittleEndian<uint32_t>(1, &out);
  PutLittleEndian<uint32_t>(0, &out);
  PutLittleEndian<uint64_t>(1700000000000, &out);
  uint64_t count = 0;
  while (in.size() >= 2) {
    size_t length = static_cast<uint8_t>(in[0]) | (static_cast<uint8_t>(in[1]) << 8);
    in.remove_prefix(2);
    std::string_view body = in.substr(0, length);
    in.remove_prefix(body.size());
    PutLittleEndian<uint64_t>(body.size(), &out);
    PutLittleEndian<uint32_t>(Crc32(body), &out);
    out.append(body);
    ++count;
  }
  out.append("SHMEND\0\0", 8);
  PutLittleEndian<uint64_t>(count, &out);
  PutLittleEndian<uint32_t>(Crc32(out), &out);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static shm::fuzz::RestoreTarget* target = new shm::fuzz::RestoreTarget();
  target->RestoreAndCheck(Frame(std::string_view(reinterpret_cast<const char*>(data), size)));
  return 0;
}
