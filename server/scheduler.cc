#include "server/scheduler.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/event_log.h"
#include "common/status_macros.h"
#include "db/interchange/record_files.h"
#include "server/scheduler_internal.h"

// The job table (scheduler_internal.h): jobs from submission or recovery to their end.
namespace ktune {

namespace {

// The thread that stores job writes (SchedulerOptions::writer_threads), at the RPCs' priority. A
// request queued at exit is dropped: the destructor's flush stores what is left (it was tried
// twice more, a busy timeout each, while the database refused).
ThreadPool::Options WriterPoolOptions(const SchedulerOptions& scheduler) {
  ThreadPool::Options options;
  options.threads = scheduler.writer_threads >= 0 ? std::min(scheduler.writer_threads, 1)
                                                  : (scheduler.agent_threads > 0 ? 1 : 0);
  options.run_queued_at_exit = false;
  return options;
}

// Strategy work is background work: RPCs go first on a busy machine, and work not started when
// the server stops is dropped.
ThreadPool::Options AgentPoolOptions(int threads) {
  ThreadPool::Options options;
  options.threads = threads;
  options.nice = 10;
  options.run_queued_at_exit = false;
  return options;
}

}  // namespace

using scheduler_internal::CountJobRecords;
using scheduler_internal::IsFinal;

std::string TaskIdentity(const TaskKey& task) {
  return absl::StrCat(task.kernel, "\n", task.kernel_version, "\n", CanonicalJson(task.problem),
                      "\n", task.device_class);
}

namespace scheduler_internal {

std::string JobSource(int64_t job_id) { return absl::StrCat("job:", job_id); }

bool IsFinal(JobState s) {
  return s == JobState::kDone || s == JobState::kFailed || s == JobState::kCancelled;
}

absl::StatusOr<TaskStatus> CountJobRecords(TuningDatabase& db, int64_t job_id,
                                           const TaskKey& task) {
  TaskStatus t;
  t.task = task;
  // The job's measurements, stale ones too: a regression after the job (MarkStale) does not undo
  // what it measured (a finished job read 0/16 after one).
  KTUNE_ASSIGN_OR_RETURN(std::vector<Record> records, db.TaskRecords(task));
  KTUNE_ASSIGN_OR_RETURN(std::vector<Record> stale, db.StaleTaskRecords(task));
  records.insert(records.end(), std::make_move_iterator(stale.begin()),
                 std::make_move_iterator(stale.end()));
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

}  // namespace scheduler_internal

Scheduler::Scheduler(TuningDatabase* db, const TaskSpaces* spaces, SchedulerOptions options)
    : db_(db),
      spaces_(spaces),
      options_(std::move(options)),
      writer_(WriterPoolOptions(options_)),
      agents_(AgentPoolOptions(options_.agent_threads)) {}

Scheduler::~Scheduler() {
  // An orderly stop stores what changed, strategy work that was running included (stopped first:
  // what it changed after the flush was lost). Writes the database still refuses are lost; the
  // jobs' records are not (a restart recounts them).
  agents_.Stop();
  writer_.Stop();
  if (absl::Status st = FlushJobWrites(FlushMode::kWait); !st.ok()) {
    absl::MutexLock lock(&mu_);
    LogEvent("job_writes_lost_at_exit", {{"pending", std::to_string(job_writes_.size())},
                                         {"reason", std::string(st.message())}});
  }
}

absl::Status Scheduler::AddJobRun(Job job, bool recount) {
  auto run = std::make_unique<JobRun>();
  run->recovered = recount;
  // The run options are kept in the stored spec: {"seed": N, "batch_size": B, "threads": T, ...}.
  const nlohmann::json spec = nlohmann::json::parse(job.spec_json, nullptr, false);
  if (spec.is_object()) {
    run->seed = spec.value("seed", uint64_t{1});
    run->batch_size = spec.value("batch_size", 0);
    run->threads = spec.value("threads", 0);
    if (spec.contains("agent_share") && spec["agent_share"].is_number()) {
      run->agent_share = spec["agent_share"].get<double>();
    }
    if (spec.contains("max_rel_error") && spec["max_rel_error"].is_number()) {
      run->max_rel_error = spec["max_rel_error"].get<double>();
    }
    if (spec.contains("fingerprint_hash") && spec["fingerprint_hash"].is_string()) {
      run->fingerprint_hash = spec["fingerprint_hash"].get<std::string>();
    }
    if (spec.contains("worker_id") && spec["worker_id"].is_string()) {
      run->worker_id = spec["worker_id"].get<std::string>();
    }
    for (const auto& [key, configs] :
         {std::pair{"reverify", &run->reverify}, std::pair{"initial_configs", &run->initial}}) {
      if (!spec.contains(key) || !spec[key].is_array()) continue;
      for (const nlohmann::json& c : spec[key]) {
        absl::StatusOr<Configuration> config = ParseParamMapJson(c.dump());
        if (config.ok()) configs->push_back(*std::move(config));
      }
    }
    if (const int64_t wall = spec.value("budget_wall_seconds", int64_t{0}); wall > 0) {
      run->wall_deadline = absl::FromUnixMicros(job.created_at_us) + absl::Seconds(wall);
    }
  }
  // Progress is recounted from the records this job stored: exact after a crash. A large job's in
  // one read (two indexed queries a task took 9 s for a job of 65,536 tasks, the server not
  // listening); a small one's task by task (the one read scans every record of the database:
  // 0.2 s a job on 2,000,000 records, where a task's queries take a fraction of a millisecond).
  constexpr size_t kSummarizeFromTasks = 1024;
  const bool summarize = recount && job.tasks.size() >= kSummarizeFromTasks;
  std::map<std::string, TuningDatabase::SourceTaskSummary> stored;  // by TaskIdentity
  if (summarize) {
    KTUNE_ASSIGN_OR_RETURN(std::vector<TuningDatabase::SourceTaskSummary> summaries,
                           db_->SummarizeSource(scheduler_internal::JobSource(job.id)));
    for (TuningDatabase::SourceTaskSummary& s : summaries)
      stored[TaskIdentity(s.task)] = std::move(s);
  }
  for (size_t i = 0; i < job.tasks.size(); ++i) {
    TaskRun t;
    t.index = static_cast<int>(i);
    t.task = job.tasks[i].task;
    t.budget = job.tasks[i].budget;
    t.state = job.tasks[i].state;
    t.flops = spaces_->Flops(t.task);
    // A recorded space first, as TaskSpaces resolves a task: one may bear a registry kernel's
    // name (a replayed gemm file), and its replay workers measure it, not CPU workers.
    if (spaces_->IsRecorded(t.task)) {
      t.language = RecordedSpaceLanguage(t.task.kernel, t.task.problem);  // its replay workers'
    } else if (const KernelDefinition* k = spaces_->registry().Find(t.task.kernel); k != nullptr) {
      t.language = k->language;
      t.client_kernel = !k->builtin;
    } else {
      // A recovered job's kernel this server does not know (started without the --replay FILE
      // of an earlier run): no worker takes the task, which waits, saying why, until a server
      // that knows it runs the job (it failed the job for good at its first lease).
      t.language = scheduler_internal::UnknownKernelLanguage(t.task.kernel);
    }
    const auto need = std::find_if(run->needs.begin(), run->needs.end(), [&t](const auto& n) {
      return n.device_class == t.task.device_class && n.language == t.language &&
             n.client_kernel == t.client_kernel;
    });
    t.need = static_cast<int>(need - run->needs.begin());
    if (need == run->needs.end()) {
      run->needs.push_back({t.task.device_class, t.language, t.client_kernel});
    }
    if (recount && !summarize) {
      KTUNE_ASSIGN_OR_RETURN(TaskStatus counted, CountJobRecords(*db_, job.id, t.task));
      t.done = counted.done;
      t.failed = counted.failed;
      t.best_ms = counted.best_ms;
      t.best_config = counted.best_config;
    } else if (auto it = stored.find(TaskIdentity(t.task)); it != stored.end()) {
      t.done = it->second.records;
      t.failed = it->second.failed;
      t.best_ms = it->second.best_ms;
      t.best_config = std::move(it->second.best_config);
    }
    run->tasks.push_back(std::move(t));
  }
  LiftToFloors(*run);
  run->start_stored = job.state != JobState::kQueued;
  run->job = std::move(job);
  const int64_t id = run->job.id;
  jobs_[id] = std::move(run);
  FinishIfDone(*jobs_[id]);
  return absl::OkStatus();
}

namespace {

// The fields of /proc/PID/stat after the command name ("PID (NAME) STATE PPID ..."): [0] is the
// state, [19] the start time (clock ticks after boot). Empty when the process is not there.
std::vector<std::string> ProcStat(const std::string& pid) {
  std::ifstream file(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(file, line)) return {};
  const size_t name_end = line.rfind(')');
  if (name_end == std::string::npos) return {};
  return absl::StrSplit(absl::string_view(line).substr(name_end + 1), ' ', absl::SkipEmpty());
}

// The process's PID namespace ("pid:[4026531836]"): ids mean the same only within one.
std::string PidNamespace(const std::string& pid) {
  char target[128] = {};
  const std::string link = absl::StrCat("/proc/", pid, "/ns/pid");
  const ssize_t n = ::readlink(link.c_str(), target, sizeof(target) - 1);
  return n > 0 ? std::string(target, n) : "";
}

std::string HostName() {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  return host;
}

}  // namespace

std::string ThisProcessSession() {
  const std::string pid = std::to_string(::getpid());
  const std::vector<std::string> stat = ProcStat(pid);
  return absl::StrCat(HostName(), ":", pid, ":", stat.size() > 19 ? stat[19] : "", ":",
                      PidNamespace("self"));
}

namespace {

// The session a job was submitted in (its stored spec's "session"); empty: a server's job.
std::string SessionOf(const Job& job) {
  const nlohmann::json spec = nlohmann::json::parse(job.spec_json, nullptr, false);
  if (!spec.is_object()) return "";
  auto it = spec.find("session");
  return it != spec.end() && it->is_string() ? it->get<std::string>() : "";
}

// A session as stored, HOST:PID:START:PIDNS (ThisProcessSession; START and PIDNS may be empty).
struct Session {
  std::string host, pid, start, pid_namespace;
};
std::optional<Session> ParseSession(const std::string& text) {
  // The namespace holds a colon of its own ("pid:[...]"): split at the first three.
  std::vector<std::string> parts = absl::StrSplit(text, absl::MaxSplits(':', 3));
  int pid = 0;
  if (parts.size() < 2 || !absl::SimpleAtoi(parts[1], &pid) || pid <= 0) return std::nullopt;
  parts.resize(4);
  return Session{parts[0], parts[1], parts[2], parts[3]};
}

// Whether `session`'s process is gone: it ran on this host, in this PID namespace, and no
// process has its id, or one has it that started at another time (the id was reused: a
// container's PID 1 again), or it is a zombie (killed, not yet reaped). Another host's or
// namespace's session reads as alive: its job is left alone.
bool SessionGone(const Session& session) {
  if (session.host != HostName()) return false;
  if (!session.pid_namespace.empty() && session.pid_namespace != PidNamespace("self")) {
    return false;
  }
  // EPERM: a process of another user has the id; its start time says whether it is the session.
  if (::kill(std::stoi(session.pid), 0) != 0 && errno == ESRCH) return true;
  const std::vector<std::string> stat = ProcStat(session.pid);
  if (stat.empty()) return false;
  if (stat[0] == "Z") return true;
  return !session.start.empty() && stat.size() > 19 && stat[19] != session.start;
}

}  // namespace

bool Scheduler::EndIfAbandoned(const Job& job) {
  const std::string text = SessionOf(job);
  const std::optional<Session> session = ParseSession(text);
  if (IsFinal(job.state) || !session || !SessionGone(*session)) return false;
  LogEvent("job_abandoned", {{"job_id", std::to_string(job.id)}, {"session", text}});
  const absl::Status ended =
      db_->SetJobState(job.id, JobState::kCancelled,
                       absl::StrCat("its ktune tune session (process ", session->pid,
                                    ") ended before the job did; what it measured is stored"));
  // Best effort: another process starting beside this one may have ended it first, and a
  // database busy now is no reason not to start.
  if (!ended.ok() && !absl::IsFailedPrecondition(ended)) {
    LogEvent("job_abandoned_not_ended",
             {{"job_id", std::to_string(job.id)}, {"reason", std::string(ended.message())}});
  } else if (ended.ok()) {
    ++abandoned_jobs_ended_;  // in ktune_jobs_ended_total{state="cancelled"}
    ReportJobEnded(job, "cancelled");  // ktune_job_duration_seconds too
  }
  return true;
}

absl::Status Scheduler::EndAbandonedSessions() {
  KTUNE_ASSIGN_OR_RETURN(std::vector<TuningDatabase::JobSummary> jobs, db_->ListJobSummaries());
  for (const TuningDatabase::JobSummary& summary : jobs) EndIfAbandoned(summary.job);
  return absl::OkStatus();
}

absl::Status Scheduler::Recover() {
  {
    absl::MutexLock lock(&mu_);
    KTUNE_ASSIGN_OR_RETURN(std::vector<TuningDatabase::JobSummary> jobs, db_->ListJobSummaries());
    for (const TuningDatabase::JobSummary& summary : jobs) {
      if (IsFinal(summary.job.state) || EndIfAbandoned(summary.job)) continue;
      if (const std::string session = SessionOf(summary.job);
          !session.empty() && session != options_.session) {
        LogEvent("job_left_to_its_session",
                 {{"job_id", std::to_string(summary.job.id)}, {"session", session}});
        continue;
      }
      KTUNE_ASSIGN_OR_RETURN(Job job, db_->GetJob(summary.job.id));  // with its tasks
      LogEvent("job_recovered", {{"job_id", std::to_string(job.id)},
                                 {"state", std::string(JobStateName(job.state))}});
      KTUNE_RETURN_IF_ERROR(AddJobRun(std::move(job), /*recount=*/true));
    }
    EndJobsOfGoneWorkers();  // a job bound to a worker: worker ids do not survive a restart
    recovered_at_ = options_.now();
  }
  // Jobs that recovered ended (all their tasks done before the restart), or cancelled; what the
  // database refuses now is tried again at every tick.
  RequestFlush(/*retry=*/false);
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
  if (r.max_rel_error && !(*r.max_rel_error > 0 && std::isfinite(*r.max_rel_error))) {
    return absl::InvalidArgumentError("max_rel_error must be a finite number above 0");
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
  // 0: a seed drawn here, stored with the job (GetJob shows it). Every job defaulted to seed 1, so
  // concurrent jobs of one task proposed the same configurations: one measured 439 of its 1,000
  // after the other had. Below 2^53: exact as a JSON number anywhere.
  spec["seed"] = r.seed != 0 ? r.seed
                             : absl::Uniform<uint64_t>(absl::IntervalClosed, absl::BitGen(), 1,
                                                       (uint64_t{1} << 53) - 1);
  if (r.batch_size > 0) spec["batch_size"] = r.batch_size;
  if (r.threads > 0) spec["threads"] = r.threads;
  if (r.agent_share) spec["agent_share"] = *r.agent_share;
  if (r.max_rel_error) spec["max_rel_error"] = *r.max_rel_error;
  if (r.wall_seconds > 0) spec["budget_wall_seconds"] = r.wall_seconds;
  if (!r.fingerprint_hash.empty()) spec["fingerprint_hash"] = r.fingerprint_hash;
  if (!r.worker_id.empty()) spec["worker_id"] = r.worker_id;
  if (!options_.session.empty()) spec["session"] = options_.session;
  for (const auto& [key, configs] :
       {std::pair{"reverify", &r.reverify}, std::pair{"initial_configs", &r.initial}}) {
    if (configs->empty()) continue;
    spec[key] = nlohmann::json::array();
    for (const Configuration& c : *configs) {
      spec[key].push_back(nlohmann::json::parse(CanonicalJson(c)));
    }
  }
  job.spec_json = spec.dump();
  job.strategy = r.strategy;
  job.priority = r.priority;
  job.created_at_us = job.updated_at_us = absl::ToUnixMicros(options_.now());
  for (const TaskKey& t : r.tasks) job.tasks.push_back({t, JobState::kQueued, r.budget, 0});
  const int64_t tasks = static_cast<int64_t>(r.tasks.size());
  {
    absl::MutexLock lock(&mu_);
    // Jobs were not limited: a client submitting in a loop grew the server's memory without
    // bound. Tasks being stored by other submits count.
    int64_t active = tasks_being_stored_;
    for (const auto& [other, run] : jobs_) active += static_cast<int64_t>(run->tasks.size());
    if (active + tasks > options_.max_active_tasks) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the server holds ", active, " tasks of unfinished jobs, and this job's ",
                       tasks, " would pass its limit of ", options_.max_active_tasks,
                       ": wait for jobs to end, or cancel some (ktune jobs, ktune cancel)"));
    }
    if (!r.worker_id.empty() && !workers_.count(r.worker_id)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "worker ", r.worker_id,
          " is not registered with this server: a job bound to a worker (worker_id) needs the "
          "worker registered first (WorkerService.Register)"));
    }
    if (!r.worker_id.empty()) {
      // Tasks of another class would wait for ever: only the bound worker measures the job.
      const std::string& bound = workers_.at(r.worker_id).device.device_class;
      for (const TaskKey& t : r.tasks) {
        if (t.device_class == bound) continue;
        return absl::FailedPreconditionError(absl::StrCat(
            "worker ", r.worker_id, " measures device class '", bound, "', and this job has '",
            t.device_class, "': a job bound to a worker (worker_id) is of its device class"));
      }
    }
    tasks_being_stored_ += tasks;
  }
  // Stored without the lock: a job of 65,536 tasks took a second, every lease, report and
  // heartbeat waiting.
  absl::StatusOr<int64_t> created = db_->CreateJob(job);
  absl::MutexLock lock(&mu_);
  tasks_being_stored_ -= tasks;
  if (!created.ok()) return created.status();
  job.id = *created;
  const int64_t id = job.id;
  LogEvent("job_submitted", {{"job_id", std::to_string(id)},
                             {"name", r.name},
                             {"tasks", std::to_string(r.tasks.size())},
                             {"budget", std::to_string(r.budget)},
                             {"strategy", r.strategy},
                             {"priority", std::to_string(r.priority)}});
  KTUNE_RETURN_IF_ERROR(AddJobRun(std::move(job), /*recount=*/false));  // nothing stored yet
  return id;
}

