#include "shm/utf8.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace shm {
namespace {

// The shortest UTF-8 form of `code` (also for surrogates, which are then ill-formed).
std::string Encode(uint32_t code) {
  std::string out;
  auto put = [&](uint32_t bits) { out.push_back(static_cast<char>(bits)); };
  if (code < 0x80) {
    put(code);
  } else if (code < 0x800) {
    put(0xC0 | (code >> 6));
    put(0x80 | (code & 0x3F));
  } else if (code < 0x10000) {
    put(0xE0 | (code >> 12));
    put(0x80 | ((code >> 6) & 0x3F));
    put(0x80 | (code & 0x3F));
  } else {
    put(0xF0 | (code >> 18));
    put(0x80 | ((code >> 12) & 0x3F));
    put(0x80 | ((code >> 6) & 0x3F));
    put(0x80 | (code & 0x3F));
  }
  return out;
}

TEST(Utf8Test, EveryCodePointButTheSurrogatesIsWellFormed) {
  for (uint32_t code = 0; code <= 0x10FFFF; ++code) {
    std::string text = Encode(code);
    bool surrogate = code >= 0xD800 && code <= 0xDFFF;
    ASSERT_EQ(IsUtf8(text), !surrogate) << std::hex << code;
    ASSERT_EQ(Utf8SequenceAt(text, 0), surrogate ? 0 : text.size()) << std::hex << code;
  }
}

TEST(Utf8Test, OverlongTruncatedAndOutOfRangeFormsAreNot) {
  EXPECT_TRUE(IsUtf8(""));
  EXPECT_TRUE(IsUtf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsUtf8("\xC0\xAF"));          // '/' in two bytes.
  EXPECT_FALSE(IsUtf8("\xC1\xBF"));          // U+007F in two bytes.
  EXPECT_FALSE(IsUtf8("\xE0\x9F\xBF"));      // U+07FF in three bytes.
  EXPECT_FALSE(IsUtf8("\xF0\x8F\xBF\xBF"));  // U+FFFF in four bytes.
  EXPECT_FALSE(IsUtf8("\xF4\x90\x80\x80"));  // U+110000.
  EXPECT_FALSE(IsUtf8("\xF5\x80\x80\x80"));  // A lead byte past U+10FFFF.
  EXPECT_FALSE(IsUtf8("\xFF"));
  EXPECT_FALSE(IsUtf8("\x80"));          // A continuation byte alone.
  EXPECT_FALSE(IsUtf8("\xE2\x82"));      // Cut short at the end.
  EXPECT_FALSE(IsUtf8("\xE2\x82x"));     // Cut short before ASCII.
  EXPECT_FALSE(IsUtf8("\xC3\xA9\xC3"));  // Cut short after a good one.
  EXPECT_FALSE(IsUtf8(std::string("a\xC3", 2)));
  EXPECT_TRUE(IsUtf8(std::string("a\0b", 3)));  // NUL is a code point.
}

TEST(Utf8Test, SequenceAtMeasuresOneSequenceInsideText) {
  std::string text = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xFF";
  EXPECT_EQ(Utf8SequenceAt(text, 0), 1u);
  EXPECT_EQ(Utf8SequenceAt(text, 1), 2u);
  EXPECT_EQ(Utf8SequenceAt(text, 2), 0u);  // Inside a sequence.
  EXPECT_EQ(Utf8SequenceAt(text, 3), 3u);
  EXPECT_EQ(Utf8SequenceAt(text, 6), 4u);
  EXPECT_EQ(Utf8SequenceAt(text, 10), 0u);
}

}  // namespace
}  // namespace shm
