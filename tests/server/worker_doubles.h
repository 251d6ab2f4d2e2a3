// Test doubles for the worker loop against a real server: a worker's stub around the real one,
// failing some calls as a server restart, a network drop or a full disk would, and a measurer
// whose first batch is slow.
#ifndef KTUNE_TESTS_SERVER_WORKER_DOUBLES_H_
#define KTUNE_TESTS_SERVER_WORKER_DOUBLES_H_

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "ktune/v1/worker_service.grpc.pb.h"
#include "measurer/measurer.h"

namespace ktune {

// The worker's stub, with ReportResults (and, apart, Heartbeat) failing UNAVAILABLE their first
// `outages` times (as when the server restarts or the network drops), and counts of the leases
// that held candidates and of the reports that reached the server.
class FlakyReports : public v1::WorkerService::StubInterface {
 public:
  FlakyReports(v1::WorkerService::StubInterface* real, int outages, int heartbeat_outages = 0)
      : real_(real), outages_(outages), heartbeat_outages_(heartbeat_outages) {}
  int filled_leases = 0, reports_sent = 0;
  bool refuse_reports = false;  // every report: the server's disk is full
  int64_t lease_ms = 0;         // > 0: the leases say they live this long (a long lease timeout)

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
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused");
    }
    ++reports_sent;
    return real_->ReportResults(c, q, r);
  }
  grpc::Status Heartbeat(grpc::ClientContext* c, const v1::HeartbeatRequest& q,
                         v1::HeartbeatResponse* r) override {
    if (heartbeat_outages_ > 0) {
      --heartbeat_outages_;
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused");
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
