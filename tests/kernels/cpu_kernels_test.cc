// The built-in CPU kernels (gemm, conv2d, softmax) against their references: for small and odd
// problem sizes, the default configuration and ~50 configurations drawn uniformly from the
// search space must all run and match the reference within the definition's tolerance. Also
// checks the definitions themselves: they validate, the default is in the space, and problems
// are checked with messages that name the offending parameter.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/builtin_cpu_kernels.h"
#include "kernels/kernel_registry.h"

namespace ktune {
namespace {

using ::testing::HasSubstr;

constexpr MachineVariables kMachine{2};
constexpr int kSamples = 50;

KernelDefinition DefinitionOf(const std::string& name) {
  if (name == "gemm") return GemmDefinition();
  if (name == "conv2d") return Conv2dDefinition();
  return SoftmaxDefinition();
}

// The float32 buffers of one problem, inputs random in [-1, 1].
struct Buffers {
  std::vector<std::vector<float>> data;
  std::vector<int64_t> elements;
  std::vector<float*> pointers;
};

Buffers MakeBuffers(const KernelDefinition& def, const Problem& problem, std::mt19937_64& rng) {
  Buffers b;
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  for (const BufferSpec& spec : def.buffers) {
    auto n = def.EvaluateForProblem(spec.elements, problem);
    EXPECT_TRUE(n.ok()) << n.status();
    const int64_t elements = n.ok() ? static_cast<int64_t>(*n) : 0;
    std::vector<float> v(elements);
    if (!spec.output) {
      for (float& x : v) x = dist(rng);
    }
    b.data.push_back(std::move(v));
    b.elements.push_back(elements);
  }
  for (auto& v : b.data) b.pointers.push_back(v.data());
  return b;
}

int Call(ktune_cpu_kernel_fn fn, const std::vector<int64_t>& problem,
         const std::vector<int64_t>& config, Buffers& b) {
  ktune_cpu_call call;
  call.problem = problem.data();
  call.num_problem = static_cast<int32_t>(problem.size());
  call.config = config.data();
  call.num_config = static_cast<int32_t>(config.size());
  call.buffers = b.pointers.data();
  call.buffer_elements = b.elements.data();
  call.num_buffers = static_cast<int32_t>(b.pointers.size());
  return fn(&call);
}

void PoisonOutputs(const KernelDefinition& def, Buffers& b) {
  for (size_t k = 0; k < def.buffers.size(); ++k) {
    if (def.buffers[k].output) {
      std::fill(b.data[k].begin(), b.data[k].end(), std::numeric_limits<float>::quiet_NaN());
    }
  }
}

// Empty when every output matches the reference by the definition's rule; else what differs.
std::string CompareOutputs(const KernelDefinition& def, const Buffers& out, const Buffers& ref) {
  for (size_t k = 0; k < def.buffers.size(); ++k) {
    if (!def.buffers[k].output) continue;
    const std::vector<float>& o = out.data[k];
    const std::vector<float>& r = ref.data[k];
    double max_ref = 0;
    for (float x : r) max_ref = std::max(max_ref, std::fabs(static_cast<double>(x)));
    const double tol = def.atol + def.rtol * max_ref;
    for (size_t i = 0; i < o.size(); ++i) {
      const double diff = std::fabs(static_cast<double>(o[i]) - r[i]);
      if (std::isnan(o[i]) || !(diff <= tol)) {
        return def.buffers[k].name + "[" + std::to_string(i) + "] = " + std::to_string(o[i]) +
               ", reference " + std::to_string(r[i]) + ", tolerance " + std::to_string(tol);
      }
    }
  }
  return "";
}

struct KernelCase {
  std::string kernel;
  std::string problem;  // "M=37,N=45,K=29"
};

void PrintTo(const KernelCase& c, std::ostream* os) { *os << c.kernel << " " << c.problem; }

class CpuKernelCorrectness : public ::testing::TestWithParam<KernelCase> {};

TEST_P(CpuKernelCorrectness, SampledConfigurationsMatchReference) {
  const KernelDefinition def = DefinitionOf(GetParam().kernel);
  const cpu::BuiltinCpuKernel* kernel = cpu::FindBuiltinCpuKernel(def.name);
  ASSERT_NE(kernel, nullptr);
  auto given = ParseParamMapAssignments(GetParam().problem);
  ASSERT_TRUE(given.ok()) << given.status();
  auto problem = def.ValidateProblem(*given);
  ASSERT_TRUE(problem.ok()) << problem.status();
  auto space = def.Space(*problem, kMachine);
  ASSERT_TRUE(space.ok()) << space.status();
  ASSERT_GT(space->size(), 0);
  auto defaults = def.DefaultConfiguration(*problem, kMachine);
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  auto default_point = space->ToPoint(*defaults);
  ASSERT_TRUE(default_point.ok()) << default_point.status();
  EXPECT_TRUE(space->IsValid(*default_point)) << CanonicalJson(*defaults);

  auto problem_values = def.ProblemValues(*problem);
  ASSERT_TRUE(problem_values.ok()) << problem_values.status();
  std::mt19937_64 rng(42);
  Buffers ref = MakeBuffers(def, *problem, rng);
  Buffers out = ref;
  for (size_t k = 0; k < out.data.size(); ++k) out.pointers[k] = out.data[k].data();
  ASSERT_EQ(Call(kernel->reference, *problem_values, {}, ref), 0);

  std::vector<Configuration> configs = {*defaults};
  for (int n = 0; n < kSamples; ++n) {
    configs.push_back(space->ToConfiguration(space->SampleUniform(absl::BitGenRef(rng))));
  }
  for (const Configuration& config : configs) {
    SCOPED_TRACE(CanonicalJson(config));
    auto config_values = def.ConfigValues(config);
    ASSERT_TRUE(config_values.ok()) << config_values.status();
    PoisonOutputs(def, out);
    ASSERT_EQ(Call(kernel->run, *problem_values, *config_values, out), 0);
    const std::string diff = CompareOutputs(def, out, ref);
    EXPECT_EQ(diff, "");
    if (!diff.empty()) return;  // one report per problem is enough
  }
}

INSTANTIATE_TEST_SUITE_P(Problems, CpuKernelCorrectness,
                         ::testing::Values(KernelCase{"gemm", "M=37,N=45,K=29"},
                                           KernelCase{"gemm", "M=1,N=64,K=300"},
                                           KernelCase{"gemm", "M=130,N=7,K=1"},
                                           KernelCase{"conv2d", "C=3,K=5,H=13,W=13,R=3,S=3"},
                                           KernelCase{"conv2d", "C=16,K=24,H=9,W=9,R=1,S=1"},
                                           KernelCase{"conv2d", "C=7,K=19,H=17,W=23,R=5,S=2"},
                                           KernelCase{"conv2d", "C=2,K=33,H=6,W=6,R=3,S=3"},
                                           KernelCase{"conv2d", "C=1,K=1,H=1,W=1,R=1,S=1"},
                                           KernelCase{"softmax", "rows=7,cols=1000"},
                                           KernelCase{"softmax", "rows=64,cols=33"},
                                           KernelCase{"softmax", "rows=3,cols=2500"},
                                           KernelCase{"softmax", "rows=1,cols=1"}),
                         [](const ::testing::TestParamInfo<KernelCase>& info) {
                           std::string name = info.param.kernel + "_" + info.param.problem;
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

TEST(CpuKernelDefinitions, Validate) {
  for (const KernelDefinition& def : {GemmDefinition(), Conv2dDefinition(), SoftmaxDefinition()}) {
    SCOPED_TRACE(def.name);
    EXPECT_TRUE(def.Validate().ok()) << def.Validate();
    EXPECT_NE(cpu::FindBuiltinCpuKernel(def.name), nullptr);
    EXPECT_TRUE(def.builtin);
  }
  EXPECT_EQ(cpu::FindBuiltinCpuKernel("no_such_kernel"), nullptr);
}

// The spaces of typical problems: big enough to be worth tuning, with the default inside.
TEST(CpuKernelDefinitions, TypicalSpaces) {
  const std::vector<std::pair<std::string, std::string>> typical = {
      {"gemm", "M=1024,N=1024,K=1024"},
      {"conv2d", "C=64,K=64,H=56,W=56,R=3,S=3"},
      {"softmax", "rows=4096,cols=4096"}};
  for (const auto& [name, text] : typical) {
    SCOPED_TRACE(name);
    const KernelDefinition def = DefinitionOf(name);
    auto problem = def.ValidateProblem(*ParseParamMapAssignments(text));
    ASSERT_TRUE(problem.ok()) << problem.status();
    for (int64_t cores : {2, 16, 64}) {
      auto space = def.Space(*problem, MachineVariables{cores});
      ASSERT_TRUE(space.ok()) << space.status();
      std::cout << name << " " << text << " cores=" << cores << ": " << space->size()
                << " valid configurations of " << space->unconstrained_size() << "\n";
      EXPECT_GE(space->size(), 1000);
      EXPECT_LE(space->size(), SearchSpace::kMaxValidConfigurations);
      auto defaults = def.DefaultConfiguration(*problem, MachineVariables{cores});
      ASSERT_TRUE(defaults.ok()) << defaults.status();
      auto point = space->ToPoint(*defaults);
      ASSERT_TRUE(point.ok()) << point.status();
      EXPECT_TRUE(space->IsValid(*point)) << CanonicalJson(*defaults);
    }
  }
}

TEST(CpuKernelDefinitions, ValidateProblemNamesTheParameter) {
  const KernelDefinition conv = Conv2dDefinition();
  Problem good = *ParseParamMapAssignments("C=3,K=5,H=13,W=13,R=3,S=3");
  EXPECT_TRUE(conv.ValidateProblem(good).ok());

  Problem missing = good;
  missing.erase("R");
  auto s = conv.ValidateProblem(missing);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("R"));

  Problem negative = good;
  negative["W"] = int64_t{-4};
  s = conv.ValidateProblem(negative);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("W=-4"));

  Problem too_wide = good;
  too_wide["S"] = int64_t{12};
  s = conv.ValidateProblem(too_wide);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("S=12"));

