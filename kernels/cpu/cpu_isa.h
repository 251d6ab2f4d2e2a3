// Which optional instruction sets ktune's hand-written CPU kernels use. They are written for
// AVX2, FMA and F16C. Where the CPU also has AVX-VNNI (256-bit vpdpbusd), gemm_lowp's int8 tiles
// use it (gemm_lowp_vnni.cc), and gemm_onednn caps oneDNN at the same set, so that the vendor
// peer is measured like for like.
//
// KTUNE_CPU_ISA=avx2 in the environment keeps both at AVX2, to measure what AVX-VNNI is worth
// (bench/lowp). Any other value, or none, means: the best this CPU has. The choice is made once
// per process.
#ifndef KTUNE_KERNELS_CPU_CPU_ISA_H_
#define KTUNE_KERNELS_CPU_CPU_ISA_H_

#include <cstdlib>
#include <string_view>

namespace ktune::cpu {

inline bool UseAvxVnni() {
  static const bool use = [] {
    const char* isa = std::getenv("KTUNE_CPU_ISA");
    if (isa != nullptr && std::string_view(isa) == "avx2") return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avxvnni") != 0;
  }();
  return use;
}

}  // namespace ktune::cpu

#endif  // KTUNE_KERNELS_CPU_CPU_ISA_H_
