// gemm_lowp: C[M x N] float32 = A[M x K] * B[K x N], row-major, where the storage precision of
// the weights B is a tuned parameter. B is converted, quantised and packed once per
// configuration by the prepare hook (untimed, as an inference engine does at load time); A (the
// activations) is read or quantised inside every run.
//
//   precision 32: fp32. pack 0 or 1: the tunable gemm's own code (gemm.cc, unroll 4) with A and
//                 B read in place (0) or packed in every run (1); pack 2: B packed once by
//                 prepare and the loops below, exactly as precision 16 but without conversion.
//   precision 16: B in fp16 (F16C), A stays fp32 (converting it would only add error), fp32
//                 FMAs: half of B's memory traffic.
//   precision 8:  B s8 symmetric (max-abs scale per tensor or per column), A u7 asymmetric per
//                 row (min/max scale and zero point, per run; quantise.h), u8 x s8 products with
//                 _mm256_maddubs_epi16 widened by _mm256_madd_epi16 with ones (or one
//                 vpdpbusd where the CPU has AVX-VNNI: cpu_isa.h), int32 sums, dequantised to
//                 float32 C.
//
// Why 7-bit activations: maddubs adds two u8 x s8 products into a saturating int16; with A in
// [0, 127] and B in [-127, 127] a pair is at most 2 * 127 * 127 = 32258 < 32767, so no sum ever
// saturates and the int32 result is exact. Full 8-bit A (2 * 255 * 127) could saturate.
//
// Configuration (definition order, see gemm_definition.cc): precision, scales (0 per tensor,
// 1 per column of B; precision 8 only), pack (precision 32 only, above), MR, NR, MC, KC, NC,
// threads. Not thread-safe: one prepared configuration per process at a time.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "kernels/cpu/builtin_cpu_kernels.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/gemm_lowp_s8_tile.h"
#include "kernels/cpu/quantise.h"
#include "kernels/cpu/scratch.h"

