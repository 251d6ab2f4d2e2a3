// The benchmark's metrics on hand-made traces whose answers can be counted by eye.
#include "bench/search_benchmark.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "tests/testing/test_util.h"

namespace ktune {
namespace {

// A LibTorch build has PPO (tests/CMakeLists.txt defines KTUNE_WITH_TORCH).
constexpr bool kWithTorch = KTUNE_WITH_TORCH;

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

// Each row keeps every run's count, in run-seed order: the median of them is the row's, and a
// benchmark of fewer seeds holds the same first runs (what pairs two strategies' runs by position);
// one that starts at a later seed (first_seed) holds the same later runs (a second set joins the
// first).
TEST(SearchBenchmarkTest, RowsKeepEachRunsCountInSeedOrderFromTheFirstSeed) {
  SearchBenchOptions options;
  options.spaces = {testing::SpaceFile("pnpoly_RTX_2080_Ti_kernel_tuner_cache.json.gz")};
  options.strategies = {"random", "anneal"};
  options.budget = 40;
  auto run = [&](int seeds) {
    options.seeds = seeds;
    std::vector<SearchBenchRow> rows;
    absl::Status st = RunSearchBenchmark(
        options, [&](const SearchBenchRow& r) { rows.push_back(r); }, nullptr);
    EXPECT_TRUE(st.ok()) << st;
    return rows;
  };
  const std::vector<SearchBenchRow> three = run(3), one = run(1);
  options.first_seed = 2;  // the second and third runs alone
  const std::vector<SearchBenchRow> later = run(2);
  ASSERT_EQ(later.size(), 2u);
  ASSERT_EQ(three.size(), 2u);
  ASSERT_EQ(one.size(), 2u);
  for (size_t i = 0; i < three.size(); ++i) {
    const std::vector<double>& runs = three[i].evals_to_5pct_runs;
    ASSERT_EQ(runs.size(), 3u) << three[i].strategy;
    EXPECT_DOUBLE_EQ(Median(runs), three[i].evals_to_5pct) << three[i].strategy;
    for (double e : runs) {
      EXPECT_TRUE((e >= 1 && e <= 40) || e == 400) << three[i].strategy << " " << e;
    }
    ASSERT_EQ(one[i].evals_to_5pct_runs.size(), 1u);
    EXPECT_DOUBLE_EQ(one[i].evals_to_5pct_runs[0], runs[0]) << three[i].strategy;
    EXPECT_EQ(later[i].evals_to_5pct_runs, std::vector<double>(runs.begin() + 1, runs.end()))
        << three[i].strategy;
  }
}

SearchBenchRow Row(const std::string& space, const std::string& strategy, double evals) {
  SearchBenchRow r;
  r.space = space;
  r.strategy = strategy;
  r.evals_to_5pct = evals;
  return r;
}

TEST(SearchBenchmarkTest, TheSummaryComparesPpoWithTheBestOtherStrategy) {
  // Medians: ppo 20, random 100, model 30, ppo-untrained 10 (a PPO variant: never "other").
  std::vector<SearchBenchRow> rows = {
      Row("a", "ppo", 10),           Row("a", "random", 100),       Row("a", "model", 20),
      Row("a", "ppo-untrained", 10), Row("b", "ppo", 20),           Row("b", "random", 90),
      Row("b", "model", 30),         Row("b", "ppo-untrained", 10), Row("c", "ppo", 50),
      Row("c", "random", 100),       Row("c", "model", 40),         Row("c", "ppo-untrained", 10)};
  SearchBenchSummary s = SummariseSearchBench(rows, "ppo");
  ASSERT_EQ(s.median_evals_to_5pct.size(), 4u);
  EXPECT_EQ(s.median_evals_to_5pct[0].first, "ppo");
  EXPECT_DOUBLE_EQ(s.median_evals_to_5pct[0].second, 20);
  EXPECT_EQ(s.best_other, "model");
  EXPECT_DOUBLE_EQ(s.ratio, 20.0 / 30.0);
  EXPECT_EQ(s.spaces, 3);
  EXPECT_EQ(s.at_or_below, 2);  // a and b; not c (50 > 40)
  EXPECT_DOUBLE_EQ(s.space_ratio_median, 20.0 / 30.0);  // of 10/20, 20/30, 50/40

  // The per-space ratio is not the ratio of medians: 10/100, 20/25, 30/30 have the median 0.8,
  // the medians 20 and 30 the ratio 0.67.
  SearchBenchSummary apart = SummariseSearchBench(
      {Row("a", "ppo", 10), Row("a", "model", 100), Row("b", "ppo", 20), Row("b", "model", 25),
       Row("c", "ppo", 30), Row("c", "model", 30)},
      "ppo");
  EXPECT_DOUBLE_EQ(apart.ratio, 20.0 / 30.0);
  EXPECT_DOUBLE_EQ(apart.space_ratio_median, 0.8);
  EXPECT_TRUE(std::isnan(apart.ratio_low));  // no runs: no interval
  EXPECT_EQ(apart.at_or_below_low, -1);
}

SearchBenchRow RowOfRuns(const std::string& space, const std::string& strategy,
                         std::vector<double> runs) {
  SearchBenchRow r = Row(space, strategy, Median(runs));
  r.evals_to_5pct_runs = std::move(runs);
  return r;
}

TEST(SearchBenchmarkTest, TheSummaryBoundsItsComparisonOverRunSeeds) {
  // Every run of ppo one evaluation faster than the same seed's run of model, runs that vary
  // tenfold: resampled jointly (the runs pair up by seed), ppo stays at or below model on every
  // space and its ratio below 1; the interval holds the observed ratio.
  const std::vector<double> model = {10, 200, 30, 400, 50, 600, 70, 15};
  std::vector<double> ppo;
  for (double m : model) ppo.push_back(m - 1);
  std::vector<SearchBenchRow> rows;
  for (const char* space : {"a", "b", "c"}) {
    rows.push_back(RowOfRuns(space, "ppo", ppo));
    rows.push_back(RowOfRuns(space, "model", model));
  }
  SearchBenchSummary s = SummariseSearchBench(rows, "ppo");
  EXPECT_EQ(s.best_other, "model");
  EXPECT_EQ(s.at_or_below_low, 3);
  EXPECT_EQ(s.at_or_below_high, 3);
  EXPECT_LE(s.ratio_low, s.ratio);
  EXPECT_GE(s.ratio_high, s.ratio);
  EXPECT_LT(s.ratio_high, 1.0);
  EXPECT_LT(s.ratio_low, s.ratio_high);  // the runs vary: so does the ratio

  // Equal runs: the interval is the point. Runs of unequal counts cannot pair: no interval.
  SearchBenchSummary flat = SummariseSearchBench(
      {RowOfRuns("a", "ppo", {10, 10, 10}), RowOfRuns("a", "model", {20, 20, 20})}, "ppo");
  EXPECT_DOUBLE_EQ(flat.ratio_low, 0.5);
  EXPECT_DOUBLE_EQ(flat.ratio_high, 0.5);
  SearchBenchSummary unpaired = SummariseSearchBench(
      {RowOfRuns("a", "ppo", {10, 10, 10}), RowOfRuns("a", "model", {20, 20})}, "ppo");
  EXPECT_TRUE(std::isnan(unpaired.ratio_low));
}

TEST(SearchBenchmarkTest, KernelFamiliesJoinAKernelsVariants) {
  EXPECT_EQ(KernelFamily("convolution6768"), "convolution");
  EXPECT_EQ(KernelFamily("MyKern"), "mykern") << "case ignored: MyKern and mykern are one";
  EXPECT_EQ(KernelFamily("convolution"), "convolution");
  EXPECT_EQ(KernelFamily("gemm"), "gemm");
  EXPECT_EQ(KernelFamily("42"), "42");
  EXPECT_TRUE(ParseSearchProtocol("leave-one-kernel-out").ok());
  EXPECT_EQ(ParseSearchProtocol("leave-one-out").status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Leave one kernel out on two small shared spaces of two kernels (convolution, pnpoly), with
// policies trained for two iterations of one short episode: quick, and every fold still trains.
SearchBenchOptions SmallLeaveOneKernelOut() {
  SearchBenchOptions options;
  options.protocol = SearchProtocol::kLeaveOneKernelOut;
  options.spaces = {testing::SpaceFile("convolution2442_MI50_kernel_tuner_cache.json.gz"),
                    testing::SpaceFile("pnpoly_RTX_2080_Ti_kernel_tuner_cache.json.gz")};
  options.budget = 40;
  options.training.iterations = 2;
  options.training.episodes_per_iteration = 1;
  options.training.budget = 40;
  return options;
}

// Leave one kernel out, end to end on two small shared spaces of two kernels: each is tuned once
// per strategy, after policies (two training seeds) were trained on the other one.
TEST(SearchBenchmarkTest, LeaveOneKernelOutTrainsAPolicyPerKernelAndTunesEverySpace) {
  if (!kWithTorch) GTEST_SKIP() << "built without LibTorch: no PPO";
  ASSERT_FALSE(AblationStrategyNames().empty());
  SearchBenchOptions options = SmallLeaveOneKernelOut();
  options.strategies = {"ppo", "ppo-untrained", "random"};
  options.seeds = 1;
  options.training_seeds = 2;
  std::vector<SearchBenchRow> rows;
  std::vector<std::string> lines;
  absl::Status st = RunSearchBenchmark(
      options, [&](const SearchBenchRow& r) { rows.push_back(r); },
      [&](const std::string& line) { lines.push_back(line); });
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_EQ(rows.size(), 6u);
  std::set<std::string> spaces;
  for (const SearchBenchRow& r : rows) {
    spaces.insert(r.space);
    EXPECT_LE(r.best_over_opt.front().second, 100) << r.space << " " << r.strategy;
    // Budget 40: best/opt@25 only (@50..@400 repeated the final best as if measured there).
    ASSERT_EQ(r.best_over_opt.size(), 1u);
    EXPECT_EQ(r.best_over_opt.front().first, 25);
    // One count per run, whose median is the row's.
    ASSERT_EQ(r.evals_to_5pct_runs.size(), 1u) << r.space << " " << r.strategy;
    EXPECT_DOUBLE_EQ(r.evals_to_5pct_runs[0], r.evals_to_5pct);
  }
  EXPECT_EQ(spaces.size(), 2u);
  int trainings = 0, second_seed = 0;
  for (const std::string& line : lines) {
    trainings += line.find("training a policy") != std::string::npos;
    second_seed += line.find("training a policy (seed 2)") != std::string::npos;
  }
  EXPECT_EQ(trainings, 4);  // two folds, two training seeds each
  EXPECT_EQ(second_seed, 2);

  options.spaces.pop_back();  // one kernel: nothing to train on
  EXPECT_EQ(RunSearchBenchmark(
                options, [](const SearchBenchRow&) {}, nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// A fold run apart gives the rows it gives in a full run (so folds can run in parallel), and a
// training-only space joins the training of every fold but its own kernel family's, and is
// never tuned.
TEST(SearchBenchmarkTest, FoldsRunApartAndTrainingOnlySpacesJoinOtherKernelsFolds) {
  if (!kWithTorch) GTEST_SKIP() << "built without LibTorch: no PPO";
  ASSERT_FALSE(AblationStrategyNames().empty());
  SearchBenchOptions options = SmallLeaveOneKernelOut();
  options.train_spaces = {
      testing::SpaceFile("convolution6768_RTX_Titan_kernel_tuner_cache.json.gz")};
  options.strategies = {"ppo"};
  options.seeds = 2;
  auto run = [&](std::vector<SearchBenchRow>* rows, std::vector<std::string>* lines) {
    return RunSearchBenchmark(
        options, [&](const SearchBenchRow& r) { rows->push_back(r); },
        [&](const std::string& line) { lines->push_back(line); });
  };
  std::vector<SearchBenchRow> all, apart;
  std::vector<std::string> all_lines, apart_lines;
  ASSERT_TRUE(run(&all, &all_lines).ok());
  ASSERT_EQ(all.size(), 2u);  // the training-only space is not tuned
  int convolution_fold = 0, pnpoly_fold = 0;
  for (const std::string& line : all_lines) {
    // The convolution fold trains on pnpoly alone; the pnpoly fold on both convolutions.
    convolution_fold += line.find("fold convolution: training a policy (seed 1) on the 1 spaces") !=
                        std::string::npos;
    pnpoly_fold +=
        line.find("fold pnpoly: training a policy (seed 1) on the 2 spaces") != std::string::npos;
  }
  EXPECT_EQ(convolution_fold, 1);
  EXPECT_EQ(pnpoly_fold, 1);

  options.folds = {"pnpoly"};
  ASSERT_TRUE(run(&apart, &apart_lines).ok());
  ASSERT_EQ(apart.size(), 1u);
  const SearchBenchRow& full = all[0].space == apart[0].space ? all[0] : all[1];
  EXPECT_EQ(apart[0].space, "pnpoly_RTX_2080_Ti_kernel_tuner_cache.json.gz");
  EXPECT_EQ(apart[0].evals_to_5pct_runs, full.evals_to_5pct_runs);
  EXPECT_EQ(apart[0].best_over_opt, full.best_over_opt);

  options.folds = {"gemm"};  // no such kernel among the spaces
  std::vector<SearchBenchRow> none;
  std::vector<std::string> none_lines;
  EXPECT_EQ(run(&none, &none_lines).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(none.empty());
}

// One kernel's spaces with a --train-space of another are a leave-one-kernel-out run (refused as
// one kernel); a transfer source of another kernel is refused (it was skipped without a word);
// two spaces of one kernel under two names are said to be alike.
TEST(SearchBenchmarkTest, WhatLeaveOneKernelOutAndTransferAreGivenIsChecked) {
  SearchBenchOptions options = SmallLeaveOneKernelOut();
  options.spaces = {testing::SpaceFile("pnpoly_RTX_2080_Ti_kernel_tuner_cache.json.gz")};
  absl::StatusOr<SearchBenchSpaces> one = LoadSearchBenchSpaces(options);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(CheckSearchBenchOptions(options, *one).code(), absl::StatusCode::kInvalidArgument);
  options.train_spaces = {testing::SpaceFile("convolution2442_MI50_kernel_tuner_cache.json.gz")};
  absl::StatusOr<SearchBenchSpaces> trained = LoadSearchBenchSpaces(options);
  ASSERT_TRUE(trained.ok()) << trained.status();
  EXPECT_TRUE(CheckSearchBenchOptions(options, *trained).ok());
  options.folds = {"PNPOLY"};
  EXPECT_TRUE(CheckSearchBenchOptions(options, *trained).ok()) << "a fold's case is ignored";

  SearchBenchOptions transfer;
  transfer.spaces = options.spaces;
  transfer.transfer_from = options.train_spaces;
  absl::StatusOr<SearchBenchSpaces> other = LoadSearchBenchSpaces(transfer);
  ASSERT_TRUE(other.ok()) << other.status();
  absl::Status refused = CheckSearchBenchOptions(transfer, *other);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("none of the tuned spaces' kernels (pnpoly)"), std::string::npos)
      << refused;

  // The same file under another kernel's name: a fold would train on its own kernel.
  testing::TempDir dir;
  const std::string renamed = dir.File("other_RTX_2080_Ti_kernel_tuner_cache.json.gz");
  std::filesystem::copy_file(testing::SpaceFile("pnpoly_RTX_2080_Ti_kernel_tuner_cache.json.gz"),
                             renamed);
  options.train_spaces.push_back(renamed);
  options.folds.clear();
  absl::StatusOr<SearchBenchSpaces> alike = LoadSearchBenchSpaces(options);
  ASSERT_TRUE(alike.ok()) << alike.status();
  const std::vector<std::string> warnings = LeaveOneKernelOutWarnings(options, *alike);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("(kernel pnpoly) and other_RTX_2080_Ti_kernel_tuner_cache.json.gz "
                             "(kernel other) have the same parameters"),
            std::string::npos)
      << warnings[0];
  EXPECT_TRUE(LeaveOneKernelOutWarnings(options, *trained).empty());
}

}  // namespace
}  // namespace ktune
