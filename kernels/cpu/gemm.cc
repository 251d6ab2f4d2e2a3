// gemm, float32, row-major: C[M x N] = A[M x K] * B[K x N]. BLIS-style: five loops around a
// register-tile micro-kernel (gemm_microkernel.h), with NC x KC panels of B and MC x KC blocks of
// A optionally packed into contiguous micro-panels, and OpenMP over the MC loop or the NR loop.
//
// Configuration (definition order, see builtin_cpu_kernels.cc): MR, NR, unroll, pack_a, pack_b,
// MC, KC, NC, threads, parallel_loop (0: blocks of MC rows, 1: panels of NR columns).
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/builtin_cpu_kernels.h"
#include "kernels/cpu/gemm_microkernel.h"
#include "kernels/cpu/scratch.h"

namespace ktune::cpu {
namespace {

// Per-thread packing and edge buffers.
Scratch& PackAScratch() { return ThreadScratch<struct PackAScratchTag>(); }
Scratch& PackBScratch() { return ThreadScratch<struct PackBScratchTag>(); }
Scratch& EdgeScratch() { return ThreadScratch<struct EdgeScratchTag>(); }

struct Gemm {
  int64_t M, N, K;
  int MR, NR;
  bool pack_a, pack_b;
  int64_t MC, KC, NC;
  int threads;
  int parallel_loop;
  MicroKernelFn micro;
  const float* A;
  const float* B;
  float* C;

  // Packs rows [ic, ic+mc) x cols [pc, pc+kc) of A into MR-row micro-panels, zero-padded.
  void PackA(int64_t ic, int64_t mc, int64_t pc, int64_t kc, float* dst, int64_t p0,
             int64_t p1) const {
    for (int64_t p = p0; p < p1; ++p) {
      float* panel = dst + p * MR * kc;
      const int64_t rows = std::min<int64_t>(MR, mc - p * MR);
      for (int64_t i = 0; i < MR; ++i) {
        if (i < rows) {
          const float* src = A + (ic + p * MR + i) * K + pc;
          for (int64_t k = 0; k < kc; ++k) panel[k * MR + i] = src[k];
        } else {
          for (int64_t k = 0; k < kc; ++k) panel[k * MR + i] = 0.f;
        }
      }
    }
  }

  // Packs rows [pc, pc+kc) x cols [jc+q*NR ...) of B into NR-column micro-panels, zero-padded.
  // Row by row: each row of B is read once, contiguously (a column-panel-first order reads B
  // with an N-float stride and misses the TLB on every row once N is large).
  void PackB(int64_t pc, int64_t kc, int64_t jc, int64_t nc, float* dst, int64_t q0,
             int64_t q1) const {
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = B + (pc + k) * N + jc;
      for (int64_t q = q0; q < q1; ++q) {
        float* row = dst + q * NR * kc + k * NR;
        const int64_t cols = std::min<int64_t>(NR, nc - q * NR);
        std::memcpy(row, src + q * NR, cols * sizeof(float));
        for (int64_t j = cols; j < NR; ++j) row[j] = 0.f;
      }
    }
  }

