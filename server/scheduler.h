// The server's core, without gRPC: jobs -> tasks -> candidate batches -> leases -> records.
//
// Each task of a job is driven by its own TaskSearch (server/task_search.h: prior records, the
// kernel's default first, the strategy and its checkpoint), set up when a worker of the task's
// device class first leases. A search proposes a batch; its candidates wait in the task's queue
// until a worker of the class leases them; a report commits their records to the database
// (before it is acknowledged) and, once the whole batch is in, the search gets its results and
// the next lease takes the next batch. Jobs share workers by stride scheduling on priority:
// higher priority leases more often, and every job with work leases eventually.
//
// Reliability: a lease not reported or heartbeated within the lease timeout expires and its
// candidates go back to the front of their queue. Its worker may still be alive (a network
// partition, a stopped process): its next heartbeat or storable report gives it the lease back,
// as long as every candidate of it still waits unmeasured in its queue (Revive, which says the
// rest), so its worker's measurements are kept; otherwise a report on an expired or unknown lease
// is refused (FailedPrecondition) and stores nothing; a report sent again after its reply was lost
// (same worker, same candidates, the lease ended by the first) is answered as the first was.
// Records carry source "job:<id>", so after a restart (Recover) each task's progress is recounted
// from the database: nothing acknowledged is lost and nothing is measured twice beyond its budget.
//
// Thread-safe: every method takes the scheduler's lock, briefly. Strategy work (a task's
// initialisation, learning, proposals), the commit of reported records and every other write
// (a job's or task's new state: queued under the lock, stored in order by a writer thread,
// RequestFlush) run without it, so no lease, report, heartbeat or query waits behind the agent
// or the database: the work runs on the agent
// threads (SchedulerOptions::agent_threads), started when a worker needs a batch of a task's
// class (a few tasks at a time: SchedulerOptions::max_starting_searches) and again as soon as a
// report completes a batch, so the next batch is ready, or being prepared, while workers measure. A
// lease finds nothing of a task whose batch is being prepared; it says to retry soon
// (LeaseGrant::retry_after).
//
// The code is in three files along its three parts (scheduler_internal.h).
#ifndef KTUNE_SERVER_SCHEDULER_H_
#define KTUNE_SERVER_SCHEDULER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/search_strategy.h"
#include "db/tuning_database.h"
#include "ktune/v1/worker_service.pb.h"
#include "server/task_search.h"
#include "server/task_spaces.h"
#include "server/thread_pool.h"

