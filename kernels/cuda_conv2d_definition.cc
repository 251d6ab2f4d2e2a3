// The CUDA convolution template (kernels/cuda/conv2d.cu): Kernel Tuner's convolution kernel with
// the space of the shared convolution benchmarks (convolution_milo), less use_cmem (the filter
// is a buffer here, staged in shared memory).
#include "kernels/cuda_kernel_sources.h"
#include "kernels/kernel_registry.h"

namespace ktune {

namespace {

// Kernel Tuner's padding columns of the shared input tile (0 unless use_padding and neither
// block_size_x nor the tile's extra width is a multiple of 32).
constexpr char kPaddingColumns[] =
    "((use_padding == 1 and block_size_x % 32 != 0 and "
    "(block_size_x * tile_size_x + filter_width - 1 - block_size_x) % 32 != 0) and "
    "(32 - (block_size_x * tile_size_x + filter_width - 1 - block_size_x)) % 32 or 0)";

}  // namespace

KernelDefinition CudaConv2dDefinition() {
  KernelDefinition d;
  d.name = "cuda_conv2d";
  d.language = "cuda";
  d.description =
      "2-D convolution, float32, one channel, no padding (Kernel Tuner's convolution kernel)";
  d.source = kCudaCONV2DSource;
  d.builtin = true;
  d.parameters = {
      {"block_size_x",
       {16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256},
       true,
       "threads per block along x"},
      {"block_size_y", {1, 2, 4, 8, 16}, true, "threads per block along y"},
      {"tile_size_x", {1, 2, 3, 4}, true, "outputs per thread along x (block_size_x apart)"},
      {"tile_size_y", {1, 2, 3, 4}, true, "outputs per thread along y (block_size_y apart)"},
      {"read_only", {0, 1}, true, "load the input through the read-only cache (__ldg)"},
      {"use_padding", {0, 1}, true, "pad the shared input tile's rows against bank conflicts"},
      {"use_shmem", {0, 1}, true, "stage the input tile and its halo in shared memory"},
  };
  d.constraints = {
      // convolution_milo's restrictions.
      "use_padding == 0 or block_size_x % 32 != 0",
      "block_size_x * block_size_y <= 1024",
      "use_padding == 0 or use_shmem != 0",
      "use_shmem == 0 or (((block_size_x * tile_size_x + (filter_width - 1))) * "
      "((block_size_y * tile_size_y + (filter_height - 1)))) < 12 * 1024",
      // Static shared memory (the padded input tile and the filter) within 48 KiB.
      std::string("use_shmem == 0 or ((block_size_x * tile_size_x + filter_width - 1 + ") +
          kPaddingColumns +
          ") * (block_size_y * tile_size_y + filter_height - 1) + "
          "filter_width * filter_height) * 4 <= 49152",
  };
  d.problem = {{"width", 1, 16384, "output width"},
               {"height", 1, 16384, "output height"},
               {"filter_width", 1, 33, "filter width (the input is filter_width - 1 wider)"},
               {"filter_height", 1, 33, "filter height (the input is filter_height - 1 taller)"}};
  d.buffers = {{"input", "(width + filter_width - 1) * (height + filter_height - 1)", false},
               {"filter", "filter_width * filter_height", false},
               {"output", "width * height", true}};
  d.flops = "2 * width * height * filter_width * filter_height";
  d.bytes =
      "4 * ((width + filter_width - 1) * (height + filter_height - 1) + "
      "filter_width * filter_height + width * height)";
  // Kernel Tuner's defaults for this kernel.
  d.default_config = {{"block_size_x", "16"}, {"block_size_y", "16"}, {"tile_size_x", "1"},
                      {"tile_size_y", "1"},   {"read_only", "0"},     {"use_padding", "1"},
                      {"use_shmem", "1"}};
  d.rtol = 1e-4;
  d.atol = 1e-5;
  d.launch.grid = {"(width + block_size_x * tile_size_x - 1) // (block_size_x * tile_size_x)",
                   "(height + block_size_y * tile_size_y - 1) // (block_size_y * tile_size_y)",
                   "1"};
  d.launch.block = {"block_size_x", "block_size_y", "1"};
  d.launch.reference_items = "width * height";
  return d;
}

}  // namespace ktune
