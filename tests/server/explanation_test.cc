// Explanations (server/explanation.h) on records whose answer is known: a synthetic task where
// one parameter matters by a known factor, one does not and one value always fails; the gap
// against the noise; a recorded space's optimum; a prediction's neighbour.
#include "server/explanation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "db/interchange/record_files.h"
#include "db/memory_tuning_database.h"
#include "db/sqlite_tuning_database.h"
#include "kernels/kernel_registry.h"
#include "proto/convert.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

const DeviceInfo kDevice{R"({"cores":2,"name":"test"})", "cpu:test", "x86-64-v3"};
const Problem kProblem{{"n", int64_t{1}}};

Record Measured(const Configuration& config, std::vector<double> repeats, int64_t at_us) {
  Record r;
  r.kernel = "synthetic";
  r.problem = kProblem;
  r.device = kDevice;
  r.config = config;
  r.repeat_times_ms = std::move(repeats);
  FillRepeatStatistics(r);
  r.time_ms = r.median_ms;
  r.worker = "w1";
  r.measured_at_us = at_us;
  r.source = "worker";
  return r;
}

Record Failed(const Configuration& config, int64_t at_us) {
  Record r = Measured(config, {}, at_us);
  r.status = MeasurementStatus::kCompileError;
  r.message = "does not build";
  r.time_ms.reset();
  return r;
}

BestQuery QueryOf(const std::string& kernel, const Problem& problem) {
  BestQuery q;
  q.kernel = kernel;
  q.problem = problem;
  q.device_class = kDevice.device_class;
  return q;
}

const v1::ParameterEffect* EffectNamed(const v1::ExplainResponse& e, const std::string& name) {
  for (const v1::ParameterEffect& p : e.parameters()) {
    if (p.name() == name) return &p;
  }
  return nullptr;
}

// A: 16 or 32, 32 is 1.4x faster. B: 1..3, no effect (1% noise). C: 0 or 1, C=1 never builds.
std::vector<Record> KnownEffects() {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> noise(0.99, 1.01);
  std::vector<Record> records;
  int64_t at = 1'700'000'000'000'000;
  for (int round = 0; round < 4; ++round) {
    for (int64_t a : {16, 32}) {
      for (int64_t b : {1, 2, 3}) {
        for (int64_t c : {0, 1}) {
          Configuration config{{"A", a}, {"B", b}, {"C", c}};
          at += 1'000'000;
          if (c == 1) {
            records.push_back(Failed(config, at));
            continue;
          }
          const double base = (a == 16 ? 1.4 : 1.0) * noise(rng);
          records.push_back(Measured(config, {base, base * noise(rng), base * noise(rng)}, at));
        }
      }
    }
  }
  return records;
}

// With the fastest value in the middle (block 4 of 1..16), no direction is claimed: "larger is
// faster" was said though the values past 4 are slower (a helper's review). A trend that ends at
// the fastest value keeps its direction.
TEST(ExplanationTest, AnInteriorOptimumHasNoDirection) {
  MemoryTuningDatabase db;
  std::vector<Record> records;
  int64_t at = 1'700'000'000'000'000;
  const std::map<int64_t, double> interior = {{1, 5.8}, {2, 5.3}, {4, 4.9}, {8, 5.0}, {16, 5.1}};
  for (int round = 0; round < 4; ++round) {
    for (const auto& [block, ms] : interior) {
      // B: larger is faster all the way (4 is the fastest). Spearman's rho: A -0.63, B -0.44.
      for (const auto& [unroll, factor] :
           std::map<int64_t, double>{{1, 1.06}, {2, 1.03}, {4, 1.0}}) {
        const double t = ms * factor * (1 + 0.001 * round);
        records.push_back(
            Measured({{"A", block}, {"B", unroll}, {"C", int64_t{0}}}, {t, t, t}, at += 1000));
      }
    }
  }
  ASSERT_TRUE(db.AddRecords(records).ok());
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  absl::StatusOr<v1::ExplainResponse> e = Explain(db, registry, QueryOf("synthetic", kProblem));
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_NE(EffectNamed(*e, "A"), nullptr);
  EXPECT_TRUE(EffectNamed(*e, "A")->matters());
  EXPECT_EQ(EffectNamed(*e, "A")->direction(), 0);
  ASSERT_NE(EffectNamed(*e, "B"), nullptr);
  EXPECT_EQ(EffectNamed(*e, "B")->direction(), -1);
}

