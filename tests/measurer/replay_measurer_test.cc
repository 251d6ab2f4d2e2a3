#include "measurer/replay_measurer.h"

#include <gtest/gtest.h>

#include "common/median.h"

namespace ktune {
namespace {

Record Recorded(int64_t x, std::optional<double> objective, std::vector<double> runtimes) {
  Record r;
  r.kernel = "pnpoly";
  r.device = DeviceInfo::FromName("RTX_3090");
  r.config = {{"x", x}};
  r.status = objective ? MeasurementStatus::kOk : MeasurementStatus::kRuntimeError;
  r.time_ms = objective;
  r.repeat_times_ms = std::move(runtimes);
  return r;
}

// A server takes the median of a worker's repeats as the time: a replayed result's repeats must
// have the recorded objective as their median, even where the file's runtimes say otherwise.
TEST(ReplayMeasurerTest, RepeatsHaveTheRecordedObjectiveAsTheirMedian) {
  ReplayMeasurer m({Recorded(1, 7.2, {10.4, 10.5, 10.6, 10.5}), Recorded(2, 8.6, {8.7, 8.8, 8.6}),
                    Recorded(3, 5.0, {}), Recorded(4, std::nullopt, {})});
  auto results = m.Measure({}, {{{"x", int64_t{1}}}, {{"x", int64_t{2}}}, {{"x", int64_t{3}}},
                                {{"x", int64_t{4}}}, {{"x", int64_t{5}}}});
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 5u);
  EXPECT_DOUBLE_EQ(*(*results)[0].time_ms, 7.2);
  EXPECT_DOUBLE_EQ(Median((*results)[0].repeat_times_ms), 7.2);
  EXPECT_EQ((*results)[0].repeat_times_ms.size(), 4u);
  // The spread of the runtimes is kept: the slowest over the fastest is the same.
  EXPECT_NEAR((*results)[0].repeat_times_ms[2] / (*results)[0].repeat_times_ms[0], 10.6 / 10.4,
              1e-12);
  EXPECT_DOUBLE_EQ(Median((*results)[1].repeat_times_ms), 8.6);
  // No runtimes recorded: the objective is the one repeat.
  EXPECT_EQ((*results)[2].repeat_times_ms, std::vector<double>{5.0});
  EXPECT_EQ((*results)[3].status, MeasurementStatus::kRuntimeError);
  EXPECT_EQ((*results)[4].status, MeasurementStatus::kInvalidConfig);
  EXPECT_DOUBLE_EQ(m.optimum_ms(), 5.0);
}

// The drift benchmark's yardsticks: a regression slows the configurations holding its values;
// the new optimum is over the whole file, the earlier best only over what was measured before.
TEST(ReplayMeasurerTest, ARegressionSlowsItsRegionAndMovesTheOptimum) {
  ReplayMeasurer m({Recorded(1, 1.0, {}), Recorded(2, 1.5, {}), Recorded(3, 1.2, {}),
                    Recorded(4, 3.0, {})});
  auto config = [](int64_t x) { return Configuration{{"x", x}}; };
  ASSERT_TRUE(m.Measure({}, {config(1), config(2)}).ok());
  m.set_regression({m.measurements(), 2.0, config(1)});
  EXPECT_DOUBLE_EQ(m.RegressedOptimumMs(), 1.2);     // x=3, never measured
  EXPECT_DOUBLE_EQ(m.RegressedBestOfEarlierMs(), 1.5);  // x=1 is now 2.0; x=2 stays 1.5
  auto after = m.Measure({}, {config(1), config(3)});
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_DOUBLE_EQ(*(*after)[0].time_ms, 2.0);
  EXPECT_DOUBLE_EQ(*(*after)[1].time_ms, 1.2);
  // What is measured after the regression began is not "earlier".
  EXPECT_DOUBLE_EQ(m.RegressedBestOfEarlierMs(), 1.5);
}

}  // namespace
}  // namespace ktune
