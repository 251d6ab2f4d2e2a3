#include "db/memory_tuning_database.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "db/device_family.h"

namespace ktune {
namespace {

bool SameWorkload(const Record& r, const std::string& kernel, const std::string& version,
                  const Problem& problem) {
  return r.kernel == kernel && (version.empty() || r.kernel_version == version) &&
         r.problem == problem;
}

auto TaskOrder(const TaskKey& t) {
  return std::make_tuple(t.kernel, t.kernel_version, CanonicalJson(t.problem), t.device_class);
}

}  // namespace

absl::StatusOr<std::vector<bool>> MemoryTuningDatabase::HasRecords(
    const std::vector<std::string>& record_ids) {
  absl::MutexLock lock(&mu_);
  std::vector<bool> out;
  out.reserve(record_ids.size());
  for (const std::string& id : record_ids) out.push_back(record_ids_.count(id) > 0);
  return out;
}

absl::StatusOr<int64_t> MemoryTuningDatabase::AddRecords(const std::vector<Record>& records) {
  return AddJobRecords(records, {});
}

absl::StatusOr<int64_t> MemoryTuningDatabase::AddJobRecords(
    const std::vector<Record>& records, const std::vector<JobTaskCount>& counts) {
  for (const Record& r : records) KTUNE_RETURN_IF_ERROR(ValidateRecord(r));
  absl::MutexLock lock(&mu_);
  for (const JobTaskCount& c : counts) {  // every check before the first change: all or none
    auto job = jobs_.find(c.job_id);
    if (job == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job ", c.job_id));
    if (c.task_index < 0 || c.task_index >= static_cast<int>(job->second.tasks.size())) {
      return absl::NotFoundError(absl::StrCat("job ", c.job_id, " has no task ", c.task_index));
    }
  }
  std::vector<const DeviceInfo*> devices;
  for (const Record& r : records) devices.push_back(&r.device);
  KTUNE_RETURN_IF_ERROR(KeepDeviceClasses(devices));
  int64_t added = 0;
  for (const Record& r : records) {
    if (record_ids_.insert(r.RecordId()).second) {
      records_.push_back(r);
      ++added;
    }
  }
  for (const JobTaskCount& c : counts) {
    Job& job = jobs_.at(c.job_id);
    JobTask& task = job.tasks[c.task_index];
    task.measurements_done += c.measured;
    if (task.state == JobState::kQueued) task.state = JobState::kRunning;
    if (job.state == JobState::kQueued) job.state = JobState::kRunning;
    job.updated_at_us = absl::ToUnixMicros(absl::Now());
  }
  return added;
}

std::string MemoryTuningDatabase::FamilyOfClassLocked(const std::string& device_class) {
  if (!device_class.empty()) {
    for (const Record& r : records_) {
      if (r.device.device_class == device_class && !r.device.family.empty()) {
        return r.device.family;
      }
    }
  }
  return InferDeviceFamily(device_class);
}

absl::StatusOr<std::string> MemoryTuningDatabase::FamilyOfClass(const std::string& device_class) {
  absl::MutexLock lock(&mu_);
  return FamilyOfClassLocked(device_class);
}

absl::StatusOr<BestResult> MemoryTuningDatabase::QueryBest(const BestQuery& q) {
  absl::MutexLock lock(&mu_);
  const std::string family = !q.family.empty() ? q.family : FamilyOfClassLocked(q.device_class);
  const auto in_class = [&](const DeviceInfo& d) {
    return !q.family_only && !q.device_class.empty() && d.device_class == q.device_class;
  };
  const auto exact = [&](const DeviceInfo& d) {
    return !q.fingerprint_hash.empty() && d.FingerprintHash() == q.fingerprint_hash;
  };
  // The class's stale records before the family's (BestResult::stale), as SQLite's.
  const std::tuple<MatchLevel, std::function<bool(const DeviceInfo&)>, bool> levels[] = {
      {MatchLevel::kExact, exact, false},
      {MatchLevel::kDeviceClass, in_class, false},
      {MatchLevel::kExact, exact, true},
      {MatchLevel::kDeviceClass, in_class, true},
      {MatchLevel::kFamily,
       [&](const DeviceInfo& d) { return !family.empty() && d.family == family; }, false},
  };
  for (const auto& [level, matches, stale] : levels) {
    std::vector<const Record*> hits;
    for (const Record& r : records_) {
      if (r.status == MeasurementStatus::kOk &&
          WithinAccuracyBudget(r.max_rel_error, q.max_rel_error) &&
          SameWorkload(r, q.kernel, q.kernel_version, q.problem) && matches(r.device) &&
          IsStale(r) == stale) {
        hits.push_back(&r);
      }
    }
    if (hits.empty()) continue;
    std::vector<std::pair<std::string, const Record*>> keyed;
    for (const Record* r : hits) keyed.emplace_back(r->RecordId(), r);
    std::sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) {
      return std::tie(*a.second->time_ms, a.first) < std::tie(*b.second->time_ms, b.first);
    });
    BestResult result;
    result.level = level;
    result.stale = stale;
    std::set<std::string> seen;
    for (const auto& [id, r] : keyed) {
      if (static_cast<int>(result.records.size()) >= q.top_k) break;
      if (seen.insert(r->ConfigHash()).second) result.records.push_back(*r);
    }
    return result;
  }
  return BestResult{};
}

