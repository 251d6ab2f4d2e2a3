// What `ktune tune` tunes: a task with its search space and a measurer for a device (the embedded
// worker measures with it). Replay devices come from a recorded space; `cpu` from the kernel
// registry, measured on this machine; `cuda[:N]` from the registry's CUDA templates.
#ifndef KTUNE_CLI_TUNE_TARGET_H_
#define KTUNE_CLI_TUNE_TARGET_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "db/interchange/record_files.h"
#include "db/record.h"
#include "kernels/kernel_registry.h"
#include "kernels/search_space.h"
#include "measurer/cpu_measurer.h"
#include "measurer/cuda_measurer.h"
#include "measurer/measurer.h"

namespace ktune::cli {

struct TuneTarget {
  TaskKey task;
  std::unique_ptr<SearchSpace> space;
  std::unique_ptr<Measurer> measurer;
  std::string device_description;  // "replayed from FILE", "this CPU: AMD EPYC, 2 cores"
  // Registry kernels only: the untuned default, the work per run and the machine's peak.
  std::optional<Configuration> default_config;
  double flops = 0;                   // per run; 0 when unknown
  double peak_gflops_per_thread = 0;  // 0 when unknown
  int cores = 1;
  double optimum_ms = 0;  // replay only: the recorded space's fastest time
  std::string recorded_file;  // replay only: the file, for the server that serves its space
  int threads = 0;            // cpu: the thread count --threads fixed (space and default); 0: any
};

// --device replay:FILE, from the space loaded from `file` (LoadRecordedSpace: its errors are the
// file's, so the caller reports them). `kernel` (may be empty) must match the file's.
absl::StatusOr<TuneTarget> ReplayTarget(RecordedSpace recorded, const std::string& file,
                                        const std::string& kernel);

// The registry kernel that --device cpu tunes: InvalidArgument when none is named, the registry's
// error (naming the known kernels) for an unknown one.
absl::StatusOr<const KernelDefinition*> CpuKernel(const KernelRegistry& registry,
                                                  const std::string& kernel);

// --device cpu with a registry kernel. `problem_text` is "M=..,N=.."; `dtype` joins it.
// `threads` > 0 fixes the kernel's `threads` parameter (space and default) to that value.
// `options` tune the measurer (timing, timeouts).
absl::StatusOr<TuneTarget> CpuTarget(const KernelRegistry& registry, const std::string& kernel,
                                     const std::string& problem_text, const std::string& dtype,
                                     int threads = 0, CpuMeasurerOptions options = {});

// --device cuda or cuda:N with a registry CUDA kernel: a ktune-cuda-runner for that GPU.
// FailedPrecondition (saying why) on a machine without a usable GPU.
absl::StatusOr<TuneTarget> CudaTarget(const KernelRegistry& registry, const std::string& device,
                                      const std::string& kernel, const std::string& problem_text,
                                      const std::string& dtype, CudaMeasurerOptions options = {});

// The GPU `device` ("cuda[:N]") of this machine, described by the CUDA runner;
// FailedPrecondition saying why when there is none.
absl::StatusOr<DeviceInfo> DescribeCudaDevice(const std::string& device);

// "cuda" -> 0, "cuda:3" -> 3; InvalidArgument otherwise.
absl::StatusOr<int> CudaOrdinal(const std::string& device);

// The configuration's thread count (parameter "threads"), or 1.
int ThreadsOf(const Configuration& config);

}  // namespace ktune::cli

#endif  // KTUNE_CLI_TUNE_TARGET_H_
