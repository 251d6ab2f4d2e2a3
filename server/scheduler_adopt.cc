#include <algorithm>
#include <cmath>
#include <map>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/event_log.h"
#include "common/status_macros.h"
#include "proto/convert.h"
#include "server/scheduler.h"
#include "server/scheduler_internal.h"

// Reports of leases an earlier process of the server handed out (scheduler_internal.h): a
// worker measuring when the server restarted registers again and sends its batch with the
// lease's candidates, and the results are stored instead of measured again.
namespace ktune {

using scheduler_internal::CandidateIdsHash;
using scheduler_internal::CanMeasure;
using scheduler_internal::IsFinal;
using scheduler_internal::JobSource;
using scheduler_internal::MeasurementOf;

// One result of an earlier lease, as CheckEarlierLease finds it and the steps after complete it.
struct Scheduler::EarlierResult {
  std::string candidate_id;
  int64_t job_id = 0;
  int task = 0;
  TaskKey key;  // the task's, canonical
  Configuration config;
  MeasureResult measured;
  // The task's space as the scheduler had it (null before its first lease here: built without
  // the lock, for the worker's cores), and the configuration's point in it.
  std::shared_ptr<const SearchSpace> space;
  bool task_space =
      false;  // `space` is the task's own (TaskRun::space): its points are the batch's
  int cores = 1, threads = 0;
  Point point;
  bool duplicate = false;  // the database holds it already
  // Its point is in the task's current batch here, leased to a worker or measured: that
  // worker's report, or the result there, stands for it.
  bool in_batch = false;
  bool stored() const { return !duplicate && !in_batch; }
};

namespace {

// The job and task index of a candidate id this server's Lease wrote (JOB.TASK.POSITION.N).
bool ParseCandidateId(const std::string& id, int64_t* job, int* task) {
  const std::vector<std::string> parts = absl::StrSplit(id, '.');
  return parts.size() == 4 && absl::SimpleAtoi(parts[0], job) && absl::SimpleAtoi(parts[1], task) &&
         *task >= 0;
}

// Whether record `row` of `columns` is `r`'s measurement: the same configuration, status and
// time (a time measured twice is not equal to the last bit).
bool SameMeasurement(const TaskColumns& columns, size_t row, const std::vector<int32_t>& indices,
                     const MeasureResult& r) {
  const size_t width = columns.params.size();
  if (!std::equal(indices.begin(), indices.end(), columns.value_index.begin() + row * width)) {
    return false;
  }
  if (columns.status[row] != r.status) return false;
  const double t = columns.time_ms[row];
  return r.time_ms ? t == *r.time_ms : std::isnan(t);
}

}  // namespace

absl::Status Scheduler::CheckEarlierLease(const std::string& worker_id,
                                          const std::vector<v1::Candidate>& leased,
                                          const std::vector<v1::CandidateResult>& results,
                                          std::vector<EarlierResult>* out) {
  const WorkerRun& worker = workers_.at(worker_id);
  std::map<std::string, const v1::Candidate*> by_id;
  for (const v1::Candidate& c : leased) {
    if (!by_id.emplace(c.candidate_id(), &c).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "candidate ", c.candidate_id(), " appears twice in leased; nothing was stored"));
    }
  }
  absl::flat_hash_set<std::string> seen;
  for (const v1::CandidateResult& r : results) {
    const std::string& id = r.candidate_id();
    auto c = by_id.find(id);
    if (c == by_id.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "candidate ", id, " is not among the lease's candidates (leased); nothing was stored"));
    }
    if (!seen.insert(id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("candidate ", id, " appears twice in the report; nothing was stored"));
    }
    EarlierResult e;
    e.candidate_id = id;
    if (!ParseCandidateId(id, &e.job_id, &e.task)) {
      return absl::InvalidArgumentError(
          absl::StrCat("candidate ", id,
                       " is not one a ktune server handed out (JOB.TASK.POSITION.N); nothing "
                       "was stored"));
    }
    auto job = jobs_.find(e.job_id);
    const auto refused = [&](absl::string_view why) {
      return absl::FailedPreconditionError(
          absl::StrCat("candidate ", id, ": ", why, "; nothing was stored"));
    };
    if (job == jobs_.end() || IsFinal(job->second->job.state)) {
      return refused(absl::StrCat("job ", e.job_id, " is not active on this server"));
    }
    const JobRun& run = *job->second;
    if (run.out_of_time) return refused(absl::StrCat("job ", e.job_id, " is out of wall time"));
    if (!run.worker_id.empty()) {
      return refused(absl::StrCat("job ", e.job_id, " is bound to one worker"));
    }
    if (!run.fingerprint_hash.empty() && run.fingerprint_hash != worker.device.FingerprintHash()) {
      return refused(absl::StrCat("job ", e.job_id, " is measured where another fingerprint is"));
    }
    if (static_cast<size_t>(e.task) >= run.tasks.size()) {
      return refused(absl::StrCat("job ", e.job_id, " has no task ", e.task));
    }
    const TaskRun& t = run.tasks[static_cast<size_t>(e.task)];
    absl::StatusOr<TaskKey> key = FromProto(c->second->task());
    if (!key.ok() || TaskIdentity(*key) != TaskIdentity(t.task)) {
      return absl::InvalidArgumentError(absl::StrCat("candidate ", id, " is not of task ", e.task,
                                                     " of job ", e.job_id, "; nothing was stored"));
    }
    if (IsFinal(t.state)) return refused("its task is over");
    if (t.task.device_class != worker.device.device_class ||
        !CanMeasure(worker.capabilities, t.language, t.client_kernel)) {
      return refused("this worker cannot measure its task");
    }
    absl::StatusOr<ParamMap> config = FromProto(c->second->config().params(), "leased.config");
    if (!config.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("candidate ", id, ": ", config.status().message(), "; nothing was stored"));
    }
    KTUNE_ASSIGN_OR_RETURN(e.measured, MeasurementOf(r, /*by_server=*/false, run.max_rel_error));
    e.key = t.task;
    e.config = *std::move(config);
    e.space = t.space;
    e.task_space = t.space != nullptr;
    e.cores = worker.cores;
    e.threads = run.threads;
    out->push_back(std::move(e));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Scheduler::ReportEarlierLease(
    const std::string& worker_id, const std::string& lease_id,
    const std::vector<v1::Candidate>& leased, const std::vector<v1::CandidateResult>& results) {
  const std::string reported_key = absl::StrCat("earlier ", lease_id);
  const uint64_t candidates = CandidateIdsHash(results);
  std::vector<EarlierResult> earlier;
  DeviceInfo device;
  // 1. Under the lock: the worker, the window, and each result's job and task.
  {
    absl::MutexLock lock(&mu_);
    auto w = workers_.find(worker_id);
    if (w == workers_.end()) {
      return absl::NotFoundError(absl::StrCat("unknown worker ", worker_id, "; register again"));
    }
    w->second.last_seen = options_.now();
    device = w->second.device;
    // The same report again, its reply lost: answered as the first was.
    auto done = reported_leases_.find(reported_key);
    if (done != reported_leases_.end() && done->second.worker == worker_id &&
        done->second.candidates == candidates) {
      return done->second.stored;
    }
    if (options_.now() - recovered_at_ > kEarlierLeasesWithin) {
      return absl::FailedPreconditionError(absl::StrCat(
          "lease ", lease_id,
          " is not this server's; the results of a lease from before a restart are stored "
          "within ",
          absl::FormatDuration(kEarlierLeasesWithin), " of it; nothing was stored"));
    }
    KTUNE_RETURN_IF_ERROR(CheckEarlierLease(worker_id, leased, results, &earlier));
  }
  // 2. Without the lock: the spaces not built here yet, each configuration's point, and what
  // the database holds already.
  std::map<std::string, std::shared_ptr<const SearchSpace>> built;  // by task and cores
  std::map<std::string, TaskColumns> stored;                        // by TaskIdentity
  for (EarlierResult& e : earlier) {
    if (e.space == nullptr) {
      const std::string k = absl::StrCat(TaskIdentity(e.key), "|", e.cores, "|", e.threads);
      if (!built.count(k)) {
        absl::StatusOr<std::shared_ptr<const SearchSpace>> space =
            spaces_->Space(e.key, e.cores, e.threads);
        if (!space.ok()) {
          return absl::FailedPreconditionError(
              absl::StrCat("candidate ", e.candidate_id, ": its task has no space here (",
                           space.status().message(), "); nothing was stored"));
        }
        built[k] = *std::move(space);
      }
      e.space = built[k];
    }
    absl::StatusOr<Point> point = e.space->ToPoint(e.config);
    if (!point.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("candidate ", e.candidate_id, ": its configuration is not one of its task (",
                       point.status().message(), "); nothing was stored"));
    }
    e.point = *std::move(point);
    const std::string identity = TaskIdentity(e.key);
    if (!stored.count(identity)) {
      KTUNE_ASSIGN_OR_RETURN(stored[identity], db_->TaskRecordColumns(e.key));
    }
    const TaskColumns& columns = stored[identity];
    if (std::optional<std::vector<int32_t>> indices = columns.IndicesOf(e.config)) {
      for (size_t row = 0; row < columns.size() && !e.duplicate; ++row) {
        e.duplicate = SameMeasurement(columns, row, *indices, e.measured);
      }
    }
  }
  // 3. Under the lock: the jobs and tasks still open, held so (in flight) while the records
  // are committed without the lock; the points a batch here holds already left out.
  const int64_t now_us = absl::ToUnixMicros(options_.now());
  std::vector<Record> records;
  std::vector<JobTaskCount> counts;
  {
    absl::MutexLock lock(&mu_);
    std::map<std::pair<int64_t, int>, int64_t> per_task;
    for (EarlierResult& e : earlier) {
      auto job = jobs_.find(e.job_id);
      if (job == jobs_.end() || IsFinal(job->second->job.state) || job->second->out_of_time ||
          IsFinal(job->second->tasks[static_cast<size_t>(e.task)].state)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "candidate ", e.candidate_id, ": its job or task ended meanwhile; nothing was stored"));
      }
      const TaskRun& t = job->second->tasks[static_cast<size_t>(e.task)];
      if (e.task_space && e.space == t.space) {
        for (size_t pos = 0; pos < t.batch.size() && !e.in_batch; ++pos) {
          e.in_batch = t.batch[pos] == e.point &&
                       std::find(t.queued.begin(), t.queued.end(), pos) == t.queued.end();
        }
      }
      if (!e.stored()) continue;
      Record rec = ToRecord(e.key, device, e.config, e.measured, worker_id);
      rec.measured_at_us = now_us;
      rec.source = JobSource(e.job_id);
      records.push_back(std::move(rec));
      ++per_task[{e.job_id, e.task}];
    }
    for (const auto& [task, n] : per_task) counts.push_back({task.first, task.second, n});
    for (const EarlierResult& e : earlier) {
      if (e.stored()) ++jobs_.at(e.job_id)->tasks[static_cast<size_t>(e.task)].in_flight;
    }
  }
  // 4. Without the lock: the records and their tasks' progress, in one commit.
  absl::StatusOr<int64_t> added =
      records.empty() ? absl::StatusOr<int64_t>(0) : db_->AddJobRecords(records, counts);
  if (added.ok() && !records.empty() && options_.on_stored) options_.on_stored(records, 0);
  // 5. Under the lock: progress, and the strategy work of batches the results completed.
  std::vector<AgentWork> work;
  {
    absl::MutexLock lock(&mu_);
    StoreEarlierResults(earlier, added.ok(), &work);
    if (!added.ok()) {
      LogEvent("report_not_stored", {{"worker_id", worker_id},
                                     {"lease_id", lease_id},
                                     {"records", std::to_string(records.size())},
                                     {"reason", std::string(added.status().message())}});
      if (options_.on_not_stored) options_.on_not_stored(added.status());
      return added.status();
    }
    if (auto w = workers_.find(worker_id); w != workers_.end()) {
      w->second.measurements += static_cast<int64_t>(records.size());
    }
    ++earlier_leases_stored_;
    const absl::Time now = options_.now();
    reported_leases_[reported_key] = {worker_id, candidates, *added, now};
    reported_order_.push_back(reported_key);
    LogEvent("earlier_lease_stored",
             {{"worker_id", worker_id},
              {"lease_id", lease_id},
              {"records", std::to_string(*added)},
              {"left_out", std::to_string(earlier.size() - records.size())}});
  }
  RunAgentWork(std::move(work));
  RequestFlush(/*retry=*/false);
  return *added;
}

