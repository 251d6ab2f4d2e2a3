#include "server/services.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>
#include <tuple>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "agent/search_strategy.h"
#include "common/event_log.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "proto/convert.h"
#include "server/explanation.h"
#include "server/job_spec.h"
#include "server/polling_stream.h"

namespace ktune {

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpc(status));
  return reactor;
}

namespace {

absl::StatusOr<int64_t> ParseJobId(const std::string& id) {
  int64_t n;
  if (!absl::SimpleAtoi(id, &n) || n <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "job_id '", id.substr(0, 64), id.size() > 64 ? "...' " : "' ", "is not a job id"));
  }
  return n;
}

google::protobuf::Timestamp Timestamp(int64_t us) {
  google::protobuf::Timestamp t;
  t.set_seconds(us / 1'000'000);
  t.set_nanos(static_cast<int32_t>(us % 1'000'000) * 1000);
  return t;
}

}  // namespace

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  // The server's own failures (a database busy past its timeout, an I/O error, a bug) are the
  // operator's to see: the client got the message, the log had nothing.
  if (absl::IsAborted(s) || absl::IsUnavailable(s) || absl::IsInternal(s) || absl::IsDataLoss(s) ||
      absl::IsUnknown(s)) {
    LogEvent("rpc_failed",
             {{"code", absl::StatusCodeToString(s.code())}, {"reason", std::string(s.message())}});
  }
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

namespace {

// The spec a job was submitted with, from what the job stores (its spec_json and tasks): every
// reply but the submit's gave the name alone. The kernels, problems and device classes (distinct,
// in task order) only `with_tasks`, as the tasks themselves.
v1::JobSpec SpecOf(const Job& job, bool with_tasks) {
  v1::JobSpec spec;
  spec.set_name(job.name);
  const nlohmann::json stored = nlohmann::json::parse(job.spec_json, nullptr, false);
  if (stored.is_object()) {
    const auto number = [&](const char* key) -> std::optional<double> {
      auto it = stored.find(key);
      return it != stored.end() && it->is_number() ? std::optional<double>(it->get<double>())
                                                   : std::nullopt;
    };
    if (auto v = number("budget")) spec.set_budget_measurements(static_cast<int64_t>(*v));
    if (auto v = number("budget_wall_seconds")) {
      spec.set_budget_wall_seconds(static_cast<int64_t>(*v));
    }
    if (auto v = number("priority")) spec.set_priority(static_cast<int32_t>(*v));
    if (auto it = stored.find("seed"); it != stored.end() && it->is_number_unsigned()) {
      spec.set_seed(it->get<uint64_t>());
    }
    if (auto v = number("batch_size")) spec.set_batch_size(static_cast<int32_t>(*v));
    if (auto v = number("threads")) spec.set_threads(static_cast<int32_t>(*v));
    if (auto v = number("agent_share")) spec.set_agent_share(*v);
    if (auto v = number("max_rel_error")) spec.set_max_rel_error(*v);
    if (auto it = stored.find("retune"); it != stored.end() && it->is_string()) {
      spec.set_retune(it->get<std::string>());
    }
    if (auto it = stored.find("worker_id"); it != stored.end() && it->is_string()) {
      spec.set_worker_id(it->get<std::string>());
    }
    if (auto it = stored.find("initial_configs"); it != stored.end() && it->is_array()) {
      for (const nlohmann::json& c : *it) {
        absl::StatusOr<Configuration> config = ParseParamMapJson(c.dump());
        if (config.ok()) ktune::ToProto(*config, spec.add_initial_configs()->mutable_params());
      }
    }
  }
  if (absl::StatusOr<v1::Strategy> strategy = ParseStrategy(job.strategy); strategy.ok()) {
    spec.set_strategy(*strategy);
  }
  if (!with_tasks) return spec;
  std::set<std::string> kernels, problems, classes;
  for (const JobTask& t : job.tasks) {
    if (kernels.insert(absl::StrCat(t.task.kernel, "\n", t.task.kernel_version)).second) {
      v1::KernelRef* k = spec.add_kernels();
      k->set_name(t.task.kernel);
      k->set_version(t.task.kernel_version);
    }
    if (problems.insert(CanonicalJson(t.task.problem)).second) {
      ktune::ToProto(t.task.problem, spec.add_problems()->mutable_params());
    }
    if (classes.insert(t.task.device_class).second) spec.add_device_classes(t.task.device_class);
  }
  return spec;
}

}  // namespace

v1::JobState ToProto(JobState s) { return static_cast<v1::JobState>(static_cast<int>(s) + 1); }

