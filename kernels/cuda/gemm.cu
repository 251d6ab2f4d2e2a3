// ktune CUDA template: row-major GEMM, C[M x N] = A[M x K] * B[K x N] (kernels/cuda/README.md).
// Buffers A, B, C; problem M, N, K. Definition: kernels/cuda_gemm_definition.cc.
//
// dtype f32: a CLBlast-style SIMT kernel.
//   A block of MDIMC * NDIMC threads (1-D) computes an MWG x NWG tile of C, walking K in steps of
//   KWG. Thread (tm, tn) = (tid / NDIMC, tid % NDIMC) owns MWI x NWI = (MWG/MDIMC) x (NWG/NDIMC)
//   outputs in registers: rows (i * MDIMC + tm) * VWM + v and columns (j * NDIMC + tn) * VWN + w,
//   i.e. VWM x VWN blocks strided across the tile, so that its shared-memory reads are float2 /
//   float4 vectors of consecutive threads (no bank conflicts) and its C stores are coalesced
//   vectors along N.
//   SA / SB: stage A / B through shared memory (1) or read them from global memory (through L1)
//   in the inner loop (0). A is staged transposed, As[k][m] (row stride MWG + 4), by MDIMA
//   threads along M times (threads / MDIMA) along K (consecutive threads read consecutive k: the
//   reads are coalesced, the transposing stores nearly conflict-free); B is staged as Bs[k][n]
//   (row stride NWG + 4) by NDIMB threads along N in VWN-float vectors times (threads / NDIMB)
//   along K.
// dtypes f16, bf16, i8 (KT_F16, KT_BF16, KT_I8): tensor cores through WMMA, 16 x 16 x 16
//   fragments. f16: __half inputs, float accumulators, __half output. bf16: __nv_bfloat16
//   inputs, float accumulators, __nv_bfloat16 output. i8: signed char inputs, int accumulators,
//   int output: exact (|C| <= K * 2^14 < 2^31 for K <= 32768).
//   i8 uses the integer tensor cores rather than __dp4a in the SIMT code because the WMMA
//   structure takes it nearly unchanged (same fragment shape, pipeline and epilogue; their peak
//   is twice f16's), where dp4a would need B repacked as 4 consecutive k per 32-bit word (B is
//   row-major along n) and the SIMT loaders rewritten for bytes.
//   The MDIMC x NDIMC threads are cut into 4 x 8 patches, one warp each: (MDIMC / 4) x
//   (NDIMC / 8) warps, each computing a (4 * MWG / MDIMC) x (8 * NWG / NDIMC) sub-tile of the
//   MWG x NWG block tile as a grid of 16 x 16 accumulator fragments. Tiles are staged with
//   16-byte copies where the problem's alignment allows. 16-bit types: row-major, As[m][k] and
//   Bs[k][n], rows padded by 8 elements. i8: WMMA wants fragment pointers 32-byte aligned, which a
//   row-major byte tile breaks at every odd 16-column step, so the tiles are stored in 16-wide
//   column panels, As[k / 16][m][16] and Bs[n / 16][k][16]: each fragment is 256 contiguous bytes
//   (ldm 16). MDIMA, NDIMB, VWM, VWN and SA, SB are not used (the definition pins them).
// Every dtype: STAGES shared-memory buffers filled with cp.async (sm_80+): 1 = load, wait, compute;
//   S >= 2 = a ring of S tiles, S - 1 in flight while one is computed (one barrier per step).
//   SPLITK > 1: blockIdx.z takes one of SPLITK slices of K (whole KWG tiles) and adds its partial
//   tile into C with atomicAdd (the runner zeroes C first: launch.zero_outputs): float, __half2,
//   __nv_bfloat162 (each partial rounded to the output type, hence the coarser bf16 tolerance) or
//   int (exact) atomics. Blocks are rasterised in groups of 8 tile rows so that neighbouring
//   blocks share panels of A and B in L2.
// Any M, N, K >= 1: loads outside the matrices are zero-filled, stores are bounds-checked; the
// checks vanish where KT_PROBLEM_M/N/K divide the tiles. Offsets are size_t.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_pipeline.h>

#pragma nv_diag_suppress 177  // constants of the other dtype's code path go unused

// kt_elem: A and B; kt_acc: accumulators; kt_out: C.
#if defined(KT_F16) && KT_F16
#define KT_GEMM_TC 1
#define KT_GEMM_F16 1
typedef __half kt_elem;
typedef float kt_acc;
typedef __half kt_out;
#elif defined(KT_BF16) && KT_BF16
#define KT_GEMM_TC 1
#define KT_GEMM_BF16 1
typedef __nv_bfloat16 kt_elem;
typedef float kt_acc;
typedef __nv_bfloat16 kt_out;
#elif defined(KT_I8) && KT_I8
#define KT_GEMM_TC 1
#define KT_GEMM_I8 1
typedef signed char kt_elem;
typedef int kt_acc;
typedef int kt_out;
#else
#define KT_GEMM_TC 0
typedef float kt_elem;
typedef float kt_acc;
typedef float kt_out;
#endif