  // One micro-tile at (ic+ir, jc+jr) of C, with mr x nr of it inside the matrix.
  void Tile(int64_t ic, int64_t ir, int64_t mr, int64_t jc, int64_t jr, int64_t nr, int64_t pc,
            int64_t kc, const float* a_block, const float* b_panel) const {
    MicroArgs args;
    args.kc = kc;
    args.accumulate = pc > 0;
    if (pack_a) {
      args.a = a_block + (ir / MR) * MR * kc;
      args.lda = 0;
    } else {
      args.a = A + (ic + ir) * K + pc;
      args.lda = K;
    }
    if (pack_b) {
      args.b = b_panel + (jr / NR) * NR * kc;
      args.ldb = 0;
    } else {
      args.b = B + pc * N + jc + jr;
      args.ldb = N;
    }
    float* c = C + (ic + ir) * N + jc + jr;
    if (mr == MR && nr == NR) {
      args.c = c;
      args.ldc = N;
      micro(args);
      return;
    }
    // Edge tile: copy what an unpacked operand lacks into zero-padded scratch, compute a whole
    // tile there, then write back only the part inside C.
    float* scratch = EdgeScratch().Get(MR * kc + kc * NR + MR * NR);
    float* a_edge = scratch;
    float* b_edge = scratch + MR * kc;
    float* c_edge = b_edge + kc * NR;
    if (!pack_a && mr < MR) {
      for (int64_t i = 0; i < MR; ++i)
        for (int64_t k = 0; k < kc; ++k) a_edge[i * kc + k] = i < mr ? args.a[i * K + k] : 0.f;
      args.a = a_edge;
      args.lda = kc;
    }
    if (!pack_b && nr < NR) {
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t j = 0; j < NR; ++j) b_edge[k * NR + j] = j < nr ? args.b[k * N + j] : 0.f;
      args.b = b_edge;
      args.ldb = NR;
    }
    args.c = c_edge;
    args.ldc = NR;
    args.accumulate = false;
    micro(args);
    for (int64_t i = 0; i < mr; ++i)
      for (int64_t j = 0; j < nr; ++j) {
        c[i * N + j] = (pc > 0 ? c[i * N + j] : 0.f) + c_edge[i * NR + j];
      }
  }

  // All micro-tiles of one MC x NC block, NR panels [q0, q1).
  void Block(int64_t ic, int64_t mc, int64_t jc, int64_t nc, int64_t pc, int64_t kc,
             const float* a_block, const float* b_panel, int64_t q0, int64_t q1) const {
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t jr = q * NR;
      const int64_t nr = std::min<int64_t>(NR, nc - jr);
      for (int64_t ir = 0; ir < mc; ir += MR) {
        Tile(ic, ir, std::min<int64_t>(MR, mc - ir), jc, jr, nr, pc, kc, a_block, b_panel);
      }
    }
  }

  void Run() const {
    for (int64_t jc = 0; jc < N; jc += NC) {
      const int64_t nc = std::min(NC, N - jc);
      const int64_t panels = (nc + NR - 1) / NR;
      for (int64_t pc = 0; pc < K; pc += KC) {
        const int64_t kc = std::min(KC, K - pc);
        float* b_panel = nullptr;
        if (pack_b) {
          b_panel = PackBScratch().Get(panels * NR * kc);
#pragma omp parallel num_threads(threads) if (threads > 1)
          {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            PackB(pc, kc, jc, nc, b_panel, panels * t / nt, panels * (t + 1) / nt);
          }
        }
        const int64_t blocks = (M + MC - 1) / MC;
        if (parallel_loop == 0) {
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
          for (int64_t blk = 0; blk < blocks; ++blk) {
            const int64_t ic = blk * MC;
            const int64_t mc = std::min(MC, M - ic);
            float* a_block = nullptr;
            if (pack_a) {
              a_block = PackAScratch().Get(((mc + MR - 1) / MR) * MR * kc);
              PackA(ic, mc, pc, kc, a_block, 0, (mc + MR - 1) / MR);
            }
            Block(ic, mc, jc, nc, pc, kc, a_block, b_panel, 0, panels);
          }
        } else {
          for (int64_t ic = 0; ic < M; ic += MC) {
            const int64_t mc = std::min(MC, M - ic);
            const int64_t a_panels = (mc + MR - 1) / MR;
            float* a_block = nullptr;
            if (pack_a) a_block = PackAScratch().Get(a_panels * MR * kc);
#pragma omp parallel num_threads(threads) if (threads > 1)
            {
              const int t = omp_get_thread_num(), nt = omp_get_num_threads();
              if (pack_a) {
                PackA(ic, mc, pc, kc, a_block, a_panels * t / nt, a_panels * (t + 1) / nt);
              }
#pragma omp barrier
              Block(ic, mc, jc, nc, pc, kc, a_block, b_panel, panels * t / nt,
                    panels * (t + 1) / nt);
            }
          }
        }
      }
    }
  }
};

