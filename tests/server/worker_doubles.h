// Test doubles for the worker loop against a real server: a worker's stub around the real one,
// failing some calls as a server restart, a network drop or a full disk would, and a measurer
// whose first batch is slow.
#ifndef KTUNE_TESTS_SERVER_WORKER_DOUBLES_H_
#define KTUNE_TESTS_SERVER_WORKER_DOUBLES_H_

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "ktune/v1/worker_service.grpc.pb.h"
#include "measurer/measurer.h"
#include "proto/convert.h"
#include "server/tuning_server.h"

namespace ktune {

// A server for the worker loop's tests: on a free port of 127.0.0.1, over the database file
// `db_path`, serving the recorded space `space_file` to replay workers; strategy work inline;
// leases that expire in half a second (a report that meets outages past it is lost soon),
// heartbeated every 150 ms.
inline TuningServerOptions QuickLeaseServer(const std::string& db_path,
                                            const std::string& space_file) {
  TuningServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = db_path;
  options.replay_files = {space_file};
  options.scheduler.agent_threads = 0;
  options.scheduler.lease_timeout = absl::Milliseconds(500);
  options.scheduler.heartbeat_interval = absl::Milliseconds(150);
  return options;
}

// Submits a job of `budget` random candidates (seed 3) for `record`'s task; its reply in `job`.
inline void SubmitRandomJob(v1::TuningService::StubInterface* tuning, const Record& record,
                            int64_t budget, const std::string& name, v1::Job* job) {
  v1::SubmitJobRequest submit;
  v1::JobSpec* spec = submit.mutable_spec();
  spec->set_name(name);
  spec->add_kernels()->set_name(record.kernel);
  ToProto(record.problem, spec->add_problems()->mutable_params());
  spec->add_device_classes(record.device.device_class);
  spec->set_budget_measurements(budget);
  spec->set_strategy(v1::STRATEGY_RANDOM);
  spec->set_seed(3);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  ASSERT_TRUE(tuning->SubmitJob(&context, submit, job).ok());
}

// The worker's stub, with ReportResults (and, apart, Heartbeat) failing UNAVAILABLE their first
// `outages` times (as when the server restarts or the network drops), and counts of the leases
// that held candidates and of the reports that reached the server.
class FlakyReports : public v1::WorkerService::StubInterface {
 public:
  // gRPC's words when nothing listens.
  static constexpr char kConnectionRefused[] =
      "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Connection "
      "refused";
  FlakyReports(v1::WorkerService::StubInterface* real, int outages, int heartbeat_outages = 0)
      : real_(real), outages_(outages), heartbeat_outages_(heartbeat_outages) {}
  int filled_leases = 0, reports_sent = 0;
  bool refuse_reports = false;  // every report: the server's disk is full
  int64_t lease_ms = 0;         // > 0: the leases say they live this long (a long lease timeout)
  // Called once, on the heartbeat thread, when the last heartbeat outage has passed and before
  // the next heartbeat reaches the server (AnotherWorkerTakesThem: a lease that cannot be given
  // back).
  std::function<void()> before_heartbeats_return;
  // What a report's outage answers: no answer (UNAVAILABLE), ABORTED (a busy database), or
  // CANCELLED (a server stopping gracefully cancels the calls in flight).
  grpc::StatusCode outage_code = grpc::StatusCode::UNAVAILABLE;
  // Set: heartbeats (past their outages) go there instead, a server that hangs (HungServer).
  v1::WorkerService::StubInterface* heartbeats_to = nullptr;
  // How the heartbeats sent there ended: cancelled by the worker, or at their deadline.
  std::atomic<int> heartbeats_cancelled{0}, heartbeats_timed_out{0};

  grpc::Status Register(grpc::ClientContext* c, const v1::RegisterRequest& q,
                        v1::RegisterResponse* r) override {
    return real_->Register(c, q, r);
  }
  grpc::Status LeaseBatch(grpc::ClientContext* c, const v1::LeaseBatchRequest& q,
                          v1::LeaseBatchResponse* r) override {
    grpc::Status s = real_->LeaseBatch(c, q, r);
    if (s.ok() && r->candidates_size() > 0) ++filled_leases;
    if (s.ok() && lease_ms > 0) r->set_lease_expires_in_ms(lease_ms);
    return s;
  }
  grpc::Status ReportResults(grpc::ClientContext* c, const v1::ReportResultsRequest& q,
                             v1::ReportResultsResponse* r) override {
    if (refuse_reports) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "executing 'COMMIT': database or disk is full (sqlite code 13)");
    }
    if (outages_ > 0) {
      --outages_;
      return grpc::Status(outage_code, outage_code == grpc::StatusCode::UNAVAILABLE ? kConnectionRefused
                                       : outage_code == grpc::StatusCode::CANCELLED
                                           ? "Cancelled"  // gRPC's, for a server shutting down
                                           : "the database is busy");
    }
    ++reports_sent;
    return real_->ReportResults(c, q, r);
  }
  grpc::Status Heartbeat(grpc::ClientContext* c, const v1::HeartbeatRequest& q,
                         v1::HeartbeatResponse* r) override {
    if (heartbeat_outages_ > 0) {
      if (--heartbeat_outages_ == 0 && before_heartbeats_return) before_heartbeats_return();
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, kConnectionRefused);
    }
    if (heartbeats_to != nullptr) {
      grpc::Status s = heartbeats_to->Heartbeat(c, q, r);
      if (s.error_code() == grpc::StatusCode::CANCELLED) ++heartbeats_cancelled;
      if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) ++heartbeats_timed_out;
      return s;
    }
    return real_->Heartbeat(c, q, r);
  }
  grpc::Status Leave(grpc::ClientContext* c, const v1::LeaveRequest& q,
                     v1::LeaveResponse* r) override {
    return real_->Leave(c, q, r);
  }

 private:
  template <typename R>
  using Reader = grpc::ClientAsyncResponseReaderInterface<R>;
  // The worker loop calls only the blocking methods.
