// CpuMeasurer: real kernels measured in the real runner child; faults of every kind become the
// right status and the next candidate is measured normally.
#include "measurer/cpu_measurer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "kernels/kernel_registry.h"
#include "measurer/cpu_device.h"
#include "measurer/input_files.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

using ::testing::HasSubstr;

// A client kernel whose compile-time parameter `fault` picks a misbehaviour: y = 2 * x, then
// 0 nothing, 1 a null write (SIGSEGV), 2 a loop that never ends, 3 a write just past the end
// of y, 4 one wrong value, 5 code that does not compile, 6 a write into the input x, 7 abort().
constexpr char kFaultySource[] = R"(
#include <stdlib.h>
#if KT_fault == 5
this line is not C++;
#endif
extern "C" int ktune_reference(const ktune_cpu_call* c) {
  const int64_t n = c->problem[0];
  for (int64_t i = 0; i < n; ++i) c->buffers[1][i] = 2 * c->buffers[0][i];
  return 0;
}
extern "C" int ktune_kernel(const ktune_cpu_call* c) {
  const int64_t n = c->problem[0];
  float* x = c->buffers[0];
  float* y = c->buffers[1];
  for (int64_t i = 0; i < n; ++i) y[i] = 2 * x[i];
  switch (KT_fault) {
    case 1: *(volatile int*)0 = 1; break;
    case 2: for (volatile int spin = 0;; spin = spin + 1) {} break;
    case 3: y[n + 2] = 0; break;
    case 4: y[n / 2] += 1; break;
    case 6: x[0] = 42; break;
    case 7: abort();
  }
  return 0;
}
)";

KernelDefinition FaultyKernel() {
  KernelDefinition d;
  d.name = "faulty";
  d.language = "cpp";
  d.description = "y = 2x, with a fault chosen by a compile-time parameter";
  d.source = kFaultySource;
  d.parameters = {{"fault", {0, 1, 2, 3, 4, 5, 6, 7}, true, "which misbehaviour"}};
  d.problem = {{"n", 1, 1 << 24, "elements"}};
  d.buffers = {{"x", "n", false}, {"y", "n", true}};
  d.flops = "n";
  d.bytes = "8 * n";
  d.default_config = {{"fault", "0"}};
  return d;
}

// y = 2x rounded to KT_bits mantissa bits (23: exact), a stand-in for a lower precision; it
// refuses (returns 1) inputs outside [-1, 1] when KT_bounded, which shows what the runner drew.
constexpr char kRoundingSource[] = R"(
#include <math.h>
extern "C" int ktune_reference(const ktune_cpu_call* c) {
  for (int64_t i = 0; i < c->problem[0]; ++i) c->buffers[1][i] = 2 * c->buffers[0][i];
  return 0;
}
extern "C" int ktune_kernel(const ktune_cpu_call* c) {
  const float* x = c->buffers[0];
  for (int64_t i = 0; i < c->problem[0]; ++i) {
    if (KT_bounded && fabsf(x[i]) > 1) return 1;
    int e;
    const float m = frexpf(2 * x[i], &e);
    const float scale = (float)(1 << (KT_bits + 1));
    c->buffers[1][i] = ldexpf(nearbyintf(m * scale) / scale, e);
  }
  return 0;
}
)";

KernelDefinition RoundingKernel() {
  KernelDefinition d;
  d.name = "rounding";
  d.language = "cpp";
  d.description = "y = 2x with fewer mantissa bits";
  d.source = kRoundingSource;
  d.parameters = {{"bits", {23, 10, 4}, true, "mantissa bits kept"},
                  {"bounded", {0, 1}, true, "refuse inputs outside [-1, 1]"}};
  d.problem = {{"n", 1, 1 << 24, "elements"}};
  d.buffers = {{"x", "n", false}, {"y", "n", true}};
  d.flops = "n";
  d.bytes = "8 * n";
  d.default_config = {{"bits", "23"}, {"bounded", "0"}};
  d.rtol = 0.5;  // rounding is not a wrong result; the measured error says how much it costs
  return d;
}

class CpuMeasurerTest : public ::testing::Test {
 protected:
  CpuMeasurerTest() {
    EXPECT_TRUE(registry_.Register(FaultyKernel()).ok());
    EXPECT_TRUE(registry_.Register(RoundingKernel()).ok());
    options_.runner_path = KTUNE_RUNNER;
    options_.compile.cache_dir = cache_.path();
    options_.run_timeout_ms = 3000;
    options_.max_seconds = 0.05;
  }
  testing::TempDir cache_;
  KernelRegistry registry_ = KernelRegistry::WithBuiltins();
  CpuMeasurerOptions options_;
};

