// ktune CUDA template: row softmax, float32 (kernels/cuda/README.md).
//
//   y[r][c] = exp(x[r][c] - max_c x[r]) / sum_c exp(x[r][c] - max_c x[r])      rows x cols
//
// Buffers x, y; problem rows, cols. Definition: kernels/cuda_rows_definition.cc.
//
// A block of block_size threads is cut into groups of row_threads consecutive threads; each group
// handles one row (block_size / row_threads rows per block). The row is read as vector slots of
// vw floats (float2 / float4): slot s covers the vw-aligned address range s, so a row whose start
// is not aligned has partial first and last slots, handled element by element. Thread `lane`
// of the group owns slots lane + t * row_threads (consecutive threads, consecutive vectors).
//   cache_row: 0 = every pass reads the row from global memory again; 1 = the thread keeps its
//              slots in registers (the row must fit: see the definition's constraints);
//              2 = in shared memory (each thread re-reads only what it wrote).
//   online:    0 = three passes: maximum, sum of exp(x - max), write; 1 = one pass keeping a
//              running maximum and a sum rescaled when the maximum grows (Milakov & Gimelshein),
//              then the write pass.
//   fast_exp:  __expf instead of expf.
// Group reductions: warp shuffles, then shared memory across the group's warps; every thread
// of the group gets the result.

#if defined(KT_REFERENCE) && KT_REFERENCE

// One row per work item: maximum, sum of exponentials, normalised output. The sum is kept in
// double: a float running sum of 2^20 positive terms is already off by about 1e-4.
extern "C" __global__ void ktune_reference(const float* x, float* y, int rows, int cols) {
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t r = (size_t)blockIdx.x * blockDim.x + threadIdx.x; r < (size_t)rows; r += stride) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float m = xr[0];
    for (int c = 1; c < cols; ++c) m = fmaxf(m, xr[c]);
    double s = 0.0;
    for (int c = 0; c < cols; ++c) s += expf(xr[c] - m);
    const double inv = 1.0 / s;
    for (int c = 0; c < cols; ++c) yr[c] = (float)(expf(xr[c] - m) * inv);
  }
}

#else  // the tuned kernel

namespace kts {

constexpr int BS = KT_BLOCK_SIZE;
constexpr int TPR = KT_ROW_THREADS;
constexpr int VW = KT_VW;
constexpr int CACHE = KT_CACHE_ROW;
constexpr int ONLINE = KT_ONLINE;
constexpr int FAST_EXP = KT_FAST_EXP;
constexpr int RPB = BS / TPR;  // rows per block
constexpr int ROWS = KT_PROBLEM_ROWS;
constexpr int COLS = KT_PROBLEM_COLS;
static_assert(BS % TPR == 0 && BS <= 1024 && (TPR & (TPR - 1)) == 0, "thread groups");
static_assert(VW == 1 || VW == 2 || VW == 4, "vector width");

constexpr bool kAligned = COLS % VW == 0;  // every row starts on a vector boundary
// Slots per row at most (a misaligned row touches one more), and per thread.
constexpr int NS_MAX = kAligned ? COLS / VW : (COLS + 2 * VW - 2) / VW;
constexpr int NPT = (NS_MAX + TPR - 1) / TPR;
constexpr float kLowest = -3.402823466e38f;  // identity of max that keeps exp(a - b) finite
// Loops over a thread's slots: unrolled completely when the slots live in registers, a few at a
// time otherwise (rows can be millions of slots long).
constexpr int kUnrollSlots = CACHE == 1 ? NPT : 4;

template <int W> struct Vec;
template <> struct Vec<1> { typedef float type; };
template <> struct Vec<2> { typedef float2 type; };
template <> struct Vec<4> { typedef float4 type; };

__device__ __forceinline__ float Exp(float v) {
  if constexpr (FAST_EXP) {
    return __expf(v);
  } else {
    return expf(v);
  }
}

// The vw elements of a vector slot, as floats.
template <int W>
__device__ __forceinline__ void Unpack(float* d, typename Vec<W>::type v);
template <>
__device__ __forceinline__ void Unpack<1>(float* d, float v) {
  d[0] = v;
}
template <>
__device__ __forceinline__ void Unpack<2>(float* d, float2 v) {
  d[0] = v.x;
  d[1] = v.y;
}
template <>
__device__ __forceinline__ void Unpack<4>(float* d, float4 v) {
  d[0] = v.x;
  d[1] = v.y;
  d[2] = v.z;
  d[3] = v.w;
}
template <int W>
__device__ __forceinline__ typename Vec<W>::type Pack(const float* d);
template <>
__device__ __forceinline__ float Pack<1>(const float* d) {
  return d[0];
}
template <>
__device__ __forceinline__ float2 Pack<2>(const float* d) {
  return make_float2(d[0], d[1]);
}
template <>
__device__ __forceinline__ float4 Pack<4>(const float* d) {
  return make_float4(d[0], d[1], d[2], d[3]);
}

// A row seen as vector slots: slot s holds row elements s * VW - o .. s * VW - o + VW - 1, where
// o is the row start's offset from a vector boundary; elements outside [0, COLS) are not part of
// the row (only the first and last slots can have such elements).
struct RowSlots {
  const float* xa;  // x at the vector boundary at or before the row start
  float* ya;
  int o;
  int ns;  // slots of this row (0 for a row past the end)

