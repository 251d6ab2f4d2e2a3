#include "server/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace ktune {
namespace {

// Label values escaped as the text format asks (backslash, quote, newline).
std::string Escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

const char* CodeName(int code) {
  static const char* kNames[] = {"OK",
                                 "CANCELLED",
                                 "UNKNOWN",
                                 "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED",
                                 "NOT_FOUND",
                                 "ALREADY_EXISTS",
                                 "PERMISSION_DENIED",
                                 "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION",
                                 "ABORTED",
                                 "OUT_OF_RANGE",
                                 "UNIMPLEMENTED",
                                 "INTERNAL",
                                 "UNAVAILABLE",
                                 "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  return code >= 0 && code <= 16 ? kNames[code] : "UNKNOWN";
}

class RpcInterceptor final : public grpc::experimental::Interceptor {
 public:
  RpcInterceptor(Metrics* metrics, std::string method)
      : metrics_(metrics), method_(std::move(method)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      start_ = std::chrono::steady_clock::now();
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      metrics_->ObserveRpc(method_, methods->GetSendStatus().error_code(), seconds);
    }
    methods->Proceed();
  }

 private:
  Metrics* metrics_;
  std::string method_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

class RpcInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcInterceptorFactory(Metrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RpcInterceptor(metrics_, info->method());
  }

 private:
  Metrics* metrics_;
};

}  // namespace

void Histogram::Observe(double seconds) {
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) ++counts_[i];
  }
  ++count_;
  sum_ += seconds;
}

void Histogram::Render(const std::string& name, const std::string& labels, std::string* out) const {
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    absl::StrAppendFormat(out, "%s_bucket{%sle=\"%g\"} %d\n", name, labels, kBuckets[i],
                          counts_[i]);
  }
  absl::StrAppendFormat(out, "%s_bucket{%sle=\"+Inf\"} %d\n", name, labels, count_);
  std::string plain = labels.empty() ? "" : "{" + labels.substr(0, labels.size() - 1) + "}";
  absl::StrAppendFormat(out, "%s_sum%s %.9f\n%s_count%s %d\n", name, plain, sum_, name, plain,
                        count_);
}

void Metrics::ObserveRpc(const std::string& method, int code, double seconds) {
  absl::MutexLock lock(&mu_);
  ++requests_[{method, code}];
  rpc_seconds_[method].Observe(seconds);
}

void Metrics::ObserveCommit(double seconds) {
  absl::MutexLock lock(&mu_);
  commit_seconds_.Observe(seconds);
}

void Metrics::CountMeasurement(const std::string& status, int64_t n) {
  absl::MutexLock lock(&mu_);
  measurements_[status] += n;
}

