// gemm_lowp (and its oneDNN peers) called directly through the kernel ABI, as the runner calls
// them (prepare, runs, release), against gemm's double-accumulating reference: each precision
// must stay within an error bound that holds for honest arithmetic and that a wrong index, a
// missing edge tile or a lost k block would break by orders of magnitude. Errors are
// max|out - ref| / max|ref| over the whole output unless a test says otherwise.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/builtin_cpu_kernels.h"
#include "kernels/cpu/gemm_lowp_s8_tile.h"
#include "kernels/kernel_registry.h"

namespace ktune {
namespace {

struct Gemm {
  int64_t M, N, K;
  std::vector<float> A, B, C;
};

Gemm Uniform(int64_t M, int64_t N, int64_t K, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  Gemm g{M, N, K, std::vector<float>(M * K), std::vector<float>(K * N), std::vector<float>(M * N)};
  for (float& x : g.A) x = dist(rng);
  for (float& x : g.B) x = dist(rng);
  return g;
}

// Calls fn on g (C is poisoned first); returns its return value.
int Call(ktune_cpu_kernel_fn fn, Gemm& g, const std::vector<int64_t>& config) {
  const int64_t problem[3] = {g.M, g.N, g.K};
  float* buffers[3] = {g.A.data(), g.B.data(), g.C.data()};
  const int64_t elements[3] = {g.M * g.K, g.K * g.N, g.M * g.N};
  const ktune_cpu_call call{problem, 3, config.data(), static_cast<int32_t>(config.size()),
                            buffers, elements, 3};
  if (fn == nullptr) return 0;
  return fn(&call);
}

// Runs `kernel` with `config` the way the runner does: prepare, two runs, release.
int PrepareRunRelease(const cpu::BuiltinCpuKernel& kernel, Gemm& g,
                      const std::vector<int64_t>& config) {
  int rc = Call(kernel.prepare, g, config);
  if (rc == 0) {
    std::fill(g.C.begin(), g.C.end(), std::nanf(""));
    rc = Call(kernel.run, g, config);
    if (rc == 0) {
      std::fill(g.C.begin(), g.C.end(), std::nanf(""));
      rc = Call(kernel.run, g, config);  // a second run reuses the prepared weights
    }
  }
  Call(kernel.release, g, config);
  return rc;
}

std::vector<float> Reference(Gemm g) {
  EXPECT_EQ(Call(cpu::kGemmCpuKernel.reference, g, {}), 0);
  return g.C;
}

// max|out - ref| / max|ref|; NaN (an element never written) gives infinity.
double RelError(const std::vector<float>& out, const std::vector<float>& ref) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::isnan(out[i])) return INFINITY;
    err = std::max(err, std::fabs(double{out[i]} - ref[i]));
    scale = std::max(scale, std::fabs(double{ref[i]}));
  }
  return err / scale;
}

// gemm_lowp's configuration, definition order.
struct Lowp {
  int64_t precision, scales = 0, pack = 1, MR = 4, NR = 16, MC = 48, KC = 128, NC = 384;
  // (values outside the definition's lists where that reaches more blocks: the kernel accepts
  // any KC that is a multiple of 4, any NC that is a multiple of NR, any MC of MR)
  int64_t threads = 1;
  std::vector<int64_t> Values() const {
    return {precision, scales, pack, MR, NR, MC, KC, NC, threads};
  }
};

struct PathCase {
  std::string problem_name;
  int64_t M, N, K;
};

void PrintTo(const PathCase& c, std::ostream* os) {
  *os << "M=" << c.M << ",N=" << c.N << ",K=" << c.K;
}

class GemmLowpPaths : public ::testing::TestWithParam<PathCase> {};

