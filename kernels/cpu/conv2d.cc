// conv2d, float32, batch 1, stride 1, no padding:
//   out[k][p][q] = sum over (c, r, s) of in[c][p + r][q + s] * filt[k][c][r][s]
// with in [C][H][W], filt [K][C][R][S], out [K][P][Q], P = H - R + 1, Q = W - S + 1.
//
// The reduction runs over i = (c * R + r) * S + s. The output is cut into tiles of TK channels x
// TP rows x TQ columns, spread over OpenMP threads. Each tile is computed into a per-thread,
// padded tile buffer by a register-tile micro-kernel (RB x VB vectors of 8 floats held in
// registers over the whole reduction), then copied out, so every tile may overhang the problem:
// the filter is packed with zero channels and the padded output lanes are never copied out.
//
//   algorithm 0 (direct): the micro-kernel reads the image in place, through a table of CRS
//     pointers (rows[i] = &in[c][r][s]) plus the micro-tile's offset. A micro-tile may read up
//     to pb - 1 floats past the end of an image row; for the last channel that would be past
//     the end of the buffer, so the last channel is read from a zero-padded copy.
//   algorithm 1 (im2col): per tile, the input is unfolded into a panel with one row per i and
//     one column per output pixel of the tile (TP rows x TQ columns, flattened), then the
//     micro-kernel is a small matmul (packed filter x panel).
//
// Configuration (definition order, see kernels/conv2d_definition.cc):
//   algorithm  0: direct, 1: im2col
//   vec        0: vectors run along output pixels (columns), RB output channels are broadcast
//              1: vectors run along output channels, RB output pixels are broadcast
//   RB, VB     register tile: RB broadcast rows x VB vectors of 8 floats
//   unroll     unroll of the micro-kernel's reduction loop
//   layout     im2col panel layout. 0: [i][pixel] rows; 1: micro-panels [pixel block][i][pb]
//   TK, TP, TQ tile size in output channels, rows and columns (4096: the whole dimension)
//   order      loops inside a tile. 0: channel blocks outside, pixel blocks inside; 1: reverse
//   threads    OpenMP threads
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cpu/builtin_cpu_kernels.h"
#include "kernels/cpu/scratch.h"