namespace ktune {

struct SchedulerOptions {
  absl::Duration lease_timeout = absl::Seconds(30);
  absl::Duration heartbeat_interval = absl::Seconds(5);
  int batch_size = 8;  // of jobs that do not choose theirs
  // A task's learned agent state (PPO's policy) is saved to the database this often while it
  // runs, and when it ends: a server killed mid-task loses at most this much learning.
  absl::Duration checkpoint_every = absl::Seconds(30);
  std::function<absl::Time()> now = [] { return absl::Now(); };
  // Called with the records of each report once they are committed (to refresh caches, count
  // measurements) and the seconds the commit took.
  std::function<void(const std::vector<Record>&, double)> on_stored;
  // Called with the error when a report's records could not be committed (the report fails; the
  // lease stands).
  std::function<void(const absl::Status&)> on_not_stored;
  // Called when this process ends a job ("done", "failed", "cancelled") with how long it lived
  // since it was submitted; under the scheduler's lock or not: keep it cheap and thread-safe (a
  // histogram's Observe).
  std::function<void(const std::string&, absl::Duration)> on_job_ended;
  // Called after each piece of strategy work with its kind ("start": a task's search created and
  // its first batch proposed; "batch": a batch's results learned and the next one proposed) and
  // how long it ran, on the agent thread, without the scheduler's lock: keep it cheap.
  std::function<void(const std::string&, absl::Duration)> on_agent_work;
  // Threads that run strategy work (at nice 10: RPCs go first); 0: on the thread of the call that
  // needs it (Lease or Report), still without the scheduler's lock (deterministic, for tests).
  int agent_threads = 2;
  // Job and task states are stored by a writer thread (1), or on the thread of the call that
  // changed them (0: deterministic, for tests; a call then waits for the database); -1: a writer
  // thread when agent_threads > 0. A server always has one (TuningServer).
  int writer_threads = -1;
  // Makes a job's strategy by name; unset: MakeStrategy (tests inject strategies here).
  StrategyFactory make_strategy;
  // Tasks of unfinished jobs held at once (each holds its search, space and queue in memory):
  // Submit refuses a job past it, RESOURCE_EXHAUSTED. Jobs recovered after a restart are not
  // refused.
  int64_t max_active_tasks = int64_t{1} << 20;
  // Tasks of one job and device class whose search is being created at once (this, or twice
  // agent_threads if that is more). A lease that finds
  // no batch to hand out starts the searches of the next tasks, up to this many; a task's search
  // lives until the task ends. (The first lease of a job started every task's search: for 8,192
  // tasks a minute of strategy work queued ahead of any second batch, and all of them in memory
  // until the job ended.)
  int max_starting_searches = 4;
  // Set by a server that lives inside one `ktune tune` session (the embedded default): its jobs
  // are that session's ("HOST:PID", stored with the job), which no other server resumes while
  // the process lives (both ran the job: measured twice, past its budget), and which ends
  // cancelled once a server or session on that host finds the process gone (a killed `tune`
  // left it running in the file for ever, for the next `ktune serve` to resume).
  std::string session;
};

// "HOST:PID" of this process: SchedulerOptions::session of a session's embedded server.
std::string ThisProcessSession();

// What a worker can measure besides its device class. Its leases hold only candidates of
// kernels it can build and run.
struct WorkerCapabilities {
  std::vector<std::string> languages;  // of registry kernels ("cpp", "cuda"); empty: any
  bool client_kernels = true;          // takes kernels that clients registered
};

// The largest JobRequest::wall_seconds: a year.
inline constexpr int64_t kMaxJobWallSeconds = 365 * 24 * 3600;
// The most tasks one job may have (kernels x problems x device classes).
inline constexpr int64_t kMaxJobTasks = 65'536;

// A canonical task as one string (kernel, version, canonical problem, device class): two tasks
// are the same task exactly when these are equal.
std::string TaskIdentity(const TaskKey& task);

// A job as submitted: canonical tasks (TaskSpaces::Canonical), each with the same budget.
struct JobRequest {
  std::string name;
  std::vector<TaskKey> tasks;
  int64_t budget = 0;  // measurements per task
  std::string strategy = DefaultStrategyName();
  int priority = 0;  // 0..100
  uint64_t seed = 1;  // 0: drawn at submission (and stored with the job)
  int batch_size = 0;  // candidates a strategy proposes at a time; 0: SchedulerOptions' (1..1024)
  int threads = 0;     // registry CPU kernels: exactly this many threads; 0: any up to the cores
  // The whole job's wall time, counted from submission (pauses and server restarts included):
  // when it runs out, no candidate is leased any more, and the job ends done once its leased
  // ones are reported or expire. 0: no limit; at most a year.
  int64_t wall_seconds = 0;
  // The strategy's time as a share of its batches' measuring time (TaskSearch::Options); unset:
  // the default; 0: no limit.
  std::optional<double> agent_share;
  // Configurations each task measures again first (TaskSearch::Options::reverify): a retuning
  // job re-verifies the old best configurations in the same runs as the new candidates.
  std::vector<Configuration> reverify;
  // Configurations each task measures first unless known (JobSpec.initial_configs,
  // TaskSearch::Options::initial).
  std::vector<Configuration> initial;
  // Only workers whose device fingerprint hashes to this (DeviceInfo::FingerprintHash) measure
  // the job: a new environment's retuning (a driver update on some of a class's machines) is
  // measured where the new fingerprint is, not on the class's other workers. Empty: any worker
  // of the task's class.
  std::string fingerprint_hash;
  // Only this worker measures the job, which ends cancelled when the worker leaves or is lost
  // (and at Recover: worker ids do not survive a restart). Empty: any worker. See JobSpec.
  std::string worker_id;
  // The accuracy budget (max relative error) of every task: an ok result whose measured error is
  // above it, or unknown, is stored as too_inaccurate (a failure for the search). Unset: none.
  std::optional<double> max_rel_error;
  // As submitted, for the record (a JSON object); Submit adds seed, batch_size, threads and
  // agent_share, which Recover reads back.
  std::string spec_json;
};

// Progress of a task as clients see it.
struct TaskStatus {
  TaskKey task;
  JobState state = JobState::kQueued;
  int64_t budget = 0;
  int64_t done = 0;  // records stored, failures included
  int64_t failed = 0;
  std::optional<double> best_ms;
  Configuration best_config;
  double flops = 0;  // per run; 0 when unknown
  // The run on this server process (TaskSearch); zeros once the job is only in the database.
  int64_t prior_records = 0;
  bool warm_started = false;
  double agent_seconds = 0;
  double tuning_seconds = 0;  // from the task's first lease to its last result
};

struct JobStatus {
  Job job;  // as stored (tasks' progress too), or without its task list where a call says so
  std::vector<TaskStatus> tasks;
  int64_t task_count = 0;  // the job's tasks, listed here or not
  int64_t done = 0, total = 0;
  double estimated_seconds_left = 0;  // 0 when unknown
  std::string waiting;                // Scheduler::WaitingReason while it is queued or running
};

// Which of a job's tasks a JobStatus lists: `count` of them from `first`, in the job's order.
struct TaskPage {
  size_t first = 0;
  size_t count = std::numeric_limits<size_t>::max();
  bool Holds(size_t i) const { return i >= first && i - first < count; }
};

struct LeaseGrant {
  std::string lease_id;  // empty when nothing is queued for the worker's device class
  std::vector<v1::Candidate> candidates;
  absl::Duration expires_in;
  // With nothing granted: whether a batch for this worker is being prepared, and when to ask
  // again (soon, when one is).
  bool preparing = false;
  absl::Duration retry_after = absl::Milliseconds(200);
};

class Scheduler {
 public:
  Scheduler(TuningDatabase* db, const TaskSpaces* spaces, SchedulerOptions options = {});
  ~Scheduler();

