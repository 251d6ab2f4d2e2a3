#include "server/task_spaces.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "db/interchange/record_files.h"

namespace ktune {

std::string TaskSpaces::Key(const TaskKey& task) {
  return absl::StrCat(task.kernel, "\n", CanonicalJson(task.problem), "\n", task.device_class);
}

absl::Status TaskSpaces::AddRecordedFile(const std::string& file) {
  KTUNE_ASSIGN_OR_RETURN(RecordedSpace recorded, LoadRecordedSpace(file));
  const Record& first = recorded.records.front();
  TaskKey task{first.kernel, first.kernel_version, first.problem, first.device.device_class};
  recorded_[Key(task)] = {task, std::make_shared<const SearchSpace>(std::move(recorded.space))};
  return absl::OkStatus();
}

std::vector<TaskSpaces::Recorded> TaskSpaces::RecordedSpaces() const {
  std::vector<Recorded> out;
  for (const auto& [key, recorded] : recorded_) out.push_back(recorded);
  return out;
}

absl::StatusOr<TaskKey> TaskSpaces::Canonical(const TaskKey& task) const {
  if (task.device_class.empty()) return absl::InvalidArgumentError("a task needs a device class");
  if (recorded_.count(Key(task))) return task;
  if (registry_->Find(task.kernel) == nullptr) {
    // A recorded space's kernel, asked for another class or problem than it was recorded for:
    // "unknown kernel" said the kernel was not there.
    std::vector<std::string> recorded;
    for (const auto& [key, r] : recorded_) {
      if (r.task.kernel != task.kernel) continue;
      recorded.push_back(absl::StrCat("device class '", r.task.device_class, "' with problem ",
                                      CanonicalJson(r.task.problem)));
    }
    if (!recorded.empty()) {
      return absl::NotFoundError(
          absl::StrCat("kernel '", task.kernel, "' is a recorded space this server replays, for ",
                       absl::StrJoin(recorded, "; "), ", not for device class '", task.device_class,
                       "' with problem ", CanonicalJson(task.problem)));
    }
  }
  absl::StatusOr<const KernelDefinition*> known = registry_->Get(task.kernel);
  if (!known.ok() && !recorded_.empty()) {
    // The registry lists its own kernels; the recorded spaces' are this server's too.
    std::set<std::string> replayed;
    for (const auto& [key, r] : recorded_) replayed.insert(r.task.kernel);
    return absl::Status(known.status().code(), absl::StrCat(known.status().message(),
                                                            "; recorded spaces this server "
                                                            "replays: ",
                                                            absl::StrJoin(replayed, ", ")));
  }
  KTUNE_ASSIGN_OR_RETURN(const KernelDefinition* def, std::move(known));
  // A task no worker could ever measure would wait for ever: CPU workers' classes are "cpu:MODEL"
  // and measure no CUDA kernel. (A C++ kernel may have other classes: bridges such as Kernel
  // Tuner's measure client kernels under their own.)
  const bool cpu_class = absl::StartsWith(task.device_class, "cpu:");
  if (task.device_class == "cpu") {
    return absl::InvalidArgumentError(
        "device class 'cpu' names no worker: CPU workers register as cpu:MODEL (ktune workers "
        "lists them; ktune tune --device cpu means this machine's)");
  }
  if (def->language == "cuda" && cpu_class) {
    return absl::InvalidArgumentError(absl::StrCat("kernel ", task.kernel,
                                                   " is a CUDA kernel, and ", task.device_class,
                                                   " is a CPU: give a GPU's device class"));
  }
  if (!task.kernel_version.empty() && task.kernel_version != def->Version()) {
    return absl::NotFoundError(absl::StrCat("kernel ", task.kernel, " has version ", def->Version(),
                                            ", not ", task.kernel_version));
  }
  TaskKey out = task;
  out.kernel_version = def->Version();
  KTUNE_ASSIGN_OR_RETURN(out.problem, def->ValidateProblem(task.problem));
  return out;
}

absl::StatusOr<TaskKey> TaskSpaces::CanonicalToMeasure(const TaskKey& task) const {
  KTUNE_ASSIGN_OR_RETURN(TaskKey out, Canonical(task));
  if (const KernelDefinition* def = registry_->Find(out.kernel); def != nullptr) {
    KTUNE_RETURN_IF_ERROR(def->CheckBuffersFit(out.problem));
  }
  return out;
}

absl::StatusOr<KernelDefinition> TaskSpaces::Definition(const TaskKey& task, int cores,
                                                        int threads) const {
  KTUNE_ASSIGN_OR_RETURN(const KernelDefinition* def, registry_->Get(task.kernel));
  if (threads <= 0) return *def;
  if (threads > cores) {
    return absl::InvalidArgumentError(absl::StrCat("threads ", threads, " is more than the ", cores,
                                                   " cores of the measuring worker"));
  }
  return def->WithFixedThreads(threads);
}

absl::StatusOr<std::shared_ptr<const SearchSpace>> TaskSpaces::Space(const TaskKey& task, int cores,
                                                                     int threads) const {
  if (auto it = recorded_.find(Key(task)); it != recorded_.end()) {
    if (threads > 0) {
      return absl::InvalidArgumentError("a recorded space has no threads parameter to fix");
    }
    return it->second.space;
  }
  KTUNE_ASSIGN_OR_RETURN(KernelDefinition def, Definition(task, cores, threads));
  KTUNE_ASSIGN_OR_RETURN(SearchSpace space, def.Space(task.problem, MachineVariables{cores}));
  return std::make_shared<const SearchSpace>(std::move(space));
}

absl::StatusOr<std::optional<Configuration>> TaskSpaces::DefaultConfiguration(const TaskKey& task,
                                                                              int cores,
                                                                              int threads) const {
  if (recorded_.count(Key(task))) return std::nullopt;
  KTUNE_ASSIGN_OR_RETURN(KernelDefinition def, Definition(task, cores, threads));
  KTUNE_ASSIGN_OR_RETURN(Configuration config,
                         def.DefaultConfiguration(task.problem, MachineVariables{cores}));
  return config;
}

double TaskSpaces::Flops(const TaskKey& task) const {
  const KernelDefinition* def = registry_->Find(task.kernel);
  if (def == nullptr) return 0;
  absl::StatusOr<double> flops = def->EvaluateForProblem(def->flops, task.problem);
  return flops.ok() ? *flops : 0;
}

}  // namespace ktune
