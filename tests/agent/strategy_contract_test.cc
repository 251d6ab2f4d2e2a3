// One contract test runs every strategy (as TVM MetaSchedule's and Kernel Tuner's do): each is
// driven through the lifecycle on a small constrained space and on a recorded space replayed
// with its failures, and must respect the budget, batch sizes, validity, no-repeat and seeding
// rules of agent/search_strategy.h.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <set>

#include "absl/time/clock.h"
#include "agent/search_strategy.h"
#include "agent/tuning_loop.h"
#include "db/interchange/record_files.h"
#include "measurer/fault_injecting_measurer.h"
#include "measurer/replay_measurer.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

std::vector<ParamValue> Range(int64_t n) {
  std::vector<ParamValue> v;
  for (int64_t i = 1; i <= n; ++i) v.emplace_back(std::in_place_type<int64_t>, i);
  return v;
}

// A synthetic landscape with one optimum and failures: time = distance to (6, 3, 5) + 1;
// configurations with a + b == 9 fail.
class SyntheticMeasurer : public Measurer {
 public:
  DeviceInfo device() const override { return DeviceInfo::FromName("synthetic"); }
  absl::StatusOr<std::vector<MeasureResult>> Measure(
      const TaskKey&, const std::vector<Configuration>& configs) override {
    std::vector<MeasureResult> out;
    for (const Configuration& c : configs) {
      int64_t a = std::get<int64_t>(c.at("a")), b = std::get<int64_t>(c.at("b")),
              d = std::get<int64_t>(c.at("d"));
      MeasureResult r;
      if (a + b == 9) {
        r.status = MeasurementStatus::kRuntimeError;
        r.message = "synthetic crash";
      } else {
        r.time_ms = 1.0 + std::abs(a - 6) + std::abs(b - 3) + 0.5 * std::abs(d - 5);
      }
      out.push_back(r);
    }
    return out;
  }
};

SearchSpace SmallSpace() {
  return *SearchSpace::Create({{"a", Range(8)}, {"b", Range(8)}, {"d", Range(6)}},
                              {"a * b <= 40", "d != 2"});
}

class StrategyContractTest : public ::testing::TestWithParam<std::string> {};

// Drives `name` by hand over SmallSpace with `budget` in batches of `batch_size` (setting
// `allowance`, if any, before each proposal), checking that every proposal is valid and new;
// returns the batch sizes.
std::vector<size_t> RunByHand(const std::string& name, uint64_t seed, int64_t budget,
                              int batch_size, std::optional<double> allowance = std::nullopt) {
  SearchSpace space = SmallSpace();
  auto strategy = MakeStrategy(name);
  EXPECT_TRUE(strategy.ok());
  if (!strategy.ok()) return {};
  EXPECT_TRUE((*strategy)->Initialize(space, seed).ok());
  EXPECT_TRUE((*strategy)->PreTuning(budget, batch_size).ok());
  SyntheticMeasurer measurer;
  std::vector<size_t> sizes;
  std::set<Point> seen;
  while (true) {
    if (allowance) (*strategy)->SetTimeAllowance(*allowance);
    auto batch = (*strategy)->ProposeBatch();
    EXPECT_TRUE(batch.ok()) << batch.status();
    if (!batch.ok() || batch->empty()) break;
    sizes.push_back(batch->size());
    std::vector<Configuration> configs;
    for (const Point& p : *batch) {
      EXPECT_TRUE(space.IsValid(p)) << name;
      EXPECT_TRUE(seen.insert(p).second) << name << ": proposed twice";
      configs.push_back(space.ToConfiguration(p));
    }
    auto results = *measurer.Measure({}, configs);
    std::vector<Observation> obs;
    for (size_t i = 0; i < batch->size(); ++i) {
      obs.push_back({(*batch)[i], results[i].time_ms.has_value(), results[i].time_ms.value_or(0)});
    }
    EXPECT_TRUE((*strategy)->NotifyResults(obs).ok());
  }
  return sizes;
}

TEST_P(StrategyContractTest, BatchesAddUpToTheBudgetExactly) {
  EXPECT_EQ(RunByHand(GetParam(), 7, 20, 7), (std::vector<size_t>{7, 7, 6})) << GetParam();
}

TEST_P(StrategyContractTest, SameSeedSameProposalsAndFailuresAreSurvived) {
  SearchSpace space = SmallSpace();
  SyntheticMeasurer measurer;
  std::vector<std::vector<Observation>> traces;
  for (uint64_t seed : {11, 11, 12}) {
    auto strategy = MakeStrategy(GetParam());
    ASSERT_TRUE(strategy.ok());
    auto outcome = RunTuningLoop(**strategy, space, measurer, {}, {120, 8, seed});
    ASSERT_TRUE(outcome.ok()) << outcome.status();
    ASSERT_EQ(outcome->trace.size(), 120u);
    traces.push_back(outcome->trace);
  }
  auto points = [](const std::vector<Observation>& t) {
    std::vector<Point> p;
    for (const Observation& o : t) p.push_back(o.point);
    return p;
  };
  EXPECT_EQ(points(traces[0]), points(traces[1])) << GetParam();
  EXPECT_NE(points(traces[0]), points(traces[2])) << GetParam();
  EXPECT_TRUE(std::any_of(traces[0].begin(), traces[0].end(), [](const Observation& o) {
    return !o.ok;
  })) << "the synthetic space should have produced failures";
}

