// The CUDA back end. Without a GPU (this machine, CI): every CUDA template compiles through the
// worker's own path (ktune-cuda-runner, NVRTC) for sm_80 and sm_90, a sample of each space with
// the default configuration, for every dtype, within the hardware's limits; compile errors and
// the cubin cache; the runner's host-side element conversions and comparisons (bf16 rounding,
// int8 inputs, exact int32 checks) against hand-computed values; and a machine without the
// NVIDIA driver gets a reason, not a crash. With a GPU: every kernel's default configuration and
// cuBLAS match the reference in every dtype, the low-precision gemm paths do with split-K and
// pipelining on odd sizes, and faults (illegal address, hang, wrong result, compile error)
// become the right status while the next candidate runs normally. GPU tests skip themselves,
// saying why, when no device is present.
#include "measurer/cuda_measurer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "kernels/kernel_registry.h"
#include "measurer/cuda/cuda_element_types.h"
#include "measurer/cuda/nvrtc_compiler.h"
#include "measurer/cuda_programs.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

using ::testing::HasSubstr;

// The runner under test: $KTUNE_CUDA_RUNNER (bench/cuda/run-on-gpu.sh runs a bundle elsewhere),
// else the one built beside this test.
std::string RunnerPath() {
  const char* env = std::getenv("KTUNE_CUDA_RUNNER");
  return env && *env ? env : KTUNE_CUDA_RUNNER;
}

// Problems every CUDA template is compiled for: a typical size and sizes that divide no tile.
std::vector<Problem> SampleProblems(const KernelDefinition& def) {
  std::vector<Problem> problems;
  Problem typical, odd;
  for (const ProblemParameter& p : def.problem) {
    const std::string& n = p.name;
    const bool filter = n.find("filter") != std::string::npos;
    typical[n] = int64_t{filter ? 15 : 4096};
    odd[n] = int64_t{filter ? 3 : (n == "K" || n == "cols") ? 77 : 999};
  }
  if (def.name == "cuda_gemm") odd["M"] = int64_t{16};
  for (const std::string& dtype : def.dtypes) {
    for (Problem p : {typical, odd}) {
      p["dtype"] = dtype;
      problems.push_back(p);
    }
  }
  return problems;
}

// `count` random valid configurations plus the default.
std::vector<Configuration> SampleConfigs(const KernelDefinition& def, const Problem& problem,
                                         int count, uint64_t seed) {
  absl::StatusOr<SearchSpace> space = def.Space(problem, MachineVariables{});
  EXPECT_TRUE(space.ok()) << space.status();
  if (!space.ok()) return {};
  EXPECT_GT(space->size(), 0) << def.name << " " << CanonicalJson(problem);
  std::vector<Configuration> configs = {*def.DefaultConfiguration(problem, MachineVariables{})};
  std::mt19937_64 rng(seed);
  for (int i = 0; i < count && space->size() > 0; ++i) {
    configs.push_back(space->ToConfiguration(
        space->PointAt(static_cast<int64_t>(rng() % static_cast<uint64_t>(space->size())))));
  }
  return configs;
}

