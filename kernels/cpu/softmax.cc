// Row softmax, float32: y[i][j] = exp(x[i][j] - m_i) / sum_j exp(x[i][j] - m_i), m_i = max_j
// x[i][j] (subtracting the row maximum keeps every exp in (0, 1]).
//
// Each row is walked in blocks of kBlock floats; inside a block, `unroll` independent
// accumulators of `VW` floats (GCC vector extensions; VW 1 is plain float) carry the maximum and
// the sum, and block sums are added in double, so the sum stays accurate for long rows.
//
// Configuration (definition order, see kernels/softmax_definition.cc):
//   VW         vector width in floats: 1, 4, 8 or 16
//   unroll     vectors (independent accumulators) per loop iteration: 1, 2, 4, 8
//   passes     3: max, then sum of exp, then normalise. 2: one online pass for the maximum and
//              the sum (the sum is rescaled when the maximum grows), then normalise
//   cache_exp  3 passes only: 1 stores exp(x - m) in y in the second pass and scales y in the
//              third; 0 recomputes exp from x in the third
//   fast_exp   0: std::exp per element; 1: a vectorised Cephes-style polynomial exp (~2 ulp)
//   chunk      rows a thread takes at a time (schedule 1 and 2)
//   schedule   0: each thread one contiguous block of rows; 1: chunks dealt round-robin
//              (static); 2: chunks taken on demand (dynamic)
//   threads    OpenMP threads

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "kernels/cpu/builtin_cpu_kernels.h"

// Helpers on vectors must inline: called out of line they pass vectors through memory.
#define KT_INLINE inline __attribute__((always_inline))