// Every precision, tile and thread count on problems with edge tiles in M, N and K, several
// MC, KC and NC blocks (M=50 > 48, K=300 > 2 * 128, N=800 > 2 * 384) and a single row.
TEST_P(GemmLowpPaths, EachPrecisionIsWithinItsBound) {
  const PathCase& c = GetParam();
  Gemm g = Uniform(c.M, c.N, c.K, 7);
  const std::vector<float> ref = Reference(g);
  struct Precision {
    int64_t precision, scales;
    double at_least, at_most;  // the error bounds
  };
  // fp32: rounding only. fp16: B rounded to 11 significant bits (2^-12 relative each).
  // int8: A with 127 steps per row, B with 127 steps per column or tensor; the lower bounds
  // show the precision really was reduced.
  for (const Precision& p : {Precision{32, 0, 0, 1e-5}, Precision{16, 0, 1e-6, 1e-3},
                             Precision{8, 0, 1e-4, 2e-2}, Precision{8, 1, 1e-4, 2e-2}}) {
    for (int64_t mr : {1, 2, 4, 6, 8}) {
      for (int64_t nr : {8, 16, 24, 32}) {
        if (mr * nr > (p.precision == 8 ? 96 : 192)) continue;  // not built
        for (int64_t threads : {1, 2}) {
          Lowp config{p.precision, p.scales};
          config.MR = mr, config.NR = nr, config.threads = threads;
          // precision 32: all three ways (gemm.cc in place, packed per run; prepacked B)
          config.pack = p.precision == 32 ? (mr + nr / 8 + threads) % 3 : 1;
          SCOPED_TRACE(::testing::Message() << "precision " << p.precision << " scales "
                                            << p.scales << " MR " << mr << " NR " << nr
                                            << " threads " << threads);
          ASSERT_EQ(PrepareRunRelease(cpu::kGemmLowpCpuKernel, g, config.Values()), 0);
          const double err = RelError(g.C, ref);
          EXPECT_LE(err, p.at_most);
          EXPECT_GE(err, p.at_least);
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Problems, GemmLowpPaths,
                         ::testing::Values(PathCase{"odd", 37, 45, 29},
                                           PathCase{"blocks", 50, 800, 300},
                                           PathCase{"one_row", 1, 200, 515}),
                         [](const auto& info) { return info.param.problem_name; });

// Per-column error: the worst column's max|err| / max|ref| of that column.
double WorstColumnError(const Gemm& g, const std::vector<float>& ref) {
  double worst = 0;
  for (int64_t j = 0; j < g.N; ++j) {
    double err = 0, scale = 0;
    for (int64_t i = 0; i < g.M; ++i) {
      err = std::max(err, std::fabs(double{g.C[i * g.N + j]} - ref[i * g.N + j]));
      scale = std::max(scale, std::fabs(double{ref[i * g.N + j]}));
    }
    worst = std::max(worst, err / scale);
  }
  return worst;
}

// Columns of B spanning four decades: one scale for the tensor leaves the small columns a few
// quantisation steps; a scale per column gives each all 127.
TEST(GemmLowp, PerColumnScalesBeatPerTensorOnUnevenColumns) {
  Gemm g = Uniform(16, 64, 256, 3);
  for (int64_t k = 0; k < g.K; ++k)
    for (int64_t j = 0; j < g.N; ++j) g.B[k * g.N + j] *= std::pow(10.f, (j % 5) - 3.f);
  const std::vector<float> ref = Reference(g);
  Lowp tensor{8, 0}, column{8, 1};
  ASSERT_EQ(PrepareRunRelease(cpu::kGemmLowpCpuKernel, g, tensor.Values()), 0);
  const double tensor_err = WorstColumnError(g, ref);
  ASSERT_EQ(PrepareRunRelease(cpu::kGemmLowpCpuKernel, g, column.Values()), 0);
  const double column_err = WorstColumnError(g, ref);
  EXPECT_LE(column_err, 2e-2);
  EXPECT_GT(tensor_err, 10 * column_err) << "per tensor " << tensor_err << ", per column "
                                         << column_err;
}

// The prepare contract: a run needs a prepare of the same call, and invalid configurations are
// refused by prepare and run alike.
TEST(GemmLowp, RunsNeedAPrepareOfTheSameCallAndInvalidConfigsAreRefused) {
  Gemm g = Uniform(9, 40, 33, 5);
  const cpu::BuiltinCpuKernel& k = cpu::kGemmLowpCpuKernel;
  const std::vector<int64_t> int8 = Lowp{8, 1}.Values(), fp16 = Lowp{16}.Values();
  EXPECT_NE(Call(k.run, g, int8), 0);  // never prepared
  ASSERT_EQ(Call(k.prepare, g, int8), 0);
  EXPECT_NE(Call(k.run, g, fp16), 0);  // prepared for another configuration
  EXPECT_EQ(Call(k.run, g, int8), 0);
  Call(k.release, g, int8);
  EXPECT_NE(Call(k.run, g, int8), 0);  // released

  std::vector<std::vector<int64_t>> invalid;
  for (auto [index, value] : std::vector<std::pair<int, int64_t>>{
           {0, 12}, {1, 2}, {2, 3}, {2, 2}, {3, 3}, {4, 12}, {5, 50}, {6, 130}, {7, 100}, {8, 0}}) {
    std::vector<int64_t> v = int8;
    v[index] = value;
    invalid.push_back(v);
  }
  Lowp spills{8};
  spills.MR = 6, spills.NR = 32;  // int8 tiles beyond 12 accumulators are not built
  invalid.push_back(spills.Values());
  spills.precision = 16, spills.MR = 8;  // float tiles beyond 24 accumulators neither
  invalid.push_back(spills.Values());
  invalid.push_back({8, 0, 1});  // too few values
  for (const std::vector<int64_t>& v : invalid) {
    SCOPED_TRACE(::testing::PrintToString(v));
    EXPECT_NE(PrepareRunRelease(k, g, v), 0);
  }
}

// A uniform sample of the definition's space for small odd problems: every configuration
// prepares, runs and passes the definition's own tolerance.
TEST(GemmLowp, SampledConfigurationsRunAndMatch) {
  const KernelDefinition def = GemmLowpDefinition();
  ASSERT_TRUE(def.Validate().ok()) << def.Validate();
  std::mt19937_64 rng(11);
  for (const char* text : {"M=37,N=45,K=29", "M=1,N=300,K=130", "M=70,N=17,K=700"}) {
    SCOPED_TRACE(text);
    auto problem = def.ValidateProblem(*ParseParamMapAssignments(text));
    ASSERT_TRUE(problem.ok()) << problem.status();
    auto space = def.Space(*problem, MachineVariables{2});
    ASSERT_TRUE(space.ok()) << space.status();
    const std::vector<int64_t> p = *def.ProblemValues(*problem);
    Gemm g = Uniform(p[0], p[1], p[2], 13);
    const std::vector<float> ref = Reference(g);
    for (int n = 0; n < 40; ++n) {
      const Configuration config =
          space->ToConfiguration(space->SampleUniform(absl::BitGenRef(rng)));
      SCOPED_TRACE(CanonicalJson(config));
      ASSERT_EQ(PrepareRunRelease(cpu::kGemmLowpCpuKernel, g, *def.ConfigValues(config)), 0);
      EXPECT_LE(RelError(g.C, ref), 2e-2) << "uniform inputs: int8 errs by about 1e-2 at most";
    }
  }
}

// The spaces of the benchmark's problems: a few thousand configurations, the default inside.
TEST(GemmLowp, TypicalSpaces) {
  const KernelDefinition def = GemmLowpDefinition();
  for (const char* text : {"M=1024,N=1024,K=1024", "M=32,N=4096,K=4096", "M=1,N=4096,K=4096"}) {
    SCOPED_TRACE(text);
    auto problem = def.ValidateProblem(*ParseParamMapAssignments(text));
    ASSERT_TRUE(problem.ok()) << problem.status();
    auto space = def.Space(*problem, MachineVariables{2});
    ASSERT_TRUE(space.ok()) << space.status();
    EXPECT_GE(space->size(), 300);
    EXPECT_LE(space->size(), 6000);
    auto defaults = def.DefaultConfiguration(*problem, MachineVariables{2});
    ASSERT_TRUE(defaults.ok()) << defaults.status();
    auto point = space->ToPoint(*defaults);
    ASSERT_TRUE(point.ok()) << point.status();
    EXPECT_TRUE(space->IsValid(*point));
  }
}

// The AVX-VNNI tiles (gemm_lowp_vnni.cc) replace maddubs + madd + add by one vpdpbusd: on the
// same quantised inputs they must give exactly what the AVX2 tiles give, for every tile shape,
// edge tiles (mr < MR, nr < NR) and accumulation onto C (first = false) included.
TEST(GemmLowp, AvxVnniTilesGiveExactlyWhatAvx2TilesGive) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avxvnni")) GTEST_SKIP() << "this CPU has no AVX-VNNI";
  std::mt19937_64 rng(7);
  const int64_t k4 = 67;  // not a multiple of the k loop's unroll
  for (int MR : {1, 2, 4, 6, 8}) {
    for (int NR : {8, 16, 24, 32}) {
      const cpu::S8TileFn avx2 = cpu::S8TileForAvx2(MR, NR);
      const cpu::S8TileFn vnni = cpu::S8TileForAvxVnni(MR, NR);
      ASSERT_EQ(avx2 == nullptr, vnni == nullptr) << MR << "x" << NR;
      if (avx2 == nullptr) continue;
      std::vector<int32_t> a(k4 * MR), colsum(NR), zero(MR);
      std::vector<int8_t> b(k4 * NR * 4);
      std::vector<float> a_scale(MR), b_scale(NR);
      std::uniform_int_distribution<int> u7(0, 127), s8(-127, 127);
      std::uniform_real_distribution<float> scale(0.001f, 0.02f);
      for (int32_t& w : a) {
        w = u7(rng) | u7(rng) << 8 | u7(rng) << 16 | u7(rng) << 24;
      }
      for (int8_t& x : b) x = static_cast<int8_t>(s8(rng));
      for (int32_t& x : colsum) x = s8(rng) * 100;
      for (int32_t& x : zero) x = u7(rng);
      for (float& x : a_scale) x = scale(rng);
      for (float& x : b_scale) x = scale(rng);
      for (auto [mr, nr] : {std::pair{MR, NR}, std::pair{std::max(1, MR - 1), NR - 3}}) {
        for (bool first : {true, false}) {
          std::vector<float> c_avx2(MR * NR, 1.5f), c_vnni(MR * NR, 1.5f);
          avx2(k4, a.data(), b.data(), a_scale.data(), zero.data(), b_scale.data(),
               colsum.data(), c_avx2.data(), NR, first, mr, nr);
          vnni(k4, a.data(), b.data(), a_scale.data(), zero.data(), b_scale.data(),
               colsum.data(), c_vnni.data(), NR, first, mr, nr);
          EXPECT_EQ(c_avx2, c_vnni) << MR << "x" << NR << " tile, " << mr << "x" << nr
                                    << (first ? ", first k block" : ", accumulating");
        }
      }
    }
  }
}

// oneDNN's fp32 gemm is a float32 gemm; its int8 gemm, quantised by the same code, computes the
// same integers as gemm_lowp's int8 path, so the two agree far more closely than either agrees
// with the reference.
TEST(GemmOneDnn, MatchesTheReferenceAndTheInt8PathOfGemmLowp) {
  for (int64_t threads : {1, 2}) {
    Gemm g = Uniform(37, 301, 129, 17);
    const std::vector<float> ref = Reference(g);
    ASSERT_EQ(PrepareRunRelease(cpu::kGemmOneDnnCpuKernel, g, {threads}), 0);
    EXPECT_LE(RelError(g.C, ref), 1e-5);
    for (int64_t scales : {0, 1}) {
      SCOPED_TRACE(::testing::Message() << "threads " << threads << " scales " << scales);
      ASSERT_EQ(PrepareRunRelease(cpu::kGemmOneDnnInt8CpuKernel, g, {threads, scales}), 0);
      const std::vector<float> onednn = g.C;
      const double err = RelError(onednn, ref);
      EXPECT_LE(err, 2e-2);
      EXPECT_GE(err, 1e-4);
      Lowp lowp{8, scales};
      lowp.threads = threads;
      ASSERT_EQ(PrepareRunRelease(cpu::kGemmLowpCpuKernel, g, lowp.Values()), 0);
      EXPECT_LE(RelError(g.C, onednn), 1e-5);
    }
  }
  Gemm g = Uniform(4, 8, 8, 1);
  EXPECT_NE(Call(cpu::kGemmOneDnnInt8CpuKernel.run, g, {1, 1}), 0);  // never prepared
}

}  // namespace
}  // namespace ktune
