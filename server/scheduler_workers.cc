#include <algorithm>
#include <cstring>
#include <random>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/event_log.h"
#include "server/scheduler.h"
#include "server/scheduler_internal.h"

// The worker registry (scheduler_internal.h): workers come, prove they live, and go; leases
// they stop renewing expire.
namespace ktune {

int Scheduler::WorkerCount() {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(workers_.size());
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

absl::StatusOr<std::vector<std::string>> Scheduler::Heartbeat(
    const std::string& worker_id, const std::vector<std::string>& lease_ids) {
  absl::MutexLock lock(&mu_);
  auto w = workers_.find(worker_id);
  if (w == workers_.end()) return absl::NotFoundError(absl::StrCat("unknown worker ", worker_id));
  w->second.last_seen = options_.now();
  std::vector<std::string> revoked;
  for (const std::string& id : lease_ids) {
    auto l = leases_.find(id);
    if (l != leases_.end() && l->second->worker == worker_id) {
      l->second->expires = options_.now() + options_.lease_timeout;
    } else if (l != leases_.end() || !Revive(worker_id, id)) {
      revoked.push_back(id);
      // Told so, the worker drops the lease: it is not to be given back later (its candidates
      // would wait for a report that never comes).
      auto e = expired_leases_.find(id);
      if (e != expired_leases_.end() && e->second->worker == worker_id) expired_leases_.erase(e);
    }  // else revived, with a fresh expiry
  }
  return revoked;
}

absl::Status Scheduler::Leave(const std::string& worker_id) {
  {
    absl::MutexLock lock(&mu_);
    for (auto it = leases_.begin(); it != leases_.end();) {
      if (it->second->worker == worker_id && !it->second->committing) {
        ReturnToQueue(*it->second);
        it = leases_.erase(it);
      } else {
        ++it;
      }
    }
    if (workers_.erase(worker_id) > 0) LogEvent("worker_left", {{"worker_id", worker_id}});
    EndJobsOfGoneWorkers();
  }
  RequestFlush(/*retry=*/false);  // the jobs bound to it, cancelled
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

namespace {

// "2026-12-07 02:59:00 UTC": a fixed time, so that a watcher's event does not change every second
// while a worker stays silent.
std::string SinceText(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", t, absl::UTCTimeZone());
}

}  // namespace

std::string Scheduler::WaitingReason(const JobRun& job, const std::vector<int64_t>& waiting,
                                     int64_t* stuck) const {
  int64_t stuck_here = 0;
  if (stuck == nullptr) stuck = &stuck_here;
  *stuck = 0;
  if (job.job.state != JobState::kQueued && job.job.state != JobState::kRunning) return "";
  const absl::Time now = options_.now();
  const auto Lost = [&](const WorkerRun& w) { return now - w.last_seen > options_.lease_timeout; };
  const auto Tasks = [](int64_t n) {
    return absl::StrCat(n, n == 1 ? " task waits" : " tasks wait");
  };
  std::vector<std::string> reasons;
  if (!job.worker_id.empty()) {  // a bound job: its worker, or nothing
    int64_t tasks = 0;
    for (int64_t n : waiting) tasks += n;
    if (tasks == 0) return "";
    const auto w = workers_.find(job.worker_id);
    const std::string who = absl::StrCat(Tasks(tasks), " for its worker ", job.worker_id);
    if (w == workers_.end() || Lost(w->second)) *stuck = tasks;
    if (w == workers_.end()) return absl::StrCat(who, ", which is gone");
    if (Lost(w->second)) {
      return absl::StrCat(who, ", last heard from at ", SinceText(w->second.last_seen));
    }
    for (size_t n = 0; n < job.needs.size(); ++n) {
      const JobRun::WorkerNeed& need = job.needs[n];
      if (waiting[n] == 0) continue;
      const bool measurable =
          need.device_class == w->second.device.device_class &&
          scheduler_internal::CanMeasure(w->second.capabilities, need.language, need.client_kernel);
      if (!measurable) *stuck += waiting[n];
      if (need.device_class != w->second.device.device_class) {
        reasons.push_back(absl::StrCat(Tasks(waiting[n]), " of device class '", need.device_class,
                                       "' for its worker ", job.worker_id, ", which is of '",
                                       w->second.device.device_class, "'"));
      } else if (!scheduler_internal::CanMeasure(w->second.capabilities, need.language,
                                                 need.client_kernel)) {
        reasons.push_back(absl::StrCat(
            Tasks(waiting[n]), " for its worker ", job.worker_id, ", which cannot measure them (",
            need.client_kernel ? "a client kernel" : need.language, ")"));
      }
    }
  } else {
    // One pass over the workers (a fleet may have 10,000), each checked against the needs of its
    // class that have tasks waiting, until every need is served: the workers of a need's class
    // (of the job's exact fingerprint, when it has one) by why they cannot take its tasks.
    struct Tally {
      bool served = false;
      int registered = 0, lost = 0, other_language = 0, no_client_kernels = 0;
      absl::Time heard = absl::InfinitePast();
    };
    std::vector<Tally> tally(job.needs.size());
    absl::flat_hash_map<absl::string_view, std::vector<size_t>> needs_of_class;
    size_t unserved = 0;
    for (size_t n = 0; n < job.needs.size(); ++n) {
      if (waiting[n] == 0) continue;
      needs_of_class[job.needs[n].device_class].push_back(n);
      ++unserved;
    }
    for (auto w = workers_.begin(); w != workers_.end() && unserved > 0; ++w) {
      const WorkerRun& worker = w->second;
      const auto it = needs_of_class.find(worker.device.device_class);
      if (it == needs_of_class.end()) continue;
      if (!job.fingerprint_hash.empty() &&
          worker.device.FingerprintHash() != job.fingerprint_hash) {
        continue;
      }
      const bool lost = Lost(worker);
      for (size_t n : it->second) {
        Tally& t = tally[n];
        if (t.served) continue;
        const JobRun::WorkerNeed& need = job.needs[n];
        ++t.registered;
        if (lost) {
          ++t.lost;
          t.heard = std::max(t.heard, worker.last_seen);
        } else if (scheduler_internal::CanMeasure(worker.capabilities, need.language,
                                                  need.client_kernel)) {
          t.served = true;
          --unserved;
        } else if (scheduler_internal::CanMeasure(worker.capabilities, need.language, false)) {
          ++t.no_client_kernels;  // it builds the language, and refuses client kernels
        } else {
          ++t.other_language;
        }
      }
    }
    for (size_t n = 0; n < job.needs.size() && unserved > 0; ++n) {
      const JobRun::WorkerNeed& need = job.needs[n];
      const Tally& t = tally[n];
      if (waiting[n] == 0 || t.served) continue;
      *stuck += waiting[n];
      std::string reason =
          absl::StrCat(Tasks(waiting[n]), " for a worker of device class '", need.device_class, "'",
                       job.fingerprint_hash.empty() ? "" : " with the job's fingerprint");
      if (absl::StartsWith(need.language, scheduler_internal::kUnknownKernelLanguagePrefix)) {
        reasons.push_back(absl::StrCat(
            Tasks(waiting[n]), ": this server does not know kernel '",
            need.language.substr(strlen(scheduler_internal::kUnknownKernelLanguagePrefix)),
            "' (a recorded space: start it with --replay FILE of the space, as the server that "
            "took the job was)"));
        continue;
      }
      if (t.registered == 0) {
        absl::StrAppend(&reason, ": none has registered");
      } else {
        std::vector<std::string> why;
        if (t.other_language > 0 && absl::StartsWith(need.language, "replay:")) {
          why.push_back(absl::StrCat(t.other_language,
                                     t.other_language == 1 ? " replays " : " replay ",
                                     "another recorded space or measures real kernels"));
        } else if (t.other_language > 0) {
          why.push_back(absl::StrCat(t.other_language,
                                     t.other_language == 1 ? " does not build " : " do not build ",
                                     need.language, " kernels"));
        }
        if (t.no_client_kernels > 0) {
          why.push_back(absl::StrCat(t.no_client_kernels,
                                     t.no_client_kernels == 1 ? " runs" : " run",
                                     " with --no-client-kernels"));
        }
        if (t.lost > 0) {
          why.push_back(absl::StrCat(t.lost, t.lost == 1 ? " is" : " are",
                                     " lost, last heard from at ", SinceText(t.heard)));
        }
        absl::StrAppend(&reason, ": of its ", t.registered,
                        t.registered == 1 ? " worker, " : " workers, ", absl::StrJoin(why, ", "));
      }
      reasons.push_back(std::move(reason));
    }
  }
  // A job of many classes none serves: the first three, and how many more.
  constexpr size_t kMaxReasons = 3;
  if (reasons.size() > kMaxReasons) {
    const size_t more = reasons.size() - kMaxReasons;
    reasons.resize(kMaxReasons);
    reasons.push_back(absl::StrCat("and ", more, " more"));
  }
  return absl::StrJoin(reasons, "; ");
}

Scheduler::Counts Scheduler::CountNow() {
  absl::MutexLock lock(&mu_);
  Counts c;
  c.active_leases = static_cast<int64_t>(leases_.size());
  c.jobs_ended = jobs_ended_;
  if (const int64_t abandoned = abandoned_jobs_ended_.load(); abandoned > 0) {
    c.jobs_ended["cancelled"] += abandoned;
  }
  c.leases_expired = leases_expired_;
  c.leases_revived = leases_revived_;
  c.earlier_leases_stored = earlier_leases_stored_;
  c.agent_work_queued = agents_.Queued();
  c.job_writes_pending = static_cast<int64_t>(job_writes_.size()) + (job_write_in_flight_ ? 1 : 0);
  std::map<std::string, bool> measuring;
  for (const auto& [id, lease] : leases_) measuring[lease->worker] = true;
  const absl::Time now = options_.now();
  std::set<std::string> served;  // classes with a worker not lost
  for (const auto& [id, w] : workers_) {
    const bool lost = now - w.last_seen > options_.lease_timeout;
    const char* state = lost ? "lost" : measuring.count(id) ? "measuring" : "idle";
    ++c.workers[{w.device.device_class, state}];
    if (!lost) served.insert(w.device.device_class);
  }
  for (const auto& [id, job] : jobs_) {
    // Ended jobs stay in memory only until their last leases are reported: counted as ended.
    if (scheduler_internal::IsFinal(job->job.state)) continue;
    ++c.jobs[std::string(JobStateName(job->job.state))];
    // A paused job's candidates wait for its resume, not for a worker: counted, they raised the
    // "work waits, nobody takes it" alert for a pause.
    if (job->job.state == JobState::kPaused) continue;
    for (const TaskRun& t : job->tasks) {
      c.queued_candidates += t.queued.size();
      if (!scheduler_internal::IsFinal(t.state) && !served.count(t.task.device_class)) {
        ++c.tasks_without_worker[t.task.device_class];
      }
    }
  }
  return c;
}

void Scheduler::ExpireLeases() {
  // Expired leases holding a candidate that has now expired kMaxLeaseExpiries times: reported
  // lost by the server after the lock (the report path stores them and moves their tasks on).
  std::vector<LostCandidate> lost;
  {
    absl::MutexLock lock(&mu_);
    ExpireLeasesLocked(&lost);
  }
  for (const LostCandidate& l : lost) {
    absl::StatusOr<int64_t> stored = ReportAs(l.worker, l.lease_id, {l.result}, /*by_server=*/true);
    if (stored.ok()) continue;
    LogEvent("lost_not_stored",
             {{"lease_id", l.lease_id}, {"reason", std::string(stored.status().message())}});
    absl::MutexLock lock(&mu_);  // expired as any other, tried again at the next expiries
    if (auto it = leases_.find(l.lease_id); it != leases_.end()) {
      if (it->second->committing) {  // the worker's own late report: it ends the lease, or fails
        it->second->expires = options_.now();  // and the lease expires at the next tick
        it->second->report_failed = true;      // counted once, when it expired
      } else {
        ReturnToQueue(*it->second);
        leases_.erase(it);
      }
    }
  }
  // The jobs that ended (out of time, their worker gone), and the writes the database refused
  // before: tried again at every tick.
  RequestFlush(/*retry=*/true);
}

void Scheduler::ExtendLeases(absl::Duration stalled) {
  if (stalled <= absl::ZeroDuration()) return;
  absl::MutexLock lock(&mu_);
  LogEvent("server_stalled", {{"seconds", absl::StrCat(absl::ToDoubleSeconds(stalled))},
                              {"leases", std::to_string(leases_.size())}});
  // A lease kept for its report (InfiniteFuture) stays as it is.
  for (auto& [id, lease] : leases_) {
    if (lease->expires != absl::InfiniteFuture()) lease->expires += stalled;
  }
  const absl::Time now = options_.now();
  for (auto& [id, worker] : workers_) worker.last_seen = std::min(now, worker.last_seen + stalled);
}

void Scheduler::ExpireLeasesLocked(std::vector<LostCandidate>* lost) {
  const absl::Time now = options_.now();
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second->expires <= now && !it->second->committing) {
      LeaseRun& lease = *it->second;
      if (!lease.report_failed) ++leases_expired_;
      LogEvent("lease_expired", {{"lease_id", it->first},
                                 {"worker_id", lease.worker},
                                 {"candidates", std::to_string(lease.items.size())}});
      // Every candidate of the lease counts the expiry (each goes alone after a second:
      // LeaseLocked); one is given up on only when its own lease of one expires the last time.
      // Not a lease whose report the database refused (a full disk): its worker measured and
      // reported the candidates, which were stored lost after three such reports.
      bool given_up = false;
      for (const auto& [cid, item] : lease.items) {
        if (lease.worker_report_refused) break;
        auto job = jobs_.find(item.job_id);
        if (job == jobs_.end()) continue;
        TaskRun& t = job->second->tasks[item.task];
        if (item.position >= t.expiries.size()) continue;
        given_up = ++t.expiries[item.position] >= kMaxLeaseExpiries && lease.items.size() == 1;
      }
      if (given_up) {
        LostCandidate l{lease.worker, it->first, {}};
        l.result.set_candidate_id(lease.items.begin()->first);
        l.result.set_status(v1::MEASUREMENT_STATUS_LOST);
        l.result.set_message(absl::StrCat("its lease expired ", kMaxLeaseExpiries,
                                          " times: each worker measuring it stopped answering "
                                          "(does it hang or crash the worker?); not handed out "
                                          "again"));
        lost->push_back(std::move(l));
        lease.expires = absl::InfiniteFuture();  // kept for the report, which ends it
        ++it;
        continue;
      }
      // Kept for Revive: its worker may be cut off, not dead.
      auto expired = std::make_unique<ExpiredLease>();
      expired->worker = lease.worker;
      expired->items = lease.items;
      expired->expired_at = now;
      for (const auto& [cid, item] : lease.items) {
        auto job = jobs_.find(item.job_id);
        if (job == jobs_.end()) continue;
        const TaskRun& t = job->second->tasks[item.task];
        if (item.position < t.batch.size()) expired->points[cid] = t.batch[item.position];
      }
      expired_order_.emplace_back(it->first, now);
      expired_leases_[it->first] = std::move(expired);
      ReturnToQueue(*it->second);
      it = leases_.erase(it);
    } else {
      ++it;
    }
  }
  while (!expired_order_.empty() && now - expired_order_.front().second >
                                        kReviveWithinLeaseTimeouts * options_.lease_timeout) {
    const auto& [id, expired_at] = expired_order_.front();
    auto e = expired_leases_.find(id);
    if (e != expired_leases_.end() && e->second->expired_at == expired_at) expired_leases_.erase(e);
    expired_order_.pop_front();
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
    if (job->job.state == JobState::kCancelled && !Leased(*job)) gone.push_back(id);
  }
  for (int64_t id : gone) Forget(id);
  EndJobsOfGoneWorkers();  // a bound job's worker lost: it stopped sending heartbeats
  StopJobsOutOfTime();
}

bool Scheduler::CanRevive(const std::string& worker_id, const std::string& lease_id) const {
  auto e = expired_leases_.find(lease_id);
  const absl::Time now = options_.now();
  // A worker the server forgot (silent for an hour, or gone) registers again, under a new id.
  if (e == expired_leases_.end() || e->second->worker != worker_id ||
      workers_.count(worker_id) == 0 ||
      now - e->second->expired_at > kReviveWithinLeaseTimeouts * options_.lease_timeout) {
    return false;
  }
  const ExpiredLease& expired = *e->second;
  // Every candidate, or none: a worker measures its whole lease and reports it whole.
  for (const auto& [cid, item] : expired.items) {
    auto job = jobs_.find(item.job_id);
    if (job == jobs_.end()) return false;
    const JobRun& run = *job->second;
    if ((run.job.state != JobState::kRunning && run.job.state != JobState::kPaused) ||
        run.out_of_time || (run.wall_deadline && *run.wall_deadline <= now)) {
      return false;
    }
    const TaskRun& t = run.tasks[item.task];
    auto point = expired.points.find(cid);
    if (scheduler_internal::IsFinal(t.state) || point == expired.points.end() ||
        item.position >= t.batch.size() || t.batch[item.position] != point->second ||
        t.results[item.position] ||
        std::find(t.queued.begin(), t.queued.end(), item.position) == t.queued.end()) {
      return false;
    }
  }
  return true;
}

bool Scheduler::Revive(const std::string& worker_id, const std::string& lease_id) {
  if (!CanRevive(worker_id, lease_id)) return false;
  auto e = expired_leases_.find(lease_id);
  const ExpiredLease& expired = *e->second;
  auto lease = std::make_unique<LeaseRun>();
  lease->id = lease_id;
  lease->worker = worker_id;
  lease->expires = options_.now() + options_.lease_timeout;
  lease->items = expired.items;
  for (const auto& [cid, item] : lease->items) {
    TaskRun& t = jobs_[item.job_id]->tasks[item.task];
    t.queued.erase(std::find(t.queued.begin(), t.queued.end(), item.position));
    ++t.in_flight;
    if (item.position < t.expiries.size() && t.expiries[item.position] > 0) {
      --t.expiries[item.position];
    }
  }
  LogEvent("lease_revived", {{"lease_id", lease_id},
                             {"worker_id", worker_id},
                             {"candidates", std::to_string(lease->items.size())}});
  ++leases_revived_;
  leases_[lease_id] = std::move(lease);
  expired_leases_.erase(e);  // its id stays in expired_order_ until pruned, then skipped
  return true;
}

}  // namespace ktune