TEST(ExplanationTest, SaysWhichParametersMatterWhichDoNotAndWhichValuesFail) {
  MemoryTuningDatabase db;
  const std::vector<Record> records = KnownEffects();
  ASSERT_TRUE(db.AddRecords(records).ok());
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  absl::StatusOr<v1::ExplainResponse> e = Explain(db, registry, QueryOf("synthetic", kProblem));
  ASSERT_TRUE(e.ok()) << e.status();

  EXPECT_EQ(e->level(), v1::MATCH_LEVEL_DEVICE_CLASS);
  EXPECT_EQ(e->served().config().params().at("A").int_value(), 32);
  EXPECT_EQ(e->served().config().params().at("C").int_value(), 0);
  EXPECT_EQ(e->records(), static_cast<int64_t>(records.size()));
  EXPECT_EQ(e->failed_records(), static_cast<int64_t>(records.size()) / 2);
  EXPECT_EQ(e->served_measurements(), 4);  // each configuration was measured in 4 rounds
  EXPECT_EQ(e->best_so_far_ms_size(), static_cast<int>(records.size()));

  ASSERT_GE(e->parameters_size(), 3);
  EXPECT_EQ(e->parameters(0).name(), "A");  // the largest effect first
  const v1::ParameterEffect* a = EffectNamed(*e, "A");
  EXPECT_NEAR(a->spread(), 1.4, 0.03);
  EXPECT_TRUE(a->matters());
  EXPECT_EQ(a->direction(), -1);  // larger is faster
  const v1::ParameterEffect* b = EffectNamed(*e, "B");
  EXPECT_FALSE(b->matters());
  EXPECT_LT(b->spread(), 1.05);
  const v1::ParameterEffect* c = EffectNamed(*e, "C");
  ASSERT_EQ(c->values_size(), 2);
  EXPECT_EQ(c->values(1).value().int_value(), 1);
  EXPECT_EQ(c->values(1).failures(), 24);
  EXPECT_EQ(c->values(1).measurements(), 0);

  const std::string text = ExplanationText(*e, QueryOf("synthetic", kProblem));
  EXPECT_THAT(text, HasSubstr("(match: device class)"));
  EXPECT_THAT(text, ContainsRegex("A=32 \\(served\\) is 1\\.(38|39|40|41|42)x faster than A=16 "
                                  "\\(median of 12 and 12 measurements\\)"));
  EXPECT_THAT(text, HasSubstr("larger is faster"));
  EXPECT_THAT(text, HasSubstr("does not matter (medians within 5%): B"));
  EXPECT_THAT(text, HasSubstr("re-verified: measured 4 times"));
  EXPECT_THAT(text, HasSubstr("by worker w1"));
  // C=1 always failed: said as such (C was said to have too few measurements to tell, and a
  // parameter whose failing values ran as fast as the others "does not matter").
  EXPECT_THAT(text, HasSubstr("fails (most of its records failed; ktune db export shows why): "
                              "C=1 (24 of 24 failed)"));
  EXPECT_THAT(text, Not(HasSubstr("too few measurements to tell")));
  EXPECT_THAT(text, HasSubstr("48 of synthetic n=1 on cpu:test (24 failed)"));

  const std::string json = ExplanationJson(*e);
  EXPECT_THAT(json, HasSubstr("\"level\":\"device_class\""));
  EXPECT_THAT(json, HasSubstr("\"served_measurements\":4"));
}