  __device__ __forceinline__ bool Full(int s) const {
    return kAligned || ((s > 0 || o == 0) && s < ns - 1);
  }
  __device__ __forceinline__ bool Valid(int s, int e) const {
    const int c = s * VW + e - o;
    return c >= 0 && c < COLS;
  }
  // Loads slot s; elements outside the row read as kLowest.
  __device__ __forceinline__ void Load(int s, float* v) const {
    if (Full(s)) {
      Unpack<VW>(v, __ldg(reinterpret_cast<const typename Vec<VW>::type*>(xa) + s));
    } else {
#pragma unroll
      for (int e = 0; e < VW; ++e) v[e] = Valid(s, e) ? __ldg(xa + s * VW + e) : kLowest;
    }
  }
  __device__ __forceinline__ void Store(int s, const float* v) const {
    if (Full(s)) {
      reinterpret_cast<typename Vec<VW>::type*>(ya)[s] = Pack<VW>(v);
    } else {
#pragma unroll
      for (int e = 0; e < VW; ++e) {
        if (Valid(s, e)) ya[s * VW + e] = v[e];
      }
    }
  }
};

// Reductions over a row's group of TPR threads; every thread gets the result. Groups of more
// than a warp meet in shared memory (two barriers per reduction, taken by the whole block).
__device__ __forceinline__ float GroupMax(float v, float* scratch) {
  constexpr int kWidth = TPR < 32 ? TPR : 32;
#pragma unroll
  for (int off = kWidth / 2; off > 0; off /= 2) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off, kWidth));
  }
  if constexpr (TPR > 32) {
    constexpr int kWarps = TPR / 32;
    const int tid = threadIdx.x;
    if (tid % 32 == 0) scratch[tid / 32] = v;
    __syncthreads();
    const float* mine = scratch + (tid / TPR) * kWarps;
    v = mine[0];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) v = fmaxf(v, mine[w]);
    __syncthreads();  // scratch is free again
  }
  return v;
}

__device__ __forceinline__ float GroupSum(float v, float* scratch) {
  constexpr int kWidth = TPR < 32 ? TPR : 32;
#pragma unroll
  for (int off = kWidth / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off, kWidth);
  if constexpr (TPR > 32) {
    constexpr int kWarps = TPR / 32;
    const int tid = threadIdx.x;
    if (tid % 32 == 0) scratch[tid / 32] = v;
    __syncthreads();
    const float* mine = scratch + (tid / TPR) * kWarps;
    v = mine[0];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) v += mine[w];
    __syncthreads();
  }
  return v;
}

// (m, s) pairs of the online softmax: s is a sum of exp(x - m).
__device__ __forceinline__ void Merge(float& m, float& s, float m2, float s2) {
  const float mm = fmaxf(m, m2);
  s = s * Exp(m - mm) + s2 * Exp(m2 - mm);
  m = mm;
}

__device__ __forceinline__ void GroupMerge(float& m, float& s, float* scratch) {
  constexpr int kWidth = TPR < 32 ? TPR : 32;
#pragma unroll
  for (int off = kWidth / 2; off > 0; off /= 2) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, off, kWidth);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, off, kWidth);
    Merge(m, s, m2, s2);
  }
  if constexpr (TPR > 32) {
    constexpr int kWarps = TPR / 32;
    const int tid = threadIdx.x;
    if (tid % 32 == 0) {
      scratch[2 * (tid / 32)] = m;
      scratch[2 * (tid / 32) + 1] = s;
    }
    __syncthreads();
    const float* mine = scratch + 2 * (tid / TPR) * kWarps;
    m = mine[0];
    s = mine[1];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) Merge(m, s, mine[2 * w], mine[2 * w + 1]);
    __syncthreads();
  }
}

}  // namespace kts
using namespace kts;

