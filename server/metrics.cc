#include "server/metrics.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "db/record.h"
#include "google/protobuf/descriptor.h"
#include "ktune/v1/tuning_service.pb.h"
#include "ktune/v1/worker_service.pb.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace ktune {
namespace {

// A piece of strategy work: a random proposal takes microseconds, PPO's learning step on a loaded
// machine a second and more.
const prometheus::Histogram::BucketBoundaries& AgentBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  return *buckets;
}

// The buckets of the RPC and commit histograms, in seconds.
const prometheus::Histogram::BucketBoundaries& Buckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5};
  return *buckets;
}

// A job lasts from seconds (a compiler's one-task tune) to days (a fleet's sweep).
const prometheus::Histogram::BucketBoundaries& JobBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 7 * 24 * 3600};
  return *buckets;
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

// A family of values read at scrape time.
prometheus::MetricFamily ScrapedFamily(const char* name, prometheus::MetricType type,
                                       const char* help) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  return family;
}

void AddValue(prometheus::MetricFamily* family, std::vector<prometheus::ClientMetric::Label> labels,
              double value) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  if (family->type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family->metric.push_back(std::move(metric));
}

// A metric with one label, a series for each of `values` (0 when `counts` lacks it), so that a
// dashboard reads 0 rather than "no data".
prometheus::MetricFamily ByLabel(const char* name, prometheus::MetricType type, const char* help,
                                 const char* label, std::initializer_list<const char*> values,
                                 const std::map<std::string, int64_t>& counts) {
  prometheus::MetricFamily family = ScrapedFamily(name, type, help);
  for (const char* value : values) {
    auto it = counts.find(value);
    AddValue(&family, {{label, value}}, it == counts.end() ? 0 : it->second);
  }
  return family;
}

constexpr size_t kMaxDeviceClassSeries = 64;