  // Loads the unfinished jobs from the database (call once, at start), but for those of a
  // `ktune tune` session (SchedulerOptions::session) other than this scheduler's: a session
  // still alive keeps its job; one gone from this host has its job ended (EndAbandonedSessions).
  absl::Status Recover();
  // Ends, cancelled and saying why, the unfinished jobs of `ktune tune` sessions of this host
  // whose process is gone. (A session's embedded server calls it at start; Recover does too.)
  absl::Status EndAbandonedSessions();

  absl::StatusOr<int64_t> Submit(const JobRequest& request);
  // An active job, one of the last kKeepFinished that ended on this server process (with their
  // run statistics), or else one from the database. Its tasks are those of `page`; the job's
  // counts cover all of them. A job from the database counts the records of the page's tasks,
  // and takes the others' from the progress they stored (as ListJobs does).
  // `with_job_tasks` false: JobStatus::job without its task list (a copy of every task's key,
  // which a page of one task does not need). `done_by_task` (may be null) gets every task's
  // measurements done, in the job's order, listed or not.
  absl::StatusOr<JobStatus> GetJob(int64_t id, TaskPage page = {}, bool with_job_tasks = true,
                                   std::vector<int64_t>* done_by_task = nullptr);
  // What a watcher polls (WatchJob): GetJob without any task or the job's task list, and each
  // task's count in `done_by_task`. On a job of 65,536 tasks GetJob of every task took 120 ms
  // under the scheduler's lock, four times a second per watcher.
  absl::StatusOr<JobStatus> GetJobProgress(int64_t id, std::vector<int64_t>* done_by_task);
  // Every job, newest first, as GetJob gives it, but without tasks (task_count says how many; an
  // active job's task list is left out of JobStatus::job too), and a job read from the database
  // has its done count from the progress its tasks stored (GetJob counts its records).
  absl::StatusOr<std::vector<JobStatus>> ListJobs();
  // Cancel drops queued candidates (leased ones are still recorded when reported); pause stops
  // leasing; resume continues where the job stopped. Each takes effect at once and returns once
  // the new state is stored. When the database does not take it within kStoreWait (busy past its
  // timeout, full, slow), the change still holds on this server, it is stored as soon as the
  // database takes writes (retried at every tick: ExpireLeases), and the call returns UNAVAILABLE
  // saying so (calling again checks); a restart before then loses it.
  absl::StatusOr<JobStatus> Cancel(int64_t id);
  absl::StatusOr<JobStatus> Pause(int64_t id);
  absl::StatusOr<JobStatus> Resume(int64_t id);

