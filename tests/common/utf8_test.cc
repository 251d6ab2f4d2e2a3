#include "common/utf8.h"

#include <gtest/gtest.h>

#include <string>

namespace ktune {
namespace {

TEST(Utf8PrefixTest, ShortValidTextComesBackAsIs) {
  const std::string text = "error: \xE2\x80\x98x\xE2\x80\x99 undeclared \xF0\x9F\x98\x80";  // ‘x’ 😀
  EXPECT_EQ(Utf8Prefix(text, 4096), text);
  EXPECT_EQ(Utf8Prefix("", 10), "");
}

TEST(Utf8PrefixTest, CutsAtACharacterBoundaryNeverInsideOne) {
  // 4095 bytes of 'a' and then 'é' (2 bytes): a plain 4096-byte cut would keep half of it.
  const std::string text = std::string(4095, 'a') + "\xC3\xA9" + "b";
  EXPECT_EQ(Utf8Prefix(text, 4096), std::string(4095, 'a'));
  EXPECT_EQ(Utf8Prefix(text, 4097), std::string(4095, 'a') + "\xC3\xA9");
  EXPECT_EQ(Utf8Prefix("\xF0\x9F\x98\x80", 3), "");  // a 4-byte character does not fit in 3
}

TEST(Utf8PrefixTest, BytesThatStartNoCharacterBecomeQuestionMarks) {
  EXPECT_EQ(Utf8Prefix("caf\xE9 ok", 100), "caf? ok");     // Latin-1 é
  EXPECT_EQ(Utf8Prefix("\xC3", 100), "?");                 // truncated character
  EXPECT_EQ(Utf8Prefix("\xC0\xAF", 100), "??");            // overlong '/'
  EXPECT_EQ(Utf8Prefix("\xED\xA0\x80", 100), "???");       // a surrogate
  EXPECT_EQ(Utf8Prefix("\xF4\x90\x80\x80", 100), "????");  // above U+10FFFF
  EXPECT_EQ(Utf8Prefix(std::string("a\0b", 3), 100), std::string("a\0b", 3));  // NUL is valid
}

TEST(HasControlCharacterTest, FindsNewlinesTabsAndDeleteNotPrintableText) {
  EXPECT_FALSE(HasControlCharacter("block_size_x"));
  EXPECT_FALSE(HasControlCharacter("Größe µs"));
  EXPECT_TRUE(HasControlCharacter("p\nsystem('x')"));
  EXPECT_TRUE(HasControlCharacter("a\tb"));
  EXPECT_TRUE(HasControlCharacter(std::string("a\0b", 3)));
  EXPECT_TRUE(HasControlCharacter("a\x7f"));
}

}  // namespace
}  // namespace ktune
