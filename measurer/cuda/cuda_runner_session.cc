#include "measurer/cuda/cuda_runner_session.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/utf8.h"
#include "measurer/cuda/cuda_element_types.h"
#include "measurer/cuda/nvrtc_compiler.h"

namespace ktune::cuda {
namespace {

using cuda_runner::RunResponse;

constexpr int kReferenceBlock = 256;
constexpr char kPrepareFailed[] = "preparing the task failed: ";

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// Errors a launch reports without poisoning the context: the configuration cannot run.
bool IsLaunchRefusal(CUresult r) {
  return r == CUDA_ERROR_INVALID_VALUE || r == CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES ||
         r == CUDA_ERROR_INVALID_IMAGE || r == CUDA_ERROR_NO_BINARY_FOR_GPU;
}

// The device's buffer, byte for byte.
CUresult CopyToHost(const CudaDriver& d, CUdeviceptr src, size_t bytes,
                    std::vector<unsigned char>* out) {
  out->resize(bytes);
  return d.cuMemcpyDtoH(out->data(), src, bytes);
}

cuda_runner::Response RunFailure(RunResponse::Status status, std::string message,
                                 bool restart = false) {
  cuda_runner::Response response;
  response.mutable_run()->set_status(status);
  response.mutable_run()->set_message(Utf8Prefix(message, 4096));  // NVRTC logs, any bytes
  response.set_restart(restart);
  return response;
}

}  // namespace

cuda_runner::Response CudaRunnerSession::Handle(const cuda_runner::Request& request) {
  cuda_runner::Response response;
  switch (request.kind_case()) {
    case cuda_runner::Request::kDescribe:
      *response.mutable_device() = Describe(request.describe().device());
      break;
    case cuda_runner::Request::kCompile: {
      std::vector<cuda_runner::Program> programs(request.compile().programs().begin(),
                                                 request.compile().programs().end());
      for (auto& r : CompileAll(programs, request.compile().cache_dir(),
                                request.compile().threads())) {
        *response.mutable_compile()->add_results() = std::move(r);
      }
      break;
    }
    case cuda_runner::Request::kRun:
      return Run(request.run());
    default:
      response.set_error("empty request");
  }
  return response;
}

absl::Status CudaRunnerSession::UseDevice(int device) {
  if (device_ == device) return absl::OkStatus();
  if (device_ >= 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "this runner serves device ", device_, "; device ", device, " needs its own runner"));
  }
  absl::StatusOr<const CudaDriver*> driver = CudaDriver::Get();
  if (!driver.ok()) return driver.status();
  const CudaDriver& d = **driver;
  int count = 0;
  d.cuDeviceGetCount(&count);
  if (device < 0 || device >= count) {
    return absl::NotFoundError(
        absl::StrCat("no CUDA device ", device, ": this machine has ", count));
  }
  CUdevice dev;
  CUresult r = d.cuDeviceGet(&dev, device);
  if (r == CUDA_SUCCESS) r = d.cuDevicePrimaryCtxRetain(&context_, dev);
  if (r == CUDA_SUCCESS) r = d.cuCtxSetCurrent(context_);
  if (r == CUDA_SUCCESS) r = d.cuEventCreate(&start_, CU_EVENT_DEFAULT);
  if (r == CUDA_SUCCESS) r = d.cuEventCreate(&stop_, CU_EVENT_DEFAULT);
  if (r != CUDA_SUCCESS) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot use CUDA device ", device, ": ", d.ErrorText(r)));
  }
  driver_ = &d;
  device_ = device;
  return absl::OkStatus();
}

