// PPO the CleanRL way: GAE checked against numbers worked out by hand, and seeded runs that must
// learn a landscape (beat random search clearly) and be reproducible.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "absl/time/clock.h"
#include "agent/gae.h"
#include "agent/ppo_strategy.h"
#include "agent/tuning_loop.h"

namespace ktune {
namespace {

TEST(GaeTest, MatchesHandComputedValues) {
  // One env, three steps, gamma 0.5, lambda 0.5.
  // deltas: t2: 1 - 0.5 = 0.5 (terminal: no next value)
  //         t1: 0 + 0.5 * 0.5 - 1 = -0.75
  //         t0: 2 + 0.5 * 1 - 0 = 2.5
  // advantages: a2 = 0.5; a1 = -0.75 + 0.25 * 0.5 = -0.625; a0 = 2.5 + 0.25 * -0.625 = 2.34375
  GaeResult g = ComputeGae({2, 0, 1}, {0, 1, 0.5}, 3, 1, 0.5, 0.5);
  EXPECT_FLOAT_EQ(g.advantages[2], 0.5f);
  EXPECT_FLOAT_EQ(g.advantages[1], -0.625f);
  EXPECT_FLOAT_EQ(g.advantages[0], 2.34375f);
  EXPECT_FLOAT_EQ(g.returns[0], 2.34375f);
  EXPECT_FLOAT_EQ(g.returns[1], 0.375f);
  EXPECT_FLOAT_EQ(g.returns[2], 1.0f);
}

TEST(GaeTest, EnvsAreIndependentAndInterleaved) {
  // Two envs, two steps, layout [t * envs + e]; gamma = lambda = 1: advantage = sum of future
  // rewards minus the current value.
  GaeResult g = ComputeGae({1, 10, 2, 20}, {0, 0, 0, 0}, 2, 2, 1.0, 1.0);
  EXPECT_FLOAT_EQ(g.advantages[0], 3);   // env 0: 1 + 2
  EXPECT_FLOAT_EQ(g.advantages[1], 30);  // env 1: 10 + 20
  EXPECT_FLOAT_EQ(g.advantages[2], 2);
  EXPECT_FLOAT_EQ(g.advantages[3], 20);
}

// A smooth bowl with its optimum inside a constrained space: time = 1 + sum (x_k - c_k)^2 / 8.
class BowlMeasurer : public Measurer {
 public:
  DeviceInfo device() const override { return DeviceInfo::FromName("bowl"); }
  absl::StatusOr<std::vector<MeasureResult>> Measure(
      const TaskKey&, const std::vector<Configuration>& configs) override {
    std::vector<MeasureResult> out;
    const int64_t centre[] = {13, 4, 9, 2};
    for (const Configuration& c : configs) {
      double t = 1;
      int k = 0;
      for (const auto& [name, v] : c) {
        double d = static_cast<double>(std::get<int64_t>(v) - centre[k++]);
        t += d * d / 8;
      }
      MeasureResult r;
      r.time_ms = t;
      out.push_back(r);
    }
    return out;
  }
};

SearchSpace Bowl() {
  auto values = [](int n) {
    std::vector<ParamValue> v;
    for (int64_t i = 0; i < n; ++i) v.emplace_back(std::in_place_type<int64_t>, i);
    return v;
  };
  return *SearchSpace::Create(
      {{"a", values(16)}, {"b", values(8)}, {"c", values(12)}, {"d", values(6)}}, {"a + b < 20"});
}

// Every point of `space` measured, times scaled by `slowdown`: a recorded source device.
std::vector<double> Recording(const SearchSpace& space, Measurer& measurer, double slowdown) {
  std::vector<double> times;
  for (int64_t i = 0; i < space.size(); ++i) {
    auto r = measurer.Measure({}, {space.ToConfiguration(space.PointAt(i))});
    times.push_back(slowdown * *(*r)[0].time_ms);
  }
  return times;
}

int64_t EvalsToOptimum(const std::vector<Observation>& trace) {
  for (size_t i = 0; i < trace.size(); ++i) {
    if (trace[i].ok && trace[i].time_ms <= 1.0) return static_cast<int64_t>(i + 1);
  }
  return 1000;
}

TEST(PpoStrategyTest, LearnsTheLandscapeFasterThanRandomSearch) {
  SearchSpace space = Bowl();
  BowlMeasurer measurer;
  std::vector<double> ppo, random;
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    PpoStrategy p;
    auto a = RunTuningLoop(p, space, measurer, {}, {150, 8, seed});
    ASSERT_TRUE(a.ok()) << a.status();
    ppo.push_back(static_cast<double>(EvalsToOptimum(a->trace)));
    auto r = MakeStrategy("random");
    auto b = RunTuningLoop(**r, space, measurer, {}, {150, 8, seed});
    ASSERT_TRUE(b.ok());
    random.push_back(static_cast<double>(EvalsToOptimum(b->trace)));
    auto metrics = p.LastMetrics();
    ASSERT_FALSE(metrics.empty());
    for (const auto& [name, value] : metrics) EXPECT_TRUE(std::isfinite(value)) << name;
  }
  std::sort(ppo.begin(), ppo.end());
  std::sort(random.begin(), random.end());
  // The space has 8,784 points: random search expects ~4,400 evaluations to hit the optimum.
  EXPECT_LE(ppo[1], 100) << "median evaluations to the optimum";
  EXPECT_LT(ppo[1] * 3, random[1]);
}

// A measurer whose measurements take `ms` each (it sleeps): the agent's time budget is judged
// against it.
class SlowBowlMeasurer : public BowlMeasurer {
 public:
  explicit SlowBowlMeasurer(double ms) : ms_(ms) {}
  absl::StatusOr<std::vector<MeasureResult>> Measure(
      const TaskKey& task, const std::vector<Configuration>& configs) override {
    absl::SleepFor(absl::Milliseconds(ms_ * configs.size()));
    return BowlMeasurer::Measure(task, configs);
  }

