// What a measurement worker counts about itself, served by `ktune worker --metrics-listen` for
// the Prometheus that scrapes the fleet. The server sees what reaches it; these say what a worker
// saw on its side: time spent measuring, outages of the server, reports sent again or dropped.
//
//   ktune_worker_info{device_class,host}           gauge      1: what the worker measures, where
//   ktune_worker_server_reachable                  gauge      0 while calls get no answer
//                                                             (UNAVAILABLE, DEADLINE_EXCEEDED:
//                                                             a partition, a server down), and
//                                                             before the first answer; else 1
//   ktune_worker_registrations_total               counter    the first, then each time the
//                                                             server forgot the worker (a restart)
//   ktune_worker_leases_total{result}              counter    batch (candidates) | empty
//   ktune_worker_leases_revoked_total              counter    leases the server took back while
//                                                             they were measured
//   ktune_worker_measurements_total{status}        counter    results measured, by status
//   ktune_worker_batch_duration_seconds            histogram  measuring one lease's batch
//   ktune_worker_busy_seconds_total                counter    time spent measuring, the batch in
//                                                             progress included; its rate is the
//                                                             share of time the worker was busy
//   ktune_worker_reports_total{result}             counter    how reports ended: stored | expired
//                                                             (the lease was taken back, or lapsed
//                                                             while the report got no answer) |
//                                                             not_stored (refused by the server)
//   ktune_worker_report_retries_total              counter    tries of a report sent again
//   ktune_worker_measurements_dropped_total        counter    results the server did not store:
//                                                             of expired, not_stored and revoked
//                                                             leases (measured again elsewhere)
//
// Thread-safe.
#ifndef KTUNE_MEASURER_WORKER_METRICS_H_
#define KTUNE_MEASURER_WORKER_METRICS_H_

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "db/record.h"
#include "prometheus/metric_family.h"  // plain structs: a scrape's series

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace ktune {

class WorkerMetrics {
 public:
  // How a report ended.
  enum class Report { kStored, kExpired, kNotStored };

  WorkerMetrics();
  ~WorkerMetrics();

  // What the worker measures and where (ktune_worker_info); called at each registration.
  void SetWorker(const std::string& device_class, const std::string& host);
  void SetServerReachable(bool reachable);
  void CountRegistration();
  // A LeaseBatch answer: with candidates or empty.
  void CountLease(bool empty);
  // A lease's batch: its measuring begins, and ends with its results' statuses.
  void BeginBatch();
  void EndBatch(const std::vector<MeasurementStatus>& statuses);
  // The server took the lease back while it was measured: its `measured` results are dropped.
  void CountRevokedLease(int measured);
  void CountReportRetry();
  // `results` is the report's size: dropped unless stored. `left_out`: of a stored report of an
  // earlier lease (a restarted server's), the results it did not store, dropped.
  void CountReport(Report report, int results, int left_out = 0);

  // Every series as now.
  std::vector<prometheus::MetricFamily> Collect() const;

 private:
  using Clock = std::chrono::steady_clock;

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Gauge>* info_;
  prometheus::Gauge* reachable_;
  prometheus::Counter* registrations_;
  prometheus::Counter* leases_batch_;
  prometheus::Counter* leases_empty_;
  prometheus::Counter* revoked_;
  std::array<prometheus::Counter*, kMeasurementStatusCount> measurements_{};
  prometheus::Histogram* batch_seconds_;
  std::array<prometheus::Counter*, 3> reports_{};  // by Report
  prometheus::Counter* retries_;
  prometheus::Counter* dropped_;
  // Busy time is counted by hand: a counter that grows only when a batch ends read 0 for the
  // whole of a 20-minute GPU batch, then 4x the time in one scrape interval.
  mutable absl::Mutex mu_;
  double busy_seconds_ ABSL_GUARDED_BY(mu_) = 0;  // of the batches that ended
  std::optional<Clock::time_point> batch_start_ ABSL_GUARDED_BY(mu_);
  bool has_info_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace ktune

#endif  // KTUNE_MEASURER_WORKER_METRICS_H_
