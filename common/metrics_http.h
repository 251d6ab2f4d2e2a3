// Prometheus' text format over HTTP, at /metrics: the server's (`ktune serve --metrics-listen`)
// and a measurement worker's (`ktune worker --metrics-listen`). prometheus-cpp's Exposer
// (civetweb) serves what a callback collects at each scrape.
#ifndef KTUNE_COMMON_METRICS_HTTP_H_
#define KTUNE_COMMON_METRICS_HTTP_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "prometheus/metric_family.h"  // plain structs: a scrape's series

namespace prometheus {
class Exposer;
}  // namespace prometheus

namespace ktune {

// OK when `listen` is IPV4:PORT (port 0 to 65535); InvalidArgument, saying so, otherwise.
absl::Status CheckMetricsAddress(const std::string& listen);

// Serves GET /metrics over HTTP until destroyed (prometheus-cpp's Exposer). `collect` is called
// per scrape, on one of the server's threads (several may run at once).
class MetricsHttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& listen, std::function<std::vector<prometheus::MetricFamily>()> collect);
  ~MetricsHttpServer();

  // Where it listens, the port bound (an asked-for port 0 is a free one): "127.0.0.1:9464".
  std::string address() const;

  // Scrapes answered at once: a client that holds a connection open without finishing its
  // request holds one thread until kRequestTimeoutMs.
  static constexpr int kThreads = 8;
  static constexpr int kRequestTimeoutMs = 1000;

 private:
  class Collector;
  MetricsHttpServer() = default;
  std::string host_;  // of the address it was started on
  std::shared_ptr<Collector> collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace ktune

#endif  // KTUNE_COMMON_METRICS_HTTP_H_
