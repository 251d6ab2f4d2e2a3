// Metrics for real: a running `ktune serve --metrics-listen` is scraped by a real Prometheus
// server (Debian's prometheus package), and Prometheus' own query API must show the series.
#include "server/metrics.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "prometheus/metric_family.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

// stdout of a shell command.
std::string Shell(const std::string& command) {
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
  char buf[4096];
  size_t n;
  while (pipe && (n = fread(buf, 1, sizeof(buf), pipe.get())) > 0) out.append(buf, n);
  return out;
}

// A child process (Prometheus) killed when the test ends.
class Child {
 public:
  explicit Child(const std::string& command) {
    pid_ = fork();
    if (pid_ == 0) {
      execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), nullptr);
      _exit(127);
    }
  }
  ~Child() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }

 private:
  pid_t pid_;
};

TEST(MetricsTest, AnIdleServerShowsItsGaugesAtZero) {
  Metrics metrics;
  const std::string idle = metrics.Render({});
  for (const char* line :
       {"ktune_workers{device_class=\"\",state=\"idle\"} 0\n",
        "ktune_workers{device_class=\"\",state=\"measuring\"} 0\n", "ktune_leases_active 0\n",
        "ktune_queue_candidates 0\n", "ktune_jobs{state=\"running\"} 0\n",
        "ktune_job_writes_pending 0\n", "ktune_agent_work_queued 0\n",
        "ktune_agent_work_seconds_count{kind=\"start\"} 0\n",
        "ktune_agent_work_seconds_count{kind=\"batch\"} 0\n"}) {
    EXPECT_THAT(idle, ::testing::HasSubstr(line));
  }
  for (const char* state : {"done", "failed", "cancelled"}) {
    EXPECT_THAT(idle, ::testing::HasSubstr(
                          absl::StrCat("ktune_jobs_ended_total{state=\"", state, "\"} 0\n")));
    EXPECT_THAT(idle, ::testing::HasSubstr(absl::StrCat("ktune_job_duration_seconds_count{state=\"",
                                                        state, "\"} 0\n")));
    EXPECT_THAT(idle, ::testing::Not(
                          ::testing::HasSubstr(absl::StrCat("ktune_jobs{state=\"", state, "\"}"))));
  }
  Metrics::Gauges busy;
  busy.workers[{"cpu:x", "measuring"}] = 2;
  busy.jobs_ended["cancelled"] = 3;
  busy.tasks_without_worker["cpu:y"] = 4;
  busy.leases_expired = 5;
  busy.job_writes_pending = 6;
  busy.agent_work_queued = 7;
  metrics.ObserveJobEnd("done", 90);
  metrics.ObserveAgentWork("batch", 0.3);
  const std::string text = metrics.Render(busy);
  EXPECT_THAT(text, ::testing::HasSubstr("ktune_job_writes_pending 6\n"));
  EXPECT_THAT(text, ::testing::HasSubstr("ktune_agent_work_queued 7\n"));
  EXPECT_THAT(text, ::testing::HasSubstr(
                        "ktune_agent_work_seconds_bucket{kind=\"batch\",le=\"0.25\"} 0\n"));
  EXPECT_THAT(
      text, ::testing::HasSubstr("ktune_agent_work_seconds_bucket{kind=\"batch\",le=\"0.5\"} 1\n"));
  EXPECT_THAT(text, ::testing::HasSubstr("ktune_job_duration_seconds_count{state=\"done\"} 1\n"));
  EXPECT_THAT(text, ::testing::HasSubstr(
                        "ktune_job_duration_seconds_bucket{state=\"done\",le=\"60\"} 0\n"));
  EXPECT_THAT(text, ::testing::HasSubstr(
                        "ktune_job_duration_seconds_bucket{state=\"done\",le=\"300\"} 1\n"));
  EXPECT_THAT(text, ::testing::HasSubstr("# TYPE ktune_lease_expiries_total counter\n"));
  EXPECT_THAT(text, ::testing::HasSubstr("ktune_lease_expiries_total 5\n"));
  EXPECT_THAT(text, ::testing::HasSubstr("ktune_tasks_without_worker{device_class=\"cpu:y\"} 4\n"));
  EXPECT_THAT(text, ::testing::HasSubstr("ktune_jobs_ended_total{state=\"cancelled\"} 3\n"));
  EXPECT_THAT(
      text, ::testing::HasSubstr("ktune_workers{device_class=\"cpu:x\",state=\"measuring\"} 2\n"));
  EXPECT_THAT(text, ::testing::Not(::testing::HasSubstr("device_class=\"\"")));
  // Made-up classes (a client's job specs) grow no more than 64 series; the rest are summed.
  Metrics::Gauges flooded;
  for (int i = 0; i < 100; ++i) flooded.tasks_without_worker[absl::StrCat("made-up-", 100 + i)] = 2;
  flooded.tasks_without_worker["real-class"] = 3;  // sorts after them, waits for more
  const std::string capped = metrics.Render(flooded);
  size_t series = 0;
  for (size_t at = 0; (at = capped.find("ktune_tasks_without_worker{", at)) != std::string::npos;
       ++at) {
    ++series;
  }
  EXPECT_EQ(series, 65u);
  EXPECT_THAT(capped,
              ::testing::HasSubstr("ktune_tasks_without_worker{device_class=\"real-class\"} 3\n"));
  EXPECT_THAT(capped,
              ::testing::HasSubstr("ktune_tasks_without_worker{device_class=\"(other classes)\","
                                   "overflow=\"true\"} 74\n"));
}