namespace ktune::cpu {
namespace {

typedef float v8f __attribute__((vector_size(32)));

inline v8f Load8(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void Store8(float* p, v8f v) { std::memcpy(p, &v, sizeof(v)); }

int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Per-thread buffers of a tile; per-call buffers live with the calling thread.
Scratch& TileScratch() { return ThreadScratch<struct TileScratchTag>(); }
Scratch& PanelScratch() { return ThreadScratch<struct PanelScratchTag>(); }
Scratch& FilterScratch() { return ThreadScratch<struct FilterScratchTag>(); }
Scratch& LastChannelScratch() { return ThreadScratch<struct LastChannelScratchTag>(); }

// One micro-kernel call: reduction rows [0, n) of the image operand (direct: rows[i] + disp;
// im2col: panel + i * ldp) times the packed filter block (filt + i * kb), into
// acc[j][v], stored to c + j * ldc + 8 * v (overwriting).
struct MicroArgs {
  int64_t n;
  const float* const* rows;
  int64_t disp;
  const float* panel;
  int64_t ldp;
  const float* filt;
  float* c;
  int64_t ldc;
};

using MicroFn = void (*)(const MicroArgs&);

// kVecK false: vectors along pixels (image operand), RB filter values broadcast.
// kVecK true: vectors along channels (filter operand), RB image values broadcast.
template <int RB, int VB, int U, bool kVecK, bool kPanel>
void Micro(const MicroArgs& a) {
  v8f acc[RB][VB];
  for (int j = 0; j < RB; ++j)
    for (int v = 0; v < VB; ++v) acc[j][v] = v8f{};
  const float* const* rows = a.rows;
  const int64_t disp = a.disp, ldp = a.ldp;
  const float* panel = a.panel;
  const float* filt = a.filt;
  auto step = [&](int64_t i) __attribute__((always_inline)) {
    const float* img = kPanel ? panel + i * ldp : rows[i] + disp;
    if constexpr (!kVecK) {
      const float* f = filt + i * RB;
      v8f x[VB];
      for (int v = 0; v < VB; ++v) x[v] = Load8(img + 8 * v);
      for (int j = 0; j < RB; ++j) {
        const float w = f[j];
        for (int v = 0; v < VB; ++v) acc[j][v] += w * x[v];
      }
    } else {
      const float* f = filt + i * (8 * VB);
      v8f w[VB];
      for (int v = 0; v < VB; ++v) w[v] = Load8(f + 8 * v);
      for (int j = 0; j < RB; ++j) {
        const float x = img[j];
        for (int v = 0; v < VB; ++v) acc[j][v] += x * w[v];
      }
    }
  };
  int64_t i = 0;
  for (; i + U <= a.n; i += U) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) step(i + u);
  }
  for (; i < a.n; ++i) step(i);
  for (int j = 0; j < RB; ++j)
    for (int v = 0; v < VB; ++v) Store8(a.c + j * a.ldc + 8 * v, acc[j][v]);
}

// Register tiles with more accumulators than this are not built (they spill).
constexpr int kMaxAccumulators = 16;

template <int RB, int VB, int U>
MicroFn PickVariant(bool vec_k, bool panel) {
  if (vec_k) return panel ? &Micro<RB, VB, U, true, true> : &Micro<RB, VB, U, true, false>;
  return panel ? &Micro<RB, VB, U, false, true> : &Micro<RB, VB, U, false, false>;
}

template <int RB, int VB>
MicroFn PickUnroll(int unroll, bool vec_k, bool panel) {
  if constexpr (RB * VB > kMaxAccumulators) {
    return nullptr;
  } else {
    switch (unroll) {
      case 1:
        return PickVariant<RB, VB, 1>(vec_k, panel);
      case 2:
        return PickVariant<RB, VB, 2>(vec_k, panel);
      case 4:
        return PickVariant<RB, VB, 4>(vec_k, panel);
      default:
        return nullptr;
    }
  }
}

template <int RB>
MicroFn PickVB(int vb, int unroll, bool vec_k, bool panel) {
  switch (vb) {
    case 1:
      return PickUnroll<RB, 1>(unroll, vec_k, panel);
    case 2:
      return PickUnroll<RB, 2>(unroll, vec_k, panel);
    case 3:
      return PickUnroll<RB, 3>(unroll, vec_k, panel);
    case 4:
      return PickUnroll<RB, 4>(unroll, vec_k, panel);
    default:
      return nullptr;
  }
}

// The instantiated micro-kernel, or nullptr when none is built for these values.
MicroFn PickMicro(int rb, int vb, int unroll, bool vec_k, bool panel) {
  switch (rb) {
    case 1:
      return PickVB<1>(vb, unroll, vec_k, panel);
    case 2:
      return PickVB<2>(vb, unroll, vec_k, panel);
    case 3:
      return PickVB<3>(vb, unroll, vec_k, panel);
    case 4:
      return PickVB<4>(vb, unroll, vec_k, panel);
    case 6:
      return PickVB<6>(vb, unroll, vec_k, panel);
    case 8:
      return PickVB<8>(vb, unroll, vec_k, panel);
    default:
      return nullptr;
  }
}

struct Conv {
  int64_t C, K, H, W, R, S, P, Q, CRS;
  int algorithm, vec, layout, order, threads;
  int64_t TK, TP, TQ;
  int64_t kb, pb;  // register block along output channels and along output pixels
  MicroFn micro;
  const float* in;
  const float* filt;
  float* out;
  float* fpack;          // [ceil(K / kb)][CRS][kb], zero channels past K
  const float** rows;    // direct: &in[c][r][s] per reduction row i
  int64_t tile_floats;   // per-thread tile buffer size
  int64_t panel_floats;  // per-thread panel size (im2col)

  // Pixels of a tile: t = pp * Pitch(tq) + qq. Direct pads each tile row to whole pixel blocks
  // (a block must not cross an image row); im2col flattens the tile and pads only the end.
  int64_t Pitch(int64_t tq) const { return algorithm == 0 ? RoundUp(tq, pb) : tq; }
  int64_t Pixels(int64_t tp, int64_t tq) const { return RoundUp(tp * Pitch(tq), pb); }

  void PackFilter() const {
    const int64_t blocks = (K + kb - 1) / kb;
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      float* dst = fpack + b * CRS * kb;
      for (int64_t l = 0; l < kb; ++l) {
        const int64_t k = b * kb + l;
        const float* src = filt + k * CRS;
        for (int64_t i = 0; i < CRS; ++i) dst[i * kb + l] = k < K ? src[i] : 0.f;
      }
    }
  }