v1::Job ToProto(const JobStatus& s, bool with_tasks) {
  v1::Job out;
  out.set_job_id(std::to_string(s.job.id));
  *out.mutable_spec() = SpecOf(s.job, with_tasks);
  out.set_task_count(std::max({s.task_count, static_cast<int64_t>(s.tasks.size()),
                               static_cast<int64_t>(s.job.tasks.size())}));
  out.set_state(ToProto(s.job.state));
  out.set_message(s.job.message);
  out.set_measurements_done(s.done);
  out.set_measurements_total(s.total);
  out.set_estimated_seconds_left(s.estimated_seconds_left);
  out.set_waiting(s.waiting);
  *out.mutable_created_at() = Timestamp(s.job.created_at_us);
  *out.mutable_updated_at() = Timestamp(s.job.updated_at_us);
  if (!with_tasks) return out;
  for (const TaskStatus& t : s.tasks) *out.add_tasks() = ToProto(t);
  return out;
}

v1::TaskProgress ToProto(const TaskStatus& t) {
  v1::TaskProgress p;
  *p.mutable_task() = ktune::ToProto(t.task);
  p.set_state(ToProto(t.state));
  p.set_measurements_done(t.done);
  p.set_measurements_failed(t.failed);
  if (t.best_ms) {
    p.set_best_time_ms(*t.best_ms);
    if (t.flops > 0) p.set_best_gflops(t.flops / (*t.best_ms * 1e6));
    ktune::ToProto(t.best_config, p.mutable_best_config()->mutable_params());
  }
  p.set_prior_records(t.prior_records);
  p.set_warm_started(t.warm_started);
  p.set_agent_seconds(t.agent_seconds);
  p.set_tuning_seconds(t.tuning_seconds);
  return p;
}

// --- WorkerService ---

grpc::ServerUnaryReactor* WorkerServiceImpl::Register(grpc::CallbackServerContext* ctx,
                                                      const v1::RegisterRequest* request,
                                                      v1::RegisterResponse* response) {
  if (absl::Status a = auth_->Check(ctx, Role::kWorker); !a.ok()) return Done(ctx, a);
  return RunOn(pool_, ctx, [=]() -> absl::Status {
    absl::StatusOr<DeviceInfo> device = FromProto(request->device());
    if (!device.ok()) return device.status();
    if (request->host().size() > 253) {
      return absl::InvalidArgumentError("host is longer than 253 bytes");
    }
    if (HasControlCharacter(request->host())) {
      return absl::InvalidArgumentError("host has a control character");
    }
    const int cores = std::max(1, request->device().cores_used());
    if (request->capabilities().languages_size() > 8) {
      return absl::InvalidArgumentError("capabilities.languages: at most 8");
    }
    for (const std::string& language : request->capabilities().languages()) {
      if (language.empty() || language.size() > 32 || HasControlCharacter(language)) {
        return absl::InvalidArgumentError(
            "capabilities.languages: names of 1 to 32 bytes, such as cpp or cuda");
      }
    }
    if (request->capabilities().max_parallel() < 0) {
      return absl::InvalidArgumentError("capabilities.max_parallel must not be negative");
    }
    // Workers stay listed for an hour after they are lost; a client registering in a loop grew
    // the list (and ListWorkers' answer) without bound.
    if (scheduler_->WorkerCount() >= kMaxWorkers) {
      return absl::ResourceExhaustedError(absl::StrCat("this server has ", kMaxWorkers,
                                                       " workers; a lost one is forgotten an "
                                                       "hour after its last heartbeat"));
    }
    WorkerCapabilities can;
    can.languages.assign(request->capabilities().languages().begin(),
                         request->capabilities().languages().end());
    can.client_kernels = request->capabilities().can_run_untrusted();
    if (!auth_->enabled()) {
      response->set_worker_id(scheduler_->RegisterWorker(*device, request->host(), cores, can));
    } else {
      // The owner is known before the id is out: a call naming the new id waits for it here.
      absl::MutexLock lock(&owners_mu_);
      response->set_worker_id(scheduler_->RegisterWorker(*device, request->host(), cores, can));
      // Forgotten workers' entries go when there are many more entries than workers.
      if (owners_.size() >= 2 * static_cast<size_t>(kMaxWorkers)) {
        std::map<std::string, std::string> known;
        for (const Scheduler::WorkerStatus& w : scheduler_->ListWorkers()) {
          if (auto it = owners_.find(w.id); it != owners_.end()) known.insert(*it);
        }
        owners_ = std::move(known);
      }
      owners_[response->worker_id()] = auth_->CallerOf(ctx);
    }
    response->set_heartbeat_interval_ms(
        absl::ToInt64Milliseconds(scheduler_->options().heartbeat_interval));
    response->set_lease_timeout_ms(absl::ToInt64Milliseconds(scheduler_->options().lease_timeout));
    return absl::OkStatus();
  });
}

absl::Status WorkerServiceImpl::CheckOwner(const grpc::CallbackServerContext* ctx,
                                           const std::string& worker_id) {
  if (!auth_->enabled()) return absl::OkStatus();
  absl::MutexLock lock(&owners_mu_);
  auto it = owners_.find(worker_id);
  if (it == owners_.end() || it->second == auth_->CallerOf(ctx)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("worker ", worker_id.substr(0, 64),
                   " was registered with another token; a worker acts "
                   "with the token it registered with"));
}

