#include <algorithm>
#include <map>

#include "absl/cleanup/cleanup.h"
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

using scheduler_internal::AsReportRefusal;
using scheduler_internal::CanMeasure;
using scheduler_internal::IsFinal;
using scheduler_internal::JobSource;
using scheduler_internal::MeasurementOf;
using scheduler_internal::ReportHash;
using scheduler_internal::StoredOrRefused;

// One result of an earlier lease, as CheckEarlierLease finds it and the steps after complete it.
struct Scheduler::EarlierResult {
  std::string candidate_id;
  int64_t job_id = 0;
  int task = 0;
  TaskKey key;  // the task's, canonical
  Configuration config;
  MeasureResult measured;
  // Why it is not stored (empty: it is, so far): see ReportEarlierLease.
  std::string left_out;
  // The space its point is checked in: the task's (TaskRun::space) when the task had one at
  // the first step, else one built without the lock for the worker's cores.
  std::shared_ptr<const SearchSpace> space;
  int cores = 1, threads = 0;
  Point point;
  // The position in the task's batch it answers (it waited there unleased), or -1.
  int64_t batch_position = -1;
  Point batch_point;  // its point in the task's space, for the batch
};

namespace {

// The job and task index of a candidate id this server's Lease wrote (JOB.TASK.POSITION.N).
bool ParseCandidateId(const std::string& id, int64_t* job, int* task) {
  const std::vector<std::string> parts = absl::StrSplit(id, '.');
  return parts.size() == 4 && absl::SimpleAtoi(parts[0], job) && absl::SimpleAtoi(parts[1], task) &&
         *task >= 0;
}

// Whether record `row` of `columns` has the configuration whose value indices are `indices`.
bool SameConfiguration(const TaskColumns& columns, size_t row,
                       const std::vector<int32_t>& indices) {
  const size_t width = columns.params.size();
  return std::equal(indices.begin(), indices.end(), columns.value_index.begin() + row * width);
}

// The longest lease id taken (this server's are "L" and a number).
constexpr size_t kMaxLeaseIdBytes = 128;

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
    absl::StatusOr<ParamMap> config = FromProto(c->second->config().params(), "leased.config");
    if (!config.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("candidate ", id, ": ", config.status().message(), "; nothing was stored"));
    }
    EarlierResult& e = out->emplace_back();
    e.candidate_id = id;
    e.config = *std::move(config);
    // What the job decides (its accuracy budget) is applied below; the times are checked here.
    KTUNE_ASSIGN_OR_RETURN(e.measured, MeasurementOf(r, /*by_server=*/false, std::nullopt));
    if (!ParseCandidateId(id, &e.job_id, &e.task)) {
      e.left_out = "not a candidate id this server writes";
      continue;
    }
    auto job = jobs_.find(e.job_id);
    if (job == jobs_.end() || IsFinal(job->second->job.state) || job->second->out_of_time) {
      e.left_out = "its job is not active";
      continue;
    }
    const JobRun& run = *job->second;
    absl::StatusOr<TaskKey> key = FromProto(c->second->task());
    if (!run.recovered || !run.worker_id.empty() ||
        (!run.fingerprint_hash.empty() &&
         run.fingerprint_hash != worker.device.FingerprintHash()) ||
        static_cast<size_t>(e.task) >= run.tasks.size() || !key.ok() ||
        TaskIdentity(*key) != TaskIdentity(run.tasks[static_cast<size_t>(e.task)].task)) {
      e.left_out = "its job or task does not take it from this worker";
      continue;
    }
    const TaskRun& t = run.tasks[static_cast<size_t>(e.task)];
    if (IsFinal(t.state) || t.task.device_class != worker.device.device_class ||
        !CanMeasure(worker.capabilities, t.language, t.client_kernel)) {
      e.left_out = "its task is over, or of another worker";
      continue;
    }
    if (run.max_rel_error) {
      e.measured = ApplyAccuracyBudget(std::move(e.measured), *run.max_rel_error);
    }
    e.key = t.task;
    e.space = t.space;
    e.cores = worker.cores;
    e.threads = run.threads;
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Scheduler::ReportEarlierLease(
    const std::string& worker_id, const std::string& lease_id,
    const std::vector<v1::Candidate>& leased, const std::vector<v1::CandidateResult>& results) {
  if (lease_id.size() > kMaxLeaseIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("lease_id has ", lease_id.size(), " bytes; at most ", kMaxLeaseIdBytes));
  }
  const std::string reported_key = absl::StrCat("earlier ", lease_id);
  const uint64_t report = ReportHash(results);
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
    if (done != reported_leases_.end() && done->second.worker == worker_id) {
      if (done->second.report == report) return done->second.stored;
      return absl::FailedPreconditionError(absl::StrCat(
          "earlier lease ", lease_id,
          " was reported already, with other results; a lease takes one report: nothing was "
          "stored"));
    }
    if (options_.now() - recovered_at_ > kEarlierLeasesWithin) {
      return absl::FailedPreconditionError(absl::StrCat(
          "lease ", lease_id,
          " is not this server's; the results of a lease from before a restart are stored "
          "within ",
          absl::FormatDuration(kEarlierLeasesWithin), " of it; nothing was stored"));
    }
    if (results.empty()) return 0;
    KTUNE_RETURN_IF_ERROR(CheckEarlierLease(worker_id, leased, results, &earlier));
    // One copy of the report at a time, from here to its end: another (the worker sent it
    // again, the reply late) is told to try again, and then answered as this one was.
    if (!earlier_committing_.insert(reported_key).second) {
      return absl::UnavailableError(absl::StrCat("a report of lease ", lease_id,
                                                 " is being stored; this one stored nothing: "
                                                 "try again"));
    }
  }
  absl::Cleanup release_report = [this, &reported_key] {
    absl::MutexLock lock(&mu_);
    earlier_committing_.erase(reported_key);
  };
  // 2. Without the lock: the spaces not built here yet, each configuration's point, and the
  // job's records of it.
  std::map<std::string, std::shared_ptr<const SearchSpace>> built;  // by task, cores, threads
  std::map<std::string, TaskColumns> stored;                        // by TaskIdentity
  for (EarlierResult& e : earlier) {
    if (!e.left_out.empty()) continue;
    if (e.space == nullptr) {
      const std::string k = absl::StrCat(TaskIdentity(e.key), "|", e.cores, "|", e.threads);
      if (!built.count(k)) {
        absl::StatusOr<std::shared_ptr<const SearchSpace>> space =
            spaces_->Space(e.key, e.cores, e.threads);
        built[k] = space.ok() ? *std::move(space) : nullptr;
      }
      e.space = built[k];
    }
    absl::StatusOr<Point> point =
        e.space != nullptr ? e.space->ToPoint(e.config) : absl::NotFoundError("no space");
    if (!point.ok() || !e.space->IsValid(*point)) {
      e.left_out = "its configuration is not a valid one of its task here";
      continue;
    }
    e.point = *std::move(point);
    // A configuration the job has a record of is not stored again: the earlier process stored
    // this report and died before its reply, or the restarted job measured it (its search
    // proposed it again, with the same seed and records), or another earlier lease held it.
    const std::string identity = TaskIdentity(e.key);
    if (!stored.count(identity)) {
      absl::StatusOr<TaskColumns> columns = db_->TaskRecordColumns(e.key);
      if (!columns.ok()) return AsReportRefusal(columns.status());
      stored[identity] = *std::move(columns);
    }
    const TaskColumns& columns = stored[identity];
    std::optional<std::vector<int32_t>> indices = columns.IndicesOf(e.config);
    std::vector<int64_t> same;  // the records of its configuration, any job's
    for (size_t row = 0; indices && row < columns.size(); ++row) {
      if (SameConfiguration(columns, row, *indices)) same.push_back(columns.handles[row]);
    }
    if (same.empty()) continue;
    absl::StatusOr<std::vector<Record>> records = db_->RecordsByHandle(same);
    if (!records.ok()) return AsReportRefusal(records.status());
    for (const Record& r : *records) {
      if (r.source == JobSource(e.job_id)) e.left_out = "the job has a record of it already";
    }
  }
  // 3. Under the lock: the results stored, held in flight (which also keeps a task's search
  // from starting) while they are committed without the lock.
  std::vector<Record> records;
  std::vector<JobTaskCount> counts;
  {
    absl::MutexLock lock(&mu_);
    KTUNE_RETURN_IF_ERROR(HoldEarlierResults(earlier));
    const int64_t now_us = absl::ToUnixMicros(options_.now());
    std::map<std::pair<int64_t, int>, int64_t> per_task;
    for (const EarlierResult& e : earlier) {
      if (!e.left_out.empty()) continue;
      Record rec =
          ToRecord(e.key, device, e.space->ToConfiguration(e.point), e.measured, worker_id);
      rec.measured_at_us = now_us;
      rec.source = JobSource(e.job_id);
      records.push_back(std::move(rec));
      ++per_task[{e.job_id, e.task}];
    }
    for (const auto& [task, n] : per_task) counts.push_back({task.first, task.second, n});
  }
  // 4. Without the lock: the records and their tasks' progress, in one commit.
  const absl::Time commit_start = absl::Now();
  absl::StatusOr<int64_t> added = records.empty()
                                      ? absl::StatusOr<int64_t>(0)
                                      : StoredOrRefused(db_->AddJobRecords(records, counts));
  if (added.ok() && !records.empty() && options_.on_stored) {
    options_.on_stored(records, absl::ToDoubleSeconds(absl::Now() - commit_start));
  }
  // 5. Under the lock: progress, the holds released, and the strategy work of batches the
  // results completed (run on both outcomes: a hold's release may complete another's batch).
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
    } else {
      if (auto w = workers_.find(worker_id); w != workers_.end()) {
        w->second.measurements += static_cast<int64_t>(records.size());
      }
      if (!records.empty()) {
        ++earlier_leases_stored_;
        RememberReport(reported_key, worker_id, report, *added);
      }
      std::string left_out;  // the first reason
      for (const EarlierResult& e : earlier) {
        if (left_out.empty()) left_out = e.left_out;
      }
      LogEvent("earlier_lease_stored",
               {{"worker_id", worker_id},
                {"lease_id", lease_id},
                {"records", std::to_string(*added)},
                {"left_out", std::to_string(earlier.size() - records.size())},
                {"reason", left_out}});
    }
  }
  RunAgentWork(std::move(work));
  RequestFlush(/*retry=*/false);
  return added;
}