namespace ktune::cpu {
namespace {

struct LowpConfig {
  int64_t M, N, K;
  int precision, scales, pack, MR, NR;
  int64_t MC, KC, NC;
  int threads;
};

// Nonzero when the call is not a valid gemm_lowp configuration.
int ParseConfig(const ktune_cpu_call* call, LowpConfig* c) {
  if (call->num_problem != 3 || call->num_config != 9 || call->num_buffers != 3) return 1;
  const int64_t* p = call->problem;
  const int64_t* v = call->config;
  *c = {p[0], p[1], p[2], static_cast<int>(v[0]), static_cast<int>(v[1]), static_cast<int>(v[2]),
        static_cast<int>(v[3]), static_cast<int>(v[4]), v[5], v[6], v[7], static_cast<int>(v[8])};
  const bool tile_ok = (c->MR == 1 || c->MR == 2 || c->MR == 4 || c->MR == 6 || c->MR == 8) &&
                       (c->NR == 8 || c->NR == 16 || c->NR == 24 || c->NR == 32) &&
                       c->MR * c->NR <= (c->precision == 8 ? 96 : 192);
  if (!tile_ok || c->threads < 1 || c->MC < 1 || c->KC < 4 || c->KC % 4 != 0 || c->NC < 1 ||
      c->NC % c->NR != 0 || c->MC % c->MR != 0 || c->M < 1 || c->N < 1 || c->K < 1) {
    return 1;
  }
  if (c->precision != 32 && c->precision != 16 && c->precision != 8) return 1;
  if ((c->scales != 0 && c->scales != 1) || c->pack < 0 || c->pack > 2) return 1;
  if (c->precision != 32 && c->pack != 1) return 1;
  return 0;
}

// B, prepared: NR-column panels, each K (fp16) or K4 = ceil(K / 4) (int8) rows deep.
struct PreparedB {
  const float* source = nullptr;
  std::vector<int64_t> key;  // problem and configuration it was prepared for
  std::vector<uint16_t> f16;  // [panel][K][NR]
  std::vector<float> f32;     // [panel][K][NR] (precision 32, pack 2)
  std::vector<int8_t> s8;     // [panel][K4][NR][4], zero-padded
  std::vector<float> scale;   // per column, padded to whole panels (per tensor: all equal)
  std::vector<int32_t> colsum;  // per column: the sum over k of its quantised values
};
std::unique_ptr<PreparedB> g_prepared;

std::vector<int64_t> KeyOf(const ktune_cpu_call* call) {
  std::vector<int64_t> key(call->problem, call->problem + call->num_problem);
  key.insert(key.end(), call->config, call->config + call->num_config);
  return key;
}

// NR-column panels of B, zero-padded, each element converted by `convert`.
template <typename T, typename Convert>
void PreparePanels(const LowpConfig& c, const float* B, std::vector<T>& out, Convert convert) {
  const int64_t panels = (c.N + c.NR - 1) / c.NR;
  out.assign(panels * c.K * c.NR, convert(0.f));
  for (int64_t k = 0; k < c.K; ++k) {
    for (int64_t j = 0; j < c.N; ++j) {
      out[((j / c.NR) * c.K + k) * c.NR + j % c.NR] = convert(B[k * c.N + j]);
    }
  }
}

void PrepareS8(const LowpConfig& c, const float* B, PreparedB& p) {
  const int64_t panels = (c.N + c.NR - 1) / c.NR, k4 = (c.K + 3) / 4;
  std::vector<int8_t> q(c.K * c.N);
  p.scale.assign(panels * c.NR, 1.f);
  p.colsum.assign(panels * c.NR, 0);
  QuantiseWeightsS8(B, c.K, c.N, c.scales == 1, q.data(), p.scale.data(), p.colsum.data());
  p.s8.assign(panels * k4 * c.NR * 4, 0);
  for (int64_t k = 0; k < c.K; ++k) {
    for (int64_t j = 0; j < c.N; ++j) {
      p.s8[(((j / c.NR) * k4 + k / 4) * c.NR + j % c.NR) * 4 + k % 4] = q[k * c.N + j];
    }
  }
}

int LowpPrepareOrThrow(const ktune_cpu_call* call) {
  g_prepared.reset();
  LowpConfig c;
  if (ParseConfig(call, &c) != 0) return 1;
  auto p = std::make_unique<PreparedB>();
  p->source = call->buffers[1];
  p->key = KeyOf(call);
  if (c.precision == 16) {
    PreparePanels(c, call->buffers[1], p->f16,
                  [](float x) { return _cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT); });
  }
  if (c.precision == 32 && c.pack == 2) {
    PreparePanels(c, call->buffers[1], p->f32, [](float x) { return x; });
  }
  if (c.precision == 8) PrepareS8(c, call->buffers[1], *p);
  g_prepared = std::move(p);
  return 0;
}

// The ABI is C: an allocation failure is a refusal, not an exception through the runner.
int LowpPrepare(const ktune_cpu_call* call) {
  try {
    return LowpPrepareOrThrow(call);
  } catch (const std::bad_alloc&) {
    g_prepared.reset();
    return 4;
  }
}

int LowpRelease(const ktune_cpu_call*) {
  g_prepared.reset();
  return 0;
}

// ---- fp16 and prepacked fp32 weights ----

inline __m256 Load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }

// C[mr x nr] (+)= A[mr x kc] * B[kc x NR]: A rows at stride lda, B a packed panel slice of
// fp16 (T = uint16_t) or fp32 (T = float).
// The loops over the tile are unrolled fully (pragmas), so that the accumulators live in
// registers: partly unrolled, GCC keeps them in memory and stores them on every k.
template <int MR, int NV, typename T>
void FloatTile(int64_t kc, const float* a, int64_t lda, const T* b, float* c, int64_t ldc,
               bool accumulate, int mr, int nr) {
  constexpr int NR = NV * 8;
  const float* rows[MR];
  #pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) rows[i] = a + std::min(i, mr - 1) * lda;  // extra rows: discarded
  __m256 acc[MR][NV];
  #pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
    #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    __m256 bv[NV];
    #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      bv[v] = Load8(b + k * NR + v * 8);
    }
    #pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m256 ai = _mm256_broadcast_ss(rows[i] + k);
      #pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(ai, bv[v], acc[i][v]);
    }
  }
  if (mr == MR && nr == NR) {
    #pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
      #pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) {
        float* out = c + i * ldc + v * 8;
        _mm256_storeu_ps(out, accumulate ? _mm256_add_ps(_mm256_loadu_ps(out), acc[i][v])
                                         : acc[i][v]);
      }
    return;
  }
  alignas(32) float tile[MR * NR];
  #pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
    #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) _mm256_store_ps(tile + i * NR + v * 8, acc[i][v]);
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0.f) + tile[i * NR + j];
}