extern "C" __global__ void __launch_bounds__(BS)
    ktune_kernel(const float* __restrict__ x, float* __restrict__ y, int rows_arg, int cols_arg) {
  __shared__ float scratch[TPR > 32 ? 2 * (BS / 32) : 1];
  __shared__ __align__(16) float row_cache[CACHE == 2 ? RPB * NPT * TPR * VW : 1];

  const int tid = threadIdx.x;
  const int lane = tid % TPR;
  const int group = tid / TPR;
  const int row = blockIdx.x * RPB + group;

  RowSlots rs;
  {
    const size_t start = (size_t)row * COLS;
    rs.o = kAligned ? 0 : (int)(start % VW);
    rs.xa = x + (start - rs.o);
    rs.ya = y + (start - rs.o);
    rs.ns = row < ROWS ? (rs.o + COLS + VW - 1) / VW : 0;
  }
  float* cache = row_cache + (CACHE == 2 ? group * NPT * TPR * VW : 0);
  float regs[CACHE == 1 ? NPT : 1][VW];

  // Slot t of this thread: its values, from the cache or from global memory.
  auto fetch = [&](int t, int s, float* v) {
    if constexpr (CACHE == 1) {
#pragma unroll
      for (int e = 0; e < VW; ++e) v[e] = regs[t][e];
    } else if constexpr (CACHE == 2) {
      Unpack<VW>(v, reinterpret_cast<const typename Vec<VW>::type*>(cache)[s]);
    } else {
      rs.Load(s, v);
    }
  };
  auto keep = [&](int t, int s, const float* v) {
    if constexpr (CACHE == 1) {
#pragma unroll
      for (int e = 0; e < VW; ++e) regs[t][e] = v[e];
    } else if constexpr (CACHE == 2) {
      reinterpret_cast<typename Vec<VW>::type*>(cache)[s] = Pack<VW>(v);
    }
  };

  float m = kLowest;
  float sum = 0.0f;
  if constexpr (ONLINE) {
#pragma unroll kUnrollSlots
    for (int t = 0; t < NPT; ++t) {
      const int s = lane + t * TPR;
      if (s < rs.ns) {
        float v[VW];
        rs.Load(s, v);
        keep(t, s, v);
        float vm = v[0];
#pragma unroll
        for (int e = 1; e < VW; ++e) vm = fmaxf(vm, v[e]);
        const float mm = fmaxf(m, vm);
        float part = 0.0f;
#pragma unroll
        for (int e = 0; e < VW; ++e) part += Exp(v[e] - mm);  // kLowest elements add 0
        sum = sum * Exp(m - mm) + part;
        m = mm;
      }
    }
    GroupMerge(m, sum, scratch);
  } else {
#pragma unroll kUnrollSlots
    for (int t = 0; t < NPT; ++t) {
      const int s = lane + t * TPR;
      if (s < rs.ns) {
        float v[VW];
        rs.Load(s, v);
        keep(t, s, v);
#pragma unroll
        for (int e = 0; e < VW; ++e) m = fmaxf(m, v[e]);
      }
    }
    m = GroupMax(m, scratch);
#pragma unroll kUnrollSlots
    for (int t = 0; t < NPT; ++t) {
      const int s = lane + t * TPR;
      if (s < rs.ns) {
        float v[VW];
        fetch(t, s, v);
#pragma unroll
        for (int e = 0; e < VW; ++e) {
          v[e] = Exp(v[e] - m);
          sum += v[e];
        }
        keep(t, s, v);  // cached: exp(x - max) from here on
      }
    }
    sum = GroupSum(sum, scratch);
  }

  const float inv = 1.0f / sum;
#pragma unroll kUnrollSlots
  for (int t = 0; t < NPT; ++t) {
    const int s = lane + t * TPR;
    if (s < rs.ns) {
      float v[VW];
      fetch(t, s, v);
      const bool have_exp = !ONLINE && CACHE != 0;
#pragma unroll
      for (int e = 0; e < VW; ++e) v[e] = (have_exp ? v[e] : Exp(v[e] - m)) * inv;
      rs.Store(s, v);
    }
  }
}

#endif  // KT_REFERENCE
