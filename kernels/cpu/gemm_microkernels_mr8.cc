#define KTUNE_GEMM_MR 8
#include "kernels/cpu/gemm_microkernels.inc"
