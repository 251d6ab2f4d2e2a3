#include "measurer/worker_loop.h"

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/event_log.h"
#include "common/utf8.h"
#include "proto/channel.h"
#include "proto/convert.h"

namespace ktune {
namespace {

// A client context with the call's deadline and the worker's token.
std::unique_ptr<grpc::ClientContext> Context(absl::Duration deadline, const std::string& token) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(deadline));
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  return ctx;
}

// Errors after which retrying cannot help.
bool IsFatal(const absl::Status& s) {
  return absl::IsPermissionDenied(s) || absl::IsUnauthenticated(s) || absl::IsInvalidArgument(s);
}

// `d` times a random factor in [0.5, 1.5): workers that lost the same server do not all come
// back at the same instant.
absl::Duration Jittered(absl::Duration d) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return d * std::uniform_real_distribution<double>(0.5, 1.5)(rng);
}

// Errors that a retry may get past: the server restarting, a network outage, a slow reply. A
// server stopping gracefully cancels the calls it is answering (CANCELLED: the server never
// answers that on purpose, and the worker's own calls are not cancelled when it stops): a report
// it cancelled was dropped, a measured batch lost at 4 of 5 restarts (an operator trial).
bool IsTransient(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) || absl::IsAborted(s) ||
         absl::IsCancelled(s);
}

// The result as the server accepts it: a time that is not a finite number of milliseconds above
// zero (a broken timer, a corrupt replay record) makes it a failed measurement that says so,
// rather than a report the server refuses whole.
MeasureResult Reportable(MeasureResult r) {
  for (double t : r.repeat_times_ms) {
    if (IsValidTimeMs(t)) continue;
    r.status = MeasurementStatus::kRuntimeError;
    r.message = absl::StrCat("the measurer returned the time ", t, " ms");
    r.repeat_times_ms.clear();
    r.time_ms.reset();
    break;
  }
  if (r.status == MeasurementStatus::kOk && r.repeat_times_ms.empty()) {
    r.status = MeasurementStatus::kRuntimeError;
    r.message = "the measurer returned no time";
    r.time_ms.reset();
  }
  if (r.max_rel_error && !(*r.max_rel_error >= 0 && std::isfinite(*r.max_rel_error))) {
    r.max_rel_error.reset();  // not a measured error: the server would refuse the report
  }
  if (r.repeat_times_ms.size() > size_t{kMaxRepeatTimes}) r.repeat_times_ms.resize(kMaxRepeatTimes);
  return r;
}

// Sends Heartbeat for one lease every `interval` until destroyed. revoked() turns true once the
// server says it took the lease back (it expired and could not be given back): its candidates
// are someone else's now, and measuring them further is wasted. A server that restarted and
// forgot the worker revokes nothing: it stores the batch's report after all (the report loop).
// Destroying it cancels a heartbeat in flight: the batch's report does not wait for a call stuck
// on a slow or hung server (up to the RPC deadline), and the call is made without the lock.
class LeaseHeartbeat {
 public:
  LeaseHeartbeat(v1::WorkerService::StubInterface* stub, std::string worker, std::string lease,
                 absl::Duration interval, absl::Duration deadline, std::string token,
                 WorkerMetrics* metrics)
      : thread_([=] {
          std::unique_lock<std::mutex> lock(mu_);
          while (!cv_.wait_for(lock, absl::ToChronoMilliseconds(interval), [&] { return done_; })) {
            v1::HeartbeatRequest request;
            request.set_worker_id(worker);
            request.add_lease_ids(lease);
            v1::HeartbeatResponse response;
            const std::unique_ptr<grpc::ClientContext> context = Context(deadline, token);
            in_flight_ = context.get();
            lock.unlock();
            const absl::Status s = FromGrpc(stub->Heartbeat(context.get(), request, &response));
            lock.lock();
            in_flight_ = nullptr;
            if (done_) break;  // cancelled by the destructor, or answered after the batch ended
            // A failed heartbeat says nothing (the report decides); a reply that revokes does.
            // The gauge follows the heartbeats too: a long batch does not hide a cut-off.
            metrics->SetServerReachable(!NoAnswerFromServer(s));
            if (!s.ok()) continue;
            // The server restarted and forgot the worker (and so the lease): the batch goes on,
            // and its report is sent as an earlier process's lease, which the server stores.
            if (response.reregister()) continue;
            for (const std::string& id : response.revoked_lease_ids()) {
              if (id == lease) revoked_ = true;
            }
          }
        }) {}
  bool revoked() const { return revoked_.load(); }
  ~LeaseHeartbeat() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
      if (in_flight_ != nullptr) in_flight_->TryCancel();  // thread-safe, per gRPC
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;                         // guarded by mu_
  grpc::ClientContext* in_flight_ = nullptr;  // guarded by mu_: the heartbeat being sent
  std::atomic<bool> revoked_{false};
  std::thread thread_;  // last: it starts in the constructor and reads the members above
};

}  // namespace

