// One tuning session of the embedded default (`ktune tune` without --server, `ktune bench
// kernel`): the same server as `ktune serve`, run in this process on the SQLite file, with one
// worker on a thread measuring with the target's measurer (the loop `ktune worker` runs). The
// task goes through them as a one-task job, exactly as through a remote server (cli/tune_job.h),
// so the server's search applies (server/task_search.h): the task's earlier records reused as
// prior results, the kernel's default configuration measured first (once per task), the budget
// exact, PPO's policy loaded from and saved to the database, every batch committed before the
// next is proposed.
#ifndef KTUNE_CLI_TUNE_SESSION_H_
#define KTUNE_CLI_TUNE_SESSION_H_

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "agent/search_strategy.h"
#include "cli/tune_target.h"
#include "kernels/kernel_registry.h"

namespace ktune::cli {

struct TuneSessionOptions {
  std::string strategy = DefaultStrategyName();
  int64_t budget = 64;  // new measurements, the default configuration's included
  int batch_size = 8;
  uint64_t seed = 1;
  std::optional<double> agent_share;  // unset: the server's (5%); 0: no limit
  // The accuracy budget: measurements with more error are too_inaccurate, and the summary's best
  // is the fastest within it. Unset: none.
  std::optional<double> max_rel_error;
  // Configurations measured first, after the kernel's default, unless known (--start-from).
  std::vector<Configuration> initial;
  // Called as the job progresses with (measurements so far, best time so far or 0).
  std::function<void(int64_t, double)> on_progress;
  // The target's registry, where the worker adds the client kernels the server leases to it
  // (kernels registered in the database); null: it measures built-in kernels only.
  KernelRegistry* registry = nullptr;
};

struct TuneSummary {
  std::string job_id;                       // the job in the database
  std::optional<Record> best;               // fastest ok record of the task, old or new
  std::optional<Record> default_record;     // the default configuration's record
  int64_t measurements = 0;                 // new ones
  int64_t records_stored = 0;               // the job's records in the database
  std::map<std::string, int64_t> failures;  // new failed measurements by status name
  // The same by "status: message" (why each failed), for telling the user when nothing ran.
  std::map<std::string, int64_t> failure_reasons;
  double seconds = 0;         // the task's tuning time on the server (first lease to last result)
  double agent_seconds = 0;   // of which inside the strategy
  bool warm_started = false;  // PPO started from a saved policy
  std::string checkpoint;     // the policy's key in the database
  int64_t reused = 0;         // earlier records of the task used as prior results
};

// Runs the session on the database file `db_path` (created if missing; other connections to it
// may stay open). The target's measurer is used by the worker thread meanwhile. The server and
// the worker are stopped before it returns; the summary comes from the finished job and the
// database. Errors: InvalidArgument or NotFound when the server refuses the task, the worker's
// error when measuring failed (the job is then cancelled), FailedPrecondition when the job
// failed (its message says why), Cancelled when SIGINT or SIGTERM interrupted it (the worker
// reports its lease first, then the job is cancelled; a second signal acts as usual). The
// in-process server logs events like `ktune serve`; callers that print their own progress turn
// them off (SetLogFormat(LogFormat::kOff)). After Cancelled, InterruptSignal() (cli/interrupts.h)
// names the signal: the command exits 128 + it, as shells expect. Only the session's own job runs:
// unfinished jobs in the file are left for `ktune serve`.
absl::StatusOr<TuneSummary> RunTuneSession(TuneTarget& target, const std::string& db_path,
                                           const TuneSessionOptions& options);

// GFLOP/s of a record and its percent of the machine's peak at the record's thread count; zeros
// when the target has no FLOP count or the record no time.
struct Throughput {
  double gflops = 0;
  double percent_of_peak = 0;
};
Throughput ThroughputOf(const TuneTarget& target, const Record& record);

// One line on stderr, redrawn in place on a terminal; a line per 10% otherwise.
class Progress {
 public:
  explicit Progress(int64_t total, std::string label = "");
  void Update(int64_t done, double best_ms);

 private:
  int64_t total_;
  std::string label_;
  bool tty_;
  int64_t last_decile_ = -1;
};

}  // namespace ktune::cli

#endif  // KTUNE_CLI_TUNE_SESSION_H_
