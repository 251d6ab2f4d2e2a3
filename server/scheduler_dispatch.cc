#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/event_log.h"
#include "common/hash.h"
#include "common/median.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "measurer/measurer.h"
#include "proto/convert.h"
#include "server/scheduler.h"
#include "server/scheduler_internal.h"

// Lease dispatch (scheduler_internal.h): which candidates a worker gets, what its report
// stores, and the strategy work between the two, which runs without the scheduler's lock.
namespace ktune {

using scheduler_internal::CanMeasure;
using scheduler_internal::IsFinal;
using scheduler_internal::JobSource;

using scheduler_internal::MeasurementOf;
using scheduler_internal::ReportHash;
using scheduler_internal::StoredOrRefused;

uint64_t scheduler_internal::ReportHash(const std::vector<v1::CandidateResult>& results) {
  std::vector<std::string> each;
  for (const v1::CandidateResult& r : results) each.push_back(r.SerializeAsString());
  std::sort(each.begin(), each.end());
  std::string joined;
  for (const std::string& e : each) absl::StrAppend(&joined, e.size(), ":", e, ",");
  return StableHash64(joined);
}

namespace {

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
                       " ms; times must be from 1e-09 to 1e+09 ms; nothing was stored"));
    }
  }
  return absl::OkStatus();
}

// How soon a worker that got nothing asks again while a batch for it is being prepared.
constexpr absl::Duration kRetrySoon = absl::Milliseconds(10);

}  // namespace

absl::Status scheduler_internal::AsReportRefusal(const absl::Status& s) {
  return absl::IsNotFound(s)
             ? absl::FailedPreconditionError(absl::StrCat("nothing was stored: ", s.message()))
             : s;
}

absl::StatusOr<int64_t> scheduler_internal::StoredOrRefused(absl::StatusOr<int64_t> added) {
  if (!added.ok()) return AsReportRefusal(added.status());
  return added;
}

absl::StatusOr<MeasureResult> scheduler_internal::MeasurementOf(
    const v1::CandidateResult& r, bool by_server, std::optional<double> max_rel_error) {
  KTUNE_RETURN_IF_ERROR(ValidateTimes(r));
  if (r.has_max_rel_error() && !(r.max_rel_error() >= 0 && std::isfinite(r.max_rel_error()))) {
    return absl::InvalidArgumentError(
        absl::StrCat("candidate ", r.candidate_id(), " has the error ", r.max_rel_error(),
                     "; errors must be finite and >= 0; nothing was stored"));
  }
  KTUNE_ASSIGN_OR_RETURN(MeasurementStatus status, FromProto(r.status()));
  // Statuses only the server gives: lost (a lease that ended unreported) and too_inaccurate
  // (an error past the job's accuracy budget, which it judges from max_rel_error).
  if ((status == MeasurementStatus::kLost && !by_server) ||
      status == MeasurementStatus::kTooInaccurate) {
    return absl::InvalidArgumentError(
        absl::StrCat("candidate ", r.candidate_id(), ": ", StatusName(status),
                     " is the server's to give (report the error in max_rel_error, or a failure); "
                     "nothing was stored"));
  }
  MeasureResult m;
  m.status = status;
  m.message = Utf8Prefix(r.message(), 4096);
  m.repeat_times_ms.assign(r.repeat_times_ms().begin(), r.repeat_times_ms().end());
  if (status == MeasurementStatus::kOk) {
    if (m.repeat_times_ms.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("candidate ", r.candidate_id(), " is ok but has no times"));
    }
    m.time_ms = Median(m.repeat_times_ms);
  }
  if (r.has_max_rel_error()) m.max_rel_error = r.max_rel_error();
  if (max_rel_error) m = ApplyAccuracyBudget(std::move(m), *max_rel_error);
  return m;
}

