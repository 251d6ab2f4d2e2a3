#define KTUNE_GEMM_MR 2
#include "kernels/cpu/gemm_microkernels.inc"
