// The tuning database: every measurement ktune has made or imported, the jobs that asked for
// them, and the agent's checkpoints.
//
// Implementations: MemoryTuningDatabase (tests, throwaway runs) and SqliteTuningDatabase (the
// default). Both pass tests/db/tuning_database_conformance_test.cc. All methods are thread-safe.
// A write that returns OK is durable for the implementation's notion of durability (for SQLite:
// after COMMIT returned, with synchronous=FULL); a write that fails stored nothing.
#ifndef KTUNE_DB_TUNING_DATABASE_H_
#define KTUNE_DB_TUNING_DATABASE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "db/record.h"
#include "db/task_columns.h"
#include "db/telemetry.h"
#include "kernels/search_space.h"

namespace ktune {

class KernelRegistry;  // kernels/kernel_registry.h

// Which level of a best-known lookup matched.
enum class MatchLevel { kExact, kDeviceClass, kFamily, kNone };
absl::string_view MatchLevelName(MatchLevel level);  // "exact", "device_class", "family", "none"

struct BestQuery {
  std::string kernel;
  std::string kernel_version;  // empty: any version
  Problem problem;
  // The device at its three levels; an empty field skips that level. When `family` is empty it
  // is taken from the devices of `device_class` the database knows, else inferred from the
  // class name (InferDeviceFamily).
  std::string fingerprint_hash;
  std::string device_class;
  std::string family;
  int top_k = 1;  // distinct configurations, best first
  // An accuracy budget: only records whose measured max_rel_error is known and at most this
  // (an unknown error is never within a budget). Unset: every ok record.
  std::optional<double> max_rel_error;
  // Only the family level (and, in a server, a prediction): the device class's records, live or
  // stale, are skipped; device_class still names the family when `family` is empty. For a client
  // whose records at the class level do not fit (a TVM trace that does not replay).
  bool family_only = false;
};

struct BestResult {
  MatchLevel level = MatchLevel::kNone;
  std::vector<Record> records;  // ok records, fastest first, one per configuration; <= top_k
  // The records are stale (MarkStale: measured before a regression was flagged) and answer
  // because the device class has no newer record of the task yet: what the class last knew,
  // rather than the family's or nothing until a retuning job has measured (level: kExact when
  // the asked fingerprint has stale records, else kDeviceClass).
  bool stale = false;
};

struct DatabaseStats {
  int64_t kernels = 0;
  int64_t workloads = 0;  // kernel + version + problem
  int64_t devices = 0;
  int64_t records = 0;
  std::map<std::string, int64_t> records_by_status;  // StatusName -> count; zero counts omitted
  int64_t jobs = 0;
};

// Job state machine: queued -> running <-> paused; queued|running|paused -> cancelled;
// running -> done|failed. Done, failed and cancelled are final. Running -> running is allowed (a
// no-op but for the message): whoever stores that a job started may find it stored already.
enum class JobState { kQueued, kRunning, kPaused, kDone, kFailed, kCancelled };
absl::string_view JobStateName(JobState s);
absl::StatusOr<JobState> ParseJobStateName(absl::string_view name);
bool IsAllowedJobTransition(JobState from, JobState to);

struct JobTask {
  TaskKey task;
  JobState state = JobState::kQueued;
  int64_t budget = 0;  // measurements
  int64_t measurements_done = 0;
};

// One task's progress, as UpdateJobTasks stores it.
struct JobTaskProgress {
  int task_index = 0;  // into Job::tasks
  JobState state = JobState::kQueued;
  int64_t measurements_done = 0;
};

// How many measurements a report adds to one task of a job (AddJobRecords).
struct JobTaskCount {
  int64_t job_id = 0;
  int task_index = 0;  // into Job::tasks
  int64_t measured = 0;
};

struct Job {
  int64_t id = 0;  // assigned by CreateJob
  std::string name;
  std::string spec_json;  // the submitted spec, as given
  std::string strategy;
  int priority = 0;
  JobState state = JobState::kQueued;
  std::string message;  // why it failed or was cancelled
  std::vector<JobTask> tasks;
  int64_t created_at_us = 0;
  int64_t updated_at_us = 0;
};

class TuningDatabase {
 public:
  virtual ~TuningDatabase() = default;