void Scheduler::RememberReport(const std::string& key, const std::string& worker, uint64_t report,
                               int64_t stored) {
  const absl::Time now = options_.now();
  if (!reported_leases_.count(key)) reported_order_.push_back(key);
  reported_leases_[key] = {worker, report, stored, now};
  // At least a lease timeout's worth (a worker retries within its lease), and 4,096 leases.
  while (!reported_order_.empty() &&
         (reported_order_.size() > kMaxReportedLeases ||
          (reported_order_.size() > kKeepReportedLeases &&
           now - reported_leases_[reported_order_.front()].at > options_.lease_timeout))) {
    reported_leases_.erase(reported_order_.front());
    reported_order_.pop_front();
  }
}

void Scheduler::CountResult(TaskRun& t, const Observation& obs, const Configuration& config) {
  t.last_result = options_.now();
  ++t.done;
  if (!obs.ok) ++t.failed;
  if (obs.ok && (!t.best_ms || obs.time_ms < *t.best_ms)) {
    t.best_ms = obs.time_ms;
    t.best_config = config;
  }
}

void Scheduler::NoteStoredSinceRecovery(const JobRun& job, TaskRun& t,
                                        const Configuration& config) {
  if (!job.recovered) return;
  if (options_.now() - recovered_at_ > kEarlierLeasesWithin) {
    t.stored_since_recovery.clear();  // no report of an earlier lease is taken any more
    return;
  }
  t.stored_since_recovery.insert(ParamMapHash(config));
}

void Scheduler::QueueIfBatchComplete(JobRun& job, TaskRun& t, std::vector<AgentWork>* work) {
  // A complete batch goes to the search at once (the last one too, before it finishes), which
  // then prepares the next one while workers measure other batches.
  const bool complete =
      !t.batch.empty() && t.queued.empty() && t.in_flight == 0 &&
      std::all_of(t.results.begin(), t.results.end(), [](const auto& r) { return r.has_value(); });
  if (!complete || IsFinal(t.state) || t.agent_busy) return;
  std::vector<Observation> observations;
  for (const auto& r : t.results) observations.push_back(*r);
  t.batch.clear();
  t.results.clear();
  t.expiries.clear();
  QueueNextBatch(job, t, std::move(observations), work);
}

std::string scheduler_internal::UnknownKernelLanguage(const std::string& kernel) {
  return absl::StrCat(kUnknownKernelLanguagePrefix, kernel);
}

bool scheduler_internal::CanMeasure(const WorkerCapabilities& can, const std::string& language,
                                    bool client_kernel) {
  if (client_kernel && !can.client_kernels) return false;
  if (absl::StartsWith(language, kUnknownKernelLanguagePrefix)) return false;
  if (language.empty() || can.languages.empty()) return true;
  return std::find(can.languages.begin(), can.languages.end(), language) != can.languages.end();
}

bool Scheduler::NeedsBatch(const TaskRun& t) {
  return t.search != nullptr && !t.agent_busy && t.queued.empty() && t.in_flight == 0 &&
         !t.exhausted && t.done < t.budget && !IsFinal(t.state);
}

void Scheduler::QueueInit(JobRun& job, TaskRun& t, int cores, std::vector<AgentWork>* work) {
  TaskSearch::Options search;
  search.strategy = job.job.strategy;
  search.seed = job.seed + t.index;
  search.batch_size = job.batch_size > 0 ? job.batch_size : options_.batch_size;
  search.checkpoint_every = options_.checkpoint_every;
  search.threads = job.threads;
  search.make_strategy = options_.make_strategy;
  if (job.agent_share) search.max_agent_share = *job.agent_share;
  search.reverify = job.reverify;
  search.initial = job.initial;
  search.max_rel_error = job.max_rel_error;
  t.agent_busy = true;
  work->push_back([this, job_id = job.job.id, index = t.index, task = t.task, search, cores,
                   budget_left = t.budget - t.done] {
    const absl::Time start = absl::Now();
    absl::StatusOr<std::unique_ptr<TaskSearch>> created =
        TaskSearch::Create(db_, *spaces_, task, search, cores, budget_left);
    std::shared_ptr<TaskSearch> made;
    absl::StatusOr<std::vector<Point>> batch =
        created.ok() ? (made = std::move(*created))->NextBatch()
                     : absl::StatusOr<std::vector<Point>>(created.status());
    if (options_.on_agent_work) options_.on_agent_work("start", absl::Now() - start);
    {
      absl::MutexLock lock(&mu_);
      AfterAgentWork(job_id, index, std::move(made), std::move(batch));
    }
    RequestFlush(/*retry=*/false);
  });
}