TEST(CudaCompileTest, EveryTemplateCompilesForSm80AndSm90WithinTheHardwareLimits) {
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  testing::TempDir cache;
  CudaRunnerClient runner(RunnerPath());
  int kernels = 0;
  std::set<std::string> gemm_compiled;  // "dtype arch" of cuda_gemm programs that compiled
  for (const KernelDefinition* kernel : registry.List()) {
    const KernelDefinition& def = *kernel;
    if (def.language != "cuda") continue;
    if (!def.vendor_library.empty()) {
      // A vendor baseline has no template; its results are checked by a template's reference.
      for (const Problem& given : SampleProblems(def)) {
        auto reference = CudaReferenceProgram(def, *def.ValidateProblem(given), "sm_90");
        ASSERT_TRUE(reference.ok()) << reference.status();
        auto r = runner.Compile({*reference}, cache.path(), 0, 900'000);
        ASSERT_TRUE(r.ok()) << r.status();
        EXPECT_TRUE((*r)[0].ok()) << def.name << " reference: " << (*r)[0].log();
        EXPECT_NE(def.launch.reference_items, "1") << def.name;
      }
      continue;
    }
    ++kernels;
    for (const Problem& given : SampleProblems(def)) {
      absl::StatusOr<Problem> problem = def.ValidateProblem(given);
      ASSERT_TRUE(problem.ok()) << problem.status();
      const std::vector<Configuration> configs = SampleConfigs(def, *problem, 3, kernels);
      for (const std::string arch : {"sm_80", "sm_90"}) {
        std::vector<cuda_runner::Program> programs;
        std::vector<CudaLaunchGeometry> launches;
        absl::StatusOr<cuda_runner::Program> reference = CudaReferenceProgram(def, *problem, arch);
        ASSERT_TRUE(reference.ok()) << reference.status();
        programs.push_back(*reference);
        launches.emplace_back();
        for (const Configuration& config : configs) {
          absl::StatusOr<cuda_runner::Program> program =
              CudaKernelProgram(def, *problem, config, arch);
          ASSERT_TRUE(program.ok()) << program.status();
          absl::StatusOr<CudaLaunchGeometry> launch = CudaLaunchFor(def, *problem, config);
          ASSERT_TRUE(launch.ok())
              << def.name << " " << CanonicalJson(config) << ": " << launch.status();
          programs.push_back(*program);
          launches.push_back(*launch);
        }
        absl::StatusOr<std::vector<cuda_runner::CompileResult>> results =
            runner.Compile(programs, cache.path(), 0, 900'000);
        ASSERT_TRUE(results.ok()) << results.status();
        for (size_t i = 0; i < results->size(); ++i) {
          const cuda_runner::CompileResult& r = (*results)[i];
          const std::string what =
              absl::StrCat(def.name, " ", arch, " ", CanonicalJson(*problem), " ",
                           i == 0 ? "reference" : CanonicalJson(configs[i - 1]));
          ASSERT_TRUE(r.ok()) << what << "\n" << r.log();
          if (def.name == "cuda_gemm") {
            gemm_compiled.insert(FormatParamValue(problem->at("dtype")) + " " + arch);
          }
          EXPECT_GT(r.registers(), 0) << what << "\n" << r.log();
          EXPECT_LE(r.registers(), 255) << what;
          EXPECT_LE(r.shared_bytes(), 48 * 1024) << what;
          if (i > 0) {
            EXPECT_LE(r.registers() * launches[i].threads(), 65536)
                << what << ": " << r.registers() << " registers x " << launches[i].threads()
                << " threads cannot launch";
          }
        }
      }
    }
  }
  EXPECT_GE(kernels, 4);  // gemm, conv2d, reduce_rows, softmax
  EXPECT_EQ(gemm_compiled,
            (std::set<std::string>{"f32 sm_80", "f32 sm_90", "f16 sm_80", "f16 sm_90", "bf16 sm_80",
                                   "bf16 sm_90", "i8 sm_80", "i8 sm_90"}));
}

// The gemm's dtypes: the default configuration is valid for each on every sample problem, and
// the definition's numbers follow the element types (i8: bytes in, int32 out, exact).
TEST(CudaGemmDefinitionTest, EveryDtypeHasAValidDefaultAndItsOwnBytesAndTolerance) {
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  const KernelDefinition& gemm = **registry.Get("cuda_gemm");
  EXPECT_EQ(gemm.dtypes, (std::vector<std::string>{"f32", "f16", "bf16", "i8"}));
  for (const Problem& given : SampleProblems(gemm)) {
    absl::StatusOr<Problem> problem = gemm.ValidateProblem(given);
    ASSERT_TRUE(problem.ok()) << problem.status();
    absl::StatusOr<SearchSpace> space = gemm.Space(*problem, MachineVariables{});
    ASSERT_TRUE(space.ok()) << space.status();
    absl::StatusOr<Configuration> def = gemm.DefaultConfiguration(*problem, MachineVariables{});
    ASSERT_TRUE(def.ok()) << CanonicalJson(*problem) << ": " << def.status();
    absl::StatusOr<Point> point = space->ToPoint(*def);
    ASSERT_TRUE(point.ok()) << point.status();
    EXPECT_TRUE(space->IsValid(*point)) << CanonicalJson(*problem);
  }
  Problem p{{"M", int64_t{16}}, {"N", int64_t{999}}, {"K", int64_t{77}}};
  auto bytes = [&](const std::string& dtype) {
    p["dtype"] = dtype;
    return *gemm.EvaluateForProblem(gemm.bytes, p);
  };
  EXPECT_EQ(bytes("f32"), 4.0 * (16 * 77 + 77 * 999 + 16 * 999));
  EXPECT_EQ(bytes("bf16"), 2.0 * (16 * 77 + 77 * 999 + 16 * 999));
  EXPECT_EQ(bytes("i8"), 16.0 * 77 + 77 * 999 + 4.0 * 16 * 999);
  EXPECT_EQ(gemm.ToleranceFor("i8"), (std::pair<double, double>{0, 0}));
  // bf16 is coarser than f16 (8 significant bits against 11), never tighter.
  EXPECT_GE(gemm.ToleranceFor("bf16").first, gemm.ToleranceFor("f16").first);
  // The i8 space differs from f16's only where the unpadded byte tiles fit more stages.
  Problem big{{"M", int64_t{4096}}, {"N", int64_t{4096}}, {"K", int64_t{4096}}};
  big["dtype"] = std::string("f16");
  const int64_t f16_size = gemm.Space(big, MachineVariables{})->size();
  big["dtype"] = std::string("i8");
  EXPECT_GT(gemm.Space(big, MachineVariables{})->size(), f16_size);

  const KernelDefinition& cublas = **registry.Get("cuda_gemm_cublas");
  EXPECT_EQ(cublas.dtypes, (std::vector<std::string>{"f32", "f16", "bf16"}));
  p["dtype"] = std::string("i8");
  EXPECT_FALSE(cublas.ValidateProblem(p).ok());
}

// ---- Host-side element conversions of the runner (cuda_element_types.h) ----

float FloatOfBits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

TEST(CudaElementTypeTest, FloatToBf16RoundsToNearestEven) {
  EXPECT_EQ(cuda::FloatToBf16Bits(1.0f), 0x3F80);
  EXPECT_EQ(cuda::FloatToBf16Bits(-2.5f), 0xC020);
  EXPECT_EQ(cuda::FloatToBf16Bits(0.0f), 0x0000);
  EXPECT_EQ(cuda::FloatToBf16Bits(-0.0f), 0x8000);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: to the even one, 1.
  EXPECT_EQ(cuda::FloatToBf16Bits(FloatOfBits(0x3F808000)), 0x3F80);
  // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
  EXPECT_EQ(cuda::FloatToBf16Bits(FloatOfBits(0x3F818000)), 0x3F82);
  // Just above and just below halfway.
  EXPECT_EQ(cuda::FloatToBf16Bits(FloatOfBits(0x3F808001)), 0x3F81);
  EXPECT_EQ(cuda::FloatToBf16Bits(FloatOfBits(0x3F807FFF)), 0x3F80);
  // A carry out of the mantissa raises the exponent: (2 - 2^-9) rounds to 2.
  EXPECT_EQ(cuda::FloatToBf16Bits(FloatOfBits(0x3FFFC000)), 0x4000);
  // The largest float rounds past bf16's largest finite value to infinity.
  EXPECT_EQ(cuda::FloatToBf16Bits(std::numeric_limits<float>::max()), 0x7F80);
  EXPECT_EQ(cuda::FloatToBf16Bits(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_TRUE(std::isnan(
      cuda::Bf16BitsToFloat(cuda::FloatToBf16Bits(std::numeric_limits<float>::quiet_NaN()))));
  // A NaN whose payload sits only in the dropped bits stays a NaN (not infinity).
  EXPECT_TRUE(std::isnan(cuda::Bf16BitsToFloat(cuda::FloatToBf16Bits(FloatOfBits(0x7F800001)))));
  // Every finite bf16 value converts back to itself.
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float f = cuda::Bf16BitsToFloat(static_cast<uint16_t>(bits));
    if (std::isnan(f)) continue;
    ASSERT_EQ(cuda::FloatToBf16Bits(f), bits) << std::hex << bits;
  }
}

TEST(CudaElementTypeTest, FloatToHalfRoundsToNearestEven) {
  EXPECT_EQ(cuda::FloatToHalfBits(1.0f), 0x3C00);
  EXPECT_EQ(cuda::FloatToHalfBits(-2.0f), 0xC000);
  // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: to the even one, 1.
  EXPECT_EQ(cuda::FloatToHalfBits(1.0f + 0x1p-11f), 0x3C00);
  EXPECT_EQ(cuda::FloatToHalfBits(1.0f + 3 * 0x1p-11f), 0x3C02);
  EXPECT_EQ(cuda::FloatToHalfBits(65520.0f), 0x7C00);  // past 65504: infinity
  EXPECT_EQ(cuda::HalfBitsToFloat(0x3555), 0x1.554p-2f);
}

TEST(CudaElementTypeTest, BufferTypesFollowTheDtypeAndI8WritesInt32) {
  using cuda::CudaElementType;
  EXPECT_EQ(*cuda::CudaBufferElementType("i8", false), CudaElementType::kI8);
  EXPECT_EQ(*cuda::CudaBufferElementType("i8", true), CudaElementType::kI32);
  EXPECT_EQ(*cuda::CudaBufferElementType("bf16", false), CudaElementType::kBf16);
  EXPECT_EQ(*cuda::CudaBufferElementType("bf16", true), CudaElementType::kBf16);
  EXPECT_EQ(*cuda::CudaBufferElementType("f16", true), CudaElementType::kF16);
  EXPECT_EQ(*cuda::CudaBufferElementType("f32", true), CudaElementType::kF32);
  EXPECT_FALSE(cuda::CudaBufferElementType("f64", false).ok());
  for (const char* name : {"f32", "f16", "bf16", "i8", "i32"}) {
    absl::StatusOr<CudaElementType> t = cuda::ParseCudaElementType(name);
    ASSERT_TRUE(t.ok()) << name;
    EXPECT_STREQ(cuda::CudaElementTypeName(*t), name);
  }
  EXPECT_EQ(cuda::CudaElementBytes(CudaElementType::kI8), 1);
  EXPECT_EQ(cuda::CudaElementBytes(CudaElementType::kBf16), 2);
  EXPECT_EQ(cuda::CudaElementBytes(CudaElementType::kI32), 4);
}

TEST(CudaElementTypeTest, RandomInputsAreSeededAndWithinTheirTypesRange) {
  using cuda::CudaElementType;
  constexpr int64_t kCount = 20000;
  std::vector<unsigned char> a(kCount), b(kCount);
  std::mt19937_64 rng_a(42), rng_b(42);
  cuda::FillRandom(CudaElementType::kI8, kCount, rng_a, a.data());
  cuda::FillRandom(CudaElementType::kI8, kCount, rng_b, b.data());
  EXPECT_EQ(a, b);
  std::set<int> seen;
  for (int64_t i = 0; i < kCount; ++i) {
    seen.insert(static_cast<int>(cuda::CudaElementAt(CudaElementType::kI8, a.data(), i)));
  }
  EXPECT_EQ(seen.size(), 256u);  // all of [-128, 127], nothing else
  EXPECT_EQ(*seen.begin(), -128);
  EXPECT_EQ(*seen.rbegin(), 127);

  std::vector<unsigned char> bf(2 * kCount);
  std::mt19937_64 rng(7);
  cuda::FillRandom(CudaElementType::kBf16, kCount, rng, bf.data());
  double sum = 0;
  for (int64_t i = 0; i < kCount; ++i) {
    const double v = cuda::CudaElementAt(CudaElementType::kBf16, bf.data(), i);
    ASSERT_LE(std::fabs(v), 1.0);
    sum += v;
  }
  EXPECT_NEAR(sum / kCount, 0.0, 0.02);  // uniform in [-1, 1]: mean 0, sd of the mean 0.004
  EXPECT_GT(cuda::CudaMaxAbs(CudaElementType::kBf16, bf.data(), kCount), 0.99);

  // f32 inputs are the same draws as before the element types existed: uniform floats in order.
  std::vector<unsigned char> f(4 * 3);
  std::mt19937_64 rng_f(5), rng_ref(5);
  cuda::FillRandom(CudaElementType::kF32, 3, rng_f, f.data());
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(cuda::CudaElementAt(CudaElementType::kF32, f.data(), i), uniform(rng_ref));
  }
}

TEST(CudaElementTypeTest, Int32OutputsCompareExactlyAndUnwrittenOnesNeverPass) {
  using cuda::CudaElementType;
  const std::vector<int32_t> ref = {0, -5, 1 << 29, -(1 << 29) - 7};
  std::vector<int32_t> out = ref;
  auto bytes = [](const std::vector<int32_t>& v) {
    return reinterpret_cast<const unsigned char*>(v.data());
  };
  EXPECT_EQ(cuda::CudaCompareElements(CudaElementType::kI32, bytes(out), bytes(ref), 4, 0, "C"),
            "");
  // Off by one in a value that a float would round away (2^29 + 1 is not a float).
  out[2] += 1;
  EXPECT_THAT(cuda::CudaCompareElements(CudaElementType::kI32, bytes(out), bytes(ref), 4, 0, "C"),
              HasSubstr("1 of 4 elements differ from the reference; first at index 2: 536870913, "
                        "expected 536870912"));
  // An element the kernel never wrote keeps the poison: beyond any i8 gemm sum (|C| <= K * 2^14,
  // K <= 32768), so it fails whatever the tolerance a dtype might get.
  const unsigned char poison = cuda::CudaPoisonByte(CudaElementType::kI32);
  int32_t unwritten;
  std::memset(&unwritten, poison, 4);
  EXPECT_GT(std::fabs(static_cast<double>(unwritten)), 32768.0 * 128 * 128 * 2);
  out = ref;
  out[0] = unwritten;
  EXPECT_THAT(cuda::CudaCompareElements(CudaElementType::kI32, bytes(out), bytes(ref), 4, 1e6, "C"),
              HasSubstr("first at index 0"));

  // Floating-point outputs: poisoned with NaN, which fails any tolerance.
  const uint16_t ref_bf[2] = {cuda::FloatToBf16Bits(1.0f), cuda::FloatToBf16Bits(-3.0f)};
  uint16_t out_bf[2] = {cuda::FloatToBf16Bits(1.0078125f), 0};
  std::memset(&out_bf[1], cuda::CudaPoisonByte(CudaElementType::kBf16), 2);
  const std::string bf_mismatch = cuda::CudaCompareElements(
      CudaElementType::kBf16, reinterpret_cast<const unsigned char*>(out_bf),
      reinterpret_cast<const unsigned char*>(ref_bf), 2, 1e30, "output 0");
  EXPECT_THAT(bf_mismatch, HasSubstr("output 0: 1 of 2 elements differ"));
  EXPECT_THAT(bf_mismatch, HasSubstr("nan, expected -3"));
  out_bf[1] = ref_bf[1];  // one bf16 ulp off at 1, within 0.01
  EXPECT_EQ(cuda::CudaCompareElements(CudaElementType::kBf16,
                                      reinterpret_cast<const unsigned char*>(out_bf),
                                      reinterpret_cast<const unsigned char*>(ref_bf), 2, 0.01, "o"),
            "");
}

// `ktune kernels NAME --problem P --compile ARCH`: what a compiler team runs to check a template
// builds for an architecture, with its resource use, without a GPU.
TEST(CudaCompileTest, KernelsCommandCompilesSamplesForAnArchitecture) {
  auto r = testing::RunKtune({"kernels", "cuda_softmax", "--problem", "rows=64,cols=1000",
                              "--compile", "sm_80", "--samples", "2", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto compiled = nlohmann::json::parse(r.out)[0]["compiled"];
  ASSERT_EQ(compiled.size(), 3u);
  EXPECT_TRUE(compiled[0]["default"].get<bool>());
  for (const auto& c : compiled) {
    EXPECT_TRUE(c["ok"].get<bool>()) << c.dump();
    EXPECT_GT(c["registers"].get<int>(), 0) << c.dump();
  }
  auto cpu =
      testing::RunKtune({"kernels", "gemm", "--problem", "M=8,N=8,K=8", "--compile", "sm_80"});
  EXPECT_EQ(cpu.exit_code, 2);
  EXPECT_THAT(cpu.err, HasSubstr("needs a CUDA template"));
  // A name that is no architecture is the command line's mistake (exit 2, nothing compiled); a
  // well-formed one NVRTC does not know compiles no sample: exit 1 with NVRTC's word for it.
  auto bogus = testing::RunKtune({"kernels", "cuda_softmax", "--problem", "rows=64,cols=1000",
                                  "--compile", "sm_bogus", "--samples", "1"});
  EXPECT_EQ(bogus.exit_code, 2);
  EXPECT_THAT(bogus.err, HasSubstr("--compile sm_bogus: not a GPU architecture"));
  auto unknown = testing::RunKtune({"kernels", "cuda_softmax", "--problem", "rows=64,cols=1000",
                                    "--compile", "sm_12", "--samples", "1"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("no sample compiled for sm_12"));
  EXPECT_THAT(unknown.err, HasSubstr("gpu-architecture"));
}

TEST(CudaCompileTest, ReportsCompileErrorsWithTheCompilersMessage) {
  testing::TempDir cache;
  CudaRunnerClient runner(RunnerPath());
  cuda_runner::Program bad;
  bad.set_source("extern \"C\" __global__ void ktune_kernel(float* x) { x[0] = undefined_name; }");
  bad.set_arch("sm_90");
  bad.set_entry("ktune_kernel");
  auto results = runner.Compile({bad}, cache.path(), 1, 120'000);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_FALSE((*results)[0].ok());
  EXPECT_THAT((*results)[0].log(), HasSubstr("undefined_name"));
}

TEST(CudaCompileTest, CachesCubinsByProgramAndArchitecture) {
  testing::TempDir cache;
  CudaRunnerClient runner(RunnerPath());
  cuda_runner::Program p;
  p.set_source(
      "extern \"C\" __global__ void ktune_kernel(float* x, int n) {"
      " int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) x[i] *= KT_SCALE; }");
  p.set_arch("sm_80");
  p.set_entry("ktune_kernel");
  p.add_defines("KT_SCALE=2");
  auto first = runner.Compile({p}, cache.path(), 1, 120'000);
  auto again = runner.Compile({p}, cache.path(), 1, 120'000);
  p.set_arch("sm_90");
  auto other = runner.Compile({p}, cache.path(), 1, 120'000);
  ASSERT_TRUE(first.ok() && again.ok() && other.ok());
  ASSERT_TRUE((*first)[0].ok()) << (*first)[0].log();
  EXPECT_FALSE((*first)[0].cached());
  EXPECT_TRUE((*again)[0].cached());
  EXPECT_EQ((*again)[0].cubin_path(), (*first)[0].cubin_path());
  EXPECT_EQ((*again)[0].registers(), (*first)[0].registers());
  EXPECT_FALSE((*other)[0].cached());
  EXPECT_NE((*other)[0].cubin_path(), (*first)[0].cubin_path());
}

// Compiled again (another cache folder, so NVRTC really compiles), a program must report the
// same resources: NVRTC drops ptxas's report for programs it finds in the driver's compute cache,
// which made every recompiled program read 0 registers on an H100 machine until the runner
// turned that cache off. The first compiles run as one parallel batch, as the worker's do.
TEST(CudaCompileTest, RecompiledProgramsReportTheirResourcesAgain) {
  std::vector<cuda_runner::Program> programs;
  for (int n = 1; n <= 16; ++n) {
    cuda_runner::Program p;
    p.set_source(
        "extern \"C\" __global__ void ktune_kernel(float* x) {\n"
        "  __shared__ float s[KT_N * 64];\n"
        "  float r[KT_N];\n"
        "#pragma unroll\n"
        "  for (int i = 0; i < KT_N; ++i) r[i] = x[i * 1024 + threadIdx.x];\n"
        "  s[threadIdx.x] = r[0];\n"
        "  __syncthreads();\n"
        "  float t = 0;\n"
        "#pragma unroll\n"
        "  for (int i = 0; i < KT_N; ++i) t += r[i] * s[(threadIdx.x * 7 + i) % (KT_N * 64)];\n"
        "  x[threadIdx.x] = t;\n"
        "}\n");
    p.set_arch("sm_90");
    p.set_entry("ktune_kernel");
    p.add_defines(absl::StrCat("KT_N=", n));
    programs.push_back(p);
  }
  testing::TempDir batch_cache, alone_cache;
  CudaRunnerClient runner(RunnerPath());
  auto batch = runner.Compile(programs, batch_cache.path(), 16, 300'000);
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_EQ(batch->size(), programs.size());
  for (size_t i = 0; i < programs.size(); ++i) {
    auto alone = runner.Compile({programs[i]}, alone_cache.path(), 1, 120'000);
    ASSERT_TRUE(alone.ok()) << alone.status();
    const cuda_runner::CompileResult& b = (*batch)[i];
    const cuda_runner::CompileResult& a = (*alone)[0];
    ASSERT_TRUE(b.ok() && a.ok()) << b.log() << a.log();
    EXPECT_GT(a.registers(), 0) << a.log();
    EXPECT_EQ(a.shared_bytes(), 64 * 4 * static_cast<int>(i + 1)) << a.log();
    EXPECT_EQ(b.registers(), a.registers()) << "program " << i << ":\n" << b.log();
    EXPECT_EQ(b.shared_bytes(), a.shared_bytes()) << "program " << i << ":\n" << b.log();
  }
}

TEST(CudaCompileTest, ParsesPtxasReportOfTheRightEntry) {
  const std::string log =
      "ptxas info    : Compiling entry function 'ktune_reference' for 'sm_90'\n"
      "ptxas info    : Used 12 registers, 0 bytes smem\n"
      "ptxas info    : Compiling entry function 'ktune_kernel' for 'sm_90'\n"
      "ptxas         .     16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n"
      "ptxas info    : Used 128 registers, used 1 barriers, 33280 bytes smem, 400 bytes cmem[0]\n";
  cuda_runner::CompileResult r;
  cuda::ParsePtxasReport(log, "ktune_kernel", &r);
  EXPECT_EQ(r.registers(), 128);
  EXPECT_EQ(r.shared_bytes(), 33280);
  EXPECT_EQ(r.spill_bytes(), 12);
}

TEST(CudaLaunchTest, GeometryOutsideTheHardwareLimitsIsRefused) {
  KernelDefinition def;
  def.name = "k";
  def.language = "cuda";
  def.parameters = {{"B", {64, 2048}, true}};
  def.problem = {{"n", 1, 1 << 30}};
  def.launch.grid = {"(n + B - 1) // B", "1", "1"};
  def.launch.block = {"B", "1", "1"};
  const Problem problem{{"n", int64_t{1000}}};
  auto ok = CudaLaunchFor(def, problem, {{"B", int64_t{64}}});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->grid[0], 16);
  EXPECT_EQ(ok->block[0], 64);
  auto too_big = CudaLaunchFor(def, problem, {{"B", int64_t{2048}}});
  EXPECT_FALSE(too_big.ok());
  EXPECT_THAT(too_big.status().message(), HasSubstr("block size x"));
}

// ---- With a GPU ----

// The runner's description of cuda:0, or the reason there is none.
const cuda_runner::DeviceDescription& Gpu() {
  static const cuda_runner::DeviceDescription* d = [] {
    CudaRunnerClient runner(RunnerPath());
    auto desc = runner.Describe(0);
    auto* out = new cuda_runner::DeviceDescription;
    if (desc.ok()) {
      *out = *desc;
    } else {
      out->set_reason(std::string(desc.status().message()));
    }
    return out;
  }();
  return *d;
}

#define KTUNE_REQUIRE_GPU() \
  if (!Gpu().available()) GTEST_SKIP() << "no CUDA device: " << Gpu().reason()

TEST(CudaDeviceTest, WithoutAGpuTheRunnerSaysWhyInsteadOfCrashing) {
  if (Gpu().available()) GTEST_SKIP() << "a GPU is present (" << Gpu().name() << ")";
  EXPECT_FALSE(Gpu().reason().empty());
  auto measurer = CudaMeasurer::Create(nullptr, CudaMeasurerOptions{RunnerPath()});
  ASSERT_FALSE(measurer.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(measurer.status())) << measurer.status();
  EXPECT_THAT(measurer.status().message(), HasSubstr("no usable CUDA device cuda:0"));
}

// The toolkit's driver stub resolves every driver function the runner uses (a missing or
// renamed symbol would be reported instead) and refuses to initialise.
TEST(CudaDeviceTest, TheDriverStubLoadsButIsReportedAsNoDriver) {
  if (Gpu().available()) GTEST_SKIP() << "a GPU is present (" << Gpu().name() << ")";
  testing::TempDir dir;
  ASSERT_EQ(::symlink(KTUNE_CUDA_DRIVER_STUB, dir.File("libcuda.so.1").c_str()), 0);
  const char* old = std::getenv("LD_LIBRARY_PATH");
  const std::string saved = old ? old : "";
  ::setenv("LD_LIBRARY_PATH", dir.path().c_str(), 1);
  CudaRunnerClient runner(RunnerPath());
  auto desc = runner.Describe(0);
  if (old)
    ::setenv("LD_LIBRARY_PATH", saved.c_str(), 1);
  else
    ::unsetenv("LD_LIBRARY_PATH");
  ASSERT_TRUE(desc.ok()) << desc.status();
  EXPECT_FALSE(desc->available());
  EXPECT_THAT(desc->reason(), HasSubstr("CUDA_ERROR_STUB_LIBRARY"));
  EXPECT_FALSE(desc->nvrtc_version().empty());
}

CudaMeasurerOptions FastOptions() {
  CudaMeasurerOptions o;
  o.runner_path = RunnerPath();
  o.min_repeats = 3;
  o.max_repeats = 5;
  o.max_seconds = 0.05;
  return o;
}

TEST(CudaDeviceTest, FingerprintNamesTheGpuAndItsSoftware) {
  KTUNE_REQUIRE_GPU();
  const DeviceInfo info = CudaDeviceInfo(Gpu());
  EXPECT_EQ(info.device_class, Gpu().name());
  EXPECT_THAT(info.fingerprint_json, HasSubstr("compute_capability"));
  EXPECT_THAT(info.fingerprint_json, HasSubstr("driver_version"));
  EXPECT_THAT(info.fingerprint_json, HasSubstr("nvrtc_version"));
  EXPECT_GT(Gpu().sm_count(), 0);
}

TEST(CudaMeasurerTest, DefaultConfigurationsAndCublasMatchTheReference) {
  KTUNE_REQUIRE_GPU();
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  auto measurer = CudaMeasurer::Create(&registry, FastOptions());
  ASSERT_TRUE(measurer.ok()) << measurer.status();
  for (const KernelDefinition* kernel : registry.List()) {
    const KernelDefinition& def = *kernel;
    if (def.language != "cuda") continue;
    for (const Problem& given : SampleProblems(def)) {
      Problem problem = *def.ValidateProblem(given);
      TaskKey task{def.name, def.Version(), problem, (*measurer)->device().device_class};
      std::vector<Configuration> configs = SampleConfigs(def, problem, 2, 7);
      auto results = (*measurer)->Measure(task, configs);
      ASSERT_TRUE(results.ok()) << results.status();
      for (size_t i = 0; i < configs.size(); ++i) {
        EXPECT_EQ((*results)[i].status, MeasurementStatus::kOk)
            << def.name << " " << CanonicalJson(problem) << " " << CanonicalJson(configs[i]) << ": "
            << (*results)[i].message;
      }
    }
  }
}

// The tensor-core gemm in bf16 and i8 beyond the default: split-K (bf16 and int atomics into a
// zeroed C), cp.async pipelines, tiles that do not divide the problem and row lengths that allow
// no 16-byte copy (K = 77, N = 999: the element-by-element staging). i8 must be exact (its
// tolerance is zero), so one wrong int32 anywhere fails.
TEST(CudaMeasurerTest, LowPrecisionGemmWithSplitKAndPipelinesMatchesTheReference) {
  KTUNE_REQUIRE_GPU();
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  const KernelDefinition& gemm = **registry.Get("cuda_gemm");
  auto measurer = CudaMeasurer::Create(&registry, FastOptions());
  ASSERT_TRUE(measurer.ok()) << measurer.status();
  const std::vector<std::array<int64_t, 3>> sizes = {
      {16, 999, 77}, {100, 256, 4096}, {256, 96, 64}};
  for (const std::string dtype : {"bf16", "i8"}) {
    for (const auto& [m, n, k] : sizes) {
      Problem problem = *gemm.ValidateProblem({{"M", m}, {"N", n}, {"K", k}, {"dtype", dtype}});
      const Configuration base = *gemm.DefaultConfiguration(problem, MachineVariables{});
      std::vector<Configuration> configs = {base};
      auto with = [&](std::initializer_list<std::pair<const char*, int64_t>> changes) {
        Configuration c = base;
        for (const auto& [name, value] : changes) c[name] = value;
        return c;
      };
      configs.push_back(with({{"KWG", 16}, {"SPLITK", 4}, {"STAGES", 3}}));
      configs.push_back(with({{"MWG", 32}, {"NWG", 128}, {"KWG", 16}, {"MDIMC", 8},
                              {"NDIMC", 16}, {"STAGES", 2}, {"SPLITK", 2}}));
      configs.push_back(with({{"MWG", 128}, {"NWG", 128}, {"MDIMC", 16}, {"NDIMC", 32},
                              {"STAGES", 4}}));
      SearchSpace space = *gemm.Space(problem, MachineVariables{});
      std::vector<Configuration> valid;
      for (const Configuration& c : configs) {
        if (space.IsValid(*space.ToPoint(c))) valid.push_back(c);
      }
      ASSERT_GE(valid.size(), 2u) << CanonicalJson(problem);  // the default and a split-K one
      TaskKey task{gemm.name, gemm.Version(), problem, (*measurer)->device().device_class};
      auto results = (*measurer)->Measure(task, valid);
      ASSERT_TRUE(results.ok()) << results.status();
      for (size_t i = 0; i < valid.size(); ++i) {
        EXPECT_EQ((*results)[i].status, MeasurementStatus::kOk)
            << CanonicalJson(problem) << " " << CanonicalJson(valid[i]) << ": "
            << (*results)[i].message;
      }
    }
  }
}

// A client CUDA kernel whose compile-time parameter FAULT picks a misbehaviour: y = 2x, then
// 0 nothing, 1 an illegal address, 2 a loop that never ends, 3 one wrong value, 4 code that
// does not compile.
constexpr char kFaultySource[] = R"(
#if KT_REFERENCE
extern "C" __global__ void ktune_reference(const float* x, float* y, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    y[i] = 2 * x[i];
}
#else
#if KT_FAULT == 4
this line is not CUDA;
#endif
extern "C" __global__ void ktune_kernel(const float* x, float* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = 2 * x[i];
  if (KT_FAULT == 1 && i == 0) *(volatile float*)(0x10) = 1;
  if (KT_FAULT == 2 && i == 0) { volatile int spin = 0; while (true) spin = spin + 1; }
  if (KT_FAULT == 3 && i == n / 2) y[i] += 1;
}
#endif
)";

TEST(CudaMeasurerTest, FaultsBecomeTheRightStatusAndTheNextCandidateRuns) {
  KTUNE_REQUIRE_GPU();
  KernelRegistry registry;
  KernelDefinition d;
  d.name = "faulty_cuda";
  d.language = "cuda";
  d.description = "y = 2x with a fault";
  d.source = kFaultySource;
  d.parameters = {{"FAULT", {0, 1, 2, 3, 4}, true}};
  d.problem = {{"n", 1, 1 << 24}};
  d.buffers = {{"x", "n", false}, {"y", "n", true}};
  d.flops = "n";
  d.bytes = "8 * n";
  d.default_config = {{"FAULT", "0"}};
  d.launch.grid = {"(n + 255) // 256", "1", "1"};
  d.launch.block = {"256", "1", "1"};
  d.launch.reference_items = "n";
  ASSERT_TRUE(registry.Register(d).ok());
  CudaMeasurerOptions options = FastOptions();
  options.run_timeout_ms = 5000;
  auto measurer = CudaMeasurer::Create(&registry, options);
  ASSERT_TRUE(measurer.ok()) << measurer.status();
  TaskKey task{"faulty_cuda", "", {{"n", int64_t{100000}}}, (*measurer)->device().device_class};
  auto config = [](int64_t fault) { return Configuration{{"FAULT", fault}}; };
  auto results = (*measurer)->Measure(task, {config(0), config(1), config(0), config(2), config(0),
                                             config(3), config(0), config(4), config(0)});
  ASSERT_TRUE(results.ok()) << results.status();
  const std::vector<MeasurementStatus> expected = {
      MeasurementStatus::kOk, MeasurementStatus::kRuntimeError,
      MeasurementStatus::kOk, MeasurementStatus::kTimeout,
      MeasurementStatus::kOk, MeasurementStatus::kWrongResult,
      MeasurementStatus::kOk, MeasurementStatus::kCompileError,
      MeasurementStatus::kOk};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ((*results)[i].status, expected[i]) << i << ": " << (*results)[i].message;
  }
  EXPECT_THAT((*results)[1].message, HasSubstr("CUDA_ERROR"));
  EXPECT_THAT((*results)[7].message, HasSubstr("error"));
  EXPECT_GE((*measurer)->runner_starts(), 3);  // after the illegal address and the hang
}

}  // namespace
}  // namespace ktune