  // --- Records ---
  // Stores `records` atomically: all or none. Records whose RecordId() is already stored are
  // skipped. Returns how many were added. InvalidArgument (nothing stored) when a record has no
  // kernel or device class, time_ms set/unset against its status, or a payload over
  // kMaxRecordPayloadBytes.
  virtual absl::StatusOr<int64_t> AddRecords(const std::vector<Record>& records) = 0;
  // A report: `records` stored as AddRecords stores them and, in the same commit, each counted
  // task's measurements_done raised by its `measured` (a task or job still queued becomes
  // running: a job's start is stored with its first measurements, not by the lease). All
  // or none: NotFound, nothing stored, when a count names a job or task that does not exist. One
  // commit, so that a report's progress is never behind or ahead of its records, and no second
  // commit (a second sync of the file) per report.
  virtual absl::StatusOr<int64_t> AddJobRecords(const std::vector<Record>& records,
                                                const std::vector<JobTaskCount>& counts) = 0;

  // For each RecordId() in `record_ids`, whether such a record is stored (stale ones included),
  // in one read.
  virtual absl::StatusOr<std::vector<bool>> HasRecords(
      const std::vector<std::string>& record_ids) = 0;
  absl::StatusOr<bool> HasRecord(const std::string& record_id) {
    absl::StatusOr<std::vector<bool>> found = HasRecords({record_id});
    if (!found.ok()) return found.status();
    return found->front();
  }

  // Best known configurations: exact fingerprint, then device class, then family; the first
  // level with an ok record wins.
  virtual absl::StatusOr<BestResult> QueryBest(const BestQuery& query) = 0;

  // Every record of a task (any status), ordered by measured_at (unknown first) then record id.
  virtual absl::StatusOr<std::vector<Record>> TaskRecords(const TaskKey& task) = 0;

  // TaskRecords(task) as columns (db/task_columns.h), in the same order: what a summary of a
  // whole task reads (`ktune explain`), without parsing each record. SqliteTuningDatabase keeps
  // the columns up to date as records are added, so reading them costs a few blobs.
  virtual absl::StatusOr<TaskColumns> TaskRecordColumns(const TaskKey& task) = 0;
  // StaleTaskRecords(task) as columns, in the same order.
  virtual absl::StatusOr<TaskColumns> StaleTaskRecordColumns(const TaskKey& task) = 0;
  // The records behind TaskColumns::handles, in the order asked. A handle names its record for
  // as long as the database does. NotFound for a handle that names none.
  virtual absl::StatusOr<std::vector<Record>> RecordsByHandle(
      const std::vector<int64_t>& handles) = 0;

  // The distinct tasks that have records, ordered by kernel, version, problem, device class.
  virtual absl::StatusOr<std::vector<TaskKey>> ListTasks() = 0;

  // What the records of one source (Record::source, exactly) hold, per task, stale ones too:
  // how many, how many failed, and the fastest ok one. In no particular order. A job's progress
  // after a restart (Scheduler::Recover): one read for the whole job, where reading each task's
  // records took two queries a task (10 s for a job of 65,536 tasks).
  struct SourceTaskSummary {
    TaskKey task;
    int64_t records = 0;
    int64_t failed = 0;  // status other than ok
    std::optional<double> best_ms;
    Configuration best_config;  // of best_ms
  };
  virtual absl::StatusOr<std::vector<SourceTaskSummary>> SummarizeSource(
      const std::string& source) = 0;

  // The architecture family stored for the devices of `device_class` (a device keeps one class,
  // and the devices of a class one family), else InferDeviceFamily's from the name, else "".
  // QueryBest's family level uses the same rule when the query names no family.
  virtual absl::StatusOr<std::string> FamilyOfClass(const std::string& device_class) = 0;

  // Calls `fn` on every record in insertion order; stops with fn's error if it returns one.
  virtual absl::Status ForEachRecord(const std::function<absl::Status(const Record&)>& fn) = 0;

  // A page of every record in insertion order: at most `limit` records stored after position
  // `after` (0: from the first), and `last`, the position of the last one returned (the next
  // page's `after`; `after` itself when the page is empty). A position names its record for as
  // long as the database does, so a page costs its own records, not those before it (paging by
  // an offset read every earlier record again, page after page).
  struct RecordPage {
    std::vector<Record> records;
    int64_t last = 0;
  };
  virtual absl::StatusOr<RecordPage> RecordsAfter(int64_t after, size_t limit) = 0;

