// Production telemetry into the server (ReportTelemetry): reports are validated and stored apart
// from records, run through drift detection (drift/drift_monitor.h), and what is flagged is dealt
// with by the retune policy: the one of the newest job with the task, when its spec sets one
// (JobSpec.retune), else the server's (serve --retune):
//   off      flags are listed, nothing else;
//   suggest  flags name the command that retunes as `act` would, `ktune drift retune ID` (the
//            default);
//   act      a bounded retuning job is queued: `budget` measurements, at most `max_jobs` queued or
//            running at once (further flags are suggested); only while a worker that can measure
//            it is connected (of the new fingerprint for a new environment: a job goes to the
//            class's workers; of the class otherwise), or the job would hold a slot waiting. For a
//            regression the task's records from before the flag are marked stale
//            (TuningDatabase::MarkStale: they stay stored and answer, said to be stale, only until
//            a newer record of the task exists), and the old best configurations are re-measured in
//            the job's first batch, alongside the new candidates, so the comparison is fair. The
//            job warm-starts from the kernel's saved policy like any other.
#ifndef KTUNE_SERVER_TELEMETRY_INTAKE_H_
#define KTUNE_SERVER_TELEMETRY_INTAKE_H_

#include <array>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "db/tuning_database.h"
#include "drift/drift_monitor.h"
#include "server/best_cache.h"
#include "server/scheduler.h"
#include "server/task_spaces.h"

namespace ktune {

enum class RetuneMode { kOff, kSuggest, kAct };
// "off", "suggest", "act"; InvalidArgument otherwise.
absl::StatusOr<RetuneMode> ParseRetuneMode(const std::string& name);

struct RetunePolicy {
  RetuneMode mode = RetuneMode::kSuggest;
  int64_t budget = 100;   // measurements of one retuning job
  int max_jobs = 2;       // retuning jobs queued or running at once
  int reverify_top = 4;   // old best configurations re-measured first after a regression
  std::string strategy = DefaultStrategyName();
  int priority = 50;
  // The retuning job's agent_share (JobRequest::agent_share); unset: the scheduler's default.
  std::optional<double> agent_share;
};

class TelemetryIntake {
 public:
  // `store_flags`: this intake keeps the database's flags (the server that holds the database;
  // `ktune tune`'s embedded server beside it only reads them, or it would write over the
  // server's with its own older copy).
  TelemetryIntake(TuningDatabase* db, Scheduler* scheduler, BestCache* best,
                  const TaskSpaces* spaces, RetunePolicy policy,
                  DriftMonitorOptions monitor_options = {}, bool store_flags = true);

  // A restart: lists the flags stored before it, with what was done about them, and runs the
  // stored telemetry through drift detection again (DriftMonitor::BeginRecovery), acting on
  // nothing. Flags and their actions are stored in the database whenever flags are raised.
  // Stored flags that cannot be read (another version's, a damaged blob) are logged and
  // replaced by those the replay raises: they must not keep the server from starting.
  absl::Status Recover();
  struct ReportOutcome {
    std::vector<DriftFlag> raised;  // the flags the reports raised, each with its action taken
    int64_t duplicates = 0;  // reports sent before, as DriftMonitor::IsDuplicate: not stored again
    int64_t late = 0;        // stored, but older than their configuration's newest judged window
  };
  // Stores `reports` (all or none, but for duplicates; received_at_us set here) and runs them
  // through drift detection.
  absl::StatusOr<ReportOutcome> Report(std::vector<TelemetryReport> reports);
  // An operator's go-ahead for flag `flag_id` (ktune drift retune): the retuning job `act` would
  // have queued, whatever the policy and the retuning jobs running. The flag's action says what
  // was done. NotFound for no such flag; FailedPrecondition when no job can retune it (a new
  // environment without a worker there, a kernel known from records only) or a job of it still
  // runs.
  absl::StatusOr<DriftFlag> Retune(int64_t flag_id);

  std::vector<DriftFlag> Flags() const { return monitor_.Flags(); }
  std::array<int64_t, kDriftKindCount> FlagCounts() const { return monitor_.CountsByKind(); }
  int64_t retune_jobs_started() const;

 private:
  // Applies the policy to a new flag; returns the action's description (and sets *job_id).
  std::string Act(const DriftFlag& flag, int64_t* job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues the retuning job of `flag` (act's): "retuning: job N" and *job_id, or why not and 0.
  std::string StartRetune(const DriftFlag& flag, int64_t* job_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets retuning jobs that ended; the rest count against max_jobs.
  void DropEndedRetuneJobs() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string Suggestion(const DriftFlag& flag) const;
  // Whether a connected worker of the flag's class has its device fingerprint (new_environment),
  // or, for any other kind, is of the flag's class.
  bool WorkerFor(const DriftFlag& flag) const;
  // Stores every flag with its action (a database checkpoint), for the next restart.
  absl::Status SaveFlags() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The policy for a task: its newest job's JobSpec.retune when that spec sets one, else the
  // server's (the server's own jobs, retuning and tune_if_missing, aside).
  RetuneMode ModeFor(const TaskKey& task) const;
  // Jobs ModeFor reads whole that do not list their kernels (an older ktune's): the newest ones.
  static constexpr int kMaxJobsReadWhole = 64;

  TuningDatabase* db_;
  Scheduler* scheduler_;
  BestCache* best_;
  const TaskSpaces* spaces_;
  RetunePolicy policy_;
  bool store_flags_;
  DriftMonitor monitor_;
  DatabaseKnowledge knowledge_;
  mutable absl::Mutex mu_;  // serialises Report (store, observe, act)
  std::set<int64_t> retune_jobs_ ABSL_GUARDED_BY(mu_);
  int64_t retune_jobs_started_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace ktune

#endif  // KTUNE_SERVER_TELEMETRY_INTAKE_H_
