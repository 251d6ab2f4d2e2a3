// The client side of tuning one task through a server: `ktune tune --server ADDR` and the
// embedded default (cli/tune_session.h, a server in this process) both submit the task as a
// one-task job and follow it on the WatchJob stream until it ends.
#ifndef KTUNE_CLI_TUNE_JOB_H_
#define KTUNE_CLI_TUNE_JOB_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "agent/search_strategy.h"
#include "db/record.h"
#include "ktune/v1/tuning_service.grpc.pb.h"

namespace ktune::cli {

// Ends a RunTuneJob's watch from another thread, with a reason: the embedded session's worker
// when the job can no longer end on its own (its measurements cannot be stored, and a full disk
// refuses the cancel too: the watch waited for ever).
class WatchStopper {
 public:
  // RunTuneJob's call: the watch now running (null: none).
  void Watching(grpc::ClientContext* watch);
  // Cancels the watch (now, or as soon as it starts); RunTuneJob then returns `why`.
  void Stop(absl::Status why);
  absl::Status reason();

 private:
  absl::Mutex mu_;
  grpc::ClientContext* watch_ ABSL_GUARDED_BY(mu_) = nullptr;
  absl::Status why_ ABSL_GUARDED_BY(mu_);
};

struct TuneJobRequest {
  TaskKey task;  // kernel_version may be empty (the registry's); problem as given
  int64_t budget = 64;
  std::string strategy = DefaultStrategyName();
  uint64_t seed = 1;
  int batch_size = 0;                   // 0: the server's
  int threads = 0;                      // CPU kernels: exactly this many threads; 0: any
  std::optional<double> agent_share;    // unset: the server's; 0: no limit
  std::optional<double> max_rel_error;  // the accuracy budget (JobSpec.max_rel_error); unset: none
  std::vector<Configuration> initial;   // measured first unless known (JobSpec.initial_configs)
  std::string token;                    // bearer token; empty: none
  WatchStopper* stopper = nullptr;      // may be null
};

// Submits the job, then follows it: `on_submitted` (may be null) gets the job's id once it is
// queued, `on_progress` (may be null) gets (measurements done, best time so far or 0) as the
// stream reports them. Returns the job as it ended (GetJob), whatever its state. Errors: the
// submit's refusal with the server's code (InvalidArgument or NotFound for a bad task or
// option), or a broken stream.
absl::StatusOr<v1::Job> RunTuneJob(v1::TuningService::StubInterface& stub,
                                   const TuneJobRequest& request,
                                   const std::function<void(const std::string&)>& on_submitted,
                                   const std::function<void(int64_t, double)>& on_progress);

// The job `job_id` with every task listed: GetJob's pages of tasks (4,096 each), merged. The
// job's counts are those of the first page's reply.
absl::StatusOr<v1::Job> GetJobWithAllTasks(v1::TuningService::StubInterface& stub,
                                           const std::string& token, const std::string& job_id);

// The classes of `device_classes` (in order, without repeats) that no connected worker of the
// server behind `stub` serves: a job's tasks on them wait until one joins. A class that differs
// from a served one only in case is followed by " (did you mean '...'? ...)". Empty when the
// server's workers cannot be listed (the caller then has nothing to warn about).
std::vector<std::string> ClassesWithoutWorker(v1::TuningService::StubInterface& stub,
                                              const std::string& token,
                                              const std::vector<std::string>& device_classes);

}  // namespace ktune::cli

#endif  // KTUNE_CLI_TUNE_JOB_H_