#define KTUNE_UNUSED_ASYNC(Method, Request, Response)                                       \
  Reader<v1::Response>* Async##Method##Raw(grpc::ClientContext*, const v1::Request&,        \
                                           grpc::CompletionQueue*) override {               \
    ADD_FAILURE() << "unexpected async call";                                               \
    return nullptr;                                                                         \
  }                                                                                         \
  Reader<v1::Response>* PrepareAsync##Method##Raw(grpc::ClientContext*, const v1::Request&, \
                                                  grpc::CompletionQueue*) override {        \
    ADD_FAILURE() << "unexpected async call";                                               \
    return nullptr;                                                                         \
  }
  KTUNE_UNUSED_ASYNC(Register, RegisterRequest, RegisterResponse)
  KTUNE_UNUSED_ASYNC(LeaseBatch, LeaseBatchRequest, LeaseBatchResponse)
  KTUNE_UNUSED_ASYNC(ReportResults, ReportResultsRequest, ReportResultsResponse)
  KTUNE_UNUSED_ASYNC(Heartbeat, HeartbeatRequest, HeartbeatResponse)
  KTUNE_UNUSED_ASYNC(Leave, LeaveRequest, LeaveResponse)
#undef KTUNE_UNUSED_ASYNC

  v1::WorkerService::StubInterface* real_;
  int outages_;
  std::atomic<int> heartbeat_outages_;  // the heartbeat has a thread of its own
};

// Another worker of `device` takes the candidates that a lease's expiry put back in the queue,
// `n` of them, and reports them measured (ok, 1 ms): the lease of the worker that was cut off
// cannot be given back to it (Scheduler::Revive) and is revoked. Waits up to 10 s for the expiry.
inline void AnotherWorkerTakesThem(v1::WorkerService::StubInterface* workers,
                                   const DeviceInfo& device, int n) {
  auto context = [] {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return c;
  };
  v1::RegisterRequest reg;
  *reg.mutable_device() = ToProto(device);
  reg.set_host("another");
  v1::RegisterResponse other;
  ASSERT_TRUE(workers->Register(context().get(), reg, &other).ok());
  v1::LeaseBatchResponse lease;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (lease.candidates_size() < n && absl::Now() < deadline) {
    v1::LeaseBatchRequest request;
    request.set_worker_id(other.worker_id());
    request.set_max_candidates(n);
    ASSERT_TRUE(workers->LeaseBatch(context().get(), request, &lease).ok());
    if (lease.candidates_size() == 0) absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(lease.candidates_size(), n);
  v1::ReportResultsRequest report;
  report.set_worker_id(other.worker_id());
  report.set_lease_id(lease.lease_id());
  for (const v1::Candidate& c : lease.candidates()) {
    v1::CandidateResult* r = report.add_results();
    r->set_candidate_id(c.candidate_id());
    r->set_status(v1::MEASUREMENT_STATUS_OK);
    r->add_repeat_times_ms(1.0);
  }
  v1::ReportResultsResponse stored;
  ASSERT_TRUE(workers->ReportResults(context().get(), report, &stored).ok());
}

// A port of 127.0.0.1 that takes connections and never answers: the HTTP/2 handshake never
// completes, so a gRPC call to it waits for its deadline, as a call to a hung server does.
class HungServer {
 public:
  HungServer() : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof(address);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&address), size) != 0 ||
        listen(fd_, 16) != 0 || getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &size)) {
      ADD_FAILURE() << "no listening socket: " << std::strerror(errno);
    }
    port_ = ntohs(address.sin_port);
  }
  ~HungServer() {
    if (fd_ >= 0) close(fd_);
  }
  HungServer(const HungServer&) = delete;
  HungServer& operator=(const HungServer&) = delete;
  int port() const { return port_; }

 private:
  int fd_;
  int port_ = 0;
};

// A measurer whose first Measure call takes `first_call` longer.
class SlowFirstCall : public Measurer {
 public:
  SlowFirstCall(Measurer* real, absl::Duration first_call) : real_(real), delay_(first_call) {}
  DeviceInfo device() const override { return real_->device(); }
  absl::StatusOr<std::vector<MeasureResult>> Measure(
      const TaskKey& task, const std::vector<Configuration>& configs) override {
    absl::SleepFor(std::exchange(delay_, absl::ZeroDuration()));
    return real_->Measure(task, configs);
  }

 private:
  Measurer* real_;
  absl::Duration delay_;
};

}  // namespace ktune

#endif  // KTUNE_TESTS_SERVER_WORKER_DOUBLES_H_
