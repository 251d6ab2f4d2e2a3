// The description of the built-in CPU gemm (implementation: kernels/cpu/gemm.cc). The order of
// parameters here is the order of values the implementation reads.
#include "kernels/builtin_kernel_sources.h"
#include "kernels/kernel_registry.h"

namespace ktune {

KernelDefinition GemmDefinition() {
  KernelDefinition d;
  d.name = "gemm";
  d.language = "cpp";
  d.description = "C = A * B, float32, row-major; BLIS-style blocking, packing and micro-kernels";
  d.source = kGemmSourceHash;
  d.builtin = true;
  d.parameters = {
      {"MR", {1, 2, 4, 6, 8, 12, 16}, true, "rows of the register tile"},
      {"NR", {8, 16, 24, 32}, true, "columns of the register tile (multiples of 8 floats)"},
      {"unroll", {1, 2, 4, 8}, true, "unroll of the micro-kernel's k loop"},
      {"pack_a", {0, 1}, true, "copy blocks of A into contiguous MR-row panels"},
      {"pack_b", {0, 1}, true, "copy panels of B into contiguous NR-column panels"},
      {"MC", {48, 96, 144, 192, 240, 288, 384, 576}, false, "rows of A per cache block (L2)"},
      {"KC", {64, 128, 192, 256, 384, 512}, false, "depth of a cache block (L1/L2)"},
      {"NC", {192, 384, 768, 1536, 3072, 6144}, false, "columns of B per cache panel (L3)"},
      {"threads", {1, 2, 4, 8, 16, 32, 64, 128}, false, "OpenMP threads", true},
      {"parallel_loop", {0, 1}, false, "0: threads split the MC blocks; 1: the NR panels"},
  };
  d.constraints = {
      "MR * NR <= 192",  // larger tiles spill the vector registers; not built
      "threads <= cores",
      "threads > 1 or parallel_loop == 0",
      // Cache blocks larger than the problem only repeat a smaller block; the defaults stay in.
      "MC < M + 48 or MC == 144",
      "KC < K + 64 or KC == 256",
      "NC < 2 * N or NC == 3072",
  };
  d.problem = {{"M", 1, 65536, "rows of A and C"},
               {"N", 1, 65536, "columns of B and C"},
               {"K", 1, 65536, "columns of A, rows of B"}};
  d.buffers = {{"A", "M * K", false}, {"B", "K * N", false}, {"C", "M * N", true}};
  d.flops = "2 * M * N * K";
  d.bytes = "4 * (M * K + K * N + M * N)";
  // BLIS's Haswell sgemm blocking, all cores: what a library would run untuned.
  d.default_config = {{"MR", "6"},          {"NR", "16"},          {"unroll", "4"}, {"pack_a", "1"},
                      {"pack_b", "1"},      {"MC", "144"},         {"KC", "256"},   {"NC", "3072"},
                      {"threads", "cores"}, {"parallel_loop", "0"}};
  d.rtol = 1e-4;
  d.atol = 1e-5;
  return d;
}

KernelDefinition GemmOpenBlasDefinition() {
  KernelDefinition d;
  d.name = "gemm_openblas";
  d.language = "cpp";
  d.description = "the same gemm by OpenBLAS's cblas_sgemm: the vendor baseline to compare with";
  d.source = kGemmOpenBlasSourceHash;
  d.builtin = true;
  d.parameters = {{"threads", {1, 2, 4, 8, 16, 32, 64, 128}, false, "OpenBLAS threads", true}};
  d.constraints = {"threads <= cores"};
  const KernelDefinition gemm = GemmDefinition();
  d.problem = gemm.problem;
  d.buffers = gemm.buffers;
  d.flops = gemm.flops;
  d.bytes = gemm.bytes;
  d.default_config = {{"threads", "cores"}};
  d.rtol = gemm.rtol;
  d.atol = gemm.atol;
  return d;
}

}  // namespace ktune
