// The CUDA runner's state between requests: the driver and the device's primary context, the
// current task's buffers and reference output, loaded modules. One request at a time.
//
// Measurement of a candidate: outputs poisoned (NaN; a value no kernel computes for integer
// outputs: CudaPoisonByte) or zeroed, for accumulating kernels, then a
// checked first run compared with the reference (|out - ref| <= atol + rtol * max|ref|), more
// untimed warm-up runs, then samples timed with CUDA events: each sample launches the kernel
// enough times to last min_sample_ms (or, with flush_l2, one launch after overwriting a buffer
// twice the size of the L2 cache), until the samples' CV is below target_cv or max_seconds.
// A sticky CUDA error (illegal address, ...) poisons the context: the answer sets `restart`.
#ifndef KTUNE_MEASURER_CUDA_CUDA_RUNNER_SESSION_H_
#define KTUNE_MEASURER_CUDA_CUDA_RUNNER_SESSION_H_

#include <cuda.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "measurer/cuda/cuda_element_types.h"
#include "measurer/cuda/cuda_libraries.h"
#include "measurer/cuda/cuda_runner.pb.h"

namespace ktune::cuda {

class CudaRunnerSession {
 public:
  CudaRunnerSession() = default;
  CudaRunnerSession(const CudaRunnerSession&) = delete;
  CudaRunnerSession& operator=(const CudaRunnerSession&) = delete;

  cuda_runner::Response Handle(const cuda_runner::Request& request);

 private:
  cuda_runner::DeviceDescription Describe(int device);
  cuda_runner::Response Run(const cuda_runner::RunRequest& request);

  absl::Status UseDevice(int device);
  absl::Status PrepareTask(const cuda_runner::TaskSpec& task, double* prepare_ms);
  absl::StatusOr<CUfunction> Function(const std::string& cubin_path, const char* entry);
  void Unload(const std::string& cubin_path);
  // Writes the inputs again from the host copies (a candidate may have written into them).
  CUresult UploadInputs();
  // Launches the candidate (kernel or vendor routine) once, asynchronously, with `args` (the
  // kernel's argument pointers). A failed cuBLAS call sets vendor_error_.
  CUresult Launch(const cuda_runner::RunRequest& request, CUfunction function,
                  const std::vector<void*>& args);
  // Copies every output back and compares it with the reference: empty when it matches, and
  // then *max_rel_error is max |out - ref| / max |ref| over the outputs.
  absl::StatusOr<std::string> CheckOutputs(double* max_rel_error);
  // Fills every output with its type's poison byte, or with zeros.
  CUresult FillOutputs(bool poison);
  size_t BufferBytes(int buffer) const;  // of the current task

  const CudaDriver* driver_ = nullptr;
  int device_ = -1;
  CUcontext context_ = nullptr;
  CUevent start_ = nullptr, stop_ = nullptr;
  CUdeviceptr flush_ = 0;
  size_t flush_bytes_ = 0;
  void* cublas_ = nullptr;  // cublasHandle_t, created on first use

  std::string task_key_;
  cuda_runner::TaskSpec task_;
  std::vector<CudaElementType> types_;  // per buffer
  std::vector<CUdeviceptr> buffers_;
  std::vector<std::vector<unsigned char>> inputs_;     // host copies, as uploaded
  std::vector<std::vector<unsigned char>> reference_;  // per output, as the device wrote it
  std::vector<double> tolerance_;                   // per output: atol + rtol * max|ref|
  std::vector<double> reference_scale_;             // per output: max|ref| (1 when all zero)
  std::vector<int> problem_;                        // the kernel's int arguments
  std::string vendor_error_;
  std::map<std::string, CUmodule> modules_;    // by cubin path
};

}  // namespace ktune::cuda

#endif  // KTUNE_MEASURER_CUDA_CUDA_RUNNER_SESSION_H_
