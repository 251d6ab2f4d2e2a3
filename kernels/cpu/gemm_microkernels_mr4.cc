#define KTUNE_GEMM_MR 4
#include "kernels/cpu/gemm_microkernels.inc"
