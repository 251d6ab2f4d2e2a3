#include "server/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "google/protobuf/descriptor.h"
#include "ktune/v1/tuning_service.pb.h"
#include "ktune/v1/worker_service.pb.h"

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

// A metric with one label, a line for each of `values` (0 when `counts` lacks it), so that a
// dashboard reads 0 rather than "no data".
void RenderByLabel(const char* name, const char* type, const char* help, const char* label,
                   std::initializer_list<const char*> values,
                   const std::map<std::string, int64_t>& counts, std::string* out) {
  absl::StrAppendFormat(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
  for (const char* value : values) {
    auto it = counts.find(value);
    absl::StrAppendFormat(out, "%s{%s=\"%s\"} %d\n", name, label, value,
                          it == counts.end() ? 0 : it->second);
  }
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

}  // namespace

// A client calling made-up method names (each answered UNIMPLEMENTED) grew a series and a histogram
// per name, kept for good: 200 calls took /metrics from 24 KB to 1.85 MB.

std::string RpcMethodLabel(const std::string& method) {
  // Every method of this server's services, as "/package.Service/Method".
  static const std::set<std::string> kKnown = [] {
    std::set<std::string> known = {"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch",
                                   "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                   "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"};
    for (const google::protobuf::FileDescriptor* file :
         {v1::QueryBestRequest::descriptor()->file(),
          v1::LeaseBatchRequest::descriptor()->file()}) {
      for (int s = 0; s < file->service_count(); ++s) {
        const google::protobuf::ServiceDescriptor* service = file->service(s);
        for (int m = 0; m < service->method_count(); ++m) {
          known.insert(absl::StrCat("/", service->full_name(), "/", service->method(m)->name()));
        }
      }
    }
    return known;
  }();
  return kKnown.count(method) ? method : "unknown";
}

namespace {

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
    return new RpcInterceptor(metrics_, RpcMethodLabel(info->method()));
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
  RenderByLabel("ktune_jobs", "gauge", "Active jobs, by state.", "state",
                {"queued", "running", "paused"}, g.jobs, &out);
  // Ended jobs leave memory soon after: as a gauge they read 0 almost always.
  RenderByLabel("ktune_jobs_ended_total", "counter",
                "Jobs this server process ended, by final state.", "state",
                {"done", "failed", "cancelled"}, g.jobs_ended, &out);
  RenderByLabel("ktune_drift_flags_total", "counter",
                "Drift flags raised from production telemetry, by kind.", "kind",
                {"regression", "new_environment", "untuned_hot_problem"}, g.drift_flags, &out);
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

// Each connection on a thread of its own (at most kMaxConnections at once; more are closed), with
// a deadline for its request and one for the whole exchange: a client sending a byte every second
// held the one thread that served every connection for hours (the 2 s timeout applied to each
// read).
void MetricsHttpServer::Serve() {
  while (!stopping_) {
    const int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) {
      if (stopping_) break;
      continue;
    }
    {
      absl::MutexLock lock(&mu_);
      if (connections_ >= kMaxConnections) {
        ::close(conn);
        continue;
      }
      ++connections_;
    }
    std::thread([this, conn] {
      Answer(conn);
      ::close(conn);
      absl::MutexLock lock(&mu_);
      --connections_;
    }).detach();
  }
  // The handlers use this object: wait for them (each ends within its deadline).
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](int* n) { return *n == 0; }, &connections_));
}

void MetricsHttpServer::Answer(int conn) {
  const auto start = std::chrono::steady_clock::now();
  const auto left = [&](std::chrono::seconds budget) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(start + budget -
                                                                 std::chrono::steady_clock::now())
        .count();
  };
  std::string request;
  char buf[2048];
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < 16384) {
    pollfd p{conn, POLLIN, 0};
    const int64_t ms = left(kRequestDeadline);
    if (ms <= 0 || ::poll(&p, 1, static_cast<int>(ms)) <= 0) return;
    const ssize_t n = ::recv(conn, buf, sizeof(buf), MSG_DONTWAIT);
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
    pollfd p{conn, POLLOUT, 0};
    const int64_t ms = left(kConnectionDeadline);
    if (ms <= 0 || ::poll(&p, 1, static_cast<int>(ms)) <= 0) return;
    const ssize_t n =
        ::send(conn, response.data() + sent, response.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      return;
    }
    sent += static_cast<size_t>(n);
  }
}

}  // namespace ktune