  virtual absl::StatusOr<DatabaseStats> Stats() = 0;

  // Records of `task` on its device class (any kernel version) measured before `before_us`, or at
  // an unknown time, become stale: the device no longer behaves as they say (a regression was
  // detected). They leave TaskRecords, and answer QueryBest only while the class has no newer
  // record of the task (BestResult::stale). They stay stored: ForEachRecord and exports still
  // see them. A later boundary replaces an earlier one; an earlier one changes nothing.
  virtual absl::Status MarkStale(const TaskKey& task, int64_t before_us) = 0;
  // Every boundary MarkStale set, one per task (its problem as ParamMapHash): what an export
  // writes beside the stale records, so that an import hides them again.
  struct StaleBoundary {
    std::string kernel, problem_hash, device_class;
    int64_t before_us = 0;
  };
  virtual absl::StatusOr<std::vector<StaleBoundary>> StaleBoundaries() = 0;
  // The records of a task that MarkStale hides from TaskRecords, in the same order: what the
  // device did before (a retuning search learns from them).
  virtual absl::StatusOr<std::vector<Record>> StaleTaskRecords(const TaskKey& task) = 0;

  // --- Production telemetry (db/telemetry.h), apart from the records ---
  // Stores `reports` atomically: all or none; InvalidArgument (nothing stored) when one breaks
  // ValidateTelemetry.
  virtual absl::Status AddTelemetry(const std::vector<TelemetryReport>& reports) = 0;
  // Calls `fn` on every report in the order stored; stops with fn's error if it returns one.
  // `fn` may call this database (it runs outside the database's lock).
  virtual absl::Status ForEachTelemetry(
      const std::function<absl::Status(const TelemetryReport&)>& fn) = 0;

  // --- Jobs ---
  // Stores a new job with its tasks, state queued; returns its id (> 0).
  virtual absl::StatusOr<int64_t> CreateJob(const Job& job) = 0;
  virtual absl::StatusOr<Job> GetJob(int64_t id) = 0;  // NotFound
  // All jobs, newest first, without their tasks (Job::tasks empty; GetJob has them) but with
  // their counts, summed by the database: listing jobs with their tasks read and parsed every
  // task of every job (64 ms a call for one job of 65,536 tasks).
  struct JobSummary {
    Job job;
    int64_t task_count = 0;
    int64_t measurements_done = 0;   // the progress its tasks stored
    int64_t measurements_total = 0;  // the tasks' budgets
  };
  virtual absl::StatusOr<std::vector<JobSummary>> ListJobSummaries() = 0;
  // FailedPrecondition when the transition is not allowed (the message names both states).
  virtual absl::Status SetJobState(int64_t id, JobState state, const std::string& message) = 0;
  // Stores the progress of some of a job's tasks, all or none (NotFound, nothing stored, when
  // one index is not a task of the job): one commit for a report that touches many tasks. A
  // task's measurements_done never goes down (a report's AddJobRecords committed meanwhile is
  // kept; a cancel writes what the scheduler had counted before it).
  virtual absl::Status UpdateJobTasks(int64_t job_id,
                                      const std::vector<JobTaskProgress>& progress) = 0;

