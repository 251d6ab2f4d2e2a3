// The CUDA row kernels: row sums (kernels/cuda/reduce_rows.cu) and row softmax
// (kernels/cuda/softmax.cu). Their header comments describe the parameters.
#include "kernels/cuda_kernel_sources.h"
#include "kernels/kernel_registry.h"

namespace ktune {

namespace {

// Slots of vw floats a thread of a row's group owns (a row that does not start on a vector
// boundary touches one more slot).
constexpr char kSlotsPerThread[] =
    "(((cols + 2 * vw - 2) // vw + row_threads - 1) // row_threads)";

std::vector<ProblemParameter> RowsProblem() {
  return {{"rows", 1, 1 << 24, "rows (independent reductions)"},
          {"cols", 1, 1 << 24, "columns (the reduction length)"}};
}

}  // namespace

KernelDefinition CudaReduceRowsDefinition() {
  KernelDefinition d;
  d.name = "cuda_reduce_rows";
  d.language = "cuda";
  d.description = "row sums y[r] = sum_c x[r][c], float32, row-major";
  d.source = kCudaREDUCE_ROWSSource;
  d.builtin = true;
  d.parameters = {
      {"block_size", {32, 64, 128, 256, 512, 1024}, true, "threads per block"},
      {"row_threads",
       {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
       true,
       "threads summing one row (32: a warp per row)"},
      {"vw", {1, 2, 4}, true, "vector width of the loads in floats"},
      {"unroll", {1, 2, 4, 8}, true, "vector loads in flight per thread (accumulators)"},
      {"col_split", {1, 2, 4, 8, 16, 32}, true, "blocks per row (blockIdx.y), added by atomics"},
      {"stream", {0, 1}, true, "1: streaming loads (__ldcs, evict-first); 0: __ldg"},
  };
  d.constraints = {
      "row_threads <= block_size",
      // Groups wider than a warp only for rows that give each thread a vector.
      "row_threads <= 32 or row_threads * vw <= cols",
      // At most 2^17 elements summed one after another by a thread (float rounding; and a
      // thread per row of millions of elements is hopeless anyway).
      "cols <= row_threads * vw * 131072",
      // Split rows only when there are few rows, and each part keeps every thread busy.
      "col_split == 1 or (rows <= 2048 and col_split * row_threads * vw * unroll <= cols)",
  };
  d.problem = RowsProblem();
  d.buffers = {{"x", "rows * cols", false}, {"y", "rows", true}};
  d.flops = "rows * cols";
  d.bytes = "4 * (rows * cols + rows)";
  // An untuned library: 256 threads, a warp per row, float4 loads, two in flight.
  d.default_config = {{"block_size", "256"}, {"row_threads", "32"}, {"vw", "4"},
                      {"unroll", "2"},       {"col_split", "1"},    {"stream", "0"}};
  d.rtol = 1e-4;
  d.atol = 1e-5;
  d.launch.grid = {"(rows + block_size // row_threads - 1) // (block_size // row_threads)",
                   "col_split", "1"};
  d.launch.block = {"block_size", "1", "1"};
  d.launch.reference_items = "rows";
  d.launch.zero_outputs = "col_split > 1";
  return d;
}

KernelDefinition CudaSoftmaxDefinition() {
  KernelDefinition d;
  d.name = "cuda_softmax";
  d.language = "cuda";
  d.description = "row softmax, float32, row-major, numerically stable (row maximum subtracted)";
  d.source = kCudaSOFTMAXSource;
  d.builtin = true;
  d.parameters = {
      {"block_size", {32, 64, 128, 256, 512, 1024}, true, "threads per block"},
      {"row_threads",
       {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
       true,
       "threads handling one row (32: a warp per row)"},
      {"vw", {1, 2, 4}, true, "vector width of the loads and stores in floats"},
      {"cache_row",
       {0, 1, 2},
       true,
       "where a thread keeps its part of the row between passes: 0 nowhere (re-read), "
       "1 registers, 2 shared memory"},
      {"online", {0, 1}, true, "0: max, sum, write passes; 1: online max and sum, write"},
      {"fast_exp", {0, 1}, true, "1: __expf; 0: expf"},
  };
  d.constraints = {
      "row_threads <= block_size",
      "row_threads <= 32 or row_threads * vw <= cols",
      // At most 2^14 elements per thread: its running sum of exponentials stays within about
      // 4e-6 of the exact sum (a float running sum of 2^20 terms is off by 1e-4).
      "cols <= row_threads * vw * 16384",
      // The row in registers: at most 64 floats per thread, and room for them at this block
      // size (65536 registers per block).
      std::string("cache_row != 1 or (") + kSlotsPerThread + " * vw <= 64 and " +
          kSlotsPerThread + " * vw + 32 <= 65536 // block_size)",
      // The block's rows in shared memory, with the reduction scratch, within 48 KiB.
      std::string("cache_row != 2 or block_size // row_threads * ") + kSlotsPerThread +
          " * row_threads * vw * 4 + 256 <= 49152",
  };
  d.problem = RowsProblem();
  d.buffers = {{"x", "rows * cols", false}, {"y", "rows * cols", true}};
  // Per element: compare (max), subtract, exp, add (sum), multiply (normalise); exp counts as
  // one operation (as the CPU softmax counts).
  d.flops = "5 * rows * cols";
  d.bytes = "8 * rows * cols";  // read x, write y
  // An untuned library: a warp per row for rows under 2048 elements, else a block of 512
  // threads per row; float4 accesses, three passes over global memory, the accurate expf.
  d.default_config = {{"block_size", "cols < 2048 and 128 or 512"},
                      {"row_threads", "cols < 2048 and 32 or 512"},
                      {"vw", "4"},
                      {"cache_row", "0"},
                      {"online", "0"},
                      {"fast_exp", "0"}};
  d.rtol = 1e-5;
  d.atol = 1e-8;
  d.launch.grid = {"(rows + block_size // row_threads - 1) // (block_size // row_threads)", "1",
                   "1"};
  d.launch.block = {"block_size", "1", "1"};
  d.launch.reference_items = "rows";
  return d;
}

}  // namespace ktune
