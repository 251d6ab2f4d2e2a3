#include "measurer/worker_metrics.h"

#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace ktune {

WorkerMetrics::WorkerMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  info_ = &prometheus::BuildGauge()
               .Name("ktune_worker_info")
               .Help("1, labelled with the device class the worker measures and its host")
               .Register(*registry_);
  reachable_ = &prometheus::BuildGauge()
                    .Name("ktune_worker_server_reachable")
                    .Help(
                        "0 while the worker's calls get no answer from the server (UNAVAILABLE, "
                        "DEADLINE_EXCEEDED), and before its first answer; 1 otherwise")
                    .Register(*registry_)
                    .Add({});
  registrations_ = &prometheus::BuildCounter()
                        .Name("ktune_worker_registrations_total")
                        .Help(
                            "Registrations with the server: the first, then one each time the "
                            "server had forgotten the worker (a restart)")
                        .Register(*registry_)
                        .Add({});
  auto& leases = prometheus::BuildCounter()
                     .Name("ktune_worker_leases_total")
                     .Help("LeaseBatch answers: batch (candidates to measure) or empty")
                     .Register(*registry_);
  leases_batch_ = &leases.Add({{"result", "batch"}});
  leases_empty_ = &leases.Add({{"result", "empty"}});
  revoked_ = &prometheus::BuildCounter()
                  .Name("ktune_worker_leases_revoked_total")
                  .Help("Leases the server took back while the worker measured them")
                  .Register(*registry_)
                  .Add({});
  auto& measurements = prometheus::BuildCounter()
                           .Name("ktune_worker_measurements_total")
                           .Help("Results measured by this worker, by status")
                           .Register(*registry_);
  for (int i = 0; i < kMeasurementStatusCount; ++i) {
    measurements_[i] =
        &measurements.Add({{"status", std::string(StatusName(static_cast<MeasurementStatus>(i)))}});
  }
  // A lease's batch: a replayed one takes microseconds, eight GPU builds and runs minutes.
  batch_seconds_ = &prometheus::BuildHistogram()
                        .Name("ktune_worker_batch_duration_seconds")
                        .Help("Time to measure one lease's batch, builds included")
                        .Register(*registry_)
                        .Add({}, prometheus::Histogram::BucketBoundaries{
                                     0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900});
  auto& reports = prometheus::BuildCounter()
                      .Name("ktune_worker_reports_total")
                      .Help(
                          "How reports of measured leases ended: stored; expired (the lease "
                          "was taken back, or lapsed while the report got no answer: measured "
                          "again elsewhere); not_stored (refused by the server)")
                      .Register(*registry_);
  reports_[static_cast<int>(Report::kStored)] = &reports.Add({{"result", "stored"}});
  reports_[static_cast<int>(Report::kExpired)] = &reports.Add({{"result", "expired"}});
  reports_[static_cast<int>(Report::kNotStored)] = &reports.Add({{"result", "not_stored"}});
  retries_ = &prometheus::BuildCounter()
                  .Name("ktune_worker_report_retries_total")
                  .Help("Tries of a report sent again after an outage or a busy server")
                  .Register(*registry_)
                  .Add({});
  dropped_ = &prometheus::BuildCounter()
                  .Name("ktune_worker_measurements_dropped_total")
                  .Help(
                      "Measured results the server did not store (expired, refused or revoked "
                      "leases; results of a lease from before a server restart that it left "
                      "out); they are measured again, or were already")
                  .Register(*registry_)
                  .Add({});
}

WorkerMetrics::~WorkerMetrics() = default;

void WorkerMetrics::SetWorker(const std::string& device_class, const std::string& host) {
  absl::MutexLock lock(&mu_);
  if (has_info_) return;  // the same worker registering again
  has_info_ = true;
  info_->Add({{"device_class", device_class}, {"host", host}}).Set(1);
}

void WorkerMetrics::SetServerReachable(bool reachable) { reachable_->Set(reachable ? 1 : 0); }

void WorkerMetrics::CountRegistration() { registrations_->Increment(); }

void WorkerMetrics::CountLease(bool empty) { (empty ? leases_empty_ : leases_batch_)->Increment(); }

void WorkerMetrics::BeginBatch() {
  absl::MutexLock lock(&mu_);
  batch_start_ = Clock::now();
}

void WorkerMetrics::EndBatch(const std::vector<MeasurementStatus>& statuses) {
  for (MeasurementStatus s : statuses) {
    const int i = static_cast<int>(s);
    if (i >= 0 && i < kMeasurementStatusCount) measurements_[i]->Increment();
  }
  absl::MutexLock lock(&mu_);
  if (!batch_start_) return;
  const double seconds = std::chrono::duration<double>(Clock::now() - *batch_start_).count();
  batch_start_.reset();
  batch_seconds_->Observe(seconds);
  busy_seconds_ += seconds;
}

void WorkerMetrics::CountRevokedLease(int measured) {
  revoked_->Increment();
  dropped_->Increment(measured);
}

void WorkerMetrics::CountReportRetry() { retries_->Increment(); }

void WorkerMetrics::CountReport(Report report, int results, int left_out) {
  reports_[static_cast<int>(report)]->Increment();
  dropped_->Increment(report != Report::kStored ? results : left_out);
}

std::vector<prometheus::MetricFamily> WorkerMetrics::Collect() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  prometheus::MetricFamily busy;
  busy.name = "ktune_worker_busy_seconds_total";
  busy.help =
      "Time spent measuring, the batch in progress included; its rate is the share of "
      "time the worker was busy";
  busy.type = prometheus::MetricType::Counter;
  prometheus::ClientMetric value;
  {
    absl::MutexLock lock(&mu_);
    value.counter.value = busy_seconds_;
    if (batch_start_) {
      value.counter.value += std::chrono::duration<double>(Clock::now() - *batch_start_).count();
    }
  }
  busy.metric.push_back(std::move(value));
  families.push_back(std::move(busy));
  return families;
}

}  // namespace ktune
