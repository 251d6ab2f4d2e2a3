// Prometheus metrics of the server, served as text at /metrics (`ktune serve --metrics-listen`).
//
//   ktune_rpc_requests_total{method,code}        counter  every RPC, by final status code
//   ktune_rpc_duration_seconds{method}           histogram  from metadata received to status sent
//   ktune_measurements_total{status}             counter  results stored from workers
//   ktune_db_commit_duration_seconds             histogram  each report's commit
//   ktune_db_commit_failures_total{code}         counter  reports whose records were refused
//   ktune_best_cache_requests_total{result}      counter  hit | miss
//   ktune_queue_candidates                       gauge    proposed, waiting for a worker
//   ktune_tasks_without_worker{device_class}     gauge    tasks no connected worker can take
//   ktune_leases_active                          gauge
//   ktune_lease_expiries_total                   counter  leases taken back: a worker went silent
//   ktune_lease_revivals_total                   counter  expired leases given back to their worker
//   ktune_earlier_leases_stored_total            counter  batches of a lease from before a restart
//   ktune_workers{device_class,state}            gauge    state: measuring | idle | lost (an hour)
//   ktune_jobs{state}                            gauge    active jobs: queued, running, paused
//   ktune_jobs_ended_total{state}                counter  jobs ended: done, failed, cancelled
//   ktune_job_duration_seconds{state}            histogram  submit to end, of the jobs it ended
//   ktune_job_writes_pending                     gauge    job/task state changes not stored yet
//   ktune_agent_work_seconds{kind}               histogram  strategy work: start | batch
//   ktune_agent_work_queued                      gauge    strategy work waiting for an agent thread
//   ktune_drift_flags_total{kind}                counter  drift flags raised (telemetry)
//   ktune_retune_jobs_total                      counter  retuning jobs started by drift flags
//
// RPCs are counted by a gRPC server interceptor, so every method is covered the same way. The
// series are prometheus-cpp's (Debian's prometheus-cpp-dev): the events above are counted in its
// registry as they happen; the scheduler's state is read at scrape time and handed over as
// metric families. prometheus-cpp's Exposer (civetweb) serves them over HTTP.
#ifndef KTUNE_SERVER_METRICS_H_
#define KTUNE_SERVER_METRICS_H_

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/metrics_http.h"  // MetricsHttpServer, CheckMetricsAddress: the server's /metrics
#include "grpcpp/support/server_interceptor.h"
#include "prometheus/metric_family.h"  // plain structs: a scrape's series

namespace prometheus {
class Counter;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace ktune {

class Metrics {
 public:
  // What the scheduler reports at scrape time.
  struct Gauges {
    int64_t queued_candidates = 0;
    int64_t active_leases = 0;
    std::map<std::pair<std::string, std::string>, int64_t> workers;  // (class, state) -> n
    std::map<std::string, int64_t> jobs;        // active state (queued, running, paused) -> n
    std::map<std::string, int64_t> jobs_ended;  // final state -> jobs ended (counter)
    int64_t cache_hits = 0, cache_misses = 0;                        // counters, read at scrape
    std::map<std::string, int64_t> drift_flags;  // kind -> flags raised (counter)
    int64_t retune_jobs = 0;                     // retuning jobs started (counter)
    int64_t leases_expired = 0;                  // leases taken back (counter)
    int64_t leases_revived = 0;                  // expired leases given back (counter)
    int64_t earlier_leases_stored = 0;           // reports of an earlier process's leases
    int64_t job_writes_pending = 0;  // job and task states the database has not taken yet
    int64_t agent_work_queued = 0;   // strategy work waiting for an agent thread
    std::map<std::string, int64_t> tasks_without_worker;  // device class -> tasks
  };

  Metrics();
  ~Metrics();

  // Thread-safe.
  void ObserveRpc(const std::string& method, int code, double seconds);
  void ObserveCommit(double seconds);
  // A report whose records the database refused (a full disk, an I/O error), by status code.
  void CountCommitFailure(const std::string& code);
  void CountMeasurement(const std::string& status, int64_t n = 1);
  // A job this process ended, by final state, and how long it lived since it was submitted.
  void ObserveJobEnd(const std::string& state, double seconds);
  // A piece of the agent's strategy work ("start" or "batch": SchedulerOptions::on_agent_work).
  void ObserveAgentWork(const std::string& kind, double seconds);

  // Every series: the events counted so far and `gauges`.
  std::vector<prometheus::MetricFamily> Collect(const Gauges& gauges) const;
  // The same, in Prometheus' text format.
  std::string Render(const Gauges& gauges) const;

  // An interceptor factory for grpc::ServerBuilder that feeds ObserveRpc.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();

 private:
  // A method's series, found once: Family::Add hashes the labels and builds a histogram on every
  // call (5x the cost of a map lookup per RPC, measured).
  struct RpcSeries {
    prometheus::Histogram* seconds = nullptr;
    std::array<prometheus::Counter*, 17> requests{};  // by status code, made on first use
  };

  std::shared_ptr<prometheus::Registry> registry_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, RpcSeries> rpc_series_ ABSL_GUARDED_BY(mu_);
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Histogram>* rpc_seconds_;
  prometheus::Family<prometheus::Counter>* measurements_;
  prometheus::Histogram* commit_seconds_;
  prometheus::Family<prometheus::Counter>* commit_failures_;
  prometheus::Family<prometheus::Histogram>* job_seconds_;
  prometheus::Family<prometheus::Histogram>* agent_seconds_;
};

// The `method` label of a call: its full name ("/ktune.v1.TuningService/QueryBest") when a service
// of this server has the method, "unknown" otherwise, so that clients cannot add series.
std::string RpcMethodLabel(const std::string& method);

}  // namespace ktune

#endif  // KTUNE_SERVER_METRICS_H_
