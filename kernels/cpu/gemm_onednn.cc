// gemm_onednn and gemm_onednn_int8: oneDNN's gemm behind the kernel ABI, so the vendor library
// is measured by the same runner, timing loop and reference check as ktune's gemms.
//
// gemm_onednn: dnnl_sgemm (fp32). Configuration: threads.
// gemm_onednn_int8: dnnl_gemm_u8s8s32, quantised exactly as gemm_lowp's int8 (quantise.h): B
// once per configuration by the prepare hook (untimed), A per row in every run; then the same
// dequantisation, C = scale_a[i] * scale_b[j] * (C32 - zero_a[i] * colsum_b[j]). The zero points
// are per row of A, which oneDNN's single A offset cannot express, hence the explicit correction.
// Configuration: threads, scales (0 per tensor, 1 per column of B). One prepared configuration
// per process at a time.
//
// oneDNN chooses its code by the CPU it finds. ktune's CPU kernels are AVX2 code, plus AVX-VNNI
// for gemm_lowp's int8 where the CPU has it (cpu_isa.h), so oneDNN is capped at the same set
// (dnnl_set_max_cpu_isa: avx2 or avx2_vnni) for a like-for-like comparison, unless the
// environment variable DNNL_MAX_CPU_ISA chooses (e.g. DNNL_MAX_CPU_ISA=ALL measures what this CPU
// allows: AVX-512 and AMX here).
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

#include "kernels/cpu/builtin_cpu_kernels.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/quantise.h"
#include "kernels/cpu/scratch.h"

namespace ktune::cpu {
namespace {

void CapIsa() {
  static const bool capped = [] {
    return std::getenv("DNNL_MAX_CPU_ISA") == nullptr &&
           dnnl_set_max_cpu_isa(UseAvxVnni() ? dnnl_cpu_isa_avx2_vnni : dnnl_cpu_isa_avx2) ==
               dnnl_success;
  }();
  (void)capped;
}

// oneDNN's OpenMP build runs omp_get_max_threads() threads: set it for one call, then restore.
class OmpThreads {
 public:
  explicit OmpThreads(int64_t threads) : saved_(omp_get_max_threads()) {
    omp_set_num_threads(static_cast<int>(threads));
  }
  ~OmpThreads() { omp_set_num_threads(saved_); }

 private:
  int saved_;
};

bool IsGemmCall(const ktune_cpu_call* call, int num_config) {
  return call->num_problem == 3 && call->num_config == num_config && call->num_buffers == 3 &&
         call->config[0] >= 1;
}

int OneDnnSgemm(const ktune_cpu_call* call) {
  if (!IsGemmCall(call, 1)) return 1;
  CapIsa();
  const int64_t M = call->problem[0], N = call->problem[1], K = call->problem[2];
  OmpThreads threads(call->config[0]);
  const dnnl_status_t s = dnnl_sgemm('N', 'N', M, N, K, 1.f, call->buffers[0], K,
                                     call->buffers[1], N, 0.f, call->buffers[2], N);
  return s == dnnl_success ? 0 : 3;
}

struct PreparedInt8 {
  const float* source = nullptr;
  std::vector<int64_t> key;  // problem and configuration
  std::vector<int8_t> b;     // K x N, row-major
  std::vector<float> scale;
  std::vector<int32_t> colsum;
};
std::unique_ptr<PreparedInt8> g_prepared;

std::vector<int64_t> KeyOf(const ktune_cpu_call* call) {
  std::vector<int64_t> key(call->problem, call->problem + call->num_problem);
  key.insert(key.end(), call->config, call->config + call->num_config);
  return key;
}

int Int8PrepareOrThrow(const ktune_cpu_call* call) {
  g_prepared.reset();
  if (!IsGemmCall(call, 2) || (call->config[1] != 0 && call->config[1] != 1)) return 1;
  const int64_t N = call->problem[1], K = call->problem[2];
  auto p = std::make_unique<PreparedInt8>();
  p->source = call->buffers[1];
  p->key = KeyOf(call);
  p->b.resize(K * N);
  p->scale.resize(N);
  p->colsum.resize(N);
  QuantiseWeightsS8(call->buffers[1], K, N, call->config[1] == 1, p->b.data(), p->scale.data(),
                    p->colsum.data());
  g_prepared = std::move(p);
  return 0;
}

// The ABI is C: an allocation failure is a refusal, not an exception through the runner.
int Int8Prepare(const ktune_cpu_call* call) {
  try {
    return Int8PrepareOrThrow(call);
  } catch (const std::bad_alloc&) {
    g_prepared.reset();
    return 4;
  }
}

int Int8Release(const ktune_cpu_call*) {
  g_prepared.reset();
  return 0;
}

Scratch& Int8Scratch() { return ThreadScratch<struct OneDnnInt8Tag>(); }

int OneDnnInt8(const ktune_cpu_call* call) {
  if (!IsGemmCall(call, 2)) return 1;
  if (g_prepared == nullptr || g_prepared->source != call->buffers[1] ||
      g_prepared->key != KeyOf(call)) {
    return 2;  // not prepared for this call
  }
  CapIsa();
  const int64_t M = call->problem[0], N = call->problem[1], K = call->problem[2];
  const int threads = static_cast<int>(call->config[0]);
  // One scratch: C32 (M x N), A's scales and zero points (M each), then A8 (M x K bytes).
  float* scratch = Int8Scratch().Get(M * N + 2 * M + (M * K + 3) / 4);
  int32_t* c32 = reinterpret_cast<int32_t*>(scratch);
  float* a_scale = scratch + M * N;
  int32_t* a_zero = reinterpret_cast<int32_t*>(a_scale + M);
  uint8_t* a8 = reinterpret_cast<uint8_t*>(a_zero + M);
  const float* A = call->buffers[0];
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
  for (int64_t i = 0; i < M; ++i) QuantiseRowU7(A + i * K, K, a8 + i * K, a_scale + i, a_zero + i);
  const int32_t c_offset = 0;
  dnnl_status_t s;
  {
    OmpThreads team(threads);
    s = dnnl_gemm_u8s8s32('N', 'N', 'F', M, N, K, 1.f, a8, K, 0, g_prepared->b.data(), N, 0, 0.f,
                          c32, N, &c_offset);
  }
  if (s != dnnl_success) return 3;
  const float* b_scale = g_prepared->scale.data();
  const int32_t* colsum = g_prepared->colsum.data();
  float* C = call->buffers[2];
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
  for (int64_t i = 0; i < M; ++i) {
    const float sa = a_scale[i];
    const int32_t za = a_zero[i];
    for (int64_t j = 0; j < N; ++j) {
      C[i * N + j] = sa * b_scale[j] * static_cast<float>(c32[i * N + j] - za * colsum[j]);
    }
  }
  return 0;
}

}  // namespace

extern const BuiltinCpuKernel kGemmOneDnnCpuKernel = {"gemm_onednn", &OneDnnSgemm,
                                                      kGemmCpuKernel.reference};
extern const BuiltinCpuKernel kGemmOneDnnInt8CpuKernel = {
    "gemm_onednn_int8", &OneDnnInt8, kGemmCpuKernel.reference, &Int8Prepare, &Int8Release};

}  // namespace ktune::cpu
