// The CPU kernels pre-built into the measurement runner (ktune-runner) and the kernel benchmark.
// Their descriptions (parameters, problem, buffers, defaults) are in kernels/builtin_kernels.cc;
// the order of values in a ktune_cpu_call follows those descriptions.
//
// This library is compiled with -O3 -march=native -fopenmp: only the runner and benchmarks link
// it, never the server or the CLI's core.
#ifndef KTUNE_KERNELS_CPU_BUILTIN_CPU_KERNELS_H_
#define KTUNE_KERNELS_CPU_BUILTIN_CPU_KERNELS_H_

#include <string_view>

#include "kernels/cpu/cpu_kernel_abi.h"

namespace ktune::cpu {

struct BuiltinCpuKernel {
  const char* name;
  ktune_cpu_kernel_fn run;        // the tunable implementation
  ktune_cpu_kernel_fn reference;  // the trusted one results are compared with
  // Optional (nullptr: none): the per-configuration setup and teardown of cpu_kernel_abi.h.
  // A kernel with a prepare refuses (nonzero) a run that no prepare of the same call preceded.
  ktune_cpu_kernel_fn prepare = nullptr;
  ktune_cpu_kernel_fn release = nullptr;
};

// Each defined in its kernel's file (gemm.cc, conv2d.cc, softmax.cc, ...).
extern const BuiltinCpuKernel kGemmCpuKernel;
extern const BuiltinCpuKernel kConv2dCpuKernel;
extern const BuiltinCpuKernel kSoftmaxCpuKernel;
extern const BuiltinCpuKernel kGemmOpenBlasCpuKernel;  // gemm_openblas.cc
extern const BuiltinCpuKernel kGemmLowpCpuKernel;      // gemm_lowp.cc
extern const BuiltinCpuKernel kGemmOneDnnCpuKernel;    // gemm_onednn.cc, fp32
extern const BuiltinCpuKernel kGemmOneDnnInt8CpuKernel;  // gemm_onednn.cc, u8 x s8

// nullptr when no built-in kernel has that name.
const BuiltinCpuKernel* FindBuiltinCpuKernel(std::string_view name);

}  // namespace ktune::cpu

#endif  // KTUNE_KERNELS_CPU_BUILTIN_CPU_KERNELS_H_
