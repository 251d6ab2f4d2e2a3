#include "cli/tune_session.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <iostream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/search_strategy.h"
#include "cli/command.h"
#include "cli/interrupts.h"
#include "cli/tune_job.h"
#include "common/status_macros.h"
#include "grpcpp/client_context.h"
#include "ktune/v1/worker_service.grpc.pb.h"
#include "measurer/worker_loop.h"
#include "proto/channel.h"
#include "server/scheduler_internal.h"
#include "server/tuning_server.h"

namespace ktune::cli {

Progress::Progress(int64_t total, std::string label)
    : total_(std::max<int64_t>(1, total)), label_(std::move(label)), tty_(isatty(2)) {}

void Progress::Update(int64_t done, double best_ms) {
  if (!tty_ && done * 10 / total_ == last_decile_ && done != total_) return;
  last_decile_ = done * 10 / total_;
  const int filled = static_cast<int>(30 * std::min(done, total_) / total_);
  std::cerr << (tty_ ? "\r" : "") << label_ << "[" << std::string(filled, '#')
            << std::string(30 - filled, '.') << "] " << done << "/" << total_;
  if (best_ms > 0) std::cerr << absl::StrFormat("  best %.4f ms", best_ms);
  std::cerr << (tty_ && done < total_ ? "" : "\n") << std::flush;
}

Throughput ThroughputOf(const TuneTarget& t, const Record& r) {
  Throughput out;
  if (t.flops <= 0 || !r.time_ms || *r.time_ms <= 0) return out;
  out.gflops = t.flops / (*r.time_ms * 1e6);
  const double peak = t.peak_gflops_per_thread * std::min(ThreadsOf(r.config), t.cores);
  // Never above 100%: a run that beat the estimated peak shows that the estimate was low.
  if (peak > 0) out.percent_of_peak = 100 * out.gflops / std::max(peak, out.gflops);
  return out;
}

namespace {

// The in-process server (no port, no auth) and its one worker. Stop, or the destructor, stops
// the worker first (it reports its lease and leaves), then the server.
class EmbeddedService {
 public:
  static absl::StatusOr<std::unique_ptr<EmbeddedService>> Start(TuneTarget& t,
                                                                const std::string& db_path,
                                                                int batch_size,
                                                                KernelRegistry* registry) {
    std::unique_ptr<EmbeddedService> s(new EmbeddedService());
    TuningServerOptions options;
    options.listen = "";  // InProcessChannel only
    options.db_path = db_path;
    options.resume_jobs = false;  // only this session's job
    if (!t.recorded_file.empty()) options.replay_files.push_back(t.recorded_file);
    KTUNE_ASSIGN_OR_RETURN(s->server_, TuningServer::Start(options));
    std::shared_ptr<grpc::Channel> channel = s->server_->InProcessChannel();
    s->tuning_ = v1::TuningService::NewStub(channel);
    s->workers_ = v1::WorkerService::NewStub(channel);
    s->measurer_ = t.measurer.get();
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    s->worker_options_.host = host;
    s->worker_options_.cores = t.cores;              // the space the target was built with
    s->worker_options_.max_candidates = batch_size;  // a batch per lease
    s->worker_options_.registry = registry;          // client kernels: without it, none was leased
    // Nobody reads the embedded server's log: measurements it cannot store end the session
    // (a full disk had it measure the same batch again and again, silently).
    s->worker_options_.stop_when_not_stored = true;
    return s;
  }
  ~EmbeddedService() { Stop().IgnoreError(); }

  v1::TuningService::StubInterface& client() { return *tuning_; }

  // Set to stop the worker.
  std::atomic<bool>* stop_flag() { return &stop_; }

  // Starts the worker's thread. Should the worker fail, `job_id` is cancelled: its watch ends.
  // An interrupt cancels it at once (a watcher thread), while the worker finishes and reports
  // the measurements in flight: a second Ctrl-C, which ends the process, leaves the job cancelled
  // in the file, not "running" for ever.
  void StartWorker(const std::string& job_id) {
    worker_ = std::thread([this, job_id] {
      WorkerLoop loop(workers_.get(), measurer_, worker_options_, &stop_);
      worker_status_ = loop.Run();
      if (worker_status_.ok() && InterruptSignal() == 0) return;
      // The cancel ends the job and its watch. One that cannot be stored (the disk that refused
      // the measurements refuses it too) left the job running and the watch waiting for ever.
      const absl::Status cancelled = Cancel(job_id);
      if (cancelled.ok()) return;
      stopper_.Stop(
          !worker_status_.ok()
              ? worker_status_
              : absl::Status(cancelled.code(), absl::StrCat("interrupted, but job ", job_id,
                                                            " could not be marked cancelled: ",
                                                            cancelled.message())));
    });
    watcher_.emplace([this, job_id](int signal) {
      Cancel(job_id).IgnoreError();  // one that cannot be stored: see the worker's thread above
      std::cerr << "\ninterrupted: job " << job_id
                << " cancelled; storing the measurements in flight ("
                << (signal == SIGINT ? "Ctrl-C" : "the signal") << " again to stop now)"
                << std::endl;
    });
  }

  absl::Status Cancel(const std::string& job_id) {
    v1::CancelJobRequest cancel;
    cancel.set_job_id(job_id);
    v1::Job ignored;
    const absl::Status s =
        FromGrpc(tuning_->CancelJob(ClientContextFor("").get(), cancel, &ignored));
    // A job that ended meanwhile needs no cancel.
    return absl::IsFailedPrecondition(s) ? absl::OkStatus() : s;
  }

