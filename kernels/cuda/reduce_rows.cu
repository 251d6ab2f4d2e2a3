// ktune CUDA template: row sums, float32 (kernels/cuda/README.md).
//
//   y[r] = sum_c x[r][c]      x: rows x cols, row-major
//
// Buffers x, y; problem rows, cols. Definition: kernels/cuda_rows_definition.cc.
//
// A block of block_size threads is cut into groups of row_threads consecutive threads; each group
// sums one row (block_size / row_threads rows per block): 1 = a thread per row, 32 = a warp per
// row, block_size = the whole block on one row. A thread reads vectors of vw floats (float2 /
// float4; rows whose start is not vector-aligned get a scalar head and tail), vector i + u *
// row_threads for u < unroll in flight at once into unroll independent accumulators, so that a
// group's loads are consecutive. The group's partial sums meet through warp shuffles, and through
// shared memory when it spans several warps. col_split > 1 splits every row into col_split
// column ranges over blockIdx.y whose sums are added into y with atomicAdd (the runner zeroes y
// first: launch.zero_outputs). stream = 1 loads with __ldcs (evict-first: x is read once),
// 0 with __ldg.

#if defined(KT_REFERENCE) && KT_REFERENCE

// One row per work item; double accumulation (a float running sum of 2^24 terms carries more
// rounding than the kernels' tree-shaped sums).
extern "C" __global__ void ktune_reference(const float* x, float* y, int rows, int cols) {
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t r = (size_t)blockIdx.x * blockDim.x + threadIdx.x; r < (size_t)rows; r += stride) {
    double sum = 0.0;
    for (int c = 0; c < cols; ++c) sum += x[r * cols + c];
    y[r] = (float)sum;
  }
}

#else  // the tuned kernel

namespace ktr {

constexpr int BS = KT_BLOCK_SIZE;
constexpr int TPR = KT_ROW_THREADS;
constexpr int VW = KT_VW;
constexpr int UNROLL = KT_UNROLL;
constexpr int SPLIT = KT_COL_SPLIT;
constexpr int STREAM = KT_STREAM;
constexpr int RPB = BS / TPR;  // rows per block
constexpr int ROWS = KT_PROBLEM_ROWS;
constexpr int COLS = KT_PROBLEM_COLS;
static_assert(BS % TPR == 0 && BS <= 1024 && (TPR & (TPR - 1)) == 0, "thread groups");
static_assert(VW == 1 || VW == 2 || VW == 4, "vector width");

// Columns per split: a multiple of 4, so that split boundaries keep the vector alignment.
constexpr int CHUNK = SPLIT == 1 ? COLS : ((COLS + SPLIT - 1) / SPLIT + 3) / 4 * 4;
// Every segment starts vector-aligned when the row length is a multiple of the vector width.
constexpr bool kAligned = COLS % VW == 0;

template <int W> struct Vec;
template <> struct Vec<1> { typedef float type; };
template <> struct Vec<2> { typedef float2 type; };
template <> struct Vec<4> { typedef float4 type; };

template <class T>
__device__ __forceinline__ T Load(const T* p) {
  if constexpr (STREAM) {
    return __ldcs(p);
  } else {
    return __ldg(p);
  }
}
__device__ __forceinline__ float Sum(float v) { return v; }
__device__ __forceinline__ float Sum(float2 v) { return v.x + v.y; }
__device__ __forceinline__ float Sum(float4 v) { return (v.x + v.y) + (v.z + v.w); }

}  // namespace ktr
using namespace ktr;

extern "C" __global__ void __launch_bounds__(BS)
    ktune_kernel(const float* __restrict__ x, float* __restrict__ y, int rows_arg, int cols_arg) {
  typedef typename Vec<VW>::type VecT;
  const int tid = threadIdx.x;
  const int lane = tid % TPR;  // within the row's group
  const int group = tid / TPR;
  const int row = blockIdx.x * RPB + group;
  const bool row_ok = row < ROWS;

  const int c_begin = (SPLIT > 1 ? (int)blockIdx.y : 0) * CHUNK;
  int n = row_ok ? min(COLS, c_begin + CHUNK) - c_begin : 0;  // may be <= 0 past the row end
  if (n < 0) n = 0;
  const size_t base = (size_t)row * COLS + c_begin;
  const float* p = x + base;

  float acc[UNROLL];
#pragma unroll
  for (int u = 0; u < UNROLL; ++u) acc[u] = 0.0f;

  if constexpr (!kAligned) {  // scalar head up to the first vector boundary
    const int head = min(n, (int)((VW - base % VW) % VW));
    for (int e = lane; e < head; e += TPR) acc[0] += Load(p + e);
    p += head;
    n -= head;
  }
  const int nv = n / VW;
  const VecT* pv = reinterpret_cast<const VecT*>(p);
  int i = lane;
  for (; i + (UNROLL - 1) * TPR < nv; i += UNROLL * TPR) {
    VecT v[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) v[u] = Load(pv + i + u * TPR);
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) acc[u] += Sum(v[u]);
  }
  for (; i < nv; i += TPR) acc[0] += Sum(Load(pv + i));
  if constexpr (!kAligned) {  // scalar tail
    const int tail = n - nv * VW;
    for (int e = lane; e < tail; e += TPR) acc[0] += Load(p + nv * VW + e);
  }

  float sum = acc[0];
#pragma unroll
  for (int u = 1; u < UNROLL; ++u) sum += acc[u];

  // The group's sum: shuffles within a warp, then shared memory across its warps.
  constexpr int kWidth = TPR < 32 ? TPR : 32;
#pragma unroll
  for (int off = kWidth / 2; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off, kWidth);
  if constexpr (TPR > 32) {
    constexpr int kWarps = TPR / 32;  // warps per row
    __shared__ float partial[BS / 32];
    if (tid % 32 == 0) partial[tid / 32] = sum;
    __syncthreads();
    if (lane < 32) {
      sum = lane < kWarps ? partial[group * kWarps + lane] : 0.0f;
#pragma unroll
      for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    }
  }
  if (lane == 0 && row_ok) {
    if constexpr (SPLIT > 1) {
      atomicAdd(y + row, sum);
    } else {
      y[row] = sum;
    }
  }
}

#endif  // KT_REFERENCE
