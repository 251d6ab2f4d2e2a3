// gemm_lowp's int8 tiles for CPUs with AVX-VNNI (compiled with -mavxvnni; called only after
// gemm_lowp.cc has checked the CPU): one vpdpbusd adds four u8 x s8 products into each int32 lane,
// where AVX2 needs maddubs, madd and add.
#include "kernels/cpu/gemm_lowp_s8_tile.h"

namespace ktune::cpu {
namespace {

struct VnniDot {
  __m256i operator()(__m256i acc, __m256i a_u8, __m256i b_s8) const {
    return _mm256_dpbusd_avx_epi32(acc, a_u8, b_s8);
  }
};

}  // namespace

S8TileFn S8TileForAvxVnni(int mr, int nr) { return S8TileFor<VnniDot>(mr, nr); }

}  // namespace ktune::cpu