  // A whole number written as a float is that integer (M=1e2 was "got '100.0'"); a fraction is
  // refused as typed.
  absl::StatusOr<Problem> floated =
      conv.ValidateProblem(*ParseParamMapAssignments("C=3,K=5,H=1.3e1,W=13,R=3,S=3"));
  ASSERT_TRUE(floated.ok()) << floated.status();
  EXPECT_EQ(floated->at("H"), ParamValue(int64_t{13}));
  EXPECT_EQ(*floated, *conv.ValidateProblem(good));
  s = conv.ValidateProblem(*ParseParamMapAssignments("C=3,K=5,H=13.5,W=13,R=3,S=3"));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("H must be an integer, got '13.5'"));
  Problem as_text = {{"C", int64_t{3}},  {"K", int64_t{5}}, {"H", std::string("13")},
                     {"W", int64_t{13}}, {"R", int64_t{3}}, {"S", int64_t{3}}};
  EXPECT_THAT(std::string(conv.ValidateProblem(as_text).status().message()),
              HasSubstr("H must be an integer, got the string '13' (give it as a number)"));

  Problem unknown = good;
  unknown["stride"] = int64_t{2};
  s = conv.ValidateProblem(unknown);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("stride"));

  const KernelDefinition softmax = SoftmaxDefinition();
  s = softmax.ValidateProblem(*ParseParamMapAssignments("rows=4"));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("cols"));
  s = softmax.ValidateProblem(*ParseParamMapAssignments("rows=0,cols=8"));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("rows=0"));

  // Within every parameter's range, but no worker can allocate it: refused here (every
  // configuration was stored as a runtime_error), saying which buffer.
  const KernelDefinition gemm = GemmDefinition();
  auto fits = gemm.ValidateProblem(*ParseParamMapAssignments("M=32768,N=32768,K=32768"));
  ASSERT_TRUE(fits.ok());
  EXPECT_TRUE(gemm.CheckBuffersFit(*fits).ok());
  // A valid problem (records of it can be read and queried), which no worker can measure.
  s = gemm.ValidateProblem(*ParseParamMapAssignments("M=65536,N=65536,K=65536"));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT(std::string(gemm.CheckBuffersFit(*s).message()),
              HasSubstr("the problem is too large: buffer A would hold 4.295e+09 elements"));
  // A whole number too large to hold exactly is out of range, not "must be an integer, got
  // '1e+20'", which the user never typed.
  s = gemm.ValidateProblem(*ParseParamMapAssignments("M=99999999999999999999,N=8,K=8"));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("M is out of range [1, 65536]"));
}