__device__ __forceinline__ float kt_to_acc(float x) { return x; }
__device__ __forceinline__ float kt_to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float kt_to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ int kt_to_acc(signed char x) { return x; }
__device__ __forceinline__ void kt_store(float* p, float v) { *p = v; }
__device__ __forceinline__ void kt_store(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void kt_store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ void kt_store(int* p, int v) { *p = v; }

#if defined(KT_REFERENCE) && KT_REFERENCE

// One output element per work item; float accumulation (int for i8: exact).
extern "C" __global__ void ktune_reference(const kt_elem* A, const kt_elem* B, kt_out* C, int M,
                                           int N, int K) {
  const size_t total = (size_t)M * (size_t)N;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const size_t m = idx / (size_t)N;
    const size_t n = idx % (size_t)N;
    kt_acc acc = 0;
    for (int k = 0; k < K; ++k) {
      acc += kt_to_acc(A[m * (size_t)K + k]) * kt_to_acc(B[(size_t)k * N + n]);
    }
    kt_store(&C[idx], acc);
  }
}

#else  // the tuned kernel

#if KT_GEMM_TC
#include <mma.h>
#endif

namespace ktg {

constexpr int MWG = KT_MWG;
constexpr int NWG = KT_NWG;
constexpr int KWG = KT_KWG;
constexpr int MDIMC = KT_MDIMC;
constexpr int NDIMC = KT_NDIMC;
constexpr int MDIMA = KT_MDIMA;
constexpr int NDIMB = KT_NDIMB;
constexpr int VWM = KT_VWM;
constexpr int VWN = KT_VWN;
constexpr int SA = KT_SA;
constexpr int SB = KT_SB;
constexpr int STAGES = KT_STAGES;
constexpr int SPLITK = KT_SPLITK;

constexpr int T = MDIMC * NDIMC;  // threads per block
constexpr int MWI = MWG / MDIMC;  // outputs per thread along M (f32)
constexpr int NWI = NWG / NDIMC;  // outputs per thread along N (f32)

static_assert(T <= 1024, "too many threads");
static_assert(MWG % MDIMC == 0 && NWG % NDIMC == 0, "tile not divisible by the thread grid");
static_assert(STAGES >= 1 && STAGES <= 8, "STAGES");

// Compile-time problem sizes where the runner gives them (it does): the edge checks that cannot
// fail disappear.
#ifdef KT_PROBLEM_M
constexpr bool kEvenM = KT_PROBLEM_M % MWG == 0;
#else
constexpr bool kEvenM = false;
#endif
#ifdef KT_PROBLEM_N
constexpr bool kEvenN = KT_PROBLEM_N % NWG == 0;
constexpr int kNConst = KT_PROBLEM_N;
#else
constexpr bool kEvenN = false;
constexpr int kNConst = 1;  // unknown: alignment 1
#endif
#ifdef KT_PROBLEM_K
constexpr bool kEvenK = KT_PROBLEM_K % (KWG * SPLITK) == 0;
constexpr int kKConst = KT_PROBLEM_K;
#else
constexpr bool kEvenK = false;
constexpr int kKConst = 1;
#endif

// The widest of w, w/2, ..., 1 that divides n (row starts of a matrix with n columns are then
// aligned to it).
__host__ __device__ constexpr int AlignedWidth(int w, int n) {
  return (w <= 1 || n % w == 0) ? (w < 1 ? 1 : w) : AlignedWidth(w / 2, n);
}
__host__ __device__ constexpr int CMin(int a, int b) { return a < b ? a : b; }
__host__ __device__ constexpr int CMax(int a, int b) { return a > b ? a : b; }

// Tile coordinates of this block: blocks run along N within groups of 8 tile rows.
__device__ __forceinline__ void TileCoords(int& tile_m, int& tile_n) {
  constexpr int kGroup = 8;
  const int tiles_n = gridDim.x;
  const int tiles_m = gridDim.y;
  const int id = blockIdx.y * tiles_n + blockIdx.x;
  const int group = id / (kGroup * tiles_n);
  const int first_m = group * kGroup;
  const int group_rows = min(tiles_m - first_m, kGroup);
  const int r = id - group * kGroup * tiles_n;
  tile_m = first_m + r % group_rows;
  tile_n = r / group_rows;
}

// Copies BYTES (4, 8 or 16) from global to shared memory asynchronously where ok; stores zeros
// right away otherwise (outside the matrix). Either way the data is visible to the block after
// the barrier that precedes the tile's use, and is written only after the barrier that freed
// the buffer, like the copies.
template <int BYTES>
__device__ __forceinline__ void CopyAsync(void* dst, const void* src, bool ok) {
  if (ok) {
    __pipeline_memcpy_async(dst, src, BYTES);
  } else if constexpr (BYTES == 16) {
    *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
  } else if constexpr (BYTES == 8) {
    *reinterpret_cast<uint2*>(dst) = make_uint2(0, 0);
  } else {
    *reinterpret_cast<unsigned*>(dst) = 0;
  }
}

// K range of this block's split-K slice: whole KWG tiles.
__device__ __forceinline__ void KSlice(int K, int& k_begin, int& num_tiles) {
  const int per_slice = ((K + SPLITK - 1) / SPLITK + KWG - 1) / KWG * KWG;
  k_begin = (SPLITK > 1 ? (int)blockIdx.z : 0) * per_slice;
  const int k_end = min(K, k_begin + per_slice);
  num_tiles = k_end > k_begin ? (k_end - k_begin + KWG - 1) / KWG : 0;
}

#if !KT_GEMM_TC
// ------------------------------------------------------------------------------------------------
// f32: SIMT

static_assert(MWI % VWM == 0 && NWI % VWN == 0, "MWG % (MDIMC * VWM), NWG % (NDIMC * VWN)");

constexpr int PADA = 4;  // keeps float4 alignment; spreads the transposing stores over the banks
constexpr int PADB = 4;
constexpr int LDA = MWG + PADA;  // row stride of As[k][m]
constexpr int LDB = NWG + PADB;  // row stride of Bs[k][n]
// Loading A: MDIMA threads along M, KDIMA along K (fastest).
constexpr int KDIMA = T / MDIMA;
constexpr int MWA = MWG / MDIMA;
constexpr int KWA = SA ? KWG / KDIMA : 1;
// Loading B: NDIMB threads along N (fastest) in VWN vectors, KDIMB along K.
constexpr int KDIMB = T / NDIMB;
constexpr int KWB = SB ? KWG / KDIMB : 1;
constexpr int NVB = NWG / (NDIMB * VWN);
static_assert(!SA || (MWG % MDIMA == 0 && T % MDIMA == 0 && KWG % KDIMA == 0), "A loader");
static_assert(!SB || (NWG % (NDIMB * VWN) == 0 && T % NDIMB == 0 && KWG % KDIMB == 0),
              "B loader");
// Vector widths that the row alignment of B and C (N columns) allows.
constexpr int VB = AlignedWidth(CMin(VWN, 4), kNConst);  // B copies / direct B reads
constexpr int VC = VB;                                   // C stores

constexpr int A_STAGE = SA ? KWG * LDA : 1;
constexpr int B_STAGE = SB ? KWG * LDB : 1;
static_assert((A_STAGE * (SA ? STAGES : 1) + B_STAGE * (SB ? STAGES : 1)) * 4 <= 48 * 1024,
              "shared memory");

// Blocks per SM that the register file must hold: with both operands staged, 256 threads keep
// to 128 registers so that two blocks (16 warps) share an SM; the accumulators (MWI * NWI <= 64)
// fit.
constexpr int kMinBlocks = (SA && SB && T == 256) ? 2 : 1;
// Unroll of the inner k loop: whole tiles from shared memory; a few steps where an operand comes
// from global memory (the compiler would hoist every load of the tile and spill).
constexpr int kUnrollK = (SA && SB) ? KWG : 2;

// dst[0..W) = src[0..W) from shared memory, as float4 / float2 / float loads.
template <int W>
__device__ __forceinline__ void LoadShared(float* dst, const float* src) {
  if constexpr (W >= 4) {
    const float4 v = *reinterpret_cast<const float4*>(src);
    dst[0] = v.x;
    dst[1] = v.y;
    dst[2] = v.z;
    dst[3] = v.w;
    if constexpr (W > 4) LoadShared<W - 4>(dst + 4, src + 4);
  } else if constexpr (W == 2) {
    const float2 v = *reinterpret_cast<const float2*>(src);
    dst[0] = v.x;
    dst[1] = v.y;
  } else {
    dst[0] = src[0];
  }
}

// dst[0..W) = src[0..W) from global memory (read-only path); src is aligned to W floats.
template <int W>
__device__ __forceinline__ void LoadGlobal(float* dst, const float* src) {
  if constexpr (W == 4) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(src));
    dst[0] = v.x;
    dst[1] = v.y;
    dst[2] = v.z;
    dst[3] = v.w;
  } else if constexpr (W == 2) {
    const float2 v = __ldg(reinterpret_cast<const float2*>(src));
    dst[0] = v.x;
    dst[1] = v.y;
  } else {
    dst[0] = __ldg(src);
  }
}