absl::StatusOr<Scheduler::JobRun*> Scheduler::FindJob(int64_t id) {
  auto it = jobs_.find(id);
  if (it != jobs_.end()) return it->second.get();
  // A job that ended exists, but there is nothing left to change (its end may not be stored yet).
  if (auto f = finished_.find(id); f != finished_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id, " has already ended (", JobStateName(f->second.job.state), ")"));
  }
  return absl::NotFoundError(absl::StrCat("no job ", id));
}

absl::Status Scheduler::EndedOrNone(int64_t id) {
  absl::StatusOr<Job> stored = db_->GetJob(id);
  if (!stored.ok()) return absl::NotFoundError(absl::StrCat("no job ", id));
  if (IsFinal(stored->state)) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id, " has already ended (", JobStateName(stored->state), ")"));
  }
  // Open in the database and not this server's: a `ktune tune` session's on the same file (the
  // embedded default), or another process's. It answered "has already ended (running)".
  const std::string session = SessionOf(*stored);
  if (session.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id, " is ", JobStateName(stored->state),
                     " in the database, but another process runs it, not this server"));
  }
  const std::optional<Session> parsed = ParseSession(session);
  const std::string who =
      parsed ? absl::StrCat("process ", parsed->pid, " on ", parsed->host) : session;
  if (EndIfAbandoned(*stored)) {  // its session was killed: the job could never end otherwise
    absl::StatusOr<Job> now = db_->GetJob(id);
    if (now.ok() && IsFinal(now->state)) {
      return absl::FailedPreconditionError(
          absl::StrCat("job ", id, " belonged to a ktune tune session (", who,
                       ") that ended before it did: it is ", JobStateName(now->state),
                       " now, with what it measured"));
    }
    return absl::UnavailableError(
        absl::StrCat("job ", id, " belonged to a ktune tune session (", who,
                     ") that ended before it did, but the database did not store its end: ask "
                     "again"));
  }
  if (parsed && (parsed->host != HostName() || (!parsed->pid_namespace.empty() &&
                                                parsed->pid_namespace != PidNamespace("self")))) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id, " belongs to the ktune tune session of ", who,
                     ", which this server cannot see (another host or container): stop that "
                     "command there (Ctrl-C), which cancels the job"));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("job ", id, " belongs to a running ktune tune session (", who,
                   "): stop that command (Ctrl-C), which cancels the job"));
}

