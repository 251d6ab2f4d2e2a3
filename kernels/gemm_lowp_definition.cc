// The descriptions of the CPU gemm with a tuned storage precision (kernels/cpu/gemm_lowp.cc)
// and of its oneDNN peers (kernels/cpu/gemm_onednn.cc). Parameter order is the order of values
// the implementations read.
#include "kernels/builtin_kernel_sources.h"
#include "kernels/kernel_registry.h"

namespace ktune {
namespace {

// Same problem, buffers and FLOP count as gemm; int8 and fp16 results are checked loosely (see
// the rtol comment below).
void CopyGemmProblem(KernelDefinition& d) {
  const KernelDefinition gemm = GemmDefinition();
  d.problem = gemm.problem;
  d.buffers = gemm.buffers;
  d.flops = gemm.flops;
  d.atol = gemm.atol;
}

}  // namespace

KernelDefinition GemmLowpDefinition() {
  KernelDefinition d;
  d.name = "gemm_lowp";
  d.language = "cpp";
  d.description =
      "C = A * B, float32 in and out, B stored as fp32, fp16 or int8 (scales per tensor or per "
      "column), B prepared once untimed, A quantised per run; the precision is tuned under the "
      "task's accuracy budget";
  d.source = kGemmLowpSourceHash;
  d.builtin = true;
  d.parameters = {
      {"precision", {32, 16, 8}, false, "bits per stored weight: fp32, fp16, int8 (A 7-bit)"},
      {"scales", {0, 1}, false, "int8 weight scales: 0 one per tensor, 1 one per column of B"},
      {"pack", {1, 0, 2}, false,
       "precision 32: 1 pack A and B in each run, 0 read them in place, 2 pack B once untimed"},
      {"MR", {1, 2, 4, 6, 8}, false, "rows of the register tile"},
      {"NR", {8, 16, 24, 32}, false, "columns of the register tile (multiples of 8)"},
      {"MC", {48, 192, 768}, false, "rows of A per cache block"},
      {"KC", {256, 512, 1024, 2048}, false, "depth of a cache block"},
      {"NC", {1536, 6144}, false, "columns of B per cache panel"},
      {"threads", {1, 2, 4, 8, 16, 32, 64, 128}, false, "OpenMP threads", true},
  };
  d.constraints = {
      // scales only means something for int8 weights, pack only for fp32
      "precision == 8 or scales == 0",
      "precision == 32 or pack == 1",
      // accumulators beyond 12 (int8) or 24 (float) of the 16 AVX2 registers: not built
      "MR * NR <= 96 or precision != 8",
      "MR * NR <= 192",
      "threads <= cores",
      // Cache blocks larger than the problem only repeat a smaller block; the defaults stay in.
      "MC < M + 48 or MC == 192",
      "KC < K + 256 or KC == 256",
      "NC < 2 * N or NC == 1536",
  };
  CopyGemmProblem(d);
  // As gemm's (float32 in and out): the space's fp16 and int8 points move less than this.
  d.bytes = "4 * (M * K + K * N + M * N)";
  // fp32 with BLIS's Haswell blocking: what a library would run untuned.
  d.default_config = {{"precision", "32"}, {"scales", "0"}, {"pack", "1"},
                      {"MR", "6"},         {"NR", "16"},    {"MC", "192"},
                      {"KC", "256"},       {"NC", "1536"},  {"threads", "cores"}};
  // Only catches broken code: the honest int8 error passes, about 1e-2 of max|C| on uniform data
  // and above 0.1 for per-tensor scales on heavy-tailed data (data=heavy_tailed), which is a
  // measured cost of the precision (too_inaccurate under a budget), not a wrong result. A kernel
  // that leaves an output at zero errs by 1 at the largest element, so 0.5 still catches it.
  // Which precision is accurate enough is the accuracy budget's decision, not this one.
  d.rtol = 0.5;
  // Per element against |A| |B|: one normwise figure cannot see a column wiped out by
  // per-tensor scales beside a large one (docs/precision.md).
  d.componentwise_error = true;
  return d;
}

KernelDefinition GemmOneDnnDefinition() {
  KernelDefinition d;
  d.name = "gemm_onednn";
  d.language = "cpp";
  d.description = "the same gemm by oneDNN's dnnl_sgemm (fp32): a vendor baseline";
  d.source = kGemmOnednnSourceHash;
  d.builtin = true;
  d.parameters = {{"threads", {1, 2, 4, 8, 16, 32, 64, 128}, false, "oneDNN threads", true}};
  d.constraints = {"threads <= cores"};
  CopyGemmProblem(d);
  d.bytes = "4 * (M * K + K * N + M * N)";
  d.default_config = {{"threads", "cores"}};
  d.rtol = GemmDefinition().rtol;
  return d;
}

KernelDefinition GemmOneDnnInt8Definition() {
  KernelDefinition d;
  d.name = "gemm_onednn_int8";
  d.language = "cpp";
  d.description =
      "gemm by oneDNN's dnnl_gemm_u8s8s32, quantised as gemm_lowp's int8 (B once untimed, A "
      "per run): a vendor baseline for gemm_lowp";
  d.source = kGemmOnednnSourceHash;
  d.builtin = true;
  d.parameters = {
      {"threads", {1, 2, 4, 8, 16, 32, 64, 128}, false, "oneDNN threads", true},
      {"scales", {1, 0}, false, "weight scales: 0 one per tensor, 1 one per column of B"}};
  d.constraints = {"threads <= cores"};
  CopyGemmProblem(d);
  d.bytes = "4 * (M * K + M * N) + K * N";  // B in int8
  d.default_config = {{"threads", "cores"}, {"scales", "1"}};
  d.rtol = GemmLowpDefinition().rtol;
  d.componentwise_error = true;  // its errors compare with gemm_lowp's
  return d;
}

}  // namespace ktune
