// Fuzzes the DUMP payload parser (resp::DecodeDump, what RESTORE runs on a client's bytes).
//
// The input is taken twice: as a whole payload (mostly refused at the checksum), and as an object
// body to which a valid RDB version and CRC-64 are appended, so the mutations reach the type,
// length, LZF, ziplist and listpack decoders. Checks: no crash or out-of-bounds read (ASan); a
// decoded value is a string, a non-empty list or a non-empty hash with distinct fields, within
// the decode bound; and it encodes (EncodeDump) to a payload that decodes to the same value.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "fuzz_util.h"
#include "shm/limits.h"
#include "shm/resp_dump.h"

namespace {

namespace resp = shm::resp;

void CheckDecoded(const resp::KeyValue& value) {
  size_t bytes = value.string.size();
  if (value.type == shm::KeyType::kList) {
    shm::fuzz::Check(!value.items.empty(), "empty list decoded");
    for (const std::string& item : value.items) bytes += item.size();
  } else if (value.type == shm::KeyType::kHash) {
    shm::fuzz::Check(!value.fields.empty(), "empty hash decoded");
    std::set<std::string_view> fields;
    for (const auto& [field, data] : value.fields) {
      shm::fuzz::Check(fields.insert(field).second, "a hash field twice");
      bytes += field.size() + data.size();
    }
  } else {
    shm::fuzz::Check(value.type == shm::KeyType::kString, "decoded an unknown type");
  }
  shm::fuzz::Check(bytes <= shm::limits::kMaxDecodedDump, "decoded past the bound");
  resp::KeyValue again;
  shm::fuzz::Check(resp::DecodeDump(resp::EncodeDump(value), &again) == resp::DumpError::kNone,
                   "own payload refused");
  shm::fuzz::Check(again.type == value.type && again.string == value.string &&
                       again.items == value.items && again.fields == value.fields,
                   "round trip changed the value");
}

void Run(std::string_view payload) {
  resp::KeyValue value;
  if (resp::DecodeDump(payload, &value) == resp::DumpError::kNone) CheckDecoded(value);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  Run(input);
  std::string body(input);
  body += std::string("\x0a\x00", 2);  // RDB version 10, Redis 7.0's.
  const uint64_t crc = resp::Crc64(0, body);
  for (int i = 0; i < 8; ++i) body.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
  Run(body);
  return 0;
}
