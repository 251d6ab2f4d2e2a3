#include "server/scheduler.h"

#include <algorithm>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/event_log.h"
#include "common/status_macros.h"
#include "measurer/measurer.h"
#include "proto/convert.h"

namespace ktune {

struct Scheduler::TaskRun {
  int index = 0;
  TaskKey task;
  int64_t budget = 0;
  int64_t done = 0;  // records of this job's task stored
  int64_t failed = 0;
  std::optional<double> best_ms;
  Configuration best_config;
  double flops = 0;
  JobState state = JobState::kQueued;
  std::shared_ptr<const SearchSpace> space;  // set when a worker of the class first leases
  std::unique_ptr<SearchStrategy> strategy;
  std::vector<Point> batch;                         // the strategy's current batch
  std::vector<std::optional<Observation>> results;  // per batch position
  std::deque<size_t> queued;                        // batch positions not leased
  int64_t in_flight = 0;                            // leased, not reported
  bool exhausted = false;                           // the strategy has nothing left
};

struct Scheduler::JobRun {
  Job job;
  uint64_t seed = 1;
  double pass = 0;  // stride scheduling: lowest pass leases next
  std::vector<TaskRun> tasks;
  absl::Time started;
  int64_t done_at_start = 0;
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
};

struct Scheduler::WorkerRun {
  DeviceInfo device;
  std::string host;
  int cores = 1;
  absl::Time last_seen;
  int64_t measurements = 0;
};

namespace {

std::string JobSource(int64_t job_id) { return absl::StrCat("job:", job_id); }

// A task's progress in one job, from the records the job stored (source "job:<id>").
absl::StatusOr<TaskStatus> CountJobRecords(TuningDatabase& db, int64_t job_id,
                                           const TaskKey& task) {
  TaskStatus t;
  t.task = task;
  KTUNE_ASSIGN_OR_RETURN(std::vector<Record> records, db.TaskRecords(task));
  for (const Record& r : records) {
    if (r.source != JobSource(job_id)) continue;
    ++t.done;
    if (r.status != MeasurementStatus::kOk) ++t.failed;
    if (r.time_ms && (!t.best_ms || *r.time_ms < *t.best_ms)) {
      t.best_ms = r.time_ms;
      t.best_config = r.config;
    }
  }
  return t;
}

bool IsFinal(JobState s) {
  return s == JobState::kDone || s == JobState::kFailed || s == JobState::kCancelled;
}

}  // namespace

Scheduler::Scheduler(TuningDatabase* db, const TaskSpaces* spaces, SchedulerOptions options)
    : db_(db), spaces_(spaces), options_(std::move(options)) {}

Scheduler::~Scheduler() = default;

absl::Status Scheduler::AddJobRun(Job job, uint64_t seed) {
  auto run = std::make_unique<JobRun>();
  run->seed = seed;
  run->pass = pass_floor_;
  run->started = options_.now();
  for (size_t i = 0; i < job.tasks.size(); ++i) {
    TaskRun t;
    t.index = static_cast<int>(i);
    t.task = job.tasks[i].task;
    t.budget = job.tasks[i].budget;
    t.state = job.tasks[i].state;
    t.flops = spaces_->Flops(t.task);
    // Progress is recounted from the records this job stored: exact after a crash.
    KTUNE_ASSIGN_OR_RETURN(TaskStatus counted, CountJobRecords(*db_, job.id, t.task));
    t.done = counted.done;
    t.failed = counted.failed;
    t.best_ms = counted.best_ms;
    t.best_config = counted.best_config;
    run->done_at_start += t.done;
    run->tasks.push_back(std::move(t));
  }
  run->job = std::move(job);
  const int64_t id = run->job.id;
  jobs_[id] = std::move(run);
  return FinishIfDone(*jobs_[id]);
}

absl::Status Scheduler::Recover() {
  absl::MutexLock lock(&mu_);
  KTUNE_ASSIGN_OR_RETURN(std::vector<Job> jobs, db_->ListJobs());
  for (Job& job : jobs) {
    if (IsFinal(job.state)) continue;
    uint64_t seed = 1;
    // The seed is kept in the stored spec: {"seed": N, ...}.
    if (auto pos = job.spec_json.find("\"seed\":"); pos != std::string::npos) {
      absl::SimpleAtoi(
          job.spec_json.substr(pos + 7, job.spec_json.find_first_of(",}", pos) - pos - 7), &seed);
    }
    LogEvent("job_recovered",
             {{"job_id", std::to_string(job.id)}, {"state", std::string(JobStateName(job.state))}});
    KTUNE_RETURN_IF_ERROR(AddJobRun(std::move(job), seed));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Scheduler::Submit(const JobRequest& r) {
  if (r.tasks.empty()) return absl::InvalidArgumentError("a job needs at least one task");
  if (r.budget < 1 || r.budget > 1'000'000) {
    return absl::InvalidArgumentError("budget must be between 1 and 1,000,000 per task");
  }
  if (r.priority < 0 || r.priority > 100) {
    return absl::InvalidArgumentError("priority must be between 0 and 100");
  }
  KTUNE_RETURN_IF_ERROR(MakeStrategy(r.strategy).status());
  Job job;
  job.name = r.name;
  job.spec_json = r.spec_json;
  job.strategy = r.strategy;
  job.priority = r.priority;
  job.created_at_us = job.updated_at_us = absl::ToUnixMicros(options_.now());
  for (const TaskKey& t : r.tasks) job.tasks.push_back({t, JobState::kQueued, r.budget, 0});
  absl::MutexLock lock(&mu_);
  KTUNE_ASSIGN_OR_RETURN(job.id, db_->CreateJob(job));
  const int64_t id = job.id;
  LogEvent("job_submitted", {{"job_id", std::to_string(id)},
                             {"name", r.name},
                             {"tasks", std::to_string(r.tasks.size())},
                             {"budget", std::to_string(r.budget)},
                             {"strategy", r.strategy},
                             {"priority", std::to_string(r.priority)}});
  KTUNE_RETURN_IF_ERROR(AddJobRun(std::move(job), r.seed));
  return id;
}

absl::StatusOr<Scheduler::JobRun*> Scheduler::FindJob(int64_t id) {
  auto it = jobs_.find(id);
  if (it != jobs_.end()) return it->second.get();
  // A finished job is only in the database.
  return absl::NotFoundError(absl::StrCat("job ", id, " is not active"));
}

JobStatus Scheduler::StatusOf(const JobRun& run) const {
  JobStatus s;
  s.job = run.job;
  for (const TaskRun& t : run.tasks) {
    s.tasks.push_back(
        {t.task, t.state, t.budget, t.done, t.failed, t.best_ms, t.best_config, t.flops});
    s.done += t.done;
    s.total += t.budget;
  }
  const int64_t since = s.done - run.done_at_start;
  const double seconds = absl::ToDoubleSeconds(options_.now() - run.started);
  if (since > 0 && seconds > 0 && !IsFinal(run.job.state)) {
    s.estimated_seconds_left = (s.total - s.done) * seconds / since;
  }
  return s;
}

absl::StatusOr<JobStatus> Scheduler::GetJob(int64_t id) {
  absl::MutexLock lock(&mu_);
  if (auto it = jobs_.find(id); it != jobs_.end()) return StatusOf(*it->second);
  KTUNE_ASSIGN_OR_RETURN(Job job, db_->GetJob(id));
  JobStatus s;
  for (const JobTask& t : job.tasks) {
    KTUNE_ASSIGN_OR_RETURN(TaskStatus ts, CountJobRecords(*db_, job.id, t.task));
    ts.state = t.state;
    ts.budget = t.budget;
    ts.flops = spaces_->Flops(t.task);
    s.done += ts.done;
    s.total += t.budget;
    s.tasks.push_back(std::move(ts));
  }
  s.job = std::move(job);
  return s;
}

absl::StatusOr<std::vector<JobStatus>> Scheduler::ListJobs() {
  KTUNE_ASSIGN_OR_RETURN(std::vector<Job> jobs, [&] {
    absl::MutexLock lock(&mu_);
    return db_->ListJobs();
  }());
  std::vector<JobStatus> out;
  for (const Job& j : jobs) {
    KTUNE_ASSIGN_OR_RETURN(JobStatus s, GetJob(j.id));
    out.push_back(std::move(s));
  }
  return out;
}

absl::StatusOr<JobStatus> Scheduler::Cancel(int64_t id) {
  absl::MutexLock lock(&mu_);
  KTUNE_ASSIGN_OR_RETURN(JobRun * job, FindJob(id));
  KTUNE_RETURN_IF_ERROR(db_->SetJobState(id, JobState::kCancelled, "cancelled by a client"));
  LogEvent("job_cancelled", {{"job_id", std::to_string(id)}});
  job->job.state = JobState::kCancelled;
  for (TaskRun& t : job->tasks) {
    t.queued.clear();
    if (!IsFinal(t.state)) {
      t.state = JobState::kCancelled;
      KTUNE_RETURN_IF_ERROR(db_->UpdateJobTask(id, t.index, t.state, t.done));
    }
  }
  JobStatus s = StatusOf(*job);
  // Leased candidates are still recorded when reported (their lease keeps the job id).
  bool leased = false;
  for (const auto& [lease_id, lease] : leases_) {
    for (const auto& [cid, item] : lease->items) leased |= item.job_id == id;
  }
  if (!leased) jobs_.erase(id);
  return s;
}

absl::StatusOr<JobStatus> Scheduler::Pause(int64_t id) {
  absl::MutexLock lock(&mu_);
  KTUNE_ASSIGN_OR_RETURN(JobRun * job, FindJob(id));
  if (job->job.state == JobState::kQueued) {
    KTUNE_RETURN_IF_ERROR(db_->SetJobState(id, JobState::kRunning, ""));
    job->job.state = JobState::kRunning;
  }
  KTUNE_RETURN_IF_ERROR(db_->SetJobState(id, JobState::kPaused, "paused by a client"));
  job->job.state = JobState::kPaused;
  return StatusOf(*job);
}

absl::StatusOr<JobStatus> Scheduler::Resume(int64_t id) {
  absl::MutexLock lock(&mu_);
  KTUNE_ASSIGN_OR_RETURN(JobRun * job, FindJob(id));
  KTUNE_RETURN_IF_ERROR(db_->SetJobState(id, JobState::kRunning, ""));
  job->job.state = JobState::kRunning;
  job->pass = std::max(job->pass, pass_floor_);  // no catching up on the time it was paused
  return StatusOf(*job);
}

std::string Scheduler::RegisterWorker(const DeviceInfo& device, const std::string& host,
                                      int cores) {
  absl::MutexLock lock(&mu_);
  static std::mt19937_64 rng(std::random_device{}());
  std::string id = absl::StrCat("w", next_id_++, "-", rng() % 1000000);
  workers_[id] = WorkerRun{device, host, std::max(1, cores), options_.now()};
  LogEvent("worker_registered", {{"worker_id", id},
                                 {"device_class", device.device_class},
                                 {"host", host},
                                 {"cores", std::to_string(cores)}});
  return id;
}

absl::Status Scheduler::InitTask(JobRun& job, TaskRun& t, int cores) {
  KTUNE_ASSIGN_OR_RETURN(t.space, spaces_->Space(t.task, cores));
  KTUNE_ASSIGN_OR_RETURN(t.strategy, MakeStrategy(job.job.strategy));
  KTUNE_RETURN_IF_ERROR(t.strategy->Initialize(*t.space, job.seed + t.index));
  // Everything known about the task (any job, any tune run) is prior knowledge.
  KTUNE_ASSIGN_OR_RETURN(std::vector<Record> known, db_->TaskRecords(t.task));
  std::vector<Observation> prior;
  for (const Record& r : known) {
    absl::StatusOr<Point> p = t.space->ToPoint(r.config);
    if (!p.ok() || !t.space->IsValid(*p)) continue;
    const bool ok = r.status == MeasurementStatus::kOk && r.time_ms.has_value();
    prior.push_back({*p, ok, ok ? *r.time_ms : 0.0});
  }
  KTUNE_RETURN_IF_ERROR(t.strategy->AddPriorResults(prior));
  return t.strategy->PreTuning(std::max<int64_t>(1, t.budget - t.done), options_.batch_size);
}

absl::Status Scheduler::Refill(JobRun& job, TaskRun& t) {
  if (!t.queued.empty() || t.in_flight > 0 || t.exhausted) return absl::OkStatus();
  if (t.done >= t.budget) return absl::OkStatus();
  if (!t.batch.empty()) {  // the previous batch is complete: tell the strategy
    std::vector<Observation> observations;
    for (const auto& r : t.results) observations.push_back(*r);
    KTUNE_RETURN_IF_ERROR(t.strategy->NotifyResults(observations));
    t.batch.clear();
    t.results.clear();
  }
  KTUNE_ASSIGN_OR_RETURN(std::vector<Point> batch, t.strategy->ProposeBatch());
  const int64_t room = t.budget - t.done;
  if (static_cast<int64_t>(batch.size()) > room) batch.resize(room);
  if (batch.empty()) {
    t.exhausted = true;
    return absl::OkStatus();
  }
  t.batch = std::move(batch);
  t.results.assign(t.batch.size(), std::nullopt);
  for (size_t i = 0; i < t.batch.size(); ++i) t.queued.push_back(i);
  return absl::OkStatus();
}

absl::StatusOr<LeaseGrant> Scheduler::Lease(const std::string& worker_id, int max_candidates) {
  if (max_candidates < 1 || max_candidates > 256) {
    return absl::InvalidArgumentError("max_candidates must be between 1 and 256");
  }
  absl::MutexLock lock(&mu_);
  auto w = workers_.find(worker_id);
  if (w == workers_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown worker ", worker_id, "; register again"));
  }
  WorkerRun& worker = w->second;
  worker.last_seen = options_.now();
  auto lease = std::make_unique<LeaseRun>();
  LeaseGrant grant;
  while (static_cast<int>(lease->items.size()) < max_candidates) {
    // The job with the lowest pass that has work for this device class.
    JobRun* chosen = nullptr;
    TaskRun* chosen_task = nullptr;
    for (auto& [id, job] : jobs_) {
      if (job->job.state != JobState::kQueued && job->job.state != JobState::kRunning) continue;
      if (chosen != nullptr && job->pass >= chosen->pass) continue;
      for (TaskRun& t : job->tasks) {
        if (t.task.device_class != worker.device.device_class || IsFinal(t.state)) continue;
        if (t.strategy == nullptr) {
          if (absl::Status s = InitTask(*job, t, worker.cores); !s.ok()) {
            LogEvent("task_failed", {{"job_id", std::to_string(id)},
                                     {"task", std::to_string(t.index)},
                                     {"reason", std::string(s.message())}});
            t.state = JobState::kFailed;
            KTUNE_RETURN_IF_ERROR(db_->UpdateJobTask(id, t.index, t.state, t.done));
            continue;
          }
        }
        KTUNE_RETURN_IF_ERROR(Refill(*job, t));
        if (!t.queued.empty()) {
          chosen = job.get();
          chosen_task = &t;
          break;
        }
      }
    }
    if (chosen == nullptr) break;
    if (chosen->job.state == JobState::kQueued) {
      KTUNE_RETURN_IF_ERROR(db_->SetJobState(chosen->job.id, JobState::kRunning, ""));
      chosen->job.state = JobState::kRunning;
    }
    TaskRun& t = *chosen_task;
    if (t.state == JobState::kQueued) t.state = JobState::kRunning;
    const size_t position = t.queued.front();
    t.queued.pop_front();
    ++t.in_flight;
    chosen->pass += 1.0 / (chosen->job.priority + 1);
    const std::string cid =
        absl::StrCat(chosen->job.id, ".", t.index, ".", position, ".", next_id_++);
    lease->items[cid] = {chosen->job.id, t.index, position};
    v1::Candidate c;
    c.set_candidate_id(cid);
    *c.mutable_task() = ToProto(t.task);
    const Configuration config = t.space->ToConfiguration(t.batch[position]);
    ToProto(config, c.mutable_config()->mutable_params());
    c.set_config_hash(ParamMapHash(config));
    grant.candidates.push_back(std::move(c));
  }
  // Tasks the loop found exhausted or broken may have finished their job.
  std::vector<int64_t> ids;
  for (const auto& [id, job] : jobs_) ids.push_back(id);
  for (int64_t id : ids) {
    if (auto it = jobs_.find(id); it != jobs_.end()) {
      KTUNE_RETURN_IF_ERROR(FinishIfDone(*it->second));
    }
  }
  // Advance the floor so that jobs submitted later start level with the others.
  double floor = 1e300;
  for (const auto& [id, job] : jobs_) floor = std::min(floor, job->pass);
  if (floor < 1e300) pass_floor_ = floor;
  if (lease->items.empty()) return grant;
  lease->id = absl::StrCat("L", next_id_++);
  lease->worker = worker_id;
  lease->expires = options_.now() + options_.lease_timeout;
  grant.lease_id = lease->id;
  grant.expires_in = options_.lease_timeout;
  leases_[lease->id] = std::move(lease);
  return grant;
}

void Scheduler::ReturnToQueue(LeaseRun& lease) {
  for (const auto& [cid, item] : lease.items) {
    auto job = jobs_.find(item.job_id);
    if (job == jobs_.end()) continue;
    TaskRun& t = job->second->tasks[item.task];
    --t.in_flight;
    if (!IsFinal(t.state) && !t.results[item.position]) t.queued.push_front(item.position);
  }
  lease.items.clear();
}

absl::StatusOr<int64_t> Scheduler::Report(const std::string& worker_id, const std::string& lease_id,
                                          const std::vector<v1::CandidateResult>& results) {
  absl::MutexLock lock(&mu_);
  auto l = leases_.find(lease_id);
  if (l == leases_.end() || l->second->worker != worker_id) {
    LogEvent("report_refused", {{"worker_id", worker_id}, {"lease_id", lease_id}});
    return absl::FailedPreconditionError(
        absl::StrCat("lease ", lease_id, " is not held by worker ", worker_id,
                     " (it expired and its candidates were handed out again); nothing was stored"));
  }
  LeaseRun& lease = *l->second;
  const auto w = workers_.find(worker_id);
  const DeviceInfo device = w != workers_.end() ? w->second.device : DeviceInfo{};
  // Validate everything before storing anything.
  std::vector<Record> records;
  std::vector<std::pair<LeaseRun::Item, Observation>> observed;
  const int64_t now_us = absl::ToUnixMicros(options_.now());
  for (const v1::CandidateResult& r : results) {
    auto it = lease.items.find(r.candidate_id());
    if (it == lease.items.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("candidate ", r.candidate_id(), " is not in lease ", lease_id));
    }
    const LeaseRun::Item& item = it->second;
    TaskRun& t = jobs_.at(item.job_id)->tasks[item.task];
    KTUNE_ASSIGN_OR_RETURN(MeasurementStatus status, FromProto(r.status()));
    MeasureResult m;
    m.status = status;
    m.message = r.message().substr(0, 4096);
    m.repeat_times_ms.assign(r.repeat_times_ms().begin(), r.repeat_times_ms().end());
    if (status == MeasurementStatus::kOk) {
      if (m.repeat_times_ms.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("candidate ", r.candidate_id(), " is ok but has no times"));
      }
      std::vector<double> sorted = m.repeat_times_ms;
      std::sort(sorted.begin(), sorted.end());
      const size_t n = sorted.size();
      m.time_ms = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }
    Record rec =
        ToRecord(t.task, device, t.space->ToConfiguration(t.batch[item.position]), m, worker_id);
    rec.measured_at_us = now_us;
    rec.source = JobSource(item.job_id);
    records.push_back(std::move(rec));
    observed.push_back(
        {item, {t.batch[item.position], status == MeasurementStatus::kOk, m.time_ms.value_or(0)}});
  }
  const absl::Time commit_start = absl::Now();
  KTUNE_ASSIGN_OR_RETURN(int64_t added, db_->AddRecords(records));  // committed before the reply
  if (w != workers_.end()) w->second.measurements += static_cast<int64_t>(records.size());
  if (options_.on_stored) {
    options_.on_stored(records, absl::ToDoubleSeconds(absl::Now() - commit_start));
  }
  for (size_t i = 0; i < observed.size(); ++i) {
    const auto& [item, obs] = observed[i];
    JobRun& job = *jobs_.at(item.job_id);
    TaskRun& t = job.tasks[item.task];
    lease.items.erase(results[i].candidate_id());
    --t.in_flight;
    t.results[item.position] = obs;
    ++t.done;
    if (!obs.ok) ++t.failed;
    if (obs.ok && (!t.best_ms || obs.time_ms < *t.best_ms)) {
      t.best_ms = obs.time_ms;
      t.best_config = records[i].config;
    }
  }
  ReturnToQueue(lease);  // candidates the report left out go back
  std::vector<int64_t> touched;
  for (const auto& [item, obs] : observed) touched.push_back(item.job_id);
  std::sort(touched.begin(), touched.end());
  touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
  leases_.erase(l);
  for (int64_t id : touched) {
    auto it = jobs_.find(id);
    if (it == jobs_.end()) continue;
    for (TaskRun& t : it->second->tasks) {
      KTUNE_RETURN_IF_ERROR(db_->UpdateJobTask(id, t.index, t.state, t.done));
    }
    KTUNE_RETURN_IF_ERROR(FinishIfDone(*it->second));
  }
  return added;
}

absl::Status Scheduler::FinishIfDone(JobRun& job) {
  bool all_done = true;
  for (TaskRun& t : job.tasks) {
    if (!IsFinal(t.state) && t.in_flight == 0 && t.queued.empty() &&
        (t.done >= t.budget || t.exhausted)) {
      t.state = JobState::kDone;
      KTUNE_RETURN_IF_ERROR(db_->UpdateJobTask(job.job.id, t.index, t.state, t.done));
    }
    all_done &= IsFinal(t.state);
  }
  int64_t in_flight = 0;
  for (const TaskRun& t : job.tasks) in_flight += t.in_flight;
  if (all_done && in_flight == 0) {
    const int64_t id = job.job.id;
    if (!IsFinal(job.job.state)) {
      if (job.job.state == JobState::kQueued || job.job.state == JobState::kPaused) {
        KTUNE_RETURN_IF_ERROR(db_->SetJobState(id, JobState::kRunning, ""));
      }
      bool any_failed = false;
      for (const TaskRun& t : job.tasks) any_failed |= t.state == JobState::kFailed;
      KTUNE_RETURN_IF_ERROR(db_->SetJobState(
          id, any_failed ? JobState::kFailed : JobState::kDone,
          any_failed ? "a task could not be set up (unknown space for its device)" : ""));
      int64_t done = 0;
      for (const TaskRun& t : job.tasks) done += t.done;
      LogEvent("job_finished", {{"job_id", std::to_string(id)},
                                {"state", any_failed ? "failed" : "done"},
                                {"measurements", std::to_string(done)}});
    }
    jobs_.erase(id);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> Scheduler::Heartbeat(
    const std::string& worker_id, const std::vector<std::string>& lease_ids) {
  absl::MutexLock lock(&mu_);
  auto w = workers_.find(worker_id);
  if (w == workers_.end()) return absl::NotFoundError(absl::StrCat("unknown worker ", worker_id));
  w->second.last_seen = options_.now();
  std::vector<std::string> revoked;
  for (const std::string& id : lease_ids) {
    auto l = leases_.find(id);
    if (l == leases_.end() || l->second->worker != worker_id) {
      revoked.push_back(id);
    } else {
      l->second->expires = options_.now() + options_.lease_timeout;
    }
  }
  return revoked;
}

absl::Status Scheduler::Leave(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second->worker == worker_id) {
      ReturnToQueue(*it->second);
      it = leases_.erase(it);
    } else {
      ++it;
    }
  }
  if (workers_.erase(worker_id) > 0) LogEvent("worker_left", {{"worker_id", worker_id}});
  return absl::OkStatus();
}

std::vector<Scheduler::WorkerStatus> Scheduler::ListWorkers() {
  absl::MutexLock lock(&mu_);
  std::map<std::string, int> leases;
  for (const auto& [id, lease] : leases_) ++leases[lease->worker];
  std::vector<WorkerStatus> out;
  for (const auto& [id, w] : workers_) {
    const int held = leases.count(id) ? leases[id] : 0;
    out.push_back({id, w.device, w.host, held > 0, held, w.last_seen, w.measurements});
  }
  return out;
}

Scheduler::Counts Scheduler::CountNow() {
  absl::MutexLock lock(&mu_);
  Counts c;
  c.active_leases = static_cast<int64_t>(leases_.size());
  for (const auto& [id, job] : jobs_) {
    ++c.jobs[std::string(JobStateName(job->job.state))];
    for (const TaskRun& t : job->tasks) c.queued_candidates += t.queued.size();
  }
  std::map<std::string, bool> measuring;
  for (const auto& [id, lease] : leases_) measuring[lease->worker] = true;
  for (const auto& [id, w] : workers_) {
    ++c.workers[{w.device.device_class, measuring.count(id) ? "measuring" : "idle"}];
  }
  return c;
}

void Scheduler::ExpireLeases() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.now();
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second->expires <= now) {
      LogEvent("lease_expired", {{"lease_id", it->first},
                                 {"worker_id", it->second->worker},
                                 {"candidates", std::to_string(it->second->items.size())}});
      ReturnToQueue(*it->second);
      it = leases_.erase(it);
    } else {
      ++it;
    }
  }
  // Cancelled jobs whose last leases are gone leave memory.
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    bool leased = false;
    for (const TaskRun& t : it->second->tasks) leased |= t.in_flight > 0;
    if (it->second->job.state == JobState::kCancelled && !leased) {
      it = jobs_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace ktune
