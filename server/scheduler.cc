#include "server/scheduler.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/event_log.h"
#include "common/status_macros.h"
#include "measurer/measurer.h"
#include "proto/convert.h"

namespace ktune {

struct Scheduler::TaskRun {
  int index = 0;
  TaskKey task;
  std::string language;        // of its registry kernel; empty: not in the registry (replays)
  bool client_kernel = false;  // a kernel a client registered
  int64_t budget = 0;
  int64_t done = 0;  // records of this job's task stored
  int64_t failed = 0;
  std::optional<double> best_ms;
  Configuration best_config;
  double flops = 0;
  JobState state = JobState::kQueued;
  std::string error;  // why it failed
  // Set when a worker of the class first leases.
  std::unique_ptr<TaskSearch> search;
  std::shared_ptr<const SearchSpace> space;
  absl::Time started, last_result;
  std::vector<Point> batch;                         // the search's current batch
  std::vector<std::optional<Observation>> results;  // per batch position
  std::deque<size_t> queued;                        // batch positions not leased
  int64_t in_flight = 0;                            // leased, not reported
  bool exhausted = false;                           // the search has nothing left
};

struct Scheduler::JobRun {
  Job job;
  uint64_t seed = 1;
  int batch_size = 0;  // 0: SchedulerOptions'
  int threads = 0;
  std::optional<double> agent_share;        // unset: TaskSearch's default
  std::optional<absl::Time> wall_deadline;  // JobRequest::wall_seconds after submission
  bool out_of_time = false;                 // past wall_deadline: nothing more is leased
  double pass = 0;                          // stride scheduling: lowest pass leases next
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
  WorkerCapabilities capabilities;
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

// A worker's times, as IsValidTimeMs and kMaxRepeatTimes say.
absl::Status ValidateTimes(const v1::CandidateResult& r) {
  if (r.repeat_times_ms_size() > kMaxRepeatTimes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "candidate ", r.candidate_id(), " has ", r.repeat_times_ms_size(), " times; at most 1024"));
  }
  for (double t : r.repeat_times_ms()) {
    if (!IsValidTimeMs(t)) {
      return absl::InvalidArgumentError(
          absl::StrCat("candidate ", r.candidate_id(), " has the time ", t,
                       " ms; times must be finite and above zero; nothing was stored"));
    }
  }
  return absl::OkStatus();
}

// Whether a worker with `can` builds and runs a kernel in `language` (empty: not a registry
// kernel), registered by a client or not.
bool CanMeasure(const WorkerCapabilities& can, const std::string& language, bool client_kernel) {
  if (client_kernel && !can.client_kernels) return false;
  if (language.empty() || can.languages.empty()) return true;
  return std::find(can.languages.begin(), can.languages.end(), language) != can.languages.end();
}

bool IsFinal(JobState s) {
  return s == JobState::kDone || s == JobState::kFailed || s == JobState::kCancelled;
}

}  // namespace

Scheduler::Scheduler(TuningDatabase* db, const TaskSpaces* spaces, SchedulerOptions options)
    : db_(db), spaces_(spaces), options_(std::move(options)) {}

Scheduler::~Scheduler() = default;

