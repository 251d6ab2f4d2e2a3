#include "server/telemetry_intake.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/event_log.h"
#include "common/status_macros.h"

namespace ktune {

absl::StatusOr<RetuneMode> ParseRetuneMode(const std::string& name) {
  if (name == "off") return RetuneMode::kOff;
  if (name == "suggest") return RetuneMode::kSuggest;
  if (name == "act") return RetuneMode::kAct;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown retune policy '", name, "' (off, suggest or act)"));
}

TelemetryIntake::TelemetryIntake(TuningDatabase* db, Scheduler* scheduler, BestCache* best,
                                 const TaskSpaces* spaces, RetunePolicy policy,
                                 DriftMonitorOptions monitor_options, bool store_flags)
    : db_(db),
      scheduler_(scheduler),
      best_(best),
      spaces_(spaces),
      policy_(std::move(policy)),
      store_flags_(store_flags),
      monitor_(monitor_options),
      knowledge_(db) {}

namespace {
// Where the flags and what was done about them are kept (a database checkpoint).
constexpr char kFlagsKey[] = "drift/flags";
}  // namespace

absl::Status TelemetryIntake::Recover() {
  absl::MutexLock lock(&mu_);
  std::vector<DriftFlag> stored;
  absl::StatusOr<std::string> blob = db_->LoadCheckpoint(kFlagsKey);
  if (blob.ok()) {
    absl::StatusOr<std::vector<DriftFlag>> read = DriftFlagsFromJson(*blob);
    if (read.ok()) {
      stored = *std::move(read);
    } else {
      LogEvent("drift_flags_unreadable", {{"reason", std::string(read.status().message())}});
    }
  } else if (!absl::IsNotFound(blob.status())) {
    return blob.status();
  }
  const size_t stored_count = stored.size();
  // Retuning jobs of before the restart still count against max_jobs (Act drops ended ones).
  for (const DriftFlag& f : stored) {
    if (f.retune_job > 0) retune_jobs_.insert(f.retune_job);
  }
  monitor_.BeginRecovery(std::move(stored));
  absl::Status replayed = db_->ForEachTelemetry([this](const TelemetryReport& r) {
    monitor_.Observe(r, knowledge_);
    return absl::OkStatus();
  });
  monitor_.EndRecovery();
  KTUNE_RETURN_IF_ERROR(replayed);
  // Flags the replay raised that were not stored (saved too late, or unreadable) are stored now.
  if (monitor_.Flags().size() == stored_count) return absl::OkStatus();
  return SaveFlags();
}

absl::Status TelemetryIntake::SaveFlags() {
  if (!store_flags_) return absl::OkStatus();
  return db_->SaveCheckpoint(kFlagsKey, DriftFlagsToJson(monitor_.Flags()));
}

int64_t TelemetryIntake::retune_jobs_started() const {
  absl::MutexLock lock(&mu_);
  return retune_jobs_started_;
}

absl::StatusOr<TelemetryIntake::ReportOutcome> TelemetryIntake::Report(
    std::vector<TelemetryReport> reports) {
  const int64_t now = absl::ToUnixMicros(absl::Now());
  for (TelemetryReport& r : reports) {
    r.received_at_us = now;
    if (r.window_start_us == 0 && r.window_end_us == 0) r.window_start_us = r.window_end_us = now;
  }
  absl::MutexLock lock(&mu_);
  ReportOutcome outcome;
  // A retry's reports are not stored twice (nor counted twice: DriftMonitor), in this call or
  // since an earlier one.
  std::vector<TelemetryReport> fresh;
  std::set<std::string> in_call;
  for (TelemetryReport& r : reports) {
    const std::string key = DriftMonitor::DuplicateKey(r);
    const bool again =
        !key.empty() && (!in_call
                              .insert(absl::StrCat(r.kernel, "|", CanonicalJson(r.problem), "|",
                                                   r.device.device_class, "|", key))
                              .second ||
                         monitor_.IsDuplicate(r));
    if (again) {
      ++outcome.duplicates;
    } else {
      fresh.push_back(std::move(r));
    }
  }
  if (!fresh.empty()) KTUNE_RETURN_IF_ERROR(db_->AddTelemetry(fresh));
  for (const TelemetryReport& r : fresh) {
    ReportUse use;
    for (DriftFlag& f : monitor_.Observe(r, knowledge_, &use)) {
      int64_t job = 0;
      f.action = Act(f, &job);
      f.retune_job = job;
      monitor_.SetAction(f.id, f.action, job);
      LogEvent("drift_flag_raised", {{"flag_id", std::to_string(f.id)},
                                     {"kind", std::string(DriftKindName(f.kind))},
                                     {"kernel", f.task.kernel},
                                     {"device_class", f.task.device_class},
                                     {"message", f.message},
                                     {"action", f.action}});
      outcome.raised.push_back(std::move(f));
    }
    if (use == ReportUse::kLate) ++outcome.late;
  }
  // The reports are stored and the flags acted on: a failure to save the flags loses only their
  // actions at a restart, and an error here would have the client send the reports again.
  if (!outcome.raised.empty()) {
    if (absl::Status s = SaveFlags(); !s.ok()) {
      LogEvent("drift_flags_not_saved", {{"reason", std::string(s.message())}});
    }
  }
  return outcome;
}

absl::StatusOr<DriftFlag> TelemetryIntake::Retune(int64_t flag_id) {
  absl::MutexLock lock(&mu_);
  std::vector<DriftFlag> flags = monitor_.Flags();
  if (flag_id < 1 || flag_id > static_cast<int64_t>(flags.size())) {
    return absl::NotFoundError(absl::StrCat("no drift flag ", flag_id, " (", flags.size(),
                                            " raised; ktune drift lists them)"));
  }
  DriftFlag f = flags[flag_id - 1];
  DropEndedRetuneJobs();
  if (f.retune_job > 0 && retune_jobs_.count(f.retune_job)) {
    return absl::FailedPreconditionError(absl::StrCat("flag ", flag_id, " is being retuned by job ",
                                                      f.retune_job, " (ktune watch ", f.retune_job,
                                                      ")"));
  }
  int64_t job = 0;
  const std::string action = StartRetune(f, &job);
  if (job == 0) return absl::FailedPreconditionError(absl::StrCat("flag ", flag_id, ": ", action));
  f.action = action;
  f.retune_job = job;
  monitor_.SetAction(f.id, f.action, job);
  LogEvent("drift_flag_retuned", {{"flag_id", std::to_string(f.id)},
                                  {"kind", std::string(DriftKindName(f.kind))},
                                  {"action", f.action}});
  if (absl::Status s = SaveFlags(); !s.ok()) {
    LogEvent("drift_flags_not_saved", {{"reason", std::string(s.message())}});
  }
  return f;
}

std::string TelemetryIntake::Suggestion(const DriftFlag& f) const {
  // The command that does what `act` does (re-measures the old best beside new candidates, and
  // stops serving the old records): a plain `ktune tune` measured none of the stored
  // configurations again, and the regressed one stayed served (a telemetry trial).
  return absl::StrCat(
      "suggested: ktune drift retune ", f.id, " --server ADDR (a retuning job of ", policy_.budget,
      " measurements",
      f.kind == DriftKind::kRegression ? ", the old best configurations measured again first" : "",
      ")");
}

RetuneMode TelemetryIntake::ModeFor(const TaskKey& task) const {
  // The newest job with the task decides, when its spec says (JobSpec.retune); a newer job whose
  // spec says nothing gives the task back to the server's policy (one experiment with retune: off
  // kept a task off it for good). Retuning jobs, the server's own, do not count. Jobs are listed
  // without their tasks, and only those whose spec names the task's kernel and class (or names
  // none) are read whole.
  absl::StatusOr<std::vector<TuningDatabase::JobSummary>> jobs = db_->ListJobSummaries();
  if (!jobs.ok()) return policy_.mode;
  const std::string problem = CanonicalJson(task.problem);
  auto names = [](const nlohmann::json& spec, const char* field, const std::string& value) {
    if (!spec.contains(field) || !spec[field].is_array()) return true;  // says nothing: maybe
    for (const nlohmann::json& v : spec[field]) {
      if (v.is_string() && v.get<std::string>() == value) return true;
    }
    return false;
  };
  int read_whole = 0;
  for (const TuningDatabase::JobSummary& summary : *jobs) {  // newest first
    const nlohmann::json spec = nlohmann::json::parse(summary.job.spec_json, nullptr, false);
    // The server's own jobs (a retuning job, tune_if_missing's) are no one's policy.
    if (!spec.is_object() || spec.contains("retune_of_flag") || spec.contains("reason") ||
        spec.value("name", "") == "tune_if_missing") {
      continue;
    }
    if (!names(spec, "kernels", task.kernel) || !names(spec, "device_classes", task.device_class)) {
      continue;
    }
    // A job of an older ktune does not list its kernels and classes: read whole, up to a bound
    // (this runs under the intake's lock, once a flag).
    if (!spec.contains("kernels") && ++read_whole > kMaxJobsReadWhole) break;
    absl::StatusOr<Job> job = db_->GetJob(summary.job.id);
    if (!job.ok()) continue;
    const bool has_task = std::any_of(job->tasks.begin(), job->tasks.end(), [&](const JobTask& t) {
      return t.task.kernel == task.kernel && t.task.device_class == task.device_class &&
             CanonicalJson(t.task.problem) == problem;
    });
    if (!has_task) continue;
    if (!spec.contains("retune") || !spec["retune"].is_string()) return policy_.mode;
    absl::StatusOr<RetuneMode> mode = ParseRetuneMode(spec["retune"].get<std::string>());
    if (!mode.ok()) return policy_.mode;
    return *mode;
  }
  return policy_.mode;
}

bool TelemetryIntake::WorkerFor(const DriftFlag& f) const {
  for (const Scheduler::WorkerStatus& w : scheduler_->ListWorkers()) {
    if (w.lost || w.device.device_class != f.task.device_class) continue;
    if (f.kind != DriftKind::kNewEnvironment || w.device.FingerprintHash() == f.fingerprint_hash) {
      return true;
    }
  }
  return false;
}

void TelemetryIntake::DropEndedRetuneJobs() {
  for (auto it = retune_jobs_.begin(); it != retune_jobs_.end();) {
    absl::StatusOr<JobStatus> job = scheduler_->GetJob(*it);
    const bool over = !job.ok() || job->job.state == JobState::kDone ||
                      job->job.state == JobState::kFailed ||
                      job->job.state == JobState::kCancelled;
    it = over ? retune_jobs_.erase(it) : std::next(it);
  }
}

std::string TelemetryIntake::Act(const DriftFlag& f, int64_t* job_id) {
  const RetuneMode mode = ModeFor(f.task);
  if (mode == RetuneMode::kOff) return "none";
  if (mode == RetuneMode::kSuggest) return Suggestion(f);
  DropEndedRetuneJobs();
  if (static_cast<int>(retune_jobs_.size()) >= policy_.max_jobs) {
    return absl::StrCat(Suggestion(f), "; not retuned now: ", retune_jobs_.size(),
                        retune_jobs_.size() == 1 ? " retuning job is" : " retuning jobs are",
                        " queued or running (serve --retune-max-jobs ", policy_.max_jobs, ")");
  }
  return StartRetune(f, job_id);
}

std::string TelemetryIntake::StartRetune(const DriftFlag& f, int64_t* job_id) {
  *job_id = 0;
  absl::StatusOr<TaskKey> task = spaces_->Canonical(f.task);
  if (!task.ok() && spaces_->registry().Find(f.task.kernel) == nullptr) {
    // Telemetry takes a kernel known from records (a recorded space, an import), which a job
    // can tune only where this server replays a recorded space of it.
    return absl::StrCat("cannot retune: ", f.task.kernel,
                        " is known here from records only, and this server replays no recorded "
                        "space of it on ",
                        f.task.device_class,
                        " (serve --replay FILE, or register the kernel: "
                        "ktune kernels register)");
  }
  if (!task.ok()) {
    return absl::StrCat("cannot retune: ", task.status().message());
  }
  if (!WorkerFor(f)) {
    // The job would wait for a worker, holding a retuning slot (one for a class with no worker,
    // a misspelt one too, kept every later flag from being retuned).
    if (f.kind == DriftKind::kNewEnvironment) {
      return absl::StrCat("not retuned: no connected worker of ", f.task.device_class,
                          " has the new fingerprint (", f.fingerprint_hash.substr(0, 12),
                          "); start one there, then ktune drift retune ", f.id);
    }
    return absl::StrCat("not retuned: no worker of device class ", f.task.device_class,
                        " is connected; start one, then ktune drift retune ", f.id);
  }
  JobRequest request;
  request.name = absl::StrCat("retune-", DriftKindName(f.kind), "-", f.id);
  request.tasks = {*task};
  request.budget = policy_.budget;
  request.strategy = policy_.strategy;
  request.priority = policy_.priority;
  request.agent_share = policy_.agent_share;
  // A new environment is measured where it is (the class's other workers have the old one).
  if (f.kind == DriftKind::kNewEnvironment) request.fingerprint_hash = f.fingerprint_hash;
  if (f.kind == DriftKind::kRegression) {
    // The old best configurations, measured again first; then the old records stop answering.
    BestQuery q;
    q.kernel = task->kernel;
    q.problem = task->problem;
    q.device_class = task->device_class;
    q.family = "-";  // this class only
    q.top_k = policy_.reverify_top;
    absl::StatusOr<BestResult> old = db_->QueryBest(q);
    if (old.ok()) {
      for (const Record& r : old->records) request.reverify.push_back(r.config);
    }
    if (absl::Status s = db_->MarkStale(*task, f.raised_at_us); !s.ok()) {
      return absl::StrCat("cannot retune: ", s.message());
    }
    Record touched;  // what BestCache::Invalidate reads: the kernel and the problem
    touched.kernel = task->kernel;
    touched.problem = task->problem;
    best_->Invalidate({touched});
    monitor_.Restart(f.task);
  }
  request.spec_json =
      nlohmann::json{{"name", request.name}, {"reason", f.message}, {"retune_of_flag", f.id}}
          .dump();
  absl::StatusOr<int64_t> id = scheduler_->Submit(request);
  if (!id.ok()) return absl::StrCat("cannot retune: ", id.status().message());
  retune_jobs_.insert(*id);
  ++retune_jobs_started_;
  *job_id = *id;
  return absl::StrCat("retuning: job ", *id);
}

}  // namespace ktune
