// gemm_openblas: OpenBLAS's cblas_sgemm behind the kernel ABI, so the vendor library is measured
// by the same runner, timing loop and reference check as the tunable gemm. Configuration:
// threads (OpenBLAS's own thread pool).
#include <cblas.h>

#include "kernels/cpu/builtin_cpu_kernels.h"

extern "C" void openblas_set_num_threads(int);

namespace ktune::cpu {
namespace {

int OpenBlasSgemm(const ktune_cpu_call* call) {
  if (call->num_problem != 3 || call->num_config != 1 || call->num_buffers != 3) return 1;
  const int64_t M = call->problem[0], N = call->problem[1], K = call->problem[2];
  openblas_set_num_threads(static_cast<int>(call->config[0]));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(M), static_cast<int>(N),
              static_cast<int>(K), 1.f, call->buffers[0], static_cast<int>(K), call->buffers[1],
              static_cast<int>(N), 0.f, call->buffers[2], static_cast<int>(N));
  return 0;
}

}  // namespace

extern const BuiltinCpuKernel kGemmOpenBlasCpuKernel = {"gemm_openblas", &OpenBlasSgemm,
                                                        kGemmCpuKernel.reference};

}  // namespace ktune::cpu
