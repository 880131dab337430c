// DUMP payloads (shm/resp_dump.h) without a server: the encodings Redis 7.0 and its predecessors
// write, built here byte by byte from the format's description, decode to the right values; bad
// payloads are refused with the right kind of error. (tests/resp/test_dump.py checks the same
// against a real redis-server.)
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "shm/limits.h"
#include "shm/resp_dump.h"

namespace shm::resp {
namespace {

using namespace std::string_literals;  // "\x00..."s keeps its NUL bytes.

std::string Le(uint64_t value, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  return out;
}

std::string Be(uint64_t value, int bytes) {
  std::string out;
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  return out;
}

// An RDB length (6-bit, 14-bit or 32-bit form).
std::string Len(uint64_t n) {
  if (n < 64) return std::string(1, static_cast<char>(n));
  if (n < 16384) return std::string(1, static_cast<char>(0x40 | (n >> 8))) + Be(n & 0xff, 1);
  return "\x80" + Be(n, 4);
}

std::string Str(std::string_view s) { return Len(s.size()) + std::string(s); }

std::string Payload(std::string_view body, uint16_t version = 10) {
  std::string out(body);
  out += Le(version, 2);
  out += Le(Crc64(0, out), 8);
  return out;
}

// A ziplist of `entries`, each an already encoded "encoding + data".
std::string Ziplist(const std::vector<std::string>& entries) {
  std::string body;
  size_t prev = 0;
  for (const std::string& e : entries) {
    std::string prevlen = prev < 254 ? Le(prev, 1) : "\xfe" + Le(prev, 4);
    body += prevlen + e;
    prev = prevlen.size() + e.size();
  }
  std::string zl = Le(0, 4) + Le(0, 4) + Le(entries.size(), 2) + body + "\xff";
  return Le(zl.size(), 4) + zl.substr(4);
}

std::string ZipStr(std::string_view s) {
  if (s.size() < 64) return std::string(1, static_cast<char>(s.size())) + std::string(s);
  if (s.size() < 16384) {
    return std::string(1, static_cast<char>(0x40 | (s.size() >> 8))) + Be(s.size() & 0xff, 1) +
           std::string(s);
  }
  return "\x80" + Be(s.size(), 4) + std::string(s);
}

// A listpack of `entries` (encoding + data each); the backlen follows each.
std::string Listpack(const std::vector<std::string>& entries) {
  std::string body;
  for (const std::string& e : entries) {
    body += e;
    const size_t n = e.size();
    if (n < 128) {
      body += Le(n, 1);
    } else if (n < 16383) {
      body += static_cast<char>(n >> 7);
      body += static_cast<char>((n & 127) | 128);
    } else {
      body += static_cast<char>(n >> 14);
      body += static_cast<char>(((n >> 7) & 127) | 128);
      body += static_cast<char>((n & 127) | 128);
    }
  }
  std::string lp = Le(0, 4) + Le(entries.size(), 2) + body + "\xff";
  return Le(lp.size(), 4) + lp.substr(4);
}

std::string LpStr(std::string_view s) {
  if (s.size() < 64) return std::string(1, static_cast<char>(0x80 | s.size())) + std::string(s);
  if (s.size() < 4096) {
    return std::string(1, static_cast<char>(0xe0 | (s.size() >> 8))) + Be(s.size() & 0xff, 1) +
           std::string(s);
  }
  return "\xf0" + Le(s.size(), 4) + std::string(s);
}

KeyValue Decoded(std::string_view payload) {
  KeyValue value;
  EXPECT_EQ(DecodeDump(payload, &value), DumpError::kNone);
  return value;
}

TEST(DumpPayloadTest, Crc64IsRedisCrc64) {
  EXPECT_EQ(Crc64(0, "123456789"), 0xe9c6d914c4b8d9caull);
}

TEST(DumpPayloadTest, RoundTripsEveryType) {
  KeyValue s;
  s.type = KeyType::kString;
  s.string = std::string(70000, 'x') + std::string("\0\xff", 2);
  KeyValue l;
  l.type = KeyType::kList;
  l.items = {"", "a", std::string(300, 'b'), "-12"};
  KeyValue h;
  h.type = KeyType::kHash;
  h.fields = {{"f", "1"}, {"", ""}, {std::string(20000, 'g'), "v"}};
  for (const KeyValue& value : {s, l, h}) {
    const std::string payload = EncodeDump(value);
    EXPECT_EQ(payload.substr(payload.size() - 10, 2), Le(9, 2));  // RDB 9: Redis 5+ load it.
    KeyValue back = Decoded(payload);
    EXPECT_EQ(back.type, value.type);
    EXPECT_EQ(back.string, value.string);
    EXPECT_EQ(back.items, value.items);
    EXPECT_EQ(back.fields, value.fields);
  }
}

TEST(DumpPayloadTest, IntegerAndLzfStrings) {
  EXPECT_EQ(Decoded(Payload("\x00\xc0\xfb"s)).string, "-5");                  // RDB_ENC_INT8
  EXPECT_EQ(Decoded(Payload("\x00\xc1"s + Le(0x8000, 2))).string, "-32768");  // INT16
  EXPECT_EQ(Decoded(Payload("\x00\xc2"s + Le(2147483647, 4))).string, "2147483647");
  // "a" then a copy of 19 bytes from 1 back: ctrl 0xe0 (run 7 + next byte 10, + 2), offset 0.
  const std::string lzf = "\x00\x61\xe0\x0a\x00"s;
  EXPECT_EQ(Decoded(Payload(std::string("\x00\xc3", 2) + Len(lzf.size()) + Len(20) + lzf)).string,
            std::string(20, 'a'));
  // The declared length must be what the data expands to.
  KeyValue value;
  EXPECT_EQ(
      DecodeDump(Payload(std::string("\x00\xc3", 2) + Len(lzf.size()) + Len(21) + lzf), &value),
      DumpError::kFormat);
  // A copy from before the start of the output.
  const std::string bad = "\x00\x61\xe0\x0a\x05"s;
  EXPECT_EQ(
      DecodeDump(Payload(std::string("\x00\xc3", 2) + Len(bad.size()) + Len(20) + bad), &value),
      DumpError::kFormat);
}

TEST(DumpPayloadTest, ZiplistListsAndHashes) {
  const std::string big(300, 'z');
  const std::vector<std::string> entries = {
      ZipStr("ab"),
      "\xfe\xfb",                                                 // int8 -5
      "\xf8",                                                     // immediate 7
      "\xc0" + Le(300, 2),                                        // int16
      "\xf0" + Le(static_cast<uint32_t>(-100000) & 0xffffff, 3),  // int24
      "\xd0" + Le(static_cast<uint32_t>(-2000000000), 4),         // int32
      "\xe0" + Le(static_cast<uint64_t>(INT64_MIN), 8),           // int64
      ZipStr(big),
  };
  const std::vector<std::string> expected = {
      "ab", "-5", "7", "300", "-100000", "-2000000000", "-9223372036854775808", big};
  EXPECT_EQ(Decoded(Payload("\x0a" + Str(Ziplist(entries)))).items, expected);  // LIST_ZIPLIST
  // QUICKLIST: nodes of ziplists.
  std::vector<std::string> twice = expected;
  twice.insert(twice.end(), expected.begin(), expected.end());
  EXPECT_EQ(Decoded(Payload("\x0e" + Len(2) + Str(Ziplist(entries)) + Str(Ziplist(entries)))).items,
            twice);
  KeyValue hash =
      Decoded(Payload("\x0d" + Str(Ziplist({ZipStr("f"), "\xf2", ZipStr("g"), ZipStr(big)}))));
  EXPECT_EQ(hash.type, KeyType::kHash);
  EXPECT_EQ(hash.fields,
            (std::vector<std::pair<std::string, std::string>>{{"f", "1"}, {"g", big}}));
}

TEST(DumpPayloadTest, ListpackListsAndHashes) {
  const std::string mid(1000, 'm'), large(5000, 'L');
  const std::vector<std::string> entries = {
      "\x05",                                         // 7-bit uint
      "\xdf\xff",                                     // 13-bit int: -1
      "\xc0\x64",                                     // 13-bit int: 100
      "\xf1" + Le(static_cast<uint16_t>(-300), 2),    // int16
      "\xf2" + Le(0x7fffff, 3),                       // int24
      "\xf3" + Le(static_cast<uint32_t>(-70000), 4),  // int32
      "\xf4" + Le(1234567890123ull, 8),               // int64
      LpStr("short"),
      LpStr(mid),
      LpStr(large),
  };
  const std::vector<std::string> expected = {
      "5", "-1", "100", "-300", "8388607", "-70000", "1234567890123", "short", mid, large};
  // QUICKLIST_2: a packed node (container 2) and a plain node (container 1).
  KeyValue list = Decoded(
      Payload("\x12" + Len(2) + Len(2) + Str(Listpack(entries)) + Len(1) + Str("plain item")));
  std::vector<std::string> all = expected;
  all.push_back("plain item");
  EXPECT_EQ(list.items, all);
  KeyValue hash =
      Decoded(Payload("\x10" + Str(Listpack({LpStr("f"), "\x01", LpStr("g"), LpStr(large)}))));
  EXPECT_EQ(hash.fields,
            (std::vector<std::pair<std::string, std::string>>{{"f", "1"}, {"g", large}}));
}

TEST(DumpPayloadTest, RefusesWhatRedisRefuses) {
  const std::string good = EncodeDump(KeyValue{KeyType::kString, "v", {}, {}});
  KeyValue value;
  std::string flipped = good;
  flipped[1] ^= 1;
  EXPECT_EQ(DecodeDump(flipped, &value), DumpError::kFooter);
  EXPECT_EQ(DecodeDump("short", &value), DumpError::kFooter);
  EXPECT_EQ(DecodeDump(Payload(Str("v").insert(0, 1, '\0'), 11), &value), DumpError::kFooter);
  EXPECT_EQ(DecodeDump(Payload(std::string("\x00", 1) + Str("v")), &value), DumpError::kNone);
  EXPECT_EQ(DecodeDump(Payload("\x02\x01\x01m"), &value), DumpError::kFormat);             // A set.
  EXPECT_EQ(DecodeDump(Payload(std::string("\x01\x00", 2)), &value), DumpError::kFormat);  // Empty.
  EXPECT_EQ(DecodeDump(Payload("\x04\x02" + Str("f") + Str("1") + Str("f") + Str("2")), &value),
            DumpError::kFormat);  // A field twice.
  EXPECT_EQ(DecodeDump(Payload("\x10" + Str(Listpack({LpStr("f")}))), &value),
            DumpError::kFormat);  // A field without its value.
  std::string lp = Listpack({LpStr("a"), LpStr("b")});
  lp[4] = 3;  // The count says 3 of 2.
  EXPECT_EQ(DecodeDump(Payload("\x12\x01\x02" + Str(lp)), &value), DumpError::kFormat);
  // A string longer than the value limit, announced but not there.
  EXPECT_EQ(DecodeDump(Payload("\x00\x80"s + Be(limits::kMaxValue + 1, 4)), &value),
            DumpError::kFormat);
}

// Every prefix and every one-byte change of valid payloads, checksum fixed up: decoded or refused,
// never read out of bounds (the ASan build checks), and a value is never empty.
TEST(DumpPayloadTest, EveryTruncationAndByteChangeIsSafe) {
  const std::vector<std::string> bodies = {
      "\x12" + Len(1) + Len(2) +
          Str(Listpack({"\x05", "\xdf\xff", LpStr("abc"), "\xf3" + Le(7, 4)})),
      "\x0e" + Len(1) + Str(Ziplist({ZipStr("ab"), "\xfe\xfb", "\xc0" + Le(300, 2)})),
      "\x10" + Str(Listpack({LpStr("f"), "\x01"})),
      std::string("\x00\xc3", 2) + Len(5) + Len(20) + std::string("\x00\x61\xe0\x0a\x00", 5),
  };
  size_t decoded = 0;
  for (const std::string& body : bodies) {
    for (size_t cut = 0; cut <= body.size(); ++cut) {
      KeyValue value;
      if (DecodeDump(Payload(body.substr(0, cut)), &value) == DumpError::kNone) ++decoded;
    }
    for (size_t i = 0; i < body.size(); ++i) {
      for (int b = 0; b < 256; b += 7) {
        std::string changed = body;
        changed[i] = static_cast<char>(b);
        KeyValue value;
        if (DecodeDump(Payload(changed), &value) != DumpError::kNone) continue;
        ++decoded;
        EXPECT_TRUE(!value.items.empty() || !value.fields.empty() ||
                    value.type == KeyType::kString);
      }
    }
  }
  EXPECT_GT(decoded, bodies.size());  // The unchanged ones, at least.
}

}  // namespace
}  // namespace shm::resp