TEST_F(CpuMeasurerTest, EveryFaultBecomesItsStatusAndTheNextCandidateIsMeasured) {
  CpuMeasurer measurer(&registry_, options_);
  TaskKey task{"faulty", "", {{"n", int64_t{1000}}}, measurer.device().device_class};
  auto fault = [](int64_t f) { return Configuration{{"fault", f}}; };
  std::vector<Configuration> configs;
  for (int64_t f : {1, 2, 3, 4, 5, 6, 7}) {
    configs.push_back(fault(f));
    configs.push_back(fault(0));  // after each fault, a healthy candidate
  }
  auto results = measurer.Measure(task, configs);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), configs.size());
  struct Expected {
    MeasurementStatus status;
    const char* message;
  };
  const Expected expected[] = {
      {MeasurementStatus::kRuntimeError, "SIGSEGV"},
      {MeasurementStatus::kTimeout, "no result within"},
      {MeasurementStatus::kRuntimeError, "wrote outside its buffers: buffer 1, after the end"},
      {MeasurementStatus::kWrongResult, "1 of 1000 elements differ"},
      {MeasurementStatus::kCompileError, "this line is not C++"},
      {MeasurementStatus::kRuntimeError, "wrote into an input buffer"},
      {MeasurementStatus::kRuntimeError, "SIGABRT"},
  };
  for (size_t i = 0; i < std::size(expected); ++i) {
    const MeasureResult& bad = (*results)[2 * i];
    EXPECT_EQ(bad.status, expected[i].status) << i << ": " << bad.message;
    EXPECT_THAT(bad.message, HasSubstr(expected[i].message)) << i;
    EXPECT_FALSE(bad.time_ms.has_value()) << i;
    const MeasureResult& good = (*results)[2 * i + 1];
    EXPECT_EQ(good.status, MeasurementStatus::kOk)
        << "after fault " << i + 1 << ": " << good.message;
    EXPECT_TRUE(good.time_ms.has_value() && *good.time_ms > 0);
    EXPECT_GE(good.repeat_times_ms.size(), 1u);
  }
  // Crash, hang, overrun, input write and abort each cost the runner; the compile error and the
  // wrong value did not.
  EXPECT_EQ(measurer.runner_starts(), 6);
}

TEST_F(CpuMeasurerTest, AnOkResultCarriesItsMeasuredErrorAgainstTheReference) {
  CpuMeasurer measurer(&registry_, options_);
  TaskKey task{"rounding", "", {{"n", int64_t{4096}}}, measurer.device().device_class};
  auto bits = [](int64_t b) { return Configuration{{"bits", b}, {"bounded", int64_t{0}}}; };
  auto results = measurer.Measure(task, {bits(23), bits(10), bits(4)});
  ASSERT_TRUE(results.ok()) << results.status();
  for (const MeasureResult& r : *results) {
    ASSERT_EQ(r.status, MeasurementStatus::kOk) << r.message;
    ASSERT_TRUE(r.max_rel_error.has_value());
  }
  EXPECT_EQ(*(*results)[0].max_rel_error, 0.0) << "23 bits is float itself";
  // Rounding to b bits errs by up to 2^-(b+1) of a value, relative to the largest output (~2).
  EXPECT_GT(*(*results)[1].max_rel_error, 1e-5);
  EXPECT_LE(*(*results)[1].max_rel_error, std::ldexp(1.0, -11));
  EXPECT_GT(*(*results)[2].max_rel_error, 1e-3);
  EXPECT_LE(*(*results)[2].max_rel_error, std::ldexp(1.0, -5));
}