// Where eight rows of im2col panel would pass the panel size limit, the default takes one row
// and stays in the space.
TEST(CpuKernelDefinitions, Conv2dDefaultOnALargeProblem) {
  const KernelDefinition conv = Conv2dDefinition();
  for (const char* text : {"C=1024,K=64,H=300,W=300,R=3,S=3", "C=4096,K=8,H=1,W=4096,R=1,S=11"}) {
    SCOPED_TRACE(text);
    auto problem = conv.ValidateProblem(*ParseParamMapAssignments(text));
    ASSERT_TRUE(problem.ok()) << problem.status();
    auto space = conv.Space(*problem, kMachine);
    ASSERT_TRUE(space.ok()) << space.status();
    auto defaults = conv.DefaultConfiguration(*problem, kMachine);
    ASSERT_TRUE(defaults.ok()) << defaults.status();
    EXPECT_EQ(std::get<int64_t>(defaults->at("TP")), 1);
    auto point = space->ToPoint(*defaults);
    ASSERT_TRUE(point.ok()) << point.status();
    EXPECT_TRUE(space->IsValid(*point)) << CanonicalJson(*defaults);
  }
}

// A filter larger than the image leaves no output: the space is empty rather than wrong.
TEST(CpuKernelDefinitions, Conv2dFilterLargerThanImageHasNoConfigurations) {
  const KernelDefinition conv = Conv2dDefinition();
  auto problem = conv.ValidateProblem(*ParseParamMapAssignments("C=1,K=1,H=2,W=8,R=3,S=3"));
  ASSERT_TRUE(problem.ok()) << problem.status();
  auto space = conv.Space(*problem, kMachine);
  ASSERT_TRUE(space.ok()) << space.status();
  EXPECT_EQ(space->size(), 0);
}

}  // namespace
}  // namespace ktune
