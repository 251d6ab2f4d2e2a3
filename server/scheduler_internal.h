// The scheduler's private state, shared by its three files (server/scheduler.h):
//   scheduler.cc          the job table: submit, recover, status, cancel/pause/resume, ends;
//   scheduler_workers.cc  the worker registry: register, heartbeat, leave, expiry, counts;
//   scheduler_dispatch.cc lease dispatch: leases, reports, and the strategy work around them;
//   scheduler_adopt.cc    reports of leases an earlier process of the server handed out.
// Everything here is guarded by Scheduler::mu_.
#ifndef KTUNE_SERVER_SCHEDULER_INTERNAL_H_
#define KTUNE_SERVER_SCHEDULER_INTERNAL_H_

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "measurer/measurer.h"
#include "server/scheduler.h"

namespace ktune {

struct Scheduler::TaskRun {
  // First, side by side, what the scans of every task read (a lease's, a poll's StatusOf,
  // FinishIfDone): on a job of 65,536 tasks, one cache line a task, not three.
  JobState state = JobState::kQueued;
  int need = 0;  // index in JobRun::needs of what it needs of a worker
  int64_t budget = 0;
  int64_t done = 0;       // records of this job's task stored
  int64_t in_flight = 0;  // leased, not reported
  // Strategy work for this task is queued or running on the agent threads: nothing else may call
  // `search` until it is back (AfterAgentWork), and no batch is handed out meanwhile.
  bool agent_busy = false;
  bool exhausted = false;  // the search has nothing left
  int index = 0;
  TaskKey task;
  std::string language;        // of its registry kernel; empty: not in the registry (replays)
  bool client_kernel = false;  // a kernel a client registered
  int64_t failed = 0;
  std::optional<double> best_ms;
  Configuration best_config;
  double flops = 0;
  std::string error;  // why it failed
  // Set once its strategy work first ran (for the cores of the first worker that leased), and
  // released when the task ends. Shared with the agent thread that works on it; see agent_busy.
  std::shared_ptr<TaskSearch> search;
  std::shared_ptr<const SearchSpace> space;  // set with its first search, kept when it ends
  absl::Time started, last_result;
  std::vector<Point> batch;                         // the search's current batch
  std::vector<std::optional<Observation>> results;  // per batch position
  std::vector<int> expiries;                        // per batch position: leases that expired
  std::deque<size_t> queued;                        // batch positions not leased
  // Of a recovered job, within Scheduler::kEarlierLeasesWithin of Recover: the configurations
  // (ParamMapHash) whose results this process stored, which a report of a lease from before
  // the restart must not store again (ReportEarlierLease; its own read of the records may
  // predate them). Emptied once that time has passed.
  absl::flat_hash_set<std::string> stored_since_recovery;
  // Workers that said they cannot measure the task at all (CandidateResult.task_unmeasurable:
  // no inputs file, no compiler there): not leased it again. The task fails once no other live
  // worker could take it.
  absl::flat_hash_set<std::string> unable_workers;
  // The job's initial configurations its search skipped (TaskSearch::skipped_initial), said in
  // the job's message when it ends done (a --start-from a client kernel's space rules out was
  // dropped with only a server log line).
  std::vector<std::string> skipped_initial;
  // The search's figures as of its last strategy work (read without touching `search`).
  int64_t prior_records = 0;
  bool warm_started = false;
  double agent_seconds = 0;
};

struct Scheduler::JobRun {
  Job job;
  uint64_t seed = 1;
  int batch_size = 0;  // 0: SchedulerOptions'
  int threads = 0;
  std::optional<double> agent_share;        // unset: TaskSearch's default
  std::vector<Configuration> reverify;      // JobRequest::reverify
  std::vector<Configuration> initial;       // JobRequest::initial
  std::string fingerprint_hash;             // JobRequest::fingerprint_hash
  std::string worker_id;                    // JobRequest::worker_id
  std::optional<double> max_rel_error;      // JobRequest::max_rel_error
  std::optional<absl::Time> wall_deadline;  // JobRequest::wall_seconds after submission
  bool recovered = false;  // loaded by Recover: leases of an earlier process may hold its tasks
  bool out_of_time = false;                 // past wall_deadline: nothing more is leased
  // Stride scheduling, per device class (classes serve at different rates: one pass did not
  // compare across them): on a class, the job with the lowest pass there leases next.
  std::map<std::string, double> pass;
  std::vector<TaskRun> tasks;
  // Every task before this one is final (a task never leaves a final state): a lease's walk and
  // the check whether the job is over start here, not at the first of 65,536 tasks (1.6 ms a
  // lease and 0.9 ms a report under the lock, measured). Scheduler::AllTasksFinal moves it.
  size_t first_open = 0;
  // What its tasks need of a worker, each need once (TaskRun::need): a device class, the language
  // it builds, whether it runs client kernels. Fixed when the job is loaded; WaitingReason counts
  // by it (a poll of a 65,536-task job compared strings per task).
  struct WorkerNeed {
    std::string device_class;
    std::string language;
    bool client_kernel = false;
  };
  std::vector<WorkerNeed> needs;
  // The time left is estimated from the measurements since the first lease after the job was
  // loaded or resumed: a restart's wait for workers and first batch, or a pause, is not measuring
  // (counted, the estimate after a restart was several times too high).
  bool rate_anchor_pending = true;
  // The database holds the job as started (running, or paused after). A job leased for the first
  // time is running here at once and in the database with its first report's commit: stored by
  // the lease, under the scheduler's lock, a database another process held stopped every
  // heartbeat for its busy timeout. EnsureStartedStored stores it where a later state needs it.
  bool start_stored = false;
  absl::Time rate_since;
  int64_t rate_done_at = 0;  // measurements done at rate_since
};

struct Scheduler::LeaseRun {
  struct Item {
    int64_t job_id;
    int task;
    size_t position;
  };
  std::string id;
  std::string worker;
  absl::Time expires;
  std::map<std::string, Item> items;  // by candidate id
  // A report's records are being committed (without the lock): the lease neither expires nor
  // takes another report until the commit is over.
  bool committing = false;
  // A report of it (the worker's, or the server's of a lost candidate) could not be stored: its
  // expiry is not a worker gone silent (ktune_lease_expiries_total does not count it).
  bool report_failed = false;
  // The worker's own report could not be stored (a full disk): the candidates were measured,
  // so the expiry counts against none of them (ExpireLeasesLocked).
  bool worker_report_refused = false;
};

// An expired lease as it was handed out (Scheduler::Revive): its items, and the point each
// candidate was, since a batch position is reused by the task's next batch.
struct Scheduler::ExpiredLease {
  std::string worker;
  std::map<std::string, LeaseRun::Item> items;  // by candidate id
  std::map<std::string, Point> points;          // by candidate id
  absl::Time expired_at;
};

struct Scheduler::WorkerRun {
  DeviceInfo device;
  WorkerCapabilities capabilities;
  std::string host;
  int cores = 1;
  absl::Time last_seen;
  int64_t measurements = 0;
};

namespace scheduler_internal {

std::string JobSource(int64_t job_id);
bool IsFinal(JobState s);
// Whether a worker with `can` builds and runs a kernel in `language` (empty: not a registry
// kernel), registered by a client or not. No worker measures an unknown kernel's task.
bool CanMeasure(const WorkerCapabilities& can, const std::string& language, bool client_kernel);
// The language of a recovered task whose kernel this server does not know (neither its registry,
// a client kernel, nor a recorded space it replays): no worker's.
inline constexpr char kUnknownKernelLanguagePrefix[] = "unknown-kernel:";
std::string UnknownKernelLanguage(const std::string& kernel);
// A report's results, whatever their order: a retry of it hashes alike, other results do not.
uint64_t ReportHash(const std::vector<v1::CandidateResult>& results);
// A worker's result as the measurement to store: its times finite and above zero (at most
// kMaxRepeatTimes), its error finite and >= 0, its status one a worker may give (lost only
// `by_server`), an ok result's time the median of its times, and the job's accuracy budget
// (`max_rel_error`) applied. InvalidArgument saying what is wrong, naming the candidate.
absl::StatusOr<MeasureResult> MeasurementOf(const v1::CandidateResult& r, bool by_server,
                                            std::optional<double> max_rel_error);
// A database error as ReportResults answers it: NotFound (a job, task or record another process
// deleted) becomes FailedPrecondition, since NOT_FOUND tells a worker that the server does not
// know it (it registers again).
absl::Status AsReportRefusal(const absl::Status& s);
// A report's commit (TuningDatabase::AddJobRecords) as ReportResults answers it (AsReportRefusal).
absl::StatusOr<int64_t> StoredOrRefused(absl::StatusOr<int64_t> added);
// A task's progress in one job, from the records the job stored (source "job:<id>").
absl::StatusOr<TaskStatus> CountJobRecords(TuningDatabase& db, int64_t job_id,
                                           const TaskKey& task);

}  // namespace scheduler_internal
}  // namespace ktune

#endif  // KTUNE_SERVER_SCHEDULER_INTERNAL_H_
