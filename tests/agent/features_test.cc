// SpaceFeatures: what cost models and the policy see of a configuration.
#include "agent/features.h"

#include <gtest/gtest.h>

namespace ktune {
namespace {

TEST(SpaceFeaturesTest, EachParameterGivesItsScaledIndexAndLogValue) {
  auto space = SearchSpace::Create(
      {{"block", {int64_t{16}, int64_t{32}, int64_t{48}, int64_t{64}}}, {"mode", {"a", "b"}}}, {});
  ASSERT_TRUE(space.ok()) << space.status();
  SpaceFeatures features(*space);
  ASSERT_EQ(features.width(), 4);
  std::vector<float> x;
  features.Append({2, 1}, x);  // block=48, mode=b
  ASSERT_EQ(x.size(), 4u);
  EXPECT_FLOAT_EQ(x[0], 2.f / 3.f);        // index 2 of 0..3
  EXPECT_FLOAT_EQ(x[1], std::log2(49.f));  // log2(1 + 48)
  EXPECT_FLOAT_EQ(x[2], 1.f);              // index 1 of 0..1
  EXPECT_FLOAT_EQ(x[3], 1.f);              // a string's value is its index: log2(1 + 1)
  // Every valid point, row by row, as Append gives it.
  const std::vector<float>& all = features.AllPoints();
  ASSERT_EQ(all.size(), static_cast<size_t>(space->size() * features.width()));
  x.clear();
  features.Append(space->PointAt(3), x);
  EXPECT_EQ(std::vector<float>(all.begin() + 3 * features.width(),
                               all.begin() + 4 * features.width()),
            x);
}

}  // namespace
}  // namespace ktune
