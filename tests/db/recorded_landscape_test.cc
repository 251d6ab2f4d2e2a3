// A recorded space's hardness figures: exact on a handful of records, and on a shared space the
// values its README tabulates (computed there independently of ktune).
#include "db/interchange/recorded_landscape.h"

#include <gtest/gtest.h>

#include "db/interchange/record_files.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

Record Ran(double ms) {
  Record r;
  r.status = MeasurementStatus::kOk;
  r.time_ms = ms;
  return r;
}

TEST(RecordedLandscapeTest, FiguresOfAFewRecords) {
  Record failed;
  failed.status = MeasurementStatus::kCompileError;
  // Ran: 4, 1, 3, 100, 1.015; median 3; cutoff 1 + 0.05 * 2 = 1.1: two within it.
  const RecordedLandscape l =
      DescribeLandscape({Ran(4), Ran(1), failed, Ran(3), Ran(100), Ran(1.015)});
  EXPECT_EQ(l.configurations, 6);
  EXPECT_EQ(l.failed, 1);
  ASSERT_TRUE(l.optimum_ms.has_value());
  EXPECT_DOUBLE_EQ(*l.optimum_ms, 1);
  EXPECT_DOUBLE_EQ(*l.median_ms, 3);
  EXPECT_DOUBLE_EQ(*l.random_draws_to_cutoff, (5.0 + 1) / (2 + 1));
  EXPECT_EQ(l.within_2pct, 2);
}

TEST(RecordedLandscapeTest, NothingRanGivesNoOptimum) {
  Record failed;
  failed.status = MeasurementStatus::kRuntimeError;
  const RecordedLandscape l = DescribeLandscape({failed, failed});
  EXPECT_EQ(l.configurations, 2);
  EXPECT_EQ(l.failed, 2);
  EXPECT_FALSE(l.optimum_ms.has_value());
  EXPECT_FALSE(l.random_draws_to_cutoff.has_value());
}

TEST(RecordedLandscapeTest, ASharedSpaceHasTheFiguresOfItsReadme) {
  // ../shared/datasets/README.md: pnpoly_RTX_3090_T4, 4092 configurations, 330 failed, optimum
  // 7.224 ms, median 1.79x the optimum, 179 random draws to the 95% cutoff.
  absl::StatusOr<RecordedSpace> space =
      LoadRecordedSpace(testing::SpaceFile("pnpoly_RTX_3090_T4.json.gz"));
  ASSERT_TRUE(space.ok()) << space.status();
  const RecordedLandscape l = DescribeLandscape(space->records);
  EXPECT_EQ(l.configurations, 4092);
  EXPECT_EQ(l.failed, 330);
  EXPECT_NEAR(*l.optimum_ms, 7.224, 5e-4);
  EXPECT_NEAR(*l.median_ms / *l.optimum_ms, 1.79, 5e-3);
  EXPECT_NEAR(*l.random_draws_to_cutoff, 179, 0.5);
}

}  // namespace
}  // namespace ktune