absl::StatusOr<std::vector<Record>> MemoryTuningDatabase::TaskRecords(const TaskKey& task) {
  absl::MutexLock lock(&mu_);
  return RecordsOf(task, /*stale=*/false);
}

absl::StatusOr<std::vector<Record>> MemoryTuningDatabase::StaleTaskRecords(const TaskKey& task) {
  absl::MutexLock lock(&mu_);
  return RecordsOf(task, /*stale=*/true);
}

absl::StatusOr<TaskColumns> MemoryTuningDatabase::TaskRecordColumns(const TaskKey& task) {
  absl::MutexLock lock(&mu_);
  return ColumnsOf(task, /*stale=*/false);
}

absl::StatusOr<TaskColumns> MemoryTuningDatabase::StaleTaskRecordColumns(const TaskKey& task) {
  absl::MutexLock lock(&mu_);
  return ColumnsOf(task, /*stale=*/true);
}

TaskColumns MemoryTuningDatabase::ColumnsOf(const TaskKey& task, bool stale) {
  TaskColumnsBuilder builder;
  for (size_t i = 0; i < records_.size(); ++i) {
    const Record& r = records_[i];
    if (SameWorkload(r, task.kernel, task.kernel_version, task.problem) &&
        r.device.device_class == task.device_class && IsStale(r) == stale) {
      builder.Add(static_cast<int64_t>(i), r, r.RecordId());
    }
  }
  TaskColumns columns = builder.Take();
  columns.SortIntoTaskOrder();
  return columns;
}

absl::StatusOr<std::vector<Record>> MemoryTuningDatabase::RecordsByHandle(
    const std::vector<int64_t>& handles) {
  absl::MutexLock lock(&mu_);
  std::vector<Record> out;
  for (int64_t h : handles) {
    if (h < 0 || h >= static_cast<int64_t>(records_.size())) {
      return absl::NotFoundError(absl::StrCat("no record with handle ", h));
    }
    out.push_back(records_[h]);
  }
  return out;
}

std::vector<Record> MemoryTuningDatabase::RecordsOf(const TaskKey& task, bool stale) {
  std::vector<std::pair<std::string, const Record*>> keyed;
  for (const Record& r : records_) {
    if (SameWorkload(r, task.kernel, task.kernel_version, task.problem) &&
        r.device.device_class == task.device_class && IsStale(r) == stale) {
      keyed.emplace_back(r.RecordId(), &r);
    }
  }
  std::sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) {
    // Unknown times first, then by time, then by id.
    auto key = [](const auto& x) {
      return std::make_tuple(x.second->measured_at_us.has_value(),
                             x.second->measured_at_us.value_or(0), x.first);
    };
    return key(a) < key(b);
  });
  std::vector<Record> out;
  for (const auto& [id, r] : keyed) out.push_back(*r);
  return out;
}

bool MemoryTuningDatabase::IsStale(const Record& r) const {
  auto it = stale_before_.find({r.kernel, ParamMapHash(r.problem), r.device.device_class});
  return it != stale_before_.end() && r.measured_at_us.value_or(0) < it->second;
}

absl::StatusOr<std::vector<TuningDatabase::StaleBoundary>> MemoryTuningDatabase::StaleBoundaries() {
  absl::MutexLock lock(&mu_);
  std::vector<StaleBoundary> out;
  for (const auto& [key, before_us] : stale_before_) {
    out.push_back({std::get<0>(key), std::get<1>(key), std::get<2>(key), before_us});
  }
  return out;
}