TEST_P(StrategyContractTest, ABudgetLargerThanTheSpaceMeasuresEachPointOnce) {
  SyntheticMeasurer measurer;
  auto strategy = MakeStrategy(GetParam());
  ASSERT_TRUE(strategy.ok());
  SearchSpace with_d =
      *SearchSpace::Create({{"a", Range(5)}, {"b", Range(4)}, {"d", {int64_t{5}}}}, {"a != b"});
  auto outcome = RunTuningLoop(**strategy, with_d, measurer, {}, {1000, 6, 3});
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(static_cast<int64_t>(outcome->trace.size()), with_d.size());
  std::set<Point> distinct;
  for (const Observation& o : outcome->trace) distinct.insert(o.point);
  EXPECT_EQ(static_cast<int64_t>(distinct.size()), with_d.size());
}

TEST_P(StrategyContractTest, PriorResultsAreNeverProposedAndDoNotSpendTheBudget) {
  SearchSpace space = SmallSpace();
  SyntheticMeasurer measurer;
  TuningOptions options{30, 8, 4};
  for (int64_t i = 0; i < space.size(); i += 3) {  // a third of the space is already known
    Point p = space.PointAt(i);
    auto r = *measurer.Measure({}, {space.ToConfiguration(p)});
    options.prior.push_back({p, r[0].time_ms.has_value(), r[0].time_ms.value_or(0)});
  }
  auto strategy = MakeStrategy(GetParam());
  ASSERT_TRUE(strategy.ok());
  auto outcome = RunTuningLoop(**strategy, space, measurer, {}, options);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->trace.size(), 30u);
  std::set<Point> known;
  for (const Observation& o : options.prior) known.insert(o.point);
  for (const Observation& o : outcome->trace) EXPECT_FALSE(known.count(o.point)) << GetParam();

  // When the prior results cover the space, there is nothing left to propose.
  std::vector<Observation> all;
  for (int64_t i = 0; i < space.size(); ++i) all.push_back({space.PointAt(i), false, 0});
  auto full = MakeStrategy(GetParam());
  auto done = RunTuningLoop(**full, space, measurer, {}, {10, 4, 1, all});
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_TRUE(done->trace.empty());
}

TEST_P(StrategyContractTest, RunsOnARecordedSpaceWithFailures) {
  auto recorded = LoadRecordedSpace(testing::SpaceFile("pnpoly_RTX_3090_T4.json.gz"));
  ASSERT_TRUE(recorded.ok());
  ReplayMeasurer measurer(recorded->records);
  auto strategy = MakeStrategy(GetParam());
  ASSERT_TRUE(strategy.ok());
  auto outcome = RunTuningLoop(**strategy, recorded->space, measurer, {}, {100, 10, 5});
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->trace.size(), 100u);
  EXPECT_EQ(measurer.measurements(), 100);
}

TEST_P(StrategyContractTest, EveryFailureKindIsSurvivedAndABrokenMeasurerEndsTheRun) {
  auto recorded = LoadRecordedSpace(testing::SpaceFile("pnpoly_RTX_3090_T4.json.gz"));
  ASSERT_TRUE(recorded.ok());
  ReplayMeasurer replay(recorded->records);
  const MeasurementStatus kinds[] = {MeasurementStatus::kCompileError,
                                     MeasurementStatus::kRuntimeError, MeasurementStatus::kTimeout,
                                     MeasurementStatus::kWrongResult,
                                     MeasurementStatus::kInvalidConfig};
  int64_t seen = 0;
  FaultInjectingMeasurer faulty(&replay, [&](const Configuration&) -> std::optional<MeasureResult> {
    const int64_t k = seen++;
    if (k % 3 != 0) return std::nullopt;  // every third candidate fails, each kind in turn
    return FaultInjectingMeasurer::Failure(kinds[(k / 3) % 5], "injected");
  });
  auto strategy = MakeStrategy(GetParam());
  ASSERT_TRUE(strategy.ok());
  auto outcome = RunTuningLoop(**strategy, recorded->space, faulty, {}, {60, 6, 3});
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  ASSERT_EQ(outcome->trace.size(), 60u);
  int failed = 0;
  for (const Observation& o : outcome->trace) failed += !o.ok;
  EXPECT_GE(failed, 20);  // the injected ones, plus any the recording itself holds

  faulty.FailNextCalls(1, absl::UnavailableError("worker lost"));
  auto again = MakeStrategy(GetParam());
  auto broken = RunTuningLoop(**again, recorded->space, faulty, {}, {60, 6, 3});
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kUnavailable);
}