namespace ktune::cpu {
namespace {

typedef float v4f __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef int32_t v8i __attribute__((vector_size(32)));

// 16 lanes as two 8-lane halves: GCC turns selects on a 64-byte vector type into scalar code
// unless the machine has AVX-512, while pairs of halves stay in vector registers.
struct v16f {
  v8f lo, hi;
};
struct v16i {
  v8i lo, hi;
};
KT_INLINE v16f operator+(v16f a, v16f b) { return {a.lo + b.lo, a.hi + b.hi}; }
KT_INLINE v16f operator-(v16f a, v16f b) { return {a.lo - b.lo, a.hi - b.hi}; }
KT_INLINE v16f operator*(v16f a, v16f b) { return {a.lo * b.lo, a.hi * b.hi}; }
KT_INLINE v16f operator+(v16f a, float b) { return {a.lo + b, a.hi + b}; }
KT_INLINE v16f operator-(v16f a, float b) { return {a.lo - b, a.hi - b}; }
KT_INLINE v16f operator*(v16f a, float b) { return {a.lo * b, a.hi * b}; }
KT_INLINE v16f& operator+=(v16f& a, v16f b) { return a = a + b; }
KT_INLINE v16i operator+(v16i a, int32_t b) { return {a.lo + b, a.hi + b}; }
KT_INLINE v16i operator-(v16i a, int32_t b) { return {a.lo - b, a.hi - b}; }
KT_INLINE v16i operator<<(v16i a, int b) { return {a.lo << b, a.hi << b}; }

// Lane-wise maximum and minimum (a vector condition selects per lane).
template <typename F>
KT_INLINE F Max(F a, F b) {
  return a > b ? a : b;
}
template <typename F>
KT_INLINE F Min(F a, F b) {
  return a < b ? a : b;
}
KT_INLINE v16f Max(v16f a, v16f b) { return {Max(a.lo, b.lo), Max(a.hi, b.hi)}; }
KT_INLINE v16f Min(v16f a, v16f b) { return {Min(a.lo, b.lo), Min(a.hi, b.hi)}; }

// The float vector of VW lanes and its same-shaped int vector.
template <int VW>
struct Vec;
template <>
struct Vec<1> {
  using F = float;
  using I = int32_t;
};
template <>
struct Vec<4> {
  using F = v4f;
  using I = v4i;
};
template <>
struct Vec<8> {
  using F = v8f;
  using I = v8i;
};
template <>
struct Vec<16> {
  using F = v16f;
  using I = v16i;
};

constexpr int64_t kBlock = 1024;  // floats per block of a row (4 KiB: stays in L1)

template <typename T>
KT_INLINE T Load(const float* p) {
  T v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T>
KT_INLINE void Store(float* p, T v) {
  std::memcpy(p, &v, sizeof(v));
}
template <typename To, typename From>
KT_INLINE To BitCast(From v) {
  static_assert(sizeof(To) == sizeof(From));
  To t;
  std::memcpy(&t, &v, sizeof(t));
  return t;
}
// By halves: one 64-byte copy becomes 16-byte pieces that stall the 32-byte loads after them.
template <>
KT_INLINE v16f Load<v16f>(const float* p) {
  return {Load<v8f>(p), Load<v8f>(p + 8)};
}
template <>
KT_INLINE void Store<v16f>(float* p, v16f v) {
  Store(p, v.lo);
  Store(p + 8, v.hi);
}
template <>
KT_INLINE v16i BitCast<v16i, v16f>(v16f v) {
  return {BitCast<v8i>(v.lo), BitCast<v8i>(v.hi)};
}
template <>
KT_INLINE v16f BitCast<v16f, v16i>(v16i v) {
  return {BitCast<v8f>(v.lo), BitCast<v8f>(v.hi)};
}

template <typename F>
KT_INLINE F Splat(float x) {
  return F{} + x;
}

// exp(x) for x <= 88: the Cephes expf polynomial after range reduction x = n ln2 + r,
// |r| <= ln2 / 2; relative error about 2e-7. Inputs below -87.3 give ~1e-38 (not 0).
template <int VW>
KT_INLINE typename Vec<VW>::F FastExp(typename Vec<VW>::F x) {
  using F = typename Vec<VW>::F;
  using I = typename Vec<VW>::I;
  x = Min(Max(x, Splat<F>(-87.3f)), Splat<F>(88.0f));
  // Round x / ln2 to the nearest integer n with the 1.5 * 2^23 trick: n sits in the low
  // mantissa bits of t.
  const float kMagic = 12582912.0f;
  const F t = x * 1.44269504088896341f + kMagic;
  const I n = BitCast<I>(t) - BitCast<int32_t>(kMagic);
  const F nf = t - kMagic;
  F r = x - nf * 0.693359375f;
  r = r - nf * -2.12194440e-4f;
  F y = Splat<F>(1.9875691500E-4f);
  y = y * r + 1.3981999507E-3f;
  y = y * r + 8.3334519073E-3f;
  y = y * r + 4.1665795894E-2f;
  y = y * r + 1.6666665459E-1f;
  y = y * r + 5.0000001201E-1f;
  y = y * (r * r) + r + 1.0f;
  // 2^n by building the exponent bits; n >= -126 after the clamp.
  const F scale = BitCast<F>((n + 127) << 23);
  return y * scale;
}

template <int VW, bool kFast>
KT_INLINE typename Vec<VW>::F Exp(typename Vec<VW>::F x) {
  if constexpr (kFast) {
    return FastExp<VW>(x);
  } else {
    float lanes[VW];
    std::memcpy(lanes, &x, sizeof(x));
    for (int l = 0; l < VW; ++l) lanes[l] = std::exp(lanes[l]);
    std::memcpy(&x, lanes, sizeof(x));
    return x;
  }
}

template <int VW>
KT_INLINE float HMax(typename Vec<VW>::F v) {
  float lanes[VW];
  std::memcpy(lanes, &v, sizeof(v));
  float m = lanes[0];
  for (int l = 1; l < VW; ++l) m = std::max(m, lanes[l]);
  return m;
}
template <int VW>
KT_INLINE float HSum(typename Vec<VW>::F v) {
  float lanes[VW];
  std::memcpy(lanes, &v, sizeof(v));
  float s = 0;
  for (int l = 0; l < VW; ++l) s += lanes[l];
  return s;
}

template <int VW, int U, bool kFast>
struct Row {
  using F = typename Vec<VW>::F;
  static constexpr int64_t kStep = VW * U;

  static float RowMax(const float* x, int64_t n) {
    F m[U];
    for (int u = 0; u < U; ++u) m[u] = Splat<F>(-std::numeric_limits<float>::infinity());
    int64_t j = 0;
    for (; j + kStep <= n; j += kStep) {
      for (int u = 0; u < U; ++u) m[u] = Max(m[u], Load<F>(x + j + u * VW));
    }
    for (; j + VW <= n; j += VW) m[0] = Max(m[0], Load<F>(x + j));
    for (int u = 1; u < U; ++u) m[0] = Max(m[0], m[u]);
    float r = HMax<VW>(m[0]);
    for (; j < n; ++j) r = std::max(r, x[j]);
    return r;
  }

  // Sum of exp(x - m) over n <= kBlock floats; stores the exps in y when y is not null.
  static float BlockSumExp(const float* x, float* y, int64_t n, float m) {
    const F mv = Splat<F>(m);
    F s[U];
    for (int u = 0; u < U; ++u) s[u] = F{};
    int64_t j = 0;
    for (; j + kStep <= n; j += kStep) {
      for (int u = 0; u < U; ++u) {
        const F e = Exp<VW, kFast>(Load<F>(x + j + u * VW) - mv);
        if (y != nullptr) Store(y + j + u * VW, e);
        s[u] += e;
      }
    }
    for (; j + VW <= n; j += VW) {
      const F e = Exp<VW, kFast>(Load<F>(x + j) - mv);
      if (y != nullptr) Store(y + j, e);
      s[0] += e;
    }
    for (int u = 1; u < U; ++u) s[0] += s[u];
    float r = HSum<VW>(s[0]);
    for (; j < n; ++j) {
      const float e = Exp<1, kFast>(x[j] - m);
      if (y != nullptr) y[j] = e;
      r += e;
    }
    return r;
  }

  // Online maximum and sum of exp(x - max) over n <= kBlock floats: each group of U vectors
  // raises the lane maxima, rescales the lane sums by exp(old - new) and adds its exps.
  static void BlockOnline(const float* x, int64_t n, float* max_out, float* sum_out) {
    const F neg_inf = Splat<F>(-std::numeric_limits<float>::infinity());
    F m = neg_inf, s = F{};
    int64_t j = 0;
    for (; j + kStep <= n; j += kStep) {
      F v[U];
      F bm = Load<F>(x + j);
      for (int u = 0; u < U; ++u) {
        v[u] = Load<F>(x + j + u * VW);
        bm = Max(bm, v[u]);
      }
      const F nm = Max(m, bm);
      F e = F{};
      for (int u = 0; u < U; ++u) e += Exp<VW, kFast>(v[u] - nm);
      s = s * Exp<VW, kFast>(m - nm) + e;
      m = nm;
    }
    for (; j + VW <= n; j += VW) {
      const F v = Load<F>(x + j);
      const F nm = Max(m, v);
      s = s * Exp<VW, kFast>(m - nm) + Exp<VW, kFast>(v - nm);
      m = nm;
    }
    // Combine the lanes, then the scalar tail.
    float bm = HMax<VW>(m);
    for (int64_t t = j; t < n; ++t) bm = std::max(bm, x[t]);
    float bs = j > 0 ? HSum<VW>(s * Exp<VW, kFast>(m - bm)) : 0.f;  // j == 0: lanes unused
    for (int64_t t = j; t < n; ++t) bs += Exp<1, kFast>(x[t] - bm);
    *max_out = bm;
    *sum_out = bs;
  }

  // y = exp(x - m) * scale, or y *= scale when the exps are already in y.
  static void Normalise(const float* x, float* y, int64_t n, float m, float scale, bool cached) {
    const F mv = Splat<F>(m), sv = Splat<F>(scale);
    int64_t j = 0;
    if (cached) {
      for (; j + kStep <= n; j += kStep) {
        for (int u = 0; u < U; ++u) Store(y + j + u * VW, Load<F>(y + j + u * VW) * sv);
      }
      for (; j < n; ++j) y[j] *= scale;
      return;
    }
    for (; j + kStep <= n; j += kStep) {
      for (int u = 0; u < U; ++u) {
        Store(y + j + u * VW, Exp<VW, kFast>(Load<F>(x + j + u * VW) - mv) * sv);
      }
    }
    for (; j + VW <= n; j += VW) Store(y + j, Exp<VW, kFast>(Load<F>(x + j) - mv) * sv);
    for (; j < n; ++j) y[j] = Exp<1, kFast>(x[j] - m) * scale;
  }

  static void Softmax(const float* x, float* y, int64_t n, int passes, bool cache_exp) {
    float m;
    double sum = 0;
    if (passes == 3) {
      m = RowMax(x, n);
      for (int64_t j = 0; j < n; j += kBlock) {
        sum += BlockSumExp(x + j, cache_exp ? y + j : nullptr, std::min(kBlock, n - j), m);
      }
    } else {
      double dm = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < n; j += kBlock) {
        float bm, bs;
        BlockOnline(x + j, std::min(kBlock, n - j), &bm, &bs);
        if (bm > dm) {
          sum = sum * std::exp(dm - bm) + bs;
          dm = bm;
        } else {
          sum += bs * std::exp(bm - dm);
        }
      }
      m = static_cast<float>(dm);
      cache_exp = false;
    }
    Normalise(x, y, n, m, static_cast<float>(1.0 / sum), cache_exp);
  }
};

using RowFn = void (*)(const float*, float*, int64_t, int, bool);

template <int VW, int U>
RowFn PickExp(bool fast) {
  return fast ? &Row<VW, U, true>::Softmax : &Row<VW, U, false>::Softmax;
}
template <int VW>
RowFn PickUnroll(int unroll, bool fast) {
  switch (unroll) {
    case 1:
      return PickExp<VW, 1>(fast);
    case 2:
      return PickExp<VW, 2>(fast);
    case 4:
      return PickExp<VW, 4>(fast);
    case 8:
      return PickExp<VW, 8>(fast);
    default:
      return nullptr;
  }
}
RowFn PickRow(int vw, int unroll, bool fast) {
  switch (vw) {
    case 1:
      return PickUnroll<1>(unroll, fast);
    case 4:
      return PickUnroll<4>(unroll, fast);
    case 8:
      return PickUnroll<8>(unroll, fast);
    case 16:
      return PickUnroll<16>(unroll, fast);
    default:
      return nullptr;
  }
}

int SoftmaxRun(const ktune_cpu_call* call) {
  if (call->num_problem != 2 || call->num_config != 8 || call->num_buffers != 2) return 1;
  const int64_t rows = call->problem[0], cols = call->problem[1];
  const int64_t* c = call->config;
  const int passes = static_cast<int>(c[2]);
  const bool cache_exp = c[3] != 0;
  const int64_t chunk = c[5];
  const int schedule = static_cast<int>(c[6]);
  const int threads = static_cast<int>(c[7]);
  const RowFn row = PickRow(static_cast<int>(c[0]), static_cast<int>(c[1]), c[4] != 0);
  if (row == nullptr || (passes != 2 && passes != 3) || chunk < 1 || schedule < 0 || schedule > 2 ||
      threads < 1 || rows < 1 || cols < 1) {
    return 1;
  }
  if (call->buffer_elements[0] < rows * cols || call->buffer_elements[1] < rows * cols) return 1;
  const float* x = call->buffers[0];
  float* y = call->buffers[1];
  if (schedule == 0) {
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
    for (int64_t i = 0; i < rows; ++i) row(x + i * cols, y + i * cols, cols, passes, cache_exp);
  } else {
    const int64_t chunks = (rows + chunk - 1) / chunk;
    auto run_chunk = [&](int64_t k) {
      for (int64_t i = k * chunk; i < std::min(rows, (k + 1) * chunk); ++i) {
        row(x + i * cols, y + i * cols, cols, passes, cache_exp);
      }
    };
    if (schedule == 1) {
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static, 1)
      for (int64_t k = 0; k < chunks; ++k) run_chunk(k);
    } else {
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(dynamic, 1)
      for (int64_t k = 0; k < chunks; ++k) run_chunk(k);
    }
  }
  return 0;
}

// In double, three plain passes per row.
int SoftmaxReference(const ktune_cpu_call* call) {
  const int64_t rows = call->problem[0], cols = call->problem[1];
  const float* x = call->buffers[0];
  float* y = call->buffers[1];
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t i = 0; i < rows; ++i) {
    const float* xr = x + i * cols;
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < cols; ++j) m = std::max(m, static_cast<double>(xr[j]));
    double sum = 0;
    for (int64_t j = 0; j < cols; ++j) sum += std::exp(xr[j] - m);
    for (int64_t j = 0; j < cols; ++j)
      y[i * cols + j] = static_cast<float>(std::exp(xr[j] - m) / sum);
  }
  return 0;
}

}  // namespace

const BuiltinCpuKernel kSoftmaxCpuKernel = {"softmax", &SoftmaxRun, &SoftmaxReference};

}  // namespace ktune::cpu