// ---- int8 weights ----

// Four u8 x s8 products into each int32 lane with AVX2 (gemm_lowp_s8_tile.h).
struct MaddubsDot {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i operator()(__m256i acc, __m256i a_u8, __m256i b_s8) const {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a_u8, b_s8), ones));
  }
};

// Quantises rows [row0, row1) of A (quantise.h) into their panels; row_bytes: 4 * K4 bytes.
void QuantiseRows(const LowpConfig& c, const float* A, int64_t row0, int64_t row1, int32_t* words,
                  float* scale, int32_t* zero, uint8_t* row_bytes) {
  const int64_t k4 = (c.K + 3) / 4;
  for (int64_t k = c.K; k < k4 * 4; ++k) row_bytes[k] = 0;  // meets B's zero padding
  for (int64_t i = row0; i < row1; ++i) {
    QuantiseRowU7(A + i * c.K, c.K, row_bytes, scale + i, zero + i);
    int32_t* panel = words + (i / c.MR) * k4 * c.MR + i % c.MR;
    for (int64_t g = 0; g < k4; ++g) std::memcpy(panel + g * c.MR, row_bytes + g * 4, 4);
  }
}

template <typename T>
using FloatTileFn = decltype(&FloatTile<1, 1, T>);

template <int MR, typename T>
FloatTileFn<T> FloatFor(int nr) {
  switch (nr) {
    case 8: return &FloatTile<MR, 1, T>;
    case 16: return &FloatTile<MR, 2, T>;
    case 24: return &FloatTile<MR, 3, T>;
    default: if constexpr (MR * 32 <= 192) return &FloatTile<MR, 4, T>; else return nullptr;
  }
}

template <typename T>
FloatTileFn<T> FloatTileFor(int mr, int nr) {
  switch (mr) {
    case 1: return FloatFor<1, T>(nr);
    case 2: return FloatFor<2, T>(nr);
    case 4: return FloatFor<4, T>(nr);
    case 6: return FloatFor<6, T>(nr);
    default: return FloatFor<8, T>(nr);
  }
}

// The five loops around the tiles for precisions 16 and 8: NC panels of C, KC blocks of k, MC
// blocks of rows; the threads share the NR panels of a block.
template <typename TileCall>
void Loops(const LowpConfig& c, int64_t k_align, TileCall tile) {
  for (int64_t jc = 0; jc < c.N; jc += c.NC) {
    const int64_t q0 = jc / c.NR, q1 = (std::min(c.N, jc + c.NC) + c.NR - 1) / c.NR;
    for (int64_t pc = 0; pc < c.K; pc += c.KC) {
      const int64_t kc = std::min(c.KC, c.K - pc);
      for (int64_t ic = 0; ic < c.M; ic += c.MC) {
        const int64_t mc = std::min(c.MC, c.M - ic);
#pragma omp parallel for num_threads(c.threads) if (c.threads > 1) schedule(static)
        for (int64_t q = q0; q < q1; ++q) {
          const int nr = static_cast<int>(std::min<int64_t>(c.NR, c.N - q * c.NR));
          for (int64_t ir = ic; ir < ic + mc; ir += c.MR) {
            const int mr = static_cast<int>(std::min<int64_t>(c.MR, c.M - ir));
            tile(q, ir, pc, (kc + k_align - 1) / k_align * k_align, mr, nr);
          }
        }
      }
    }
  }
}

Scratch& QuantScratch() { return ThreadScratch<struct LowpQuantTag>(); }
Scratch& RowScratch() { return ThreadScratch<struct LowpRowTag>(); }

