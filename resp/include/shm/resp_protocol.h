// RESP wire format: a socket-free parser for client commands and an encoder for replies
// (RESP2, and RESP3 once a client says HELLO 3).
//
// The parser is stateless: Parse() looks at the unconsumed bytes of a connection and either
// returns one whole command (its arguments are views into those bytes), asks for more bytes, or
// returns a protocol error, after which the connection must be closed (as Redis does). Every
// length it reads is checked against RespLimits before it is trusted. Both the multibulk form
// (*N $len ...) and the inline form ("SET a b\r\n", with Redis's quoting) are accepted.
// Process-safety: plain functions on caller-owned data; safe from any thread.
#ifndef SHM_RESP_PROTOCOL_H_
#define SHM_RESP_PROTOCOL_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace shm::resp {

struct CommandRow;  // The command table's row (resp_commands.h: Lookup).

struct RespLimits {
  size_t max_bulk_bytes = size_t{1} << 20;     // One argument; larger is a protocol error.
  size_t max_array_length = size_t{1} << 20;   // Arguments of one command (Redis: 1M).
  size_t max_inline_bytes = size_t{64} << 10;  // An inline command line (Redis: 64 KiB).
  // Bytes of one command (all its arguments and framing); larger is a protocol error.
  size_t max_command_bytes = size_t{4} << 20;
};

enum class ParseStatus {
  kCommand,     // `args` holds one command; `consumed` bytes of it were used.
  kIncomplete,  // Need more bytes; nothing consumed.
  kEmpty,       // An empty inline line: `consumed` bytes to skip, no command.
  kError,       // Protocol error: `error` says what (the text after "-ERR "); close after it.
};

struct ParsedCommand {
  std::vector<std::string_view> args;  // Views into the parsed buffer; unescaped inline args
                                       // point into `storage`.
  std::vector<std::string> storage;    // Owns inline arguments that needed unescaping.
  size_t consumed = 0;
  // On kIncomplete: the parse cannot end before this many bytes are buffered (a lower bound),
  // so a session need not parse again until then (a long command is not re-parsed per read).
  size_t needed = 0;
  std::string error;
  // The command table's row for args[0] (nullptr: unknown), filled in by the caller after the
  // parse (resp::Lookup) so that the prefetch and the execution share one lookup.
  const CommandRow* row = nullptr;
};

// Parses the first command of `data`.
ParseStatus ParseCommand(std::string_view data, const RespLimits& limits, ParsedCommand* out);

// Appends replies to a string in the protocol the client chose (2 or 3).
class ReplyWriter {
 public:
  ReplyWriter(std::string* out, int protocol) : out_(out), protocol_(protocol) {}

  int protocol() const { return protocol_; }
  std::string* buffer() { return out_; }

  // +text. Inline: the usual text is a literal ("OK", "PONG"), which then goes out as one
  // constant-size append.
  void Simple(std::string_view text) {
    if (text.size() > kShortSimple) return SimpleLong(text);
    char line[kShortSimple + 3];
    line[0] = '+';
    std::memcpy(line + 1, text.data(), text.size());
    line[text.size() + 1] = '\r';
    line[text.size() + 2] = '\n';
    out_->append(line, text.size() + 3);
  }
  void Error(std::string_view text);  // -text (the caller includes the ERR/WRONGTYPE prefix).
  void Integer(int64_t value);
  void Bulk(std::string_view bytes);
  void Null();       // $-1 (RESP2) or _ (RESP3)
  void NullArray();  // *-1 (RESP2) or _ (RESP3)
  void Array(size_t count);
  void Map(size_t pairs);     // %n in RESP3; a flat array of 2n in RESP2.
  void Set(size_t count);     // ~n in RESP3; an array in RESP2.
  void Double(double value);  // ,x in RESP3; a bulk string in RESP2.
  void Raw(std::string_view bytes) { out_->append(bytes); }

 private:
  static constexpr size_t kShortSimple = 32;
  void Header(char type, int64_t count);
  void SimpleLong(std::string_view text);

  std::string* out_;
  int protocol_;
};

// Formats a double as Redis does for INCRBYFLOAT replies: shortest round-trip digits, no
// exponent for ordinary magnitudes, "inf"/"-inf".
std::string FormatDouble(double value);

// Redis glob matching (KEYS, SCAN MATCH): * ? [abc] [^a-z] and \ escapes. As Redis's
// stringmatchlen, a pattern that nests more than kMaxGlobStars stars before its last one matches
// nothing (Redis's guard against abusive patterns), whatever the text.
inline constexpr size_t kMaxGlobStars = 1000;
bool GlobMatch(std::string_view pattern, std::string_view text, bool nocase = false);

}  // namespace shm::resp

#endif  // SHM_RESP_PROTOCOL_H_