// Reports the database refused (a full disk) are counted by code: the slow-commits alert never
// saw them (only commits that succeeded are timed).
TEST(MetricsTest, CommitFailuresAreCountedByCode) {
  Metrics metrics;
  metrics.CountCommitFailure("RESOURCE_EXHAUSTED");
  metrics.CountCommitFailure("RESOURCE_EXHAUSTED");
  metrics.CountCommitFailure("UNAVAILABLE");
  const std::string text = metrics.Render({});
  EXPECT_THAT(text, ::testing::HasSubstr(
                        "ktune_db_commit_failures_total{code=\"RESOURCE_EXHAUSTED\"} 2\n"));
  EXPECT_THAT(text,
              ::testing::HasSubstr("ktune_db_commit_failures_total{code=\"UNAVAILABLE\"} 1\n"));
}

// Only this server's methods get a series of their own: a client calling made-up names (each
// answered UNIMPLEMENTED) added a series and a histogram per name, for good.
TEST(MetricsTest, MadeUpMethodNamesShareOneLabel) {
  EXPECT_EQ(RpcMethodLabel("/ktune.v1.TuningService/QueryBest"),
            "/ktune.v1.TuningService/QueryBest");
  EXPECT_EQ(RpcMethodLabel("/ktune.v1.WorkerService/LeaseBatch"),
            "/ktune.v1.WorkerService/LeaseBatch");
  EXPECT_EQ(RpcMethodLabel("/grpc.health.v1.Health/Check"), "/grpc.health.v1.Health/Check");
  for (const char* made_up : {"/ktune.v1.TuningService/Bogus", "/evil.Svc/M1_AAAA",
                              "/ktune.v1.NoService/QueryBest", "", "/", "QueryBest"}) {
    EXPECT_EQ(RpcMethodLabel(made_up), "unknown") << made_up;
  }
}

// Clients that send their requests a byte at a time, and reconnect when dropped, do not hold up a
// scrape: civetweb gives a request kRequestTimeoutMs, and queues the connections its threads
// cannot take yet. (The hand-written responder this replaced answered 32 connections at once and
// closed the rest, so 32 such clients kept every scrape out.)
TEST(MetricsTest, SlowClientsDoNotBlockAScrape) {
  const int port = testing::FreePort();
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start(absl::StrCat("127.0.0.1:", port), [] {
        prometheus::MetricFamily up{"ktune_up", "Up.", prometheus::MetricType::Gauge, {}};
        up.metric.emplace_back();
        up.metric.back().gauge.value = 1;
        return std::vector<prometheus::MetricFamily>{up};
      });
  ASSERT_TRUE(server.ok()) << server.status();
  std::atomic<bool> stop{false};
  std::atomic<int> connections{0};
  std::vector<std::thread> slow;
  for (int c = 0; c < 4 * MetricsHttpServer::kThreads; ++c) {
    slow.emplace_back([&] {
      while (!stop) {
        const int fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
          ++connections;
          const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\n";  // never finished
          for (size_t i = 0; i < request.size() && !stop; ++i) {
            if (send(fd, &request[i], 1, MSG_NOSIGNAL) < 0) break;  // dropped: connect again
            absl::SleepFor(absl::Milliseconds(500));
          }
        }
        close(fd);
      }
    });
  }
  // Poll until every slow client is connected (the scrape then queues behind them all).
  for (int i = 0; i < 500 && connections < static_cast<int>(slow.size()); ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  // Or the scrape would not queue behind them, and the test would pass without its case.
  ASSERT_EQ(connections.load(), static_cast<int>(slow.size()));
  // curl gives up after 10 s; the slow clients dribble until it is done.
  const std::string text =
      Shell(absl::StrCat("curl -s --max-time 10 http://127.0.0.1:", port, "/metrics"));
  stop = true;
  for (std::thread& t : slow) t.join();
  EXPECT_THAT(text, ::testing::HasSubstr("\nktune_up 1\n"));
}