absl::Status MemoryTuningDatabase::MarkStale(const TaskKey& task, int64_t before_us) {
  absl::MutexLock lock(&mu_);
  int64_t& boundary = stale_before_[{task.kernel, ParamMapHash(task.problem), task.device_class}];
  boundary = std::max(boundary, before_us);
  return absl::OkStatus();
}

absl::Status MemoryTuningDatabase::KeepDeviceClasses(
    const std::vector<const DeviceInfo*>& devices) {
  // One device (fingerprint), one class, as the SQLite database keeps it; all or nothing.
  std::map<std::string, std::string> classes = device_classes_;
  for (const DeviceInfo* d : devices) {
    auto [it, fresh] = classes.emplace(d->FingerprintHash(), d->device_class);
    if (!fresh && it->second != d->device_class) return DeviceClassConflict(*d, it->second);
  }
  device_classes_ = std::move(classes);
  return absl::OkStatus();
}

absl::Status MemoryTuningDatabase::AddTelemetry(const std::vector<TelemetryReport>& reports) {
  for (const TelemetryReport& r : reports) KTUNE_RETURN_IF_ERROR(ValidateTelemetry(r));
  absl::MutexLock lock(&mu_);
  std::vector<const DeviceInfo*> devices;
  for (const TelemetryReport& r : reports) devices.push_back(&r.device);
  KTUNE_RETURN_IF_ERROR(KeepDeviceClasses(devices));
  telemetry_.insert(telemetry_.end(), reports.begin(), reports.end());
  return absl::OkStatus();
}

