// The gRPC front of the scheduler: ktune.v1.WorkerService and the job and query part of
// ktune.v1.TuningService, on the callback API. Each handler validates its request at the edge,
// calls the Scheduler (or the database) and maps absl::Status codes to gRPC codes one to one.
// RPCs not listed here answer UNIMPLEMENTED.
#ifndef KTUNE_SERVER_SERVICES_H_
#define KTUNE_SERVER_SERVICES_H_

#include <map>
#include <optional>
#include <set>
#include <string>

#include "absl/synchronization/mutex.h"
#include "db/tuning_database.h"
#include "kernels/kernel_registry.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "ktune/v1/worker_service.grpc.pb.h"
#include "server/auth.h"
#include "server/best_cache.h"
#include "server/client_kernels.h"
#include "server/scheduler.h"
#include "server/task_spaces.h"
#include "server/telemetry_intake.h"
#include "server/thread_pool.h"

namespace ktune {

// An RPC's final status. The server's own failures (ABORTED: a database busy past its timeout,
// UNAVAILABLE, INTERNAL, DATA_LOSS, UNKNOWN) are also logged (`rpc_failed`, code and message);
// a caller's (a bad argument, a refusal) are not.
grpc::Status ToGrpc(const absl::Status& s);

// The untuned default's best ok time among the task's records (any job's: a configuration ktune
// has measured is not measured again), for TuneEvent and TaskProgress.default_config_time_ms. A
// CPU kernel's default uses all the cores the worker gives its kernels (its threads parameter,
// one that takes the core count): each record is compared with the default for as many cores as
// it ran threads (the worker's cores_used is not kept with a record). nullopt for a recorded
// space (no default), or when none measured it. Reads every record of the task.
std::optional<double> DefaultConfigTime(TuningDatabase& db, const TaskSpaces& spaces,
                                        const TaskKey& task);

// A drift flag as the API gives it (ListDrift, Explain).
v1::DriftFlag ToProto(const DriftFlag& f);

class WorkerServiceImpl final : public v1::WorkerService::CallbackService {
 public:
  WorkerServiceImpl(Scheduler* scheduler, const KernelRegistry* registry,
                    const Authenticator* auth)
      : scheduler_(scheduler), registry_(registry), auth_(auth) {}
  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* ctx,
                                     const v1::RegisterRequest* request,
                                     v1::RegisterResponse* response) override;
  grpc::ServerUnaryReactor* LeaseBatch(grpc::CallbackServerContext* ctx,
                                       const v1::LeaseBatchRequest* request,
                                       v1::LeaseBatchResponse* response) override;
  grpc::ServerUnaryReactor* ReportResults(grpc::CallbackServerContext* ctx,
                                          const v1::ReportResultsRequest* request,
                                          v1::ReportResultsResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* Leave(grpc::CallbackServerContext* ctx, const v1::LeaveRequest* request,
                                  v1::LeaveResponse* response) override;

 private:
  static constexpr int kMaxWorkers = 10'000;  // ListWorkers' answer stays within 4 MiB
  // With tokens: PERMISSION_DENIED unless the caller is the token that registered `worker_id`
  // (another worker token could end a worker's leases with Leave, or report results under its
  // name). A worker this server does not know passes: the scheduler answers for it.
  absl::Status CheckOwner(const grpc::CallbackServerContext* ctx, const std::string& worker_id);

  Scheduler* scheduler_;
  const KernelRegistry* registry_;
  const Authenticator* auth_;
  absl::Mutex owners_mu_;
  // worker id -> Authenticator::CallerOf its registration; with tokens only
  std::map<std::string, std::string> owners_ ABSL_GUARDED_BY(owners_mu_);
  // The handlers' threads, apart from the clients': a flood of client calls never holds up a
  // worker's heartbeat or report. Last: destroyed first, finishing every call it took.
  ThreadPool pool_{8};
};

// QueryBest is a raw method: its cached answers are sent in the wire form they were serialised to
// once (best_cache.h), not copied into a response message and serialised again on every call.
class TuningServiceImpl final
    : public v1::TuningService::WithRawCallbackMethod_QueryBest<v1::TuningService::CallbackService> {
 public:
  TuningServiceImpl(Scheduler* scheduler, TuningDatabase* db, const TaskSpaces* spaces,
                    BestCache* best, ClientKernels* client_kernels, TelemetryIntake* telemetry,
                    const Authenticator* auth)
      : scheduler_(scheduler),
        db_(db),
        spaces_(spaces),
        best_(best),
        client_kernels_(client_kernels),
        telemetry_(telemetry),
        auth_(auth) {}
  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* ctx,
                                      const v1::SubmitJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* ctx,
                                   const v1::GetJobRequest* request, v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* ctx,
                                      const v1::CancelJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* PauseJob(grpc::CallbackServerContext* ctx,
                                     const v1::PauseJobRequest* request,
                                     v1::Job* response) override;
  grpc::ServerUnaryReactor* ResumeJob(grpc::CallbackServerContext* ctx,
                                      const v1::ResumeJobRequest* request,
                                      v1::Job* response) override;
  // A server stream: an event when the job's progress changes (at most one a second), a last one
  // when it ends, then OK; tasks included when the request asks (with_tasks). Each watch has a
  // thread of its own that polls the scheduler.
  grpc::ServerWriteReactor<v1::JobEvent>* WatchJob(grpc::CallbackServerContext* ctx,
                                                   const v1::WatchJobRequest* request) override;
  // Request and response are a QueryBestRequest and a QueryBestResponse in their wire form.
  grpc::ServerUnaryReactor* QueryBest(grpc::CallbackServerContext* ctx,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;
  // Query role: the task is parsed and validated as QueryBest's (server/explanation.h).
  grpc::ServerUnaryReactor* Explain(grpc::CallbackServerContext* ctx,
                                    const v1::ExplainRequest* request,
                                    v1::ExplainResponse* response) override;
  // Telemetry role; samples validated one by one (telemetry_services.cc).
  grpc::ServerUnaryReactor* ReportTelemetry(grpc::CallbackServerContext* ctx,
                                            const v1::ReportTelemetryRequest* request,
                                            v1::ReportTelemetryResponse* response) override;
  grpc::ServerUnaryReactor* ListDrift(grpc::CallbackServerContext* ctx,
                                      const v1::ListDriftRequest* request,
                                      v1::ListDriftResponse* response) override;
  grpc::ServerUnaryReactor* RetuneDriftFlag(grpc::CallbackServerContext* ctx,
                                            const v1::RetuneDriftFlagRequest* request,
                                            v1::DriftFlag* response) override;
  grpc::ServerUnaryReactor* ListKernels(grpc::CallbackServerContext* ctx,
                                        const v1::ListKernelsRequest* request,
                                        v1::ListKernelsResponse* response) override;
  // Records (records_services.cc). Query role; ImportRecords needs admin.
  grpc::ServerUnaryReactor* ListRecords(grpc::CallbackServerContext* ctx,
                                        const v1::ListRecordsRequest* request,
                                        v1::ListRecordsResponse* response) override;
  grpc::ServerWriteReactor<v1::Record>* ExportRecords(
      grpc::CallbackServerContext* ctx, const v1::ExportRecordsRequest* request) override;
  grpc::ServerReadReactor<v1::Record>* ImportRecords(
      grpc::CallbackServerContext* ctx, v1::ImportRecordsResponse* response) override;
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* ctx,
                                        const v1::ListWorkersRequest* request,
                                        v1::ListWorkersResponse* response) override;
  // A one-task job (submit role) whose progress streams as TuneEvents until it ends.
  grpc::ServerWriteReactor<v1::TuneEvent>* Tune(grpc::CallbackServerContext* ctx,
                                                const v1::TuneRequest* request) override;
  // Admin role only: the kernel is validated, versioned, stored and then usable in jobs.
  grpc::ServerUnaryReactor* RegisterKernel(grpc::CallbackServerContext* ctx,
                                           const v1::RegisterKernelRequest* request,
                                           v1::KernelInfo* response) override;

 private:
  Scheduler* scheduler_;
  TuningDatabase* db_;
  const TaskSpaces* spaces_;
  BestCache* best_;
  ClientKernels* client_kernels_;
  TelemetryIntake* telemetry_;
  absl::Mutex known_kernels_mu_;
  std::set<std::string> known_kernels_ ABSL_GUARDED_BY(known_kernels_mu_);
  absl::Time known_kernels_at_ ABSL_GUARDED_BY(known_kernels_mu_) = absl::InfinitePast();
  // The answer to a parsed QueryBest request of an authorised caller (the cache's own, unless a
  // background job was queued).
  absl::StatusOr<std::shared_ptr<const BestAnswer>> AnswerQueryBest(
      grpc::CallbackServerContext* ctx, const v1::QueryBestRequest& request);
  // The task and device of a QueryBest or Explain request, validated (InvalidArgument naming the
  // field); the problem canonical for registry kernels. top_k is left at 1.
  absl::StatusOr<BestQuery> ParseBestQuery(const v1::KernelRef& kernel, const v1::Problem& problem,
                                           const v1::DeviceFingerprint& device);
  // A telemetry sample as stored, validated (InvalidArgument saying what is wrong).
  absl::StatusOr<TelemetryReport> TelemetryFromProto(const v1::TelemetrySample& sample);
  // For a kernel known only from records: InvalidArgument unless every parameter `config` names
  // is one the task's best record on its class names (any, when the task has no ok record).
  absl::Status SameParametersAsRecords(const BestQuery& task, const Configuration& config);
  // Whether telemetry may name `kernel`: a registry kernel, or one with records.
  bool KernelKnown(const std::string& kernel);
  // tune_if_missing: queues a job for the task (one per task while it runs).
  // InvalidArgument for a task that cannot be measured; FailedPrecondition, saying why, when
  // no job is queued (no connected worker of the class; kMaxBackgroundJobs queued or running).
  absl::StatusOr<std::string> TuneInBackground(const BestQuery& query);
  // tune_if_missing's jobs queued or running at once: a compiler asking for every shape it meets
  // queued one each, without bound (a compiler-integration trial: 40 for one loop).
  static constexpr int kMaxBackgroundJobs = 16;
  static constexpr int64_t kBackgroundBudget = 64;
  // WatchJob (and, apart, Tune) streams open at once (each holds a polling thread); more get
  // RESOURCE_EXHAUSTED.
  static constexpr int kMaxWatchStreams = 1024;
  // ExportRecords streams open at once (each holds up to a million records); more get
  // RESOURCE_EXHAUSTED.
  static constexpr int kMaxExportStreams = 4;
  // Tasks the reply of a job action lists (Job.tasks): every client reads it (4 MiB by default).
  static constexpr size_t kMaxReplyTasks = 4096;

  const Authenticator* auth_;
  absl::Mutex background_mu_;
  std::map<std::string, int64_t> background_ ABSL_GUARDED_BY(background_mu_);  // task -> job
  // The handlers' threads (RunOn). Last: destroyed first, finishing every call it took.
  ThreadPool pool_{16};
};

// Finishes a unary call with `status`.
grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const absl::Status& status);

// Runs `body` on `pool` and finishes the unary call with the status it returns (having filled
// the response): the gRPC thread that took the call is free at once (thread_pool.h says why).
// Every unary handler runs so, but for QueryBest's cached answers; each checks the caller's role
// first, on gRPC's thread (a cheap lookup), so that refused calls never queue ahead of real ones.
template <typename Body>
grpc::ServerUnaryReactor* RunOn(ThreadPool& pool, grpc::CallbackServerContext* ctx, Body body) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  pool.Run([reactor, body = std::move(body)]() mutable { reactor->Finish(ToGrpc(body())); });
  return reactor;
}

// A Job message from a scheduler status.
v1::Job ToProto(const JobStatus& status, bool with_tasks);

// The API's name of a job's (or task's) state.
v1::JobState ToProto(JobState state);
v1::TaskProgress ToProto(const TaskStatus& task);

}  // namespace ktune

#endif  // KTUNE_SERVER_SERVICES_H_
