#include "cli/tune_target.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "db/interchange/record_files.h"
#include "measurer/cpu_measurer.h"
#include "measurer/replay_measurer.h"

namespace ktune::cli {

int ThreadsOf(const Configuration& config) {
  auto it = config.find("threads");
  if (it == config.end() || !std::holds_alternative<int64_t>(it->second)) return 1;
  return static_cast<int>(std::get<int64_t>(it->second));
}

absl::StatusOr<TuneTarget> ReplayTarget(RecordedSpace recorded, const std::string& file,
                                        const std::string& kernel) {
  const Record& first = recorded.records.front();
  if (!kernel.empty() && kernel != first.kernel) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kernel ", kernel, " does not match the recorded space's kernel ", first.kernel));
  }
  TuneTarget t;
  auto measurer = std::make_unique<ReplayMeasurer>(recorded.records);
  t.optimum_ms = measurer->optimum_ms();
  t.task =
      TaskKey{first.kernel, first.kernel_version, first.problem, measurer->device().device_class};
  t.space = std::make_unique<SearchSpace>(std::move(recorded.space));
  t.measurer = std::move(measurer);
  t.device_description = "replayed from " + file;
  t.recorded_file = file;
  return t;
}

absl::StatusOr<const KernelDefinition*> CpuKernel(const KernelRegistry& registry,
                                                  const std::string& kernel) {
  if (kernel.empty()) {
    return absl::InvalidArgumentError("--kernel is required for --device cpu (see ktune kernels)");
  }
  KTUNE_ASSIGN_OR_RETURN(const KernelDefinition* def, registry.Get(kernel));
  // As --device cuda refuses a C++ kernel: a CUDA kernel on the CPU failed every measurement and
  // stored the failures.
  if (def->language != "cpp") {
    return absl::InvalidArgumentError(absl::StrCat("kernel '", kernel, "' is ", def->language,
                                                   " code; --device cpu runs cpp kernels"));
  }
  return def;
}

absl::StatusOr<TuneTarget> CpuTarget(const KernelRegistry& registry, const std::string& kernel,
                                     const std::string& problem_text, const std::string& dtype,
                                     int threads, CpuMeasurerOptions options) {
  KTUNE_ASSIGN_OR_RETURN(const KernelDefinition* found, CpuKernel(registry, kernel));
  KernelDefinition fixed = *found;  // with --threads, a narrower space and default
  if (threads > 0) {
    KTUNE_ASSIGN_OR_RETURN(fixed, found->WithFixedThreads(threads));
  }
  const KernelDefinition* def = &fixed;
  absl::StatusOr<Problem> given = ParseParamMapAssignments(problem_text);
  if (!given.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--problem: ", given.status().message()));
  }
  if (!dtype.empty()) (*given)["dtype"] = dtype;
  KTUNE_ASSIGN_OR_RETURN(Problem problem, def->ValidateProblem(*given));
  KTUNE_RETURN_IF_ERROR(def->CheckBuffersFit(problem));

  TuneTarget t;
  auto measurer = std::make_unique<CpuMeasurer>(&registry, std::move(options));
  // A missing runner failed every measurement, each stored as a runtime_error record.
  KTUNE_RETURN_IF_ERROR(measurer->CheckRunner());
  const CpuDescription& cpu = measurer->cpu();
  if (threads > cpu.cores) {
    return absl::InvalidArgumentError(
        absl::StrCat("--threads ", threads, " is more than this machine's ", cpu.cores, " cores"));
  }
  MachineVariables machine{cpu.cores};
  KTUNE_ASSIGN_OR_RETURN(SearchSpace space, def->Space(problem, machine));
  if (space.size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat("no configuration of ", kernel,
                                                   " satisfies its constraints for this problem"));
  }
  KTUNE_ASSIGN_OR_RETURN(t.default_config, def->DefaultConfiguration(problem, machine));
  KTUNE_ASSIGN_OR_RETURN(t.flops, def->EvaluateForProblem(def->flops, problem));
  t.peak_gflops_per_thread = cpu.PeakGflops(1);
  t.cores = cpu.cores;
  t.threads = threads;
  // The task is the registry kernel's, whatever --threads narrowed: records stay comparable.
  t.task = TaskKey{found->name, found->Version(), problem, measurer->device().device_class};
  t.space = std::make_unique<SearchSpace>(std::move(space));
  t.device_description = absl::StrCat("this CPU (", cpu.model, ", ", cpu.cores, " cores)");
  t.measurer = std::move(measurer);
  return t;
}