std::string Metrics::Render(const Gauges& g) {
  std::string out;
  absl::MutexLock lock(&mu_);
  out +=
      "# HELP ktune_rpc_requests_total RPCs handled, by method and status code.\n"
      "# TYPE ktune_rpc_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    absl::StrAppendFormat(&out, "ktune_rpc_requests_total{method=\"%s\",code=\"%s\"} %d\n",
                          Escape(key.first), CodeName(key.second), n);
  }
  out +=
      "# HELP ktune_rpc_duration_seconds Time from request metadata to status, by method.\n"
      "# TYPE ktune_rpc_duration_seconds histogram\n";
  for (const auto& [method, h] : rpc_seconds_) {
    h.Render("ktune_rpc_duration_seconds", absl::StrCat("method=\"", Escape(method), "\","), &out);
  }
  out +=
      "# HELP ktune_measurements_total Measurement results stored, by status.\n"
      "# TYPE ktune_measurements_total counter\n";
  for (const auto& [status, n] : measurements_) {
    absl::StrAppendFormat(&out, "ktune_measurements_total{status=\"%s\"} %d\n", status, n);
  }
  out +=
      "# HELP ktune_db_commit_duration_seconds Time to commit one report's records.\n"
      "# TYPE ktune_db_commit_duration_seconds histogram\n";
  commit_seconds_.Render("ktune_db_commit_duration_seconds", "", &out);
  out +=
      "# HELP ktune_best_cache_requests_total Best-known queries, by cache result.\n"
      "# TYPE ktune_best_cache_requests_total counter\n";
  absl::StrAppendFormat(&out, "ktune_best_cache_requests_total{result=\"hit\"} %d\n", g.cache_hits);
  absl::StrAppendFormat(&out, "ktune_best_cache_requests_total{result=\"miss\"} %d\n",
                        g.cache_misses);
  out +=
      "# HELP ktune_queue_candidates Candidates proposed and waiting for a worker.\n"
      "# TYPE ktune_queue_candidates gauge\n";
  absl::StrAppendFormat(&out, "ktune_queue_candidates %d\n", g.queued_candidates);
  out +=
      "# HELP ktune_leases_active Leases held by workers.\n"
      "# TYPE ktune_leases_active gauge\n";
  absl::StrAppendFormat(&out, "ktune_leases_active %d\n", g.active_leases);
  out +=
      "# HELP ktune_workers Registered workers, by device class and state.\n"
      "# TYPE ktune_workers gauge\n";
  for (const auto& [key, n] : g.workers) {
    absl::StrAppendFormat(&out, "ktune_workers{device_class=\"%s\",state=\"%s\"} %d\n",
                          Escape(key.first), key.second, n);
  }
  if (g.workers.empty()) {
    // No worker yet: every state still shows, at 0, so that a dashboard reads 0 workers rather
    // than "no data".
    for (const char* state : {"idle", "measuring", "lost"}) {
      absl::StrAppendFormat(&out, "ktune_workers{device_class=\"\",state=\"%s\"} 0\n", state);
    }
  }
  out +=
      "# HELP ktune_jobs Jobs the scheduler holds, by state.\n"
      "# TYPE ktune_jobs gauge\n";
  for (const char* state : {"queued", "running", "paused", "done", "failed", "cancelled"}) {
    auto it = g.jobs.find(state);
    absl::StrAppendFormat(&out, "ktune_jobs{state=\"%s\"} %d\n", state,
                          it == g.jobs.end() ? 0 : it->second);
  }
  out +=
      "# HELP ktune_drift_flags_total Drift flags raised from production telemetry, by kind.\n"
      "# TYPE ktune_drift_flags_total counter\n";
  for (const char* kind : {"regression", "new_environment", "untuned_hot_problem"}) {
    auto it = g.drift_flags.find(kind);
    absl::StrAppendFormat(&out, "ktune_drift_flags_total{kind=\"%s\"} %d\n", kind,
                          it == g.drift_flags.end() ? 0 : it->second);
  }
  absl::StrAppendFormat(&out,
                        "# HELP ktune_retune_jobs_total Retuning jobs started by drift flags.\n"
                        "# TYPE ktune_retune_jobs_total counter\n"
                        "ktune_retune_jobs_total %d\n",
                        g.retune_jobs);
  return out;
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
Metrics::InterceptorFactory() {
  return std::make_unique<RpcInterceptorFactory>(this);
}

namespace {

// IPV4:PORT as a socket address.
absl::StatusOr<sockaddr_in> ParseMetricsAddress(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  int port = 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535 ||
      inet_pton(AF_INET, listen.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-listen '", listen, "' is not IPV4:PORT (e.g. 127.0.0.1:9464)"));
  }
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

}  // namespace

absl::Status CheckMetricsAddress(const std::string& listen) {
  return ParseMetricsAddress(listen).status();
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& listen, std::function<std::string()> render) {
  KTUNE_ASSIGN_OR_RETURN(sockaddr_in addr, ParseMetricsAddress(listen));
  std::unique_ptr<MetricsHttpServer> s(new MetricsHttpServer());
  s->render_ = std::move(render);
  s->fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(s->fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (s->fd_ < 0 || bind(s->fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(s->fd_, 16) != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", listen, ": ", std::strerror(errno)));
  }
  MetricsHttpServer* raw = s.get();
  s->thread_ = std::thread([raw] { raw->Serve(); });
  return s;
}

MetricsHttpServer::~MetricsHttpServer() {
  stopping_ = true;
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);  // wakes accept()
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) ::close(fd_);
}

// One connection at a time: Prometheus scrapes are rare and small. Each connection gets 2 s to
// send its request line; anything but GET /metrics is a 404.
void MetricsHttpServer::Serve() {
  while (!stopping_) {
    const int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) {
      if (stopping_) return;
      continue;
    }
    timeval timeout{2, 0};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    std::string request;
    char buf[2048];
    while (request.find("\r\n\r\n") == std::string::npos && request.size() < 16384) {
      const ssize_t n = ::recv(conn, buf, sizeof(buf), 0);
      if (n <= 0) break;
      request.append(buf, static_cast<size_t>(n));
    }
    std::string response;
    if (request.rfind("GET /metrics ", 0) == 0 || request.rfind("GET /metrics?", 0) == 0) {
      const std::string body = render_();
      response = absl::StrCat(
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
          "Content-Length: ",
          body.size(), "\r\nConnection: close\r\n\r\n", body);
    } else {
      response = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    }
    size_t sent = 0;
    while (sent < response.size()) {
      const ssize_t n = ::send(conn, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    ::close(conn);
  }
}

}  // namespace ktune