TEST_F(CpuMeasurerTest, TheDataProblemValueChoosesTheInputDistribution) {
  CpuMeasurer measurer(&registry_, options_);
  const Configuration bounded{{"bits", int64_t{23}}, {"bounded", int64_t{1}}};
  auto measure = [&](Problem problem) {
    TaskKey task{"rounding", "", problem, measurer.device().device_class};
    auto r = measurer.Measure(task, {bounded});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->front().status : MeasurementStatus::kLost;
  };
  EXPECT_EQ(measure({{"n", int64_t{4096}}}), MeasurementStatus::kOk) << "uniform in [-1, 1]";
  EXPECT_EQ(measure({{"n", int64_t{4096}}, {"data", std::string("uniform")}}),
            MeasurementStatus::kOk);
  EXPECT_EQ(measure({{"n", int64_t{4096}}, {"data", std::string("normal")}}),
            MeasurementStatus::kInvalidConfig)
      << "4096 normal draws include values outside [-1, 1]";
  EXPECT_EQ(measure({{"n", int64_t{4096}}, {"data", std::string("heavy_tailed")}}),
            MeasurementStatus::kInvalidConfig);
  TaskKey bad{"rounding", "", {{"n", int64_t{16}}, {"data", std::string("cauchy")}},
              measurer.device().device_class};
  auto refused = measurer.Measure(bad, {bounded});
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("uniform, normal, heavy_tailed"));
}

// A user's inputs file: stored under its content hash, named by data=file:<hash>, and what the
// runner fills the inputs with (the bounded kernel refuses values outside [-1, 1]).
TEST_F(CpuMeasurerTest, AnInputsFileIsStoredByItsHashAndFillsTheInputs) {
  testing::TempDir inputs;
  options_.inputs_dir = inputs.path();
  auto write = [&](const std::string& name, const std::vector<float>& values) {
    std::ofstream out(inputs.File(name), std::ios::binary);
    out.write(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
    return inputs.File(name);
  };
  absl::StatusOr<std::string> small = StoreInputFile(write("small.f32", {0.5f, -0.25f, 0.75f}),
                                                     inputs.path());
  absl::StatusOr<std::string> large = StoreInputFile(write("large.f32", {0.5f, 3.0f}), inputs.path());
  ASSERT_TRUE(small.ok()) << small.status();
  ASSERT_TRUE(large.ok()) << large.status();
  EXPECT_THAT(*small, ::testing::MatchesRegex("file:[0-9a-f]{16}"));
  EXPECT_NE(*small, *large);
  EXPECT_EQ(*StoreInputFile(inputs.File("small.f32"), inputs.path()), *small) << "same bytes";

  CpuMeasurer measurer(&registry_, options_);
  const Configuration bounded{{"bits", int64_t{23}}, {"bounded", int64_t{1}}};
  auto measure = [&](const std::string& data) {
    TaskKey task{"rounding", "", {{"n", int64_t{1000}}, {"data", data}},
                 measurer.device().device_class};
    return measurer.Measure(task, {bounded});
  };
  auto within = measure(*small);
  ASSERT_TRUE(within.ok()) << within.status();
  EXPECT_EQ(within->front().status, MeasurementStatus::kOk) << within->front().message;
  auto outside = measure(*large);
  ASSERT_TRUE(outside.ok()) << outside.status();
  EXPECT_EQ(outside->front().status, MeasurementStatus::kInvalidConfig) << "3.0 reached the kernel";
  auto missing = measure("file:0123456789abcdef");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("ktune tune --inputs"));

  EXPECT_TRUE(absl::IsInvalidArgument(
      StoreInputFile(write("odd.f32", {}), inputs.path()).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      StoreInputFile(write("nan.f32", {1.f, std::nanf("")}), inputs.path()).status()));
  EXPECT_TRUE(absl::IsNotFound(StoreInputFile(inputs.File("nope"), inputs.path()).status()));
}

