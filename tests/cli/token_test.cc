// The bearer token as the CLI and the worker send it (TokenOr, ClientContextFor).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include "cli/command.h"
#include "grpcpp/client_context.h"

namespace ktune::cli {
namespace {

// A token from a file or a Kubernetes Secret ends in a newline; gRPC aborted on it (SIGABRT)
// and printed the whole header, token included, on stderr.
TEST(TokenTest, ATokenEndingInANewlineIsSentWithoutItAndControlCharactersAreNeverPrinted) {
  ASSERT_EQ(setenv("KTUNE_TOKEN", "0123456789abcdef0123\n", 1), 0);
  EXPECT_EQ(TokenOr(""), "0123456789abcdef0123");
  EXPECT_NE(ClientContextFor("", 1), nullptr) << "the header was built without aborting";
  EXPECT_EQ(TokenOr(" given-token\r\n"), "given-token") << "--token wins over the environment";
  unsetenv("KTUNE_TOKEN");
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(TokenOr("secret\x1b[2Jpart"), "");
  const std::string said = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(said, ::testing::HasSubstr("holds a control character"));
  EXPECT_THAT(said, ::testing::Not(::testing::HasSubstr("secret")));
  EXPECT_NE(ClientContextFor("secret\x01", 1), nullptr);
}

}  // namespace
}  // namespace ktune::cli