absl::Status TakeClientKernel(const WorkerLoopOptions& options, const v1::KernelSpec& spec) {
  // --no-client-kernels is kept here too, not only asked of the server at registration: a server
  // that leases a client kernel anyway gets a failure, not a build.
  if (options.registry == nullptr || !options.client_kernels) {
    return absl::FailedPreconditionError("this worker does not take client kernels");
  }
  absl::StatusOr<KernelDefinition> k = FromProto(spec);
  if (!k.ok()) return k.status();
  return options.registry->Register(*std::move(k)).status();
}

WorkerLoop::WorkerLoop(v1::WorkerService::StubInterface* stub, Measurer* measurer,
                       WorkerLoopOptions options, const std::atomic<bool>* stop)
    : stub_(stub), measurer_(measurer), options_(std::move(options)), stop_(stop) {
  if (options_.metrics == nullptr) unshown_metrics_ = std::make_unique<WorkerMetrics>();
  metrics_ = options_.metrics != nullptr ? options_.metrics : unshown_metrics_.get();
}

absl::Status WorkerLoop::Register() {
  v1::RegisterRequest request;
  *request.mutable_device() = ToProto(measurer_->device());
  request.mutable_device()->set_cores_used(options_.cores);
  request.set_host(options_.host);
  for (const std::string& language : options_.languages) {
    request.mutable_capabilities()->add_languages(language);
  }
  request.mutable_capabilities()->set_max_parallel(1);
  request.mutable_capabilities()->set_can_run_untrusted(options_.registry != nullptr &&
                                                        options_.client_kernels);
  v1::RegisterResponse response;
  absl::Status s = FromGrpc(
      stub_->Register(Context(options_.rpc_deadline, options_.token).get(), request, &response));
  if (!s.ok()) return s;
  worker_id_ = response.worker_id();
  metrics_->CountRegistration();
  metrics_->SetServerReachable(true);
  metrics_->SetWorker(measurer_->device().device_class, options_.host);
  LogEvent("worker_registered", {{"worker_id", worker_id_}, {"server_says", "ok"}});
  if (response.heartbeat_interval_ms() > 0) {
    heartbeat_interval_ = absl::Milliseconds(response.heartbeat_interval_ms());
  }
  return absl::OkStatus();
}