void Scheduler::QueueNextBatch(JobRun& job, TaskRun& t,
                               std::optional<std::vector<Observation>> done,
                               std::vector<AgentWork>* work) {
  t.agent_busy = true;
  work->push_back([this, job_id = job.job.id, index = t.index, search = t.search,
                   done = std::move(done)] {
    const absl::Time start = absl::Now();
    const absl::Status completed = done ? search->Complete(*done) : absl::OkStatus();
    absl::StatusOr<std::vector<Point>> batch =
        completed.ok() ? search->NextBatch() : absl::StatusOr<std::vector<Point>>(completed);
    if (options_.on_agent_work) options_.on_agent_work("batch", absl::Now() - start);
    {
      absl::MutexLock lock(&mu_);
      AfterAgentWork(job_id, index, nullptr, std::move(batch));
    }
    RequestFlush(/*retry=*/false);
  });
}

void Scheduler::AfterAgentWork(int64_t job_id, int index, std::shared_ptr<TaskSearch> created,
                               absl::StatusOr<std::vector<Point>> batch) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;  // ended and forgotten meanwhile: nothing to hand out
  JobRun& job = *it->second;
  TaskRun& t = job.tasks[index];
  t.agent_busy = false;
  if (created != nullptr) {
    t.space = created->space();
    t.started = t.last_result = options_.now();
    t.skipped_initial = created->skipped_initial();
  }
  if (const TaskSearch* search = created != nullptr ? created.get() : t.search.get()) {
    t.prior_records = search->prior_records();
    t.warm_started = search->warm_started();
    t.agent_seconds = search->agent_seconds();
  }
  // A task that ended meanwhile (failed, its job cancelled) keeps no search.
  if (created != nullptr && !IsFinal(t.state)) t.search = std::move(created);
  if (!batch.ok()) {
    if (!IsFinal(t.state)) FailTask(job, t, batch.status());
  } else if (!IsFinal(t.state) && !job.out_of_time) {
    std::vector<Point>& points = *batch;
    const int64_t room = t.budget - t.done;
    if (static_cast<int64_t>(points.size()) > room) points.resize(std::max<int64_t>(0, room));
    if (points.empty()) {
      t.exhausted = true;
    } else {
      t.batch = std::move(points);
      t.results.assign(t.batch.size(), std::nullopt);
      t.expiries.assign(t.batch.size(), 0);
      for (size_t i = 0; i < t.batch.size(); ++i) t.queued.push_back(i);
    }
  }
  const std::vector<int> changed = {index};
  FinishIfDone(job, &changed);
}

void Scheduler::RunAgentWork(std::vector<AgentWork> work) {
  for (AgentWork& w : work) agents_.Run(std::move(w));
}

absl::StatusOr<LeaseGrant> Scheduler::Lease(const std::string& worker_id, int max_candidates) {
  if (max_candidates < 1 || max_candidates > 256) {
    return absl::InvalidArgumentError("max_candidates must be between 1 and 256");
  }
  while (true) {
    std::vector<AgentWork> work;
    absl::StatusOr<LeaseGrant> grant = LeaseLocked(worker_id, max_candidates, &work);
    const bool ran_here = agents_.inline_mode() && !work.empty();
    RunAgentWork(std::move(work));
    RequestFlush(/*retry=*/false);  // tasks its inline strategy work ended
    // Inline, the work has just run on this thread: lease again from the batches it made.
    if (!grant.ok() || !grant->lease_id.empty() || !ran_here) return grant;
  }
}

