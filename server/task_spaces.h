// Where the server finds a task's search space: the kernel registry (the space depends on the
// measuring machine, e.g. its core count) or a recorded space the server was started with
// (`ktune serve --replay FILE`: replay workers answer measurements from the same file).
#ifndef KTUNE_SERVER_TASK_SPACES_H_
#define KTUNE_SERVER_TASK_SPACES_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "db/record.h"
#include "kernels/kernel_registry.h"
#include "kernels/search_space.h"

namespace ktune {

class TaskSpaces {
 public:
  explicit TaskSpaces(const KernelRegistry* registry) : registry_(registry) {}

  // Serves the recorded space of FILE (T4 or Kernel Tuner) for its kernel, problem and device.
  absl::Status AddRecordedFile(const std::string& file);

  // Checks a task a client submits and returns it canonical: a recorded space's task as is, or a
  // registry kernel with its problem validated (dtype filled in) and its current version.
  // InvalidArgument / NotFound saying what is wrong.
  absl::StatusOr<TaskKey> Canonical(const TaskKey& task) const;
  // Canonical, for a task to be measured (a job's, a tune's): also refused when no worker could
  // allocate its buffers (KernelDefinition::CheckBuffersFit).
  absl::StatusOr<TaskKey> CanonicalToMeasure(const TaskKey& task) const;

  // The space of a canonical task when measured with `cores` cores. `threads` > 0 tunes a
  // registry kernel with exactly that many threads (KernelDefinition::WithFixedThreads);
  // InvalidArgument when it exceeds `cores`, or for a recorded space.
  absl::StatusOr<std::shared_ptr<const SearchSpace>> Space(const TaskKey& task, int cores,
                                                           int threads = 0) const;

  // The registry kernel's untuned default configuration for the task (in Space(task, cores,
  // threads)); nullopt for recorded spaces, which have none.
  absl::StatusOr<std::optional<Configuration>> DefaultConfiguration(const TaskKey& task, int cores,
                                                                    int threads = 0) const;

  const KernelRegistry& registry() const { return *registry_; }

  // The recorded spaces served (AddRecordedFile), each with its task, in the order of their keys.
  struct Recorded {
    TaskKey task;
    std::shared_ptr<const SearchSpace> space;
  };
  std::vector<Recorded> RecordedSpaces() const;
  // Whether `task` (as Canonical gives it) is a recorded space this server replays.
  bool IsRecorded(const TaskKey& task) const { return recorded_.count(Key(task)) > 0; }

  // The kernel's FLOPs per run for a task, 0 when unknown (recorded spaces).
  double Flops(const TaskKey& task) const;

 private:
  static std::string Key(const TaskKey& task);
  // The task's registry kernel, with `threads` fixed when > 0.
  absl::StatusOr<KernelDefinition> Definition(const TaskKey& task, int cores, int threads) const;
  const KernelRegistry* registry_;
  std::map<std::string, Recorded> recorded_;  // by Key()
};

}  // namespace ktune

#endif  // KTUNE_SERVER_TASK_SPACES_H_