absl::Status WorkerLoop::Run() {
  absl::Duration backoff = absl::Milliseconds(100);
  absl::Time idle_since = absl::Now();
  auto wait = [&](absl::Duration d) {
    const absl::Time until = absl::Now() + d;
    while (!Stopping() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(20));
  };
  // The wait before retrying a server that could not be reached: at most max_backoff, jitter
  // included. With the channel, it ends early once the channel connects: its backoff is reset, so
  // that it tries to connect from now on at its first pace (WorkerLoopOptions::channel).
  auto wait_to_retry = [&](absl::Duration d) {
    const absl::Time until = absl::Now() + std::min(Jittered(d), options_.max_backoff);
    if (options_.channel == nullptr) return wait(until - absl::Now());
    grpc::experimental::ChannelResetConnectionBackoff(options_.channel.get());
    while (!Stopping() && absl::Now() < until) {
      const absl::Time slice = std::min(until, absl::Now() + absl::Milliseconds(200));
      if (options_.channel->WaitForConnected(absl::ToChronoTime(slice))) return;
    }
  };
  // The wait before a report is sent again: `d`, or less once a channel that was not connected
  // connects (its backoff reset first, as wait_to_retry's). A report sent into gRPC's own backoff
  // after a long outage failed at once for seconds after the server was back, and its batch was
  // given up. A connected channel (the server answering an error itself) waits `d`, not less.
  auto wait_to_resend = [&](absl::Duration d) {
    const absl::Time until = absl::Now() + d;
    if (options_.channel == nullptr ||
        options_.channel->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY) {
      return absl::SleepFor(d);
    }
    grpc::experimental::ChannelResetConnectionBackoff(options_.channel.get());
    while (absl::Now() < until) {
      const absl::Time slice = std::min(until, absl::Now() + absl::Milliseconds(200));
      if (options_.channel->WaitForConnected(absl::ToChronoTime(slice))) return;
    }
  };
  // A server that cannot be reached is logged when that starts (and when its reason changes),
  // not every retry. With idle_exit, a server never reached counts as nothing to lease (a wrong
  // address), and the worker gives up with the reason instead of retrying forever; once it has
  // worked with the server, it waits out outages (a server restarts, and its job resumes).
  std::string unreachable_reason;
  bool ever_reached = false;
  auto on_unreachable = [&](const absl::Status& s) -> bool {
    metrics_->SetServerReachable(!NoAnswerFromServer(s));
    if (s.message() != unreachable_reason) {
      unreachable_reason = std::string(s.message());
      LogEvent("server_unreachable", {{"reason", unreachable_reason}});
    }
    return !ever_reached && options_.idle_exit > absl::ZeroDuration() &&
           absl::Now() - idle_since > options_.idle_exit;
  };
  auto give_up = [&](const absl::Status& s) {
    return absl::Status(
        s.code(), absl::StrCat("no server to lease from for ",
                               absl::FormatDuration(options_.idle_exit), " (", s.message(), ")"));
  };
  while (!Stopping()) {
    if (options_.max_measurements > 0 && reported_ >= options_.max_measurements) break;
    if (worker_id_.empty()) {
      absl::Status s = Register();
      if (IsFatal(s)) return s;
      if (!s.ok()) {
        if (on_unreachable(s)) return give_up(s);
        wait_to_retry(backoff);
        backoff = std::min(backoff * 2, options_.max_backoff);
        continue;
      }
      unreachable_reason.clear();
      ever_reached = true;
      backoff = absl::Milliseconds(100);
      idle_since = absl::Now();  // a worker that has just (re)joined has not been idle
    }
    v1::LeaseBatchRequest request;
    request.set_worker_id(worker_id_);
    // Never past max_measurements: a whole lease of 8 took a worker capped at 3 to 7.
    int64_t want = options_.max_candidates;
    if (options_.max_measurements > 0) {
      want = std::min<int64_t>(want, options_.max_measurements - reported_);
    }
    request.set_max_candidates(static_cast<int>(want));
    v1::LeaseBatchResponse lease;
    absl::Status s = FromGrpc(
        stub_->LeaseBatch(Context(options_.rpc_deadline, options_.token).get(), request, &lease));
    if (absl::IsNotFound(s)) {  // the server restarted and forgot us
      LogEvent("worker_forgotten", {{"worker_id", worker_id_}});
      worker_id_.clear();
      continue;
    }
    if (IsFatal(s)) return s;
    if (!s.ok()) {
      if (on_unreachable(s)) return give_up(s);
      wait_to_retry(backoff);
      backoff = std::min(backoff * 2, options_.max_backoff);
      continue;
    }
    unreachable_reason.clear();
    backoff = absl::Milliseconds(100);
    metrics_->SetServerReachable(true);
    metrics_->CountLease(lease.lease_id().empty());
    if (lease.lease_id().empty()) {
      if (lease.preparing()) idle_since = absl::Now();  // work is coming: not idle
      if (options_.idle_exit > absl::ZeroDuration() &&
          absl::Now() - idle_since > options_.idle_exit) {
        break;
      }
      wait(absl::Milliseconds(std::max<int64_t>(10, lease.retry_after_ms())));
      continue;
    }
    idle_since = absl::Now();

    // Measure: candidates grouped by task, in lease order within each task.
    v1::ReportResultsRequest report;
    report.set_worker_id(worker_id_);
    report.set_lease_id(lease.lease_id());
    bool revoked = false;
    std::vector<MeasurementStatus> statuses;  // of the results measured
    metrics_->BeginBatch();
    {
      LeaseHeartbeat heartbeat(stub_, worker_id_, lease.lease_id(), heartbeat_interval_,
                               options_.rpc_deadline, options_.token, metrics_);
      std::map<std::string, std::vector<int>> by_task;  // serialized task -> candidate indices
      std::map<std::string, absl::Status> unusable;     // kernel -> why it cannot be measured
      for (int i = 0; i < lease.candidates_size(); ++i) {
        by_task[lease.candidates(i).task().SerializeAsString()].push_back(i);
        const v1::Candidate& c = lease.candidates(i);
        if (!c.has_kernel_spec()) continue;
        absl::Status registered = TakeClientKernel(options_, c.kernel_spec());
        if (!registered.ok()) unusable[c.kernel_spec().name()] = registered;
      }
      // A revoked lease stops the measurer between candidates, not only between tasks: a
      // worker measured the rest of its task (minutes of GPU builds) for results the server
      // refuses, while another worker measured them again.
      // And a worker asked to stop finishes its lease, but not for longer than
      // kMeasureGraceWhenStopping: a candidate or reference that hangs held SIGTERM off for
      // its whole timeout (10 minutes for a reference). What it measured is still reported.
      absl::Time stop_seen = absl::InfiniteFuture();
      measurer_->set_stop_check([this, &heartbeat, &stop_seen] {
        if (heartbeat.revoked()) return true;
        if (!Stopping()) return false;
        stop_seen = std::min(stop_seen, absl::Now());
        return absl::Now() - stop_seen > kMeasureGraceWhenStopping;
      });
      absl::Cleanup no_stop_check = [this] { measurer_->set_stop_check(nullptr); };
      for (const auto& [key, indices] : by_task) {
        if (heartbeat.revoked()) break;
        absl::StatusOr<TaskKey> task = FromProto(lease.candidates(indices[0]).task());
        if (!task.ok()) return task.status();
        std::vector<Configuration> configs;
        for (int i : indices) {
          absl::StatusOr<ParamMap> config =
              FromProto(lease.candidates(i).config().params(), "candidate.config");
          if (!config.ok()) return config.status();
          configs.push_back(*std::move(config));
        }
        absl::StatusOr<std::vector<MeasureResult>> results =
            unusable.count(task->kernel)
                ? absl::StatusOr<std::vector<MeasureResult>>(unusable[task->kernel])
                : measurer_->Measure(*task, configs);
        // A task this worker cannot measure (a kernel it cannot load, a problem its measurer
        // refuses) fails its candidates, not the worker; the server fails the task.
        bool unmeasurable = false;
        if (!results.ok() &&
            (absl::IsInvalidArgument(results.status()) || absl::IsNotFound(results.status()) ||
             absl::IsFailedPrecondition(results.status()) ||
             absl::IsAlreadyExists(results.status()))) {
          MeasureResult failed;
          failed.status = MeasurementStatus::kRuntimeError;
          failed.message =
              absl::StrCat("this worker cannot measure the task: ", results.status().message());
          results = std::vector<MeasureResult>(indices.size(), failed);
          unmeasurable = true;
        }
        if (absl::IsCancelled(results.status()) && (heartbeat.revoked() || Stopping())) break;
        if (!results.ok()) return results.status();
        for (size_t k = 0; k < indices.size(); ++k) {
          const MeasureResult r = Reportable((*results)[k]);
          v1::CandidateResult* out = report.add_results();
          out->set_candidate_id(lease.candidates(indices[k]).candidate_id());
          out->set_status(ToProto(r.status));
          statuses.push_back(r.status);
          out->set_message(Utf8Prefix(r.message, 4096));
          for (double t : r.repeat_times_ms) out->add_repeat_times_ms(t);
          if (r.max_rel_error) out->set_max_rel_error(*r.max_rel_error);
          out->set_task_unmeasurable(unmeasurable);
        }
      }
      revoked = heartbeat.revoked();
      // Before the heartbeat's end, which waits for a heartbeat in flight (up to its deadline
      // when the server hangs): that wait is not measuring.
      metrics_->EndBatch(statuses);
    }
    if (revoked) {  // the report would be refused: go on with a new lease
      metrics_->CountRevokedLease(static_cast<int>(statuses.size()));
      LogEvent("lease_revoked", {{"worker_id", worker_id_}, {"lease_id", lease.lease_id()}});
      continue;
    }
    // The lease lives until lease_expires_in after the last heartbeat: a report that meets a
    // passing outage (the server restarting, the network) is sent again until then. One that
    // gets no answer at all is sent again for as long as the server would give the expired lease
    // back (WorkerService.ReportResults: 10 lease timeouts), so that a partition that ends after
    // the batch was measured does not cost the batch; the worker could lease nothing meanwhile.
    // Not so for a worker that stops when its measurements cannot be stored (`ktune tune`'s).
    const absl::Duration lease_timeout = absl::Milliseconds(lease.lease_expires_in_ms());
    absl::Time lease_ends = absl::Now() + lease_timeout;
    const absl::Time revival_ends = options_.stop_when_not_stored
                                        ? lease_ends
                                        : absl::Now() + kRevivalLeaseTimeouts * lease_timeout;
    absl::Duration retry = absl::Milliseconds(100);
    v1::ReportResultsResponse stored;
    // Once stopping (SIGTERM), the report is tried for a short grace, not the whole lease: a
    // worker whose server was gone held its shutdown for the lease timeout (25 s of 30; minutes
    // with the long leases of slow GPU jobs). The lease expires and the candidates go to others.
    std::optional<absl::Time> give_up_at;
    bool sent_as_earlier = false;  // with the lease's candidates, to a server that restarted
    while (true) {
      s = FromGrpc(stub_->ReportResults(Context(options_.rpc_deadline, options_.token).get(),
                                        report, &stored));
      if (absl::IsNotFound(s) && !sent_as_earlier) {
        // The server restarted (or forgot this worker): register again, and send the report
        // with the lease's candidates (ReportResultsRequest.leased), which it stores rather than
        // have them measured again. A registration that fails is retried as the report is.
        LogEvent("worker_forgotten", {{"worker_id", worker_id_}});
        s = Register();
        if (s.ok()) {
          // A passing refusal of the report sent again (the restarted server still busy) is
          // retried for a lease timeout from now: the lease's own end has often passed.
          lease_ends = std::max(lease_ends, absl::Now() + lease_timeout);
          report.set_worker_id(worker_id_);
          for (const v1::Candidate& c : lease.candidates()) {
            v1::Candidate* copy = report.add_leased();
            *copy = c;
            copy->clear_kernel_spec();  // the server has it
          }
          sent_as_earlier = true;
          continue;
        }
      }
      if (Stopping() && !give_up_at) give_up_at = absl::Now() + kReportGraceWhenStopping;
      const absl::Time ends = NoAnswerFromServer(s) ? revival_ends : lease_ends;
      const absl::Time until = give_up_at ? std::min(ends, *give_up_at) : ends;
      if (!IsTransient(s) || absl::Now() >= until) break;
      metrics_->SetServerReachable(!NoAnswerFromServer(s));
      metrics_->CountReportRetry();
      LogEvent("report_retried", {{"worker_id", worker_id_},
                                  {"lease_id", lease.lease_id()},
                                  {"reason", std::string(s.message())}});
      wait_to_resend(std::min(retry, until - absl::Now()));  // the last try at `until`
      retry = std::min(retry * 2, options_.max_backoff);
    }
    // Not stored: refused, or failing past the lease (not a lease the server took back).
    const bool not_stored = !s.ok() && !absl::IsFailedPrecondition(s) && !absl::IsNotFound(s);
    not_stored_in_a_row_ = not_stored ? not_stored_in_a_row_ + 1 : 0;
    metrics_->SetServerReachable(!NoAnswerFromServer(s));
    // Refused by the server (its database busy or failing past the lease, a bad report): not
    // stored; taken back, or lapsed while no answer came (the server takes the lease back):
    // expired.
    // A report of an earlier server's lease stores what the restarted server can take: the rest
    // is left out (its job ended meanwhile, its budget ran out), which the log says, and a report
    // of which nothing was stored counts as not stored (it counted as stored).
    const int left_out = s.ok() && sent_as_earlier
                             ? std::max(0, report.results_size() - stored.records_stored())
                             : 0;
    if (left_out > 0) {
      LogEvent("earlier_results_left_out", {{"worker_id", worker_id_},
                                            {"lease_id", lease.lease_id()},
                                            {"left_out", std::to_string(left_out)},
                                            {"results", std::to_string(report.results_size())}});
    }
    const bool none_stored = s.ok() && left_out > 0 && left_out == report.results_size();
    metrics_->CountReport(s.ok() && !none_stored ? WorkerMetrics::Report::kStored
                          : none_stored || (not_stored && !NoAnswerFromServer(s))
                              ? WorkerMetrics::Report::kNotStored
                              : WorkerMetrics::Report::kExpired,
                          report.results_size(), left_out);
    if (s.ok()) {
      reported_ += report.results_size();  // measured and reported (--max-measurements counts
                                           // these; what the server left out is in the metrics)
    } else if (IsFatal(s) && !sent_as_earlier) {  // a refused earlier lease ends only itself
      return s;
    } else if (options_.stop_when_not_stored && not_stored &&
               (!IsTransient(s) || not_stored_in_a_row_ >= kMaxNotStoredInARow)) {
      return absl::Status(s.code(),
                          absl::StrCat("the server could not store ", report.results_size(),
                                       " measurements: ", s.message()));
    } else {
      LogEvent("report_failed", {{"worker_id", worker_id_},
                                 {"lease_id", lease.lease_id()},
                                 {"reason", std::string(s.message())}});
    }
    // FAILED_PRECONDITION: the lease expired and was handed out again; the results are dropped
    // by design (someone else measures them). UNAVAILABLE past the lease: the same.
  }
  if (!worker_id_.empty()) {
    v1::LeaveRequest request;
    request.set_worker_id(worker_id_);
    v1::LeaveResponse response;
    stub_->Leave(Context(options_.rpc_deadline, options_.token).get(), request, &response);
  }
  return absl::OkStatus();
}

}  // namespace ktune