absl::Status Scheduler::AddJobRun(Job job) {
  auto run = std::make_unique<JobRun>();
  // The run options are kept in the stored spec: {"seed": N, "batch_size": B, "threads": T}.
  const nlohmann::json spec = nlohmann::json::parse(job.spec_json, nullptr, false);
  if (spec.is_object()) {
    run->seed = spec.value("seed", uint64_t{1});
    run->batch_size = spec.value("batch_size", 0);
    run->threads = spec.value("threads", 0);
    if (spec.contains("agent_share") && spec["agent_share"].is_number()) {
      run->agent_share = spec["agent_share"].get<double>();
    }
    if (const int64_t wall = spec.value("budget_wall_seconds", int64_t{0}); wall > 0) {
      run->wall_deadline = absl::FromUnixMicros(job.created_at_us) + absl::Seconds(wall);
    }
  }
  run->pass = pass_floor_;
  run->started = options_.now();
  for (size_t i = 0; i < job.tasks.size(); ++i) {
    TaskRun t;
    t.index = static_cast<int>(i);
    t.task = job.tasks[i].task;
    t.budget = job.tasks[i].budget;
    t.state = job.tasks[i].state;
    t.flops = spaces_->Flops(t.task);
    if (const KernelDefinition* k = spaces_->registry().Find(t.task.kernel); k != nullptr) {
      t.language = k->language;
      t.client_kernel = !k->builtin;
    }
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
    LogEvent("job_recovered",
             {{"job_id", std::to_string(job.id)}, {"state", std::string(JobStateName(job.state))}});
    KTUNE_RETURN_IF_ERROR(AddJobRun(std::move(job)));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Scheduler::Submit(const JobRequest& r) {
  if (r.tasks.empty()) return absl::InvalidArgumentError("a job needs at least one task");
  if (static_cast<int64_t>(r.tasks.size()) > kMaxJobTasks) {
    return absl::InvalidArgumentError(
        absl::StrCat("a job has at most 65,536 tasks; this one has ", r.tasks.size()));
  }
  if (r.budget < 1 || r.budget > 1'000'000) {
    return absl::InvalidArgumentError("budget must be between 1 and 1,000,000 per task");
  }
  if (r.priority < 0 || r.priority > 100) {
    return absl::InvalidArgumentError("priority must be between 0 and 100");
  }
  if (r.batch_size < 0 || r.batch_size > 1024) {
    return absl::InvalidArgumentError("batch_size must be between 1 and 1024 (0: the default)");
  }
  if (r.threads < 0 || r.threads > 1024) {
    return absl::InvalidArgumentError("threads must be between 1 and 1024 (0: any)");
  }
  if (r.agent_share && !(*r.agent_share >= 0 && *r.agent_share <= 10)) {
    return absl::InvalidArgumentError("agent_share must be between 0 (no limit) and 10");
  }
  if (r.wall_seconds < 0 || r.wall_seconds > kMaxJobWallSeconds) {
    return absl::InvalidArgumentError(
        "budget_wall_seconds must be between 0 (no limit) and 31,536,000 (a year)");
  }
  KTUNE_RETURN_IF_ERROR(MakeStrategy(r.strategy).status());
  Job job;
  job.name = r.name;
  nlohmann::json spec = nlohmann::json::parse(r.spec_json, nullptr, false);
  if (!spec.is_object()) spec = nlohmann::json::object();
  spec["seed"] = r.seed;
  if (r.batch_size > 0) spec["batch_size"] = r.batch_size;
  if (r.threads > 0) spec["threads"] = r.threads;
  if (r.agent_share) spec["agent_share"] = *r.agent_share;
  if (r.wall_seconds > 0) spec["budget_wall_seconds"] = r.wall_seconds;
  job.spec_json = spec.dump();
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
  KTUNE_RETURN_IF_ERROR(AddJobRun(std::move(job)));
  return id;
}

absl::StatusOr<Scheduler::JobRun*> Scheduler::FindJob(int64_t id) {
  auto it = jobs_.find(id);
  if (it != jobs_.end()) return it->second.get();
  // A job that ended is only in the database: it exists, but there is nothing left to change.
  if (absl::StatusOr<Job> ended = db_->GetJob(id); ended.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id, " has already ended (", JobStateName(ended->state), ")"));
  }
  return absl::NotFoundError(absl::StrCat("no job ", id));
}

absl::Status Scheduler::StillOpen(const JobRun& run, absl::string_view action) const {
  if (!IsFinal(run.job.state)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "job ", run.job.id, " is ", JobStateName(run.job.state), " and cannot be ", action));
}