cuda_runner::DeviceDescription CudaRunnerSession::Describe(int device) {
  cuda_runner::DeviceDescription desc;
  desc.set_device(device);
  if (absl::StatusOr<const Nvrtc*> nvrtc = Nvrtc::Get(); nvrtc.ok()) {
    desc.set_nvrtc_version((*nvrtc)->VersionText());
  }
  if (absl::Status s = UseDevice(device); !s.ok()) {
    desc.set_reason(std::string(s.message()));
    return desc;
  }
  const CudaDriver& d = *driver_;
  CUdevice dev;
  d.cuDeviceGet(&dev, device);
  char name[256] = {};
  d.cuDeviceGetName(name, sizeof name, dev);
  desc.set_name(name);
  auto attribute = [&](CUdevice_attribute a) {
    int v = 0;
    d.cuDeviceGetAttribute(&v, a, dev);
    return v;
  };
  desc.set_cc_major(attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR));
  desc.set_cc_minor(attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR));
  desc.set_sm_count(attribute(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT));
  desc.set_clock_khz(attribute(CU_DEVICE_ATTRIBUTE_CLOCK_RATE));
  desc.set_memory_clock_khz(attribute(CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE));
  desc.set_memory_bus_bits(attribute(CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH));
  desc.set_l2_bytes(attribute(CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE));
  desc.set_shared_per_block_bytes(attribute(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK));
  size_t memory = 0;
  d.cuDeviceTotalMem(&memory, dev);
  desc.set_memory_bytes(static_cast<int64_t>(memory));
  CUuuid uuid;
  if (d.cuDeviceGetUuid(&uuid, dev) == CUDA_SUCCESS) {
    std::string text = "GPU-";
    for (int i = 0; i < 16; ++i) {
      absl::StrAppendFormat(&text, "%02x", static_cast<unsigned char>(uuid.bytes[i]));
    }
    desc.set_uuid(text);
  }
  int driver_version = 0;
  d.cuDriverGetVersion(&driver_version);
  desc.set_driver_version(driver_version);
  if (absl::StatusOr<const Cublas*> cublas = Cublas::Get(); cublas.ok()) {
    cublasHandle_t handle = static_cast<cublasHandle_t>(cublas_);
    if (handle == nullptr && (*cublas)->cublasCreate(&handle) == CUBLAS_STATUS_SUCCESS) {
      cublas_ = handle;
    }
    int version = 0;
    if (handle != nullptr && (*cublas)->cublasGetVersion(handle, &version) == CUBLAS_STATUS_SUCCESS) {
      desc.set_cublas_version(std::to_string(version));
    }
  }
  desc.set_available(true);
  return desc;
}

absl::StatusOr<CUfunction> CudaRunnerSession::Function(const std::string& cubin_path,
                                                       const char* entry) {
  CUmodule& module = modules_[cubin_path];
  if (module == nullptr) {
    const CUresult r = driver_->cuModuleLoad(&module, cubin_path.c_str());
    if (r != CUDA_SUCCESS) {
      module = nullptr;
      return absl::InvalidArgumentError(
          absl::StrCat("cannot load ", cubin_path, ": ", driver_->ErrorText(r)));
    }
  }
  CUfunction function;
  const CUresult r = driver_->cuModuleGetFunction(&function, module, entry);
  if (r != CUDA_SUCCESS) {
    return absl::InvalidArgumentError(
        absl::StrCat("the module has no ", entry, ": ", driver_->ErrorText(r)));
  }
  return function;
}

void CudaRunnerSession::Unload(const std::string& cubin_path) {
  auto it = modules_.find(cubin_path);
  if (it == modules_.end()) return;
  if (it->second != nullptr) driver_->cuModuleUnload(it->second);
  modules_.erase(it);
}

CUresult CudaRunnerSession::UploadInputs() {
  for (size_t b = 0; b < inputs_.size(); ++b) {
    const CUresult r = driver_->cuMemcpyHtoD(buffers_[b], inputs_[b].data(), inputs_[b].size());
    if (r != CUDA_SUCCESS) return r;
  }
  return CUDA_SUCCESS;
}

size_t CudaRunnerSession::BufferBytes(int b) const {
  return static_cast<size_t>(task_.buffer_elements(b)) * CudaElementBytes(types_[b]);
}

