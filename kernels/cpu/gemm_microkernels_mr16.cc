#define KTUNE_GEMM_MR 16
#include "kernels/cpu/gemm_microkernels.inc"