absl::Status Scheduler::StillOpen(const JobRun& run, absl::string_view action) const {
  if (!IsFinal(run.job.state)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "job ", run.job.id, " is ", JobStateName(run.job.state), " and cannot be ", action));
}

namespace {

// `job` without its task list (the only part that grows with the job).
Job WithoutTasks(const Job& job) {
  Job out;
  out.id = job.id;
  out.name = job.name;
  out.spec_json = job.spec_json;
  out.strategy = job.strategy;
  out.priority = job.priority;
  out.state = job.state;
  out.message = job.message;
  out.created_at_us = job.created_at_us;
  out.updated_at_us = job.updated_at_us;
  return out;
}

}  // namespace

JobStatus Scheduler::StatusOf(const JobRun& run, TaskPage page, bool with_job_tasks,
                              std::vector<int64_t>* done_by_task) const {
  JobStatus s;
  s.job = with_job_tasks ? run.job : WithoutTasks(run.job);
  s.task_count = static_cast<int64_t>(run.tasks.size());
  std::vector<int64_t> waiting(run.needs.size(), 0);  // unfinished tasks per need
  for (size_t i = 0; i < run.tasks.size(); ++i) {
    const TaskRun& t = run.tasks[i];
    if (!IsFinal(t.state)) ++waiting[static_cast<size_t>(t.need)];
    s.done += t.done;
    if (done_by_task != nullptr) done_by_task->push_back(t.done);
    s.total += t.budget;
    if (!page.Holds(i)) continue;
    TaskStatus ts{t.task, t.state, t.budget, t.done, t.failed, t.best_ms, t.best_config, t.flops};
    if (t.space != nullptr) {  // its search started: the figures are its
      ts.prior_records = t.prior_records;
      ts.warm_started = t.warm_started;
      ts.agent_seconds = t.agent_seconds;
      ts.tuning_seconds = std::max(0.0, absl::ToDoubleSeconds(t.last_result - t.started));
    }
    s.tasks.push_back(std::move(ts));
  }
  const int64_t since = s.done - run.rate_done_at;
  const double seconds = absl::ToDoubleSeconds(options_.now() - run.rate_since);
  int64_t stuck = 0;
  s.waiting = WaitingReason(run, waiting, &stuck);
  int64_t unfinished = 0;
  for (int64_t n : waiting) unfinished += n;
  // Only while it runs, and while some unfinished task has a worker to measure it: a paused
  // job's estimate grew each second it stayed paused, and so did the estimate of a job whose
  // every worker was lost ("about 10 s left", then 14, 19, ... 33: unknown, 0).
  if (!run.rate_anchor_pending && since > 0 && seconds > 0 && run.job.state == JobState::kRunning &&
      stuck < unfinished) {
    s.estimated_seconds_left = (s.total - s.done) * seconds / since;
    // A wall-time budget ends it sooner than its measurements would (a job of 10 s said "about
    // 278 s left").
    if (run.wall_deadline) {
      s.estimated_seconds_left =
          std::min(s.estimated_seconds_left,
                   std::max(0.0, absl::ToDoubleSeconds(*run.wall_deadline - options_.now())));
    }
  }
  return s;
}

