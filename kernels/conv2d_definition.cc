// The description of the built-in CPU conv2d (implementation: kernels/cpu/conv2d.cc). The order
// of parameters here is the order of values the implementation reads.
#include "kernels/builtin_kernel_sources.h"
#include "kernels/kernel_registry.h"

namespace ktune {

namespace {

// Eight output rows per im2col panel, or one where eight would pass the panel size limit.
constexpr char kDefaultTP[] =
    "(C * R * S * min(8, H - R + 1) * (W - S + 1) <= 16777216) and 8 or 1";

}  // namespace

KernelDefinition Conv2dDefinition() {
  KernelDefinition d;
  d.name = "conv2d";
  d.language = "cpp";
  d.description =
      "2-D convolution, float32, batch 1, NCHW, stride 1, no padding; direct or im2col, tiled";
  d.source = kConv2dSourceHash;
  d.builtin = true;
  // "Pixels" are output positions (p, q). The register tile is RB x VB vectors of 8 floats:
  // with vec 0 the vectors run along pixels and RB output channels are broadcast, with vec 1
  // the vectors run along output channels and RB pixels are broadcast.
  d.parameters = {
      {"algorithm", {0, 1}, false, "0: direct (reads the image in place); 1: im2col panels"},
      {"vec", {0, 1}, false, "0: vectorise along output columns; 1: along output channels"},
      {"RB", {1, 2, 3, 4, 6, 8}, false, "broadcast rows of the register tile"},
      {"VB", {1, 2, 3, 4}, false, "vectors of 8 floats per row of the register tile"},
      {"unroll", {1, 2, 4}, false, "unroll of the micro-kernel's reduction loop"},
      {"layout", {0, 1}, false, "im2col panel: 0 one row per (c, r, s); 1 packed micro-panels"},
      {"TK",
       {8, 16, 24, 32, 48, 64, 96, 128, 256, 4096},
       false,
       "output channels per tile (4096: all)"},
      {"TP", {1, 2, 4, 8, 16, 32, 4096}, false, "output rows per tile (4096: all)"},
      {"TQ", {8, 16, 24, 32, 48, 64, 96, 128, 4096}, false, "output columns per tile (4096: all)"},
      {"order", {0, 1}, false, "in a tile, 0: channel blocks outside; 1: pixel blocks outside"},
      {"threads", {1, 2, 4, 8, 16, 32, 64, 128}, false, "OpenMP threads", true},
  };
  d.constraints = {
      "R <= H and S <= W",   // an empty output: no valid configuration
      "4 <= RB * VB <= 16",  // smaller tiles are slow, larger ones spill; not built
      "threads <= cores",
      "algorithm == 1 or layout == 0",
      // Tiles that cover a whole dimension are spelled 4096 (the bounds of K, H and W), so
      // larger-than-the-problem tiles are not repeated; the defaults stay in.
      "TK == 4096 or (TK < K and ((vec == 0 and TK % RB == 0) or (vec == 1 and TK % (8 * VB) "
      "== 0)))",
      "TP < H - R + 1 or TP == 4096 or TP == 8 or TP == 1",
      "TQ < W - S + 1 or TQ == 4096",
      // Direct tiles are whole pixel blocks wide (a block must not cross a row); im2col tiles
      // are whole rows (the panel is the rows' pixels, flattened).
      "algorithm == 1 or TQ == 4096 or (vec == 0 and TQ % (8 * VB) == 0) or "
      "(vec == 1 and TQ % RB == 0)",
      "algorithm == 0 or TQ == 4096",
      // im2col panels up to 64 MiB per thread.
      "algorithm == 0 or C * R * S * min(TP, H - R + 1) * (W - S + 1) <= 16777216 or TP == 1",
  };
  d.problem = {{"C", 1, 4096, "input channels"},
               {"K", 1, 4096, "output channels"},
               {"H", 1, 4096, "input height"},
               {"W", 1, 4096, "input width"},
               {"R", 1, 11, "filter height (output height P = H - R + 1)"},
               {"S", 1, 11, "filter width (output width Q = W - S + 1)"}};
  d.buffers = {{"input", "C * H * W", false},
               {"filter", "K * C * R * S", false},
               {"output", "K * (H - R + 1) * (W - S + 1)", true}};
  d.flops = "2 * K * (H - R + 1) * (W - S + 1) * C * R * S";
  d.bytes = "4 * (C * H * W + K * C * R * S + K * (H - R + 1) * (W - S + 1))";
  // What an untuned library runs: im2col over a few output rows at a time into packed panels,
  // then a 4 x 24 register-tile matmul over all output channels, all cores.
  d.default_config = {{"algorithm", "1"}, {"vec", "0"},    {"RB", "4"},         {"VB", "3"},
                      {"unroll", "4"},    {"layout", "1"}, {"TK", "4096"},      {"TP", kDefaultTP},
                      {"TQ", "4096"},     {"order", "0"},  {"threads", "cores"}};
  d.rtol = 1e-4;
  d.atol = 1e-5;
  return d;
}

}  // namespace ktune
