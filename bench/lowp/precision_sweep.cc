// ktune-lowp-sweep: times given configurations of built-in CPU gemm kernels, the way the runner
// runs them (prepare untimed, then timed runs, then release), on inputs uniform in [-1, 1], and
// prints each one's fastest time and its error against gemm's double-accumulating reference,
// normwise (max|out - ref| / max|ref|) and componentwise (max |out - ref| / (|A||B|), what
// gemm_lowp stores). Rounds interleave the configurations, so that a change in the
// machine's load hits all of them alike. For the gemm kernels only (problem M, N, K).
//
//   ktune-lowp-sweep 1 4096 4096 gemm_lowp:16,0,1,1,32,48,2048,6144,1 gemm_onednn:1
//
// A tool for quick, repeatable comparisons of chosen points (say, the best fp16 against the best
// fp32 point of a space); tuning itself is `ktune tune`.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu/builtin_cpu_kernels.h"

namespace {

using ktune::cpu::BuiltinCpuKernel;

double NowMs() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s M N K KERNEL:CONFIG... (CONFIG: comma-separated values)\n",
                 argv[0]);
    return 2;
  }
  const int64_t M = std::atoll(argv[1]), N = std::atoll(argv[2]), K = std::atoll(argv[3]);
  std::vector<float> A(M * K), B(K * N), C(M * N), R(M * N);
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  for (float& x : A) x = uniform(rng);
  for (float& x : B) x = uniform(rng);
  int64_t problem[3] = {M, N, K};
  float* buffers[3] = {A.data(), B.data(), R.data()};
  int64_t elements[3] = {M * K, K * N, M * N};
  const ktune_cpu_call reference{problem, 3, nullptr, 0, buffers, elements, 3};
  ktune::cpu::kGemmCpuKernel.reference(&reference);
  double max_ref = 0;
  for (float x : R) max_ref = std::max(max_ref, std::fabs(double{x}));
  // |A| |B|: each element's terms' magnitude, for the componentwise error gemm_lowp stores.
  std::vector<float> absA(A.size()), absB(B.size()), magnitude(M * N);
  for (size_t i = 0; i < A.size(); ++i) absA[i] = std::fabs(A[i]);
  for (size_t i = 0; i < B.size(); ++i) absB[i] = std::fabs(B[i]);
  float* abs_buffers[3] = {absA.data(), absB.data(), magnitude.data()};
  const ktune_cpu_call terms{problem, 3, nullptr, 0, abs_buffers, elements, 3};
  ktune::cpu::kGemmCpuKernel.reference(&terms);
  buffers[2] = C.data();

  std::vector<const BuiltinCpuKernel*> kernels;
  std::vector<std::vector<int64_t>> configs;
  for (int a = 4; a < argc; ++a) {
    const std::string arg = argv[a];
    const size_t colon = arg.find(':');
    kernels.push_back(ktune::cpu::FindBuiltinCpuKernel(arg.substr(0, colon)));
    if (colon == std::string::npos || kernels.back() == nullptr) {
      std::fprintf(stderr, "%s: not KERNEL:CONFIG with a built-in kernel\n", argv[a]);
      return 2;
    }
    std::vector<int64_t> values;
    std::stringstream text(arg.substr(colon + 1));
    for (std::string v; std::getline(text, v, ',');) values.push_back(std::atoll(v.c_str()));
    configs.push_back(values);
  }
  std::vector<double> best(configs.size(), INFINITY), error(configs.size(), NAN),
      componentwise_error(configs.size(), NAN);
  constexpr int kRounds = 5;
  constexpr double kSampleMs = 100;
  for (int round = 0; round < kRounds; ++round) {
    for (size_t c = 0; c < configs.size(); ++c) {
      const BuiltinCpuKernel* kernel = kernels[c];
      const ktune_cpu_call call{problem, 3, configs[c].data(),
                                static_cast<int32_t>(configs[c].size()), buffers, elements, 3};
      if (kernel->prepare != nullptr && kernel->prepare(&call) != 0) continue;
      if (kernel->run(&call) == 0) {
        double err = 0, componentwise = 0;
        for (int64_t i = 0; i < M * N; ++i) {
          const double diff = std::fabs(double{C[i]} - R[i]);
          err = std::max(err, diff);
          componentwise = std::max(componentwise, diff / std::max(double{magnitude[i]}, 1e-38));
        }
        error[c] = err / max_ref;
        componentwise_error[c] = componentwise;
        int runs = 0;
        const double start = NowMs();
        double elapsed = 0;
        while (elapsed < kSampleMs) {
          kernel->run(&call);
          ++runs;
          elapsed = NowMs() - start;
        }
        best[c] = std::min(best[c], elapsed / runs);
      }
      if (kernel->release != nullptr) kernel->release(&call);
    }
  }
  for (size_t c = 0; c < configs.size(); ++c) {
    if (std::isinf(best[c])) {
      std::printf("%s: refused\n", argv[4 + c]);
      continue;
    }
    std::printf("M=%lld,N=%lld,K=%lld %s: %.4f ms %.1f GFLOP/s rel_error %.2e componentwise %.2e\n",
                static_cast<long long>(M), static_cast<long long>(N), static_cast<long long>(K),
                argv[4 + c], best[c], 2.0 * M * N * K / best[c] / 1e6, error[c],
                componentwise_error[c]);
  }
  return 0;
}