CUresult CudaRunnerSession::FillOutputs(bool poison) {
  const int first = static_cast<int>(buffers_.size()) - task_.num_outputs();
  for (int b = first; b < static_cast<int>(buffers_.size()); ++b) {
    const unsigned char byte = poison ? CudaPoisonByte(types_[b]) : 0;
    const CUresult r = driver_->cuMemsetD8Async(buffers_[b], byte, BufferBytes(b), 0);
    if (r != CUDA_SUCCESS) return r;
  }
  return CUDA_SUCCESS;
}

absl::Status CudaRunnerSession::PrepareTask(const cuda_runner::TaskSpec& task,
                                            double* prepare_ms) {
  std::string key = task.SerializeAsString();
  *prepare_ms = 0;
  if (key == task_key_) return absl::OkStatus();
  const auto start = std::chrono::steady_clock::now();
  const CudaDriver& d = *driver_;
  for (CUdeviceptr p : buffers_) d.cuMemFree(p);
  buffers_.clear();
  inputs_.clear();
  reference_.clear();
  tolerance_.clear();
  reference_scale_.clear();
  if (!task_.reference_cubin().empty()) Unload(task_.reference_cubin());
  task_key_.clear();
  types_.clear();
  task_ = task;
  const int n = task.buffer_elements_size();
  const int inputs = n - task.num_outputs();
  if (task.buffer_types_size() != n) {
    return absl::InvalidArgumentError(absl::StrCat(n, " buffers but ", task.buffer_types_size(),
                                                   " element types"));
  }
  for (const std::string& name : task.buffer_types()) {
    absl::StatusOr<CudaElementType> type = ParseCudaElementType(name);
    if (!type.ok()) return type.status();
    types_.push_back(*type);
  }
  for (int b = 0; b < n; ++b) {
    CUdeviceptr p = 0;
    const CUresult r = d.cuMemAlloc(&p, BufferBytes(b));
    if (r != CUDA_SUCCESS) {
      return absl::ResourceExhaustedError(absl::StrCat("cannot allocate buffer ", b, " (",
                                                       task.buffer_elements(b), " elements): ",
                                                       d.ErrorText(r)));
    }
    buffers_.push_back(p);
  }
  std::mt19937_64 rng(task.seed());
  for (int b = 0; b < inputs; ++b) {
    std::vector<unsigned char>& host = inputs_.emplace_back(BufferBytes(b));
    FillRandom(types_[b], task.buffer_elements(b), rng, host.data());
  }
  if (CUresult r = UploadInputs(); r != CUDA_SUCCESS) return absl::InternalError(d.ErrorText(r));
  problem_.assign(task.problem().begin(), task.problem().end());

  // The reference writes the outputs; they are kept on the host.
  absl::StatusOr<CUfunction> reference = Function(task.reference_cubin(), "ktune_reference");
  if (!reference.ok()) return reference.status();
  if (CUresult r = FillOutputs(/*poison=*/true); r != CUDA_SUCCESS) {
    return absl::InternalError(d.ErrorText(r));
  }
  std::vector<void*> args;
  for (CUdeviceptr& p : buffers_) args.push_back(&p);
  for (int& v : problem_) args.push_back(&v);
  const int64_t items = std::max<int64_t>(1, task.reference_items());
  const unsigned blocks = static_cast<unsigned>(
      std::min<int64_t>((items + kReferenceBlock - 1) / kReferenceBlock, int64_t{1} << 16));
  CUresult r = d.cuLaunchKernel(*reference, blocks, 1, 1, kReferenceBlock, 1, 1, 0, nullptr,
                                args.data(), nullptr);
  if (r == CUDA_SUCCESS) r = d.cuCtxSynchronize();
  if (r != CUDA_SUCCESS) {
    return absl::InternalError(absl::StrCat("the reference kernel failed: ", d.ErrorText(r)));
  }
  for (int b = inputs; b < n; ++b) {
    reference_.emplace_back();
    r = CopyToHost(d, buffers_[b], BufferBytes(b), &reference_.back());
    if (r != CUDA_SUCCESS) return absl::InternalError(d.ErrorText(r));
    const double max_ref = CudaMaxAbs(types_[b], reference_.back().data(), task.buffer_elements(b));
    tolerance_.push_back(task.atol() + task.rtol() * max_ref);
    reference_scale_.push_back(max_ref > 0 ? max_ref : 1.0);
  }
  task_key_ = std::move(key);
  *prepare_ms = Seconds(start) * 1e3;
  return absl::OkStatus();
}

