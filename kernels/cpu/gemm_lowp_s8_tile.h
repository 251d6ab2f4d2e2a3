// gemm_lowp's int8 tiles (gemm_lowp.cc), written once over the instruction that multiplies and
// adds four u8 x s8 products into an int32 lane (`Dot`):
//   - AVX2 (gemm_lowp.cc): _mm256_maddubs_epi16, widened by _mm256_madd_epi16 with ones;
//   - AVX-VNNI (gemm_lowp_vnni.cc, compiled with -mavxvnni): one _mm256_dpbusd_avx_epi32.
// Both give the same exact int32 sums (A is 7-bit, so maddubs never saturates), so a run's
// result does not depend on which one the CPU has; only its speed does.
//
// Everything here has internal linkage (an unnamed namespace): each file that includes it gets
// its own copy, compiled for that file's ISA, and no inline function compiled for AVX-VNNI can
// be picked by the linker for the AVX2 path.
#ifndef KTUNE_KERNELS_CPU_GEMM_LOWP_S8_TILE_H_
#define KTUNE_KERNELS_CPU_GEMM_LOWP_S8_TILE_H_

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

namespace ktune::cpu {

// C[mr x nr] (+)= dequantised A8[mr x 4*k4] * B8[4*k4 x NR]. `first`: the first k block, which
// also subtracts the zero points' share (zero[i] * colsum[j]) and overwrites C.
using S8TileFn = void (*)(int64_t k4, const int32_t* a, const int8_t* b, const float* a_scale,
                          const int32_t* a_zero, const float* b_scale, const int32_t* colsum,
                          float* c, int64_t ldc, bool first, int mr, int nr);

// The tile for MR x NR (MR in 1, 2, 4, 6, 8; NR in 8, 16, 24, 32; MR * NR <= 96, so that the
// accumulators fit in registers), or nullptr. AVX2 needs only AVX2; AVX-VNNI needs a CPU with
// AVX-VNNI (gemm_lowp.cc checks before choosing it).
S8TileFn S8TileForAvx2(int mr, int nr);
S8TileFn S8TileForAvxVnni(int mr, int nr);

namespace {

template <typename Dot, int MR, int NV>
void S8Tile(int64_t k4, const int32_t* a, const int8_t* b, const float* a_scale,
            const int32_t* a_zero, const float* b_scale, const int32_t* colsum, float* c,
            int64_t ldc, bool first, int mr, int nr) {
  constexpr int NR = NV * 8;
  const Dot dot;
  __m256i acc[MR][NV];
  #pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
    #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_si256();
#pragma GCC unroll 2
  for (int64_t g = 0; g < k4; ++g) {
    __m256i bv[NV];
    #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      bv[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + (g * NR + v * 8) * 4));
    }
    #pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m256i ai = _mm256_set1_epi32(a[g * MR + i]);
      #pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[i][v] = dot(acc[i][v], ai, bv[v]);
    }
  }
  alignas(32) float tile[MR * NR];
  const bool full = mr == MR && nr == NR;
  #pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    const int row = std::min(i, mr - 1);
    const __m256 sa = _mm256_set1_ps(a_scale[row]);
    const __m256i za = _mm256_set1_epi32(first ? a_zero[row] : 0);
    #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      const __m256i cs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(colsum + v * 8));
      const __m256i exact = _mm256_sub_epi32(acc[i][v], _mm256_mullo_epi32(za, cs));
      __m256 x = _mm256_mul_ps(_mm256_cvtepi32_ps(exact),
                               _mm256_mul_ps(sa, _mm256_loadu_ps(b_scale + v * 8)));
      if (!full) {
        _mm256_store_ps(tile + i * NR + v * 8, x);
        continue;
      }
      float* out = c + i * ldc + v * 8;
      if (!first) x = _mm256_add_ps(_mm256_loadu_ps(out), x);
      _mm256_storeu_ps(out, x);
    }
  }
  if (full) return;
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) c[i * ldc + j] = (first ? 0.f : c[i * ldc + j]) + tile[i * NR + j];
}

template <typename Dot, int MR>
S8TileFn S8For(int nr) {
  switch (nr) {
    case 8: return &S8Tile<Dot, MR, 1>;
    case 16: if constexpr (MR * 16 <= 96) return &S8Tile<Dot, MR, 2>; else return nullptr;
    case 24: if constexpr (MR * 24 <= 96) return &S8Tile<Dot, MR, 3>; else return nullptr;
    default: if constexpr (MR * 32 <= 96) return &S8Tile<Dot, MR, 4>; else return nullptr;
  }
}

template <typename Dot>
S8TileFn S8TileFor(int mr, int nr) {
  switch (mr) {
    case 1: return S8For<Dot, 1>(nr);
    case 2: return S8For<Dot, 2>(nr);
    case 4: return S8For<Dot, 4>(nr);
    case 6: return S8For<Dot, 6>(nr);
    default: return S8For<Dot, 8>(nr);
  }
}

}  // namespace
}  // namespace ktune::cpu

#endif  // KTUNE_KERNELS_CPU_GEMM_LOWP_S8_TILE_H_