absl::StatusOr<JobStatus> Scheduler::GetJob(int64_t id, TaskPage page, bool with_job_tasks,
                                            std::vector<int64_t>* done_by_task) {
  if (done_by_task != nullptr) done_by_task->clear();
  {
    absl::MutexLock lock(&mu_);
    if (auto it = jobs_.find(id); it != jobs_.end()) {
      return StatusOf(*it->second, page, with_job_tasks, done_by_task);
    }
    if (auto it = finished_.find(id); it != finished_.end()) {
      JobStatus s;
      s.job = with_job_tasks ? it->second.job : WithoutTasks(it->second.job);
      s.task_count = it->second.task_count;
      s.done = it->second.done;
      s.total = it->second.total;
      s.estimated_seconds_left = it->second.estimated_seconds_left;
      for (size_t i = page.first; i < it->second.tasks.size() && page.Holds(i); ++i) {
        s.tasks.push_back(it->second.tasks[i]);
      }
      if (done_by_task != nullptr) {
        for (const TaskStatus& t : it->second.tasks) done_by_task->push_back(t.done);
      }
      return s;
    }
  }
  // A job that ended before this server process: from the database, without the lock.
  KTUNE_ASSIGN_OR_RETURN(Job job, db_->GetJob(id));
  JobStatus s;
  for (size_t i = 0; i < job.tasks.size(); ++i) {
    const JobTask& t = job.tasks[i];
    s.total += t.budget;
    if (!page.Holds(i)) {
      s.done += t.measurements_done;
      if (done_by_task != nullptr) done_by_task->push_back(t.measurements_done);
      continue;
    }
    KTUNE_ASSIGN_OR_RETURN(TaskStatus ts, CountJobRecords(*db_, job.id, t.task));
    ts.state = t.state;
    ts.budget = t.budget;
    ts.flops = spaces_->Flops(t.task);
    s.done += ts.done;
    if (done_by_task != nullptr) done_by_task->push_back(ts.done);
    s.tasks.push_back(std::move(ts));
  }
  s.task_count = static_cast<int64_t>(job.tasks.size());
  s.job = with_job_tasks ? std::move(job) : WithoutTasks(job);
  return s;
}