// Precision 16, or 32 with B prepacked (T: the stored type).
template <typename T>
int RunPrepacked(const LowpConfig& c, const T* b, const float* A, float* C) {
  const FloatTileFn<T> fn = FloatTileFor<T>(c.MR, c.NR);
  if (fn == nullptr) return 1;
  Loops(c, 1, [&](int64_t q, int64_t ir, int64_t pc, int64_t kc, int mr, int nr) {
    fn(kc, A + ir * c.K + pc, c.K, b + (q * c.K + pc) * c.NR, C + ir * c.N + q * c.NR, c.N,
       pc > 0, mr, nr);
  });
  return 0;
}

int RunS8(const LowpConfig& c, const float* A, float* C) {
  const S8TileFn fn =
      UseAvxVnni() ? S8TileForAvxVnni(c.MR, c.NR) : S8TileForAvx2(c.MR, c.NR);
  if (fn == nullptr) return 1;
  const int64_t k4 = (c.K + 3) / 4, panels = (c.M + c.MR - 1) / c.MR;
  // One scratch: the words, then scales and zero points, padded to whole panels.
  float* scratch = QuantScratch().Get(panels * c.MR * (k4 + 2));
  int32_t* words = reinterpret_cast<int32_t*>(scratch);
  float* a_scale = scratch + panels * c.MR * k4;
  int32_t* a_zero = reinterpret_cast<int32_t*>(a_scale + panels * c.MR);
#pragma omp parallel num_threads(c.threads) if (c.threads > 1)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    uint8_t* row = reinterpret_cast<uint8_t*>(RowScratch().Get(k4));
    QuantiseRows(c, A, c.M * t / nt, c.M * (t + 1) / nt, words, a_scale, a_zero, row);
  }
  const PreparedB& p = *g_prepared;
  Loops(c, 4, [&](int64_t q, int64_t ir, int64_t pc, int64_t kc, int mr, int nr) {
    const int64_t g0 = pc / 4, j0 = q * c.NR;
    fn(kc / 4, words + (ir / c.MR) * k4 * c.MR + g0 * c.MR,
       p.s8.data() + (q * k4 + g0) * c.NR * 4, a_scale + ir, a_zero + ir, p.scale.data() + j0,
       p.colsum.data() + j0, C + ir * c.N + j0, c.N, pc == 0, mr, nr);
  });
  return 0;
}

int RunF32(const LowpConfig& c, const ktune_cpu_call* call) {
  // gemm.cc's configuration: MR, NR, unroll, pack_a, pack_b, MC, KC, NC, threads, parallel_loop
  // (threads split the NR panels when there is a single block of rows to share).
  const int64_t parallel_loop = c.threads > 1 && c.M <= c.MC ? 1 : 0;
  const int64_t config[10] = {c.MR, c.NR, 4, c.pack, c.pack, c.MC, c.KC, c.NC, c.threads,
                              parallel_loop};
  ktune_cpu_call gemm = *call;
  gemm.config = config;
  gemm.num_config = 10;
  return kGemmCpuKernel.run(&gemm);
}

int LowpRun(const ktune_cpu_call* call) {
  LowpConfig c;
  if (ParseConfig(call, &c) != 0) return 1;
  if (g_prepared == nullptr || g_prepared->source != call->buffers[1] ||
      g_prepared->key != KeyOf(call)) {
    return 2;  // not prepared for this call
  }
  const float* A = call->buffers[0];
  float* C = call->buffers[2];
  if (c.precision == 32 && c.pack == 2) return RunPrepacked(c, g_prepared->f32.data(), A, C);
  if (c.precision == 32) return RunF32(c, call);
  if (c.precision == 16) return RunPrepacked(c, g_prepared->f16.data(), A, C);
  return RunS8(c, A, C);
}

}  // namespace

S8TileFn S8TileForAvx2(int mr, int nr) { return S8TileFor<MaddubsDot>(mr, nr); }

extern const BuiltinCpuKernel kGemmLowpCpuKernel = {"gemm_lowp", &LowpRun,
                                                    kGemmCpuKernel.reference, &LowpPrepare,
                                                    &LowpRelease};

}  // namespace ktune::cpu
