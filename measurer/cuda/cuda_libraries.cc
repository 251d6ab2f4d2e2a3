#include "measurer/cuda/cuda_libraries.h"

#include <dlfcn.h>

#include <cstdlib>
#include <initializer_list>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace ktune::cuda {
namespace {

#define KTUNE_STRINGIFY_EXPANDED(name) KTUNE_STRINGIFY(name)
#define KTUNE_STRINGIFY(name) #name

// dlopen of the first name that loads; the error names every attempt.
absl::StatusOr<void*> OpenFirst(std::initializer_list<std::string> names, const char* what) {
  std::string errors;
  for (const std::string& name : names) {
    if (void* handle = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) return handle;
    const char* e = ::dlerror();
    absl::StrAppend(&errors, errors.empty() ? "" : "; ", e ? e : name);
  }
  return absl::FailedPreconditionError(absl::StrCat("cannot load ", what, " (", errors, ")"));
}

template <typename Table>
absl::Status Resolve(void* handle, Table& table, const char* library);

#define KTUNE_RESOLVE(name)                                                             \
  table.name = reinterpret_cast<decltype(table.name)>(                                  \
      ::dlsym(handle, KTUNE_STRINGIFY_EXPANDED(name)));                                 \
  if (table.name == nullptr) {                                                          \
    return absl::FailedPreconditionError(absl::StrCat(                                  \
        library, " has no function " KTUNE_STRINGIFY_EXPANDED(name) " (too old?)"));    \
  }

template <>
absl::Status Resolve(void* handle, CudaDriver& table, const char* library) {
  KTUNE_CUDA_DRIVER_FUNCTIONS(KTUNE_RESOLVE)
  return absl::OkStatus();
}
template <>
absl::Status Resolve(void* handle, Nvrtc& table, const char* library) {
  KTUNE_NVRTC_FUNCTIONS(KTUNE_RESOLVE)
  return absl::OkStatus();
}
template <>
absl::Status Resolve(void* handle, Cublas& table, const char* library) {
  KTUNE_CUBLAS_FUNCTIONS(KTUNE_RESOLVE)
  KTUNE_RESOLVE(cublasGemmEx)
  return absl::OkStatus();
}

// Loads a table once per process; every later call returns the first outcome.
template <typename Table>
absl::StatusOr<const Table*> LoadOnce(std::initializer_list<std::string> names, const char* what,
                                      absl::Status (*after)(const Table&) = nullptr) {
  static std::once_flag once;
  static Table table;
  static absl::Status status;
  std::call_once(once, [&] {
    absl::StatusOr<void*> handle = OpenFirst(names, what);
    if (!handle.ok()) {
      status = handle.status();
      return;
    }
    status = Resolve(*handle, table, what);
    if (status.ok() && after != nullptr) status = after(table);
  });
  if (!status.ok()) return status;
  return &table;
}

std::string ToolkitLib(const char* file) { return absl::StrCat(KTUNE_CUDA_TOOLKIT_LIB_DIR, "/", file); }

}  // namespace

absl::StatusOr<const CudaDriver*> CudaDriver::Get() {
  return LoadOnce<CudaDriver>(
      {"libcuda.so.1"}, "the NVIDIA driver: is it installed?",
      [](const CudaDriver& d) {
        const CUresult r = d.cuInit(0);
        if (r == CUDA_SUCCESS) return absl::OkStatus();
        return absl::FailedPreconditionError(
            absl::StrCat("the NVIDIA driver did not initialise: ", d.ErrorText(r)));
      });
}

std::string CudaDriver::ErrorText(CUresult result) const {
  if (result == CUDA_ERROR_STUB_LIBRARY) {
    return "CUDA_ERROR_STUB_LIBRARY (libcuda.so.1 is the toolkit's stub, not a driver)";
  }
  const char* name = nullptr;
  const char* text = nullptr;
  if (cuGetErrorName) cuGetErrorName(result, &name);
  if (cuGetErrorString) cuGetErrorString(result, &text);
  return absl::StrCat(name ? name : absl::StrCat("CUresult ", static_cast<int>(result)), " (",
                      text ? text : "no description", ")");
}

absl::StatusOr<const Nvrtc*> Nvrtc::Get() {
  return LoadOnce<Nvrtc>({"libnvrtc.so.13", "libnvrtc.so", ToolkitLib("libnvrtc.so")},
                         "NVRTC, the CUDA toolkit's run-time compiler");
}

std::string Nvrtc::VersionText() const {
  int major = 0, minor = 0;
  nvrtcVersion(&major, &minor);
  return absl::StrCat(major, ".", minor);
}

absl::StatusOr<const Cublas*> Cublas::Get() {
  return LoadOnce<Cublas>({"libcublas.so.13", "libcublas.so", ToolkitLib("libcublas.so")},
                          "cuBLAS");
}

std::string CudaIncludeDir() {
  if (const char* dir = std::getenv("KTUNE_CUDA_INCLUDE"); dir && *dir) return dir;
  return KTUNE_CUDA_TOOLKIT_INCLUDE_DIR;
}

}  // namespace ktune::cuda