TEST_F(CpuMeasurerTest, CompiledKernelsAreCachedOnDisk) {
  CpuMeasurer first(&registry_, options_);
  TaskKey task{"faulty", "", {{"n", int64_t{64}}}, first.device().device_class};
  ASSERT_TRUE(first.Measure(task, {{{"fault", int64_t{0}}}}).ok());
  EXPECT_EQ(first.compiler().builds(), 1);
  ASSERT_TRUE(first.Measure(task, {{{"fault", int64_t{0}}}}).ok());
  EXPECT_EQ(first.compiler().builds(), 1);
  CpuMeasurer second(&registry_, options_);  // a new process would find the same file
  auto r = second.Measure(task, {{{"fault", int64_t{0}}}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->front().status, MeasurementStatus::kOk);
  EXPECT_EQ(second.compiler().builds(), 0);
}

TEST_F(CpuMeasurerTest, BuiltinGemmDefaultIsCorrectAndTimed) {
  CpuMeasurer measurer(&registry_, options_);
  const KernelDefinition* gemm = registry_.Find("gemm");
  ASSERT_NE(gemm, nullptr);
  Problem problem{{"M", int64_t{67}}, {"N", int64_t{45}}, {"K", int64_t{129}}};
  TaskKey task{"gemm", gemm->Version(), problem, measurer.device().device_class};
  auto validated = gemm->ValidateProblem(problem);
  ASSERT_TRUE(validated.ok());
  auto config = gemm->DefaultConfiguration(*validated, {measurer.cpu().cores});
  ASSERT_TRUE(config.ok());
  Configuration outside = *config;
  outside["MR"] = int64_t{16};
  outside["NR"] = int64_t{32};  // 16 x 32 floats breaks MR * NR <= 192
  Configuration unknown = *config;
  unknown["MR"] = int64_t{5};
  auto results = measurer.Measure(task, {*config, outside, unknown});
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ((*results)[0].status, MeasurementStatus::kOk) << (*results)[0].message;
  EXPECT_EQ((*results)[1].status, MeasurementStatus::kInvalidConfig);
  EXPECT_THAT((*results)[1].message, HasSubstr("constraints"));
  EXPECT_EQ((*results)[2].status, MeasurementStatus::kInvalidConfig);
}

TEST_F(CpuMeasurerTest, AStopCheckThatTurnsTrueStopsTheCallBetweenConfigurations) {
  CpuMeasurer measurer(&registry_, options_);
  const KernelDefinition* gemm = registry_.Find("gemm");
  Problem problem{{"M", int64_t{32}}, {"N", int64_t{32}}, {"K", int64_t{32}}};
  TaskKey task{"gemm", gemm->Version(), problem, measurer.device().device_class};
  auto config = gemm->DefaultConfiguration(*gemm->ValidateProblem(problem), {1});
  ASSERT_TRUE(config.ok());
  // The check is asked before each configuration and while the runner works on one, so a
  // count of checks no longer says where it stops; one that says stop from the start stops
  // before the first.
  measurer.set_stop_check([] { return true; });
  auto stopped = measurer.Measure(task, {*config, *config, *config});
  EXPECT_TRUE(absl::IsCancelled(stopped.status())) << stopped.status();
  EXPECT_THAT(stopped.status().message(), HasSubstr("after 0 of 3"));
  measurer.set_stop_check(nullptr);  // none: every configuration, as before
  auto all = measurer.Measure(task, {*config, *config});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), 2u);
}

// A candidate that hangs is stopped by the stop check while the runner runs it, not at its
// timeout (a cancelled job's worker waited out a hung reference, 10 minutes a candidate), and
// the runner is killed: the next call starts a fresh one.
TEST_F(CpuMeasurerTest, AStopCheckStopsACandidateThatHangsAndKillsItsRunner) {
  options_.run_timeout_ms = 600'000;
  CpuMeasurer measurer(&registry_, options_);
  TaskKey task{"faulty", "", {{"n", int64_t{1000}}}, measurer.device().device_class};
  std::atomic<bool> stop{false};
  measurer.set_stop_check([&stop] { return stop.load(); });
  std::thread stopper([&stop] {
    absl::SleepFor(absl::Seconds(3));
    stop = true;
  });
  const absl::Time start = absl::Now();
  auto stopped = measurer.Measure(task, {Configuration{{"fault", int64_t{2}}}});
  const absl::Duration took = absl::Now() - start;
  stopper.join();
  ASSERT_TRUE(absl::IsCancelled(stopped.status())) << stopped.status();
  EXPECT_THAT(stopped.status().message(), HasSubstr("stopped while the runner was measuring"));
  EXPECT_LT(took, absl::Minutes(2)) << "not the 10-minute timeout";
  measurer.set_stop_check(nullptr);
  auto healthy = measurer.Measure(task, {Configuration{{"fault", int64_t{0}}}});
  ASSERT_TRUE(healthy.ok()) << healthy.status();
  EXPECT_EQ((*healthy)[0].status, MeasurementStatus::kOk) << (*healthy)[0].message;
}

