// ktune CUDA template: 2-D convolution, float32 (kernels/cuda/README.md). Kernel Tuner's
// convolution kernel, the one behind the shared convolution search spaces:
//
//   output[y][x] = sum_{i < filter_height, j < filter_width} input[y + i][x + j] * filter[i][j]
//
// input is (height + filter_height - 1) x (width + filter_width - 1), output height x width, all
// row-major. Buffers input, filter, output; problem width, height, filter_width, filter_height.
// Definition: kernels/cuda_conv2d_definition.cc.
//
// A block of block_size_x x block_size_y threads computes a (block_size_x * tile_size_x) x
// (block_size_y * tile_size_y) tile of the output; thread (tx, ty) computes the tile_size_x x
// tile_size_y outputs (tx + xi * block_size_x, ty + yi * block_size_y), so that a warp's loads
// are consecutive in x.
//   use_shmem:   1 = the block first copies the input tile and its halo into shared memory;
//                0 = every thread reads the input from global memory (through L1).
//   use_padding: with use_shmem, pad the shared rows (Kernel Tuner's rule: only when
//                block_size_x and the halo are not multiples of 32) against bank conflicts.
//   read_only:   load the input with __ldg (the read-only / texture path).
// Kernel Tuner keeps the filter in constant memory (use_cmem); here it is a buffer, so the block
// copies it into shared memory (every thread then reads the same word: a broadcast). The filter
// size comes from KT_PROBLEM_FILTER_WIDTH / _HEIGHT at compile time: the loop over a filter row
// unrolls.
// Any width and height: loads and stores are bounds-checked where the tiles do not divide them.

#if defined(KT_REFERENCE) && KT_REFERENCE

// One output pixel per work item.
extern "C" __global__ void ktune_reference(const float* input, const float* filter,
                                           float* output, int width, int height,
                                           int filter_width, int filter_height) {
  const size_t in_width = (size_t)width + filter_width - 1;
  const size_t total = (size_t)width * height;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const size_t y = idx / width;
    const size_t x = idx % width;
    float sum = 0.0f;
    for (int i = 0; i < filter_height; ++i) {
      for (int j = 0; j < filter_width; ++j) {
        sum += input[(y + i) * in_width + x + j] * filter[i * filter_width + j];
      }
    }
    output[idx] = sum;
  }
}

#else  // the tuned kernel

namespace ktc {

constexpr int BSX = KT_BLOCK_SIZE_X;
constexpr int BSY = KT_BLOCK_SIZE_Y;
constexpr int TSX = KT_TILE_SIZE_X;
constexpr int TSY = KT_TILE_SIZE_Y;
constexpr int USE_SHMEM = KT_USE_SHMEM;
constexpr int USE_PADDING = KT_USE_PADDING;
constexpr int READ_ONLY = KT_READ_ONLY;

constexpr int W = KT_PROBLEM_WIDTH;
constexpr int H = KT_PROBLEM_HEIGHT;
constexpr int FW = KT_PROBLEM_FILTER_WIDTH;
constexpr int FH = KT_PROBLEM_FILTER_HEIGHT;
constexpr int IW = W + FW - 1;  // input width
constexpr int IH = H + FH - 1;  // input height

constexpr int TILE_W = BSX * TSX;  // output tile of a block
constexpr int TILE_H = BSY * TSY;
constexpr int SH_W = TILE_W + FW - 1;  // input tile with its halo
constexpr int SH_H = TILE_H + FH - 1;
// Kernel Tuner's padding: only when neither block_size_x nor the halo keeps rows bank-aligned.
constexpr int PAD = (USE_PADDING && BSX % 32 != 0 && (SH_W - BSX) % 32 != 0)
                        ? ((32 - (SH_W - BSX)) & 31)
                        : 0;
constexpr int SH_STRIDE = SH_W + PAD;
constexpr bool kEvenX = W % TILE_W == 0;
constexpr bool kEvenY = H % TILE_H == 0;
static_assert(BSX * BSY <= 1024, "threads");
static_assert((USE_SHMEM ? SH_H * SH_STRIDE : 0) * 4 + FW * FH * 4 <= 48 * 1024, "shared memory");


__device__ __forceinline__ float Load(const float* p) {
  if constexpr (READ_ONLY) {
    return __ldg(p);
  } else {
    return *p;
  }
}

}  // namespace ktc
using namespace ktc;

extern "C" __global__ void __launch_bounds__(BSX * BSY)
    ktune_kernel(const float* input, const float* filter, float* output, int width_arg,
                 int height_arg, int filter_width_arg, int filter_height_arg) {
  __shared__ float sh_filter[FH * FW];
  __shared__ float sh_input[USE_SHMEM ? SH_H : 1][USE_SHMEM ? SH_STRIDE : 1];

  const int tx = threadIdx.x;
  const int ty = threadIdx.y;
  const int bx = blockIdx.x * TILE_W;
  const int by = blockIdx.y * TILE_H;

  for (int i = ty * BSX + tx; i < FH * FW; i += BSX * BSY) sh_filter[i] = filter[i];
  if constexpr (USE_SHMEM) {
#pragma unroll
    for (int i = ty; i < SH_H; i += BSY) {
#pragma unroll
      for (int j = tx; j < SH_W; j += BSX) {
        const int y = by + i;
        const int x = bx + j;
        const bool ok = (kEvenY || y < IH) && (kEvenX || x < IW);
        sh_input[i][j] = ok ? Load(input + (size_t)y * IW + x) : 0.0f;
      }
    }
  }
  __syncthreads();

  float sum[TSY][TSX];
#pragma unroll
  for (int yi = 0; yi < TSY; ++yi) {
#pragma unroll
    for (int xi = 0; xi < TSX; ++xi) sum[yi][xi] = 0.0f;
  }

  // Without shared memory, outputs past the edge compute on clamped (in-bounds) coordinates and
  // are not stored.
  int gy[TSY];
  int gx[TSX];
#pragma unroll
  for (int yi = 0; yi < TSY; ++yi) gy[yi] = min(by + ty + yi * BSY, H - 1);
#pragma unroll
  for (int xi = 0; xi < TSX; ++xi) gx[xi] = min(bx + tx + xi * BSX, W - 1);

  // Filter rows one at a time: a row's filter_width x tile loads and FMAs are independent work
  // enough, and unrolling the rows too makes the compiler hoist every load and spill.
#pragma unroll 1
  for (int i = 0; i < FH; ++i) {
#pragma unroll
    for (int j = 0; j < FW; ++j) {
      const float f = sh_filter[i * FW + j];
#pragma unroll
      for (int yi = 0; yi < TSY; ++yi) {
#pragma unroll
        for (int xi = 0; xi < TSX; ++xi) {
          float v;
          if constexpr (USE_SHMEM) {
            v = sh_input[ty + yi * BSY + i][tx + xi * BSX + j];
          } else {
            v = Load(input + (size_t)(gy[yi] + i) * IW + gx[xi] + j);
          }
          sum[yi][xi] += v * f;
        }
      }
    }
  }

#pragma unroll
  for (int yi = 0; yi < TSY; ++yi) {
    const int y = by + ty + yi * BSY;
#pragma unroll
    for (int xi = 0; xi < TSX; ++xi) {
      const int x = bx + tx + xi * BSX;
      if ((kEvenY || y < H) && (kEvenX || x < W)) output[(size_t)y * W + x] = sum[yi][xi];
    }
  }
}

#endif  // KT_REFERENCE