  // Workers. `cores` sizes registry kernels' spaces for the worker's class.
  // Workers the scheduler lists (lost ones included, until they are forgotten).
  int WorkerCount();
  std::string RegisterWorker(const DeviceInfo& device, const std::string& host, int cores,
                             WorkerCapabilities capabilities = {});
  // NotFound for an unknown worker (the server restarted: register again).
  absl::StatusOr<LeaseGrant> Lease(const std::string& worker_id, int max_candidates);
  // Stores the results of a lease and returns how many records were added.
  absl::StatusOr<int64_t> Report(const std::string& worker_id, const std::string& lease_id,
                                 const std::vector<v1::CandidateResult>& results) {
    return ReportAs(worker_id, lease_id, results, /*by_server=*/false);
  }
  // A report of lease `lease_id` that an earlier process of the server handed out, sent by a
  // worker that registered again after the restart (WorkerService.ReportResults with `leased`,
  // the lease's candidates as the worker got them). Returns how many records were added.
  // - The whole report is refused, storing nothing: InvalidArgument when it is malformed (a
  //   result of no leased candidate, a candidate twice, a time that is not one); NotFound when
  //   the worker is not registered; FailedPrecondition past kEarlierLeasesWithin of Recover (or
  //   without one); Unavailable, to be sent again, while the same report is being stored or a
  //   task's search is preparing a batch.
  // - Each result is stored, as a report of this process's lease would store it, when its job
  //   was recovered by this process and is queued, running or paused within its wall time,
  //   bound to no worker and for the worker's fingerprint if it names one; its task is open, of
  //   the worker's class and language; its configuration is a valid point of the task's space
  //   here (or, before the task's first lease here, of the space on the worker); the task's
  //   budget has room for it beside what its batch holds; and the job has no record of the
  //   configuration (the earlier process stored the report and died before its reply, or this
  //   process measured it again: TaskRun::stored_since_recovery), nor has the task's batch here
  //   leased it. Other results are left out.
  // - A stored result whose point waits unleased in the task's batch answers it there; the
  //   others take their share of the budget of the task's search (TaskSearch::Spend), which
  //   answers its later points from them, or, for a search not started yet, are among the
  //   records it starts from. No search starts while they are committed.
  absl::StatusOr<int64_t> ReportEarlierLease(const std::string& worker_id,
                                             const std::string& lease_id,
                                             const std::vector<v1::Candidate>& leased,
                                             const std::vector<v1::CandidateResult>& results)
      ABSL_LOCKS_EXCLUDED(mu_);
  // A batch measured when the server restarted (minutes of GPU builds, for a slow one) is
  // reported within this of the restart.
  static constexpr absl::Duration kEarlierLeasesWithin = absl::Hours(1);
  // Extends the worker's leases; returns the ids of `lease_ids` that are no longer valid. An
  // expired lease whose candidates nobody has taken since is revived and extended (Revive).
  absl::StatusOr<std::vector<std::string>> Heartbeat(const std::string& worker_id,
                                                     const std::vector<std::string>& lease_ids);
  absl::Status Leave(const std::string& worker_id);
  // Takes back expired leases; the server calls it periodically. A candidate whose lease expired
  // kMaxLeaseExpiries times (its worker stopped answering each time: a candidate that hangs or
  // crashes its worker) is stored as lost, a failure, and not handed out again: it was re-leased
  // for ever, its job never ending. After its second expiry a candidate is leased alone, so that
  // the others of a lease its worker died on are measured, not given up with it.
  void ExpireLeases() ABSL_LOCKS_EXCLUDED(mu_);
  static constexpr int kMaxLeaseExpiries = 3;
  // An expired lease is kept this many lease timeouts for its worker to come back to (Revive).
  static constexpr int kReviveWithinLeaseTimeouts = 10;
  // The server itself stood still for `stalled` (a stopped process, a paused VM, a machine that
  // slept): every lease's expiry and every worker's last heartbeat move that much later, so that
  // the heartbeats workers sent meanwhile, queued and not yet read, are not too late. The server
  // calls it before ExpireLeases when a tick comes far past its time: without it, the first tick
  // after the stall took back every lease of the fleet and the work was measured twice.
  void ExtendLeases(absl::Duration stalled) ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until no strategy work is queued or running (tests; an orderly stop).
  void WaitForAgents() { agents_.WaitIdle(); }

  const SchedulerOptions& options() const { return options_; }

  // The workers registered since the server started, by id.
  struct WorkerStatus {
    std::string id;
    DeviceInfo device;
    std::string host;
    bool measuring = false;  // holds a lease
    // Silent (no lease, heartbeat or report) for longer than the lease timeout: dead, or cut
    // off. Workers silent for kForgetLostWorkersAfter are dropped from the list.
    bool lost = false;
    int active_leases = 0;
    absl::Time last_seen;
    int64_t measurements = 0;  // results it reported that were stored
  };
  std::vector<WorkerStatus> ListWorkers();