absl::StatusOr<JobStatus> Scheduler::GetJobProgress(int64_t id,
                                                    std::vector<int64_t>* done_by_task) {
  return GetJob(id, TaskPage{0, 0}, /*with_job_tasks=*/false, done_by_task);
}

absl::StatusOr<std::vector<JobStatus>> Scheduler::ListJobs() {
  KTUNE_ASSIGN_OR_RETURN(std::vector<TuningDatabase::JobSummary> jobs, db_->ListJobSummaries());
  std::vector<JobStatus> out;
  out.reserve(jobs.size());
  for (TuningDatabase::JobSummary& j : jobs) {
    {
      absl::MutexLock lock(&mu_);
      if (auto it = jobs_.find(j.job.id); it != jobs_.end()) {
        // Counts, not a copy of every task (120 ms a call for a job of 65,536 tasks).
        out.push_back(StatusOf(*it->second, TaskPage{0, 0}, /*with_job_tasks=*/false));
        continue;
      }
      if (auto it = finished_.find(j.job.id); it != finished_.end()) {
        out.push_back(it->second);
        continue;
      }
    }
    // A job that ended before this server process: the progress its tasks stored as they ran.
    // Counting each task's records (GetJob) read every record of every task of every job, on
    // every call: 15 s for a list of two large jobs.
    JobStatus s;
    s.done = j.measurements_done;
    s.total = j.measurements_total;
    s.task_count = j.task_count;
    s.job = std::move(j.job);
    out.push_back(std::move(s));
  }
  return out;
}

absl::StatusOr<JobStatus> Scheduler::Cancel(int64_t id) {
  const uint64_t first = NextWriteSeq();
  return AfterStoring(CancelNow(id), first);
}
absl::StatusOr<JobStatus> Scheduler::Pause(int64_t id) {
  const uint64_t first = NextWriteSeq();
  return AfterStoring(PauseNow(id), first);
}
absl::StatusOr<JobStatus> Scheduler::Resume(int64_t id) {
  const uint64_t first = NextWriteSeq();
  return AfterStoring(ResumeNow(id), first);
}

absl::StatusOr<JobStatus> Scheduler::AfterStoring(absl::StatusOr<JobStatus> changed,
                                                  uint64_t first_seq) {
  if (!changed.ok()) return changed;
  const int64_t id = changed->job.id;
  uint64_t seq = 0;
  int64_t failures = 0;
  {
    absl::MutexLock lock(&mu_);
    // An earlier write's error (a report's task end, another call's change) is not this call's.
    if (auto e = write_errors_.find(id); e != write_errors_.end() && e->second.first < first_seq) {
      write_errors_.erase(e);
    }
    if (!WritesPending(id) && !write_errors_.count(id)) return changed;  // so already, or stored
    seq = next_write_seq_ - 1;
    failures = failed_flushes_;
  }
  RequestFlush(/*retry=*/true);
  absl::MutexLock lock(&mu_);
  // Bounded: the call answers within its deadline whatever the database does (a flush waits out
  // the busy timeout, behind every report's commit).
  const auto settled = [this, seq, failures]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return done_write_seq_ >= seq || failed_flushes_ > failures;
  };
  mu_.AwaitWithTimeout(absl::Condition(&settled), kStoreWait);
  const std::string change = absl::StrCat("job ", id, " is ", JobStateName(changed->job.state),
                                          " on this server, but the database ");
  if (auto e = write_errors_.find(id); e != write_errors_.end()) {
    const auto [dropped_seq, refused] = e->second;
    write_errors_.erase(e);  // read once
    if (dropped_seq >= first_seq) {
      // The server's failure, not the caller's mistake (a constraint's INVALID_ARGUMENT read as a
      // usage error); a job another process ended says so (FAILED_PRECONDITION).
      if (absl::IsFailedPrecondition(refused) || absl::IsNotFound(refused)) {
        return absl::Status(refused.code(),
                            absl::StrCat(change, "holds it otherwise (", refused.message(),
                                         "): another process ended or removed the job"));
      }
      return absl::Status(absl::IsDataLoss(refused) ? refused.code() : absl::StatusCode::kInternal,
                          absl::StrCat(change, "refused to store it (", refused.message(),
                                       "): a restart of the server undoes it"));
    }
  }
  if (done_write_seq_ >= seq) return changed;
  return absl::UnavailableError(absl::StrCat(
      change, "has not stored it yet (",
      failed_flushes_ > failures
          ? flush_error_
          : absl::StrCat("no answer from it within ", absl::FormatDuration(kStoreWait),
                         ": another process may hold it, or its disk is slow"),
      "); the server stores it as soon as the database takes writes, unless it stops first: ask "
      "again to check"));
}

