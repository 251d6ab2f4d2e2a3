#include "measurer/worker_metrics.h"

#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace ktune {

WorkerMetrics::WorkerMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  reachable_ = &prometheus::BuildGauge()
                    .Name("ktune_worker_server_reachable")
                    .Help("1 while the server answers the worker, 0 while it cannot be reached")
                    .Register(*registry_)
                    .Add({});
  registrations_ = &prometheus::BuildCounter()
                        .Name("ktune_worker_registrations_total")
                        .Help(
                            "Registrations with the server: the first, then one after each "
                            "restart of the server")
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
  auto& candidates = prometheus::BuildCounter()
                         .Name("ktune_worker_candidates_total")
                         .Help("Results measured by this worker, by status")
                         .Register(*registry_);
  for (int i = 0; i < kMeasurementStatusCount; ++i) {
    candidates_[i] =
        &candidates.Add({{"status", std::string(StatusName(static_cast<MeasurementStatus>(i)))}});
  }
  // A lease's batch: a replayed one takes microseconds, eight GPU builds and runs minutes.
  measure_seconds_ = &prometheus::BuildHistogram()
                          .Name("ktune_worker_measure_seconds")
                          .Help("Time to measure one lease's batch, builds included")
                          .Register(*registry_)
                          .Add({}, prometheus::Histogram::BucketBoundaries{
                                       0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900});
  busy_seconds_ = &prometheus::BuildCounter()
                       .Name("ktune_worker_busy_seconds_total")
                       .Help(
                           "Time spent measuring; its rate is the share of time the worker "
                           "was busy")
                       .Register(*registry_)
                       .Add({});
  auto& reports = prometheus::BuildCounter()
                      .Name("ktune_worker_reports_total")
                      .Help(
                          "Reports of measured leases: stored; retried (a try that met an "
                          "outage); expired (the lease was taken back, measured again "
                          "elsewhere); not_stored (refused by the server: lost)")
                      .Register(*registry_);
  reports_[static_cast<int>(Report::kStored)] = &reports.Add({{"result", "stored"}});
  reports_[static_cast<int>(Report::kRetried)] = &reports.Add({{"result", "retried"}});
  reports_[static_cast<int>(Report::kExpired)] = &reports.Add({{"result", "expired"}});
  reports_[static_cast<int>(Report::kNotStored)] = &reports.Add({{"result", "not_stored"}});
  lost_ = &prometheus::BuildCounter()
               .Name("ktune_worker_results_lost_total")
               .Help("Measured results the server did not store (expired or refused reports)")
               .Register(*registry_)
               .Add({});
}

WorkerMetrics::~WorkerMetrics() = default;

void WorkerMetrics::SetServerReachable(bool reachable) { reachable_->Set(reachable ? 1 : 0); }

void WorkerMetrics::CountRegistration() { registrations_->Increment(); }

void WorkerMetrics::CountLease(bool empty) { (empty ? leases_empty_ : leases_batch_)->Increment(); }

void WorkerMetrics::CountRevokedLease() { revoked_->Increment(); }

void WorkerMetrics::ObserveBatch(const std::vector<MeasurementStatus>& statuses, double seconds) {
  for (MeasurementStatus s : statuses) {
    const int i = static_cast<int>(s);
    if (i >= 0 && i < kMeasurementStatusCount) candidates_[i]->Increment();
  }
  measure_seconds_->Observe(seconds);
  busy_seconds_->Increment(seconds);
}

void WorkerMetrics::CountReport(Report report, int results) {
  reports_[static_cast<int>(report)]->Increment();
  if (report == Report::kExpired || report == Report::kNotStored) lost_->Increment(results);
}

std::vector<prometheus::MetricFamily> WorkerMetrics::Collect() const {
  return registry_->Collect();
}

}  // namespace ktune