  // Queue, lease, worker and job counts for metrics: workers by (device class, "measuring" |
  // "idle" | "lost"), jobs by state name.
  struct Counts {
    int64_t queued_candidates = 0;  // of jobs that may lease (a paused job's wait for it)
    // Tasks of queued or running jobs whose device class no worker has (none registered, or
    // all lost): they wait, and no other count shows it (their searches start at a lease).
    std::map<std::string, int64_t> tasks_without_worker;
    int64_t active_leases = 0;
    std::map<std::pair<std::string, std::string>, int64_t> workers;
    std::map<std::string, int64_t> jobs;        // active jobs (queued, running, paused) by state
    std::map<std::string, int64_t> jobs_ended;  // jobs this process ended, by final state
    // Leases this process took back because their worker stopped answering (a counter).
    int64_t leases_expired = 0;
    int64_t leases_revived = 0;  // expired leases given back to their worker (Revive)
    // Reports of leases an earlier process handed out that were stored (ReportEarlierLease).
    int64_t earlier_leases_stored = 0;
    // Job and task states changed in memory, not stored yet (the database refuses writes).
    int64_t job_writes_pending = 0;
    // Strategy work waiting for an agent thread (SchedulerOptions::agent_threads).
    int64_t agent_work_queued = 0;
  };
  Counts CountNow();

 private:
  struct TaskRun;
  struct JobRun;
  // The candidate of an expired lease (of one: see ExpireLeasesLocked) the server reports lost.
  struct LostCandidate {
    std::string worker, lease_id;
    v1::CandidateResult result;
  };
  // A job's new state (SetJobState) or its tasks' progress (UpdateJobTasks), to be stored.
  struct JobWrite {
    int64_t job_id = 0;
    uint64_t seq = 0;               // 1, 2, ... in the order they were queued
    std::optional<JobState> state;  // SetJobState(job_id, *state, message) when set
    std::string message;
    std::vector<JobTaskProgress> tasks;  // else UpdateJobTasks(job_id, tasks)
  };
  // Queues `job`'s new state, which the scheduler's memory holds from now on.
  void QueueJobState(const JobRun& job, JobState state, std::string message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void QueueTaskProgress(const JobRun& job, std::vector<JobTaskProgress> tasks)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Who flushes, and so how: kWait, the destructor: waits for a flush under way, then flushes;
  // kRetry, the writer thread (RequestFlush): returns when another thread flushes (which looks at
  // the queue again before it stops).
  enum class FlushMode { kWait, kRetry };
  // Has the queued writes stored by the writer thread (writer_), the caller going on at once;
  // without one (SchedulerOptions::writer_threads), stores them now, on the caller's thread
  // (deterministic: tests). `retry` false (a lease, report, leave, strategy work): not while the
  // last flush failed (the tick's request retries).
  void RequestFlush(bool retry) ABSL_LOCKS_EXCLUDED(mu_, flush_mu_);
  // Stores the queued job writes, in order, without the scheduler's lock. A write the database
  // refuses for good (the job ended or deleted by another process, or an error that no retry
  // mends) is dropped, with a log event; the first that fails for a while (busy, a full disk, an
  // I/O error, a read-only file) and those after it stay queued, for the next flush, and its error
  // is returned.
  absl::Status FlushJobWrites(FlushMode mode) ABSL_LOCKS_EXCLUDED(mu_, flush_mu_);
  // `changed` (a cancel, pause or resume, made in memory) once the writes queued so far are stored
  // (at once when its job has none pending: it was so already); UNAVAILABLE, saying the change
  // holds on this server, when they are not stored within kStoreWait (the database refuses, or is
  // slow); the database's error when it refused the job's write for good.
  // `first_seq`: next_write_seq_ before the change was made (an error of an earlier write of the
  // job is not this call's).
  absl::StatusOr<JobStatus> AfterStoring(absl::StatusOr<JobStatus> changed, uint64_t first_seq)
      ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t NextWriteSeq() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return next_write_seq_;
  }
  static constexpr absl::Duration kStoreWait = absl::Seconds(3);  // well inside a call's deadline
  // Whether writes of job `id` are queued or being stored.
  bool WritesPending(int64_t id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return pending_writes_.count(id) > 0;
  }
  absl::StatusOr<JobStatus> CancelNow(int64_t id) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<JobStatus> PauseNow(int64_t id) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<JobStatus> ResumeNow(int64_t id) ABSL_LOCKS_EXCLUDED(mu_);
  // ExpireLeases under the lock: expired leases end, but a lease of one candidate given up on
  // stays, for the server to report (`lost`).
  void ExpireLeasesLocked(std::vector<LostCandidate>* lost) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether a lease holds candidates of `job` (their reports are still recorded).
  static bool Leased(const JobRun& job);
  // Report, and by the server itself (`by_server`) the lost candidates of expired leases: only
  // the server may give the lost status, and its report is not the worker's sign of life.
  absl::StatusOr<int64_t> ReportAs(const std::string& worker_id, const std::string& lease_id,
                                   const std::vector<v1::CandidateResult>& results, bool by_server)
      ABSL_LOCKS_EXCLUDED(mu_);
  struct LeaseRun;
  struct WorkerRun;
  struct ExpiredLease;

