// shm::ParseInt64: the one decimal parser. Its short-text loop must answer exactly what
// std::from_chars (the reference, and the parser of long texts) answers on every text.
#include "shm/integer.h"

#include <gtest/gtest.h>

#include <charconv>
#include <cstdint>
#include <optional>
#include <random>
#include <string>

namespace shm {
namespace {

std::optional<int64_t> Reference(const std::string& text) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

std::optional<int64_t> Parsed(const std::string& text, IntSyntax syntax = IntSyntax::kDecimal) {
  int64_t v = 0;
  if (!ParseInt64(text, &v, syntax)) return std::nullopt;
  return v;
}

TEST(ParseInt64Test, EdgesAnswerAsFromChars) {
  for (const std::string text : {"",
                                 "-",
                                 "0",
                                 "-0",
                                 "7",
                                 "-7",
                                 "007",
                                 "-007",
                                 "+1",
                                 " 1",
                                 "1 ",
                                 "1.5",
                                 "1e3",
                                 "/",
                                 ":",
                                 "1/",
                                 "9:",
                                 "--1",
                                 "1-",
                                 "999999999999999999",
                                 "-999999999999999999",
                                 "9223372036854775807",
                                 "-9223372036854775808",
                                 "9223372036854775808",
                                 "-9223372036854775809",
                                 "99999999999999999999",
                                 "00000000000000000001",
                                 "-0000000000000000001",
                                 "000000000000000000000"}) {
    EXPECT_EQ(Parsed(text), Reference(text)) << "'" << text << "'";
  }
  EXPECT_EQ(Parsed("1234"), 1234);
  EXPECT_EQ(Parsed("-1234"), -1234);
}

TEST(ParseInt64Test, RedisStrictRefusesWhatRedisWouldNotPrint) {
  EXPECT_EQ(Parsed("0", IntSyntax::kRedisStrict), 0);
  EXPECT_EQ(Parsed("-12", IntSyntax::kRedisStrict), -12);
  EXPECT_EQ(Parsed("01", IntSyntax::kRedisStrict), std::nullopt);
  EXPECT_EQ(Parsed("-0", IntSyntax::kRedisStrict), std::nullopt);
  EXPECT_EQ(Parsed("-", IntSyntax::kRedisStrict), std::nullopt);
}

TEST(ParseInt64Test, RandomTextsAnswerAsFromChars) {
  std::mt19937_64 rng(24);
  const std::string alphabet = "0123456789-+ ./:";
  for (int i = 0; i < 200000; ++i) {
    std::string text;
    const size_t length = rng() % 22;
    const bool digits_only = rng() % 2 == 0;
    for (size_t j = 0; j < length; ++j) {
      text += digits_only && !(j == 0 && rng() % 3 == 0) ? alphabet[rng() % 10]
                                                         : alphabet[rng() % alphabet.size()];
    }
    ASSERT_EQ(Parsed(text), Reference(text)) << "'" << text << "'";
  }
}

}  // namespace
}  // namespace shm