// A parameter two of whose values were measured 3 times alike, and the others less, is not said
// not to matter (it was, of one whose other values were 5x slower); one with a single value in
// every record is said to be fixed, not to lack measurements.
TEST(ExplanationTest, ClaimsNoMoreThanTheMeasurementsShow) {
  MemoryTuningDatabase db;
  std::vector<Record> records;
  int64_t at = 1'700'000'000'000'000;
  for (int64_t x : {1, 2, 3, 4}) {
    for (int repeat = 0; repeat < (x <= 2 ? 3 : 1); ++repeat) {
      const double ms = x <= 2 ? 1.0 + 0.001 * repeat : 5.0;
      records.push_back(Measured({{"X", x}, {"Y", int64_t{7}}}, {ms, ms, ms}, at += 1'000'000));
    }
  }
  ASSERT_TRUE(db.AddRecords(records).ok());
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  absl::StatusOr<v1::ExplainResponse> e = Explain(db, registry, QueryOf("synthetic", kProblem));
  ASSERT_TRUE(e.ok()) << e.status();
  const std::string text = ExplanationText(*e, QueryOf("synthetic", kProblem));
  EXPECT_THAT(text, Not(HasSubstr("does not matter"))) << text;
  EXPECT_THAT(text, HasSubstr("others measured less): X\n")) << text;
  EXPECT_THAT(text, HasSubstr("the same in every record: Y\n")) << text;
}

// The served configuration can hold the value with the slowest median (fastest overall, while
// most configurations with its value are slow): the line says so instead of comparing the value
// with itself ("D=0 (served) is 1.00x faster than D=0").
TEST(ExplanationTest, AServedValueWithTheSlowestMedianIsSaidAsSuch) {
  MemoryTuningDatabase db;
  std::vector<Record> records;
  int64_t at = 1'700'000'000'000'000;
  for (int round = 0; round < 3; ++round) {
    for (const auto& [a, d, ms] : std::vector<std::tuple<int64_t, int64_t, double>>{
             {32, 0, 1.0}, {16, 0, 3.0}, {8, 0, 3.2}, {32, 1, 1.1}, {16, 1, 1.2}, {8, 1, 1.3}}) {
      at += 1'000'000;
      records.push_back(Measured({{"A", a}, {"D", d}}, {ms, ms, ms}, at));
    }
  }
  ASSERT_TRUE(db.AddRecords(records).ok());
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  absl::StatusOr<v1::ExplainResponse> e = Explain(db, registry, QueryOf("synthetic", kProblem));
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ(e->served().config().params().at("D").int_value(), 0);
  const std::string text = ExplanationText(*e, QueryOf("synthetic", kProblem));
  EXPECT_THAT(text, HasSubstr("D=0 (served) has the slowest median of its values (9 measurements); "
                              "D=1 has a 2.50x faster median (9 measurements)"));
  EXPECT_THAT(text, Not(HasSubstr("D=0 (served) is 1.00x faster than D=0")));
}