absl::StatusOr<LeaseGrant> Scheduler::LeaseLocked(const std::string& worker_id,
                                                  int max_candidates,
                                                  std::vector<AgentWork>* work) {
  absl::MutexLock lock(&mu_);
  auto w = workers_.find(worker_id);
  if (w == workers_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown worker ", worker_id, "; register again"));
  }
  WorkerRun& worker = w->second;
  worker.last_seen = options_.now();
  auto lease = std::make_unique<LeaseRun>();
  LeaseGrant grant;
  bool preparing = false;  // a batch this worker could measure is being prepared
  const std::string fingerprint_hash = worker.device.FingerprintHash();
  const int max_starting = std::max(options_.max_starting_searches, 2 * options_.agent_threads);
  // A job's pass on this worker's class (0 for a class it has no task on: never chosen there).
  const auto PassOn = [&worker](const JobRun& job) {
    auto it = job.pass.find(worker.device.device_class);
    return it == job.pass.end() ? 0.0 : it->second;
  };
  std::vector<bool> fits;  // per need of the job being looked at
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
      if (chosen != nullptr && PassOn(*job) >= PassOn(*chosen)) continue;
      if (!job->fingerprint_hash.empty() && job->fingerprint_hash != fingerprint_hash) continue;
      if (!job->worker_id.empty() && job->worker_id != worker_id) continue;
      int starting = 0;  // searches of this job and class being created (in index order)
      // Which of the job's needs this worker meets (its class, language, client kernels): a
      // task's check is then an index, not a string compare a task.
      fits.assign(job->needs.size(), false);
      for (size_t n = 0; n < job->needs.size(); ++n) {
        const JobRun::WorkerNeed& need = job->needs[n];
        fits[n] = need.device_class == worker.device.device_class &&
                  CanMeasure(worker.capabilities, need.language, need.client_kernel);
      }
      for (size_t i = job->first_open; i < job->tasks.size(); ++i) {
        TaskRun& t = job->tasks[i];
        if (IsFinal(t.state) || !fits[static_cast<size_t>(t.need)] ||
            (!t.unable_workers.empty() && t.unable_workers.contains(worker_id))) {
          continue;
        }
        if (t.search == nullptr) {
          // Searches start as workers run out of batches, a few at a time, not all at the first
          // lease: see SchedulerOptions::max_starting_searches.
          // (Not while a report of an earlier process's lease commits results of the task:
          // the search would start without them. See ReportEarlierLease.)
          if (!t.agent_busy && t.in_flight == 0 && starting < max_starting) {
            QueueInit(*job, t, worker.cores, work);
          }
          if (t.agent_busy) ++starting;
          preparing |= t.agent_busy;
          continue;  // later tasks may have batches (started by a worker of other languages)
        }
        if (NeedsBatch(t)) QueueNextBatch(*job, t, std::nullopt, work);
        preparing |= t.agent_busy;
        if (!t.queued.empty()) {
          chosen = job.get();
          chosen_task = &t;
          break;
        }
      }
    }
    if (chosen == nullptr) break;
    // Running from here on; the database has it with the first report (JobRun::start_stored).
    if (chosen->job.state == JobState::kQueued) chosen->job.state = JobState::kRunning;
    if (chosen->rate_anchor_pending) {  // measuring begins (again): the time left counts from here
      chosen->rate_anchor_pending = false;
      chosen->rate_since = worker.last_seen;
      chosen->rate_done_at = 0;
      for (const TaskRun& task : chosen->tasks) chosen->rate_done_at += task.done;
    }
    TaskRun& t = *chosen_task;
    const size_t position = t.queued.front();
    // A candidate of a lease that expired twice goes alone from then on: a worker that dies
    // loses its whole lease, and a lease of one tells which candidate it died on (ExpireLeases
    // gives up on a candidate only after an expiry of its own). Once is most often the network
    // or a worker stopped: the lease's candidates go out together again.
    const bool suspect = position < t.expiries.size() && t.expiries[position] >= 2;
    if (suspect && !lease->items.empty()) break;
    if (t.state == JobState::kQueued) t.state = JobState::kRunning;
    t.queued.pop_front();
    ++t.in_flight;
    double& floor = pass_floors_[worker.device.device_class];
    double& pass = chosen->pass[worker.device.device_class];
    floor = std::max(floor, pass);  // the class's virtual time: this job's, served now
    pass += 1.0 / (chosen->job.priority + 1);
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
    if (suspect) break;
  }
  // (A lease ends no job: the strategy work that finds a task exhausted, and the report that
  // completes one, end theirs.)
  if (lease->items.empty()) {
    grant.preparing = preparing;
    if (preparing) grant.retry_after = kRetrySoon;
    return grant;
  }
  lease->id = absl::StrCat("L", next_id_++);
  lease->worker = worker_id;
  lease->expires = options_.now() + options_.lease_timeout;
  grant.lease_id = lease->id;
  grant.expires_in = options_.lease_timeout;
  leases_[lease->id] = std::move(lease);
  return grant;
}