// Writes (or, split-K, adds) W consecutive floats; dst is aligned to W floats.
template <int W>
__device__ __forceinline__ void StoreC(float* dst, const float* v) {
  if constexpr (SPLITK > 1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900  // sm_90: atomicAdd on float2 / float4
    if constexpr (W == 4) {
      atomicAdd(reinterpret_cast<float4*>(dst), make_float4(v[0], v[1], v[2], v[3]));
    } else if constexpr (W == 2) {
      atomicAdd(reinterpret_cast<float2*>(dst), make_float2(v[0], v[1]));
    } else {
      atomicAdd(dst, v[0]);
    }
#else
#pragma unroll
    for (int w = 0; w < W; ++w) atomicAdd(dst + w, v[w]);
#endif
  } else {
    if constexpr (W == 4) {
      *reinterpret_cast<float4*>(dst) = make_float4(v[0], v[1], v[2], v[3]);
    } else if constexpr (W == 2) {
      *reinterpret_cast<float2*>(dst) = make_float2(v[0], v[1]);
    } else {
      dst[0] = v[0];
    }
  }
}

// Issues the copies of the A tile (rows bm.., columns k0..) into As[k][m], transposed, one float
// per copy. Thread (tk, tmm) copies rows tmm + i * MDIMA, columns tk + c * KDIMA.
__device__ __forceinline__ void LoadTileA(float* as, const float* __restrict__ A, int bm, int k0,
                                          int M, int K, int tid) {
  const int tk = tid % KDIMA;
  const int tmm = tid / KDIMA;
#pragma unroll
  for (int i = 0; i < MWA; ++i) {
    const int m = tmm + i * MDIMA;
    const int gm = bm + m;
    const bool ok_m = kEvenM || gm < M;
#pragma unroll
    for (int c = 0; c < KWA; ++c) {
      const int k = tk + c * KDIMA;
      const int gk = k0 + k;
      const bool ok = ok_m && (kEvenK || gk < K);
      CopyAsync<4>(as + k * LDA + m, A + (size_t)gm * K + gk, ok);
    }
  }
}