 private:
  double ms_;
};

TEST(PpoStrategyTest, LearnsEveryBatchWithoutATimeLimit) {
  SearchSpace space = Bowl();
  BowlMeasurer measurer;
  PpoStrategy p;
  auto out = RunTuningLoop(p, space, measurer, {}, {64, 8, 3});
  ASSERT_TRUE(out.ok()) << out.status();
  // 16 random warm-up measurements (two batches), then one learning step per batch.
  EXPECT_EQ(p.learning_steps(), 64 / 8 - 2);
}

TEST(PpoStrategyTest, LearnsOnlyAsOftenAsItsShareOfTheMeasurementTimeAllows) {
  SearchSpace space = Bowl();
  // Cheap measurements (0.2 ms): 5% of 64 of them is 0.64 ms, far less than a learning step, so
  // the agent only proposes the best points' neighbourhoods; still an exact, repeat-free run.
  SlowBowlMeasurer fast(0.2);
  PpoStrategy cheap;
  TuningOptions limited{64, 8, 3};
  limited.max_agent_share = 0.05;
  auto out = RunTuningLoop(cheap, space, fast, {}, limited);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(cheap.learning_steps(), 0);
  ASSERT_EQ(out->trace.size(), 64u);
  std::set<Point> distinct;
  for (const Observation& o : out->trace) distinct.insert(o.point);
  EXPECT_EQ(distinct.size(), 64u);
  // Neighbourhood steps still improve on the random warm-up.
  double warmup_best = INFINITY, best = INFINITY;
  for (size_t i = 0; i < out->trace.size(); ++i) {
    if (i < 16) warmup_best = std::min(warmup_best, out->trace[i].time_ms);
    best = std::min(best, out->trace[i].time_ms);
  }
  EXPECT_LT(best, warmup_best);
  // A policy that never learned is not worth keeping (it must not replace a trained one).
  auto checkpoint = cheap.SaveCheckpoint();
  ASSERT_TRUE(checkpoint.ok());
  EXPECT_TRUE(checkpoint->empty());

  // Slow measurements (40 ms, 320 ms a batch): 5% is 16 ms a batch, enough to learn often.
  SlowBowlMeasurer slow(40);
  PpoStrategy rich;
  limited.budget = 48;
  out = RunTuningLoop(rich, space, slow, {}, limited);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_GE(rich.learning_steps(), 1);
  checkpoint = rich.SaveCheckpoint();
  ASSERT_TRUE(checkpoint.ok());
  EXPECT_FALSE(checkpoint->empty());
}

// Every configuration equally fast: after the first result, no batch finds anything faster.
class FlatMeasurer : public BowlMeasurer {
 public:
  absl::StatusOr<std::vector<MeasureResult>> Measure(
      const TaskKey&, const std::vector<Configuration>& configs) override {
    std::vector<MeasureResult> out(configs.size());
    for (MeasureResult& r : out) r.time_ms = 2.0;
    return out;
  }
};

TEST(PpoStrategyTest, RestartsAfterBatchesThatFindNothingFaster) {
  SearchSpace space = Bowl();
  FlatMeasurer flat;
  PpoOptions options;
  options.restart_after = 3;
  PpoStrategy p(options);
  auto out = RunTuningLoop(p, space, flat, {}, {160, 8, 5});
  ASSERT_TRUE(out.ok()) << out.status();
  // 20 batches: two of warm-up (which never count as stale), then a restart after each run of 3
  // stale batches; each new region's first batch sets its best (not stale). Stale runs end at
  // batches 5, 9, 13, 17.
  EXPECT_EQ(p.restarts(), 4);
  // The run stays exact and repeat-free across restarts.
  std::set<Point> distinct;
  for (const Observation& o : out->trace) distinct.insert(o.point);
  EXPECT_EQ(distinct.size(), 160u);

  // Prior results (the database's records of the task) belong to the first region: batches that
  // find nothing faster than them are stale from the first one.
  TuningOptions with_priors{24, 8, 5};
  for (int64_t i = 0; i < 16; ++i) with_priors.prior.push_back({space.PointAt(i * 7), true, 2.0});
  PpoStrategy after_priors(options);
  ASSERT_TRUE(RunTuningLoop(after_priors, space, flat, {}, with_priors).ok());
  EXPECT_EQ(after_priors.restarts(), 1);

  options.restart_after = 0;  // never
  PpoStrategy never(options);
  ASSERT_TRUE(RunTuningLoop(never, space, flat, {}, {160, 8, 5}).ok());
  EXPECT_EQ(never.restarts(), 0);
}

// Each measurement 0.01% faster than the last: every batch sets a new best, by a hair.
class CreepingMeasurer : public BowlMeasurer {
 public:
  absl::StatusOr<std::vector<MeasureResult>> Measure(
      const TaskKey&, const std::vector<Configuration>& configs) override {
    std::vector<MeasureResult> out(configs.size());
    for (MeasureResult& r : out) r.time_ms = 2.0 * (1 - 1e-4 * ++calls_);
    return out;
  }

