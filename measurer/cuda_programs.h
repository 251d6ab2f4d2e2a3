// What the CUDA runner is asked to compile and how a candidate is launched, from a kernel's
// definition (kernels/cuda/README.md is the contract): the macros of a configuration and a
// problem, the reference program, and the launch geometry. Shared by CudaMeasurer and the tests
// that compile every template without a GPU.
#ifndef KTUNE_MEASURER_CUDA_PROGRAMS_H_
#define KTUNE_MEASURER_CUDA_PROGRAMS_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/kernel_definition.h"
#include "measurer/cuda/cuda_runner.pb.h"

namespace ktune {

// ktune_kernel of `config` for `problem` (validated), compiled for `arch` ("sm_90").
absl::StatusOr<cuda_runner::Program> CudaKernelProgram(const KernelDefinition& definition,
                                                       const Problem& problem,
                                                       const Configuration& config,
                                                       const std::string& arch);

// ktune_reference for `problem`.
absl::StatusOr<cuda_runner::Program> CudaReferenceProgram(const KernelDefinition& definition,
                                                          const Problem& problem,
                                                          const std::string& arch);

struct CudaLaunchGeometry {
  std::array<int64_t, 3> grid = {1, 1, 1};
  std::array<int64_t, 3> block = {1, 1, 1};
  bool zero_outputs = false;
  int64_t threads() const { return block[0] * block[1] * block[2]; }
};

// The launch of `config`: InvalidArgument when a size is not a positive integer within the
// hardware's limits (grid y/z ≤ 65535, ≤ 1024 threads per block).
absl::StatusOr<CudaLaunchGeometry> CudaLaunchFor(const KernelDefinition& definition,
                                                 const Problem& problem,
                                                 const Configuration& config);

// "sm_90" for compute capability 9.0.
std::string CudaArch(int major, int minor);

// The folder compiled cubins are cached in: DefaultCacheDir() + "/cuda".
std::string DefaultCudaCacheDir();

// ktune-cuda-runner beside the running executable (or $KTUNE_CUDA_RUNNER).
std::string DefaultCudaRunnerPath();

}  // namespace ktune

#endif  // KTUNE_MEASURER_CUDA_PROGRAMS_H_