  // --- Agent checkpoints ---
  // Stores `blob` under `key`, replacing any previous one.
  virtual absl::Status SaveCheckpoint(const std::string& key, const std::string& blob) = 0;
  // The blob under `key`, or NotFound.
  virtual absl::StatusOr<std::string> LoadCheckpoint(const std::string& key) = 0;
};

// Records from elsewhere (a file, another server's export) stored as AddRecords stores them,
// except that a record claiming a job ("job:N" as its source) that is not stored already is
// stored as "import:job:N": a job counts its records by source, and job ids repeat across
// databases (another server's job 1 filled this one's job 1, and an import could finish it).
// A record stored already (this database's own export) is skipped as before, and so is an
// "import:job:N" copy of a record this database stores as "job:N" (its own, back from a copy).
// With `registry`, each record of one of its kernels is first fitted to it (FitRecordToRegistry);
// the first it refuses fails the import, nothing stored, naming the record (from 1).
// `by_measurement` (every file import): an ok record whose task, configuration, time and repeat
// times equal those of a stored ok record of the same device fingerprint, or a failure of a
// configuration that the fingerprint's task stores as failed at the same second (at any time
// when the file does not say when), is that record (ktune's own export back, or the same
// measurements imported under another file name, merged), and is skipped. A file's device that
// names only its class (DeviceInfo::FromName) matches any fingerprint of the class; another
// fingerprint of the class is another device, and its measurements are kept. A job's record
// ("job:N", "import:job:N") is known by its identity alone, as above.
absl::StatusOr<int64_t> AddImportedRecords(TuningDatabase& db, std::vector<Record> records,
                                           const KernelRegistry* registry = nullptr,
                                           bool by_measurement = false);

// A record of a registry kernel, as the kernel's own tasks are stored. Where the kernel takes
// the record's problem (KernelDefinition::ValidateProblem), the problem gets its defaults (a
// record without dtype was stored and never found: queries fill it in), and the configuration
// must be one of the kernel's space for that problem on the record's device: its parameters and
// values, and the constraints for an ok record (a served configuration a compiler cannot build);
// InvalidArgument saying why otherwise. A record of another version of the kernel (kernel_version
// set and not the registry's) gets the problem's defaults only. A problem the kernel does not take
// is left as given: a recorded space that shares a built-in's name (a T4 gemm file, problem {}) is
// another kernel.
absl::Status FitRecordToRegistry(const KernelRegistry& registry, Record& r);

// An accuracy budget compares errors of one measure. The versions of a kernel whose error is
// componentwise (KernelDefinition::componentwise_error) from before that measure stored normwise
// errors, which read far smaller where a channel was lost; so a query with a budget and no
// version of such a kernel reads the registry's version only. Other queries are left as given.
void PinBudgetToErrorMeasure(const KernelRegistry& registry, BestQuery* query);

// FitRecordToRegistry over many records, building each (kernel, problem, cores) space once: an
// import of 10,000 gemm records built the space 10,000 times (14.5 s, where 0.7 s stored them).
class RegistryFitter {
 public:
  explicit RegistryFitter(const KernelRegistry* registry) : registry_(registry) {}
  absl::Status Fit(Record& r);

 private:
  const KernelRegistry* registry_;
  std::map<std::string, absl::StatusOr<SearchSpace>> spaces_;  // by kernel, problem, cores
};

// The problem as `kernel`'s tasks store it (defaults filled in) when `registry` has the kernel and
// it takes the problem (not empty, valid); nullopt otherwise.
std::optional<Problem> RegistryProblem(const KernelRegistry& registry, const std::string& kernel,
                                       const Problem& problem);

// Which records a regression retired (TuningDatabase::MarkStale), for exports: a snapshot of the
// database's boundaries, looked up per record.
class StaleBoundaryIndex {
 public:
  static absl::StatusOr<StaleBoundaryIndex> Of(TuningDatabase& db);
  // The boundary of `r`'s task when `r` was measured before it (or at an unknown time); nullopt
  // for a live record.
  std::optional<int64_t> For(const Record& r) const;

 private:
  std::map<std::tuple<std::string, std::string, std::string>, int64_t> before_;
};

// The latest stale boundary per task among records an import carries, to mark again after
// storing them (TuningDatabase::MarkStale).
class StaleBoundaryCollector {
 public:
  void Add(const Record& r, int64_t before_us);
  // Marks each task; the error names the task whose boundary could not be kept.
  absl::Status MarkAll(TuningDatabase& db) const;
  size_t size() const { return latest_.size(); }
  std::vector<std::pair<TaskKey, int64_t>> Tasks() const;

 private:
  std::map<std::tuple<std::string, std::string, std::string>, std::pair<TaskKey, int64_t>> latest_;
};

// Checks a record before storing it: the rules AddRecords enforces, in one place.
absl::Status ValidateRecord(const Record& r);
// InvalidArgument for a record or report that names `device` (a fingerprint stored with
// `stored_class`) under another class: a device has one class, and a record filed under the stored
// one would never be found under its own.
absl::Status DeviceClassConflict(const DeviceInfo& device, const std::string& stored_class);

}  // namespace ktune

#endif  // KTUNE_DB_TUNING_DATABASE_H_