void Scheduler::RequestFlush(bool retry) {
  if (!writes_queued_) return;                  // the common case: every lease and report asks
  if (!retry && writes_refused_) return;        // the tick's request retries
  if (flush_requested_.exchange(true)) return;  // one is queued, not started: it stores these
  writer_.Run([this] {
    flush_requested_ = false;  // writes queued from now on need another
    FlushJobWrites(FlushMode::kRetry).IgnoreError();
  });
}

absl::StatusOr<JobStatus> Scheduler::CancelNow(int64_t id) {
  // Cancelling a cancelled job changes nothing, also once it has left memory.
  if (absl::StatusOr<JobStatus> s = GetJob(id); s.ok() && s->job.state == JobState::kCancelled) {
    return s;
  }
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<JobRun*> found = FindJob(id);
    if (found.ok()) {
      JobRun* job = *found;
      // A cancelled job stays in memory until its last leases are reported or expire.
      if (job->job.state == JobState::kCancelled) return StatusOf(*job);
      CancelLocked(*job, "cancelled by a client");
      JobStatus s = StatusOf(*job);  // before it may leave memory (Forget)
      ForgetIfNotLeased(id);
      return s;
    }
    if (!absl::IsNotFound(found.status())) return found.status();
  }
  const absl::Status ended = EndedOrNone(id);
  // An abandoned session's job, cancelled just now: what was asked.
  if (absl::StatusOr<JobStatus> s = GetJob(id); s.ok() && s->job.state == JobState::kCancelled) {
    return s;
  }
  return ended;
}

void Scheduler::QueueJobState(const JobRun& job, JobState state, std::string message) {
  job_writes_.push_back({job.job.id, next_write_seq_++, state, std::move(message), {}});
  ++pending_writes_[job.job.id];
  writes_queued_ = true;
}

void Scheduler::QueueTaskProgress(const JobRun& job, std::vector<JobTaskProgress> tasks) {
  if (tasks.empty()) return;
  // Joined to the job's last queued progress, if that is the last write: one transaction, not one
  // a task, while the database refuses writes (a task's progress is its final state and count).
  if (!job_writes_.empty() && job_writes_.back().job_id == job.job.id &&
      !job_writes_.back().state) {
    std::vector<JobTaskProgress>& queued = job_writes_.back().tasks;
    queued.insert(queued.end(), tasks.begin(), tasks.end());
    return;
  }
  job_writes_.push_back({job.job.id, next_write_seq_++, std::nullopt, "", std::move(tasks)});
  ++pending_writes_[job.job.id];
  writes_queued_ = true;
}

namespace {

// Errors a retry may mend: the database busy (another process holds it), a full disk, an I/O
// error, a read-only file. Any other error of a job write (the job ended or deleted by another
// process, a row that does not parse) stays what it is.
bool WorthRetrying(const absl::Status& st) {
  return absl::IsAborted(st) || absl::IsResourceExhausted(st) || absl::IsUnavailable(st) ||
         absl::IsPermissionDenied(st) || absl::IsDeadlineExceeded(st);
}

}  // namespace

absl::Status Scheduler::FlushJobWrites(FlushMode mode) {
  if (mode == FlushMode::kWait) {
    flush_mu_.Lock();
  } else if (!flush_mu_.TryLock()) {
    return absl::OkStatus();  // another thread is flushing: it looks at the queue again
  }
  absl::Status failed = absl::OkStatus();
  while (true) {
    int64_t pending = 0;
    while (true) {
      JobWrite w;
      {
        absl::MutexLock lock(&mu_);
        if (job_writes_.empty()) {
          writes_queued_ = false;
          break;
        }
        w = std::move(job_writes_.front());
        job_writes_.pop_front();
        job_write_in_flight_ = true;
      }
      const absl::Status st = w.state ? db_->SetJobState(w.job_id, *w.state, w.message)
                                      : db_->UpdateJobTasks(w.job_id, w.tasks);
      const bool retry = !st.ok() && WorthRetrying(st);
      if (!st.ok() && !retry) {  // the state here stands
        LogEvent("job_write_dropped",
                 {{"job_id", std::to_string(w.job_id)}, {"reason", std::string(st.message())}});
      }
      absl::MutexLock lock(&mu_);
      job_write_in_flight_ = false;
      if (!retry) {
        if (auto it = pending_writes_.find(w.job_id);
            it != pending_writes_.end() && --it->second <= 0) {
          pending_writes_.erase(it);
        }
        done_write_seq_ = w.seq;
        // The call that made the change is told (AfterStoring): another process ended or deleted
        // the job, or the database refused it for good.
        if (!st.ok()) {
          if (write_errors_.size() >= kMaxWriteErrors && !write_errors_.count(w.job_id)) {
            auto oldest = std::min_element(
                write_errors_.begin(), write_errors_.end(),
                [](const auto& a, const auto& b) { return a.second.first < b.second.first; });
            write_errors_.erase(oldest);
          }
          write_errors_[w.job_id] = {w.seq, st};
        }
        continue;
      }
      job_writes_.push_front(std::move(w));  // first again: the writes stay in order
      pending = static_cast<int64_t>(job_writes_.size());
      ++failed_flushes_;
      flush_error_ = std::string(st.message());
      failed = st;
      break;
    }
    // Said once while the database refuses, and once when it takes them again.
    const bool was_refused = writes_refused_.exchange(!failed.ok());
    if (!failed.ok() && !was_refused) {
      LogEvent("job_writes_not_stored",
               {{"pending", std::to_string(pending)}, {"reason", std::string(failed.message())}});
    } else if (failed.ok() && was_refused) {
      LogEvent("job_writes_stored", {});
    }
    flush_mu_.Unlock();
    if (!failed.ok()) return failed;
    // A write queued after the queue was found empty, by a thread that found this one flushing
    // (its TryLock failed): stored now, not at the next tick.
    {
      absl::MutexLock lock(&mu_);
      if (job_writes_.empty()) return failed;
    }
    if (!flush_mu_.TryLock()) return failed;  // that thread, or another, flushes it
  }
}