int GemmRun(const ktune_cpu_call* call) {
  if (call->num_problem != 3 || call->num_config != 10 || call->num_buffers != 3) return 1;
  const int64_t* p = call->problem;
  const int64_t* c = call->config;
  Gemm g;
  g.M = p[0];
  g.N = p[1];
  g.K = p[2];
  g.MR = static_cast<int>(c[0]);
  g.NR = static_cast<int>(c[1]);
  const int unroll = static_cast<int>(c[2]);
  g.pack_a = c[3] != 0;
  g.pack_b = c[4] != 0;
  g.MC = c[5];
  g.KC = c[6];
  g.NC = c[7];
  g.threads = static_cast<int>(c[8]);
  g.parallel_loop = static_cast<int>(c[9]);
  g.micro = GemmMicroKernelFor(g.MR, g.NR, unroll, g.pack_a, g.pack_b);
  if (g.micro == nullptr || g.MC % g.MR != 0 || g.NC % g.NR != 0 || g.threads < 1) return 1;
  g.A = call->buffers[0];
  g.B = call->buffers[1];
  g.C = call->buffers[2];
  g.Run();
  return 0;
}

// Row by row, accumulating in double: slow but trustworthy.
int GemmReference(const ktune_cpu_call* call) {
  const int64_t M = call->problem[0], N = call->problem[1], K = call->problem[2];
  const float* A = call->buffers[0];
  const float* B = call->buffers[1];
  float* C = call->buffers[2];
#pragma omp parallel
  {
    std::vector<double> row(N);
#pragma omp for schedule(dynamic, 4)
    for (int64_t i = 0; i < M; ++i) {
      std::fill(row.begin(), row.end(), 0.0);
      for (int64_t k = 0; k < K; ++k) {
        const double a = A[i * K + k];
        const float* b = B + k * N;
        for (int64_t j = 0; j < N; ++j) row[j] += a * b[j];
      }
      for (int64_t j = 0; j < N; ++j) C[i * N + j] = static_cast<float>(row[j]);
    }
  }
  return 0;
}

}  // namespace

MicroKernelFn GemmMicroKernelMR1(int, int, bool, bool);
MicroKernelFn GemmMicroKernelMR2(int, int, bool, bool);
MicroKernelFn GemmMicroKernelMR4(int, int, bool, bool);
MicroKernelFn GemmMicroKernelMR6(int, int, bool, bool);
MicroKernelFn GemmMicroKernelMR8(int, int, bool, bool);
MicroKernelFn GemmMicroKernelMR12(int, int, bool, bool);
MicroKernelFn GemmMicroKernelMR16(int, int, bool, bool);

MicroKernelFn GemmMicroKernelFor(int mr, int nr, int unroll, bool packed_a, bool packed_b) {
  switch (mr) {
    case 1:
      return GemmMicroKernelMR1(nr, unroll, packed_a, packed_b);
    case 2:
      return GemmMicroKernelMR2(nr, unroll, packed_a, packed_b);
    case 4:
      return GemmMicroKernelMR4(nr, unroll, packed_a, packed_b);
    case 6:
      return GemmMicroKernelMR6(nr, unroll, packed_a, packed_b);
    case 8:
      return GemmMicroKernelMR8(nr, unroll, packed_a, packed_b);
    case 12:
      return GemmMicroKernelMR12(nr, unroll, packed_a, packed_b);
    case 16:
      return GemmMicroKernelMR16(nr, unroll, packed_a, packed_b);
    default:
      return nullptr;
  }
}

const BuiltinCpuKernel kGemmCpuKernel = {"gemm", &GemmRun, &GemmReference};

}  // namespace ktune::cpu
