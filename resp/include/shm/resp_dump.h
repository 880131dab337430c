// DUMP payloads: Redis's serialization of one value (DUMP, RESTORE), so a value moves between
// redis-server and shmstate with the commands Redis's own tools use.
//
// A payload is the value in Redis's RDB object encoding, then the 2-byte RDB version and the
// CRC-64 (Jones polynomial, reflected, as Redis's crc64) of everything before it, both
// little-endian. EncodeDump writes the plain encodings every Redis since 2.x loads (a raw string,
// RDB_TYPE_LIST, RDB_TYPE_HASH) under RDB version 9, so Redis 5 and later RESTORE it.
// DecodeDump accepts those and the compact encodings Redis 7.0 emits for strings, lists and
// hashes (integer and LZF strings, quicklist of ziplists or listpacks, ziplist and listpack
// hashes); any other type (sets, sorted sets, streams, modules) or any inconsistency is refused.
// Every length is checked before it is trusted, and the decoded value is bounded
// (kMaxDecodedBytes, shm/limits.h), whatever LZF expands to.
//
// Process-safety: plain functions on caller-owned data; safe from any thread.
#ifndef SHM_RESP_DUMP_H_
#define SHM_RESP_DUMP_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shm/keyspace.h"
#include "shm/status.h"

namespace shm::resp {

// One key's value, whole: the string, the list's items or the hash's fields (per `type`).
struct KeyValue {
  KeyType type = KeyType::kNone;
  std::string string;
  std::vector<std::string> items;
  std::vector<std::pair<std::string, std::string>> fields;
};

enum class DumpError : uint8_t {
  kNone,
  kFooter,  // Too short, a newer RDB version, or a wrong checksum (Redis: "DUMP payload version
            // or checksum are wrong").
  kFormat,  // The object does not parse, is empty, or is a type shmstate has not (Redis: "Bad
            // data format").
};

// Redis's crc64 (Jones, reflected, no final xor): crc64(0, "123456789") == 0xe9c6d914c4b8d9ca.
uint64_t Crc64(uint64_t crc, std::string_view bytes);

// The payload of `value` (a string, list or hash).
std::string EncodeDump(const KeyValue& value);

// Parses `payload` into *value. On failure returns the error kind; *value is then unspecified.
DumpError DecodeDump(std::string_view payload, KeyValue* value);

}  // namespace shm::resp

#endif  // SHM_RESP_DUMP_H_
