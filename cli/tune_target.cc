#include "cli/tune_target.h"

#include <unistd.h>

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

absl::StatusOr<TuneTarget> ReplayTarget(const std::string& file, const std::string& kernel) {
  KTUNE_ASSIGN_OR_RETURN(RecordedSpace recorded, LoadRecordedSpace(file));
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
  t.worker_id = "embedded-replay";
  return t;
}

absl::StatusOr<TuneTarget> CpuTarget(const KernelRegistry& registry, const std::string& kernel,
                                     const std::string& problem_text, const std::string& dtype,
                                     int threads, CpuMeasurerOptions options) {
  if (kernel.empty()) {
    return absl::InvalidArgumentError("--kernel is required for --device cpu (see ktune kernels)");
  }
  KTUNE_ASSIGN_OR_RETURN(const KernelDefinition* found, registry.Get(kernel));
  KernelDefinition fixed = *found;  // with --threads, a narrower space and default
  const KernelDefinition* def = &fixed;
  if (threads > 0) {
    bool has_threads = false;
    for (auto& [name, expr] : fixed.default_config) {
      if (name == "threads") expr = std::to_string(threads), has_threads = true;
    }
    if (!has_threads) {
      return absl::InvalidArgumentError(
          absl::StrCat("kernel '", kernel, "' has no threads parameter to fix"));
    }
    fixed.constraints.push_back(absl::StrCat("threads == ", threads));
  }
  absl::StatusOr<Problem> given = ParseParamMapAssignments(problem_text);
  if (!given.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--problem: ", given.status().message()));
  }
  if (!dtype.empty()) (*given)["dtype"] = dtype;
  KTUNE_ASSIGN_OR_RETURN(Problem problem, def->ValidateProblem(*given));

  TuneTarget t;
  auto measurer = std::make_unique<CpuMeasurer>(&registry, std::move(options));
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
  // The task is the registry kernel's, whatever --threads narrowed: records stay comparable.
  t.task = TaskKey{found->name, found->Version(), problem, measurer->device().device_class};
  t.space = std::make_unique<SearchSpace>(std::move(space));
  t.device_description = absl::StrCat("this CPU (", cpu.model, ", ", cpu.cores, " cores)");
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  t.worker_id = absl::StrCat("embedded-cpu@", host);
  t.measurer = std::move(measurer);
  return t;
}

}  // namespace ktune::cli