bool Scheduler::Leased(const JobRun& job) {
  for (const TaskRun& t : job.tasks) {
    if (t.in_flight > 0) return true;
  }
  return false;
}

void Scheduler::ForgetIfNotLeased(int64_t id) {
  if (auto it = jobs_.find(id); it != jobs_.end() && !Leased(*it->second)) Forget(id);
}

void Scheduler::CancelLocked(JobRun& job, const std::string& why) {
  const int64_t id = job.job.id;
  LogEvent("job_cancelled", {{"job_id", std::to_string(id)}, {"reason", why}});
  ++jobs_ended_["cancelled"];
  ReportJobEnded(job.job, "cancelled");
  job.job.state = JobState::kCancelled;
  job.job.message = why;
  std::vector<JobTaskProgress> cancelled;
  for (TaskRun& t : job.tasks) {
    t.queued.clear();
    if (!IsFinal(t.state)) {
      t.state = JobState::kCancelled;
      cancelled.push_back(ProgressOf(t));
    }
  }
  // Stored later (FlushJobWrites), the tasks before the job (as a job that ends done): a job
  // stored as ended has its tasks' end stored. Where the database holds the job as ended already
  // (another process ended it), the write is dropped and the job ends here too.
  QueueTaskProgress(job, std::move(cancelled));
  QueueJobState(job, JobState::kCancelled, why);
}

void Scheduler::ReportJobEnded(const Job& job, const std::string& state) const {
  if (!options_.on_job_ended || job.created_at_us <= 0) return;
  // Never below 0: a clock stepped back, or a job created by another host's server.
  options_.on_job_ended(state, std::max(absl::ZeroDuration(),
                                        options_.now() - absl::FromUnixMicros(job.created_at_us)));
}

void Scheduler::EndJobsOfGoneWorkers() {
  const absl::Time now = options_.now();
  std::vector<int64_t> ending;
  for (const auto& [id, job] : jobs_) {
    if (job->worker_id.empty() || IsFinal(job->job.state)) continue;
    // Lost for a while: a worker whose heartbeats pause past the lease timeout (a laptop
    // asleep, a network blip) keeps its id and comes back; its job waits a little for it.
    auto w = workers_.find(job->worker_id);
    if (w == workers_.end() || now - w->second.last_seen > 4 * options_.lease_timeout) {
      ending.push_back(id);
    }
  }
  for (int64_t id : ending) {
    auto it = jobs_.find(id);
    if (it == jobs_.end()) continue;
    const std::string why = absl::StrCat(
        "its worker ", it->second->worker_id,
        ", the only one that measures it, is gone (it left, stopped sending heartbeats, or the "
        "server restarted)");
    CancelLocked(*it->second, why);
    ForgetIfNotLeased(id);
  }
}

void Scheduler::EnsureStartedStored(JobRun& job) {
  if (job.start_stored) return;
  // Running -> running is allowed: a report may have stored the start since this was queued.
  QueueJobState(job, JobState::kRunning, "");
  job.start_stored = true;
}

void Scheduler::LiftToFloors(JobRun& job) const {
  for (const TaskRun& t : job.tasks) {
    double& pass = job.pass[t.task.device_class];
    if (auto it = pass_floors_.find(t.task.device_class); it != pass_floors_.end()) {
      pass = std::max(pass, it->second);
    }
  }
}

absl::StatusOr<JobStatus> Scheduler::PauseNow(int64_t id) {
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<JobRun*> found = FindJob(id);
    if (found.ok()) {
      JobRun* job = *found;
      KTUNE_RETURN_IF_ERROR(StillOpen(*job, "paused"));
      if (job->job.state == JobState::kPaused) return StatusOf(*job);
      EnsureStartedStored(*job);
      LogEvent("job_paused", {{"job_id", std::to_string(id)}});
      QueueJobState(*job, JobState::kPaused, "paused by a client");
      job->job.state = JobState::kPaused;
      return StatusOf(*job);
    }
    if (!absl::IsNotFound(found.status())) return found.status();
  }
  return EndedOrNone(id);
}

absl::StatusOr<JobStatus> Scheduler::ResumeNow(int64_t id) {
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<JobRun*> found = FindJob(id);
    if (found.ok()) {
      JobRun* job = *found;
      KTUNE_RETURN_IF_ERROR(StillOpen(*job, "resumed"));
      if (job->job.state != JobState::kPaused) return StatusOf(*job);
      LogEvent("job_resumed", {{"job_id", std::to_string(id)}});
      QueueJobState(*job, JobState::kRunning, "");
      job->job.state = JobState::kRunning;
      LiftToFloors(*job);               // no catching up on the time it was paused
      job->rate_anchor_pending = true;  // nor counting it as measuring time
      return StatusOf(*job);
    }
    if (!absl::IsNotFound(found.status())) return found.status();
  }
  return EndedOrNone(id);
}

