// The int8 quantisation shared by gemm_lowp (gemm_lowp.cc) and its oneDNN peer
// (gemm_onednn.cc), so that both compute with the same integers and differ only in speed.
//
// Activations (A, per run): each row onto [0, 127], asymmetric, calibrated by the row's min and
// max (the range always includes 0, so 0 is exact): q = clamp(round(a / scale) + zero, 0, 127),
// a ~ scale * (q - zero). Seven bits, not eight: see gemm_lowp.cc on maddubs' int16 saturation.
//
// Weights (B, once per configuration): symmetric onto [-127, 127], calibrated by max-abs, one
// scale per tensor or per column: q = round(b / scale[j]), b ~ scale[j] * q. Max-abs never clips;
// for weights without rare outliers it loses little against MSE-optimal clipping, and
// per-column scales absorb columns of very different magnitudes.
#ifndef KTUNE_KERNELS_CPU_QUANTISE_H_
#define KTUNE_KERNELS_CPU_QUANTISE_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace ktune::cpu {

// Writes q[0, k), *scale and *zero for the row a[0, k).
inline void QuantiseRowU7(const float* a, int64_t k, uint8_t* q, float* scale, int32_t* zero) {
  float lo = 0.f, hi = 0.f;
  for (int64_t i = 0; i < k; ++i) lo = std::min(lo, a[i]), hi = std::max(hi, a[i]);
  const float s = hi > lo ? (hi - lo) / 127.f : 1.f;
  const float inv = 1.f / s;
  const float z = std::nearbyint(-lo * inv);
  for (int64_t i = 0; i < k; ++i) {
    q[i] = static_cast<uint8_t>(std::clamp(std::nearbyint(a[i] * inv) + z, 0.f, 127.f));
  }
  *scale = s;
  *zero = static_cast<int32_t>(z);
}

// Quantises the row-major K x N matrix b into q (K x N), scale (N: per tensor, all equal) and
// colsum (N: the sum of each column's q, for the activations' zero points).
inline void QuantiseWeightsS8(const float* b, int64_t K, int64_t N, bool per_column, int8_t* q,
                              float* scale, int32_t* colsum) {
  std::vector<float> maxabs(N, 0.f);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t j = 0; j < N; ++j) maxabs[j] = std::max(maxabs[j], std::fabs(b[k * N + j]));
  const float all = *std::max_element(maxabs.begin(), maxabs.end());
  std::vector<float> inverse(N);
  for (int64_t j = 0; j < N; ++j) {
    const float m = per_column ? maxabs[j] : all;
    scale[j] = m > 0 ? m / 127.f : 1.f;
    inverse[j] = 1.f / scale[j];
    colsum[j] = 0;
  }
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t j = 0; j < N; ++j) {
      const float v = std::clamp(std::nearbyint(b[k * N + j] * inverse[j]), -127.f, 127.f);
      q[k * N + j] = static_cast<int8_t>(v);
      colsum[j] += static_cast<int32_t>(v);
    }
  }
}

}  // namespace ktune::cpu

#endif  // KTUNE_KERNELS_CPU_QUANTISE_H_
