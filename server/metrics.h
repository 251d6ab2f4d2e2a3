// Prometheus metrics of the server, served as text at /metrics (`ktune serve --metrics-listen`).
//
//   ktune_rpc_requests_total{method,code}        counter  every RPC, by final status code
//   ktune_rpc_duration_seconds{method}           histogram  from metadata received to status sent
//   ktune_measurements_total{status}             counter  results stored from workers
//   ktune_db_commit_duration_seconds             histogram  each report's commit
//   ktune_best_cache_requests_total{result}      counter  hit | miss
//   ktune_queue_candidates                       gauge    proposed, waiting for a worker
//   ktune_leases_active                          gauge
//   ktune_workers{device_class,state}            gauge    state: measuring | idle
//   ktune_jobs{state}                            gauge    active jobs: queued, running, paused
//   ktune_jobs_ended_total{state}                counter  jobs ended: done, failed, cancelled
//   ktune_drift_flags_total{kind}                counter  drift flags raised (telemetry)
//   ktune_retune_jobs_total                      counter  retuning jobs started by drift flags
//
// RPCs are counted by a gRPC server interceptor, so every method is covered the same way.
// prometheus-cpp is not packaged for Debian 12, so the exposition format is written here; the
// HTTP side is a one-route responder (civetweb from Debian could not start its worker threads
// inside this process; a scrape endpoint needs no more than this).
#ifndef KTUNE_SERVER_METRICS_H_
#define KTUNE_SERVER_METRICS_H_

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/support/server_interceptor.h"

namespace ktune {

// A histogram with fixed buckets (seconds).
class Histogram {
 public:
  static constexpr std::array<double, 12> kBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                      0.01,   0.025,   0.05,   0.1,   0.5,    2.5};
  void Observe(double seconds);
  // Appends the _bucket, _sum and _count lines of `name` with `labels` ("" or `a="b",`).
  void Render(const std::string& name, const std::string& labels, std::string* out) const;

 private:
  std::array<int64_t, kBuckets.size()> counts_{};
  int64_t count_ = 0;
  double sum_ = 0;
};

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
  };

  void ObserveRpc(const std::string& method, int code, double seconds);
  void ObserveCommit(double seconds);
  void CountMeasurement(const std::string& status, int64_t n = 1);

  // The exposition text, with `gauges` read now.
  std::string Render(const Gauges& gauges);

  // An interceptor factory for grpc::ServerBuilder that feeds ObserveRpc.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();

 private:
  absl::Mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Histogram> rpc_seconds_ ABSL_GUARDED_BY(mu_);
  Histogram commit_seconds_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> measurements_ ABSL_GUARDED_BY(mu_);
};

// OK when `listen` is IPV4:PORT (port 0 to 65535); InvalidArgument, saying so, otherwise.
absl::Status CheckMetricsAddress(const std::string& listen);

// Serves GET /metrics over HTTP/1.1 on its own thread until destroyed.
// The `method` label of a call: its full name ("/ktune.v1.TuningService/QueryBest") when a service
// of this server has the method, "unknown" otherwise, so that clients cannot add series.
std::string RpcMethodLabel(const std::string& method);

class MetricsHttpServer {
 public:
  // `listen` is IPV4:PORT. `render` is called per scrape, on that connection's thread (several
  // may run at once).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& listen, std::function<std::string()> render);
  ~MetricsHttpServer();

 private:
  // Connections answered at once; the time each gets to send its request (a scrape's is one
  // packet), and for the whole exchange.
  static constexpr int kMaxConnections = 32;
  static constexpr std::chrono::seconds kRequestDeadline{1};
  static constexpr std::chrono::seconds kConnectionDeadline{5};

  MetricsHttpServer() = default;
  void Serve();           // accepts; each connection on a thread of its own
  void Answer(int conn);  // one request, within kConnectionDeadline
  absl::Mutex mu_;
  int connections_ ABSL_GUARDED_BY(mu_) = 0;  // handler threads running
  int fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  std::function<std::string()> render_;
};

}  // namespace ktune

#endif  // KTUNE_SERVER_METRICS_H_