void Scheduler::StoreEarlierResults(std::vector<EarlierResult>& earlier, bool stored,
                                    std::vector<AgentWork>* work) {
  std::map<int64_t, std::vector<int>> touched;
  for (const EarlierResult& e : earlier) {
    if (!e.stored()) continue;
    auto job = jobs_.find(e.job_id);
    if (job == jobs_.end()) continue;  // cancelled and forgotten meanwhile
    TaskRun& t = job->second->tasks[static_cast<size_t>(e.task)];
    --t.in_flight;
    touched[e.job_id].push_back(e.task);
    if (!stored) continue;
    job->second->start_stored = true;  // the commit stored its start
    const Observation obs{e.point, e.measured.status == MeasurementStatus::kOk,
                          e.measured.time_ms.value_or(0)};
    CountResult(t, obs, e.config);
    // The point waiting, unleased, in the task's batch (a search started here proposed it
    // again) is answered: nobody measures it twice. (One leased or measured here was left out.)
    if (e.task_space && e.space == t.space) {
      auto q = std::find_if(t.queued.begin(), t.queued.end(),
                            [&](size_t pos) { return t.batch[pos] == e.point; });
      if (q != t.queued.end()) {
        t.results[*q] = obs;
        t.queued.erase(q);
      }
    }
    // Budget spent: what the batch still has queued is not handed out (the task ends once
    // the leased rest is back).
    if (t.done >= t.budget) t.queued.clear();
  }
  for (auto& [id, tasks] : touched) {
    JobRun& job = *jobs_.at(id);
    std::sort(tasks.begin(), tasks.end());
    tasks.erase(std::unique(tasks.begin(), tasks.end()), tasks.end());
    for (int index : tasks) QueueIfBatchComplete(job, job.tasks[static_cast<size_t>(index)], work);
    FinishIfDone(job, &tasks);
  }
}

}  // namespace ktune