// A port in use is an error that says so, not a crash (civetweb throws).
TEST(MetricsTest, APortInUseIsAnError) {
  const int port = testing::FreePort();
  auto first = MetricsHttpServer::Start(absl::StrCat("127.0.0.1:", port),
                                        [] { return std::vector<prometheus::MetricFamily>{}; });
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = MetricsHttpServer::Start(absl::StrCat("127.0.0.1:", port),
                                         [] { return std::vector<prometheus::MetricFamily>{}; });
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()),
              ::testing::AllOf(
                  ::testing::HasSubstr(absl::StrCat("cannot serve metrics on 127.0.0.1:", port)),
                  ::testing::HasSubstr("Address already in use")));
}

// localhost is taken as --listen takes it (it was refused as "not IPV4:PORT"); a name is not.
TEST(MetricsTest, LocalhostIsAnAddressToServeMetricsOn) {
  EXPECT_TRUE(CheckMetricsAddress("localhost:9464").ok());
  EXPECT_TRUE(CheckMetricsAddress("127.0.0.1:9464").ok());
  const absl::Status named = CheckMetricsAddress("metrics.example:9464");
  EXPECT_THAT(std::string(named.message()), ::testing::HasSubstr("is not IPV4:PORT or localhost"));
}

TEST(MetricsTest, PrometheusScrapesTheServerAndSeesEverySeries) {
  testing::TempDir dir;
  const int grpc_port = testing::FreePort(), metrics_port = testing::FreePort(),
            worker_metrics_port = testing::FreePort(), prometheus_port = testing::FreePort();
  testing::KtuneProcess server({"serve", "--listen", absl::StrCat("127.0.0.1:", grpc_port), "--db",
                                dir.File("m.db"), "--metrics-listen",
                                absl::StrCat("127.0.0.1:", metrics_port), "--replay",
                                testing::SpaceFile("convolution_A100_T4.json.gz")});
  ASSERT_TRUE(server.WaitForOutput("listening on port")) << server.Err();
  // Some traffic: a job (a rejected one too), a worker that measures it.
  {
    std::ofstream spec(dir.File("job.yaml"));
    spec << "kernels: [fft]\nproblems: [{N: 8}]\ndevice_classes: [x]\nbudget: 2\n";
  }
  auto rejected = testing::RunKtune(
      {"submit", dir.File("job.yaml"), "--server", absl::StrCat("127.0.0.1:", grpc_port)});
  EXPECT_EQ(rejected.exit_code, 1);  // the spec file's fault (an unknown kernel), not usage
  testing::KtuneProcess worker(
      {"worker", "--server", absl::StrCat("127.0.0.1:", grpc_port), "--device",
       "replay:" + testing::SpaceFile("convolution_A100_T4.json.gz"), "--idle-exit", "300",
       "--metrics-listen", absl::StrCat("127.0.0.1:", worker_metrics_port)});

  // The endpoint itself, as text.
  const std::string text =
      Shell(absl::StrCat("curl -s http://127.0.0.1:", metrics_port, "/metrics"));
  EXPECT_THAT(text, ::testing::HasSubstr("# TYPE ktune_rpc_requests_total counter"));
  EXPECT_THAT(text, ::testing::HasSubstr("code=\"NOT_FOUND\""));

  {
    std::ofstream config(dir.File("prometheus.yml"));
    config << "global:\n  scrape_interval: 1s\n"
           << "scrape_configs:\n  - job_name: ktune\n    static_configs:\n"
           << "      - targets: ['127.0.0.1:" << metrics_port << "']\n"
           << "  - job_name: ktune-worker\n    static_configs:\n"
           << "      - targets: ['127.0.0.1:" << worker_metrics_port << "']\n";
  }
  Child prometheus(absl::StrCat("prometheus --config.file=", dir.File("prometheus.yml"),
                                " --storage.tsdb.path=", dir.File("tsdb"),
                                " --web.listen-address=127.0.0.1:", prometheus_port,
                                " --log.level=error >", dir.File("prometheus.log"), " 2>&1"));
  const std::vector<std::string> series = {
      "ktune_rpc_requests_total", "ktune_jobs_ended_total", "ktune_rpc_duration_seconds_bucket",
      "ktune_queue_candidates", "ktune_leases_active", "ktune_workers", "ktune_jobs",
      "ktune_best_cache_requests_total", "ktune_db_commit_duration_seconds_count",
      // the worker's own (measurer/worker_metrics.h)
      "ktune_worker_registrations_total", "ktune_worker_server_reachable",
      "ktune_worker_busy_seconds_total"};
  std::set<std::string> seen;
  for (int attempt = 0; attempt < 120 && seen.size() < series.size(); ++attempt) {
    absl::SleepFor(absl::Milliseconds(500));
    for (const std::string& name : series) {
      if (seen.count(name)) continue;
      const std::string body = Shell(absl::StrCat("curl -s 'http://127.0.0.1:", prometheus_port,
                                                  "/api/v1/query?query=", name, "'"));
      auto json = nlohmann::json::parse(body, nullptr, false);
      if (json.is_object() && json.value("status", "") == "success" &&
          !json["data"]["result"].empty()) {
        seen.insert(name);
      }
    }
  }
  for (const std::string& name : series) {
    EXPECT_TRUE(seen.count(name)) << name << " not in Prometheus; its log:\n"
                                  << testing::ReadWholeFile(dir.File("prometheus.log"));
  }
  // Prometheus' view of the rejected submission: code label and all.
  const std::string body = Shell(
      absl::StrCat("curl -s 'http://127.0.0.1:", prometheus_port,
                   "/api/v1/query?query=ktune_rpc_requests_total%7Bcode%3D%22NOT_FOUND%22%7D'"));
  EXPECT_THAT(body, ::testing::HasSubstr("/ktune.v1.TuningService/SubmitJob"));

  // Every metric the Grafana dashboard queries is one the server (or, ktune_worker_*, a worker)
  // exports, with the labels the dashboard reads.
  const std::string scraped =
      Shell(absl::StrCat("curl -s http://127.0.0.1:", metrics_port, "/metrics"));
  const std::string worker_scraped =
      Shell(absl::StrCat("curl -s http://127.0.0.1:", worker_metrics_port, "/metrics"));
  const std::string dashboard =
      testing::ReadWholeFile(KTUNE_SOURCE_DIR "/deploy/grafana/ktune-dashboard.json");
  const std::regex metric("ktune_[a-z_]+"), suffix("_(bucket|count|sum)$");
  std::set<std::string> queried;
  for (auto it = std::sregex_iterator(dashboard.begin(), dashboard.end(), metric);
       it != std::sregex_iterator(); ++it) {
    queried.insert(std::regex_replace(it->str(), suffix, ""));
  }
  EXPECT_GE(queried.size(), 12u);
  for (const std::string& name : queried) {
    EXPECT_THAT(absl::StartsWith(name, "ktune_worker_") ? worker_scraped : scraped,
                ::testing::HasSubstr("# TYPE " + name + " "))
        << name;
  }
  // The workers panel counts the connected ones: a lost worker stays listed for an hour.
  EXPECT_THAT(dashboard, ::testing::HasSubstr(R"(sum(ktune_workers{instance=~\"$instance\",state!=\"lost\"}))"));
  // A server that has stored nothing yet shows its measurements at 0 (the dashboard read "No
  // data"): this one's only job was refused.
  EXPECT_THAT(scraped, ::testing::HasSubstr("ktune_measurements_total{status=\"ok\"} 0"));
}

}  // namespace
}  // namespace ktune
