// The service commands: ktune serve (the tuning server), ktune worker (a measurement worker),
// and the job client commands submit, watch and cancel, which talk to a server over gRPC. Every
// client call carries a deadline.
#include <google/protobuf/stubs/common.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/command.h"
#include "cli/tune_job.h"
#include "cli/tune_target.h"
#include "common/event_log.h"
#include "common/file_util.h"
#include "common/metrics_http.h"
#include "db/interchange/record_files.h"
#include "grpcpp/create_channel.h"
#include "kernels/kernel_registry.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "measurer/cpu_measurer.h"
#include "measurer/cuda_measurer.h"
#include "measurer/replay_measurer.h"
#include "measurer/worker_loop.h"
#include "measurer/worker_metrics.h"
#include "proto/channel.h"
#include "proto/convert.h"
#include "server/tuning_server.h"

namespace ktune::cli {
namespace {

// SIGTERM, SIGINT and SIGHUP (the terminal closed), whichever thread receives them, write to a
// pipe; OnTerminationSignal's thread reads it and calls back outside the signal handler. (Blocking
// the signals instead would miss threads that libraries start before main.)
int g_signal_pipe[2] = {-1, -1};

void WriteSignal(int) {
  const char byte = 1;
  [[maybe_unused]] ssize_t n = write(g_signal_pipe[1], &byte, 1);
}

std::thread OnTerminationSignal(std::function<void()> on_signal) {
  if (g_signal_pipe[0] < 0 && pipe(g_signal_pipe) != 0) return std::thread([] {});
  struct sigaction action = {};
  action.sa_handler = WriteSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  struct sigaction hup = {};
  sigaction(SIGHUP, nullptr, &hup);
  if (hup.sa_handler != SIG_IGN) sigaction(SIGHUP, &action, nullptr);  // nohup keeps it ignored
  return std::thread([on_signal] {
    char byte;
    if (read(g_signal_pipe[0], &byte, 1) == 1) on_signal();
  });
}

// "M=512,N=512,K=512"
std::string ProblemText(const v1::TaskProgress& t) {
  absl::StatusOr<Problem> problem = FromProto(t.task().problem().params(), "problem");
  return problem.ok() ? FormatParamMapAssignments(*problem) : "?";
}

nlohmann::json TaskJson(const v1::TaskProgress& t) {
  absl::StatusOr<Problem> problem = FromProto(t.task().problem().params(), "problem");
  nlohmann::json task{
      {"kernel", t.task().kernel().name()},
      // An object, as every other command's --json gives a problem.
      {"problem", problem.ok() ? nlohmann::json::parse(CanonicalJson(*problem)) : nlohmann::json()},
      {"device_class", t.task().device_class()},
      {"state", StateName(t.state())},
      {"measurements_done", t.measurements_done()},
      {"measurements_failed", t.measurements_failed()}};
  if (t.has_best_time_ms()) {
    task["best_time_ms"] = t.best_time_ms();
    // The configuration too: a script following a job had to ask `best` for it afterwards.
    if (absl::StatusOr<ParamMap> best = FromProto(t.best_config().params(), "best_config");
        best.ok()) {
      task["best_config"] = nlohmann::json::parse(CanonicalJson(*best));
    }
  }
  if (t.has_best_gflops()) task["best_gflops"] = t.best_gflops();
  return task;
}

nlohmann::json JobJson(const v1::Job& job) {
  nlohmann::json j{
      {"job_id", job.job_id()},
      {"name", job.spec().name()},
      {"state", StateName(job.state())},
      {"message", job.message()},
      {"measurements_done", job.measurements_done()},
      {"measurements_total", job.measurements_total()},
      // null, not 0, where there is no estimate, and where nothing waits
      {"estimated_seconds_left", job.estimated_seconds_left() > 0
                                     ? nlohmann::json(job.estimated_seconds_left())
                                     : nlohmann::json(nullptr)},
      {"waiting", job.waiting().empty() ? nlohmann::json(nullptr) : nlohmann::json(job.waiting())}};
  j["task_count"] = job.task_count();
  for (const v1::TaskProgress& t : job.tasks()) j["tasks"].push_back(TaskJson(t));
  return j;
}

// One event of `ktune watch --json`: the job, and the task that advanced last with its best.
nlohmann::json JobEventJson(const v1::JobEvent& event) {
  nlohmann::json j = JobJson(event.job());
  if (event.has_changed_task()) j["changed_task"] = TaskJson(event.changed_task());
  return j;
}

// --- serve ---

struct ServeArgs {
  std::string listen = kDefaultServer, db = "ktune.db", auth, tls_cert, tls_key, tls_client_ca,
              metrics_listen, log_format = "text";
  std::vector<std::string> replay;
  int64_t lease_timeout_ms = 30'000;
  int agent_threads = 2;
  std::string retune = "suggest";
  bool allow_unauthenticated = false;
  int64_t retune_budget = 100;
  int retune_max_jobs = 2;
  int64_t hot_calls = 100'000;
};

int RunServe(const ServeArgs& a) {
  LogFormat format;
  if (!ParseLogFormat(a.log_format, &format))
    return UsageError("serve", "--log-format: text or json");
  UseLogFormat(format);
  // An empty address would start a server nobody can reach ("listening on port 0").
  if (a.listen.empty())
    return UsageError("serve", "--listen needs HOST:PORT (port 0: any free one)");
  if (absl::Status s = CheckListenAddress(a.listen); !s.ok()) {
    return UsageError("serve", std::string(s.message()));
  }
  // Without tokens every caller is admin: anyone who reaches the port could register a kernel,
  // which every CPU worker then compiles and runs. Open to the network only when asked.
  // Mutual TLS admits only clients with a certificate from the CA: those are the trusted ones.
  if (a.auth.empty() && a.tls_client_ca.empty() && !a.allow_unauthenticated &&
      !IsLoopbackAddress(a.listen)) {
    return UsageError(
        "serve", absl::StrCat("--listen ", a.listen,
                              " is reachable from other machines, and without --auth every "
                              "caller may register kernels that the workers build and run: give "
                              "--auth FILE (deploy/README.md, Tokens), --tls-client-ca, or "
                              "--allow-unauthenticated where a network policy keeps others out"));
  }
  if (!a.metrics_listen.empty()) {
    if (absl::Status s = CheckMetricsAddress(a.metrics_listen); !s.ok()) {
      return UsageError("serve", std::string(s.message()));
    }
  }
  // Secrets any local user may read (as ssh says of a private key; group may, for a Kubernetes
  // secret's fsGroup): said, not refused.
  for (const auto& [path, what] : {std::pair{a.auth, "token file"}, {a.tls_key, "TLS key"}}) {
    struct stat st;
    if (!path.empty() && stat(path.c_str(), &st) == 0 && (st.st_mode & S_IROTH)) {
      LogEvent("secret_readable_by_others",
               {{"file", path},
                {"warning", absl::StrFormat("the %s %s can be read by every user of this machine "
                                            "(mode %04o): chmod o-r it",
                                            what, path, st.st_mode & 07777)}});
    }
  }
  // /metrics takes no token: device classes, job, worker and RPC counts for whoever reaches it.
  if (!a.metrics_listen.empty() && !IsLoopbackAddress(a.metrics_listen)) {
    LogEvent("metrics_open",
             {{"metrics_listen", a.metrics_listen},
              {"warning",
               "/metrics answers anyone who reaches it (no token): keep its port to "
               "the Prometheus that scrapes it (a firewall or NetworkPolicy, "
               "deploy/README.md)"}});
  }
  TuningServerOptions options;
  options.listen = a.listen;
  options.db_path = a.db;
  options.replay_files = a.replay;
  options.auth_file = a.auth;
  options.tls_cert = a.tls_cert;
  options.tls_key = a.tls_key;
  options.tls_client_ca = a.tls_client_ca;
  options.metrics_listen = a.metrics_listen;
  options.scheduler.lease_timeout = absl::Milliseconds(a.lease_timeout_ms);
  options.scheduler.heartbeat_interval =
      absl::Milliseconds(std::max<int64_t>(50, a.lease_timeout_ms / 3));
  options.scheduler.agent_threads = a.agent_threads;
  absl::StatusOr<RetuneMode> retune = ParseRetuneMode(a.retune);
  if (!retune.ok()) return UsageError("serve", absl::StrCat("--retune: ", retune.status().message()));
  options.retune.mode = *retune;
  options.retune.budget = a.retune_budget;
  options.retune.max_jobs = a.retune_max_jobs;
  options.drift.hot_calls = a.hot_calls;
  std::thread signals;
  absl::StatusOr<std::unique_ptr<TuningServer>> server = TuningServer::Start(options);
  if (!server.ok()) return Fail("serve", server.status());
  TuningServer* raw = server->get();
  signals = OnTerminationSignal([raw] { raw->Shutdown(); });
  LogEvent("server_started", {{"version", kVersion},
                              {"listen", a.listen},
                              {"port", std::to_string(raw->port())},
                              {"metrics_listen", raw->metrics_address()},
                              {"db", a.db},
                              {"auth", a.auth.empty() ? "off" : "on"},
                              {"tls", a.tls_cert.empty() ? "off" : "on"}});
  std::cout << "listening on port " << raw->port() << std::endl;
  raw->Wait();
  signals.join();
  LogEvent("server_stopped");
  return kExitOk;
}

// --- worker ---

struct WorkerArgs {
  std::string server = kDefaultServer, device = "cpu", token, log_format = "text", metrics_listen;
  ClientTls tls;
  int max_candidates = 8;
  int64_t max_measurements = 0;
  double idle_exit_s = 0;
  bool no_client_kernels = false;
};

int RunWorker(const WorkerArgs& a) {
  const std::string cmd = "worker";
  LogFormat format;
  if (!ParseLogFormat(a.log_format, &format)) return UsageError(cmd, "--log-format: text or json");
  if (a.idle_exit_s < 0) return UsageError(cmd, "--idle-exit: seconds >= 0 (0: never)");
  if (!a.metrics_listen.empty()) {
    if (absl::Status s = CheckMetricsAddress(a.metrics_listen); !s.ok()) {
      return UsageError(cmd, std::string(s.message()));
    }
  }
  UseLogFormat(format);
  std::unique_ptr<Measurer> measurer;
  // Built-ins, plus the kernels clients registered with the server as they arrive.
  KernelRegistry registry = KernelRegistry::WithBuiltins();
  int cores = 1;
  std::vector<std::string> languages;  // what the worker measures; a replay worker, its file's task
  if (absl::StartsWith(a.device, "replay:")) {
    absl::StatusOr<RecordedSpace> recorded = LoadRecordedSpace(a.device.substr(7));
    if (!recorded.ok()) return Fail(cmd, recorded.status());
    const Record& first = recorded->records.front();
    languages = {RecordedSpaceLanguage(first.kernel, first.problem)};
    measurer = std::make_unique<ReplayMeasurer>(recorded->records);
  } else if (a.device == "cpu") {
    auto cpu = std::make_unique<CpuMeasurer>(&registry);
    // As the CUDA worker's: a worker without its runner failed every candidate it leased.
    if (absl::Status runner = cpu->CheckRunner(); !runner.ok()) return Fail(cmd, runner);
    cores = cpu->cpu().cores;
    measurer = std::move(cpu);
    languages = {"cpp"};
  } else if (absl::StartsWith(a.device, "cuda")) {
    CudaMeasurerOptions cuda;
    absl::StatusOr<int> ordinal = cli::CudaOrdinal(a.device);
    if (!ordinal.ok()) return UsageError(cmd, std::string(ordinal.status().message()));
    cuda.device = *ordinal;
    absl::StatusOr<std::unique_ptr<CudaMeasurer>> gpu = CudaMeasurer::Create(&registry, cuda);
    if (!gpu.ok()) return Fail(cmd, gpu.status());
    measurer = *std::move(gpu);
    languages = {"cuda"};
  } else {
    return UsageError(cmd, absl::StrCat("unknown device '", a.device,
                                        "'; use cpu, cuda[:N] or replay:FILE"));
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(a.server, a.tls);
  if (!channel.ok()) return ChannelFailure(cmd, channel.status());
  auto stub = v1::WorkerService::NewStub(*channel);
  std::atomic<bool> stop{false};
  std::thread signals = OnTerminationSignal([&stop] { stop = true; });
  signals.detach();
  WorkerLoopOptions options;
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  options.host = host;
  options.token = TokenOr(a.token);
  options.cores = cores;
  options.max_candidates = a.max_candidates;
  options.max_measurements = a.max_measurements;
  options.idle_exit = absl::Seconds(a.idle_exit_s);
  options.registry = &registry;
  options.client_kernels = !a.no_client_kernels;
  options.languages = languages;
  options.channel = *channel;
  // The worker's own counts (measurer/worker_metrics.h), for the fleet's Prometheus.
  WorkerMetrics metrics;
  std::unique_ptr<MetricsHttpServer> metrics_http;
  if (!a.metrics_listen.empty()) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> started =
        MetricsHttpServer::Start(a.metrics_listen, [&metrics] { return metrics.Collect(); });
    if (!started.ok()) return Fail(cmd, started.status());
    metrics_http = *std::move(started);
    options.metrics = &metrics;
    if (!IsLoopbackAddress(a.metrics_listen)) {
      LogEvent("metrics_open", {{"metrics_listen", a.metrics_listen},
                                {"warning",
                                 "/metrics answers anyone who reaches it (no token): keep its "
                                 "port to the Prometheus that scrapes it"}});
    }
  }
  LogEvent("worker_started",
           {{"device_class", measurer->device().device_class},
            {"server", a.server},
            {"metrics_listen", metrics_http != nullptr ? metrics_http->address() : ""}});
  WorkerLoop loop(stub.get(), measurer.get(), options, &stop);
  absl::Status s = loop.Run();
  LogEvent("worker_stopped",
           {{"worker_id", loop.worker_id()}, {"reported", std::to_string(loop.reported())}});
  if (!s.ok()) return Fail(cmd, s);
  return kExitOk;
}

// --- submit / watch / cancel ---

struct JobArgs {
  std::string server = kDefaultServer, job, spec, token;
  ClientTls tls;
  bool json = false;
  int timeout_s = 24 * 3600;  // watch: the stream's deadline
  int reconnect_s = 120;      // watch: how long a server that went away is waited for
};

int RunSubmit(const JobArgs& a) {
  const std::string cmd = "submit";
  // `-` is the standard input, as for telemetry report (a minimal container has no /dev/stdin).
  absl::StatusOr<std::string> text =
      a.spec == "-" ? absl::StatusOr<std::string>(std::string(std::istreambuf_iterator<char>(std::cin),
                                                              std::istreambuf_iterator<char>()))
                    : ReadFileMaybeGzip(a.spec);
  if (!text.ok()) {
    return Fail(cmd, absl::NotFoundError(
                         absl::StrCat("cannot read ", a.spec, ": ", text.status().message())));
  }
  // A spec is YAML or JSON text; protobuf refuses a string that is not UTF-8 with a log line and
  // a server that "did not say why". Its own check decides, so the two cannot disagree.
  if (!google::protobuf::internal::IsStructurallyValidUTF8(text->data(),
                                                           static_cast<int>(text->size()))) {
    return Fail(
        cmd, absl::InvalidArgumentError(absl::StrCat(a.spec, " is not a YAML or JSON text file")));
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(a.server, a.tls);
  if (!channel.ok()) return ChannelFailure(cmd, channel.status());
  auto stub = v1::TuningService::NewStub(*channel);
  v1::SubmitJobRequest request;
  request.set_spec_text(*text);
  v1::Job job;
  absl::Status s = FromGrpc(stub->SubmitJob(ClientContextFor(a.token).get(), request, &job));
  if (absl::IsInvalidArgument(s) || absl::IsNotFound(s)) {
    return Fail(cmd, absl::Status(s.code(), absl::StrCat(a.spec, ": ", s.message())));
  }
  if (!s.ok()) return Fail(cmd, s);
  if (a.json) {
    std::cout << JobJson(job).dump(-1, ' ', false, kReplaceInvalidUtf8) << "\n";
  } else {
    std::cout << "job " << job.job_id() << " submitted: " << job.task_count()
              << (job.task_count() == 1 ? " task, " : " tasks, ") << job.measurements_total()
              << (job.measurements_total() == 1 ? " measurement\n" : " measurements\n");
  }
  // Tasks for a class no worker serves wait without a word (`watch` sat at 0): say so.
  std::vector<std::string> classes(job.spec().device_classes().begin(),
                                   job.spec().device_classes().end());
  const std::vector<std::string> waiting = ClassesWithoutWorker(*stub, a.token, classes);
  if (!waiting.empty()) {
    std::cerr << "ktune submit: no worker of device class " << absl::StrJoin(waiting, ", ")
              << " is connected to " << a.server << "; those tasks wait until one joins (ktune "
              << "workers lists who is there)\n";
  } else if (!job.waiting().empty()) {
    // Workers of the class are there, and none can measure the tasks (a CPU kernel on a class
    // of GPU workers, a recorded space the class's replay workers do not replay): it waited
    // without a word, where a class with no worker at all was said.
    std::cerr << "ktune submit: job " << job.job_id() << " waits: " << job.waiting()
              << " (ktune workers lists who is there)\n";
  }
  return kExitOk;
}

// "gemm M=512,N=512,K=512 on cpu:..." (a recorded space may have no problem values)
std::string TaskName(const v1::TaskProgress& t) {
  const std::string problem = ProblemText(t);
  return absl::StrCat(t.task().kernel().name(), problem.empty() ? "" : " ", problem, " on ",
                      t.task().device_class());
}

std::string BestOf(const v1::TaskProgress& t) {
  if (!t.has_best_time_ms()) {
    // Every measurement failed: "no result yet" read as a task still to come.
    return t.measurements_failed() > 0 && t.measurements_failed() == t.measurements_done()
               ? absl::StrCat("no configuration ran (all ", t.measurements_failed(), " failed)")
               : "no result yet";
  }
  std::string best = absl::StrFormat("best %.4f ms", t.best_time_ms());
  if (t.has_best_gflops()) absl::StrAppendFormat(&best, " (%.1f GFLOP/s)", t.best_gflops());
  return best;
}

// "job 3 running: 120/400 measurements, about 12 s left; gemm M=512 on cpu: best 0.1 ms (..)"
std::string ProgressLine(const v1::JobEvent& event) {
  const v1::Job& job = event.job();
  std::string line =
      absl::StrFormat("job %s %s: %d/%d measurements", job.job_id(), StateName(job.state()),
                      job.measurements_done(), job.measurements_total());
  if (job.estimated_seconds_left() > 0) {
    absl::StrAppendFormat(&line, ", about %.0f s left", job.estimated_seconds_left());
  }
  if (event.has_changed_task()) {
    absl::StrAppend(&line, "; ", TaskName(event.changed_task()), ": ",
                    BestOf(event.changed_task()));
  }
  if (!job.waiting().empty()) absl::StrAppend(&line, "; waiting: ", job.waiting());
  return line;
}

// Follows the WatchJob stream, then prints the job's final state with its tasks' best results.
int RunWatch(const JobArgs& a) {
  const std::string cmd = "watch";
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(a.server, a.tls);
  if (!channel.ok()) return ChannelFailure(cmd, channel.status());
  auto stub = v1::TuningService::NewStub(*channel);
  v1::WatchJobRequest request;
  request.set_job_id(a.job);
  const absl::Time deadline = absl::Now() + absl::Seconds(a.timeout_s);
  v1::JobEvent event;
  std::string last;  // text: a line only when it says something new (the stream repeats itself)
  bool answered = false;  // the server answered this watch once: it is the one to wait for
  std::optional<absl::Time> gone_since;  // when the server went away, while it is away
  // A server never reached is waited for as long as a restart takes, not --reconnect whole: a
  // mistyped address or a TLS mistake is UNAVAILABLE too, and would fail only after 120 s.
  const int64_t first_contact_wait_s = std::min<int64_t>(a.reconnect_s, 15);
  absl::Status s;
  // A server that stops (an upgrade, a restart) ends the stream: the watch follows the job again
  // once it is back, for up to --reconnect seconds (it exited 1, as for a failed job, and a
  // script could not tell the two apart).
  while (true) {
    auto ctx = ClientContextFor(a.token,
                                std::max<int64_t>(1, absl::ToInt64Seconds(deadline - absl::Now())));
    std::unique_ptr<grpc::ClientReader<v1::JobEvent>> reader = stub->WatchJob(ctx.get(), request);
    while (reader->Read(&event)) {
      if (gone_since)
        std::cerr << "ktune " << cmd << ": the server is back; following job " << a.job << "\n";
      answered = true;
      gone_since.reset();
      if (a.json) {
        std::cout << JobEventJson(event).dump(-1, ' ', false, kReplaceInvalidUtf8) << std::endl;
      } else if (std::string line = ProgressLine(event); line != last) {
        std::cout << line << std::endl;
        last = std::move(line);
      }
    }
    s = FromGrpc(reader->Finish());
    // Away: a server that answered and went (a restart), or one not listening yet (a watch
    // started beside a server restarting: it failed at once, whatever --reconnect said).
    const bool away =
        answered ? absl::IsCancelled(s) || absl::IsUnavailable(s) : absl::IsUnavailable(s);
    if (!away || absl::Now() >= deadline) break;
    const int64_t wait_s = answered ? a.reconnect_s : first_contact_wait_s;
    if (!gone_since) {
      gone_since = absl::Now();
      // The channel's own advice ("run the command again once it is back") is this loop's job.
      std::string why(s.message());
      if (const size_t advice = why.find("; run the command again"); advice != std::string::npos) {
        why.resize(advice);
      }
      std::cerr << "ktune " << cmd << ": "
                << (answered ? "the server went away (" : "cannot reach the server yet (") << why
                << "); waiting up to " << wait_s << " s for it" << (answered ? " to come back" : "")
                << " (job " << a.job << " is kept; "
                << "--reconnect 0: give up at once)\n";
    }
    if (absl::Now() - *gone_since >= absl::Seconds(wait_s)) break;
    absl::SleepFor(absl::Seconds(1));
  }
  if (absl::IsDeadlineExceeded(s) || (absl::Now() >= deadline && !s.ok())) {
    // This command's own --timeout, not the server's silence.
    return Fail(cmd, absl::DeadlineExceededError(absl::StrCat(
                         "--timeout ", a.timeout_s, " s ran out before job ", a.job,
                         " ended; the job goes on (ktune watch ", a.job, " follows it again)")));
  }
  if (gone_since && (absl::IsCancelled(s) || absl::IsUnavailable(s))) {  // gone, and not back
    return Fail(
        cmd, absl::UnavailableError(absl::StrCat(
                 s.message(),
                 answered ? absl::StrCat("; it was not back within --reconnect ", a.reconnect_s)
                          : absl::StrCat("; it could not be reached within ", first_contact_wait_s),
                 " s; job ", a.job, " is kept (ktune watch ", a.job, " follows it again)")));
  }
  if (!s.ok()) {
    return absl::IsInvalidArgument(s) ? UsageError(cmd, std::string(s.message())) : Fail(cmd, s);
  }
  absl::StatusOr<v1::Job> ended = GetJobWithAllTasks(*stub, a.token, a.job);
  if (!ended.ok()) return Fail(cmd, ended.status());
  const v1::Job& job = *ended;
  if (a.json) {
    std::cout << JobJson(job).dump(-1, ' ', false, kReplaceInvalidUtf8) << std::endl;
  } else {
    if (!job.message().empty()) std::cout << "  why: " << job.message() << "\n";
    for (const v1::TaskProgress& t : job.tasks()) {
      std::cout << absl::StrFormat("  %s: %s, %d measurements", TaskName(t), StateName(t.state()),
                                   t.measurements_done());
      // Failures said in text too (only --json showed them: a job whose every measurement
      // failed, a worker with a broken toolchain or the wrong space, read as done).
      if (t.has_best_time_ms()) {
        if (t.measurements_failed() > 0) std::cout << " (" << t.measurements_failed() << " failed)";
        std::cout << ", " << BestOf(t);
      } else if (t.measurements_failed() > 0) {
        std::cout << ", " << BestOf(t);  // "no configuration ran (all N failed)"
      }
      std::cout << "\n";
    }
  }
  if (job.state() == v1::JOB_STATE_DONE) return kExitOk;
  // Exit 1 said on stderr too (a script with --json read an exit 1 and an empty stderr).
  std::cerr << "ktune " << cmd << ": job " << job.job_id() << " ended " << StateName(job.state())
            << (job.message().empty() ? "" : ": ") << job.message() << "\n";
  return kExitFailure;
}

// cancel, pause and resume: one call on a job, which answers with the job as it is now.
int RunJobAction(const std::string& cmd, const JobArgs& a) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(a.server, a.tls);
  if (!channel.ok()) return ChannelFailure(cmd, channel.status());
  auto stub = v1::TuningService::NewStub(*channel);
  v1::Job job;
  const auto context = ClientContextFor(a.token);
  grpc::Status call;
  if (cmd == "pause") {
    v1::PauseJobRequest request;
    request.set_job_id(a.job);
    call = stub->PauseJob(context.get(), request, &job);
  } else if (cmd == "resume") {
    v1::ResumeJobRequest request;
    request.set_job_id(a.job);
    call = stub->ResumeJob(context.get(), request, &job);
  } else {
    v1::CancelJobRequest request;
    request.set_job_id(a.job);
    call = stub->CancelJob(context.get(), request, &job);
  }
  absl::Status s = FromGrpc(call);
  if (!s.ok())
    return absl::IsInvalidArgument(s) ? UsageError(cmd, std::string(s.message())) : Fail(cmd, s);
  if (a.json) {
    std::cout << JobJson(job).dump(-1, ' ', false, kReplaceInvalidUtf8) << "\n";
  } else {
    std::cout << "job " << job.job_id() << " " << StateName(job.state()) << "\n";
  }
  return kExitOk;
}

// --- workers ---

int RunWorkers(const JobArgs& a) {
  const std::string cmd = "workers";
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(a.server, a.tls);
  if (!channel.ok()) return ChannelFailure(cmd, channel.status());
  v1::ListWorkersResponse response;
  absl::Status s = FromGrpc(v1::TuningService::NewStub(*channel)->ListWorkers(
      ClientContextFor(a.token).get(), {}, &response));
  if (!s.ok()) return Fail(cmd, s);
  nlohmann::json all = nlohmann::json::array();
  for (const v1::WorkerInfo& w : response.workers()) {
    nlohmann::json j{{"worker_id", w.worker_id()},
                     {"host", w.host()},
                     {"device_class", w.device().device_class()},
                     {"state", w.state()},
                     {"active_leases", w.active_leases()},
                     {"measurements", w.measurements_done()},
                     {"last_heartbeat_unix", w.last_heartbeat().seconds()},
                     // As every other --json time: RFC 3339 text (the seconds stay for scripts).
                     {"last_heartbeat", FormatTimestampUs(w.last_heartbeat().seconds() * 1'000'000 +
                                                          w.last_heartbeat().nanos() / 1000)}};
    if (a.json) {
      all.push_back(std::move(j));
    } else {
      // Which machine, and for how long a lost one has been silent (a list of "lost" rows said
      // neither where to look nor whether it was a minute or an hour).
      const int64_t silent_s =
          std::max<int64_t>(0, absl::ToUnixSeconds(absl::Now()) - w.last_heartbeat().seconds());
      std::cout << absl::StrFormat("%-18s %-16s %-10s %3d leases %8d measurements  %s",
                                   w.worker_id(), w.host().empty() ? "-" : w.host(), w.state(),
                                   w.active_leases(), w.measurements_done(),
                                   w.device().device_class());
      if (w.state() == "lost") std::cout << "  (silent " << silent_s << " s)";
      std::cout << "\n";
    }
  }
  if (a.json) std::cout << all.dump(-1, ' ', false, kReplaceInvalidUtf8) << "\n";
  if (!a.json && response.workers().empty()) std::cout << "no workers registered\n";
  return kExitOk;
}

}  // namespace

void RegisterServiceCommands(CLI::App& app, Action* action) {
  auto serve_args = std::make_shared<ServeArgs>();
  CLI::App* serve = app.add_subcommand("serve", "Run the tuning server");
  serve->add_option("--listen", serve_args->listen, "Address to listen on (port 0: any free one)")
      ->capture_default_str();
  serve->add_option("--db", serve_args->db, "Tuning database file")->capture_default_str();
  serve->add_option(
      "--auth", serve_args->auth,
      "Token file: 'TOKEN ROLES' lines (roles, comma-separated: query, submit, worker, "
      "telemetry, admin)");
  serve->add_flag("--allow-unauthenticated", serve_args->allow_unauthenticated,
                  "Listen on a non-loopback address without --auth (every caller is admin; only "
                  "behind a network policy)");
  serve->add_option("--log-format", serve_args->log_format, "text or json (one object a line)")
      ->capture_default_str();
  serve->add_option("--metrics-listen", serve_args->metrics_listen,
                    "Serve Prometheus metrics at http://IPV4:PORT/metrics (or localhost:PORT)");
  CLI::Option* cert =
      serve->add_option("--tls-cert", serve_args->tls_cert, "TLS certificate chain (PEM)");
  CLI::Option* key = serve->add_option("--tls-key", serve_args->tls_key, "TLS private key (PEM)");
  cert->needs(key);
  key->needs(cert);
  serve
      ->add_option("--tls-client-ca", serve_args->tls_client_ca,
                   "Require client certificates signed by this CA (mutual TLS)")
      ->needs(cert);
  serve->add_option("--replay", serve_args->replay,
                    "Recorded space (T4 / Kernel Tuner) to serve tasks of, for replay workers");
  serve
      ->add_option("--lease-timeout-ms", serve_args->lease_timeout_ms,
                   "A lease not reported or heartbeated within this goes back to the queue")
      ->check(CLI::Range(int64_t{50}, int64_t{3'600'000}))
      ->capture_default_str();
  serve
      ->add_option("--agent-threads", serve_args->agent_threads,
                   "Threads for strategy work (set-up, learning, proposals), which runs without "
                   "the scheduler's lock; 0: on the RPC thread that needs it")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  serve
      ->add_option("--retune", serve_args->retune,
                   "What drift flags from production telemetry do: off (listed only), suggest "
                   "(they name the command), act (a bounded retuning job)")
      ->check(CLI::IsMember({"off", "suggest", "act"}))
      ->capture_default_str();
  serve
      ->add_option("--retune-budget", serve_args->retune_budget,
                   "Measurements of one retuning job (--retune act)")
      ->check(CLI::Range(int64_t{1}, int64_t{100'000}))
      ->capture_default_str();
  serve
      ->add_option("--retune-max-jobs", serve_args->retune_max_jobs,
                   "Retuning jobs queued or running at once; further flags are suggested")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  serve
      ->add_option("--hot-calls", serve_args->hot_calls,
                   "Calls reported for a task never tuned on its device class that flag it as hot")
      ->check(CLI::Range(int64_t{1}, int64_t{1'000'000'000'000}))
      ->capture_default_str();
  serve->callback([=] { *action = [=] { return RunServe(*serve_args); }; });

  auto worker_args = std::make_shared<WorkerArgs>();
  CLI::App* worker = app.add_subcommand("worker", "Run a measurement worker");
  worker->add_option("--server", worker_args->server, "Server address HOST:PORT")
      ->check(ServerAddress())
      ->capture_default_str();
  worker->add_option("--device", worker_args->device, "cpu, cuda[:N] or replay:FILE")->capture_default_str();
  worker->add_option("--token", worker_args->token,
                     "Bearer token with the worker role (or $KTUNE_TOKEN)");
  AddClientTlsOptions(worker, &worker_args->tls);
  worker->add_option("--log-format", worker_args->log_format, "text or json (one object a line)")
      ->capture_default_str();
  worker->add_option("--max-candidates", worker_args->max_candidates, "Candidates per lease")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  worker
      ->add_option("--max-measurements", worker_args->max_measurements,
                   "Exit after reporting this many results (0: never)")
      ->check(ZeroOrMore());
  worker->add_option("--idle-exit", worker_args->idle_exit_s,
                     "Exit after this many seconds with nothing to measure (exit 0), or with no "
                     "server before the first contact (exit 1); 0: never");
  worker->add_option(
      "--metrics-listen", worker_args->metrics_listen,
      "Serve the worker's Prometheus metrics at http://IPV4:PORT/metrics (or localhost:PORT) "
      "(measured, busy time, server outages, lost reports)");
  worker->add_flag("--no-client-kernels", worker_args->no_client_kernels,
                   "Measure built-in kernels only, never a kernel a client registered with the "
                   "server (its code would be built and run here)");
  worker->callback([=] { *action = [=] { return RunWorker(*worker_args); }; });

  auto job_args = std::make_shared<JobArgs>();
  CLI::App* submit = app.add_subcommand("submit", "Submit a fleet job (YAML or JSON spec)");
  submit->add_option("JOB", job_args->spec, "Job spec file, or - for the standard input")
      ->required();
  submit->add_option("--server", job_args->server, "Server address")
      ->check(ServerAddress())
      ->capture_default_str();
  submit->add_option("--token", job_args->token, "Bearer token (or $KTUNE_TOKEN)");
  AddClientTlsOptions(submit, &job_args->tls);
  submit->add_flag("--json", job_args->json, "Print the job as JSON");
  submit->callback([=] { *action = [=] { return RunSubmit(*job_args); }; });

  CLI::App* watch = app.add_subcommand("watch", "Follow a job's progress until it ends");
  watch->add_option("JOB", job_args->job, "Job id")->required();
  watch->add_option("--server", job_args->server, "Server address")
      ->check(ServerAddress())
      ->capture_default_str();
  watch->add_option("--token", job_args->token, "Bearer token (or $KTUNE_TOKEN)");
  AddClientTlsOptions(watch, &job_args->tls);
  watch->add_option("--timeout", job_args->timeout_s, "Give up after this many seconds")
      ->check(CLI::Range(1, 366 * 24 * 3600))
      ->capture_default_str();
  watch
      ->add_option("--reconnect", job_args->reconnect_s,
                   "Seconds to wait for a server that went away (a restart) before giving up, and "
                   "up to 15 of them for one not reached yet; 0: give up at once")
      ->check(CLI::Range(0, 24 * 3600))
      ->capture_default_str();
  watch->add_flag("--json", job_args->json, "One JSON object a line");
  watch->callback([=] { *action = [=] { return RunWatch(*job_args); }; });

  for (const auto& [name, help] : std::vector<std::pair<std::string, std::string>>{
           {"cancel", "Cancel a job: queued candidates are dropped, leased ones still recorded"},
           {"pause", "Pause a job: nothing more is leased until it is resumed"},
           {"resume", "Resume a paused job where it stopped"}}) {
    CLI::App* job_action = app.add_subcommand(name, help);
    job_action->add_option("JOB", job_args->job, "Job id")->required();
    job_action->add_option("--server", job_args->server, "Server address")
        ->check(ServerAddress())
        ->capture_default_str();
    job_action->add_option("--token", job_args->token, "Bearer token (or $KTUNE_TOKEN)");
    AddClientTlsOptions(job_action, &job_args->tls);
    job_action->add_flag("--json", job_args->json, "Print the job as JSON");
    job_action->callback(
        [=, name = name] { *action = [=] { return RunJobAction(name, *job_args); }; });
  }

  CLI::App* workers = app.add_subcommand("workers", "List the workers a server knows");
  workers->add_option("--server", job_args->server, "Server address")
      ->check(ServerAddress())
      ->capture_default_str();
  workers->add_option("--token", job_args->token, "Bearer token (or $KTUNE_TOKEN)");
  AddClientTlsOptions(workers, &job_args->tls);
  workers->add_flag("--json", job_args->json, "Print as a JSON array");
  workers->callback([=] { *action = [=] { return RunWorkers(*job_args); }; });

  RegisterBenchServiceCommand(*app.get_subcommand("bench"), action);
}

}  // namespace ktune::cli
