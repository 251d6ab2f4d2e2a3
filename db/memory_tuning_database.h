// A TuningDatabase held in memory: for tests and throwaway runs. Nothing survives the object.
// Thread-safe (one mutex).
#ifndef KTUNE_DB_MEMORY_TUNING_DATABASE_H_
#define KTUNE_DB_MEMORY_TUNING_DATABASE_H_

#include <map>
#include <set>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "db/tuning_database.h"

namespace ktune {

class MemoryTuningDatabase : public TuningDatabase {
 public:
  absl::StatusOr<int64_t> AddRecords(const std::vector<Record>& records) override;
  absl::StatusOr<int64_t> AddJobRecords(const std::vector<Record>& records,
                                        const std::vector<JobTaskCount>& counts) override;
  absl::StatusOr<std::vector<bool>> HasRecords(const std::vector<std::string>& record_ids) override;
  absl::StatusOr<BestResult> QueryBest(const BestQuery& query) override;
  absl::StatusOr<std::vector<Record>> TaskRecords(const TaskKey& task) override;
  // Handles are positions in insertion order.
  absl::StatusOr<TaskColumns> TaskRecordColumns(const TaskKey& task) override;
  absl::StatusOr<TaskColumns> StaleTaskRecordColumns(const TaskKey& task) override;
  absl::StatusOr<std::vector<Record>> RecordsByHandle(const std::vector<int64_t>& handles) override;
  absl::StatusOr<std::vector<TaskKey>> ListTasks() override;
  absl::StatusOr<std::vector<SourceTaskSummary>> SummarizeSource(
      const std::string& source) override;
  absl::StatusOr<std::string> FamilyOfClass(const std::string& device_class) override;
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
  absl::Mutex mu_;
  std::vector<Record> records_ ABSL_GUARDED_BY(mu_);  // insertion order
  std::set<std::string> record_ids_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> device_classes_
      ABSL_GUARDED_BY(mu_);  // fingerprint hash -> class

  // Records `devices`' classes, or DeviceClassConflict (nothing recorded) for a device already
  // known under another class.
  absl::Status KeepDeviceClasses(const std::vector<const DeviceInfo*>& devices)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::map<int64_t, Job> jobs_ ABSL_GUARDED_BY(mu_);
  int64_t next_job_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, std::string> checkpoints_ ABSL_GUARDED_BY(mu_);
  std::vector<TelemetryReport> telemetry_ ABSL_GUARDED_BY(mu_);
  // kernel, problem hash, device class -> records before this time are stale.
  std::map<std::tuple<std::string, std::string, std::string>, int64_t> stale_before_
      ABSL_GUARDED_BY(mu_);
  bool IsStale(const Record& r) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The task's records, fresh or stale, in TaskRecords' order.
  std::vector<Record> RecordsOf(const TaskKey& task, bool stale) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string FamilyOfClassLocked(const std::string& device_class)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  TaskColumns ColumnsOf(const TaskKey& task, bool stale) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
};

}  // namespace ktune

#endif  // KTUNE_DB_MEMORY_TUNING_DATABASE_H_