absl::Status Scheduler::HoldEarlierResults(std::vector<EarlierResult>& earlier) {
  // First without changing anything: a task whose search is at work makes the report wait (its
  // next batch could hold these points, and take them for unmeasured); and the room each task's
  // budget has beside its batch (the positions queued or leased).
  std::map<std::pair<int64_t, int>, int64_t> room;
  for (const EarlierResult& e : earlier) {
    if (!e.left_out.empty()) continue;
    auto job = jobs_.find(e.job_id);
    if (job == jobs_.end() || IsFinal(job->second->job.state)) continue;  // left out below
    const TaskRun& t = job->second->tasks[static_cast<size_t>(e.task)];
    if (t.agent_busy && !IsFinal(t.state)) {
      return absl::UnavailableError(
          absl::StrCat("candidate ", e.candidate_id,
                       ": its task's search is preparing a batch; nothing was stored: try again"));
    }
    room.emplace(std::make_pair(e.job_id, e.task),
                 t.budget - t.done - t.in_flight - static_cast<int64_t>(t.queued.size()));
  }
  for (EarlierResult& e : earlier) {
    if (!e.left_out.empty()) continue;
    auto job = jobs_.find(e.job_id);
    if (job == jobs_.end() || IsFinal(job->second->job.state) || job->second->out_of_time ||
        IsFinal(job->second->tasks[static_cast<size_t>(e.task)].state)) {
      e.left_out = "its job or task ended meanwhile";
      continue;
    }
    TaskRun& t = job->second->tasks[static_cast<size_t>(e.task)];
    // Stored since the records were read (step 2), or by an earlier report of this one.
    if (t.stored_since_recovery.contains(ParamMapHash(e.space->ToConfiguration(e.point)))) {
      e.left_out = "the job has a record of it already";
      continue;
    }
    // A point of the task's batch here: answered when it waits unleased, else left to the
    // worker that leased it, or to the result there. The point is the task's own space's
    // (started since the first step, perhaps for other cores).
    if (t.space != nullptr) {
      absl::StatusOr<Point> p = t.space->ToPoint(e.config);
      if (!p.ok() || !t.space->IsValid(*p)) {
        e.left_out = "its configuration is not a valid one of its task here";
        continue;
      }
      for (size_t pos = 0; pos < t.batch.size(); ++pos) {
        if (t.batch[pos] != *p) continue;
        auto q = std::find(t.queued.begin(), t.queued.end(), pos);
        if (q == t.queued.end()) {
          e.left_out = "the restarted job leased or measured it again";
        } else {
          e.batch_position = static_cast<int64_t>(pos);
          e.batch_point = *p;
          t.queued.erase(q);
        }
        break;
      }
      if (!e.left_out.empty()) continue;
    }
    int64_t& left = room.at({e.job_id, e.task});
    if (e.batch_position < 0) {  // one answering the batch takes its place there
      if (left <= 0) {
        e.left_out = "its task's budget is spent";
        continue;
      }
      --left;
    }
    ++t.in_flight;  // the hold, released by StoreEarlierResults
  }
  return absl::OkStatus();
}

