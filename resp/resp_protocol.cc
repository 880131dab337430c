// RESP parsing and reply encoding (see shm/resp_protocol.h).
#include "shm/resp_protocol.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>

namespace shm::resp {
namespace {

constexpr size_t kMaxLengthDigits = 20;  // A header line longer than this is garbage.
constexpr size_t kMinBulkBytes = 6;      // "$0\r\n\r\n": the shortest argument.

// A decimal integer header line read by ReadLength.
struct LengthLine {
  size_t next;  // The position after its CRLF; 0: the line is incomplete; SIZE_MAX: malformed.
  int64_t value;
};

// The general path of ReadLength: a long or negative number, garbage, a line not yet complete.
[[gnu::noinline]] LengthLine ReadLengthSlow(std::string_view data, size_t pos) {
  // A few digits then CRLF in one pass first, with one bound per digit (the digits end by the
  // buffer's end or kFastDigits, whichever comes first).
  constexpr size_t kFastDigits = 18;  // Cannot overflow int64.
  size_t i = pos;
  const bool negative = i < data.size() && data[i] == '-';
  if (negative) ++i;
  const size_t first = i;
  const size_t digits_end = std::min(data.size(), first + kFastDigits);
  int64_t fast = 0;
  while (i < digits_end && static_cast<unsigned>(data[i] - '0') < 10u) {
    fast = fast * 10 + (data[i] - '0');
    ++i;
  }
  if (i > first && i + 1 < data.size() && data[i] == '\r' && data[i + 1] == '\n') {
    return {i + 2, negative ? -fast : fast};
  }
  size_t cr = data.find('\r', pos);
  if (cr == std::string_view::npos) {
    return {data.size() - pos > kMaxLengthDigits + 1 ? SIZE_MAX : 0, 0};
  }
  if (cr - pos > kMaxLengthDigits + 1) return {SIZE_MAX, 0};
  if (cr + 1 >= data.size()) return {0, 0};
  if (data[cr + 1] != '\n') return {SIZE_MAX, 0};
  const char* begin = data.data() + pos;
  const char* end = data.data() + cr;
  if (begin == end) return {SIZE_MAX, 0};
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || ptr != end) return {SIZE_MAX, 0};
  return {cr + 2, value};
}

// Reads a decimal integer header line starting after its type byte at data[pos] (pos <=
// data.size()).
inline LengthLine ReadLength(std::string_view data, size_t pos) {
  // One or two digits then CRLF, with the bytes for two at hand: nearly every length a client
  // sends (the last line of a buffer aside). The general path gives every other answer.
  if (data.size() - pos >= 4) {
    const char* p = data.data() + pos;
    const unsigned high = static_cast<unsigned>(p[0] - '0');
    if (high < 10u) {
      if (p[1] == '\r' && p[2] == '\n') return {pos + 3, high};
      const unsigned low = static_cast<unsigned>(p[1] - '0');
      if (low < 10u && p[2] == '\r' && p[3] == '\n') return {pos + 4, high * 10 + low};
    }
  }
  return ReadLengthSlow(data, pos);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// Splits an inline line as Redis's sdssplitargs does: words separated by blanks, "double quoted"
// with \n \r \t \b \a \\ \" \xHH escapes, or 'single quoted' with \'. False on unbalanced quotes
// or a closing quote not followed by a blank.
bool SplitInline(std::string_view line, ParsedCommand* out) {
  size_t i = 0;
  while (true) {
    while (i < line.size() && IsSpace(line[i])) ++i;
    if (i == line.size()) return true;
    if (line[i] != '"' && line[i] != '\'') {
      size_t start = i;
      while (i < line.size() && !IsSpace(line[i])) ++i;
      out->args.push_back(line.substr(start, i - start));
      continue;
    }
    const char quote = line[i++];
    std::string word;
    bool closed = false;
    while (i < line.size()) {
      char c = line[i];
      if (quote == '"' && c == '\\' && i + 1 < line.size()) {
        char e = line[i + 1];
        if (e == 'x' && i + 3 < line.size() && HexValue(line[i + 2]) >= 0 &&
            HexValue(line[i + 3]) >= 0) {
          word.push_back(static_cast<char>(HexValue(line[i + 2]) * 16 + HexValue(line[i + 3])));
          i += 4;
          continue;
        }
        switch (e) {
          case 'n':
            word.push_back('\n');
            break;
          case 'r':
            word.push_back('\r');
            break;
          case 't':
            word.push_back('\t');
            break;
          case 'b':
            word.push_back('\b');
            break;
          case 'a':
            word.push_back('\a');
            break;
          default:
            word.push_back(e);
            break;
        }
        i += 2;
        continue;
      }
      if (quote == '\'' && c == '\\' && i + 1 < line.size() && line[i + 1] == '\'') {
        word.push_back('\'');
        i += 2;
        continue;
      }
      if (c == quote) {
        ++i;
        closed = true;
        break;
      }
      word.push_back(c);
      ++i;
    }
    if (!closed || (i < line.size() && !IsSpace(line[i]))) return false;
    out->storage.push_back(std::move(word));
    out->args.emplace_back();  // Pointed at storage once it stops moving.
  }
}

[[gnu::cold]] [[gnu::noinline]] ParseStatus Fail(ParsedCommand* out, std::string message) {
  out->args.clear();
  out->error = std::move(message);
  return ParseStatus::kError;
}

[[gnu::cold]] [[gnu::noinline]] ParseStatus FailNotDollar(ParsedCommand* out, char got) {
  return Fail(out, std::string("Protocol error: expected '$', got '") + got + "'");
}

// The command's bytes end past what is buffered: at least `at_least` bytes, and the shortest
// framing of the `args_after` arguments that follow the one being read.
[[gnu::noinline]] ParseStatus Incomplete(ParsedCommand* out, size_t at_least, int64_t args_after) {
  out->args.clear();
  out->needed = at_least + static_cast<size_t>(args_after) * kMinBulkBytes;
  return ParseStatus::kIncomplete;
}

ParseStatus ParseInline(std::string_view data, const RespLimits& limits, ParsedCommand* out) {
  size_t newline = data.find('\n');
  if (newline == std::string_view::npos) {
    if (data.size() > limits.max_inline_bytes) {
      out->error = "Protocol error: too big inline request";
      return ParseStatus::kError;
    }
    out->needed = data.size() + 1;
    return ParseStatus::kIncomplete;
  }
  if (newline > limits.max_inline_bytes) {
    out->error = "Protocol error: too big inline request";
    return ParseStatus::kError;
  }
  std::string_view line = data.substr(0, newline);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  out->consumed = newline + 1;
  if (!SplitInline(line, out)) {
    out->error = "Protocol error: unbalanced quotes in request";
    return ParseStatus::kError;
  }
  if (out->args.size() > limits.max_array_length) {  // Only small limits make this reachable.
    return Fail(out, "Protocol error: invalid multibulk length");
  }
  // Quoted words live in `storage`; the empty views placed for them are filled in order.
  size_t next = 0;
  for (std::string_view& arg : out->args) {
    if (arg.data() == nullptr) arg = out->storage[next++];
  }
  return out->args.empty() ? ParseStatus::kEmpty : ParseStatus::kCommand;
}

}  // namespace

ParseStatus ParseCommand(std::string_view data, const RespLimits& limits, ParsedCommand* out) {
  out->args.clear();
  out->storage.clear();
  out->consumed = 0;
  out->needed = 0;
  out->error.clear();
  if (data.empty()) return ParseStatus::kIncomplete;
  if (data[0] != '*') return ParseInline(data, limits, out);
  const LengthLine header = ReadLength(data, 1);
  size_t pos = header.next;
  const int64_t count = header.value;
  if (pos == 0) {
    out->needed = data.size() + 1;
    return ParseStatus::kIncomplete;
  }
  if (pos == SIZE_MAX || count > static_cast<int64_t>(limits.max_array_length)) {
    return Fail(out, "Protocol error: invalid multibulk length");
  }
  if (count <= 0) {  // "*0" and "*-1" are empty requests, skipped as Redis does.
    out->consumed = pos;
    return ParseStatus::kEmpty;
  }
  if (pos + static_cast<size_t>(count) * kMinBulkBytes > limits.max_command_bytes) {
    return Fail(out, "Protocol error: command too large");
  }
  // Reserve by what the bytes at hand can hold, not by what the header claims; a reused
  // ParsedCommand (a session's) already has the room.
  const size_t room = std::min<size_t>(static_cast<size_t>(count), data.size() / 4 + 1);
  if (out->args.capacity() < room) out->args.reserve(room);
  for (int64_t i = 0; i < count; ++i) {
    if (pos >= data.size()) return Incomplete(out, pos + kMinBulkBytes, count - i - 1);
    if (data[pos] != '$') return FailNotDollar(out, data[pos]);
    const LengthLine line = ReadLength(data, pos + 1);
    const size_t body = line.next;
    if (body == 0) return Incomplete(out, data.size() + 1, count - i - 1);
    if (body == SIZE_MAX || line.value < 0 ||
        static_cast<uint64_t>(line.value) > limits.max_bulk_bytes) {
      return Fail(out, "Protocol error: invalid bulk length");
    }
    const size_t length = static_cast<size_t>(line.value);
    const size_t end = body + length;
    if (end > limits.max_command_bytes) return Fail(out, "Protocol error: command too large");
    if (end + 2 > data.size()) return Incomplete(out, end + 2, count - i - 1);
    if (data[end] != '\r' || data[end + 1] != '\n') {
      return Fail(out, "Protocol error: bulk string not terminated by CRLF");
    }
    out->args.emplace_back(data.data() + body, length);
    pos = end + 2;
  }
  out->consumed = pos;
  return ParseStatus::kCommand;
}

namespace {

// The decimal digits of 0..99 in pairs ("00", "01", ... "99").
constexpr auto kDigitPairs = [] {
  std::array<char, 200> pairs{};
  for (int i = 0; i < 100; ++i) {
    pairs[2 * i] = static_cast<char>('0' + i / 10);
    pairs[2 * i + 1] = static_cast<char>('0' + i % 10);
  }
  return pairs;
}();

// Writes `value` in decimal so that it ends just before `end`; returns where it begins. Backwards
// two digits at a time: no count of the digits first, half the divisions.
char* DecimalBefore(char* end, int64_t value) {
  uint64_t left = value < 0 ? 0 - static_cast<uint64_t>(value) : static_cast<uint64_t>(value);
  while (left >= 100) {
    end -= 2;
    std::memcpy(end, &kDigitPairs[2 * (left % 100)], 2);
    left /= 100;
  }
  if (left >= 10) {
    end -= 2;
    std::memcpy(end, &kDigitPairs[2 * left], 2);
  } else {
    *--end = static_cast<char>('0' + left);
  }
  if (value < 0) *--end = '-';
  return end;
}

// Writes `value` in decimal at `p` (room for 20 characters); returns the end. The one- and
// two-digit lengths that most replies carry skip the general conversion.
char* WriteDecimal(char* p, int64_t value) {
  if (static_cast<uint64_t>(value) < 10) {
    *p = static_cast<char>('0' + value);
    return p + 1;
  }
  if (static_cast<uint64_t>(value) < 100) {
    std::memcpy(p, &kDigitPairs[2 * value], 2);
    return p + 2;
  }
  return std::to_chars(p, p + 20, value).ptr;
}

}  // namespace

void ReplyWriter::Header(char type, int64_t count) {
  // Built aside (backwards, from its CR LF) and appended once: one capacity check per line.
  char line[24];  // Type, at most 20 characters of int64, CR LF.
  char* const end = line + sizeof line;
  end[-2] = '\r';
  end[-1] = '\n';
  char* begin = DecimalBefore(end - 2, count);
  *--begin = type;
  out_->append(begin, static_cast<size_t>(end - begin));
}

void ReplyWriter::SimpleLong(std::string_view text) {
  out_->push_back('+');
  out_->append(text);
  out_->append("\r\n", 2);
}

void ReplyWriter::Error(std::string_view text) {
  out_->push_back('-');
  // An error line cannot carry CR or LF; Redis replaces them by spaces as well.
  for (char c : text) out_->push_back(c == '\r' || c == '\n' ? ' ' : c);
  out_->append("\r\n", 2);
}

void ReplyWriter::Integer(int64_t value) {
  // 0..9, the usual reply of a count or flag (HSET, DEL, EXISTS, HDEL) and of a young counter:
  // one constant-size append, as Simple's. Out of line all the same: inline, it grew the
  // commands' bodies past what GCC inlines into their table entries (Push into LPush).
  if (static_cast<uint64_t>(value) >= 10) return Header(':', value);
  const char line[4] = {':', static_cast<char>('0' + value), '\r', '\n'};
  out_->append(line, sizeof line);
}

void ReplyWriter::Bulk(std::string_view bytes) {
  // A short value goes out with its header in one append; a long one in three (the copy
  // dwarfs the calls).
  constexpr size_t kShortBulk = 64;
  if (bytes.size() > kShortBulk) {
    Header('$', static_cast<int64_t>(bytes.size()));
    out_->append(bytes);
    out_->append("\r\n", 2);
    return;
  }
  char line[24 + kShortBulk + 2];  // Header line, value, CR LF.
  line[0] = '$';
  char* end = WriteDecimal(line + 1, static_cast<int64_t>(bytes.size()));
  *end++ = '\r';
  *end++ = '\n';
  std::memcpy(end, bytes.data(), bytes.size());
  end += bytes.size();
  *end++ = '\r';
  *end++ = '\n';
  out_->append(line, static_cast<size_t>(end - line));
}

void ReplyWriter::Null() {
  if (protocol_ >= 3) {
    out_->append("_\r\n", 3);
  } else {
    out_->append("$-1\r\n", 5);
  }
}

void ReplyWriter::NullArray() {
  if (protocol_ >= 3) {
    out_->append("_\r\n", 3);
  } else {
    out_->append("*-1\r\n", 5);
  }
}

void ReplyWriter::Array(size_t count) { Header('*', static_cast<int64_t>(count)); }

void ReplyWriter::Map(size_t pairs) {
  if (protocol_ >= 3) {
    Header('%', static_cast<int64_t>(pairs));
  } else {
    Header('*', static_cast<int64_t>(pairs * 2));
  }
}

void ReplyWriter::Set(size_t count) {
  Header(protocol_ >= 3 ? '~' : '*', static_cast<int64_t>(count));
}

void ReplyWriter::Double(double value) {
  std::string text = FormatDouble(value);
  if (protocol_ >= 3) {
    out_->push_back(',');
    out_->append(text);
    out_->append("\r\n", 2);
  } else {
    Bulk(text);
  }
}

std::string FormatDouble(double value) {
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char digits[64];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value, std::chars_format::fixed);
  if (ec != std::errc()) {
    end = std::to_chars(digits, digits + sizeof digits, value).ptr;
  }
  return std::string(digits, end);
}