  // Unfolds the input for the tile at (p0, q0) of tp x tq pixels into `panel`: row i = (c, r, s)
  // holds in[c][p0 + pp + r][q0 + qq + s] at pixel t = pp * tq + qq, zeros up to np pixels.
  void BuildPanel(int64_t p0, int64_t q0, int64_t tp, int64_t tq, int64_t np, float* panel) const {
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t r = 0; r < R; ++r) {
        for (int64_t s = 0; s < S; ++s) {
          const int64_t i = (c * R + r) * S + s;
          const float* src = in + (c * H + p0 + r) * W + q0 + s;
          if (layout == 0) {
            float* dst = panel + i * np;
            for (int64_t pp = 0; pp < tp; ++pp) std::memcpy(dst + pp * tq, src + pp * W, tq * 4);
            std::fill(dst + tp * tq, dst + np, 0.f);
          } else {
            float* dst = panel + i * pb;  // block 0, lane 0 of row i
            int64_t lane = 0;
            for (int64_t pp = 0; pp < tp; ++pp) {
              for (int64_t qq = 0; qq < tq; ++qq) {
                dst[lane] = src[pp * W + qq];
                if (++lane == pb) {
                  lane = 0;
                  dst += CRS * pb;
                }
              }
            }
            if (lane > 0) std::fill(dst + lane, dst + pb, 0.f);
          }
        }
      }
    }
  }

  // One tile: channels [k0, k0 + tk), rows [p0, p0 + tp), columns [q0, q0 + tq).
  void Tile(int64_t k0, int64_t p0, int64_t q0, bool build_panel, float* tile, float* panel) const {
    const int64_t tk = std::min(TK, K - k0), tkp = RoundUp(tk, kb);
    const int64_t tp = std::min(TP, P - p0), tq = std::min(TQ, Q - q0);
    const int64_t pitch = Pitch(tq), np = Pixels(tp, tq);
    if (algorithm == 1 && build_panel) BuildPanel(p0, q0, tp, tq, np, panel);
    const float* fblock = fpack + (k0 / kb) * CRS * kb;  // k0 is a multiple of kb
    MicroArgs a{};
    a.n = CRS;
    a.rows = rows;
    auto run = [&](int64_t kk, int64_t t) {
      a.filt = fblock + (kk / kb) * CRS * kb;
      if (algorithm == 0) {
        a.disp = (p0 + t / pitch) * W + q0 + t % pitch;
      } else if (layout == 0) {
        a.panel = panel + t;
        a.ldp = np;
      } else {
        a.panel = panel + (t / pb) * CRS * pb;
        a.ldp = pb;
      }
      if (vec == 0) {  // tile buffer [tkp][np]
        a.c = tile + kk * np + t;
        a.ldc = np;
      } else {  // tile buffer [np][tkp]
        a.c = tile + t * tkp + kk;
        a.ldc = tkp;
      }
      micro(a);
    };
    if (order == 0) {
      for (int64_t kk = 0; kk < tkp; kk += kb)
        for (int64_t t = 0; t < np; t += pb) run(kk, t);
    } else {
      for (int64_t t = 0; t < np; t += pb)
        for (int64_t kk = 0; kk < tkp; kk += kb) run(kk, t);
    }
    // Copy the part inside the output.
    for (int64_t k = 0; k < tk; ++k) {
      for (int64_t pp = 0; pp < tp; ++pp) {
        float* dst = out + ((k0 + k) * P + p0 + pp) * Q + q0;
        if (vec == 0) {
          std::memcpy(dst, tile + k * np + pp * pitch, tq * 4);
        } else {
          const float* src = tile + pp * pitch * tkp + k;
          for (int64_t qq = 0; qq < tq; ++qq) dst[qq] = src[qq * tkp];
        }
      }
    }
  }

  void Run() const {
    PackFilter();
    const int64_t ntk = (K + TK - 1) / TK, ntp = (P + TP - 1) / TP, ntq = (Q + TQ - 1) / TQ;
    const int64_t tiles = ntk * ntp * ntq;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
      float* tile = TileScratch().Get(tile_floats);
      float* panel = algorithm == 1 ? PanelScratch().Get(panel_floats) : nullptr;
      int64_t last_pixel_tile = -1;  // the panel this thread holds
#pragma omp for schedule(static)
      for (int64_t n = 0; n < tiles; ++n) {
        // Channel tiles innermost: a thread's consecutive tiles share their panel.
        const int64_t pixel_tile = n / ntk, kt = n % ntk;
        const int64_t pt = pixel_tile / ntq, qt = pixel_tile % ntq;
        Tile(kt * TK, pt * TP, qt * TQ, pixel_tile != last_pixel_tile, tile, panel);
        last_pixel_tile = pixel_tile;
      }
    }
  }
};