  // Gives `worker_id` back its expired lease `lease_id` when the worker is alive after all (it
  // heartbeats or reports it) and every candidate of the lease still waits in its task's queue,
  // unmeasured, the task open and the job running or paused: no one else measures it, and the
  // worker's results need not be measured again. The revived candidates' expiries are taken back
  // (the worker did not die on them), so a worker cut off by a partition does not get its
  // candidates given up on as lost. False, changing nothing, otherwise.
  bool Revive(const std::string& worker_id, const std::string& lease_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether Revive would give the lease back now (the worker still registered, the lease expired
  // within kReviveWithinLeaseTimeouts, the job running or paused, within its wall time).
  bool CanRevive(const std::string& worker_id, const std::string& lease_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  static constexpr size_t kKeepFinished = 64;
  static constexpr absl::Duration kForgetLostWorkersAfter = absl::Hours(1);

  // Strategy work prepared under mu_ and run without it (RunAgentWork); it ends by taking mu_
  // and calling AfterAgentWork.
  using AgentWork = std::function<void()>;
  absl::StatusOr<LeaseGrant> LeaseLocked(const std::string& worker_id, int max_candidates,
                                         std::vector<AgentWork>* work) ABSL_LOCKS_EXCLUDED(mu_);
  // Creates the task's search for workers with `cores` cores, and takes its first batch.
  void QueueInit(JobRun& job, TaskRun& task, int cores, std::vector<AgentWork>* work)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives the search the results of its complete batch, if any, and takes its next batch.
  void QueueNextBatch(JobRun& job, TaskRun& task, std::optional<std::vector<Observation>> done,
                      std::vector<AgentWork>* work) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Installs what the work produced: the new search (when it created one) and the next batch,
  // or fails the task with the work's error. Ignored when the job has left memory.
  void AfterAgentWork(int64_t job_id, int task, std::shared_ptr<TaskSearch> created,
                      absl::StatusOr<std::vector<Point>> batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunAgentWork(std::vector<AgentWork> work) ABSL_LOCKS_EXCLUDED(mu_);
  // Keeps a stored report's answer under `key` (a lease id) for its worker's retries
  // (reported_leases_), pruning the oldest.
  void RememberReport(const std::string& key, const std::string& worker, uint64_t report,
                      int64_t stored) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether a live worker of `t`'s class, other than those that could not measure it
  // (TaskRun::unable_workers), could take its candidates.
  bool AnotherWorkerCouldMeasure(const JobRun& job, const TaskRun& t) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts a stored result of `t` (not its batch's: the caller places it): done, failed, and
  // the best so far.
  void CountResult(TaskRun& t, const Observation& obs, const Configuration& config)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Notes `config`'s result stored for `t` of a recovered job (TaskRun::stored_since_recovery).
  void NoteStoredSinceRecovery(const JobRun& job, TaskRun& t, const Configuration& config)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands `t`'s batch to its search (strategy work) when every point of it has its result.
  void QueueIfBatchComplete(JobRun& job, TaskRun& t, std::vector<AgentWork>* work)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ReportEarlierLease's parts (scheduler_adopt.cc).
  struct EarlierResult;
  absl::Status CheckEarlierLease(const std::string& worker_id,
                                 const std::vector<v1::Candidate>& leased,
                                 const std::vector<v1::CandidateResult>& results,
                                 std::vector<EarlierResult>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Phase 3: which results are stored (the jobs and tasks open, within their budgets, not
  // leased or measured here again), and their holds; UNAVAILABLE while a task's search works.
  absl::Status HoldEarlierResults(std::vector<EarlierResult>& results)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StoreEarlierResults(std::vector<EarlierResult>& results, bool stored,
                           std::vector<AgentWork>* work) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Whether the task needs a new batch from its search (nothing queued or leased, budget left).
  static bool NeedsBatch(const TaskRun& task);
  // What the database keeps of a task's progress (TuningDatabase::UpdateJobTasks).
  static JobTaskProgress ProgressOf(const TaskRun& task);
  // A task whose search broke ends failed, saying why; the job goes on with its other tasks.
  void FailTask(JobRun& job, TaskRun& task, const absl::Status& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes an ended job from memory, keeping its last status for GetJob.
  void Forget(int64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReturnToQueue(LeaseRun& lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends `job` (done or failed, saying why) and lets it leave memory once every task is final and
  // nothing is in flight; tasks that are done are marked so: those of `tasks` (indices), or every
  // task when null (the only changes were to them). Their writes are queued.
  void FinishIfDone(JobRun& job, const std::vector<int>* tasks = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether every task of `job` is final (moving JobRun::first_open past those that are).
  static bool AllTasksFinal(JobRun& job);
  // Queues `job`'s start (running) unless the database holds it as started already (JobRun::
  // start_stored) or it is queued: before a state that only a started job may take (paused, done,
  // failed).
  void EnsureStartedStored(JobRun& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Cancels `job` (a client's cancel, or its worker gone), saying `why`. The caller then lets it
  // leave memory (ForgetIfNotLeased).
  void CancelLocked(JobRun& job, const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forget(id) unless the job is Leased.
  void ForgetIfNotLeased(int64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Cancels the jobs bound to a worker that is gone (left, lost for 4 lease timeouts, or unknown
  // to this process).
  void EndJobsOfGoneWorkers() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops leasing the candidates of jobs whose wall time ran out, and ends those with none left
  // in flight.
  void StopJobsOutOfTime() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Why a queued or running job's unfinished tasks are not measured: no worker that may measure
  // them is registered, or those registered are lost or cannot build their kernels. Empty while
  // every task has such a worker, and for a job in any other state. `waiting`: the job's
  // unfinished tasks per need (JobRun::needs), counted by the caller's pass over its tasks.
  // `stuck`, when given, is set to how many of them wait so.
  std::string WaitingReason(const JobRun& job, const std::vector<int64_t>& waiting,
                            int64_t* stuck = nullptr) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // As GetJob's arguments say.
  JobStatus StatusOf(const JobRun& job, TaskPage page = {}, bool with_job_tasks = true,
                     std::vector<int64_t>* done_by_task = nullptr) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // FailedPrecondition, naming the state, when `run` has ended and so cannot be `action`.
  absl::Status StillOpen(const JobRun& run, absl::string_view action) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The job `id` in memory; FailedPrecondition naming the end of one that ended on this process
  // (finished_); NotFound otherwise, for the caller to ask the database with EndedOrNone once it
  // has released the lock (a read of a job of 65,536 tasks held every lease and report).
  absl::StatusOr<JobRun*> FindJob(int64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // For a job FindJob did not find: FailedPrecondition naming its state when the database has it
  // (it ended before this process), else NotFound.
  absl::Status EndedOrNone(int64_t id) ABSL_LOCKS_EXCLUDED(mu_);
  // `recount`: count each task's progress from the records the job stored (a recovered job); a
  // job just created has none, and counting 65,536 tasks held the lock for seconds.
  absl::Status AddJobRun(Job job, bool recount) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends `job`, cancelled and saying why, when it is unfinished and its `ktune tune` session's
  // process is gone from this host; whether it did.
  bool EndIfAbandoned(const Job& job);
  // Hands a job's end to SchedulerOptions::on_job_ended (with or without the lock: the callback is
  // thread-safe).
  void ReportJobEnded(const Job& job, const std::string& state) const;

  TuningDatabase* db_;
  const TaskSpaces* spaces_;
  SchedulerOptions options_;
  absl::Mutex mu_;
  std::map<int64_t, std::unique_ptr<JobRun>> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, JobStatus> finished_ ABSL_GUARDED_BY(mu_);  // the last kKeepFinished
  std::map<std::string, std::unique_ptr<LeaseRun>> leases_ ABSL_GUARDED_BY(mu_);
  // The leases a worker's report ended, those of the last lease timeout and at least the last
  // kKeepReportedLeases (at most kMaxReportedLeases): a report sent again because the reply to the
  // first was lost (same worker, same candidates) is answered as the first was.
  struct ReportedLease {
    std::string worker;
    uint64_t report = 0;      // ReportHash of its results
    int64_t stored = 0;       // what the first reply said
    absl::Time at;
  };
  static constexpr size_t kKeepReportedLeases = 4096, kMaxReportedLeases = 65536;
  absl::flat_hash_map<std::string, ReportedLease> reported_leases_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> reported_order_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, WorkerRun> workers_ ABSL_GUARDED_BY(mu_);
  // Jobs this process ended, by final state (a counter: ended jobs leave memory soon).
  std::map<std::string, int64_t> jobs_ended_ ABSL_GUARDED_BY(mu_);
  int64_t leases_expired_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t leases_revived_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t earlier_leases_stored_ ABSL_GUARDED_BY(mu_) = 0;
  // Reports of earlier leases being committed, by their reported_leases_ key: the same report
  // sent again meanwhile (its reply late) is told to try again, not stored twice.
  absl::flat_hash_set<std::string> earlier_committing_ ABSL_GUARDED_BY(mu_);
  // When Recover ran (the reports of earlier leases are taken for kEarlierLeasesWithin of it);
  // never, for a scheduler that did not recover.
  absl::Time recovered_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // The leases that expired within kReviveWithinLeaseTimeouts, for Revive, and their ids with
  // the time each expired, oldest first (a lease revived and expired again is in it twice: an
  // entry whose time is not its lease's is skipped).
  std::map<std::string, std::unique_ptr<ExpiredLease>> expired_leases_ ABSL_GUARDED_BY(mu_);
  std::deque<std::pair<std::string, absl::Time>> expired_order_ ABSL_GUARDED_BY(mu_);
  // Jobs of gone `ktune tune` sessions this process cancelled (EndIfAbandoned runs with and
  // without the lock).
  std::atomic<int64_t> abandoned_jobs_ended_{0};
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Stride scheduling's virtual time, per device class: the pass the job last served on it had
  // there (never going back). A job's pass on each of its classes starts there, and a resumed
  // one's is lifted there: it competes level with the jobs being served, gaining nothing from
  // time it could not lease. (One floor, the lowest pass of all jobs, was held down by a paused
  // job or one no worker serves: a job submitted or resumed then took 456 of the next 480
  // candidates.)
  std::map<std::string, double> pass_floors_ ABSL_GUARDED_BY(mu_);
  // Lifts each of `job`'s passes to its class's floor at least.
  void LiftToFloors(JobRun& job) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t tasks_being_stored_ ABSL_GUARDED_BY(mu_) = 0;  // of submits storing their job
  // Job writes not stored yet, in the order they were made (FlushJobWrites).
  std::deque<JobWrite> job_writes_ ABSL_GUARDED_BY(mu_);
  // Writes of each job queued or being stored (a job's last status stays in finished_ while it has
  // any, and a call on the job waits for them: AfterStoring).
  std::map<int64_t, int> pending_writes_ ABSL_GUARDED_BY(mu_);
  bool job_write_in_flight_ ABSL_GUARDED_BY(mu_) = false;  // taken from job_writes_ to be stored
  uint64_t next_write_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t done_write_seq_ ABSL_GUARDED_BY(mu_) = 0;  // every write up to it is stored or dropped
  int64_t failed_flushes_ ABSL_GUARDED_BY(mu_) = 0;
  std::string flush_error_ ABSL_GUARDED_BY(mu_);  // of the last flush that failed
  // Writes dropped because the database refused them for good (another process ended or deleted
  // the job, an error no retry mends), by job: the last one's seq and error, until a call on the
  // job reads it (AfterStoring, which tells only of writes queued after it began); at most
  // kMaxWriteErrors, the oldest going first.
  std::map<int64_t, std::pair<uint64_t, absl::Status>> write_errors_ ABSL_GUARDED_BY(mu_);
  static constexpr size_t kMaxWriteErrors = 1024;
  // The last flush failed: only the writer thread retries (FlushMode, RequestFlush).
  std::atomic<bool> writes_refused_{false};
  // job_writes_ holds writes (set by the Queue* functions, cleared by the flush that empties it):
  // RequestFlush, called by every lease and report, hands the writer thread nothing otherwise.
  std::atomic<bool> writes_queued_{false};
  std::atomic<bool> flush_requested_{false};  // a flush is queued on writer_, not started
  // Held by the thread storing job_writes_ (one at a time, so that they are stored in order).
  absl::Mutex flush_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  // Stores job writes (RequestFlush): one thread, or none (SchedulerOptions::writer_threads).
  ThreadPool writer_;
  // Last: destroyed first, so running work finishes while the state it reports to exists.
  ThreadPool agents_;
};

}  // namespace ktune

#endif  // KTUNE_SERVER_SCHEDULER_H_
