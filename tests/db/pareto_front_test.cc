// The time/error trade-off of a task's records (db/pareto_front.h): which configurations are on
// the front, how repeated records of one configuration combine, and what is left out.
#include "db/pareto_front.h"

#include <gtest/gtest.h>

namespace ktune {
namespace {

Record Measured(int64_t id, double time_ms, std::optional<double> error,
                MeasurementStatus status = MeasurementStatus::kOk) {
  Record r;
  r.kernel = "gemm_lowp";
  r.config = {{"id", id}};
  r.status = status;
  r.repeat_times_ms = {time_ms};
  FillRepeatStatistics(r);
  if (status == MeasurementStatus::kOk) r.time_ms = time_ms;
  r.max_rel_error = error;
  return r;
}

std::vector<int64_t> Ids(const std::vector<TradeOff>& t) {
  std::vector<int64_t> ids;
  for (const TradeOff& x : t) ids.push_back(std::get<int64_t>(x.config.at("id")));
  return ids;
}

TEST(ParetoFrontTest, TheFrontKeepsEachConfigurationMoreAccurateThanEveryFasterOne) {
  const std::vector<Record> records = {
      Measured(1, 1.0, 3e-2, MeasurementStatus::kTooInaccurate),  // fastest, never served
      Measured(2, 1.5, 4e-2),  // slower and worse than 1, but 1 is not served: on the front
      Measured(3, 2.0, 1e-3),
      Measured(4, 2.0, 5e-3),  // as fast as 3, less accurate: dominated
      Measured(5, 4.0, 1e-7),
      Measured(6, 9.0, 1e-7),          // slower, no more accurate: dominated
      Measured(7, 0.5, std::nullopt),  // error unknown: left out
      Measured(8, 0.1, 0.0, MeasurementStatus::kRuntimeError),  // failed: left out
  };
  const std::vector<TradeOff> all = TimeErrorTradeOffs(records);
  EXPECT_EQ(Ids(all), (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  // The front is what `best` serves: a configuration measured only as too_inaccurate is neither
  // on it nor hides what it is faster than (it hid 2, which `best` serves for budgets >= 4e-2).
  EXPECT_EQ(Ids(ParetoFront(all)), (std::vector<int64_t>{2, 3, 5}));
  EXPECT_FALSE(all[0].served);
  EXPECT_TRUE(all[1].served);
  EXPECT_EQ(Ids({*FastestWithin(all, 1.0)}), (std::vector<int64_t>{2}));
  EXPECT_EQ(Ids({*FastestWithin(all, 1e-2)}), (std::vector<int64_t>{3}));
  EXPECT_EQ(Ids({*FastestWithin(all, 1e-3)}), (std::vector<int64_t>{3})) << "inclusive";
  EXPECT_EQ(Ids({*FastestWithin(all, 1e-4)}), (std::vector<int64_t>{5}));
  EXPECT_FALSE(FastestWithin(all, 1e-8).has_value());
}

TEST(ParetoFrontTest, RecordsOfOneConfigurationCombineItsFastestTimeAndLargestError) {
  const std::vector<TradeOff> all = TimeErrorTradeOffs(
      {Measured(1, 3.0, 1e-4), Measured(1, 2.0, 3e-4), Measured(2, 2.5, 2e-4)});
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(Ids(all), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(all[0].time_ms, 2.0);
  EXPECT_EQ(all[0].max_rel_error, 3e-4);
  EXPECT_EQ(all[0].measurements, 2);
  EXPECT_TRUE(all[1].on_front) << "slower but more accurate than the combined 3e-4";
  EXPECT_TRUE(TimeErrorTradeOffs({Measured(1, 1.0, std::nullopt)}).empty());
}

// A configuration with an ok record and a faster too_inaccurate one (refused by a tighter budget)
// sits where `best` serves it: at the ok record's time and error. The refused time put it on the
// front ahead of what `best --max-rel-error` answered (a user trial: 0.0387 ms shown, 0.0446 ms
// served, and the fp32 configuration at 0.0399 ms answered).
TEST(ParetoFrontTest, AServedConfigurationSitsAtItsOkRecordsNotItsRefusedOnes) {
  const std::vector<TradeOff> all =
      TimeErrorTradeOffs({Measured(1, 0.0387, 8.73e-3, MeasurementStatus::kTooInaccurate),
                          Measured(1, 0.0446, 8.73e-3), Measured(2, 0.0399, 5e-7)});
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(Ids(all), (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(all[1].time_ms, 0.0446);
  EXPECT_EQ(all[1].measurements, 2);
  EXPECT_TRUE(all[1].served);
  EXPECT_EQ(Ids(ParetoFront(all)), (std::vector<int64_t>{2}));
  EXPECT_EQ(Ids({*FastestWithin(all, 1e-2)}), (std::vector<int64_t>{2}));
}

}  // namespace
}  // namespace ktune