namespace {

// Runs of '*' followed by more pattern: each is one level of Redis's recursive matcher, which
// gives up past kMaxGlobStars levels. Escapes and classes are skipped as the matcher reads them.
bool TooManyStars(std::string_view pattern) {
  size_t runs = 0;
  for (size_t p = 0; p < pattern.size(); ++p) {
    if (pattern[p] == '\\') {
      ++p;
    } else if (pattern[p] == '[') {
      while (p + 1 < pattern.size() && pattern[p + 1] != ']') p += pattern[p + 1] == '\\' ? 2 : 1;
      ++p;
    } else if (pattern[p] == '*') {
      while (p + 1 < pattern.size() && pattern[p + 1] == '*') ++p;
      if (p + 1 < pattern.size() && ++runs > kMaxGlobStars) return true;
    }
  }
  return false;
}

}  // namespace

bool GlobMatch(std::string_view pattern, std::string_view text, bool nocase) {
  if (TooManyStars(pattern)) return false;
  auto lower = [nocase](char c) {
    return nocase && c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  };
  size_t p = 0, t = 0;
  size_t star_p = std::string_view::npos, star_t = 0;
  while (t < text.size()) {
    bool matched = false;
    size_t next_p = p;
    if (p < pattern.size()) {
      char c = pattern[p];
      if (c == '*') {
        while (p < pattern.size() && pattern[p] == '*') ++p;
        if (p == pattern.size()) return true;
        star_p = p;
        star_t = t;
        continue;
      }
      if (c == '?') {
        matched = true;
        next_p = p + 1;
      } else if (c == '[') {
        size_t q = p + 1;
        bool negate = q < pattern.size() && pattern[q] == '^';
        if (negate) ++q;
        bool in_class = false;
        while (q < pattern.size() && pattern[q] != ']') {
          if (pattern[q] == '\\' && q + 1 < pattern.size()) {
            ++q;
            if (lower(pattern[q]) == lower(text[t])) in_class = true;
          } else if (q + 2 < pattern.size() && pattern[q + 1] == '-' && pattern[q + 2] != ']') {
            char lo = lower(pattern[q]), hi = lower(pattern[q + 2]);
            if (lo > hi) std::swap(lo, hi);
            char x = lower(text[t]);
            if (x >= lo && x <= hi) in_class = true;
            q += 2;
          } else if (lower(pattern[q]) == lower(text[t])) {
            in_class = true;
          }
          ++q;
        }
        matched = in_class != negate;
        next_p = q < pattern.size() ? q + 1 : q;
      } else {
        if (c == '\\' && p + 1 < pattern.size()) {
          ++p;
          c = pattern[p];
        }
        matched = lower(c) == lower(text[t]);
        next_p = p + 1;
      }
    }
    if (matched) {
      p = next_p;
      ++t;
    } else if (star_p != std::string_view::npos) {
      p = star_p;
      t = ++star_t;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace shm::resp