// The scheduler's state at scrape time, as metric families.
std::vector<prometheus::MetricFamily> GaugeFamilies(const Metrics::Gauges& g) {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> out;
  out.push_back(ScrapedFamily("ktune_best_cache_requests_total", MetricType::Counter,
                              "Best-known queries, by cache result."));
  AddValue(&out.back(), {{"result", "hit"}}, g.cache_hits);
  AddValue(&out.back(), {{"result", "miss"}}, g.cache_misses);
  out.push_back(ScrapedFamily("ktune_queue_candidates", MetricType::Gauge,
                              "Candidates proposed and waiting for a worker."));
  AddValue(&out.back(), {}, g.queued_candidates);
  out.push_back(ScrapedFamily("ktune_tasks_without_worker", MetricType::Gauge,
                              "Tasks of active jobs whose device class no connected worker has."));
  // Classes come from job specs, a client's to write: the 64 with the most waiting tasks are
  // shown, the rest summed in one series of their own (an `overflow` label no class series has),
  // so that jobs for made-up classes can neither grow the scrape without bound nor, sorting
  // first, push a real class out.
  std::vector<std::pair<std::string, int64_t>> waiting(g.tasks_without_worker.begin(),
                                                       g.tasks_without_worker.end());
  std::stable_sort(waiting.begin(), waiting.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  int64_t others = 0;
  for (size_t i = 0; i < waiting.size(); ++i) {
    if (i < kMaxDeviceClassSeries) {
      AddValue(&out.back(), {{"device_class", waiting[i].first}}, waiting[i].second);
    } else {
      others += waiting[i].second;
    }
  }
  if (waiting.size() > kMaxDeviceClassSeries) {
    AddValue(&out.back(), {{"device_class", "(other classes)"}, {"overflow", "true"}}, others);
  }
  out.push_back(ScrapedFamily("ktune_leases_active", MetricType::Gauge, "Leases held by workers."));
  AddValue(&out.back(), {}, g.active_leases);
  out.push_back(ScrapedFamily("ktune_lease_expiries_total", MetricType::Counter,
                              "Leases taken back because their worker stopped answering."));
  AddValue(&out.back(), {}, g.leases_expired);
  out.push_back(ScrapedFamily("ktune_lease_revivals_total", MetricType::Counter,
                              "Expired leases given back to their worker, alive after all (a "
                              "partition, a stopped process), whose candidates nobody had taken."));
  AddValue(&out.back(), {}, g.leases_revived);
  out.push_back(ScrapedFamily("ktune_earlier_leases_stored_total", MetricType::Counter,
                              "Reports of leases the server's earlier process handed out (it "
                              "restarted while they were measured) that were stored."));
  AddValue(&out.back(), {}, g.earlier_leases_stored);
  out.push_back(ScrapedFamily(
      "ktune_job_writes_pending", MetricType::Gauge,
      "Job and task state changes in effect on this server and not stored yet: 0 but for a "
      "moment, unless the database refuses writes (busy, full, read-only)."));
  AddValue(&out.back(), {}, g.job_writes_pending);
  out.push_back(ScrapedFamily("ktune_agent_work_queued", MetricType::Gauge,
                              "Strategy work waiting for an agent thread (--agent-threads)."));
  AddValue(&out.back(), {}, g.agent_work_queued);
  out.push_back(ScrapedFamily("ktune_workers", MetricType::Gauge,
                              "Registered workers, by device class and state."));
  for (const auto& [key, n] : g.workers) {
    AddValue(&out.back(), {{"device_class", key.first}, {"state", key.second}}, n);
  }
  if (g.workers.empty()) {
    // No worker yet: every state still shows, at 0, so that a dashboard reads 0 workers rather
    // than "no data".
    for (const char* state : {"idle", "measuring", "lost"}) {
      AddValue(&out.back(), {{"device_class", ""}, {"state", state}}, 0);
    }
  }
  out.push_back(ByLabel("ktune_jobs", MetricType::Gauge, "Active jobs, by state.", "state",
                        {"queued", "running", "paused"}, g.jobs));
  // Ended jobs leave memory soon after: as a gauge they read 0 almost always.
  out.push_back(ByLabel("ktune_jobs_ended_total", MetricType::Counter,
                        "Jobs this server process ended, by final state.", "state",
                        {"done", "failed", "cancelled"}, g.jobs_ended));
  out.push_back(ByLabel("ktune_drift_flags_total", MetricType::Counter,
                        "Drift flags raised from production telemetry, by kind.", "kind",
                        {"regression", "new_environment", "untuned_hot_problem"}, g.drift_flags));
  out.push_back(ScrapedFamily("ktune_retune_jobs_total", MetricType::Counter,
                              "Retuning jobs started by drift flags."));
  AddValue(&out.back(), {}, g.retune_jobs);
  return out;
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

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  requests_ = &prometheus::BuildCounter()
                   .Name("ktune_rpc_requests_total")
                   .Help("RPCs handled, by method and status code.")
                   .Register(*registry_);
  rpc_seconds_ = &prometheus::BuildHistogram()
                      .Name("ktune_rpc_duration_seconds")
                      .Help("Time from request metadata to status, by method.")
                      .Register(*registry_);
  measurements_ = &prometheus::BuildCounter()
                       .Name("ktune_measurements_total")
                       .Help("Measurement results stored, by status.")
                       .Register(*registry_);
  // Every status at 0 from the start: a fresh server's dashboard read "No data" for measurements
  // until the first report, and increase() missed the first failure of a kind.
  for (int status = 0; status < kMeasurementStatusCount; ++status) {
    measurements_->Add({{"status", std::string(StatusName(static_cast<MeasurementStatus>(status)))}});
  }
  commit_seconds_ = &prometheus::BuildHistogram()
                         .Name("ktune_db_commit_duration_seconds")
                         .Help("Time to commit one report's records.")
                         .Register(*registry_)
                         .Add({}, Buckets());
  commit_failures_ = &prometheus::BuildCounter()
                          .Name("ktune_db_commit_failures_total")
                          .Help("Reports whose records the database refused, by status code.")
                          .Register(*registry_);
  job_seconds_ = &prometheus::BuildHistogram()
                      .Name("ktune_job_duration_seconds")
                      .Help(
                          "Time from a job's submission to its end, of the jobs this server "
                          "process ended, by final state.")
                      .Register(*registry_);
  for (const char* state : {"done", "failed", "cancelled"}) {
    job_seconds_->Add({{"state", state}}, JobBuckets());
  }
  agent_seconds_ = &prometheus::BuildHistogram()
                        .Name("ktune_agent_work_seconds")
                        .Help(
                            "Strategy work on the agent threads, by kind: start (a task's search "
                            "created, its first batch proposed), batch (results learned, the next "
                            "batch proposed). Workers wait for it when it is slower than they "
                            "measure.")
                        .Register(*registry_);
  for (const char* kind : {"start", "batch"}) agent_seconds_->Add({{"kind", kind}}, AgentBuckets());
  // At 0 from the start, so that increase() sees the first failure (SqliteError's codes).
  for (const char* code : {"RESOURCE_EXHAUSTED", "UNAVAILABLE", "ABORTED", "PERMISSION_DENIED",
                           "DATA_LOSS", "INTERNAL"}) {
    commit_failures_->Add({{"code", code}});
  }
}

Metrics::~Metrics() = default;

void Metrics::ObserveRpc(const std::string& method, int code, double seconds) {
  const int slot = code >= 0 && code <= 16 ? code : 2;  // UNKNOWN, as CodeName says
  prometheus::Counter* requests;
  prometheus::Histogram* histogram;
  {
    absl::MutexLock lock(&mu_);
    RpcSeries& series = rpc_series_[method];
    if (series.seconds == nullptr)
      series.seconds = &rpc_seconds_->Add({{"method", method}}, Buckets());
    if (series.requests[slot] == nullptr) {
      series.requests[slot] = &requests_->Add({{"method", method}, {"code", CodeName(slot)}});
    }
    requests = series.requests[slot];
    histogram = series.seconds;
  }
  requests->Increment();  // the series are thread-safe
  histogram->Observe(seconds);
}

void Metrics::ObserveCommit(double seconds) { commit_seconds_->Observe(seconds); }

void Metrics::CountCommitFailure(const std::string& code) {
  commit_failures_->Add({{"code", code}}).Increment();
}

void Metrics::ObserveJobEnd(const std::string& state, double seconds) {
  job_seconds_->Add({{"state", state}}, JobBuckets()).Observe(seconds);
}

void Metrics::ObserveAgentWork(const std::string& kind, double seconds) {
  agent_seconds_->Add({{"kind", kind}}, AgentBuckets()).Observe(seconds);
}

void Metrics::CountMeasurement(const std::string& status, int64_t n) {
  measurements_->Add({{"status", status}}).Increment(static_cast<double>(n));
}

std::vector<prometheus::MetricFamily> Metrics::Collect(const Gauges& gauges) const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (prometheus::MetricFamily& family : GaugeFamilies(gauges)) {
    families.push_back(std::move(family));
  }
  return families;
}

std::string Metrics::Render(const Gauges& gauges) const {
  return prometheus::TextSerializer().Serialize(Collect(gauges));
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
Metrics::InterceptorFactory() {
  return std::make_unique<RpcInterceptorFactory>(this);
}

}  // namespace ktune