// A reference that never ends times out once for the task, not once a candidate: the task's
// later candidates fail at once, saying why.
TEST_F(CpuMeasurerTest, AReferenceThatHangsTimesOutOnceForItsTask) {
  KernelDefinition d = FaultyKernel();
  d.name = "hanging_reference";
  d.source = R"(
extern "C" int ktune_reference(const ktune_cpu_call* c) {
  for (volatile int spin = 0;; spin = spin + 1) {}
  return 0;
}
extern "C" int ktune_kernel(const ktune_cpu_call* c) { return 0; }
)";
  d.parameters = {{"unroll", {1, 2}, true, "unused"}};
  d.default_config = {{"unroll", "1"}};
  ASSERT_TRUE(registry_.Register(d).ok());
  options_.prepare_timeout_ms = 1500;
  CpuMeasurer measurer(&registry_, options_);
  TaskKey task{"hanging_reference", "", {{"n", int64_t{100}}}, measurer.device().device_class};
  auto results = measurer.Measure(
      task, {Configuration{{"unroll", int64_t{1}}}, Configuration{{"unroll", int64_t{2}}}});
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ((*results)[0].status, MeasurementStatus::kTimeout);
  EXPECT_THAT((*results)[0].message,
              HasSubstr("preparing the inputs and the reference output took longer than 1.5 s"));
  EXPECT_EQ((*results)[1].status, MeasurementStatus::kTimeout);
  EXPECT_THAT((*results)[1].message, HasSubstr("for an earlier candidate of this task"));
  EXPECT_EQ(measurer.runner_starts(), 1) << "the second candidate did not start a runner";
}

// gemm_lowp's runs fail unless the runner called its prepare hook first (cpu_kernel_abi.h), so
// every precision measuring ok shows the runner brackets each configuration's runs.
TEST_F(CpuMeasurerTest, TheRunnerPreparesBuiltinKernelsThatHaveAPrepareHook) {
  CpuMeasurer measurer(&registry_, options_);
  const KernelDefinition* lowp = registry_.Find("gemm_lowp");
  ASSERT_NE(lowp, nullptr);
  Problem problem{{"M", int64_t{19}}, {"N", int64_t{70}}, {"K", int64_t{133}}};
  TaskKey task{"gemm_lowp", lowp->Version(), problem, measurer.device().device_class};
  auto validated = lowp->ValidateProblem(problem);
  ASSERT_TRUE(validated.ok());
  auto config = lowp->DefaultConfiguration(*validated, {measurer.cpu().cores});
  ASSERT_TRUE(config.ok());
  std::vector<Configuration> configs;
  for (int64_t precision : {32, 16, 8, 32}) {
    configs.push_back(*config);
    configs.back()["precision"] = precision;
    if (precision == 8) configs.back()["scales"] = int64_t{1};
  }
  auto results = measurer.Measure(task, configs);
  ASSERT_TRUE(results.ok()) << results.status();
  for (const MeasureResult& r : *results) EXPECT_EQ(r.status, MeasurementStatus::kOk) << r.message;
}

// The blind spot of one normwise error (docs/precision.md): one weight column 3000 times the
// others leaves per-tensor int8 scales nothing for the other 63 columns, which come out zero.
// Against max|C| that read about 0.009, as good as per-column scales; gemm_lowp's error is
// componentwise, so the lost columns count in full.
TEST_F(CpuMeasurerTest, AWeightColumnLostToPerTensorScalesShowsInTheStoredError) {
  constexpr int64_t kM = 16, kN = 64, kK = 64;
  std::vector<float> values;  // A (M x K), then B (K x N): the order the runner fills them in
  uint32_t state = 12345;
  auto uniform = [&state] {
    state = state * 1664525u + 1013904223u;
    return static_cast<float>(state >> 8) / static_cast<float>(1 << 23) - 1.f;
  };
  for (int64_t i = 0; i < kM * kK; ++i) values.push_back(uniform());
  for (int64_t k = 0; k < kK; ++k)
    for (int64_t j = 0; j < kN; ++j) values.push_back(uniform() * (j == 0 ? 3000.f : 1.f));
  testing::TempDir inputs;
  options_.inputs_dir = inputs.path();
  {
    std::ofstream out(inputs.File("uneven.f32"), std::ios::binary);
    out.write(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  }
  absl::StatusOr<std::string> data = StoreInputFile(inputs.File("uneven.f32"), inputs.path());
  ASSERT_TRUE(data.ok()) << data.status();

  CpuMeasurer measurer(&registry_, options_);
  const KernelDefinition* lowp = registry_.Find("gemm_lowp");
  ASSERT_NE(lowp, nullptr);
  Problem problem{{"M", kM}, {"N", kN}, {"K", kK}, {"data", *data}};
  auto validated = lowp->ValidateProblem(problem);
  ASSERT_TRUE(validated.ok()) << validated.status();
  auto config = lowp->DefaultConfiguration(*validated, {measurer.cpu().cores});
  ASSERT_TRUE(config.ok());
  std::vector<Configuration> configs;
  for (int64_t scales : {0, 1}) {
    configs.push_back(*config);
    configs.back()["precision"] = int64_t{8};
    configs.back()["scales"] = scales;
  }
  TaskKey task{"gemm_lowp", lowp->Version(), problem, measurer.device().device_class};
  auto results = measurer.Measure(task, configs);
  ASSERT_TRUE(results.ok()) << results.status();
  for (const MeasureResult& r : *results) {
    ASSERT_EQ(r.status, MeasurementStatus::kOk) << r.message;
    ASSERT_TRUE(r.max_rel_error.has_value());
  }
  const double per_tensor = *(*results)[0].max_rel_error, per_column = *(*results)[1].max_rel_error;
  EXPECT_GE(per_tensor, 0.1) << "63 of 64 columns are zero";
  EXPECT_LE(per_column, 0.05);
}

TEST_F(CpuMeasurerTest, BadTasksAreErrorsOfTheCall) {
  CpuMeasurer measurer(&registry_, options_);
  auto unknown = measurer.Measure({"nope", "", {}, ""}, {{}});
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  auto missing = measurer.Measure({"gemm", "", {{"M", int64_t{8}}}, ""}, {{}});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(missing.status().message(), HasSubstr("needs problem parameter N"));
  Problem negative{{"M", int64_t{-3}}, {"N", int64_t{8}}, {"K", int64_t{8}}};
  auto bad = measurer.Measure({"gemm", "", negative, ""}, {{}});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("M=-3 is out of range"));
}

