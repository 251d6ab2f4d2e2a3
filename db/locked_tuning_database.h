// A TuningDatabase shared between threads: every call goes to the wrapped database under one
// mutex. The server's scheduler and its query handlers use the database through this.
#ifndef KTUNE_DB_LOCKED_TUNING_DATABASE_H_
#define KTUNE_DB_LOCKED_TUNING_DATABASE_H_

#include "absl/synchronization/mutex.h"
#include "db/tuning_database.h"

namespace ktune {

class LockedTuningDatabase final : public TuningDatabase {
 public:
  explicit LockedTuningDatabase(TuningDatabase* inner) : inner_(inner) {}

  absl::StatusOr<int64_t> AddRecords(const std::vector<Record>& records) override {
    absl::MutexLock l(&mu_);
    return inner_->AddRecords(records);
  }
  absl::StatusOr<BestResult> QueryBest(const BestQuery& query) override {
    absl::MutexLock l(&mu_);
    return inner_->QueryBest(query);
  }
  absl::StatusOr<std::vector<Record>> TaskRecords(const TaskKey& task) override {
    absl::MutexLock l(&mu_);
    return inner_->TaskRecords(task);
  }
  absl::StatusOr<std::vector<TaskKey>> ListTasks() override {
    absl::MutexLock l(&mu_);
    return inner_->ListTasks();
  }
  absl::Status ForEachRecord(const std::function<absl::Status(const Record&)>& fn) override {
    absl::MutexLock l(&mu_);
    return inner_->ForEachRecord(fn);
  }
  absl::StatusOr<DatabaseStats> Stats() override {
    absl::MutexLock l(&mu_);
    return inner_->Stats();
  }
  absl::Status MarkStale(const TaskKey& task, int64_t before_us) override {
    absl::MutexLock lock(&mu_);
    return inner_->MarkStale(task, before_us);
  }
  absl::StatusOr<std::vector<Record>> StaleTaskRecords(const TaskKey& task) override {
    absl::MutexLock lock(&mu_);
    return inner_->StaleTaskRecords(task);
  }
  absl::Status AddTelemetry(const std::vector<TelemetryReport>& reports) override {
    absl::MutexLock lock(&mu_);
    return inner_->AddTelemetry(reports);
  }
  absl::Status ForEachTelemetry(
      const std::function<absl::Status(const TelemetryReport&)>& fn) override {
    absl::MutexLock lock(&mu_);
    return inner_->ForEachTelemetry(fn);
  }
  absl::StatusOr<int64_t> CreateJob(const Job& job) override {
    absl::MutexLock l(&mu_);
    return inner_->CreateJob(job);
  }
  absl::StatusOr<Job> GetJob(int64_t id) override {
    absl::MutexLock l(&mu_);
    return inner_->GetJob(id);
  }
  absl::StatusOr<std::vector<Job>> ListJobs() override {
    absl::MutexLock l(&mu_);
    return inner_->ListJobs();
  }
  absl::Status SetJobState(int64_t id, JobState state, const std::string& message) override {
    absl::MutexLock l(&mu_);
    return inner_->SetJobState(id, state, message);
  }
  absl::Status UpdateJobTasks(int64_t job_id,
                              const std::vector<JobTaskProgress>& progress) override {
    absl::MutexLock l(&mu_);
    return inner_->UpdateJobTasks(job_id, progress);
  }
  absl::Status SaveCheckpoint(const std::string& key, const std::string& blob) override {
    absl::MutexLock l(&mu_);
    return inner_->SaveCheckpoint(key, blob);
  }
  absl::StatusOr<std::string> LoadCheckpoint(const std::string& key) override {
    absl::MutexLock l(&mu_);
    return inner_->LoadCheckpoint(key);
  }

 private:
  absl::Mutex mu_;
  TuningDatabase* inner_;
};

}  // namespace ktune

#endif  // KTUNE_DB_LOCKED_TUNING_DATABASE_H_
