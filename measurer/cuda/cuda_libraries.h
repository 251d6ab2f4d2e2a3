// The NVIDIA libraries the CUDA runner uses, loaded at run time with dlopen: the driver
// (libcuda.so.1), NVRTC and cuBLAS. Nothing in ktune links them, so every binary starts on a
// machine without the NVIDIA driver or the CUDA toolkit; what is missing becomes a clear error
// when it is first needed (a compile needs only NVRTC; a run needs the driver).
//
// Each table's members carry the names of the C functions (through cuda.h's macros, e.g.
// cuMemAlloc is cuMemAlloc_v2), so calls read like the plain API: `driver.cuMemAlloc(&p, n)`.
#ifndef KTUNE_MEASURER_CUDA_CUDA_LIBRARIES_H_
#define KTUNE_MEASURER_CUDA_CUDA_LIBRARIES_H_

#include <cublas_v2.h>
#include <cuda.h>
#include <nvrtc.h>

#include <string>

#include "absl/status/statusor.h"

namespace ktune::cuda {

#define KTUNE_CUDA_DRIVER_FUNCTIONS(X)                                                        \
  X(cuInit) X(cuDriverGetVersion) X(cuDeviceGetCount) X(cuDeviceGet) X(cuDeviceGetName)       \
  X(cuDeviceGetAttribute) X(cuDeviceTotalMem) X(cuDeviceGetUuid) X(cuDevicePrimaryCtxRetain)  \
  X(cuCtxSetCurrent) X(cuCtxSynchronize) X(cuModuleLoad) X(cuModuleUnload)                    \
  X(cuModuleGetFunction) X(cuFuncGetAttribute) X(cuLaunchKernel) X(cuMemAlloc) X(cuMemFree)   \
  X(cuMemcpyHtoD) X(cuMemcpyDtoH) X(cuMemsetD8) X(cuMemsetD8Async) X(cuEventCreate)           \
  X(cuEventRecord) X(cuEventSynchronize) X(cuEventElapsedTime) X(cuEventDestroy)             \
  X(cuGetErrorName) X(cuGetErrorString)

#define KTUNE_NVRTC_FUNCTIONS(X)                                                               \
  X(nvrtcVersion) X(nvrtcCreateProgram) X(nvrtcCompileProgram) X(nvrtcGetProgramLogSize)      \
  X(nvrtcGetProgramLog) X(nvrtcGetCUBINSize) X(nvrtcGetCUBIN) X(nvrtcDestroyProgram)          \
  X(nvrtcGetErrorString)

#define KTUNE_CUBLAS_FUNCTIONS(X) X(cublasCreate) X(cublasGetVersion) X(cublasSetStream)

#define KTUNE_DECLARE_FUNCTION(name) decltype(&::name) name = nullptr;

struct CudaDriver {
  KTUNE_CUDA_DRIVER_FUNCTIONS(KTUNE_DECLARE_FUNCTION)
  // Loads libcuda.so.1 and calls cuInit once; later calls return the same table or error.
  static absl::StatusOr<const CudaDriver*> Get();
  // "CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory access was encountered)".
  std::string ErrorText(CUresult result) const;
};

struct Nvrtc {
  KTUNE_NVRTC_FUNCTIONS(KTUNE_DECLARE_FUNCTION)
  static absl::StatusOr<const Nvrtc*> Get();
  std::string VersionText() const;  // "13.0"
};

struct Cublas {
  KTUNE_CUBLAS_FUNCTIONS(KTUNE_DECLARE_FUNCTION)
  // Overloaded in C++ (cublas_api.h adds a wrapper): the C function's type, spelled out.
  cublasStatus_t (*cublasGemmEx)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                 int, const void*, const void*, cudaDataType, int, const void*,
                                 cudaDataType, int, const void*, void*, cudaDataType, int,
                                 cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
  static absl::StatusOr<const Cublas*> Get();
};

#undef KTUNE_DECLARE_FUNCTION

// The CUDA toolkit's include directory NVRTC compiles with: $KTUNE_CUDA_INCLUDE, else the one
// found at build time.
std::string CudaIncludeDir();

}  // namespace ktune::cuda

#endif  // KTUNE_MEASURER_CUDA_CUDA_LIBRARIES_H_