absl::StatusOr<int> CudaOrdinal(const std::string& device) {
  if (device == "cuda") return 0;
  int n = -1;
  if (absl::StartsWith(device, "cuda:") && absl::SimpleAtoi(device.substr(5), &n) && n >= 0) {
    return n;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device '", device, "': use cuda or cuda:N (N = the GPU's ordinal)"));
}

absl::StatusOr<DeviceInfo> DescribeCudaDevice(const std::string& device) {
  KTUNE_ASSIGN_OR_RETURN(int ordinal, CudaOrdinal(device));
  CudaRunnerClient runner;
  KTUNE_ASSIGN_OR_RETURN(cuda_runner::DeviceDescription gpu, runner.Describe(ordinal));
  if (!gpu.available()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no usable CUDA device ", device, ": ", gpu.reason()));
  }
  return CudaDeviceInfo(gpu);
}

// Peak GFLOP/s of the GPU for a dtype: FP32 lanes, or dense tensor-core FP16 with FP32
// accumulation, per SM and clock, by compute capability.
double CudaPeakGflops(const cuda_runner::DeviceDescription& d, bool f16) {
  const int cc = d.cc_major() * 10 + d.cc_minor();
  double flops_per_clock_per_sm;
  if (f16) {
    flops_per_clock_per_sm = cc >= 90 ? 4096 : cc >= 80 ? 2048 : 1024;
    if (cc == 86 || cc == 89) flops_per_clock_per_sm = 1024;  // GeForce-class tensor cores
  } else {
    flops_per_clock_per_sm = (cc == 80 || cc < 75) ? 128 : 256;
  }
  return flops_per_clock_per_sm * d.sm_count() * d.clock_khz() * 1e-6;
}

absl::StatusOr<TuneTarget> CudaTarget(const KernelRegistry& registry, const std::string& device,
                                      const std::string& kernel, const std::string& problem_text,
                                      const std::string& dtype, CudaMeasurerOptions options) {
  if (kernel.empty()) {
    return absl::InvalidArgumentError("--kernel is required for --device cuda (see ktune kernels)");
  }
  KTUNE_ASSIGN_OR_RETURN(const KernelDefinition* def, registry.Get(kernel));
  if (def->language != "cuda") {
    return absl::InvalidArgumentError(absl::StrCat("kernel '", kernel, "' is ", def->language,
                                                   " code; --device cuda runs cuda kernels"));
  }
  KTUNE_ASSIGN_OR_RETURN(options.device, CudaOrdinal(device));
  absl::StatusOr<Problem> given = ParseParamMapAssignments(problem_text);
  if (!given.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--problem: ", given.status().message()));
  }
  if (!dtype.empty()) (*given)["dtype"] = dtype;
  KTUNE_ASSIGN_OR_RETURN(Problem problem, def->ValidateProblem(*given));
  KTUNE_RETURN_IF_ERROR(def->CheckBuffersFit(problem));
  KTUNE_ASSIGN_OR_RETURN(SearchSpace space, def->Space(problem, MachineVariables{}));
  if (space.size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat("no configuration of ", kernel,
                                                   " satisfies its constraints for this problem"));
  }
  KTUNE_ASSIGN_OR_RETURN(std::unique_ptr<CudaMeasurer> measurer,
                         CudaMeasurer::Create(&registry, std::move(options)));
  TuneTarget t;
  KTUNE_ASSIGN_OR_RETURN(t.default_config, def->DefaultConfiguration(problem, MachineVariables{}));
  KTUNE_ASSIGN_OR_RETURN(t.flops, def->EvaluateForProblem(def->flops, problem));
  const cuda_runner::DeviceDescription& d = measurer->description();
  t.peak_gflops_per_thread = CudaPeakGflops(d, FormatParamValue(problem.at("dtype")) == "f16");
  t.cores = 1;
  t.task = TaskKey{def->name, def->Version(), problem, measurer->device().device_class};
  t.space = std::make_unique<SearchSpace>(std::move(space));
  t.device_description = absl::StrCat(d.name(), " (cuda:", d.device(), ", sm_", d.cc_major(),
                                      d.cc_minor(), ", ", d.sm_count(), " SMs)");
  t.measurer = std::move(measurer);
  return t;
}

}  // namespace ktune::cli
