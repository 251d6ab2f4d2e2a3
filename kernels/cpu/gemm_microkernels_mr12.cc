#define KTUNE_GEMM_MR 12
#include "kernels/cpu/gemm_microkernels.inc"