// Issues the copies of the B tile (rows k0.., columns bn..) into Bs[k][n], VB floats per copy.
// Thread (tkb, tnb) copies rows tkb + r * KDIMB, vectors (j * NDIMB + tnb) * VWN.
__device__ __forceinline__ void LoadTileB(float* bs, const float* __restrict__ B, int bn, int k0,
                                          int N, int K, int tid) {
  const int tnb = tid % NDIMB;
  const int tkb = tid / NDIMB;
#pragma unroll
  for (int r = 0; r < KWB; ++r) {
    const int k = tkb + r * KDIMB;
    const int gk = k0 + k;
    const bool ok_k = kEvenK || gk < K;
#pragma unroll
    for (int j = 0; j < NVB; ++j) {
#pragma unroll
      for (int u = 0; u < VWN / VB; ++u) {
        const int n = (j * NDIMB + tnb) * VWN + u * VB;
        const int gn = bn + n;
        const bool ok = ok_k && (kEvenN || gn < N);  // N % VB == 0: whole vector inside
        CopyAsync<VB * 4>(bs + k * LDB + n, B + (size_t)gk * N + gn, ok);
      }
    }
  }
}

}  // namespace ktg
using namespace ktg;

extern "C" __global__ void __launch_bounds__(T, kMinBlocks)
    ktune_kernel(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C,
                 int M_arg, int N_arg, int K_arg) {
#ifdef KT_PROBLEM_M
  const int M = KT_PROBLEM_M;
  const int N = KT_PROBLEM_N;
  const int K = KT_PROBLEM_K;
#else
  const int M = M_arg;
  const int N = N_arg;
  const int K = K_arg;
#endif
  __shared__ __align__(16) float As[SA ? STAGES : 1][A_STAGE];
  __shared__ __align__(16) float Bs[SB ? STAGES : 1][B_STAGE];

  const int tid = threadIdx.x;
  const int tn = tid % NDIMC;
  const int tm = tid / NDIMC;
  int tile_m, tile_n;
  TileCoords(tile_m, tile_n);
  const int bm = tile_m * MWG;
  const int bn = tile_n * NWG;
  int k_begin, num_tiles;
  KSlice(K, k_begin, num_tiles);

  float acc[MWI][NWI];
#pragma unroll
  for (int i = 0; i < MWI; ++i) {
#pragma unroll
    for (int j = 0; j < NWI; ++j) acc[i][j] = 0.0f;
  }

  constexpr bool kStaged = SA || SB;
  auto load_tile = [&](int stage, int tile) {
    const int k0 = k_begin + tile * KWG;
    if constexpr (SA) LoadTileA(As[SA ? stage : 0], A, bm, k0, M, K, tid);
    if constexpr (SB) LoadTileB(Bs[SB ? stage : 0], B, bn, k0, N, K, tid);
  };

  // Prologue: tiles 0 .. STAGES-2 in flight.
  if constexpr (kStaged && STAGES > 1) {
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
      if (s < num_tiles) load_tile(s, s);
      __pipeline_commit();
    }
  }

  int stage = 0;  // buffer of tile t
  for (int t = 0; t < num_tiles; ++t) {
    if constexpr (kStaged) {
      if constexpr (STAGES == 1) {
        if (t > 0) __syncthreads();  // everyone is done with the previous tile
        load_tile(0, t);
        __pipeline_commit();
        __pipeline_wait_prior(0);
      } else {
        __pipeline_wait_prior(STAGES >= 2 ? STAGES - 2 : 0);  // this thread's copies of tile t landed
      }
      __syncthreads();  // everyone's copies have landed; tile t - 1 is no longer read
      if constexpr (STAGES > 1) {
        const int next = t + STAGES - 1;
        int next_stage = stage + STAGES - 1;
        if (next_stage >= STAGES) next_stage -= STAGES;
        if (next < num_tiles) load_tile(next_stage, next);
        __pipeline_commit();
      }
    }
    const int k0 = k_begin + t * KWG;
    const float* as = As[SA ? stage : 0];
    const float* bs = Bs[SB ? stage : 0];
#pragma unroll kUnrollK
    for (int k = 0; k < KWG; ++k) {
      float a[MWI];
      float b[NWI];
      if constexpr (SA) {
#pragma unroll
        for (int i = 0; i < MWI / VWM; ++i) {
          LoadShared<VWM>(&a[i * VWM], as + k * LDA + (i * MDIMC + tm) * VWM);
        }
      } else {
        const int gk = k0 + k;
#pragma unroll
        for (int i = 0; i < MWI / VWM; ++i) {
#pragma unroll
          for (int v = 0; v < VWM; ++v) {
            const int gm = bm + (i * MDIMC + tm) * VWM + v;
            const bool ok = (kEvenM || gm < M) && (kEvenK || gk < K);
            a[i * VWM + v] = ok ? __ldg(A + (size_t)gm * K + gk) : 0.0f;
          }
        }
      }
      if constexpr (SB) {
#pragma unroll
        for (int j = 0; j < NWI / VWN; ++j) {
          LoadShared<VWN>(&b[j * VWN], bs + k * LDB + (j * NDIMC + tn) * VWN);
        }
      } else {
        const int gk = k0 + k;
        const bool ok_k = kEvenK || gk < K;
#pragma unroll
        for (int j = 0; j < NWI / VWN; ++j) {
#pragma unroll
          for (int u = 0; u < VWN / VB; ++u) {
            const int gn = bn + (j * NDIMC + tn) * VWN + u * VB;
            if (ok_k && (kEvenN || gn < N)) {
              LoadGlobal<VB>(&b[j * VWN + u * VB], B + (size_t)gk * N + gn);
            } else {
#pragma unroll
              for (int w = 0; w < VB; ++w) b[j * VWN + u * VB + w] = 0.0f;
            }
          }
        }
      }
#pragma unroll
      for (int i = 0; i < MWI; ++i) {
#pragma unroll
        for (int j = 0; j < NWI; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
    }
    if (++stage == STAGES) stage = 0;
  }
  if constexpr (kStaged) __pipeline_wait_prior(0);  // nothing left in flight at exit

  if (SPLITK > 1 && num_tiles == 0) return;  // an empty slice adds nothing
#pragma unroll
  for (int i = 0; i < MWI / VWM; ++i) {
#pragma unroll
    for (int v = 0; v < VWM; ++v) {
      const int gm = bm + (i * MDIMC + tm) * VWM + v;
      if (!kEvenM && gm >= M) continue;
      float* crow = C + (size_t)gm * N;
#pragma unroll
      for (int j = 0; j < NWI / VWN; ++j) {
#pragma unroll
        for (int u = 0; u < VWN / VC; ++u) {
          const int gn = bn + (j * NDIMC + tn) * VWN + u * VC;
          if (kEvenN || gn < N) StoreC<VC>(crow + gn, &acc[i * VWM + v][j * VWN + u * VC]);
        }
      }
    }
  }
}

#else  // KT_GEMM_TC
// ------------------------------------------------------------------------------------------------
// f16, bf16, i8: WMMA tensor cores

namespace wmma = nvcuda::wmma;

constexpr int WARPS_M = MDIMC / 4;
constexpr int WARPS_N = NDIMC / 8;
constexpr int WTM = MWG / WARPS_M;  // warp tile
constexpr int WTN = NWG / WARPS_N;
constexpr int FM = WTM / 16;  // fragments per warp
constexpr int FN = WTN / 16;
static_assert(WARPS_M * WARPS_N * 32 == T, "warp grid");
static_assert(WTM % 16 == 0 && WTN % 16 == 0 && KWG % 16 == 0, "WMMA tiles");

constexpr int ES = sizeof(kt_elem);  // bytes per input element: 2, or 1 for i8
constexpr bool kPanels = ES == 1;    // i8: tiles in 16-wide panels (see the header)
constexpr int kVec = 16 / ES;        // elements per 16-byte copy
// 16-bit types: row-major tiles, rows padded by 8 elements (16 bytes: multiple of 8 elements,
// rows 16 bytes apart mod 128). i8: panels, unpadded.
constexpr int PAD = kPanels ? 0 : 8;
constexpr int LDA = KWG + PAD;  // As[m][k]
constexpr int LDB = NWG + PAD;  // Bs[k][n]
constexpr int A_STAGE = MWG * LDA;  // elements
constexpr int B_STAGE = KWG * LDB;
constexpr int PIPE_BYTES = STAGES * (A_STAGE + B_STAGE) * ES;
constexpr int LDE = 20;  // accumulators: per-warp 16 x 16 staging in the epilogue (4-byte words)
constexpr int EPI_BYTES = (T / 32) * 16 * LDE * 4;
constexpr int SMEM_BYTES = CMax(PIPE_BYTES, EPI_BYTES);
static_assert(SMEM_BYTES <= 48 * 1024, "shared memory");
static_assert(sizeof(kt_acc) == 4, "epilogue staging");

// Shared-memory offset (elements) of A element (m, k) and of B element (k, n) within a stage,
// and the leading dimension a fragment is loaded with.
__device__ __forceinline__ int AOffset(int m, int k) {
  if constexpr (kPanels) return (k / 16) * (MWG * 16) + m * 16 + k % 16;
  return m * LDA + k;
}
__device__ __forceinline__ int BOffset(int k, int n) {
  if constexpr (kPanels) return (n / 16) * (KWG * 16) + k * 16 + n % 16;
  return k * LDB + n;
}
constexpr int kLdmA = kPanels ? 16 : LDA;
constexpr int kLdmB = kPanels ? 16 : LDB;

// Elements per copy: 16, 8 or 4-byte cp.async where the row length keeps the rows aligned; with
// a row length that allows no 4-byte copy, kVec elements loaded one by one and stored to shared
// memory as one 16-byte vector.
constexpr int kMinCopy = 4 / ES;
constexpr bool kSyncA = AlignedWidth(kVec, kKConst) < kMinCopy;
constexpr bool kSyncB = AlignedWidth(kVec, kNConst) < kMinCopy;
constexpr int CWA = kSyncA ? kVec : AlignedWidth(kVec, kKConst);
constexpr int CWB = kSyncB ? kVec : AlignedWidth(kVec, kNConst);

// dst[0..kVec) = src[0..n) (n <= kVec valid elements), zeros after; dst is 16-byte aligned.
// Copied as raw bits: zero bits are zero in every input type.
__device__ __forceinline__ void CopySync(kt_elem* dst, const kt_elem* src, int n) {
  typedef unsigned short Bits2;
  typedef unsigned char Bits1;
  if constexpr (ES == 2) {
    __align__(16) Bits2 v[kVec];
    const Bits2* s = reinterpret_cast<const Bits2*>(src);
#pragma unroll
    for (int e = 0; e < kVec; ++e) v[e] = e < n ? s[e] : Bits2(0);
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(v);
  } else {
    __align__(16) Bits1 v[kVec];
    const Bits1* s = reinterpret_cast<const Bits1*>(src);
#pragma unroll
    for (int e = 0; e < kVec; ++e) v[e] = e < n ? s[e] : Bits1(0);
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(v);
  }
}

// Copies of the A tile: chunk c = row * (KWG / CWA) + column / CWA (a chunk never crosses a
// 16-column panel: CWA divides 16).
__device__ __forceinline__ void LoadTileA(kt_elem* as, const kt_elem* __restrict__ A, int bm,
                                          int k0, int M, int K, int tid) {
  constexpr int kPerRow = KWG / CWA;
  constexpr int kChunks = MWG * kPerRow;
#pragma unroll
  for (int it = 0; it < (kChunks + T - 1) / T; ++it) {
    const int c = tid + it * T;
    if (kChunks % T != 0 && c >= kChunks) break;
    const int m = c / kPerRow;
    const int k = (c % kPerRow) * CWA;
    const int gm = bm + m;
    const int gk = k0 + k;
    if constexpr (!kSyncA) {
      const bool ok = (kEvenM || gm < M) && (kEvenK || gk < K);  // K % CWA == 0: all or nothing
      CopyAsync<CWA * ES>(as + AOffset(m, k), A + (size_t)gm * K + gk, ok);
    } else {
      const int n = (kEvenM || gm < M) ? min(kVec, K - gk) : 0;
      CopySync(as + AOffset(m, k), A + (size_t)gm * K + gk, n);
    }
  }
}

// Copies of the B tile: chunk c = row * (NWG / CWB) + column / CWB.
__device__ __forceinline__ void LoadTileB(kt_elem* bs, const kt_elem* __restrict__ B, int bn,
                                          int k0, int N, int K, int tid) {
  constexpr int kPerRow = NWG / CWB;
  constexpr int kChunks = KWG * kPerRow;
#pragma unroll
  for (int it = 0; it < (kChunks + T - 1) / T; ++it) {
    const int c = tid + it * T;
    if (kChunks % T != 0 && c >= kChunks) break;
    const int k = c / kPerRow;
    const int n = (c % kPerRow) * CWB;
    const int gk = k0 + k;
    const int gn = bn + n;
    if constexpr (!kSyncB) {
      const bool ok = (kEvenK || gk < K) && (kEvenN || gn < N);
      CopyAsync<CWB * ES>(bs + BOffset(k, n), B + (size_t)gk * N + gn, ok);
    } else {
      const int count = (kEvenK || gk < K) ? min(kVec, N - gn) : 0;
      CopySync(bs + BOffset(k, n), B + (size_t)gk * N + gn, count);
    }
  }
}

// Writes (or, split-K, adds) two consecutive columns of C, dst aligned to the pair; or one.
#if KT_GEMM_I8
__device__ __forceinline__ void StorePair(int* dst, int v0, int v1) {
  if constexpr (SPLITK > 1) {
    atomicAdd(dst, v0);
    atomicAdd(dst + 1, v1);
  } else {
    *reinterpret_cast<int2*>(dst) = make_int2(v0, v1);
  }
}
__device__ __forceinline__ void StoreOne(int* dst, int v) {
  if constexpr (SPLITK > 1) {
    atomicAdd(dst, v);
  } else {
    *dst = v;
  }
}
#elif KT_GEMM_BF16
__device__ __forceinline__ void StorePair(__nv_bfloat16* dst, float v0, float v1) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(v0, v1);
  if constexpr (SPLITK > 1) {
    atomicAdd(reinterpret_cast<__nv_bfloat162*>(dst), h);
  } else {
    *reinterpret_cast<__nv_bfloat162*>(dst) = h;
  }
}
__device__ __forceinline__ void StoreOne(__nv_bfloat16* dst, float v) {
  if constexpr (SPLITK > 1) {
    atomicAdd(dst, __float2bfloat16_rn(v));
  } else {
    *dst = __float2bfloat16_rn(v);
  }
}
#else
__device__ __forceinline__ void StorePair(__half* dst, float v0, float v1) {
  const __half2 h = __floats2half2_rn(v0, v1);
  if constexpr (SPLITK > 1) {
    atomicAdd(reinterpret_cast<__half2*>(dst), h);
  } else {
    *reinterpret_cast<__half2*>(dst) = h;
  }
}
__device__ __forceinline__ void StoreOne(__half* dst, float v) {
  if constexpr (SPLITK > 1) {
    atomicAdd(dst, __float2half(v));
  } else {
    *dst = __float2half(v);
  }
}
#endif

}  // namespace ktg
using namespace ktg;

