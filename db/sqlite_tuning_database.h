// The default TuningDatabase: one SQLite file.
//
// Durability: WAL journal, synchronous=FULL, every write in one transaction; a write that returned
// OK has been committed. A busy timeout makes concurrent writers (other processes) wait rather
// than fail; if they still collide, the call fails with Aborted and stored nothing.
//
// Schema: versioned (db/sqlite_schema.h). Opening migrates an older file in one transaction.
// A file written by a newer ktune is refused with FailedPrecondition and is not modified.
//
// Thread-safe: writes go through one connection behind a mutex; reads through a few read-only
// connections of their own (db/sqlite_readers.h), which neither wait for the writer nor hold it.
#ifndef KTUNE_DB_SQLITE_TUNING_DATABASE_H_
#define KTUNE_DB_SQLITE_TUNING_DATABASE_H_

#include <sqlite3.h>

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "db/sqlite_readers.h"
#include "db/tuning_database.h"

namespace ktune {

class SqliteTuningDatabase : public TuningDatabase {
 public:
  struct Options {
    int busy_timeout_ms = 5000;
    // Migrate up to this version (tests use it to create old files); 0 = current.
    int target_version = 0;
    // Open for reading only, never writing the file (every write fails). `immutable`: also
    // without SQLite's -shm file, which a database in a read-only folder cannot have; right only
    // when no process writes the file meanwhile (none can: writers need that folder). A file of
    // an older schema is refused (FailedPrecondition: upgrading it writes).
    bool read_only = false;
    bool immutable = false;
    // False: a file of an older schema, or an SQLite file without ktune's tables, is refused
    // (FailedPrecondition, naming `ktune db migrate`) and left as it was. Commands that only
    // read: upgrading goes one way (older ktune versions cannot read the file after it), and
    // deserves a backup first; an SQLite file without tables is most often a copy of a live
    // database made without its -wal file, and got an empty schema written into it.
    bool upgrade = true;
    // Read connections beside the writer's, opened as reads need them. 0: every read goes through
    // the writer's connection, under its lock (as for ":memory:", a read-only file, or a file
    // SQLite cannot keep in WAL mode, where a reader would hold the writer).
    int read_connections = 4;
  };

  // Opens or creates `path`. Errors name the path: FailedPrecondition for a newer schema,
  // DataLoss for a file that is not a SQLite database, Unavailable when it cannot be opened.
  static absl::StatusOr<std::unique_ptr<SqliteTuningDatabase>> Open(const std::string& path,
                                                                    Options options);
  static absl::StatusOr<std::unique_ptr<SqliteTuningDatabase>> Open(const std::string& path) {
    return Open(path, Options());
  }
  ~SqliteTuningDatabase() override;

  // The schema version stored in the file.
  int schema_version() const { return schema_version_; }
  // PRAGMA integrity_check, then whether the task columns (db/sqlite_task_columns.h) hold as many
  // records per (workload, device) as the records table. OK, or DataLoss with SQLite's report,
  // or naming the tasks whose columns are out of step (only a file that something other than
  // ktune wrote to; RebuildTaskColumns repairs it).
  absl::Status CheckIntegrity();
  // Rebuilds the task columns from the records, in one transaction.
  absl::Status RebuildTaskColumns();

  absl::StatusOr<int64_t> AddRecords(const std::vector<Record>& records) override;
  absl::StatusOr<int64_t> AddJobRecords(const std::vector<Record>& records,
                                        const std::vector<JobTaskCount>& counts) override;
  absl::StatusOr<std::vector<bool>> HasRecords(const std::vector<std::string>& record_ids) override;
  absl::StatusOr<BestResult> QueryBest(const BestQuery& query) override;
  absl::StatusOr<std::vector<Record>> TaskRecords(const TaskKey& task) override;
  // From the table task_columns: a few blobs per task, however many records it has.
  absl::StatusOr<TaskColumns> TaskRecordColumns(const TaskKey& task) override;
  absl::StatusOr<TaskColumns> StaleTaskRecordColumns(const TaskKey& task) override;
  absl::StatusOr<std::vector<Record>> RecordsByHandle(const std::vector<int64_t>& handles) override;
  absl::StatusOr<std::vector<TaskKey>> ListTasks() override;
  absl::StatusOr<std::vector<SourceTaskSummary>> SummarizeSource(
      const std::string& source) override;
  absl::StatusOr<std::string> FamilyOfClass(const std::string& device_class) override;
  // `fn` runs under the database's lock: it must not call back into this database.
  absl::Status ForEachRecord(const std::function<absl::Status(const Record&)>& fn) override;
  absl::StatusOr<RecordPage> RecordsAfter(int64_t after, size_t limit) override;
  absl::StatusOr<DatabaseStats> Stats() override;
  absl::Status MarkStale(const TaskKey& task, int64_t before_us) override;
  absl::StatusOr<std::vector<StaleBoundary>> StaleBoundaries() override;
  absl::StatusOr<std::vector<Record>> StaleTaskRecords(const TaskKey& task) override;
  absl::Status AddTelemetry(const std::vector<TelemetryReport>& reports) override;
  absl::Status ForEachTelemetry(
      const std::function<absl::Status(const TelemetryReport&)>& fn) override;
  absl::StatusOr<int64_t> CreateJob(const Job& job) override;
  absl::StatusOr<Job> GetJob(int64_t id) override;
  absl::StatusOr<std::vector<JobSummary>> ListJobSummaries() override;
  absl::Status SetJobState(int64_t id, JobState state, const std::string& message) override;
  absl::Status UpdateJobTasks(int64_t job_id,
                              const std::vector<JobTaskProgress>& progress) override;
  absl::Status SaveCheckpoint(const std::string& key, const std::string& blob) override;
  absl::StatusOr<std::string> LoadCheckpoint(const std::string& key) override;

 private:
  // A task's records: those MarkStale hid (`stale`), or the others.
  absl::StatusOr<std::vector<Record>> RecordsOf(const TaskKey& task, bool stale);
  absl::StatusOr<TaskColumns> ColumnsOf(const TaskKey& task, bool stale);
  // Runs fn(sqlite3*) on a read connection (one read transaction), or on the writer's under mu_
  // when there are none; returns what fn returns. Defined in the .cc, the only place it is used.
  template <typename Fn>
  auto Read(Fn&& fn);
  SqliteTuningDatabase(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  absl::Status Migrate(int target_version);

  // Null when reads use the writer's connection. Destroyed before db_ is closed.
  std::unique_ptr<SqliteReaders> readers_;
  absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_);
  const std::string path_;
  int schema_version_ = 0;
};

}  // namespace ktune

#endif  // KTUNE_DB_SQLITE_TUNING_DATABASE_H_
