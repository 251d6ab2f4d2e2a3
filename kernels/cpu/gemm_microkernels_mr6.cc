#define KTUNE_GEMM_MR 6
#include "kernels/cpu/gemm_microkernels.inc"