JobTaskProgress Scheduler::ProgressOf(const TaskRun& task) {
  return {task.index, task.state, task.done};
}

void Scheduler::FailTask(JobRun& job, TaskRun& t, const absl::Status& why) {
  LogEvent("task_failed", {{"job_id", std::to_string(job.job.id)},
                           {"task", std::to_string(t.index)},
                           {"reason", std::string(why.message())}});
  t.state = JobState::kFailed;
  t.error = absl::StrCat("task ", t.index, " (", t.task.kernel, " on ", t.task.device_class,
                         "): ", why.message());
  t.queued.clear();
  t.search.reset();
  QueueTaskProgress(job, {ProgressOf(t)});
}

void Scheduler::Forget(int64_t id) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  JobStatus last = StatusOf(*it->second);
  last.job.updated_at_us = absl::ToUnixMicros(options_.now());
  finished_[id] = std::move(last);
  // The oldest go, but not one whose end is not stored yet: the database has it as it was.
  for (auto f = finished_.begin(); finished_.size() > kKeepFinished && f != finished_.end();) {
    f = WritesPending(f->first) ? std::next(f) : finished_.erase(f);
  }
  jobs_.erase(it);
}

bool Scheduler::AllTasksFinal(JobRun& job) {
  while (job.first_open < job.tasks.size() && IsFinal(job.tasks[job.first_open].state)) {
    ++job.first_open;
  }
  return job.first_open == job.tasks.size();
}

void Scheduler::FinishIfDone(JobRun& job, const std::vector<int>* tasks) {
  std::vector<JobTaskProgress> finished;
  const auto finish_if_done = [&](TaskRun& t) {
    if (!IsFinal(t.state) && t.in_flight == 0 && !t.agent_busy &&
        (t.done >= t.budget || t.exhausted || job.out_of_time) && t.queued.empty()) {
      t.state = JobState::kDone;
      t.search.reset();  // its memory (the strategy's model of the space) goes now, not at the
                         // job's end
      finished.push_back(ProgressOf(t));
    }
  };
  if (tasks != nullptr) {
    for (int index : *tasks) finish_if_done(job.tasks[static_cast<size_t>(index)]);
  } else {
    for (size_t i = job.first_open; i < job.tasks.size(); ++i) finish_if_done(job.tasks[i]);
  }
  QueueTaskProgress(job, std::move(finished));
  if (!AllTasksFinal(job)) return;
  int64_t in_flight = 0;
  for (const TaskRun& t : job.tasks) in_flight += t.in_flight;
  if (in_flight == 0) {
    const int64_t id = job.job.id;
    if (!IsFinal(job.job.state)) {
      if (job.job.state == JobState::kPaused) QueueJobState(job, JobState::kRunning, "");
      EnsureStartedStored(job);
      std::string why;  // of the first failed task
      for (const TaskRun& t : job.tasks) {
        if (t.state == JobState::kFailed && why.empty()) {
          why = t.error.empty() ? "a task could not be set up (unknown space for its device)"
                                : t.error;
        }
      }
      const bool any_failed = !why.empty();
      if (!any_failed && job.out_of_time) why = "its wall-time budget ran out";
      // A task whose search had nothing left to measure ended before its budget: said, or a
      // job of 956 of 16,000 measurements read as done with no reason.
      int64_t short_tasks = 0, first_short = -1;
      for (size_t i = 0; i < job.tasks.size(); ++i) {
        const TaskRun& t = job.tasks[i];
        if (t.exhausted && t.done < t.budget) {
          if (short_tasks++ == 0) first_short = static_cast<int64_t>(i);
        }
      }
      // The initial configurations a task skipped (its space rules them out), said with the
      // job's end: the search went on without them, and only the server's log said so.
      std::string skipped;
      for (const TaskRun& t : job.tasks) {
        if (t.skipped_initial.empty() || !skipped.empty()) continue;
        skipped = absl::StrCat("initial configuration", t.skipped_initial.size() == 1 ? "" : "s",
                               " skipped by ", t.task.kernel, " on ", t.task.device_class, ": ",
                               absl::StrJoin(t.skipped_initial, "; "));
      }
      if (!any_failed && why.empty() && short_tasks > 0) {
        const TaskRun& t = job.tasks[static_cast<size_t>(first_short)];
        why = absl::StrCat(short_tasks == 1 ? "a task's" : absl::StrCat(short_tasks, " tasks'"),
                           " search space ran out before the budget: ", t.task.kernel, " on ",
                           t.task.device_class, " has no configuration left to measure (", t.done,
                           " of ", t.budget,
                           " measured by this job; earlier records are not measured again)");
      }
      if (!skipped.empty()) why = why.empty() ? skipped : absl::StrCat(why, "; ", skipped);
      QueueJobState(job, any_failed ? JobState::kFailed : JobState::kDone, why);
      job.job.state = any_failed ? JobState::kFailed : JobState::kDone;
      job.job.message = why;
      int64_t done = 0;
      for (const TaskRun& t : job.tasks) done += t.done;
      ++jobs_ended_[any_failed ? "failed" : "done"];
      ReportJobEnded(job.job, any_failed ? "failed" : "done");
      const int64_t now_us = absl::ToUnixMicros(options_.now());
      LogEvent("job_finished",
               {{"job_id", std::to_string(id)},
                {"state", any_failed ? "failed" : "done"},
                {"measurements", std::to_string(done)},
                {"seconds", job.job.created_at_us > 0
                                ? absl::StrFormat("%.1f", (now_us - job.job.created_at_us) / 1e6)
                                : std::string("?")}});
    }
    Forget(id);
  }
}

void Scheduler::StopJobsOutOfTime() {
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
    if (it != jobs_.end()) FinishIfDone(*it->second);
  }
}

}  // namespace ktune
