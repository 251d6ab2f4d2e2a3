// Measures CUDA kernels of a KernelRegistry on one GPU.
//
// Everything CUDA happens in a ktune-cuda-runner child process (measurer/cuda/): ktune itself
// never loads the NVIDIA driver, NVRTC or cuBLAS, so it starts on machines without them, and an
// illegal address or a hung kernel kills the child, never the worker. A batch is compiled first
// (NVRTC, in parallel, cubins cached on disk by program and compiler version), then each
// candidate is checked against the reference and timed with CUDA events. Outcomes:
//   ok              correct output; time = median of the samples' per-run times
//   invalid_config  outside the space, a launch size beyond the hardware's limits, or a launch
//                   the device refused (too many registers for the block)
//   compile_error   NVRTC's diagnostics
//   runtime_error   a CUDA error while running (named), e.g. an illegal address
//   timeout         no answer within the run timeout (the child is killed)
//   wrong_result    outputs differ from the reference beyond the dtype's tolerance
#ifndef KTUNE_MEASURER_CUDA_MEASURER_H_
#define KTUNE_MEASURER_CUDA_MEASURER_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/kernel_registry.h"
#include "measurer/cuda/cuda_runner.pb.h"
#include "measurer/measurer.h"
#include "measurer/runner_process.h"

namespace ktune {

// The worker's handle on one ktune-cuda-runner child: the protocol's three requests.
class CudaRunnerClient {
 public:
  explicit CudaRunnerClient(std::string runner_path = "");

  // The device (available == false with a reason when there is none: no driver, bad ordinal).
  // An error only when the runner cannot be started or crashed.
  absl::StatusOr<cuda_runner::DeviceDescription> Describe(int device, int64_t timeout_ms = 60'000);

  // Compiles `programs` (no GPU needed); one result per program.
  absl::StatusOr<std::vector<cuda_runner::CompileResult>> Compile(
      const std::vector<cuda_runner::Program>& programs, const std::string& cache_dir,
      int threads, int64_t timeout_ms);

  // One candidate; `outcome` says whether the runner answered, timed out or died (`death`).
  absl::StatusOr<RunnerProcess::Outcome> Run(const cuda_runner::RunRequest& request,
                                             int64_t timeout_ms, cuda_runner::Response* response,
                                             std::string* death);

  int64_t starts() const { return process_.starts(); }
  bool running() const { return process_.running(); }
  // RunnerProcess::set_stop_check: a call stops (the runner killed) once it turns true.
  void set_stop_check(std::function<bool()> stop) { process_.set_stop_check(std::move(stop)); }

 private:
  RunnerProcess process_;
};

struct CudaMeasurerOptions {
  std::string runner_path;  // empty: $KTUNE_CUDA_RUNNER, else ktune-cuda-runner beside ktune
  int device = 0;           // cuda:N
  std::string cache_dir;    // empty: DefaultCudaCacheDir()
  int compile_threads = 0;  // 0: one per core
  int64_t compile_timeout_ms = 900'000;  // one batch
  int64_t prepare_timeout_ms = 600'000;  // inputs and reference, once per task
  int64_t run_timeout_ms = 20'000;       // one candidate, all its runs
  double relative_timeout = 50;          // as in CpuMeasurerOptions
  int warmup_runs = 3;
  int min_repeats = 5;
  int max_repeats = 50;
  double target_cv = 0.01;
  double max_seconds = 0.5;
  double min_sample_ms = 1;
  bool flush_l2 = false;
  uint64_t seed = 1;
};

class CudaMeasurer : public Measurer {
 public:
  // Starts the runner and describes the device; FailedPrecondition saying why when there is no
  // usable GPU (no driver, no device N, runner missing). `registry` must outlive the measurer.
  static absl::StatusOr<std::unique_ptr<CudaMeasurer>> Create(const KernelRegistry* registry,
                                                              CudaMeasurerOptions options = {});

  DeviceInfo device() const override { return device_; }
  const cuda_runner::DeviceDescription& description() const { return description_; }
  std::string arch() const;

  absl::StatusOr<std::vector<MeasureResult>> Measure(
      const TaskKey& task, const std::vector<Configuration>& configs) override;

  int64_t runner_starts() const { return client_.starts(); }

 private:
  CudaMeasurer(const KernelRegistry* registry, CudaMeasurerOptions options);

  struct TaskState {
    const KernelDefinition* definition = nullptr;
    Problem problem;
    std::unique_ptr<SearchSpace> space;
    cuda_runner::TaskSpec spec;  // reference_cubin set once compiled
    double best_ms = 0;
    double output_bytes = 0;
  };
  absl::StatusOr<TaskState*> StateFor(const TaskKey& task);
  MeasureResult RunOne(TaskState& state, const Configuration& config,
                       const cuda_runner::CompileResult* build);

  const KernelRegistry* registry_;
  CudaMeasurerOptions options_;
  CudaRunnerClient client_;
  // The task the runner holds prepared (inputs, reference), and in which of its lives: a run
  // of another task, or in a fresh runner, is given the preparation's time too.
  std::string prepared_task_;
  int64_t prepared_in_start_ = -1;
  cuda_runner::DeviceDescription description_;
  DeviceInfo device_;
  std::map<std::string, std::unique_ptr<TaskState>> tasks_;
};

// The fingerprint of a GPU (every fact results depend on), its class (the model name) and
// family (the architecture, from the compute capability).
DeviceInfo CudaDeviceInfo(const cuda_runner::DeviceDescription& description);

}  // namespace ktune

#endif  // KTUNE_MEASURER_CUDA_MEASURER_H_