extern "C" __global__ void __launch_bounds__(T)
    ktune_kernel(const kt_elem* __restrict__ A, const kt_elem* __restrict__ B,
                 kt_out* __restrict__ C, int M_arg, int N_arg, int K_arg) {
#ifdef KT_PROBLEM_M
  const int M = KT_PROBLEM_M;
  const int N = KT_PROBLEM_N;
  const int K = KT_PROBLEM_K;
#else
  const int M = M_arg;
  const int N = N_arg;
  const int K = K_arg;
#endif
  __shared__ __align__(128) unsigned char smem[SMEM_BYTES];
  kt_elem* const as_base = reinterpret_cast<kt_elem*>(smem);
  kt_elem* const bs_base = as_base + STAGES * A_STAGE;

  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int wm = warp / WARPS_N;
  const int wn = warp % WARPS_N;
  int tile_m, tile_n;
  TileCoords(tile_m, tile_n);
  const int bm = tile_m * MWG;
  const int bn = tile_n * NWG;
  int k_begin, num_tiles;
  KSlice(K, k_begin, num_tiles);

  wmma::fragment<wmma::accumulator, 16, 16, 16, kt_acc> acc[FM][FN];
#pragma unroll
  for (int i = 0; i < FM; ++i) {
#pragma unroll
    for (int j = 0; j < FN; ++j) wmma::fill_fragment(acc[i][j], kt_acc(0));
  }

  auto load_tile = [&](int stage, int tile) {
    const int k0 = k_begin + tile * KWG;
    LoadTileA(as_base + stage * A_STAGE, A, bm, k0, M, K, tid);
    LoadTileB(bs_base + stage * B_STAGE, B, bn, k0, N, K, tid);
  };

  if constexpr (STAGES > 1) {
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
      if (s < num_tiles) load_tile(s, s);
      __pipeline_commit();
    }
  }

  int stage = 0;
  for (int t = 0; t < num_tiles; ++t) {
    if constexpr (STAGES == 1) {
      if (t > 0) __syncthreads();
      load_tile(0, t);
      __pipeline_commit();
      __pipeline_wait_prior(0);
    } else {
      __pipeline_wait_prior(STAGES >= 2 ? STAGES - 2 : 0);
    }
    __syncthreads();
    if constexpr (STAGES > 1) {
      const int next = t + STAGES - 1;
      int next_stage = stage + STAGES - 1;
      if (next_stage >= STAGES) next_stage -= STAGES;
      if (next < num_tiles) load_tile(next_stage, next);
      __pipeline_commit();
    }
    const kt_elem* as = as_base + stage * A_STAGE;
    const kt_elem* bs = bs_base + stage * B_STAGE;
#pragma unroll
    for (int kk = 0; kk < KWG; kk += 16) {
      // All of the warp's A fragments, then B one fragment at a time (FM + 1 live fragments).
      wmma::fragment<wmma::matrix_a, 16, 16, 16, kt_elem, wmma::row_major> af[FM];
#pragma unroll
      for (int i = 0; i < FM; ++i) {
        wmma::load_matrix_sync(af[i], as + AOffset(wm * WTM + i * 16, kk), kLdmA);
      }
#pragma unroll
      for (int j = 0; j < FN; ++j) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, kt_elem, wmma::row_major> bf;
        wmma::load_matrix_sync(bf, bs + BOffset(kk, wn * WTN + j * 16), kLdmB);
#pragma unroll
        for (int i = 0; i < FM; ++i) wmma::mma_sync(acc[i][j], af[i], bf, acc[i][j]);
      }
    }
    if (++stage == STAGES) stage = 0;
  }
  __pipeline_wait_prior(0);
  __syncthreads();  // the pipeline buffers become the epilogue's staging area

  if (SPLITK > 1 && num_tiles == 0) return;
  kt_acc* stage_out = reinterpret_cast<kt_acc*>(smem) + warp * 16 * LDE;
  constexpr bool kEvenCols = kNConst % 2 == 0;  // pair stores stay aligned to the pair
#pragma unroll
  for (int i = 0; i < FM; ++i) {
#pragma unroll
    for (int j = 0; j < FN; ++j) {
      wmma::store_matrix_sync(stage_out, acc[i][j], LDE, wmma::mem_row_major);
      __syncwarp();
#pragma unroll
      for (int p = 0; p < 4; ++p) {  // 128 pairs of columns, 4 per lane
        const int e = lane + 32 * p;
        const int r = e / 8;
        const int c = (e % 8) * 2;
        const int gm = bm + wm * WTM + i * 16 + r;
        const int gn = bn + wn * WTN + j * 16 + c;
        if (!kEvenM && gm >= M) continue;
        const kt_acc v0 = stage_out[r * LDE + c];
        const kt_acc v1 = stage_out[r * LDE + c + 1];
        kt_out* dst = C + (size_t)gm * N + gn;
        if (kEvenCols && (kEvenN || gn < N)) {  // gn even, N even: both columns inside
          StorePair(dst, v0, v1);
        } else {
          if (gn < N) StoreOne(dst, v0);
          if (gn + 1 < N) StoreOne(dst + 1, v1);
        }
      }
      __syncwarp();
    }
  }
}

#endif  // KT_GEMM_TC

#endif  // KT_REFERENCE
