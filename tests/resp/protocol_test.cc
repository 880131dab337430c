// The RESP parser, reply encoder and command dispatcher, without sockets.
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/test_util.h"
#include "shm/resp_commands.h"
#include "shm/resp_protocol.h"

namespace shm::resp {
namespace {

std::vector<std::string> Args(const ParsedCommand& parsed) {
  return std::vector<std::string>(parsed.args.begin(), parsed.args.end());
}

TEST(RespParserTest, MultibulkCommand) {
  std::string wire = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n*1\r\n$4\r\nPING\r\n";
  ParsedCommand parsed;
  ASSERT_EQ(ParseCommand(wire, RespLimits(), &parsed), ParseStatus::kCommand);
  EXPECT_EQ(Args(parsed), (std::vector<std::string>{"SET", "k", ""}));
  EXPECT_EQ(parsed.consumed, wire.find("*1"));
}

// Length lines: the one-pass reading of "digits CRLF" and the general path agree on every form.
TEST(RespParserTest, LengthLines) {
  struct Case {
    std::string wire;
    ParseStatus status;
  };
  const std::vector<Case> cases = {
      {"*1\r\n$3\r\nabc\r\n", ParseStatus::kCommand},
      {"*01\r\n$003\r\nabc\r\n", ParseStatus::kCommand},  // Leading zeros, as before.
      {"*1\r\n$000000000000000000003\r\nabc\r\n", ParseStatus::kCommand},  // 21 bytes: fits.
      {"*1\r\n$0000000000000000000003\r\nabc\r\n", ParseStatus::kError},   // Line too long.
      {"*1\r\n$9999999999999999999\r\n", ParseStatus::kError},             // Past int64.
      {"*1\r\n$999999999999999999\r\n", ParseStatus::kError},  // 18 digits, past the limit.
      {"*1\r\n$-1\r\n", ParseStatus::kError},
      {"*1\r\n$-\r\n", ParseStatus::kError},
      {"*1\r\n$\r\n", ParseStatus::kError},
      {"*1\r\n$12a\r\n", ParseStatus::kError},
      {"*1\r\n$+3\r\nabc\r\n", ParseStatus::kError},
      {"*1\r\n$3\rxabc\r\n", ParseStatus::kError},
      {"*1\r\n$3\r", ParseStatus::kIncomplete},
      {"*1\r\n$12", ParseStatus::kIncomplete},
      {"*1\r\n$ab", ParseStatus::kIncomplete},  // Garbage is judged once its line ends.
      {"*-1\r\n", ParseStatus::kEmpty},
      {"*0\r\n", ParseStatus::kEmpty},
  };
  for (const Case& c : cases) {
    ParsedCommand parsed;
    EXPECT_EQ(ParseCommand(c.wire, RespLimits(), &parsed), c.status) << c.wire;
    if (c.status == ParseStatus::kCommand) {
      EXPECT_EQ(Args(parsed), std::vector<std::string>{"abc"});
    }
  }
}

// The argument limit holds for inline commands too (found by the fuzzer, whose limits are small).
TEST(RespParserTest, InlineArgumentLimit) {
  RespLimits limits;
  limits.max_array_length = 3;
  ParsedCommand parsed;
  EXPECT_EQ(ParseCommand("a b c\r\n", limits, &parsed), ParseStatus::kCommand);
  EXPECT_EQ(ParseCommand("a b c d\r\n", limits, &parsed), ParseStatus::kError);
  EXPECT_EQ(parsed.error, "Protocol error: invalid multibulk length");
  EXPECT_TRUE(parsed.args.empty());
}

TEST(RespParserTest, EveryPrefixIsIncomplete) {
  std::string wire = "*2\r\n$3\r\nGET\r\n$5\r\nhello\r\n";
  for (size_t n = 0; n < wire.size(); ++n) {
    ParsedCommand parsed;
    EXPECT_EQ(ParseCommand(wire.substr(0, n), RespLimits(), &parsed), ParseStatus::kIncomplete)
        << n;
  }
}

TEST(RespParserTest, InlineWithQuotes) {
  ParsedCommand parsed;
  ASSERT_EQ(ParseCommand("SET k \"a b\\x41\\n\" 'it\\'s'\r\n", RespLimits(), &parsed),
            ParseStatus::kCommand);
  EXPECT_EQ(Args(parsed), (std::vector<std::string>{"SET", "k", "a bA\n", "it's"}));
  ASSERT_EQ(ParseCommand("   \r\n", RespLimits(), &parsed), ParseStatus::kEmpty);
  EXPECT_EQ(parsed.consumed, 5u);
  EXPECT_EQ(ParseCommand("SET \"open\r\n", RespLimits(), &parsed), ParseStatus::kError);
  EXPECT_EQ(ParseCommand("SET \"a\"b\r\n", RespLimits(), &parsed), ParseStatus::kError);
}

TEST(RespParserTest, LimitsAndMalformedFraming) {
  RespLimits limits;
  limits.max_bulk_bytes = 10;
  limits.max_array_length = 3;
  limits.max_inline_bytes = 16;
  limits.max_command_bytes = 30;
  ParsedCommand parsed;
  for (const char* bad :
       {"*4\r\n", "*x\r\n", "*1\r\n$11\r\n", "*1\r\n$-1\r\n", "*1\r\n$1\r\nab\r\n", "*1\r\n*1\r\n",
        "*1\r\n:1\r\n", "*99999999999999999999999\r\n",
        "*2\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n"}) {
    EXPECT_EQ(ParseCommand(bad, limits, &parsed), ParseStatus::kError) << bad;
    EXPECT_FALSE(parsed.error.empty());
  }
  EXPECT_EQ(ParseCommand(std::string(17, 'a'), limits, &parsed), ParseStatus::kError);
  EXPECT_EQ(ParseCommand(std::string(16, 'a'), limits, &parsed), ParseStatus::kIncomplete);
  // A header that claims much more than is here reserves nothing for it, and says how many
  // bytes must arrive before parsing again is worth it.
  limits = RespLimits();
  ASSERT_EQ(ParseCommand("*500000\r\n$1\r\na\r\n", limits, &parsed), ParseStatus::kIncomplete);
  EXPECT_GE(parsed.needed, 499999u * 6);
  // More arguments than the command size limit can hold is refused at once.
  EXPECT_EQ(ParseCommand("*1000000\r\n", limits, &parsed), ParseStatus::kError);
}

TEST(RespWriterTest, Resp2AndResp3) {
  std::string two, three;
  ReplyWriter w2(&two, 2), w3(&three, 3);
  for (ReplyWriter* w : {&w2, &w3}) {
    w->Null();
    w->Map(1);
    w->Bulk("a");
    w->Double(1.5);
    w->Error("ERR bad\r\nline");
  }
  EXPECT_EQ(two, "$-1\r\n*2\r\n$1\r\na\r\n$3\r\n1.5\r\n-ERR bad  line\r\n");
  EXPECT_EQ(three, "_\r\n%1\r\n$1\r\na\r\n,1.5\r\n-ERR bad  line\r\n");
}

// Integers and lengths of every digit count and sign, and bulk strings on either side of the
// short-reply path, come out as std::to_string writes them.
TEST(RespWriterTest, NumbersAndBulkSizes) {
  std::string out, expected;
  ReplyWriter w(&out, 2);
  for (int64_t value :
       {int64_t{0}, int64_t{7}, int64_t{9}, int64_t{10}, int64_t{99}, int64_t{100}, int64_t{-1},
        int64_t{-10}, int64_t{123456789}, int64_t{1000000}, INT64_MAX, INT64_MIN}) {
    w.Integer(value);
    expected += ":" + std::to_string(value) + "\r\n";
  }
  for (size_t size : {0, 1, 9, 10, 63, 64, 65, 99, 100, 1000}) {
    const std::string bytes(size, 'x');
    w.Bulk(bytes);
    expected += "$" + std::to_string(size) + "\r\n" + bytes + "\r\n";
  }
  w.Simple("OK");
  w.Simple(std::string(100, 's'));
  expected += "+OK\r\n+" + std::string(100, 's') + "\r\n";
  EXPECT_EQ(out, expected);
}

TEST(RespGlobTest, RedisPatterns) {
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("user:*:name", "user:42:name"));
  EXPECT_FALSE(GlobMatch("user:*:name", "user:42:age"));
  EXPECT_TRUE(GlobMatch("h?llo", "hallo"));
  EXPECT_TRUE(GlobMatch("h[ae]llo", "hello"));
  EXPECT_FALSE(GlobMatch("h[^e]llo", "hello"));
  EXPECT_TRUE(GlobMatch("h[a-c]llo", "hbllo"));
  EXPECT_TRUE(GlobMatch("a\\*b", "a*b"));
  EXPECT_FALSE(GlobMatch("a\\*b", "axb"));
}

// Redis's stringmatchlen gives up past 1000 nested stars: such a pattern matches nothing. A
// trailing star, escaped stars and stars in a class are no nesting level.
TEST(RespGlobTest, TooManyNestedStarsMatchNothing) {
  const std::string text(2000, 'a');
  std::string nested;
  for (size_t i = 0; i < kMaxGlobStars; ++i) nested += "*a";
  EXPECT_TRUE(GlobMatch(nested, text));
  EXPECT_TRUE(GlobMatch(nested + "*", text));
  EXPECT_FALSE(GlobMatch(nested + "*a", text));
  EXPECT_FALSE(GlobMatch(nested + "**a", text));
  std::string escaped;
  for (size_t i = 0; i < 2 * kMaxGlobStars; ++i) escaped += "\\*[*]";
  std::string stars_text;
  for (size_t i = 0; i < 2 * kMaxGlobStars; ++i) stars_text += "**";
  EXPECT_TRUE(GlobMatch(escaped, stars_text));
}

class RespDispatchTest : public ::testing::Test {
 protected:
  std::string Run(std::vector<std::string> command) {
    std::vector<std::string_view> args(command.begin(), command.end());
    std::string out;
    BlockedPop blocked;
    Outcome outcome = Execute(config_, &client_, args, &out, &blocked);
    if (outcome == Outcome::kBlock) return "<blocked>";
    return out;
  }

