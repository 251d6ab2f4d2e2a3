// The kernels ktune can tune: the built-in ones (gemm, conv2d, softmax on CPUs) and those clients
// register at run time. A registry is immutable once built, except for Register, which callers
// serialise (the server holds it under its own lock).
#ifndef KTUNE_KERNELS_KERNEL_REGISTRY_H_
#define KTUNE_KERNELS_KERNEL_REGISTRY_H_

#include <string_view>
#include <deque>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "absl/status/status.h"
#include "kernels/kernel_definition.h"

namespace ktune {

// Descriptions of the built-in CPU kernels; their implementations are in kernels/cpu/.
KernelDefinition GemmDefinition();
KernelDefinition Conv2dDefinition();
KernelDefinition SoftmaxDefinition();
KernelDefinition GemmOpenBlasDefinition();  // OpenBLAS sgemm, the baseline for gemm
KernelDefinition GemmLowpDefinition();        // gemm with a tuned storage precision (32/16/8)
KernelDefinition GemmOneDnnDefinition();      // oneDNN sgemm, a baseline for gemm
KernelDefinition GemmOneDnnInt8Definition();  // oneDNN u8 x s8 gemm, the baseline for gemm_lowp
// CUDA templates (kernels/cuda/), compiled by the CUDA runner with NVRTC.
KernelDefinition CudaGemmDefinition();        // f32; f16, bf16, i8 (tensor cores); CLBlast-style
KernelDefinition CudaGemmCublasDefinition();  // cuBLAS, the baseline for cuda_gemm
KernelDefinition CudaConv2dDefinition();      // the shared convolution spaces' kernel
KernelDefinition CudaReduceRowsDefinition();  // row sums
KernelDefinition CudaSoftmaxDefinition();     // row softmax

// Thread-safe: Find, Get, List and Register may run concurrently (the server registers client
// kernels while serving). A definition, once in the registry, never moves or changes: pointers
// to it stay valid for the registry's life.
class KernelRegistry {
 public:
  KernelRegistry() = default;
  KernelRegistry(const KernelRegistry&) = delete;
  KernelRegistry& operator=(const KernelRegistry&) = delete;

  // A registry holding the built-in kernels.
  static KernelRegistry WithBuiltins();

  // nullptr when no kernel has that name.
  const KernelDefinition* Find(std::string_view name) const;
  // NotFound listing the kernels there are.
  absl::StatusOr<const KernelDefinition*> Get(std::string_view name) const;

  // Every kernel, in registration order (built-ins first).
  std::vector<const KernelDefinition*> List() const;

  // Adds a client kernel after KernelDefinition::Validate. AlreadyExists when the name is taken
  // by a kernel of another version; registering the same version again is a no-op. Returns the
  // registered definition.
  absl::StatusOr<const KernelDefinition*> Register(KernelDefinition definition);

 private:
  explicit KernelRegistry(std::vector<KernelDefinition> kernels);

  mutable std::shared_mutex mu_;
  std::deque<KernelDefinition> kernels_;  // a deque: growing it moves no element
};

}  // namespace ktune

#endif  // KTUNE_KERNELS_KERNEL_REGISTRY_H_
