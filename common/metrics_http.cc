#include "common/metrics_http.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <exception>

#include "CivetServer.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"

namespace ktune {

namespace {

// IPV4:PORT (or localhost:PORT, as --listen takes it) as a socket address.
absl::StatusOr<sockaddr_in> ParseMetricsAddress(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  int port = 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  std::string host = colon == std::string::npos ? "" : listen.substr(0, colon);
  if (host == "localhost") host = "127.0.0.1";
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535 || inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-listen '", listen,
                     "' is not IPV4:PORT or localhost:PORT (e.g. 127.0.0.1:9464)"));
  }
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

}  // namespace

absl::Status CheckMetricsAddress(const std::string& listen) {
  return ParseMetricsAddress(listen).status();
}

// The Exposer's view of the process: what `collect` says at each scrape.
class MetricsHttpServer::Collector final : public prometheus::Collectable {
 public:
  explicit Collector(std::function<std::vector<prometheus::MetricFamily>()> collect)
      : collect_(std::move(collect)) {}
  std::vector<prometheus::MetricFamily> Collect() const override { return collect_(); }

 private:
  std::function<std::vector<prometheus::MetricFamily>()> collect_;
};

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& listen, std::function<std::vector<prometheus::MetricFamily>()> collect) {
  KTUNE_RETURN_IF_ERROR(ParseMetricsAddress(listen).status());
  std::unique_ptr<MetricsHttpServer> s(new MetricsHttpServer());
  s->collector_ = std::make_shared<Collector>(std::move(collect));
  // civetweb's options. Its default request timeout is 30 s: a client that connects and never
  // finishes its request would hold a thread that long.
  const std::vector<std::string> options = {
      "listening_ports",    listen,
      "num_threads",        std::to_string(kThreads),
      "request_timeout_ms", std::to_string(kRequestTimeoutMs),
      "enable_keep_alive",  "no",
  };
  // civetweb's own reasons, when it cannot start, go to its log callback: kept while the exposer
  // starts, on this thread; its later messages (worker threads) are dropped, as without the
  // callback (no error_log_file).
  static thread_local std::string* start_errors = nullptr;
  std::string errors;
  CivetCallbacks callbacks{};
  callbacks.log_message = [](const mg_connection*, const char* message) {
    if (start_errors != nullptr) {
      absl::StrAppend(start_errors, start_errors->empty() ? "" : "; ", message);
    }
    return 1;
  };
  start_errors = &errors;
  try {
    s->exposer_ = std::make_unique<prometheus::Exposer>(options, &callbacks);
  } catch (const std::exception& e) {  // civetweb throws when it cannot start
    start_errors = nullptr;
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", listen, ": ", errors.empty() ? e.what() : errors));
  }
  start_errors = nullptr;
  s->exposer_->RegisterCollectable(s->collector_);
  s->host_ = listen.substr(0, listen.rfind(':'));
  return s;
}

std::string MetricsHttpServer::address() const {
  const std::vector<int> ports = exposer_->GetListeningPorts();
  return absl::StrCat(host_, ":", ports.empty() ? 0 : ports.front());
}

// The Exposer stops civetweb (ending its scrapes) before the collector goes.
MetricsHttpServer::~MetricsHttpServer() { exposer_.reset(); }

}  // namespace ktune

// Debian's civetweb asks pthread_attr_setstacksize for 100 KiB stacks (built with
// USE_STACK_SIZE=102400). Every thread also carries the process's static TLS, which in a process
// linking LibTorch, OpenBLAS and glog is about 115 KiB, so glibc refused each of civetweb's threads
// (pthread_create: EINVAL) and the metrics endpoint could not start inside `ktune serve`. This
// definition, exported from the executable (common/CMakeLists.txt), takes precedence over glibc's
// and gives any thread asking for less a floor of kThreadStackFloor; larger requests are unchanged.
// It holds for every thread of a program linking ktune_metrics_http (the server, the worker, the
// tests), whoever starts it: a floor only.
extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr, size_t stack_size) {
  constexpr size_t kThreadStackFloor = size_t{1} << 20;
  using SetStackSize = int (*)(pthread_attr_t*, size_t);
  static const auto glibc =
      reinterpret_cast<SetStackSize>(dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  if (glibc == nullptr) return ENOSYS;
  return glibc(attr, std::max(stack_size, kThreadStackFloor));
}