void Scheduler::StoreEarlierResults(std::vector<EarlierResult>& earlier, bool stored,
                                    std::vector<AgentWork>* work) {
  std::map<int64_t, std::vector<int>> touched;
  for (const EarlierResult& e : earlier) {
    if (!e.left_out.empty()) continue;
    JobRun& job = *jobs_.at(e.job_id);  // held in memory by the hold (Leased)
    TaskRun& t = job.tasks[static_cast<size_t>(e.task)];
    --t.in_flight;
    touched[e.job_id].push_back(e.task);
    const auto position = static_cast<size_t>(e.batch_position);
    if (!stored) {  // the point it answered is measured after all (ReturnToQueue's rule)
      if (e.batch_position >= 0 && !IsFinal(t.state) && !job.out_of_time) {
        t.queued.push_front(position);
      }
      continue;
    }
    job.start_stored = true;  // the commit stored its start
    const Observation obs{e.batch_position >= 0 ? e.batch_point : e.point,
                          e.measured.status == MeasurementStatus::kOk,
                          e.measured.time_ms.value_or(0)};
    const Configuration config = e.space->ToConfiguration(e.point);
    CountResult(t, obs, config);
    NoteStoredSinceRecovery(job, t, config);
    if (e.batch_position >= 0) {
      t.results[position] = obs;
    } else if (t.search != nullptr) {
      t.search->Spend(1);  // no agent work runs on the task while it is held (HoldEarlierResults)
    }
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