JobStatus Scheduler::StatusOf(const JobRun& run) const {
  JobStatus s;
  s.job = run.job;
  for (const TaskRun& t : run.tasks) {
    TaskStatus ts{t.task, t.state, t.budget, t.done, t.failed, t.best_ms, t.best_config, t.flops};
    if (t.search != nullptr) {
      ts.prior_records = t.search->prior_records();
      ts.warm_started = t.search->warm_started();
      ts.agent_seconds = t.search->agent_seconds();
      ts.tuning_seconds = std::max(0.0, absl::ToDoubleSeconds(t.last_result - t.started));
    }
    s.tasks.push_back(std::move(ts));
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
  if (auto it = finished_.find(id); it != finished_.end()) return it->second;
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
  // A cancelled job stays in memory until its last leases are reported or expire.
  if (job->job.state == JobState::kCancelled) return StatusOf(*job);
  KTUNE_RETURN_IF_ERROR(db_->SetJobState(id, JobState::kCancelled, "cancelled by a client"));
  LogEvent("job_cancelled", {{"job_id", std::to_string(id)}});
  job->job.state = JobState::kCancelled;
  job->job.message = "cancelled by a client";
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
  if (!leased) Forget(id);
  return s;
}

absl::StatusOr<JobStatus> Scheduler::Pause(int64_t id) {
  absl::MutexLock lock(&mu_);
  KTUNE_ASSIGN_OR_RETURN(JobRun * job, FindJob(id));
  KTUNE_RETURN_IF_ERROR(StillOpen(*job, "paused"));
  if (job->job.state == JobState::kPaused) return StatusOf(*job);
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
  KTUNE_RETURN_IF_ERROR(StillOpen(*job, "resumed"));
  if (job->job.state != JobState::kPaused) return StatusOf(*job);
  KTUNE_RETURN_IF_ERROR(db_->SetJobState(id, JobState::kRunning, ""));
  job->job.state = JobState::kRunning;
  job->pass = std::max(job->pass, pass_floor_);  // no catching up on the time it was paused
  return StatusOf(*job);
}

std::string Scheduler::RegisterWorker(const DeviceInfo& device, const std::string& host, int cores,
                                      WorkerCapabilities capabilities) {
  absl::MutexLock lock(&mu_);
  static std::mt19937_64 rng(std::random_device{}());
  std::string id = absl::StrCat("w", next_id_++, "-", rng() % 1000000);
  workers_[id] =
      WorkerRun{device, std::move(capabilities), host, std::max(1, cores), options_.now()};
  LogEvent("worker_registered", {{"worker_id", id},
                                 {"device_class", device.device_class},
                                 {"host", host},
                                 {"cores", std::to_string(cores)}});
  return id;
}

absl::Status Scheduler::InitTask(JobRun& job, TaskRun& t, int cores) {
  TaskSearch::Options search;
  search.strategy = job.job.strategy;
  search.seed = job.seed + t.index;
  search.batch_size = job.batch_size > 0 ? job.batch_size : options_.batch_size;
  search.checkpoint_every = options_.checkpoint_every;
  search.threads = job.threads;
  if (job.agent_share) search.max_agent_share = *job.agent_share;
  KTUNE_ASSIGN_OR_RETURN(
      t.search, TaskSearch::Create(db_, *spaces_, t.task, search, cores, t.budget - t.done));
  t.space = t.search->space();
  t.started = t.last_result = options_.now();
  return absl::OkStatus();
}

absl::Status Scheduler::Refill(JobRun& job, TaskRun& t) {
  if (!t.queued.empty() || t.in_flight > 0 || t.exhausted) return absl::OkStatus();
  if (t.done >= t.budget) return absl::OkStatus();
  KTUNE_ASSIGN_OR_RETURN(std::vector<Point> batch, t.search->NextBatch());
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

absl::Status Scheduler::FailTask(JobRun& job, TaskRun& t, const absl::Status& why) {
  LogEvent("task_failed", {{"job_id", std::to_string(job.job.id)},
                           {"task", std::to_string(t.index)},
                           {"reason", std::string(why.message())}});
  t.state = JobState::kFailed;
  t.error = absl::StrCat("task ", t.index, " (", t.task.kernel, " on ", t.task.device_class,
                         "): ", why.message());
  t.queued.clear();
  return db_->UpdateJobTask(job.job.id, t.index, t.state, t.done);
}

void Scheduler::Forget(int64_t id) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  JobStatus last = StatusOf(*it->second);
  last.job.updated_at_us = absl::ToUnixMicros(options_.now());
  finished_[id] = std::move(last);
  while (finished_.size() > kKeepFinished) finished_.erase(finished_.begin());
  jobs_.erase(it);
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
      // Out of wall time: the expiry tick (StopJobsOutOfTime) ends it.
      if (job->out_of_time || (job->wall_deadline && *job->wall_deadline <= worker.last_seen)) {
        continue;
      }
      if (chosen != nullptr && job->pass >= chosen->pass) continue;
      for (TaskRun& t : job->tasks) {
        if (t.task.device_class != worker.device.device_class || IsFinal(t.state)) continue;
        if (!CanMeasure(worker.capabilities, t.language, t.client_kernel)) continue;
        absl::Status ready =
            t.search == nullptr ? InitTask(*job, t, worker.cores) : absl::OkStatus();
        if (ready.ok()) ready = Refill(*job, t);
        if (!ready.ok()) {
          KTUNE_RETURN_IF_ERROR(FailTask(*job, t, ready));
          continue;
        }
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
    if (!IsFinal(t.state) && !job->second->out_of_time && !t.results[item.position]) {
      t.queued.push_front(item.position);
    }
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
  absl::flat_hash_set<std::string> seen;
  for (const v1::CandidateResult& r : results) {
    auto it = lease.items.find(r.candidate_id());
    if (it == lease.items.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("candidate ", r.candidate_id(), " is not in lease ", lease_id));
    }
    if (!seen.insert(r.candidate_id()).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "candidate ", r.candidate_id(), " appears twice in the report; nothing was stored"));
    }
    KTUNE_RETURN_IF_ERROR(ValidateTimes(r));
    const LeaseRun::Item& item = it->second;
    auto job = jobs_.find(item.job_id);
    if (job == jobs_.end()) {  // cannot happen while the lease holds it; refuse, don't crash
      return absl::InternalError(
          absl::StrCat("the job of candidate ", r.candidate_id(), " is gone; nothing was stored"));
    }
    TaskRun& t = job->second->tasks[item.task];
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
  if (w != workers_.end()) {
    w->second.measurements += static_cast<int64_t>(records.size());
    w->second.last_seen = options_.now();
  }
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
    t.last_result = options_.now();
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
      // A complete batch goes to the search at once: the last one too, before it finishes.
      const bool complete = !t.batch.empty() && t.queued.empty() && t.in_flight == 0 &&
                            std::all_of(t.results.begin(), t.results.end(),
                                        [](const auto& r) { return r.has_value(); });
      if (complete && !IsFinal(t.state)) {
        std::vector<Observation> observations;
        for (const auto& r : t.results) observations.push_back(*r);
        t.batch.clear();
        t.results.clear();
        if (absl::Status s = t.search->Complete(observations); !s.ok()) {
          KTUNE_RETURN_IF_ERROR(FailTask(*it->second, t, s));
        }
      }
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
        (t.done >= t.budget || t.exhausted || job.out_of_time)) {
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
      std::string why;  // of the first failed task
      for (const TaskRun& t : job.tasks) {
        if (t.state == JobState::kFailed && why.empty()) {
          why = t.error.empty() ? "a task could not be set up (unknown space for its device)"
                                : t.error;
        }
      }
      const bool any_failed = !why.empty();
      if (!any_failed && job.out_of_time) why = "its wall-time budget ran out";
      KTUNE_RETURN_IF_ERROR(
          db_->SetJobState(id, any_failed ? JobState::kFailed : JobState::kDone, why));
      job.job.state = any_failed ? JobState::kFailed : JobState::kDone;
      job.job.message = why;
      int64_t done = 0;
      for (const TaskRun& t : job.tasks) done += t.done;
      LogEvent("job_finished", {{"job_id", std::to_string(id)},
                                {"state", any_failed ? "failed" : "done"},
                                {"measurements", std::to_string(done)}});
    }
    Forget(id);
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
  const absl::Time now = options_.now();
  for (const auto& [id, w] : workers_) {
    const int held = leases.count(id) ? leases[id] : 0;
    out.push_back({id, w.device, w.host, held > 0, now - w.last_seen > options_.lease_timeout,
                   held, w.last_seen, w.measurements});
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
  const absl::Time now = options_.now();
  for (const auto& [id, w] : workers_) {
    const char* state = now - w.last_seen > options_.lease_timeout ? "lost"
                        : measuring.count(id)                      ? "measuring"
                                                                   : "idle";
    ++c.workers[{w.device.device_class, state}];
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
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (now - it->second.last_seen > kForgetLostWorkersAfter) {
      LogEvent("lost_worker_dropped", {{"worker_id", it->first}});
      workers_.erase(it++);
    } else {
      ++it;
    }
  }
  // Cancelled jobs whose last leases are gone leave memory.
  std::vector<int64_t> gone;
  for (const auto& [id, job] : jobs_) {
    bool leased = false;
    for (const TaskRun& t : job->tasks) leased |= t.in_flight > 0;
    if (job->job.state == JobState::kCancelled && !leased) gone.push_back(id);
  }
  for (int64_t id : gone) Forget(id);
  if (absl::Status s = StopJobsOutOfTime(); !s.ok()) {
    LogEvent("wall_time_check_failed", {{"reason", std::string(s.message())}});
  }
}

absl::Status Scheduler::StopJobsOutOfTime() {
  const absl::Time now = options_.now();
  std::vector<int64_t> ending;
  for (auto& [id, job] : jobs_) {
    if (IsFinal(job->job.state)) continue;
    if (!job->out_of_time && job->wall_deadline && *job->wall_deadline <= now) {
      job->out_of_time = true;
      for (TaskRun& t : job->tasks) t.queued.clear();
      LogEvent("job_out_of_time", {{"job_id", std::to_string(id)}});
    }
    if (job->out_of_time) ending.push_back(id);
  }
  for (int64_t id : ending) {
    auto it = jobs_.find(id);
    if (it != jobs_.end()) KTUNE_RETURN_IF_ERROR(FinishIfDone(*it->second));
  }
  return absl::OkStatus();
}

}  // namespace ktune