bool Scheduler::AnotherWorkerCouldMeasure(const JobRun& job, const TaskRun& t) const {
  const absl::Time now = options_.now();
  for (const auto& [id, w] : workers_) {
    if (t.unable_workers.contains(id) || now - w.last_seen > options_.lease_timeout) continue;
    if (!job.worker_id.empty() && job.worker_id != id) continue;
    if (w.device.device_class != t.task.device_class) continue;
    if (!job.fingerprint_hash.empty() && job.fingerprint_hash != w.device.FingerprintHash()) {
      continue;
    }
    if (CanMeasure(w.capabilities, t.language, t.client_kernel)) return true;
  }
  return false;
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

absl::StatusOr<int64_t> Scheduler::ReportAs(const std::string& worker_id,
                                            const std::string& lease_id,
                                            const std::vector<v1::CandidateResult>& results,
                                            bool by_server) {
  // 1. Under the lock: check the report and turn it into records; the lease is held meanwhile.
  std::vector<Record> records;
  std::vector<std::pair<LeaseRun::Item, Observation>> observed;
  std::vector<std::string> observed_ids;  // their candidates'
  // Results of tasks the worker cannot measure at all: not stored; their tasks fail.
  std::vector<std::pair<LeaseRun::Item, std::string>> unmeasurable;
  std::vector<std::string> unmeasurable_ids;
  std::vector<JobTaskCount> counts;  // the reported tasks' progress, stored with the records
  {
    absl::MutexLock lock(&mu_);
    if (!by_server && workers_.count(worker_id) == 0) {  // restarted, or forgot a silent worker
      LogEvent("report_refused", {{"worker_id", worker_id}, {"lease_id", lease_id}});
      return absl::NotFoundError(absl::StrCat(
          "unknown worker ", worker_id,
          "; register again and send the report with its lease's candidates (leased)"));
    }
    auto l = leases_.find(lease_id);
    if (l == leases_.end() && !by_server) {
      // A retry of a report that was stored, its reply lost: it read as refused ("nothing was
      // stored"), and the worker logged a failure for measurements the database holds. Only the
      // same results again: other ones were answered "stored" and dropped.
      auto done = reported_leases_.find(lease_id);
      if (done != reported_leases_.end() && done->second.worker == worker_id) {
        if (done->second.report == ReportHash(results)) return done->second.stored;
        return absl::FailedPreconditionError(
            absl::StrCat("lease ", lease_id,
                         " was reported already, with other results; a lease takes one "
                         "report: nothing was stored"));
      }
    }
    // An expired lease its worker may have back (Revive) is checked as it was, and revived only
    // once the report is found storable: a report refused after a revival held the candidates
    // from every other worker for another lease timeout.
    LeaseRun revivable;
    if (l == leases_.end() && !by_server && CanRevive(worker_id, lease_id)) {
      revivable.id = lease_id;
      revivable.worker = worker_id;
      revivable.items = expired_leases_.at(lease_id)->items;
    } else if (l == leases_.end() || l->second->worker != worker_id) {
      LogEvent("report_refused", {{"worker_id", worker_id}, {"lease_id", lease_id}});
      return absl::FailedPreconditionError(absl::StrCat(
          "lease ", lease_id, " is not held by worker ", worker_id,
          " (a lease takes one report, which ends it, and an expired one is handed out again); "
          "nothing was stored"));
    }
    LeaseRun& lease = l != leases_.end() ? *l->second : revivable;
    if (lease.committing) {
      // Most likely this report again, its reply lost to a slow commit: the worker tries again
      // (UNAVAILABLE is transient to it) and is then answered as the first was, or, if the
      // commit failed, stores it. The server's own report of a lost candidate gives way.
      const std::string why =
          absl::StrCat("a report of lease ", lease_id, " is being stored; this one stored nothing");
      return by_server ? absl::FailedPreconditionError(why)
                       : absl::UnavailableError(absl::StrCat(why, ": try again"));
    }
    const auto w = workers_.find(worker_id);
    const DeviceInfo device = w != workers_.end() ? w->second.device : DeviceInfo{};
    // Validate everything before storing anything.
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
      const LeaseRun::Item& item = it->second;
      auto job = jobs_.find(item.job_id);
      if (job == jobs_.end()) {  // cannot happen while the lease holds it; refuse, don't crash
        return absl::InternalError(absl::StrCat("the job of candidate ", r.candidate_id(),
                                                " is gone; nothing was stored"));
      }
      TaskRun& t = job->second->tasks[item.task];
      if (r.task_unmeasurable() && !by_server) {
        unmeasurable.push_back({item, Utf8Prefix(r.message(), 4096)});
        unmeasurable_ids.push_back(r.candidate_id());
        continue;
      }
      KTUNE_ASSIGN_OR_RETURN(const MeasureResult m,
                             MeasurementOf(r, by_server, job->second->max_rel_error));
      const MeasurementStatus status = m.status;
      Record rec = ToRecord(t.task, device, t.space->ToConfiguration(t.batch[item.position]), m,
                            worker_id);
      rec.measured_at_us = now_us;
      rec.source = JobSource(item.job_id);
      records.push_back(std::move(rec));
      observed.push_back({item,
                          {t.batch[item.position], status == MeasurementStatus::kOk,
                           m.time_ms.value_or(0)}});
      observed_ids.push_back(r.candidate_id());
    }
    std::map<std::pair<int64_t, int>, int64_t> per_task;
    for (const auto& [item, obs] : observed) ++per_task[{item.job_id, item.task}];
    for (const auto& [task, n] : per_task) counts.push_back({task.first, task.second, n});
    // Checked above; only the window or the job's wall time, passing in between, can refuse it.
    if (&lease == &revivable && !Revive(worker_id, lease_id)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "lease ", lease_id, " expired and can no longer be given back; nothing was stored"));
    }
    leases_.at(lease_id)->committing = true;
  }
  // 2. Without the lock: commit the records and their tasks' progress in one transaction (the
  // reply waits for it; nothing else does). The progress was a second commit, under the lock:
  // every lease and heartbeat waited for a sync of the file per report.
  const absl::Time commit_start = absl::Now();
  absl::StatusOr<int64_t> added = StoredOrRefused(db_->AddJobRecords(records, counts));
  if (added.ok() && options_.on_stored) {
    options_.on_stored(records, absl::ToDoubleSeconds(absl::Now() - commit_start));
  }
  // 3. Under the lock again: progress, the lease's end, and the strategy work of complete batches.
  std::vector<AgentWork> work;
  {
    absl::MutexLock lock(&mu_);
    auto l = leases_.find(lease_id);  // still there: a committing lease neither expires nor leaves
    LeaseRun& lease = *l->second;
    lease.committing = false;
    if (!added.ok()) {
      // The server's own log says why (a full disk showed only in the worker's log, the job
      // sitting at its count without a word); the lease stands: report again, or it expires
      // (one ExpireLeases kept for its own report of lost candidates expires at the next tick).
      if (lease.expires == absl::InfiniteFuture()) lease.expires = options_.now();
      lease.report_failed = true;
      if (!by_server) lease.worker_report_refused = true;
      LogEvent("report_not_stored", {{"worker_id", worker_id},
                                     {"lease_id", lease_id},
                                     {"records", std::to_string(records.size())},
                                     {"reason", std::string(added.status().message())}});
      if (options_.on_not_stored) options_.on_not_stored(added.status());
      return added.status();
    }
    if (auto w = workers_.find(worker_id); w != workers_.end() && !by_server) {
      w->second.measurements += static_cast<int64_t>(records.size());
      w->second.last_seen = options_.now();
    }
    for (const JobTaskCount& c : counts) {  // the commit stored their start
      if (auto it = jobs_.find(c.job_id); it != jobs_.end()) it->second->start_stored = true;
    }
    for (size_t i = 0; i < observed.size(); ++i) {
      const auto& [item, obs] = observed[i];
      JobRun& job = *jobs_.at(item.job_id);
      TaskRun& t = job.tasks[item.task];
      lease.items.erase(observed_ids[i]);
      --t.in_flight;
      t.results[item.position] = obs;
      CountResult(t, obs, records[i].config);
      NoteStoredSinceRecovery(job, t, records[i].config);
    }
    for (size_t i = 0; i < unmeasurable.size(); ++i) {
      const auto& [item, why] = unmeasurable[i];
      lease.items.erase(unmeasurable_ids[i]);
      JobRun& job = *jobs_.at(item.job_id);
      TaskRun& t = job.tasks[item.task];
      --t.in_flight;
      if (IsFinal(t.state)) continue;
      // One worker's lack (its inputs file, its compiler) is not the task's: another worker
      // takes the candidate, and the task fails only when no live one is left that could.
      t.unable_workers.insert(worker_id);
      if (AnotherWorkerCouldMeasure(job, t)) {
        if (!job.out_of_time && !t.results[item.position]) t.queued.push_front(item.position);
        if (i == 0) {
          LogEvent("task_unmeasurable_on_worker", {{"job_id", std::to_string(item.job_id)},
                                                   {"task", std::to_string(item.task)},
                                                   {"worker_id", worker_id},
                                                   {"reason", why}});
        }
      } else {
        FailTask(job, t,
                 absl::FailedPreconditionError(
                     absl::StrCat("worker ", worker_id, ": ", why,
                                  t.unable_workers.size() > 1
                                      ? absl::StrCat(" (", t.unable_workers.size() - 1,
                                                     " other workers could not measure it either)")
                                      : "")));
      }
    }
    ReturnToQueue(lease);  // candidates the report left out go back
    // The reported tasks, by job: only they changed.
    std::map<int64_t, std::vector<int>> touched;
    for (const auto& [item, obs] : observed) touched[item.job_id].push_back(item.task);
    for (const auto& [item, why] : unmeasurable) touched[item.job_id].push_back(item.task);
    leases_.erase(l);
    if (!by_server) RememberReport(lease_id, worker_id, ReportHash(results), *added);
    for (auto& [id, tasks] : touched) {
      auto it = jobs_.find(id);
      if (it == jobs_.end()) continue;
      std::sort(tasks.begin(), tasks.end());
      tasks.erase(std::unique(tasks.begin(), tasks.end()), tasks.end());
      for (int index : tasks) QueueIfBatchComplete(*it->second, it->second->tasks[index], &work);
      FinishIfDone(*it->second, &tasks);
    }
  }
  RunAgentWork(std::move(work));
  // The jobs and tasks the report ended, stored by the writer thread: the report waits for no
  // other job's writes, nor for a database that refuses them (its records are stored: a refused
  // write fails not the report, but is retried at the tick's request, and logged).
  RequestFlush(/*retry=*/false);
  return *added;
}

}  // namespace ktune
