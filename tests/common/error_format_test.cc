#include "common/error_format.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace ktune {
namespace {

// A printed error pasted back as --max-rel-error admits its configuration: 2.404028e-07 printed
// as 2.4e-07 gave a budget that refused it.
TEST(ErrorFormatTest, AnErrorIsPrintedRoundedUpToThreeDigits) {
  EXPECT_EQ(FormatErrorBound(2.404028e-07), "2.41e-07");
  EXPECT_EQ(FormatErrorBound(0.00878), "0.00878");
  EXPECT_EQ(FormatErrorBound(1e-2), "0.01");
  EXPECT_EQ(FormatErrorBound(9.9949), "10");
  for (double e : {1.23449e-5, 3.3333333e-3, 0.1 + 0.2, 7.77777e-9}) {
    const std::string text = FormatErrorBound(e);
    EXPECT_GE(std::strtod(text.c_str(), nullptr), e) << text;
    EXPECT_LE(std::strtod(text.c_str(), nullptr), e * 1.01) << text;
  }
  EXPECT_EQ(FormatErrorBound(0), "0");
}

}  // namespace
}  // namespace ktune
