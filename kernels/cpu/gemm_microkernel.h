// The register-tile inner kernel of the BLIS-style gemm (kernels/cpu/gemm.cc): C[MR x NR] (+)=
// A[MR x kc] * B[kc x NR], with the tile held in vector registers for the whole k loop.
//
// Everything that shapes the generated code is a template parameter: the tile (MR rows, NV
// vectors of 8 floats per row), the k-loop unroll, and whether A and B come packed (contiguous
// micro-panels, unit strides known at compile time) or straight from the row-major matrices.
// gemm_microkernels_*.cc instantiate every variant the search space allows; GemmMicroKernelFor
// finds one.
#ifndef KTUNE_KERNELS_CPU_GEMM_MICROKERNEL_H_
#define KTUNE_KERNELS_CPU_GEMM_MICROKERNEL_H_

#include <cstdint>
#include <cstring>

namespace ktune::cpu {

typedef float v8f __attribute__((vector_size(32)));

inline v8f LoadV8(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void StoreV8(float* p, v8f v) { std::memcpy(p, &v, sizeof(v)); }

// Operand layout of one micro-kernel call. Packed A: a[k * MR + i]; unpacked: a[i * lda + k].
// Packed B: b[k * NR + j]; unpacked: b[k * ldb + j]. C: c[i * ldc + j]; `accumulate` false
// overwrites C (the first k block), true adds to it.
struct MicroArgs {
  int64_t kc;
  const float* a;
  int64_t lda;
  const float* b;
  int64_t ldb;
  float* c;
  int64_t ldc;
  bool accumulate;
};

using MicroKernelFn = void (*)(const MicroArgs&);

template <int MR, int NV, int U, bool kPackedA, bool kPackedB>
void GemmMicroKernel(const MicroArgs& args) {
  constexpr int NR = NV * 8;
  v8f acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = v8f{};
  const float* a = args.a;
  const float* b = args.b;
  const int64_t lda = args.lda, ldb = args.ldb;
  auto step = [&](int64_t k) __attribute__((always_inline)) {
    v8f bv[NV];
    for (int v = 0; v < NV; ++v) {
      bv[v] = LoadV8(kPackedB ? b + k * NR + v * 8 : b + k * ldb + v * 8);
    }
    for (int i = 0; i < MR; ++i) {
      const float ai = kPackedA ? a[k * MR + i] : a[i * lda + k];
      for (int v = 0; v < NV; ++v) acc[i][v] += ai * bv[v];
    }
  };
  int64_t k = 0;
  for (; k + U <= args.kc; k += U) {
#pragma GCC unroll 16
    for (int u = 0; u < U; ++u) step(k + u);
  }
  for (; k < args.kc; ++k) step(k);
  for (int i = 0; i < MR; ++i) {
    float* c = args.c + i * args.ldc;
    for (int v = 0; v < NV; ++v) {
      StoreV8(c + v * 8, args.accumulate ? LoadV8(c + v * 8) + acc[i][v] : acc[i][v]);
    }
  }
}

// Tiles larger than this many floats (MR * NR) are not built: they spill the 16 vector registers
// of AVX2 so badly that no configuration with them is worth a measurement.
inline constexpr int kMaxGemmTileFloats = 192;

// The tile heights, widths and unrolls that are built; the search space's value lists.
inline constexpr int kGemmMRValues[] = {1, 2, 4, 6, 8, 12, 16};
inline constexpr int kGemmNRValues[] = {8, 16, 24, 32};
inline constexpr int kGemmUnrollValues[] = {1, 2, 4, 8};

// The instantiated variant, or nullptr when none is built for these values.
MicroKernelFn GemmMicroKernelFor(int mr, int nr, int unroll, bool packed_a, bool packed_b);

}  // namespace ktune::cpu

#endif  // KTUNE_KERNELS_CPU_GEMM_MICROKERNEL_H_