  void SetUp() override {
    config_.segment = segment_.get();
    // The worker passes the HTTP gate's constant-time compare; any exact compare serves here.
    config_.token_matches = [](std::string_view given, std::string_view expected) {
      return given == expected;
    };
  }

  test::ScopedSegment segment_;
  RespConfig config_;
  RespClient client_;
};

TEST_F(RespDispatchTest, StringsCountersAndTypes) {
  EXPECT_EQ(Run({"SET", "a", "1"}), "+OK\r\n");
  EXPECT_EQ(Run({"incr", "a"}), ":2\r\n");
  EXPECT_EQ(Run({"GET", "a"}), "$1\r\n2\r\n");
  EXPECT_EQ(Run({"GET", "missing"}), "$-1\r\n");
  EXPECT_EQ(Run({"RPUSH", "l", "x"}), ":1\r\n");
  EXPECT_EQ(Run({"GET", "l"}).substr(0, 10), "-WRONGTYPE");
  EXPECT_EQ(Run({"LPUSH", "a", "x"}).substr(0, 10), "-WRONGTYPE");
  EXPECT_EQ(Run({"TYPE", "l"}), "+list\r\n");
  EXPECT_EQ(Run({"GET"}), "-ERR wrong number of arguments for 'get' command\r\n");
  EXPECT_EQ(Run({"FOO", "x"}), "-ERR unknown command 'FOO', with args beginning with: 'x' \r\n");
}

// Names are found in any case, and only whole: a prefix, a longer name, a name with one byte
// changed (to one that differs from it in the case bit alone, too), or one longer than any
// command's, is unknown.
TEST(RespLookupTest, AnyCaseWholeNamesOnly) {
  using namespace std::literals;
  for (auto [lower, other_case] : {std::pair{"get"sv, "GET"sv},
                                   {"get"sv, "gEt"sv},
                                   {"ping"sv, "PING"sv},
                                   {"lrange"sv, "LRange"sv},
                                   {"hincrbyfloat"sv, "HINCRBYFLOAT"sv}}) {
    ASSERT_NE(Lookup(lower), nullptr) << lower;
    EXPECT_EQ(Lookup(other_case), Lookup(lower)) << other_case;
  }
  EXPECT_NE(Lookup("incr"), Lookup("incrby"));
  for (std::string_view name :
       {""sv, "g"sv, "ge"sv, "gett"sv, "G\x05T"sv, "gE\x14"sv, "GET\0"sv, "\0GET"sv, "pin"sv,
        "p\x09ng"sv, "PIN\x07"sv, "hincrbyfloa"sv, "hincrbyfloatt"sv, "HINCRBYFLOAT\x20"sv,
        "hincrbyfloaT\x80"sv, "aaaaaaaaaaaaaaaaa"sv, "\xc7\xc5\xd4"sv, "\xe7\xe5\xf4"sv}) {
    EXPECT_EQ(Lookup(name), nullptr) << name;
  }
}

TEST_F(RespDispatchTest, BlockingPopBlocksOnlyWhenEmpty) {
  EXPECT_EQ(Run({"BLPOP", "q", "0"}), "<blocked>");
  Run({"RPUSH", "q", "job"});
  EXPECT_EQ(Run({"BLPOP", "q", "0"}), "*2\r\n$1\r\nq\r\n$3\r\njob\r\n");
  // Inside a transaction a blocking pop answers at once.
  Run({"MULTI"});
  EXPECT_EQ(Run({"BLPOP", "q", "0"}), "+QUEUED\r\n");
  EXPECT_EQ(Run({"EXEC"}), "*1\r\n*-1\r\n");
}

TEST_F(RespDispatchTest, AuthIsRequiredWithAPassword) {
  config_.password = "pw";
  EXPECT_EQ(Run({"GET", "a"}), "-NOAUTH Authentication required.\r\n");
  EXPECT_EQ(Run({"AUTH", "nope"}).substr(0, 10), "-WRONGPASS");
  EXPECT_EQ(Run({"AUTH", "pw"}), "+OK\r\n");
  EXPECT_EQ(Run({"GET", "a"}), "$-1\r\n");
}

TEST_F(RespDispatchTest, HelloSwitchesToResp3) {
  std::string hello = Run({"HELLO", "3"});
  EXPECT_EQ(hello.substr(0, 4), "%7\r\n");
  EXPECT_EQ(Run({"GET", "missing"}), "_\r\n");
  EXPECT_EQ(Run({"HELLO", "4"}), "-NOPROTO unsupported protocol version\r\n");
}

// COMMAND, COMMAND COUNT and COMMAND INFO read one table: the count is COMMAND's length, and a
// row carries Redis's arity, flags and key positions.
TEST_F(RespDispatchTest, CommandCountMatchesCommandAndInfoShowsTheRow) {
  std::string all = Run({"COMMAND"});
  ASSERT_EQ(all[0], '*');
  std::string count = Run({"COMMAND", "COUNT"});
  EXPECT_EQ(count, ":" + all.substr(1, all.find("\r\n") - 1) + "\r\n");
  EXPECT_EQ(Run({"COMMAND", "INFO", "get", "nosuch"}),
            "*2\r\n*6\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n"
            "*-1\r\n");
  EXPECT_EQ(Run({"COMMAND", "INFO", "MSET"}),
            "*1\r\n*6\r\n$4\r\nmset\r\n:-3\r\n*2\r\n+write\r\n+denyoom\r\n:1\r\n:-1\r\n:2\r\n");
}

// CLIENT REPLY OFF drops replies until ON; SKIP drops the next command's.
TEST_F(RespDispatchTest, ClientReplyOffAndSkip) {
  EXPECT_EQ(Run({"CLIENT", "REPLY", "OFF"}), "");
  EXPECT_EQ(Run({"SET", "a", "1"}), "");
  EXPECT_EQ(Run({"CLIENT", "REPLY", "ON"}), "+OK\r\n");
  EXPECT_EQ(Run({"CLIENT", "REPLY", "SKIP"}), "");
  EXPECT_EQ(Run({"GET", "a"}), "");
  EXPECT_EQ(Run({"GET", "a"}), "$1\r\n1\r\n");
}

}  // namespace
}  // namespace shm::resp
