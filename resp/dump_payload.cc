// DUMP payloads (shm/resp_dump.h): Redis's RDB object encoding, written from the format's
// description (Redis's rdb.h, listpack.c and ziplist.c headers), not from its code.
#include <array>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_set>

#include "shm/limits.h"
#include "shm/resp_dump.h"

namespace shm::resp {
namespace {

// RDB object types (rdb.h) that hold a string, list or hash.
enum RdbType : uint8_t {
  kTypeString = 0,
  kTypeList = 1,
  kTypeHash = 4,
  kTypeListZiplist = 10,
  kTypeHashZiplist = 13,
  kTypeListQuicklist = 14,
  kTypeHashListpack = 16,
  kTypeListQuicklist2 = 18,
};
// What DUMP writes: the version whose loader every Redis from 5.0 has (Redis refuses a payload
// of a newer version than its own).
constexpr uint16_t kWrittenVersion = 9;
// The newest version Redis 7.0 loads, and so the newest RESTORE accepts.
constexpr uint16_t kNewestVersion = 10;
constexpr size_t kFooterBytes = 10;  // 2 version bytes + 8 CRC bytes.
// A quicklist node's container (RDB_TYPE_LIST_QUICKLIST_2).
constexpr uint64_t kContainerPlain = 1;
constexpr uint64_t kContainerPacked = 2;
// Charged per decoded item on top of its bytes, so many empty items also hit the bound.
constexpr size_t kItemCharge = 16;

constexpr std::array<uint64_t, 256> MakeCrcTable() {
  constexpr uint64_t kReflectedJones = 0x95ac9329ac4bc9b5ull;
  std::array<uint64_t, 256> table{};
  for (uint64_t i = 0; i < 256; ++i) {
    uint64_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1) ? (crc >> 1) ^ kReflectedJones : crc >> 1;
    table[i] = crc;
  }
  return table;
}
constexpr std::array<uint64_t, 256> kCrcTable = MakeCrcTable();

void PutLittleEndian(std::string* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

void PutBigEndian(std::string* out, uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// RDB length: 00xxxxxx, 01xxxxxx xxxxxxxx, 0x80 + 32-bit or 0x81 + 64-bit big-endian.
void PutLength(std::string* out, uint64_t length) {
  if (length < (1u << 6)) {
    out->push_back(static_cast<char>(length));
  } else if (length < (1u << 14)) {
    out->push_back(static_cast<char>(0x40 | (length >> 8)));
    out->push_back(static_cast<char>(length & 0xff));
  } else if (length <= UINT32_MAX) {
    out->push_back(static_cast<char>(0x80));
    PutBigEndian(out, length, 4);
  } else {
    out->push_back(static_cast<char>(0x81));
    PutBigEndian(out, length, 8);
  }
}

void PutString(std::string* out, std::string_view bytes) {
  PutLength(out, bytes.size());
  out->append(bytes);
}

// Reads the RDB encodings of one payload. Every method fails (returns false) rather than read
// past the end or decode more than the bound; `budget` counts what the value has decoded so far.
class Reader {
 public:
  explicit Reader(std::string_view in, size_t* budget) : in_(in), budget_(budget) {}

  bool Byte(uint8_t* b) {
    if (pos_ >= in_.size()) return false;
    *b = static_cast<uint8_t>(in_[pos_++]);
    return true;
  }
  bool Bytes(size_t n, std::string_view* out) {
    if (n > in_.size() - pos_) return false;
    *out = in_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  // An RDB length; *encoded is set when the byte announces an encoded string (11xxxxxx) and
  // *length is then the encoding.
  bool Length(uint64_t* length, bool* encoded = nullptr) {
    uint8_t b = 0;
    if (!Byte(&b)) return false;
    if (encoded != nullptr) *encoded = false;
    switch (b >> 6) {
      case 0:
        *length = b & 0x3f;
        return true;
      case 1: {
        uint8_t low = 0;
        if (!Byte(&low)) return false;
        *length = (uint64_t{b & 0x3fu} << 8) | low;
        return true;
      }
      case 2:
        if (b == 0x80) return BigEndian(4, length);
        if (b == 0x81) return BigEndian(8, length);
        return false;
      default:
        if (encoded == nullptr) return false;
        *encoded = true;
        *length = b & 0x3f;
        return true;
    }
  }
  // An RDB string: raw, an 8/16/32-bit integer, or LZF-compressed.
  bool String(std::string* out) {
    uint64_t length = 0;
    bool encoded = false;
    if (!Length(&length, &encoded)) return false;
    if (!encoded) {
      std::string_view bytes;
      if (length > in_.size() - pos_ || !Charge(length) || !Bytes(length, &bytes)) return false;
      out->assign(bytes);
      return true;
    }
    if (length <= 2) {  // RDB_ENC_INT8, INT16, INT32: little-endian, signed.
      const int width = 1 << length;
      uint64_t raw = 0;
      if (!LittleEndian(width, &raw)) return false;
      const int shift = 64 - 8 * width;
      *out = std::to_string(static_cast<int64_t>(raw << shift) >> shift);
      return Charge(out->size());
    }
    if (length == 3) return Lzf(out);
    return false;
  }
  bool AtEnd() const { return pos_ == in_.size(); }
  bool Charge(uint64_t bytes) {
    if (bytes > limits::kMaxValue || bytes + kItemCharge > *budget_) return false;
    *budget_ -= bytes + kItemCharge;
    return true;
  }

 private:
  bool BigEndian(int bytes, uint64_t* value) {
    std::string_view raw;
    if (!Bytes(bytes, &raw)) return false;
    *value = 0;
    for (char c : raw) *value = (*value << 8) | static_cast<uint8_t>(c);
    return true;
  }
  bool LittleEndian(int bytes, uint64_t* value) {
    std::string_view raw;
    if (!Bytes(bytes, &raw)) return false;
    *value = 0;
    for (int i = bytes - 1; i >= 0; --i) *value = (*value << 8) | static_cast<uint8_t>(raw[i]);
    return true;
  }
  // LZF: a control byte below 32 copies that many + 1 literal bytes; otherwise its top 3 bits
  // (7: plus the next byte) + 2 bytes are copied from an offset back in the output.
  bool Lzf(std::string* out) {
    uint64_t compressed = 0, length = 0;
    std::string_view in;
    if (!Length(&compressed) || !Length(&length) || !Charge(length) || !Bytes(compressed, &in)) {
      return false;
    }
    out->clear();
    out->reserve(length);
    size_t i = 0;
    while (i < in.size()) {
      const uint8_t control = static_cast<uint8_t>(in[i++]);
      if (control < 32) {
        const size_t run = size_t{control} + 1;
        if (run > in.size() - i || run > length - out->size()) return false;
        out->append(in.substr(i, run));
        i += run;
        continue;
      }
      size_t run = control >> 5;
      if (run == 7) {
        if (i >= in.size()) return false;
        run += static_cast<uint8_t>(in[i++]);
      }
      run += 2;
      if (i >= in.size()) return false;
      const size_t back = ((size_t{control} & 0x1f) << 8) + static_cast<uint8_t>(in[i++]) + 1;
      if (back > out->size() || run > length - out->size()) return false;
      for (size_t from = out->size() - back; run > 0; --run) out->push_back((*out)[from++]);
    }
    return out->size() == length;
  }

  std::string_view in_;
  size_t pos_ = 0;
  size_t* budget_;
};

// Listpack (Redis 7.0's small lists and hashes): 4-byte total size, 2-byte count, entries, 0xff.
// An entry is its encoding and data, then its length again (1-5 "backlen" bytes).
bool DecodeListpack(std::string_view lp, Reader* charge, std::vector<std::string>* out) {
  auto u8 = [&lp](size_t i) { return static_cast<uint8_t>(lp[i]); };
  if (lp.size() < 7) return false;
  const uint32_t total = u8(0) | u8(1) << 8 | u8(2) << 16 | uint32_t{u8(3)} << 24;
  const uint32_t count = u8(4) | u8(5) << 8;
  if (total != lp.size() || u8(lp.size() - 1) != 0xff) return false;
  size_t pos = 6;
  const size_t end = lp.size() - 1;
  size_t seen = 0;
  while (pos < end) {
    const uint8_t b = u8(pos);
    size_t header = 1, data = 0;
    int64_t number = 0;
    bool is_number = true;
    auto little = [&](size_t from, int bytes) {
      uint64_t v = 0;
      for (int k = bytes - 1; k >= 0; --k) v = (v << 8) | u8(from + k);
      const int shift = 64 - 8 * bytes;
      return static_cast<int64_t>(v << shift) >> shift;
    };
    if ((b & 0x80) == 0) {
      number = b;
    } else if ((b & 0xc0) == 0x80) {
      is_number = false;
      data = b & 0x3f;
    } else if ((b & 0xe0) == 0xc0) {
      header = 2;
      if (pos + 2 > end) return false;
      const uint32_t raw = (uint32_t{b & 0x1fu} << 8) | u8(pos + 1);
      number = raw >= (1u << 12) ? static_cast<int64_t>(raw) - (1 << 13) : raw;
    } else if ((b & 0xf0) == 0xe0) {
      header = 2;
      is_number = false;
      if (pos + 2 > end) return false;
      data = (size_t{b & 0x0fu} << 8) | u8(pos + 1);
    } else if (b == 0xf0) {
      header = 5;
      is_number = false;
      if (pos + 5 > end) return false;
      data = static_cast<size_t>(little(pos + 1, 4)) & 0xffffffffu;
    } else if (b >= 0xf1 && b <= 0xf4) {
      static constexpr int kWidths[] = {2, 3, 4, 8};
      data = kWidths[b - 0xf1];
      if (data > end - pos - 1) return false;
      number = little(pos + 1, static_cast<int>(data));
    } else {
      return false;  // 0xf5..0xfe are unused; 0xff is the end, not an entry.
    }
    if (header > end - pos || data > end - pos - header) return false;
    const size_t entry = header + data;
    const size_t backlen = entry < 128         ? 1
                           : entry < 16383     ? 2
                           : entry < 2097151   ? 3
                           : entry < 268435455 ? 4
                                               : 5;
    if (backlen > end - pos - entry) return false;
    std::string item =
        is_number ? std::to_string(number) : std::string(lp.substr(pos + header, data));
    if (!charge->Charge(item.size())) return false;
    out->push_back(std::move(item));
    pos += entry + backlen;
    ++seen;
  }
  return pos == end && (count == 0xffff || count == seen);
}

// Ziplist (Redis up to 6.2; Redis 7.0 still loads it): 4-byte size, 4-byte tail offset, 2-byte
// count, entries, 0xff. An entry is the previous entry's length (1 or 5 bytes), its encoding and
// its data.
bool DecodeZiplist(std::string_view zl, Reader* charge, std::vector<std::string>* out) {
  auto u8 = [&zl](size_t i) { return static_cast<uint8_t>(zl[i]); };
  if (zl.size() < 11) return false;
  const uint32_t total = u8(0) | u8(1) << 8 | u8(2) << 16 | uint32_t{u8(3)} << 24;
  const uint32_t count = u8(8) | u8(9) << 8;
  if (total != zl.size() || u8(zl.size() - 1) != 0xff) return false;
  size_t pos = 10;
  const size_t end = zl.size() - 1;
  size_t seen = 0;
  while (pos < end) {
    const size_t prevlen = u8(pos) < 0xfe ? 1 : u8(pos) == 0xfe ? 5 : 0;
    if (prevlen == 0 || prevlen >= end - pos) return false;
    pos += prevlen;
    const uint8_t b = u8(pos);
    size_t header = 1, data = 0;
    bool is_number = true;
    int64_t number = 0;
    switch (b >> 6) {
      case 0:
        is_number = false;
        data = b & 0x3f;
        break;
      case 1:
        is_number = false;
        header = 2;
        if (pos + 2 > end) return false;
        data = (size_t{b & 0x3fu} << 8) | u8(pos + 1);
        break;
      case 2:
        if (b != 0x80 || pos + 5 > end) return false;
        is_number = false;
        header = 5;
        data = size_t{u8(pos + 1)} << 24 | u8(pos + 2) << 16 | u8(pos + 3) << 8 | u8(pos + 4);
        break;
      default:
        if (b == 0xc0) {
          data = 2;
        } else if (b == 0xd0) {
          data = 4;
        } else if (b == 0xe0) {
          data = 8;
        } else if (b == 0xf0) {
          data = 3;
        } else if (b == 0xfe) {
          data = 1;
        } else if (b >= 0xf1 && b <= 0xfd) {
          number = (b & 0x0f) - 1;
        } else {
          return false;
        }
    }
    if (header > end - pos || data > end - pos - header) return false;
    if (is_number && data > 0) {
      uint64_t v = 0;
      for (size_t k = data; k > 0; --k) v = (v << 8) | u8(pos + header + k - 1);
      const int shift = 64 - 8 * static_cast<int>(data);
      number = static_cast<int64_t>(v << shift) >> shift;
    }
    std::string item =
        is_number ? std::to_string(number) : std::string(zl.substr(pos + header, data));
    if (!charge->Charge(item.size())) return false;
    out->push_back(std::move(item));
    pos += header + data;
    ++seen;
  }
  return pos == end && (count == 0xffff || count == seen);
}

// Pairs a flat field, value, field, value... sequence; a repeated field is a corrupt payload.
bool PairFields(std::vector<std::string>* flat, KeyValue* value) {
  if (flat->size() % 2 != 0) return false;
  std::unordered_set<std::string_view> seen;
  for (size_t i = 0; i < flat->size(); i += 2) {
    if (!seen.insert((*flat)[i]).second) return false;
  }
  value->fields.reserve(flat->size() / 2);
  for (size_t i = 0; i < flat->size(); i += 2) {
    value->fields.emplace_back(std::move((*flat)[i]), std::move((*flat)[i + 1]));
  }
  return true;
}

bool DecodeList(uint8_t type, Reader* in, KeyValue* value) {
  value->type = KeyType::kList;
  if (type == kTypeListZiplist) {
    std::string blob;
    return in->String(&blob) && DecodeZiplist(blob, in, &value->items);
  }
  uint64_t nodes = 0;
  if (!in->Length(&nodes)) return false;
  for (uint64_t n = 0; n < nodes; ++n) {
    if (!in->Charge(0)) return false;  // Bounds the node count of an empty-node payload.
    uint64_t container = kContainerPacked;
    if (type == kTypeListQuicklist2 && !in->Length(&container)) return false;
    if (container != kContainerPacked && container != kContainerPlain) return false;
    std::string blob;
    if (!in->String(&blob)) return false;
    if (type == kTypeList || container == kContainerPlain) {
      value->items.push_back(std::move(blob));
    } else if (type == kTypeListQuicklist) {
      if (!DecodeZiplist(blob, in, &value->items)) return false;
    } else if (!DecodeListpack(blob, in, &value->items)) {
      return false;
    }
  }
  return true;
}

bool DecodeHash(uint8_t type, Reader* in, KeyValue* value) {
  value->type = KeyType::kHash;
  std::vector<std::string> flat;
  if (type == kTypeHash) {
    uint64_t pairs = 0;
    if (!in->Length(&pairs)) return false;
    for (uint64_t n = 0; n < pairs; ++n) {
      std::string field, data;
      if (!in->String(&field) || !in->String(&data)) return false;
      flat.push_back(std::move(field));
      flat.push_back(std::move(data));
    }
  } else {
    std::string blob;
    if (!in->String(&blob)) return false;
    if (!(type == kTypeHashZiplist ? DecodeZiplist(blob, in, &flat)
                                   : DecodeListpack(blob, in, &flat))) {
      return false;
    }
  }
  return PairFields(&flat, value);
}

}  // namespace

uint64_t Crc64(uint64_t crc, std::string_view bytes) {
  for (char c : bytes) crc = kCrcTable[(crc ^ static_cast<uint8_t>(c)) & 0xff] ^ (crc >> 8);
  return crc;
}

std::string EncodeDump(const KeyValue& value) {
  std::string out;
  if (value.type == KeyType::kString) {
    out.push_back(static_cast<char>(kTypeString));
    PutString(&out, value.string);
  } else if (value.type == KeyType::kList) {
    out.push_back(static_cast<char>(kTypeList));
    PutLength(&out, value.items.size());
    for (const std::string& item : value.items) PutString(&out, item);
  } else {
    out.push_back(static_cast<char>(kTypeHash));
    PutLength(&out, value.fields.size());
    for (const auto& [field, data] : value.fields) {
      PutString(&out, field);
      PutString(&out, data);
    }
  }
  PutLittleEndian(&out, kWrittenVersion, 2);
  PutLittleEndian(&out, Crc64(0, out), 8);
  return out;
}

DumpError DecodeDump(std::string_view payload, KeyValue* value) {
  *value = KeyValue{};
  if (payload.size() < kFooterBytes) return DumpError::kFooter;
  const std::string_view footer = payload.substr(payload.size() - kFooterBytes);
  const uint16_t version = static_cast<uint8_t>(footer[0]) | static_cast<uint8_t>(footer[1]) << 8;
  uint64_t crc = 0;
  for (int i = 7; i >= 0; --i) crc = (crc << 8) | static_cast<uint8_t>(footer[2 + i]);
  if (version > kNewestVersion || Crc64(0, payload.substr(0, payload.size() - 8)) != crc) {
    return DumpError::kFooter;
  }
  size_t budget = limits::kMaxDecodedDump;
  Reader in(payload.substr(0, payload.size() - kFooterBytes), &budget);
  uint8_t type = 0;
  if (!in.Byte(&type)) return DumpError::kFormat;
  bool ok = false;
  switch (type) {
    case kTypeString:
      value->type = KeyType::kString;
      ok = in.String(&value->string);
      break;
    case kTypeList:
    case kTypeListZiplist:
    case kTypeListQuicklist:
    case kTypeListQuicklist2:
      ok = DecodeList(type, &in, value) && !value->items.empty();
      break;
    case kTypeHash:
    case kTypeHashZiplist:
    case kTypeHashListpack:
      ok = DecodeHash(type, &in, value) && !value->fields.empty();
      break;
    default:
      ok = false;  // Sets, sorted sets, streams, modules, and the pre-2.6 zipmap.
  }
  return ok ? DumpError::kNone : DumpError::kFormat;
}

}  // namespace shm::resp