CUresult CudaRunnerSession::Launch(const cuda_runner::RunRequest& request, CUfunction function,
                                   const std::vector<void*>& args) {
  const CudaDriver& d = *driver_;
  if (request.zero_outputs()) {
    if (CUresult r = FillOutputs(/*poison=*/false); r != CUDA_SUCCESS) return r;
  }
  if (function != nullptr) {
    return d.cuLaunchKernel(function, request.grid(0), request.grid(1), request.grid(2),
                            request.block(0), request.block(1), request.block(2), 0, nullptr,
                            const_cast<void**>(args.data()), nullptr);
  }
  // cuBLAS (checked loadable before the first launch).
  const Cublas& blas = **Cublas::Get();
  const int m = problem_[0], n = problem_[1], k = problem_[2];
  const float alpha = 1, beta = 0;
  // Float types only, with FP32 compute: the definition offers no i8 baseline (see
  // kernels/cuda_gemm_definition.cc), and a task that asks for one is refused here.
  cudaDataType type;
  switch (types_[0]) {
    case CudaElementType::kF32:
      type = CUDA_R_32F;
      break;
    case CudaElementType::kF16:
      type = CUDA_R_16F;
      break;
    case CudaElementType::kBf16:
      type = CUDA_R_16BF;
      break;
    default:
      vendor_error_ = absl::StrCat("no cuBLAS baseline for ", task_.dtype());
      return CUDA_ERROR_INVALID_VALUE;
  }
  const auto algo = static_cast<cublasGemmAlgo_t>(request.vendor_config_size() > 0
                                                      ? request.vendor_config(0)
                                                      : int64_t{CUBLAS_GEMM_DEFAULT});
  // Row-major C = A·B is column-major C^T = B^T·A^T.
  const cublasStatus_t s = blas.cublasGemmEx(
      static_cast<cublasHandle_t>(cublas_), CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &alpha,
      reinterpret_cast<void*>(buffers_[1]), type, n, reinterpret_cast<void*>(buffers_[0]), type,
      k, &beta, reinterpret_cast<void*>(buffers_[2]), type, n, CUBLAS_COMPUTE_32F, algo);
  if (s == CUBLAS_STATUS_SUCCESS) return CUDA_SUCCESS;
  vendor_error_ = absl::StrCat("cublasGemmEx returned cublasStatus_t ", static_cast<int>(s));
  // Unsupported arguments are a refused configuration; anything else may have broken the context.
  return s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_INVALID_VALUE
             ? CUDA_ERROR_INVALID_VALUE
             : CUDA_ERROR_LAUNCH_FAILED;
}

absl::StatusOr<std::string> CudaRunnerSession::CheckOutputs(double* max_rel_error) {
  const int inputs = task_.buffer_elements_size() - task_.num_outputs();
  *max_rel_error = 0;
  std::vector<unsigned char> out;
  for (int o = 0; o < task_.num_outputs(); ++o) {
    const int b = inputs + o;
    const CUresult r = CopyToHost(*driver_, buffers_[b], BufferBytes(b), &out);
    if (r != CUDA_SUCCESS) return absl::InternalError(driver_->ErrorText(r));
    double max_abs_diff = 0;
    std::string mismatch =
        CudaCompareElements(types_[b], out.data(), reference_[o].data(), task_.buffer_elements(b),
                            tolerance_[o], absl::StrCat("output ", o), &max_abs_diff);
    if (!mismatch.empty()) return mismatch;
    *max_rel_error = std::max(*max_rel_error, max_abs_diff / reference_scale_[o]);
  }
  return std::string();
}

