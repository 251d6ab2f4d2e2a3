// The text that goes into the CLI's gnuplot scripts cannot run as gnuplot commands.
#include "cli/gnuplot.h"

#include <gtest/gtest.h>

namespace ktune::cli {
namespace {

// Single quotes: inside double quotes gnuplot runs `backquoted` text as a shell command, so a
// recorded parameter name "p`touch pwned`" in a plot's title ran it.
TEST(GnuplotQuotedTest, SingleQuotesKeepBackquotesAndBackslashesAsText) {
  EXPECT_EQ(GnuplotQuoted("a`touch pwned`b"), "'a`touch pwned`b'");
  EXPECT_EQ(GnuplotQuoted("it's \"x\\y\""), "'it''s \"x\\y\"'");
}

// A newline inside a literal ended its line, and the rest ran as commands: a recorded value
// "x\nsystem('touch pwned')" ran the shell through `explain --plot`.
TEST(GnuplotQuotedTest, ControlCharactersCannotEndTheLiteralsLine) {
  const std::string quoted = GnuplotQuoted("x\nsystem('touch pwned')\r\t#\x7f");
  EXPECT_EQ(quoted.find_first_of("\n\r\t\x7f"), std::string::npos) << quoted;
  EXPECT_EQ(quoted, "'x system(''touch pwned'')  # '");
}

TEST(GnuplotDataStringTest, ADataRowsStringHasNoQuoteBackquoteOrNewline) {
  EXPECT_EQ(GnuplotDataString("a\"b`c`\nd"), "\"a'b'c' d\"");
}

}  // namespace
}  // namespace ktune::cli
