// What a measurement worker counts about itself, served by `ktune worker --metrics-listen` for
// the Prometheus that scrapes the fleet. The server sees what reaches it; these say what a worker
// saw on its side: time spent measuring (its utilisation), outages of the server, retried and
// lost reports.
//
//   ktune_worker_server_reachable          gauge      1 while the server answers, 0 from a call
//                                                     that could not reach it until one that does
//   ktune_worker_registrations_total       counter    the first, then one after each server restart
//   ktune_worker_leases_total{result}      counter    batch (candidates to measure) | empty
//   ktune_worker_leases_revoked_total      counter    leases the server took back mid-measurement
//   ktune_worker_candidates_total{status}  counter    results measured, by status (ok, timeout,
//   ...) ktune_worker_measure_seconds           histogram  per lease: its batch's measurement,
//   builds
//                                                     included
//   ktune_worker_busy_seconds_total        counter    time spent measuring; rate() is the share of
//                                                     the worker's time it was busy
//   ktune_worker_reports_total{result}     counter    stored | retried (a try that met an outage) |
//                                                     expired (the lease was taken back: measured
//                                                     again elsewhere) | not_stored (refused: lost)
//   ktune_worker_results_lost_total        counter    results of expired and not_stored reports
//
// Thread-safe: prometheus-cpp's series are.
#ifndef KTUNE_MEASURER_WORKER_METRICS_H_
#define KTUNE_MEASURER_WORKER_METRICS_H_

#include <array>
#include <memory>
#include <vector>

#include "db/record.h"
#include "prometheus/metric_family.h"  // plain structs: a scrape's series

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
}  // namespace prometheus

namespace ktune {

class WorkerMetrics {
 public:
  // How a report ended (one try may be followed by others: kRetried counts each retry).
  enum class Report { kStored, kRetried, kExpired, kNotStored };

  WorkerMetrics();
  ~WorkerMetrics();

  void SetServerReachable(bool reachable);
  void CountRegistration();
  // A LeaseBatch answer: with candidates or empty.
  void CountLease(bool empty);
  void CountRevokedLease();
  // One lease's batch measured: its results by status and the time it took.
  void ObserveBatch(const std::vector<MeasurementStatus>& statuses, double seconds);
  // `results` is the report's size: counted as lost for kExpired and kNotStored.
  void CountReport(Report report, int results);

  // Every series as now.
  std::vector<prometheus::MetricFamily> Collect() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge* reachable_;
  prometheus::Counter* registrations_;
  prometheus::Counter* leases_batch_;
  prometheus::Counter* leases_empty_;
  prometheus::Counter* revoked_;
  std::array<prometheus::Counter*, kMeasurementStatusCount> candidates_{};
  prometheus::Histogram* measure_seconds_;
  prometheus::Counter* busy_seconds_;
  std::array<prometheus::Counter*, 4> reports_{};  // by Report
  prometheus::Counter* lost_;
};

}  // namespace ktune

#endif  // KTUNE_MEASURER_WORKER_METRICS_H_