TEST_P(StrategyContractTest, MisuseIsAnError) {
  SearchSpace space = SmallSpace();
  auto strategy = MakeStrategy(GetParam());
  ASSERT_TRUE(strategy.ok());
  EXPECT_FALSE((*strategy)->ProposeBatch().ok());  // before Initialize/PreTuning
  ASSERT_TRUE((*strategy)->Initialize(space, 1).ok());
  EXPECT_EQ((*strategy)->PreTuning(0, 4).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE((*strategy)->PreTuning(10, 4).ok());
  auto batch = (*strategy)->ProposeBatch();
  ASSERT_TRUE(batch.ok());
  EXPECT_FALSE((*strategy)->ProposeBatch().ok());  // results of the last batch first
  EXPECT_EQ((*strategy)->NotifyResults({}).code(), absl::StatusCode::kInvalidArgument);
}

// Every strategy, and PPO's ablation variants (the benchmark runs them like any strategy).
std::vector<std::string> AllStrategyNames() {
  std::vector<std::string> names = StrategyNames();
  for (const std::string& n : AblationStrategyNames()) names.push_back(n);
  return names;
}

INSTANTIATE_TEST_SUITE_P(AllStrategies, StrategyContractTest,
                         ::testing::ValuesIn(AllStrategyNames()), [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST_P(StrategyContractTest, NoTimeAllowanceStillMeansAnExactRepeatFreeRun) {
  // A driver that has spent the agent's share of the time (a negative allowance) gets cheaper
  // proposals, never fewer or repeated ones.
  std::vector<size_t> sizes = RunByHand(GetParam(), 5, 60, 8, /*allowance=*/-1.0);
  EXPECT_EQ(std::accumulate(sizes.begin(), sizes.end(), size_t{0}), 60u) << GetParam();
}

// Records the allowance the loop gives before each proposal.
class AllowanceRecorder : public SearchStrategy {
 public:
  absl::Status Initialize(const SearchSpace& space, uint64_t) override {
    space_ = &space;
    return absl::OkStatus();
  }
  absl::Status AddPriorResults(const std::vector<Observation>&) override {
    return absl::OkStatus();
  }
  absl::Status PreTuning(int64_t, int) override { return absl::OkStatus(); }
  absl::StatusOr<std::vector<Point>> ProposeBatch() override {
    if (next_ >= 3) return std::vector<Point>();
    return std::vector<Point>{space_->PointAt(next_++)};
  }
  absl::Status NotifyResults(const std::vector<Observation>&) override { return absl::OkStatus(); }
  std::string name() const override { return "recorder"; }
  void SetTimeAllowance(double ms) override { allowances.push_back(ms); }
  std::vector<double> allowances;

 private:
  const SearchSpace* space_ = nullptr;
  int64_t next_ = 0;
};

// Each measurement takes 20 ms of a clock that only the measurer advances (the strategy's
// calls take none of it): a wall clock made the test a timing one, failing on a loaded machine.
class SleepyMeasurer : public SyntheticMeasurer {
 public:
  absl::StatusOr<std::vector<MeasureResult>> Measure(
      const TaskKey& task, const std::vector<Configuration>& configs) override {
    clock += absl::Milliseconds(20 * configs.size());
    return SyntheticMeasurer::Measure(task, configs);
  }
  absl::Time clock = absl::UnixEpoch();
};

TEST(TuningLoopTest, TheAgentsAllowanceIsItsShareOfTheMeasurementTime) {
  SearchSpace space = SmallSpace();
  SleepyMeasurer measurer;
  TuningOptions options{3, 1, 1};
  options.now = [&measurer] { return measurer.clock; };
  AllowanceRecorder unlimited;
  ASSERT_TRUE(RunTuningLoop(unlimited, space, measurer, {}, options).ok());
  ASSERT_EQ(unlimited.allowances.size(), 4u);  // 3 batches and the empty one
  for (double a : unlimited.allowances) EXPECT_TRUE(std::isinf(a) && a > 0);

  AllowanceRecorder limited;
  options.max_agent_share = 0.5;
  ASSERT_TRUE(RunTuningLoop(limited, space, measurer, {}, options).ok());
  // Half of 0, 20, 40 and 60 ms of measuring: nothing measured before the first batch.
  EXPECT_THAT(limited.allowances, ::testing::ElementsAre(0, 10, 20, 30));
}

TEST(StrategyRegistryTest, UnknownNamesAreRefusedWithTheList) {
  auto s = MakeStrategy("hillclimb");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), ::testing::HasSubstr("random"));
}

}  // namespace
}  // namespace ktune
