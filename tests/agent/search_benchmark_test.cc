// The benchmark's metrics on hand-made traces whose answers can be counted by eye.
#include "bench/search_benchmark.h"

#include <gtest/gtest.h>

#include <cmath>

namespace ktune {
namespace {

std::vector<Observation> Trace(std::vector<double> times) {
  std::vector<Observation> t;
  for (double x : times) t.push_back({{}, x > 0, x > 0 ? x : 0});  // x <= 0: failed
  return t;
}

TEST(SearchMetricsTest, BestOverOptimumLooksOnlyAtTheFirstEvaluations) {
  auto t = Trace({4, -1, 2, 1.04, 1.0});
  EXPECT_DOUBLE_EQ(BestOverOptimumAt(t, 1.0, 1), 4.0);
  EXPECT_DOUBLE_EQ(BestOverOptimumAt(t, 1.0, 2), 4.0);  // the failure does not count as fast
  EXPECT_DOUBLE_EQ(BestOverOptimumAt(t, 1.0, 3), 2.0);
  EXPECT_DOUBLE_EQ(BestOverOptimumAt(t, 1.0, 400), 1.0);
  EXPECT_TRUE(std::isinf(BestOverOptimumAt(Trace({-1, -1}), 1.0, 2)));
}

TEST(SearchMetricsTest, EvalsToWithinCountsFromOneAndUsesNever) {
  auto t = Trace({4, -1, 2, 1.04, 1.0});
  EXPECT_EQ(EvalsToWithin(t, 1.0, 0.05, 4000), 4);
  EXPECT_EQ(EvalsToWithin(t, 1.0, 0.02, 4000), 5);
  EXPECT_EQ(EvalsToWithin(Trace({3, 2}), 1.0, 0.05, 4000), 4000);
}

TEST(SearchMetricsTest, MedianOfEvenAndOddCounts) {
  EXPECT_DOUBLE_EQ(Median({3, 1, 2}), 2);
  EXPECT_DOUBLE_EQ(Median({4, 1, 2, 3}), 2.5);
}

TEST(SearchBenchmarkTest, RowsHaveExactlyTheSpecifiedKeys) {
  SearchBenchRow row;
  row.space = "s";
  row.strategy = "random";
  row.budget = 400;
  row.seeds = 10;
  for (int64_t b : {25, 50, 100, 200, 400}) row.best_over_opt.push_back({b, 1.5});
  EXPECT_EQ(SearchBenchRowJson(row),
            R"({"space":"s","strategy":"random","budget":400,"seeds":10,"best/opt@25":1.5,)"
            R"("best/opt@50":1.5,"best/opt@100":1.5,"best/opt@200":1.5,"best/opt@400":1.5,)"
            R"("evals_to_5pct":0.0,"reached_5pct":0.0,"evals_to_2pct":0.0,"reached_2pct":0.0})");
}

}  // namespace
}  // namespace ktune
