#include "kernels/cpu/builtin_cpu_kernels.h"

namespace ktune::cpu {

const BuiltinCpuKernel* FindBuiltinCpuKernel(std::string_view name) {
  for (const BuiltinCpuKernel* k :
       {&kGemmCpuKernel, &kConv2dCpuKernel, &kSoftmaxCpuKernel, &kGemmOpenBlasCpuKernel,
        &kGemmLowpCpuKernel, &kGemmOneDnnCpuKernel, &kGemmOneDnnInt8CpuKernel}) {
    if (name == k->name) return k;
  }
  return nullptr;
}

}  // namespace ktune::cpu