grpc::ServerUnaryReactor* WorkerServiceImpl::LeaseBatch(grpc::CallbackServerContext* ctx,
                                                        const v1::LeaseBatchRequest* request,
                                                        v1::LeaseBatchResponse* response) {
  if (absl::Status a = auth_->Check(ctx, Role::kWorker); !a.ok()) return Done(ctx, a);
  return RunOn(pool_, ctx, [=]() -> absl::Status {
    if (absl::Status o = CheckOwner(ctx, request->worker_id()); !o.ok()) return o;
    absl::StatusOr<LeaseGrant> grant =
        scheduler_->Lease(request->worker_id(), request->max_candidates());
    if (!grant.ok()) return grant.status();
    response->set_lease_id(grant->lease_id);
    // Client kernels travel with their first candidate: workers know only the built-ins.
    std::set<std::string> described;
    for (v1::Candidate& c : grant->candidates) {
      const KernelDefinition* k = registry_->Find(c.task().kernel().name());
      if (k != nullptr && !k->builtin && described.insert(k->name).second) {
        *c.mutable_kernel_spec() = ToProto(*k);
      }
      *response->add_candidates() = std::move(c);
    }
    response->set_lease_expires_in_ms(absl::ToInt64Milliseconds(grant->expires_in));
    if (grant->lease_id.empty()) {
      response->set_retry_after_ms(absl::ToInt64Milliseconds(grant->retry_after));
      response->set_preparing(grant->preparing);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::ReportResults(grpc::CallbackServerContext* ctx,
                                                           const v1::ReportResultsRequest* request,
                                                           v1::ReportResultsResponse* response) {
  if (absl::Status a = auth_->Check(ctx, Role::kWorker); !a.ok()) return Done(ctx, a);
  return RunOn(pool_, ctx, [=]() -> absl::Status {
    if (absl::Status o = CheckOwner(ctx, request->worker_id()); !o.ok()) return o;
    if (request->results_size() > 256) {
      return absl::InvalidArgumentError("at most 256 results per report");
    }
    if (request->leased_size() > 256) {
      return absl::InvalidArgumentError("at most 256 leased candidates per report");
    }
    std::vector<v1::CandidateResult> results(request->results().begin(), request->results().end());
    // A lease of the server's earlier process (it restarted), sent with its candidates.
    absl::StatusOr<int64_t> stored =
        request->leased_size() > 0
            ? scheduler_->ReportEarlierLease(request->worker_id(), request->lease_id(),
                                             {request->leased().begin(), request->leased().end()},
                                             results)
            : scheduler_->Report(request->worker_id(), request->lease_id(), results);
    if (!stored.ok()) return stored.status();
    response->set_records_stored(static_cast<int32_t>(*stored));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Heartbeat(grpc::CallbackServerContext* ctx,
                                                       const v1::HeartbeatRequest* request,
                                                       v1::HeartbeatResponse* response) {
  if (absl::Status a = auth_->Check(ctx, Role::kWorker); !a.ok()) return Done(ctx, a);
  return RunOn(pool_, ctx, [=]() -> absl::Status {
    if (request->lease_ids_size() > 64) {  // the documented limit: each is echoed when revoked
      return absl::InvalidArgumentError(
          absl::StrCat("lease_ids has ", request->lease_ids_size(), " entries; at most 64"));
    }
    if (absl::Status o = CheckOwner(ctx, request->worker_id()); !o.ok()) return o;
    std::vector<std::string> leases(request->lease_ids().begin(), request->lease_ids().end());
    absl::StatusOr<std::vector<std::string>> revoked =
        scheduler_->Heartbeat(request->worker_id(), leases);
    if (absl::IsNotFound(revoked.status())) {
      response->set_reregister(true);
      for (const std::string& id : leases) response->add_revoked_lease_ids(id);
      return absl::OkStatus();
    }
    if (!revoked.ok()) return revoked.status();
    for (const std::string& id : *revoked) response->add_revoked_lease_ids(id);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Leave(grpc::CallbackServerContext* ctx,
                                                   const v1::LeaveRequest* request,
                                                   v1::LeaveResponse*) {
  if (absl::Status a = auth_->Check(ctx, Role::kWorker); !a.ok()) return Done(ctx, a);
  return RunOn(pool_, ctx, [=]() -> absl::Status {
    if (absl::Status o = CheckOwner(ctx, request->worker_id()); !o.ok()) return o;
    absl::Status left = scheduler_->Leave(request->worker_id());
    if (left.ok() && auth_->enabled()) {
      absl::MutexLock lock(&owners_mu_);
      owners_.erase(request->worker_id());
    }
    return left;
  });
}

// --- TuningService ---

grpc::ServerUnaryReactor* TuningServiceImpl::SubmitJob(grpc::CallbackServerContext* ctx,
                                                       const v1::SubmitJobRequest* request,
                                                       v1::Job* response) {
  if (absl::Status a = auth_->Check(ctx, Role::kSubmit); !a.ok()) return Done(ctx, a);
  return RunOn(pool_, ctx, [=]() -> absl::Status {
    v1::JobSpec spec = request->spec();
    if (!request->spec_text().empty()) {
      absl::StatusOr<v1::JobSpec> parsed = ParseJobSpecText(request->spec_text());
      if (!parsed.ok()) return parsed.status();
      spec = *std::move(parsed);
    }
    absl::StatusOr<JobRequest> job = ToJobRequest(spec, *spaces_);
    if (!job.ok()) return job.status();
    absl::StatusOr<int64_t> id = scheduler_->Submit(*job);
    if (!id.ok()) return id.status();
    absl::StatusOr<JobStatus> status = scheduler_->GetJob(*id);
    if (!status.ok()) return status.status();
    *response = ToProto(*status, status->tasks.size() <= kMaxReplyTasks);
    *response->mutable_spec() = spec;
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TuningServiceImpl::GetJob(grpc::CallbackServerContext* ctx,
                                                    const v1::GetJobRequest* request,
                                                    v1::Job* response) {
  if (absl::Status a = auth_->Check(ctx, Role::kQuery); !a.ok()) return Done(ctx, a);
  return RunOn(pool_, ctx, [=]() -> absl::Status {
    absl::StatusOr<int64_t> id = ParseJobId(request->job_id());
    if (!id.ok()) return id.status();
    if (request->task_page_size() < 0 ||
        static_cast<size_t>(request->task_page_size()) > kMaxReplyTasks) {
      return absl::InvalidArgumentError(absl::StrCat("task_page_size must be between 0 (",
                                                     kMaxReplyTasks, ") and ", kMaxReplyTasks));
    }
    TaskPage page;
    page.count = request->task_page_size() == 0 ? kMaxReplyTasks : request->task_page_size();
    if (!request->task_page_token().empty() &&
        !absl::SimpleAtoi(request->task_page_token(), &page.first)) {
      return absl::InvalidArgumentError(
          "task_page_token is not one this server gave (use next_task_page_token)");
    }
    absl::StatusOr<JobStatus> status = scheduler_->GetJob(*id, page);
    if (!status.ok()) return status.status();
    *response = ToProto(*status, true);
    if (page.first + status->tasks.size() < static_cast<size_t>(response->task_count())) {
      response->set_next_task_page_token(std::to_string(page.first + status->tasks.size()));
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TuningServiceImpl::ListJobs(grpc::CallbackServerContext* ctx,
                                                      const v1::ListJobsRequest* request,
                                                      v1::ListJobsResponse* response) {
  if (absl::Status a = auth_->Check(ctx, Role::kQuery); !a.ok()) return Done(ctx, a);
  return RunOn(pool_, ctx, [=]() -> absl::Status {
    if (request->states_size() > 7) {
      return absl::InvalidArgumentError("states: at most 7 (each job state once)");
    }
    absl::StatusOr<std::vector<JobStatus>> jobs = scheduler_->ListJobs();
    if (!jobs.ok()) return jobs.status();
    for (int state : request->states()) {
      if (state <= v1::JOB_STATE_UNSPECIFIED || !v1::JobState_IsValid(state)) {
        return absl::InvalidArgumentError(
            absl::StrCat("states: ", state, " is no job state (1 to 6)"));
      }
    }
    if (request->page_size() < 0 || request->page_size() > 1000) {
      return absl::InvalidArgumentError("page_size must be between 0 (100) and 1000");
    }
    const int page = request->page_size() == 0 ? 100 : request->page_size();
    int64_t skip = 0;
    if (!request->page_token().empty() &&
        (!absl::SimpleAtoi(request->page_token(), &skip) || skip < 0)) {
      return absl::InvalidArgumentError(
          "page_token is not one this server gave (use next_page_token)");
    }
    int64_t seen = 0;
    for (const JobStatus& j : *jobs) {
      if (!request->states().empty() &&
          std::find(request->states().begin(), request->states().end(),
                    static_cast<int>(j.job.state) + 1) == request->states().end()) {
        continue;
      }
      if (seen++ < skip) continue;
      if (response->jobs_size() == page) {
        response->set_next_page_token(std::to_string(skip + page));
        break;
      }
      *response->add_jobs() = ToProto(j, false);
    }
    return absl::OkStatus();
  });
}

#define KTUNE_JOB_ACTION(Method, Request, call)                                          \
  grpc::ServerUnaryReactor* TuningServiceImpl::Method(                                   \
      grpc::CallbackServerContext* ctx, const v1::Request* request, v1::Job* response) { \
    if (absl::Status a = auth_->Check(ctx, Role::kSubmit); !a.ok()) return Done(ctx, a); \
    return RunOn(pool_, ctx, [=]() -> absl::Status {                                     \
      absl::StatusOr<int64_t> id = ParseJobId(request->job_id());                        \
      if (!id.ok()) return id.status();                                                  \
      absl::StatusOr<JobStatus> status = scheduler_->call(*id);                          \
      if (!status.ok()) return status.status();                                          \
      *response = ToProto(*status, status->tasks.size() <= kMaxReplyTasks);              \
      return absl::OkStatus();                                                           \
    });                                                                                  \
  }
KTUNE_JOB_ACTION(CancelJob, CancelJobRequest, Cancel)
KTUNE_JOB_ACTION(PauseJob, PauseJobRequest, Pause)
KTUNE_JOB_ACTION(ResumeJob, ResumeJobRequest, Resume)
#undef KTUNE_JOB_ACTION

namespace {

bool IsFinal(v1::JobState s) {
  return s == v1::JOB_STATE_DONE || s == v1::JOB_STATE_FAILED || s == v1::JOB_STATE_CANCELLED;
}

}  // namespace

grpc::ServerWriteReactor<v1::JobEvent>* TuningServiceImpl::WatchJob(
    grpc::CallbackServerContext* ctx, const v1::WatchJobRequest* request) {
  using Stream = PollingStream<v1::JobEvent>;
  if (absl::Status a = auth_->Check(ctx, Role::kQuery); !a.ok()) {
    return new FailedStream<v1::JobEvent>(a);
  }
  absl::StatusOr<int64_t> id = ParseJobId(request->job_id());
  if (!id.ok()) return new FailedStream<v1::JobEvent>(id.status());
  // A job that does not exist ends the stream at its first poll (NOT_FOUND): checked here, a job
  // that ended before this server was read whole from the database on gRPC's thread.
  if (Stream::open() >= kMaxWatchStreams) {
    return new FailedStream<v1::JobEvent>(absl::ResourceExhaustedError(absl::StrCat(
        "the server already streams ", kMaxWatchStreams, " jobs; poll GetJob or retry later")));
  }
  Scheduler* scheduler = scheduler_;
  TuningDatabase* db = db_;
  const TaskSpaces* spaces = spaces_;
  const int64_t job = *id;
  const bool with_tasks = request->with_tasks();
  // changed_task: the task whose measurements advanced most since the last poll (the same task
  // again while none advanced), with its best so far.
  std::vector<int64_t> done_before;
  int changed = -1;
  return new Stream([scheduler, db, spaces, job, with_tasks, done_before,
                     changed]() mutable -> absl::StatusOr<std::pair<v1::JobEvent, bool>> {
    // Each poll reads the job's counts only (GetJobProgress), and its tasks when the event
    // carries them: a poll copied every task of the job under the scheduler's lock.
    std::vector<int64_t> done_now;
    absl::StatusOr<JobStatus> status = scheduler->GetJobProgress(job, &done_now);
    if (!status.ok()) return status.status();
    // As the action replies: every task up to kMaxReplyTasks, none past it (task_count says how
    // many; GetJob pages them), or a default client could not read the event.
    const bool event_tasks = with_tasks && done_now.size() <= kMaxReplyTasks;
    if (event_tasks) {
      status = scheduler->GetJob(job);
      if (!status.ok()) return status.status();
    }
    done_before.resize(done_now.size(), 0);
    int64_t most = 0;
    for (size_t i = 0; i < done_now.size(); ++i) {
      const int64_t advanced = done_now[i] - done_before[i];
      done_before[i] = done_now[i];
      if (advanced > most) {
        most = advanced;
        changed = static_cast<int>(i);
      }
    }
    v1::JobEvent event;
    *event.mutable_job() = ToProto(*status, event_tasks);
    if (changed >= 0 && event_tasks && static_cast<size_t>(changed) < status->tasks.size()) {
      *event.mutable_changed_task() = ToProto(status->tasks[changed]);
    } else if (changed >= 0) {
      absl::StatusOr<JobStatus> one = scheduler->GetJob(
          job, TaskPage{static_cast<size_t>(changed), 1}, /*with_job_tasks=*/false);
      if (one.ok() && !one->tasks.empty()) {
        *event.mutable_changed_task() = ToProto(one->tasks.front());
      }
    }
    const bool final = IsFinal(event.job().state());
    // The last event says what the untuned default took, for the speedup (`tune --server`
    // printed none), for a job of a few tasks (each reads its task's records).
    if (final && event_tasks && event.job().tasks_size() <= 16) {
      for (v1::TaskProgress& t : *event.mutable_job()->mutable_tasks()) {
        absl::StatusOr<TaskKey> task = FromProto(t.task());
        if (!task.ok()) continue;
        if (std::optional<double> d = DefaultConfigTime(*db, *spaces, *task)) {
          t.set_default_config_time_ms(*d);
        }
      }
    }
    return std::make_pair(std::move(event), final);
  });
}

absl::StatusOr<std::string> TuningServiceImpl::TuneInBackground(const BestQuery& q) {
  if (q.device_class.empty()) {
    return absl::InvalidArgumentError("tune_if_missing needs device.device_class");
  }
  TaskKey task{q.kernel, q.kernel_version, q.problem, q.device_class};
  absl::StatusOr<TaskKey> canonical = spaces_->CanonicalToMeasure(task);
  if (!canonical.ok()) return canonical.status();
  const std::string key = absl::StrCat(canonical->kernel, "\n", CanonicalJson(canonical->problem),
                                       "\n", canonical->device_class);
  absl::MutexLock lock(&background_mu_);
  auto running = [&](int64_t id) {
    absl::StatusOr<JobStatus> job = scheduler_->GetJob(id);
    return job.ok() && job->job.state != JobState::kDone && job->job.state != JobState::kFailed &&
           job->job.state != JobState::kCancelled;
  };
  if (auto it = background_.find(key); it != background_.end() && running(it->second)) {
    return std::to_string(it->second);  // already queued: the same job
  }
  // A job no connected worker can take would wait, and count against the bound below.
  const std::vector<Scheduler::WorkerStatus> workers = scheduler_->ListWorkers();
  if (std::none_of(workers.begin(), workers.end(), [&](const Scheduler::WorkerStatus& w) {
        return !w.lost && w.device.device_class == canonical->device_class;
      })) {
    return absl::FailedPreconditionError(
        absl::StrCat("no worker of device class ", canonical->device_class,
                     " is connected (a job would wait); ask again once one is"));
  }
  for (auto it = background_.begin(); it != background_.end();) {
    it = running(it->second) ? std::next(it) : background_.erase(it);
  }
  if (background_.size() >= kMaxBackgroundJobs) {
    return absl::FailedPreconditionError(
        absl::StrCat(background_.size(),
                     " tune_if_missing jobs are queued or running, as many as this server takes "
                     "at once; ask again once one has ended"));
  }
  JobRequest request;
  request.name = "tune_if_missing";
  request.tasks = {*canonical};
  request.budget = kBackgroundBudget;
  request.strategy = DefaultStrategyName();
  request.spec_json = nlohmann::json{{"name", "tune_if_missing"},
                                     {"seed", 1},
                                     {"kernels", {canonical->kernel}},
                                     {"device_classes", {canonical->device_class}}}
                          .dump();
  absl::StatusOr<int64_t> id = scheduler_->Submit(request);
  if (!id.ok()) return id.status();
  background_[key] = *id;
  return std::to_string(*id);
}

grpc::ServerUnaryReactor* TuningServiceImpl::QueryBest(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response) {
  if (absl::Status a = auth_->Check(ctx, Role::kQuery); !a.ok()) return Done(ctx, a);
  std::vector<grpc::Slice> slices;
  if (!request->Dump(&slices).ok()) {
    return Done(ctx, absl::InvalidArgumentError("the request could not be read"));
  }
  std::string bytes;
  for (const grpc::Slice& slice : slices) bytes.append(slice.begin(), slice.end());
  // A cached answer is sent from this thread (a hash lookup under a reader lock); anything
  // else reads the database, on the pool.
  uint64_t generation;
  if (std::shared_ptr<const BestAnswer> known = best_->FindByRequest(bytes, &generation)) {
    grpc::Slice slice(known->wire);
    *response = grpc::ByteBuffer(&slice, 1);
    return Done(ctx, absl::OkStatus());
  }
  return RunOn(pool_, ctx, [=, bytes = std::move(bytes)]() -> absl::Status {
    v1::QueryBestRequest parsed;
    if (!parsed.ParseFromString(bytes)) {
      return absl::InvalidArgumentError("the request is not a QueryBestRequest");
    }
    absl::StatusOr<std::shared_ptr<const BestAnswer>> answer = AnswerQueryBest(ctx, parsed);
    if (!answer.ok()) return answer.status();
    if (!parsed.tune_if_missing()) best_->RememberRequest(bytes, *answer, generation);
    grpc::Slice slice((*answer)->wire);
    *response = grpc::ByteBuffer(&slice, 1);
    return absl::OkStatus();
  });
}

absl::StatusOr<BestQuery> TuningServiceImpl::ParseBestQuery(const v1::KernelRef& kernel,
                                                             const v1::Problem& problem,
                                                             const v1::DeviceFingerprint& device) {
  if (kernel.name().empty()) {
    return absl::InvalidArgumentError("kernel.name is required");
  }
  for (const auto& [field, value, limit] :
       {std::tuple<const char*, const std::string&, size_t>{"kernel.name", kernel.name(), 256},
        {"kernel.version", kernel.version(), 256},
        {"device.device_class", device.device_class(), 256},
        {"device.family", device.family(), 256}}) {
    if (value.size() > limit) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " is ", value.size(), " bytes long; at most ", limit));
    }
  }
  if (device.device_class().empty()) {
    return absl::InvalidArgumentError("device.device_class is required");
  }
  if (device.extra_size() > 32) {
    return absl::InvalidArgumentError("device.extra: at most 32 entries");
  }
  // A kernel has at most 32 problem parameters; its tasks add dtype and data.
  if (problem.params_size() > 34) {
    return absl::InvalidArgumentError("problem: at most 34 parameters");
  }
  for (const auto& [key, value] : device.extra()) {
    if (key.size() > 256 || value.size() > 65536) {
      return absl::InvalidArgumentError(
          "device.extra: keys are at most 256 bytes, values at most 64 KiB");
    }
  }
  BestQuery q;
  KTUNE_ASSIGN_OR_RETURN(q.problem, FromProto(problem.params(), "problem"));
  q.kernel = kernel.name();
  q.kernel_version = kernel.version();
  // A registry kernel's problem as its tasks store it (validated, dtype filled in), when one is
  // given: an empty problem is a recorded space's (a T4 or Kernel Tuner file of a kernel that
  // shares a built-in's name, such as gemm), as `ktune best` reads it.
  if (const KernelDefinition* k = spaces_->registry().Find(q.kernel);
      k != nullptr && !q.problem.empty()) {
    KTUNE_ASSIGN_OR_RETURN(q.problem, k->ValidateProblem(q.problem));
  }
  q.device_class = device.device_class();
  q.family = device.family();
  if (auto it = device.extra().find("fingerprint_json"); it != device.extra().end()) {
    q.fingerprint_hash = DeviceInfo{it->second, "", ""}.FingerprintHash();
  }
  return q;
}

namespace {

// A request's max_rel_error: a finite number above 0.
absl::StatusOr<double> ParseAccuracyBudget(double max_rel_error) {
  if (!(max_rel_error > 0 && std::isfinite(max_rel_error))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_rel_error is ", max_rel_error, "; a finite relative error above 0, e.g. 1e-3"));
  }
  return max_rel_error;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const BestAnswer>> TuningServiceImpl::AnswerQueryBest(
    grpc::CallbackServerContext* ctx, const v1::QueryBestRequest& request) {
  if (request.top_k() < 0 || request.top_k() > 100) {
    return absl::InvalidArgumentError("top_k must be between 1 and 100");
  }
  KTUNE_ASSIGN_OR_RETURN(BestQuery q,
                         ParseBestQuery(request.kernel(), request.problem(), request.device()));
  q.top_k = request.top_k() == 0 ? 1 : request.top_k();
  if (request.has_max_rel_error()) {
    KTUNE_ASSIGN_OR_RETURN(q.max_rel_error, ParseAccuracyBudget(request.max_rel_error()));
    PinBudgetToErrorMeasure(spaces_->registry(), &q);
  }
  switch (request.after_level()) {
    case v1::MATCH_LEVEL_UNSPECIFIED:
      break;
    case v1::MATCH_LEVEL_DEVICE_CLASS:
      q.family_only = true;
      [[fallthrough]];
    case v1::MATCH_LEVEL_EXACT:
      q.fingerprint_hash.clear();
      break;
    default:
      return absl::InvalidArgumentError(
          "after_level must be EXACT or DEVICE_CLASS (nothing is asked after the family)");
  }
  KTUNE_ASSIGN_OR_RETURN(std::shared_ptr<const BestAnswer> best, best_->Query(q));
  const bool measured = best->message.level() == v1::MATCH_LEVEL_EXACT ||
                        best->message.level() == v1::MATCH_LEVEL_DEVICE_CLASS;
  if (!request.tune_if_missing() || measured) return best;
  // Without a job the answer still answers, saying why none was queued (a token without the
  // submit role was refused the answer too: PERMISSION_DENIED).
  const absl::Status allowed = auth_->Check(ctx, Role::kSubmit);
  absl::StatusOr<std::string> queued =
      allowed.ok() ? TuneInBackground(q) : absl::StatusOr<std::string>(allowed);
  auto with_job = std::make_shared<BestAnswer>();
  with_job->message = best->message;
  if (queued.ok()) {
    with_job->message.set_queued_job_id(*queued);
  } else if (absl::IsResourceExhausted(queued.status()) ||
             absl::IsFailedPrecondition(queued.status()) ||
             absl::IsPermissionDenied(queued.status())) {
    LogEvent("tune_if_missing_not_queued",
             {{"kernel", q.kernel}, {"reason", std::string(queued.status().message())}});
    with_job->message.set_not_queued(std::string(queued.status().message()));
  } else {
    return queued.status();
  }
  with_job->wire = with_job->message.SerializeAsString();
  return with_job;
}

grpc::ServerUnaryReactor* TuningServiceImpl::Explain(grpc::CallbackServerContext* ctx,
                                                     const v1::ExplainRequest* request,
                                                     v1::ExplainResponse* response) {
  if (absl::Status a = auth_->Check(ctx, Role::kQuery); !a.ok()) return Done(ctx, a);
  return RunOn(pool_, ctx, [=]() -> absl::Status {
    absl::StatusOr<BestQuery> q =
        ParseBestQuery(request->kernel(), request->problem(), request->device());
    if (!q.ok()) return q.status();
    if (request->has_max_rel_error()) {
      absl::StatusOr<double> budget = ParseAccuracyBudget(request->max_rel_error());
      if (!budget.ok()) return budget.status();
      q->max_rel_error = *budget;
    }
    absl::StatusOr<v1::ExplainResponse> explained = ktune::Explain(*db_, spaces_->registry(), *q);
    if (!explained.ok()) return explained.status();
    *response = std::move(*explained);
    // What production says of the task (explain justified a configuration that drift had
    // flagged 1.3x slower, without a word: a telemetry trial).
    const TaskKey asked{q->kernel, "", q->problem, q->device_class};
    absl::StatusOr<TaskKey> canonical = spaces_->Canonical(asked);
    const std::string problem = CanonicalJson(canonical.ok() ? canonical->problem : q->problem);
    for (const DriftFlag& f : telemetry_->Flags()) {
      if (f.task.kernel == q->kernel && f.task.device_class == q->device_class &&
          CanonicalJson(f.task.problem) == problem) {
        *response->add_drift_flags() = ToProto(f);
      }
    }
    return absl::OkStatus();
  });
}

namespace {

// ListKernelsResponse's bound (tuning_service.proto).
constexpr int kMaxListedKernels = 1024;

v1::KernelInfo KernelInfoOf(const KernelDefinition& k) {
  v1::KernelInfo info;
  info.mutable_kernel()->set_name(k.name);
  info.mutable_kernel()->set_version(k.Version());
  info.set_language(k.language);
  info.set_description(k.description);
  for (const KernelParameter& p : k.parameters) {
    v1::ParameterInfo* param = info.add_parameters();
    param->set_name(p.name);
    for (int64_t v : p.values) param->add_values()->set_int_value(v);
  }
  for (const std::string& c : k.constraints) info.add_constraints(c);
  for (const ProblemParameter& p : k.problem) info.add_problem_parameters(p.name);
  if (!k.builtin) {  // the rest of a client kernel's definition, for `kernels --problem`
    *info.mutable_spec() = ToProto(k);
    info.mutable_spec()->clear_source();
    info.mutable_spec()->clear_reference_source();
  }
  for (const auto& [name, expression] : k.default_config) {
    // Defaults may depend on the problem and machine; the API shows constant ones.
    int64_t v;
    if (absl::SimpleAtoi(expression, &v)) {
      (*info.mutable_default_config()->mutable_params())[name].set_int_value(v);
    }
  }
  return info;
}

// A recorded space this server replays (ktune serve --replay): its kernel has no definition
// here, only the one problem and device class it was recorded for, which the description names
// (jobs of it give exactly those), and the values its records hold.
v1::KernelInfo KernelInfoOf(const TaskSpaces::Recorded& r) {
  v1::KernelInfo info;
  info.mutable_kernel()->set_name(r.task.kernel);
  info.mutable_kernel()->set_version(r.task.kernel_version);
  info.set_language("replay");
  info.set_description(absl::StrCat("recorded space of device class '", r.task.device_class,
                                    "', problem ", CanonicalJson(r.task.problem),
                                    " (replayed; a job gives that problem and class)"));
  for (const Parameter& p : r.space->parameters()) {
    v1::ParameterInfo* param = info.add_parameters();
    param->set_name(p.name);
    for (const ParamValue& v : p.values) *param->add_values() = ToProto(v);
  }
  for (const auto& [name, value] : r.task.problem) info.add_problem_parameters(name);
  info.set_space_size(r.space->size());
  return info;
}

}  // namespace

grpc::ServerUnaryReactor* TuningServiceImpl::ListKernels(grpc::CallbackServerContext* ctx,
                                                         const v1::ListKernelsRequest*,
                                                         v1::ListKernelsResponse* response) {
  if (absl::Status a = auth_->Check(ctx, Role::kQuery); !a.ok()) return Done(ctx, a);
  return RunOn(pool_, ctx, [=]() -> absl::Status {
    for (const KernelDefinition* k : spaces_->registry().List()) {
      *response->add_kernels() = KernelInfoOf(*k);
    }
    // The recorded spaces too: a replay server listed only its registry, never the kernels its
    // jobs could tune.
    for (const TaskSpaces::Recorded& r : spaces_->RecordedSpaces()) {
      if (response->kernels_size() >= kMaxListedKernels) break;
      *response->add_kernels() = KernelInfoOf(r);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TuningServiceImpl::RegisterKernel(
    grpc::CallbackServerContext* ctx, const v1::RegisterKernelRequest* request,
    v1::KernelInfo* response) {
  if (absl::Status a = auth_->Check(ctx, Role::kAdmin); !a.ok()) return Done(ctx, a);
  return RunOn(pool_, ctx, [=]() -> absl::Status {
    if (!request->has_kernel()) {
      return absl::InvalidArgumentError("kernel (a KernelSpec) is required");
    }
    absl::StatusOr<const KernelDefinition*> registered =
        client_kernels_->Register(request->kernel());
    if (!registered.ok()) return registered.status();
    best_->KernelRegistered((*registered)->name);
    *response = KernelInfoOf(**registered);
    return absl::OkStatus();
  });
}

}  // namespace ktune
