#define KTUNE_GEMM_MR 1
#include "kernels/cpu/gemm_microkernels.inc"