absl::Status MemoryTuningDatabase::ForEachTelemetry(
    const std::function<absl::Status(const TelemetryReport&)>& fn) {
  std::vector<TelemetryReport> reports;
  {
    absl::MutexLock lock(&mu_);
    reports = telemetry_;
  }
  // Outside the lock: `fn` may query this database.
  for (const TelemetryReport& r : reports) KTUNE_RETURN_IF_ERROR(fn(r));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TaskKey>> MemoryTuningDatabase::ListTasks() {
  absl::MutexLock lock(&mu_);
  std::vector<TaskKey> tasks;
  for (const Record& r : records_) {
    TaskKey t{r.kernel, r.kernel_version, r.problem, r.device.device_class};
    bool known = std::any_of(tasks.begin(), tasks.end(),
                             [&](const TaskKey& x) { return TaskOrder(x) == TaskOrder(t); });
    if (!known) tasks.push_back(std::move(t));
  }
  std::sort(tasks.begin(), tasks.end(),
            [](const TaskKey& a, const TaskKey& b) { return TaskOrder(a) < TaskOrder(b); });
  return tasks;
}

absl::StatusOr<std::vector<TuningDatabase::SourceTaskSummary>>
MemoryTuningDatabase::SummarizeSource(const std::string& source) {
  absl::MutexLock lock(&mu_);
  std::map<decltype(TaskOrder(TaskKey{})), SourceTaskSummary> by_task;
  for (const Record& r : records_) {
    if (r.source != source) continue;
    TaskKey t{r.kernel, r.kernel_version, r.problem, r.device.device_class};
    SourceTaskSummary& s = by_task[TaskOrder(t)];
    if (s.records++ == 0) s.task = std::move(t);
    if (r.status != MeasurementStatus::kOk) ++s.failed;
    if (r.time_ms && (!s.best_ms || *r.time_ms < *s.best_ms)) {
      s.best_ms = r.time_ms;
      s.best_config = r.config;
    }
  }
  std::vector<SourceTaskSummary> out;
  for (auto& [key, s] : by_task) out.push_back(std::move(s));
  return out;
}

absl::Status MemoryTuningDatabase::ForEachRecord(
    const std::function<absl::Status(const Record&)>& fn) {
  std::vector<Record> snapshot;
  {
    absl::MutexLock lock(&mu_);
    snapshot = records_;
  }
  for (const Record& r : snapshot) KTUNE_RETURN_IF_ERROR(fn(r));
  return absl::OkStatus();
}

absl::StatusOr<TuningDatabase::RecordPage> MemoryTuningDatabase::RecordsAfter(int64_t after,
                                                                              size_t limit) {
  absl::MutexLock lock(&mu_);
  RecordPage page;
  page.last = after;
  // The position is the index in records_ plus one (records are only ever appended).
  for (int64_t i = std::max<int64_t>(after, 0);
       i < static_cast<int64_t>(records_.size()) && page.records.size() < limit; ++i) {
    page.records.push_back(records_[i]);
    page.last = i + 1;
  }
  return page;
}

absl::StatusOr<DatabaseStats> MemoryTuningDatabase::Stats() {
  absl::MutexLock lock(&mu_);
  DatabaseStats s;
  std::set<std::pair<std::string, std::string>> kernels;
  std::set<std::string> workloads, devices;
  for (const Record& r : records_) {
    kernels.insert({r.kernel, r.kernel_version});
    workloads.insert(
        absl::StrCat(r.kernel, "\n", r.kernel_version, "\n", CanonicalJson(r.problem)));
    devices.insert(r.device.FingerprintHash());
    ++s.records_by_status[std::string(StatusName(r.status))];
  }
  s.kernels = static_cast<int64_t>(kernels.size());
  s.workloads = static_cast<int64_t>(workloads.size());
  s.devices = static_cast<int64_t>(devices.size());
  s.records = static_cast<int64_t>(records_.size());
  s.jobs = static_cast<int64_t>(jobs_.size());
  return s;
}

absl::StatusOr<int64_t> MemoryTuningDatabase::CreateJob(const Job& job) {
  absl::MutexLock lock(&mu_);
  Job stored = job;
  stored.id = next_job_id_++;
  stored.state = JobState::kQueued;
  stored.created_at_us = stored.updated_at_us = absl::ToUnixMicros(absl::Now());
  jobs_[stored.id] = stored;
  return stored.id;
}

absl::StatusOr<Job> MemoryTuningDatabase::GetJob(int64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job ", id));
  return it->second;
}

absl::StatusOr<std::vector<TuningDatabase::JobSummary>> MemoryTuningDatabase::ListJobSummaries() {
  absl::MutexLock lock(&mu_);
  std::vector<JobSummary> out;
  for (auto it = jobs_.rbegin(); it != jobs_.rend(); ++it) {
    JobSummary summary;
    summary.job = it->second;
    summary.job.tasks.clear();
    summary.task_count = static_cast<int64_t>(it->second.tasks.size());
    for (const JobTask& t : it->second.tasks) {
      summary.measurements_done += t.measurements_done;
      summary.measurements_total += t.budget;
    }
    out.push_back(std::move(summary));
  }
  return out;
}

absl::Status MemoryTuningDatabase::SetJobState(int64_t id, JobState state,
                                               const std::string& message) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job ", id));
  if (!IsAllowedJobTransition(it->second.state, state)) {
    return absl::FailedPreconditionError(absl::StrCat("job ", id, " cannot go from ",
                                                      JobStateName(it->second.state), " to ",
                                                      JobStateName(state)));
  }
  it->second.state = state;
  it->second.message = message;
  it->second.updated_at_us = absl::ToUnixMicros(absl::Now());
  return absl::OkStatus();
}

absl::Status MemoryTuningDatabase::UpdateJobTasks(int64_t job_id,
                                                  const std::vector<JobTaskProgress>& progress) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job ", job_id));
  std::vector<JobTask>& tasks = it->second.tasks;
  for (const JobTaskProgress& p : progress) {
    if (p.task_index < 0 || p.task_index >= static_cast<int>(tasks.size())) {
      return absl::NotFoundError(absl::StrCat("job ", job_id, " has no task ", p.task_index));
    }
  }
  for (const JobTaskProgress& p : progress) {
    tasks[p.task_index].state = p.state;
    tasks[p.task_index].measurements_done =
        std::max(tasks[p.task_index].measurements_done, p.measurements_done);
  }
  it->second.updated_at_us = absl::ToUnixMicros(absl::Now());
  return absl::OkStatus();
}

absl::Status MemoryTuningDatabase::SaveCheckpoint(const std::string& key, const std::string& blob) {
  absl::MutexLock lock(&mu_);
  checkpoints_[key] = blob;
  return absl::OkStatus();
}

absl::StatusOr<std::string> MemoryTuningDatabase::LoadCheckpoint(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = checkpoints_.find(key);
  if (it == checkpoints_.end())
    return absl::NotFoundError(absl::StrCat("no checkpoint '", key, "'"));
  return it->second;
}

}  // namespace ktune