TEST_F(CpuMeasurerTest, MissingRunnerIsAClearError) {
  options_.runner_path = cache_.File("no-such-runner");
  CpuMeasurer measurer(&registry_, options_);
  auto r = measurer.Measure({"faulty", "", {{"n", int64_t{8}}}, ""}, {{{"fault", int64_t{0}}}});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("KTUNE_RUNNER"));
}

// The clock behind "% of peak": never below the reported clock, and a clock a real x86 core can
// run at. (A probe of dependent `add $1` read 8 GHz on this development machine's 2 GHz Xeon,
// whose cores fold immediate adds, and showed a quarter of the true share of peak.)
// Whether process `pid` has ended (gone, or a zombie nobody reaped yet).
bool Ended(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return true;
  const size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
}

// A runner whose worker is killed (SIGKILL: no chance to stop it) ends too, even while its
// input stays open: it was left an orphan spinning on a hung kernel for good.
TEST(RunnerProcessTest, ARunnerWhoseWorkerIsKilledEndsToo) {
  testing::TempDir dir;
  const std::string pid_file = dir.File("runner.pid");
  // A stand-in worker (sh) starts the runner, its input a pipe that another process keeps open.
  const std::string script = absl::StrCat("sleep 1000 | exec '", KTUNE_RUNNER, "' & echo $! > '",
                                          pid_file, "'; exec sleep 1000");
  const pid_t worker = ::fork();
  ASSERT_GE(worker, 0);
  if (worker == 0) {
    ::execlp("setsid", "setsid", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  pid_t runner = 0;
  for (int i = 0; i < 100 && runner <= 0; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
    std::ifstream(pid_file) >> runner;
  }
  ASSERT_GT(runner, 0) << "the runner did not start";
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_FALSE(Ended(runner)) << "it waits for requests while its worker lives";
  ::kill(worker, SIGKILL);
  ::waitpid(worker, nullptr, 0);
  bool ended = false;
  for (int i = 0; i < 100 && !ended; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
    ended = Ended(runner);
  }
  ::kill(-worker, SIGKILL);  // the session's sleep (setsid made the worker its group leader)
  ::kill(runner, SIGKILL);
  EXPECT_TRUE(ended) << "the runner outlived its worker";
}

TEST(CpuDeviceTest, TheClockBehindThePeakIsOneACoreCanRunAt) {
  const CpuDescription cpu = DescribeThisCpu();
  EXPECT_GE(cpu.mhz, cpu.nominal_mhz);
  EXPECT_GT(cpu.mhz, 500);
  EXPECT_LT(cpu.mhz, 6500) << "no x86-64 core runs this fast: the probe is being folded";
  EXPECT_GT(cpu.PeakGflops(1), 0);
}

}  // namespace
}  // namespace ktune