int Conv2dRun(const ktune_cpu_call* call) {
  if (call->num_problem != 6 || call->num_config != 11 || call->num_buffers != 3) return 1;
  const int64_t* p = call->problem;
  const int64_t* c = call->config;
  Conv v;
  v.C = p[0];
  v.K = p[1];
  v.H = p[2];
  v.W = p[3];
  v.R = p[4];
  v.S = p[5];
  v.P = v.H - v.R + 1;
  v.Q = v.W - v.S + 1;
  if (v.C < 1 || v.K < 1 || v.R < 1 || v.S < 1 || v.P < 1 || v.Q < 1) return 1;
  v.CRS = v.C * v.R * v.S;
  v.algorithm = static_cast<int>(c[0]);
  v.vec = static_cast<int>(c[1]);
  const int rb = static_cast<int>(c[2]), vb = static_cast<int>(c[3]);
  const int unroll = static_cast<int>(c[4]);
  v.layout = static_cast<int>(c[5]);
  v.TK = c[6];
  v.TP = c[7];
  v.TQ = c[8];
  v.order = static_cast<int>(c[9]);
  v.threads = static_cast<int>(c[10]);
  if (v.algorithm < 0 || v.algorithm > 1 || v.vec < 0 || v.vec > 1 || v.layout < 0 ||
      v.layout > 1 || v.order < 0 || v.order > 1 || v.threads < 1 || v.TK < 1 || v.TP < 1 ||
      v.TQ < 1) {
    return 1;
  }
  v.kb = v.vec == 0 ? rb : 8 * vb;
  v.pb = v.vec == 0 ? 8 * vb : rb;
  // Channel tiles must start on packed filter blocks.
  if (v.TK < v.K && v.TK % v.kb != 0) return 1;
  v.micro = PickMicro(rb, vb, unroll, v.vec == 1, v.algorithm == 1);
  if (v.micro == nullptr) return 1;
  if (call->buffer_elements[0] < v.C * v.H * v.W || call->buffer_elements[1] < v.K * v.CRS ||
      call->buffer_elements[2] < v.K * v.P * v.Q) {
    return 1;
  }
  v.in = call->buffers[0];
  v.filt = call->buffers[1];
  v.out = call->buffers[2];

  const int64_t tk = std::min(v.TK, v.K), tp = std::min(v.TP, v.P), tq = std::min(v.TQ, v.Q);
  const int64_t np = v.Pixels(tp, tq);
  v.tile_floats = RoundUp(tk, v.kb) * np;
  v.panel_floats = v.CRS * np;
  v.fpack = FilterScratch().Get(RoundUp(v.K, v.kb) * v.CRS);
  std::vector<const float*> rows;
  if (v.algorithm == 0) {
    // Micro-tiles read up to pb - 1 floats past an image row: for the last channel, read a copy
    // with room for that.
    const int64_t hw = v.H * v.W;
    float* last = LastChannelScratch().Get(hw + v.pb);
    std::memcpy(last, v.in + (v.C - 1) * hw, hw * 4);
    std::fill(last + hw, last + hw + v.pb, 0.f);
    rows.resize(v.CRS);
    for (int64_t ch = 0; ch < v.C; ++ch) {
      const float* base = ch == v.C - 1 ? last : v.in + ch * hw;
      for (int64_t r = 0; r < v.R; ++r)
        for (int64_t s = 0; s < v.S; ++s) rows[(ch * v.R + r) * v.S + s] = base + r * v.W + s;
    }
    v.rows = rows.data();
  } else {
    v.rows = nullptr;
  }
  v.Run();
  return 0;
}

// Straightforward loops, accumulating in double: slow but trustworthy.
int Conv2dReference(const ktune_cpu_call* call) {
  const int64_t* p = call->problem;
  const int64_t C = p[0], K = p[1], H = p[2], W = p[3], R = p[4], S = p[5];
  const int64_t P = H - R + 1, Q = W - S + 1;
  if (P < 1 || Q < 1) return 1;
  const float* in = call->buffers[0];
  const float* filt = call->buffers[1];
  float* out = call->buffers[2];
#pragma omp parallel for collapse(2) schedule(dynamic, 4)
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t y = 0; y < P; ++y) {
      for (int64_t x = 0; x < Q; ++x) {
        double sum = 0;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t r = 0; r < R; ++r)
            for (int64_t s = 0; s < S; ++s) {
              sum += static_cast<double>(in[(c * H + y + r) * W + x + s]) *
                     filt[((k * C + c) * R + r) * S + s];
            }
        out[(k * P + y) * Q + x] = static_cast<float>(sum);
      }
    }
  }
  return 0;
}

}  // namespace

const BuiltinCpuKernel kConv2dCpuKernel = {"conv2d", &Conv2dRun, &Conv2dReference};

}  // namespace ktune::cpu
