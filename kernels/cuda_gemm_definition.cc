// The CUDA GEMM template (kernels/cuda/gemm.cu) and its cuBLAS baseline. The template's header
// comment describes what each parameter does in the f32 (SIMT) and the tensor-core (WMMA: f16,
// bf16, i8) code paths. Constraints that read `dtype == 'f32'` belong to the SIMT path; the
// others to every tensor-core dtype.
#include "kernels/cuda_kernel_sources.h"
#include "kernels/kernel_registry.h"

namespace ktune {

KernelDefinition CudaGemmDefinition() {
  KernelDefinition d;
  d.name = "cuda_gemm";
  d.language = "cuda";
  d.description =
      "C = A * B, row-major; f32: CLBlast-style SIMT register tiling; f16, bf16 (float "
      "accumulation) and i8 (int32 accumulation and output): WMMA tensor cores";
  d.source = kCudaGEMMSource;
  d.builtin = true;
  d.dtypes = {"f32", "f16", "bf16", "i8"};
  d.parameters = {
      {"MWG", {16, 32, 64, 128, 256}, true, "rows of C per block tile"},
      {"NWG", {16, 32, 64, 128, 256}, true, "columns of C per block tile"},
      {"KWG", {8, 16, 32}, true, "depth of a block tile (K step); tensor cores: a multiple of 16"},
      {"MDIMC", {8, 16, 32}, true, "threads along M (tensor cores: MDIMC / 4 warps along M)"},
      {"NDIMC", {8, 16, 32}, true, "threads along N (tensor cores: NDIMC / 8 warps along N)"},
      {"MDIMA", {8, 16, 32}, true, "f32, SA = 1: threads along M when staging A (rest along K)"},
      {"NDIMB", {8, 16, 32}, true, "f32, SB = 1: threads along N when staging B (rest along K)"},
      {"VWM", {1, 2, 4, 8}, true, "f32: vector width along M of a thread's rows (shared loads)"},
      {"VWN", {1, 2, 4, 8}, true, "f32: vector width along N (B loads, shared loads, C stores)"},
      {"SA", {0, 1}, true, "f32: 1 stages A in shared memory, 0 reads it from global memory"},
      {"SB", {0, 1}, true, "f32: 1 stages B in shared memory, 0 reads it from global memory"},
      {"STAGES", {1, 2, 3, 4}, true, "shared-memory tiles (cp.async; 1: load, wait, compute)"},
      {"SPLITK", {1, 2, 4, 8, 16}, true, "slices of K over blockIdx.z, added with atomics"},
  };
  d.constraints = {
      "MWG % MDIMC == 0 and NWG % NDIMC == 0",
      // Accumulators per thread, and per block at most half the register file.
      "MWG // MDIMC * (NWG // NDIMC) <= (dtype == 'f32' and 64 or 128)",
      "MWG * NWG <= 32768",
      "MWG * NWG <= 16384 or MDIMC * NDIMC <= 512",
      // f32: CLBlast's divisibility rules (the thread grid and the staging layouts tile the
      // block tile); an operand that is not staged pins its layout parameter.
      "dtype != 'f32' or (MWG % (MDIMC * VWM) == 0 and NWG % (NDIMC * VWN) == 0)",
      "dtype != 'f32' or (SA == 0 and MDIMA == 16) or "
      "(SA == 1 and MWG % MDIMA == 0 and KWG % (MDIMC * NDIMC // MDIMA) == 0)",
      "dtype != 'f32' or (SB == 0 and NDIMB == 16) or "
      "(SB == 1 and NWG % (NDIMB * VWN) == 0 and KWG % (MDIMC * NDIMC // NDIMB) == 0)",
      "SA + SB > 0 or STAGES == 1",
      "dtype != 'f32' or STAGES * (SA * KWG * (MWG + 4) + SB * KWG * (NWG + 4)) * 4 <= 49152",
      // Tensor cores: the warp grid (MDIMC / 4) x (NDIMC / 8) tiles the block tile in 16 x 16
      // fragments; the f32-only parameters are pinned to the default's values.
      "dtype == 'f32' or (KWG >= 16 and MWG % (4 * MDIMC) == 0 and NWG % (2 * NDIMC) == 0)",
      "dtype == 'f32' or (SA == 1 and SB == 1 and MDIMA == 16 and NDIMB == 16 and VWM == 2 and "
      "VWN == 2)",
      // Shared memory: the pipeline's stages (16-bit types: rows padded by 8 elements; i8:
      // unpadded bytes) or the epilogue's staging, whichever is larger.
      "dtype == 'f32' or max(STAGES * (dtype == 'i8' and MWG * KWG + KWG * NWG or "
      "(MWG * (KWG + 8) + KWG * (NWG + 8)) * 2), MDIMC * NDIMC // 32 * 1280) <= 49152",
      // Split-K: at least a tile of K per slice, and only where the output tiles alone leave
      // the GPU short of blocks.
      "SPLITK == 1 or SPLITK * KWG <= K",
      "SPLITK == 1 or ((M + MWG - 1) // MWG) * ((N + NWG - 1) // NWG) < 512",
      // Tiles much larger than the problem only repeat smaller ones; the default's stay.
      "MWG <= 32 or MWG < 2 * M or MWG == 64",
      "NWG <= 32 or NWG < 2 * N or NWG == 64",
  };
  d.problem = {{"M", 1, 32768, "rows of A and C"},
               {"N", 1, 32768, "columns of B and C"},
               {"K", 1, 32768, "columns of A, rows of B"}};
  d.buffers = {{"A", "M * K", false}, {"B", "K * N", false}, {"C", "M * N", true}};
  d.flops = "2 * M * N * K";
  // i8: byte inputs, int32 output.
  d.bytes =
      "dtype == 'i8' and M * K + K * N + 4 * M * N or "
      "(dtype == 'f32' and 4 or 2) * (M * K + K * N + M * N)";
  // CLBlast's Xgemm defaults (64 x 64 x 32 tiles, 16 x 16 threads, vectors of 2, both operands
  // in shared memory, single-buffered), no split-K: valid for every problem and every dtype.
  d.default_config = {{"MWG", "64"},   {"NWG", "64"},    {"KWG", "32"},  {"MDIMC", "16"},
                      {"NDIMC", "16"}, {"MDIMA", "16"},  {"NDIMB", "16"}, {"VWM", "2"},
                      {"VWN", "2"},    {"SA", "1"},      {"SB", "1"},    {"STAGES", "1"},
                      {"SPLITK", "1"}};
  // f32: K up to 32768 products of values in [-1, 1], summed in a different order than the
  // reference; relative to the largest |C| (about sqrt(K) / 3).
  d.rtol = 1e-4;
  d.atol = 1e-5;
  // f16: half inputs, float accumulation, half output (and half atomics for split-K).
  // bf16: the same with 8 significant bits instead of 11. Without split-K the kernel and the
  // reference (float sums in another order, each rounded once) differ by about one bf16 step of
  // the output, at most 2^-7 of max|C|; split-K adds two bf16 roundings per slice (the partial,
  // then the atomic sum): SPLITK = 16 at M = 32, N = K = 4096 came to 0.9% of max|C| in a host
  // simulation of the atomics. 3e-2 leaves three times that.
  // i8: int8 products summed in int32 by kernel, reference and atomics alike: exact.
  d.dtype_tolerance = {{"f16", {2e-2, 1e-2}}, {"bf16", {3e-2, 1e-2}}, {"i8", {0, 0}}};
  d.launch.grid = {"(N + NWG - 1) // NWG", "(M + MWG - 1) // MWG", "SPLITK"};
  d.launch.block = {"MDIMC * NDIMC", "1", "1"};
  d.launch.reference_items = "M * N";
  d.launch.zero_outputs = "SPLITK > 1";
  return d;
}

KernelDefinition CudaGemmCublasDefinition() {
  const KernelDefinition gemm = CudaGemmDefinition();
  KernelDefinition d;
  d.name = "cuda_gemm_cublas";
  d.language = "cuda";
  d.description = "the same GEMM by cuBLAS: the vendor baseline to compare cuda_gemm with";
  d.source = "cublasGemmEx (CUBLAS_GEMM_DEFAULT, FP32 compute)";
  d.vendor_library = "cublas";
  d.builtin = true;
  // No i8: cublasGemmEx's int8 path (CUDA_R_8I in, CUDA_R_32I out, CUBLAS_COMPUTE_32I) requires
  // lda and ldb to be multiples of 4 (here N and K) and 4-byte aligned A and B, so it would
  // refuse the odd sizes cuda_gemm accepts, and it cannot be checked on a GPU yet. Only the
  // float types, for which cuBLAS takes every size.
  d.dtypes = {"f32", "f16", "bf16"};
  d.parameters = {{"algo", {-1}, true, "cublasGemmAlgo_t (-1: CUBLAS_GEMM_DEFAULT)"}};
  d.problem = gemm.problem;
  d.buffers = gemm.buffers;
  d.flops = gemm.flops;
  d.bytes = gemm.bytes;
  d.default_config = {{"algo", "-1"}};
  d.rtol = gemm.rtol;
  d.atol = gemm.atol;
  d.dtype_tolerance = gemm.dtype_tolerance;
  // Checked against the template's reference kernel, launched as for cuda_gemm.
  d.reference_source = gemm.source;
  d.launch.reference_items = gemm.launch.reference_items;
  return d;
}

}  // namespace ktune
