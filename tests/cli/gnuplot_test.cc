// The text that goes into the CLI's gnuplot scripts cannot run as gnuplot commands.
#include "cli/gnuplot.h"

#include <gtest/gtest.h>

namespace ktune::cli {
namespace {

TEST(GnuplotQuotedTest, EscapesQuotesAndBackslashes) {
  EXPECT_EQ(GnuplotQuoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
}

// A newline inside a literal ended its line, and the rest ran as commands: a recorded value
// "x\nsystem('touch pwned')" ran the shell through `explain --plot`.
TEST(GnuplotQuotedTest, ControlCharactersCannotEndTheLiteralsLine) {
  const std::string quoted = GnuplotQuoted("x\nsystem('touch pwned')\r\t#\x7f");
  EXPECT_EQ(quoted.find_first_of("\n\r\t\x7f"), std::string::npos) << quoted;
  EXPECT_EQ(quoted, "\"x system('touch pwned')  # \"");
}

}  // namespace
}  // namespace ktune::cli