cuda_runner::Response CudaRunnerSession::Run(const cuda_runner::RunRequest& request) {
  cuda_runner::Response response;
  if (absl::Status s = UseDevice(request.task().device()); !s.ok()) {
    response.set_error(std::string(s.message()));
    return response;
  }
  const CudaDriver& d = *driver_;
  const bool vendor = !request.vendor_library().empty();
  if (vendor) {
    if (request.vendor_library() != "cublas") {
      return RunFailure(RunResponse::INVALID_CONFIG,
                        absl::StrCat("unknown vendor library '", request.vendor_library(), "'"));
    }
    absl::StatusOr<const Cublas*> blas = Cublas::Get();
    if (!blas.ok()) return RunFailure(RunResponse::RUNTIME_ERROR, std::string(blas.status().message()));
    if (cublas_ == nullptr) {
      cublasHandle_t handle;
      if ((*blas)->cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
        return RunFailure(RunResponse::RUNTIME_ERROR, "cublasCreate failed");
      }
      cublas_ = handle;
    }
    (*blas)->cublasSetStream(static_cast<cublasHandle_t>(cublas_), nullptr);
    if (request.task().problem_size() != 3 || request.task().buffer_elements_size() != 3) {
      return RunFailure(RunResponse::INVALID_CONFIG, "cublas needs problem M, N, K and A, B, C");
    }
  } else if (request.grid_size() != 3 || request.block_size() != 3) {
    return RunFailure(RunResponse::INVALID_CONFIG, "grid and block need 3 sizes each");
  }

  double prepare_ms = 0;
  if (absl::Status s = PrepareTask(request.task(), &prepare_ms); !s.ok()) {
    // A failed reference may have poisoned the context.
    return RunFailure(RunResponse::RUNTIME_ERROR,
                      absl::StrCat(kPrepareFailed, s.message()), absl::IsInternal(s));
  }
  response.mutable_run()->set_prepare_ms(prepare_ms);

  // The candidate's module is unloaded when its run ends, whatever the outcome: a worker loads
  // thousands of them.
  struct UnloadAtEnd {
    CudaRunnerSession* session;
    std::string path;
    ~UnloadAtEnd() {
      if (!path.empty()) session->Unload(path);
    }
  } unload_at_end{this, vendor ? "" : request.cubin_path()};
  CUfunction function = nullptr;
  if (!vendor) {
    absl::StatusOr<CUfunction> f = Function(request.cubin_path(), "ktune_kernel");
    if (!f.ok()) return RunFailure(RunResponse::RUNTIME_ERROR, std::string(f.status().message()));
    function = *f;
    int max_threads = 0;
    const CUresult r =
        d.cuFuncGetAttribute(&max_threads, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, function);
    if (r != CUDA_SUCCESS) return RunFailure(RunResponse::RUNTIME_ERROR, d.ErrorText(r), true);
    const int64_t threads = int64_t{request.block(0)} * request.block(1) * request.block(2);
    if (threads > max_threads) {
      return RunFailure(RunResponse::INVALID_CONFIG,
                        absl::StrCat(threads, " threads per block; this kernel's registers allow ",
                                     max_threads, " on this device"));
    }
  }
  std::vector<void*> args;  // built once: nothing but launches inside the timed loop
  for (CUdeviceptr& p : buffers_) args.push_back(&p);
  for (int& v : problem_) args.push_back(&v);

  // Runs `launches` of the candidate (or one with an L2 flush first) between the events and
  // returns the milliseconds per run; an error describes a failed launch.
  std::string error;
  bool refused = false;
  unsigned flushes = 0;
  vendor_error_.clear();
  auto timed = [&](int launches) -> double {
    if (request.flush_l2() && flush_bytes_ > 0) {
      d.cuMemsetD8Async(flush_, static_cast<unsigned char>(++flushes), flush_bytes_, nullptr);
    }
    d.cuEventRecord(start_, nullptr);
    for (int i = 0; i < launches; ++i) {
      const CUresult r = Launch(request, function, args);
      if (r != CUDA_SUCCESS) {
        refused = IsLaunchRefusal(r);
        error = vendor_error_.empty() ? d.ErrorText(r) : vendor_error_;
        return 0;
      }
    }
    d.cuEventRecord(stop_, nullptr);
    CUresult r = d.cuEventSynchronize(stop_);
    float ms = 0;
    if (r == CUDA_SUCCESS) r = d.cuEventElapsedTime(&ms, start_, stop_);
    if (r != CUDA_SUCCESS) error = d.ErrorText(r);
    return static_cast<double>(ms) / launches;
  };
  auto failed = [&] {
    return refused ? RunFailure(RunResponse::INVALID_CONFIG, "launch refused: " + error)
                   : RunFailure(RunResponse::RUNTIME_ERROR, error, /*restart=*/true);
  };

  // The checked run.
  if (!request.zero_outputs()) {
    if (CUresult r = FillOutputs(/*poison=*/true); r != CUDA_SUCCESS) {
      return RunFailure(RunResponse::RUNTIME_ERROR, d.ErrorText(r), true);
    }
  }
  timed(1);
  if (!error.empty()) return failed();
  double max_rel_error = 0;
  absl::StatusOr<std::string> mismatch = CheckOutputs(&max_rel_error);
  if (!mismatch.ok()) {
    return RunFailure(RunResponse::RUNTIME_ERROR, std::string(mismatch.status().message()), true);
  }
  if (!mismatch->empty()) {
    // It may have written into the inputs too: the next candidate gets them fresh.
    if (CUresult r = UploadInputs(); r != CUDA_SUCCESS) {
      return RunFailure(RunResponse::WRONG_RESULT, *mismatch, true);
    }
    return RunFailure(RunResponse::WRONG_RESULT, *mismatch);
  }

  if (request.flush_l2() && flush_bytes_ == 0) {
    int l2 = 0;
    CUdevice dev;
    d.cuDeviceGet(&dev, device_);
    d.cuDeviceGetAttribute(&l2, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, dev);
    if (l2 <= 0 || d.cuMemAlloc(&flush_, size_t{2} * l2) != CUDA_SUCCESS) {
      return RunFailure(RunResponse::RUNTIME_ERROR,
                        "cannot allocate the L2 flush buffer (twice the L2's size)");
    }
    flush_bytes_ = size_t{2} * l2;
  }
  // Warm-up; the last warm run (the first one paid for loading the module) sizes the samples.
  double per_run = 0;
  for (int i = 0; i < std::max(1, request.warmup_runs() - 1) && error.empty(); ++i) {
    per_run = timed(1);
  }
  if (!error.empty()) return failed();
  const int launches =
      request.flush_l2()
          ? 1
          : static_cast<int>(std::clamp(std::ceil(request.min_sample_ms() / std::max(per_run, 1e-4)),
                                        1.0, 100000.0));
  const auto start = std::chrono::steady_clock::now();
  std::vector<double> samples;
  double sum = 0, sum_sq = 0;
  while (true) {
    const double t = timed(launches);
    if (!error.empty()) return failed();
    samples.push_back(t);
    sum += t;
    sum_sq += t * t;
    const int n = static_cast<int>(samples.size());
    if (n >= request.max_repeats()) break;
    if (n >= std::max(1, request.min_repeats())) {
      const double mean = sum / n;
      const double var = std::max(0.0, sum_sq / n - mean * mean);
      if (mean > 0 && std::sqrt(var) / mean <= request.target_cv()) break;
      if (Seconds(start) >= request.max_seconds()) break;
    }
  }
  for (double t : samples) response.mutable_run()->add_times_ms(t);
  response.mutable_run()->set_status(RunResponse::OK);
  response.mutable_run()->set_max_rel_error(max_rel_error);
  return response;
}

}  // namespace ktune::cuda