// One measurement stored twice (a file imported again under another name) is not a
// re-verification: it said "re-verified: measured 2 times" and narrowed the noise.
TEST(ExplanationTest, AMeasurementStoredTwiceCountsOnce) {
  MemoryTuningDatabase db;
  Record once = Measured({{"A", int64_t{1}}}, {1.0, 1.1, 0.9}, 1'700'000'000'000'000);
  once.source = "import:a_T4.json";
  Record again = once;
  again.source = "import:copy_of_a_T4.json";
  Record slower = Measured({{"A", int64_t{2}}}, {2.0, 2.1, 1.9}, 1'700'000'001'000'000);
  ASSERT_EQ(*db.AddRecords({once, again, slower}), 3);
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  absl::StatusOr<v1::ExplainResponse> e = Explain(db, registry, QueryOf("synthetic", kProblem));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->served_measurements(), 1);
  EXPECT_THAT(ExplanationText(*e, QueryOf("synthetic", kProblem)), Not(HasSubstr("re-verified")));
  // Measured again later, it is.
  ASSERT_EQ(*db.AddRecords({Measured({{"A", int64_t{1}}}, {1.0, 1.0, 1.0}, 1'700'000'002'000'000)}),
            1);
  e = Explain(db, registry, QueryOf("synthetic", kProblem));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->served_measurements(), 2);
}

// Under an accuracy budget, a copy of the runner-up's measurement outside the budget (its error
// unknown) must not hide the copy within it (the runner-up's records came back empty and were
// read past their end).
TEST(ExplanationTest, ACopyOutsideTheBudgetDoesNotHideTheRunnerUp) {
  MemoryTuningDatabase db;
  Record served = Measured({{"A", int64_t{1}}}, {1.0, 1.0, 1.0}, 1'700'000'000'000'000);
  served.max_rel_error = 0.0;
  Record unknown_error = Measured({{"A", int64_t{2}}}, {2.0, 2.0, 2.0}, 1'700'000'001'000'000);
  unknown_error.source = "import:a_T4.json";
  Record within = unknown_error;
  within.source = "import:b_T4.json";
  within.max_rel_error = 1e-6;
  ASSERT_EQ(*db.AddRecords({served, unknown_error, within}), 3);
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  BestQuery q = QueryOf("synthetic", kProblem);
  q.max_rel_error = 1e-3;
  absl::StatusOr<v1::ExplainResponse> e = Explain(db, registry, q);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_TRUE(e->has_runner_up());
  EXPECT_EQ(e->runner_up().time_ms(), 2.0);
  EXPECT_EQ(e->runner_up().max_rel_error(), 1e-6);
}

TEST(ExplanationTest, TheGapIsCalledRealOnlyWhenItIsLargerThanTheNoise) {
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  // The explanation of two configurations, X=1 and X=2, measured with these repeat times.
  const auto explain_two = [&](const std::vector<double>& first,
                               const std::vector<double>& second) {
    MemoryTuningDatabase db;
    EXPECT_TRUE(db.AddRecords({Measured({{"X", int64_t{1}}}, first, 1),
                               Measured({{"X", int64_t{2}}}, second, 2)})
                    .ok());
    absl::StatusOr<v1::ExplainResponse> e = Explain(db, registry, QueryOf("synthetic", kProblem));
    EXPECT_TRUE(e.ok()) << e.status();
    return e.value_or(v1::ExplainResponse());
  };
  const auto text = [](const v1::ExplainResponse& e) {
    return ExplanationText(e, QueryOf("synthetic", kProblem));
  };
  // Served 1.00 ms; runner-up 0.5% slower, repeats spread +-3%: within the noise.
  {
    const v1::ExplainResponse e =
        explain_two({0.97, 1.00, 1.03, 1.00}, {0.975, 1.005, 1.035, 1.005});
    EXPECT_NEAR(e.gap(), 0.005, 1e-9);
    ASSERT_TRUE(e.has_noise());
    EXPECT_FALSE(e.gap_exceeds_noise());
    EXPECT_THAT(text(e), HasSubstr("within twice"));
  }
  // Runner-up 10% slower with tight repeats: a real difference.
  {
    const v1::ExplainResponse e = explain_two({0.999, 1.00, 1.001}, {1.099, 1.10, 1.101});
    EXPECT_NEAR(e.gap(), 0.10, 1e-9);
    EXPECT_TRUE(e.gap_exceeds_noise());
    EXPECT_THAT(text(e), HasSubstr("a real difference"));
  }
  // One repeat of 31 preempted to 15x the others (a user trial's record): the gap of 2.6% is
  // still told from the noise (the mean's standard error made it 48%, "within the noise").
  {
    std::vector<double> served;
    for (int i = 0; i < 30; ++i) served.push_back(0.2745 * (1 + 0.001 * (i % 5 - 2)));
    served.push_back(4.2467);
    std::vector<double> runner_up;
    for (int i = 0; i < 10; ++i) runner_up.push_back(0.2817 * (1 + 0.001 * (i % 5 - 2)));
    const v1::ExplainResponse e = explain_two(served, runner_up);
    EXPECT_NEAR(e.gap(), 0.2817 / 0.2745 - 1, 1e-9);
    ASSERT_TRUE(e.has_noise());
    EXPECT_LT(e.noise(), 0.01);
    EXPECT_TRUE(e.gap_exceeds_noise());
  }
  // Most repeats equal on both sides (a coarse timer): the medians' deviations are 0, and the
  // noise is unknown, not 0 ("a real difference" for a 0.2% gap, standard error 0.00%).
  // One sample each (imported records without repeats): the noise is unknown, not zero.
  for (const auto& [first, second] :
       std::vector<std::pair<std::vector<double>, std::vector<double>>>{
           {{1.0, 1.0, 1.0, 1.0, 1.6, 0.4}, {1.002, 1.002, 1.002, 1.002, 1.602, 0.402}},
           {{1.0}, {2.0}}}) {
    const v1::ExplainResponse e = explain_two(first, second);
    EXPECT_FALSE(e.has_noise());
    EXPECT_FALSE(e.gap_exceeds_noise());
    EXPECT_THAT(text(e), HasSubstr("the noise is unknown"));
  }
}

TEST(ExplanationTest, OnARecordedSpaceTheServedConfigurationIsItsOptimum) {
  testing::TempDir dir;
  auto db = SqliteTuningDatabase::Open(dir.File("space.db"));
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_TRUE(ImportRecordFile(**db, testing::SpaceFile("pnpoly_RTX_3090_T4.json.gz"), {}).ok());
  // The optimum and the second-best configuration, independently of the explanation.
  double first = std::numeric_limits<double>::infinity(), second = first;
  int64_t count = 0, failed = 0;
  TaskKey task;
  ASSERT_TRUE((*db)->ForEachRecord([&](const Record& r) {
                     task = {r.kernel, r.kernel_version, r.problem, r.device.device_class};
                     ++count;
                     if (r.status != MeasurementStatus::kOk) {
                       ++failed;
                     } else if (*r.time_ms < first) {
                       second = first;
                       first = *r.time_ms;
                     } else if (*r.time_ms < second) {
                       second = *r.time_ms;
                     }
                     return absl::OkStatus();
                   })
                  .ok());
  BestQuery q;
  q.kernel = task.kernel;
  q.problem = task.problem;
  q.device_class = task.device_class;
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  absl::StatusOr<v1::ExplainResponse> e = Explain(**db, registry, q);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->level(), v1::MATCH_LEVEL_DEVICE_CLASS);
  EXPECT_DOUBLE_EQ(e->served().time_ms(), first);
  EXPECT_DOUBLE_EQ(e->runner_up().time_ms(), second);  // each configuration is recorded once
  EXPECT_EQ(e->records(), count);
  EXPECT_EQ(e->failed_records(), failed);
  EXPECT_DOUBLE_EQ(e->best_so_far_ms(e->best_so_far_ms_size() - 1), first);
  // Every tunable parameter of the space is explained, the largest spread first.
  EXPECT_EQ(e->parameters_size(), e->served().config().params_size());
  for (int i = 1; i < e->parameters_size(); ++i) {
    EXPECT_GE(e->parameters(i - 1).spread(), e->parameters(i).spread());
  }
  EXPECT_TRUE(e->parameters(0).matters());
  EXPECT_THAT(ExplanationText(*e, q), HasSubstr("from import:pnpoly_RTX_3090_T4.json.gz"));
}

// gemm's problem of M = N = K = n, as the registry completes it.
Problem GemmProblem(const KernelDefinition& gemm, int64_t n) {
  return *gemm.ValidateProblem({{"M", n}, {"N", n}, {"K", n}});
}

// A gemm record of `config` for M = N = K = n, three repeats of `ms`.
Record GemmMeasured(const KernelDefinition& gemm, const Configuration& config, int64_t n, double ms,
                    int64_t at_us) {
  Record r = Measured(config, {ms, ms, ms}, at_us);
  r.kernel = "gemm";
  r.kernel_version = gemm.Version();
  r.problem = GemmProblem(gemm, n);
  return r;
}

TEST(ExplanationTest, APredictionNamesTheTunedNeighbourAndItsDistance) {
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  const KernelDefinition* gemm = registry.Find("gemm");
  auto problem_of = [&](int64_t n) { return GemmProblem(*gemm, n); };
  MemoryTuningDatabase db;
  Configuration config = *gemm->DefaultConfiguration(problem_of(128), {2});
  ASSERT_TRUE(db.AddRecords({GemmMeasured(*gemm, config, 128, 1.0, 1)}).ok());

  absl::StatusOr<v1::ExplainResponse> e = Explain(db, registry, QueryOf("gemm", problem_of(256)));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->level(), v1::MATCH_LEVEL_PREDICTED);
  EXPECT_EQ(e->predicted_from().problem().params().at("M").int_value(), 128);
  EXPECT_DOUBLE_EQ(e->neighbour_distance(), 3.0);  // one log2 step in each of M, N, K
  const std::string text = ExplanationText(*e, QueryOf("gemm", problem_of(256)));
  EXPECT_THAT(text, HasSubstr("(match: predicted)"));
  EXPECT_THAT(text, HasSubstr("distance 3.00"));
  EXPECT_THAT(text, HasSubstr("never measured for the asked problem"));
}

// A prediction's runner-up is one that could be served for the asked problem: the neighbour's
// fastest configuration, which the constraints rule out there (NC < 2 * N or NC == 3072 at N=96),
// came out as a runner-up 50% faster than the served one, "-50% slower, within the noise".
TEST(ExplanationTest, APredictionsRunnerUpIsValidForTheAskedProblem) {
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  const KernelDefinition* gemm = registry.Find("gemm");
  auto problem_of = [&](int64_t n) { return GemmProblem(*gemm, n); };
  const Configuration served = *gemm->DefaultConfiguration(problem_of(128), {2});
  ASSERT_EQ(served.at("NC"), ParamValue(int64_t{3072}));
  Configuration invalid_at_96 = served, slower = served;
  invalid_at_96["NC"] = int64_t{192};
  slower["MR"] = int64_t{4};
  MemoryTuningDatabase db;
  int64_t at = 0;
  for (const auto& [config, ms] : {std::pair{invalid_at_96, 0.5}, {served, 1.0}, {slower, 1.2}}) {
    ASSERT_TRUE(db.AddRecords({GemmMeasured(*gemm, config, 128, ms, ++at)}).ok());
  }
  absl::StatusOr<v1::ExplainResponse> e = Explain(db, registry, QueryOf("gemm", problem_of(96)));
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ(e->level(), v1::MATCH_LEVEL_PREDICTED);
  absl::StatusOr<ParamMap> got = FromProto(e->served().config().params(), "served");
  EXPECT_EQ(*got, served);
  got = FromProto(e->runner_up().config().params(), "runner_up");
  EXPECT_EQ(*got, slower);
  EXPECT_NEAR(e->gap(), 0.2, 1e-9);
}

TEST(ExplanationTest, NothingKnownIsAnAnswerThatSaysSo) {
  MemoryTuningDatabase db;
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  absl::StatusOr<v1::ExplainResponse> e = Explain(db, registry, QueryOf("synthetic", kProblem));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->level(), v1::MATCH_LEVEL_NONE);
  EXPECT_FALSE(e->has_served());
  EXPECT_THAT(ExplanationText(*e, QueryOf("synthetic", kProblem)), HasSubstr("nothing known"));
  EXPECT_THAT(ExplanationText(*e, QueryOf("synthetic", kProblem)), Not(HasSubstr("served:")));
}

// Records that all failed are not "nothing known": the answer counts them (it said nothing
// existed, with 0 records and 0 failed in its JSON).
TEST(ExplanationTest, ATaskWhoseRecordsAllFailedSaysSo) {
  MemoryTuningDatabase db;
  ASSERT_TRUE(db.AddRecords({Failed({{"a", int64_t{1}}}, 1), Failed({{"a", int64_t{2}}}, 2),
                             Failed({{"a", int64_t{3}}}, 3)})
                  .ok());
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  absl::StatusOr<v1::ExplainResponse> e = Explain(db, registry, QueryOf("synthetic", kProblem));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->level(), v1::MATCH_LEVEL_NONE);
  EXPECT_EQ(e->records(), 3);
  EXPECT_EQ(e->failed_records(), 3);
  const std::string text = ExplanationText(*e, QueryOf("synthetic", kProblem));
  EXPECT_THAT(text, HasSubstr("nothing to serve: 3 records, 3 of them failed"));
  EXPECT_THAT(text, Not(HasSubstr("nothing known")));
}

}  // namespace
}  // namespace ktune