  // Ends the session's watch when the job cannot end (see StartWorker).
  WatchStopper* stopper() { return &stopper_; }

  // The worker's error, if it had one.
  absl::Status Stop() {
    stop_ = true;
    if (watcher_) watcher_->Stop();
    if (worker_.joinable()) worker_.join();
    if (server_ != nullptr) server_->Shutdown();
    return worker_status_;
  }

 private:
  EmbeddedService() = default;

  std::unique_ptr<TuningServer> server_;
  std::unique_ptr<v1::TuningService::Stub> tuning_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
  Measurer* measurer_ = nullptr;
  WorkerLoopOptions worker_options_;
  std::atomic<bool> stop_{false};
  std::thread worker_;
  std::optional<InterruptWatcher> watcher_;  // cancels the job as soon as a signal comes
  absl::Status worker_status_;  // written by the worker thread before it ends
  WatchStopper stopper_;
};

// The rest of the summary, from the database once the server has stopped: the job's records
// and every record of the task the search could use (those of its space).
absl::Status ReadRecords(const TuneTarget& t, const std::string& db_path,
                         std::optional<double> max_rel_error, TuneSummary& s) {
  KTUNE_ASSIGN_OR_RETURN(std::unique_ptr<SqliteTuningDatabase> db, OpenDatabase(db_path));
  KTUNE_ASSIGN_OR_RETURN(std::vector<Record> records, db->TaskRecords(t.task));
  const std::string source = absl::StrCat("job:", s.job_id);
  for (const Record& r : records) {
    const bool new_record = r.source == source;
    if (new_record) {
      ++s.records_stored;
      if (r.status != MeasurementStatus::kOk) {
        ++s.failures[std::string(StatusName(r.status))];
        ++s.failure_reasons[absl::StrCat(StatusName(r.status), ": ", r.message)];
      }
    } else {
      absl::StatusOr<Point> point = t.space->ToPoint(r.config);
      if (!point.ok() || !t.space->IsValid(*point)) continue;  // another version or space
    }
    if (r.time_ms && WithinAccuracyBudget(r.max_rel_error, max_rel_error) &&
        (!s.best || *r.time_ms < *s.best->time_ms)) {
      s.best = r;
    }
    if (t.default_config && r.config == *t.default_config) s.default_record = r;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TuneSummary> RunTuneSession(TuneTarget& t, const std::string& db_path,
                                           const TuneSessionOptions& o) {
  KTUNE_ASSIGN_OR_RETURN(std::unique_ptr<EmbeddedService> service,
                         EmbeddedService::Start(t, db_path, o.batch_size, o.registry));
  std::optional<InterruptScope> interrupts(service->stop_flag());
  TuneJobRequest request;
  request.task = t.task;
  request.budget = o.budget;
  request.strategy = o.strategy;
  request.seed = o.seed;
  request.batch_size = o.batch_size;
  request.threads = t.threads;
  request.agent_share = o.agent_share;
  request.max_rel_error = o.max_rel_error;
  request.initial = o.initial;
  request.stopper = service->stopper();
  absl::StatusOr<v1::Job> job = RunTuneJob(
      service->client(), request, [&](const std::string& id) { service->StartWorker(id); },
      o.on_progress);
  const absl::Status worker = service->Stop();
  interrupts.reset();
  service.reset();
  if (!job.ok()) return job.status();
  if (!worker.ok()) return worker;
  if (InterruptSignal() != 0 && job->state() == v1::JOB_STATE_CANCELLED) {
    // Counted in the file once the worker stored its measurements in flight (the job's count at
    // the cancel left them out: "after 25" where 33 were stored).
    int64_t stored = job->measurements_done();
    int64_t id = 0;
    if (absl::SimpleAtoi(job->job_id(), &id)) {
      if (auto db = OpenDatabase(db_path); db.ok()) {
        if (auto counted = scheduler_internal::CountJobRecords(**db, id, t.task); counted.ok()) {
          stored = counted->done;
        }
      }
    }
    return absl::CancelledError(absl::StrCat("interrupted: job ", job->job_id(),
                                             " cancelled after ", stored,
                                             " measurements, which are stored"));
  }
  if (job->state() != v1::JOB_STATE_DONE) {
    const std::string state = absl::AsciiStrToLower(
        absl::string_view(v1::JobState_Name(job->state())).substr(strlen("JOB_STATE_")));
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job->job_id(), " ", state, ": ", job->message()));
  }
  TuneSummary s;
  s.job_id = job->job_id();
  const v1::TaskProgress& task = job->tasks(0);
  s.measurements = task.measurements_done();
  s.reused = task.prior_records();
  s.warm_started = task.warm_started();
  s.agent_seconds = task.agent_seconds();
  s.seconds = task.tuning_seconds();
  if (absl::StatusOr<std::unique_ptr<SearchStrategy>> strategy = MakeStrategy(o.strategy);
      strategy.ok()) {
    s.checkpoint = (*strategy)->CheckpointKey(t.task.kernel, *t.space);
  }
  KTUNE_RETURN_IF_ERROR(ReadRecords(t, db_path, o.max_rel_error, s));
  return s;
}

}  // namespace ktune::cli