 private:
  int calls_ = 0;
};

TEST(PpoStrategyTest, CreepingAlongAPlateauCountsAsStale) {
  SearchSpace space = Bowl();
  PpoOptions options;
  options.restart_after = 3;
  PpoStrategy creeping(options);  // restart_min_gain 1%: a 0.08% gain a batch is no progress
  CreepingMeasurer m1;
  ASSERT_TRUE(RunTuningLoop(creeping, space, m1, {}, {160, 8, 5}).ok());
  EXPECT_GE(creeping.restarts(), 3);

  options.restart_min_gain = 0;  // any gain is progress: never stale
  PpoStrategy any_gain(options);
  CreepingMeasurer m2;
  ASSERT_TRUE(RunTuningLoop(any_gain, space, m2, {}, {160, 8, 5}).ok());
  EXPECT_EQ(any_gain.restarts(), 0);
}

// A ridge: the best point is known and every one-parameter change of it was measured slower, so
// only a move of two parameters at once can still improve. The local arm proposes first, from
// the best point's unvisited neighbourhood: it must reach two-parameter changes.
TEST(PpoStrategyTest, TheLocalArmCrossesARidgeWithTwoParameterChanges) {
  SearchSpace space = Bowl();
  const Point best = {13, 4, 9, 2};  // value indices (the bowl's values are 0, 1, 2, ...)
  ASSERT_GE(space.IndexOf(best), 0);
  std::vector<Observation> prior = {{best, true, 1.0}};
  std::set<Point> known = {best};
  for (auto kind : {Neighbourhood::kAdjacent, Neighbourhood::kHamming}) {
    for (const Point& q : space.Neighbours(best, kind)) {
      if (known.insert(q).second) prior.push_back({q, true, 3.0});
    }
  }
  for (int64_t i = 0; i < 16; ++i) {
    const Point q = space.PointAt(i * 499);
    if (known.insert(q).second) prior.push_back({q, true, 2.0});
  }
  auto changed = [&](const Point& p) {
    int n = 0;
    for (size_t k = 0; k < p.size(); ++k) n += p[k] != best[k];
    return n;
  };
  PpoStrategy ppo;
  ASSERT_TRUE(ppo.Initialize(space, 7).ok());
  ASSERT_TRUE(ppo.AddPriorResults(prior).ok());
  ASSERT_TRUE(ppo.PreTuning(64, 8).ok());
  auto batch = ppo.ProposeBatch();
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_FALSE(batch->empty());
  EXPECT_EQ(changed(batch->front()), 2);
}

// The model also ranks points of the whole space, not only where the policy's walks from the
// elites lead: with no walks and no local arm, the batch still holds the model's best points.
TEST(PpoStrategyTest, TheModelRanksTheWholeSpaceNotOnlyTheWalks) {
  SearchSpace space = Bowl();
  BowlMeasurer measurer;
  // 300 measured points spread over the space, none within 1.25 of the optimum's time (1.0).
  std::vector<Observation> prior;
  for (int64_t i = 0; static_cast<int64_t>(prior.size()) < 300; i += 29) {
    const Point p = space.PointAt(i % space.size());
    auto r = measurer.Measure({}, {space.ToConfiguration(p)});
    ASSERT_TRUE(r.ok());
    const double t = *(*r)[0].time_ms;
    if (t > 1.25) prior.push_back({p, true, t});
  }
  auto best_of_batch = [&](int64_t global_candidates) {
    PpoOptions options;
    options.proposal_episodes = 0;  // no walks
    options.local_share = 0;        // no local arm
    options.global_candidates = global_candidates;
    PpoStrategy ppo(options);
    EXPECT_TRUE(ppo.Initialize(space, 11).ok());
    EXPECT_TRUE(ppo.AddPriorResults(prior).ok());
    EXPECT_TRUE(ppo.PreTuning(64, 8).ok());
    auto batch = ppo.ProposeBatch();
    EXPECT_TRUE(batch.ok()) << batch.status();
    double best = INFINITY;
    for (const Point& p : *batch) {
      best = std::min(best, *(*measurer.Measure({}, {space.ToConfiguration(p)}))[0].time_ms);
    }
    return best;
  };
  // Every point of the space ranked, as by default (8,784 points): a point next to the optimum
  // is proposed.
  ASSERT_GE(PpoOptions().global_candidates, space.size());
  EXPECT_LE(best_of_batch(PpoOptions().global_candidates), 1.25);
  // Without the global pool the batch is the random share and the base's random fill.
  EXPECT_GT(best_of_batch(0), 1.25);
}

TEST(PpoStrategyTest, SameSeedSameRun) {
  SearchSpace space = Bowl();
  BowlMeasurer measurer;
  std::vector<std::vector<Point>> runs;
  for (int i = 0; i < 2; ++i) {
    PpoStrategy p;
    auto out = RunTuningLoop(p, space, measurer, {}, {48, 8, 42});
    ASSERT_TRUE(out.ok());
    std::vector<Point> points;
    for (const Observation& o : out->trace) points.push_back(o.point);
    runs.push_back(points);
  }
  EXPECT_EQ(runs[0], runs[1]);
}

TEST(PpoStrategyTest, TransferFromAnotherDeviceProposesGoodFirstBatches) {
  SearchSpace space = Bowl();
  BowlMeasurer measurer;
  // The source device's landscape: the same bowl, twice as slow.
  std::vector<double> source_times = Recording(space, measurer, 2.0);
  PpoStrategy p;
  ASSERT_TRUE(p.AddTransferSource({&space, &source_times}).ok());
  auto out = RunTuningLoop(p, space, measurer, {}, {16, 8, 3});
  ASSERT_TRUE(out.ok()) << out.status();
  double best = 1e9;
  for (const Observation& o : out->trace) best = std::min(best, o.time_ms);
  // Random search's best of 16 draws has a median of 2.1x the optimum here and is within 1.5x in
  // 15% of runs (simulated); the transferred policy walks to the bowl's bottom before measuring.
  EXPECT_LE(best, 1.5);
}

TEST(PpoStrategyTest, PoliciesSaveAndWarmStart) {
  SearchSpace space = Bowl();
  BowlMeasurer measurer;
  // A policy that learned the bowl (from a recording of it, as in the transfer test).
  std::vector<double> source_times = Recording(space, measurer, 1.0);
  PpoStrategy trained;
  ASSERT_FALSE(trained.SavePolicy().ok());  // nothing to save before tuning
  ASSERT_TRUE(trained.AddTransferSource({&space, &source_times}).ok());
  ASSERT_TRUE(RunTuningLoop(trained, space, measurer, {}, {8, 8, 5}).ok());
  auto blob = trained.SavePolicy();
  ASSERT_TRUE(blob.ok()) << blob.status();

  PpoStrategy warm;
  warm.LoadPolicy(*blob);
  ASSERT_TRUE(warm.Initialize(space, 6).ok());
  ASSERT_TRUE(warm.PreTuning(16, 8).ok());
  auto reloaded = warm.SavePolicy();
  ASSERT_TRUE(reloaded.ok());
  EXPECT_EQ(*reloaded, *blob);  // the same weights

  // The warm-started policy proposes its first batch from its walks, not at random: they end
  // near the bottom of the bowl (random draws: the best of 8 has a median of 2.75x the optimum and
  // is within 1.5x in 8% of runs).
  auto out = RunTuningLoop(warm, space, measurer, {}, {8, 8, 6});
  ASSERT_TRUE(out.ok()) << out.status();
  double best = 1e9;
  for (const Observation& o : out->trace) best = std::min(best, o.time_ms);
  EXPECT_LE(best, 1.5);

  PpoStrategy wrong;
  wrong.LoadPolicy("not a policy");
  ASSERT_TRUE(wrong.Initialize(space, 1).ok());
  EXPECT_EQ(wrong.PreTuning(8, 8).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PpoStrategy::PolicyKey("gemm", space), PpoStrategy::PolicyKey("gemm", Bowl()));
  EXPECT_NE(PpoStrategy::PolicyKey("gemm", space), PpoStrategy::PolicyKey("conv", space));
}

}  // namespace
}  // namespace ktune
