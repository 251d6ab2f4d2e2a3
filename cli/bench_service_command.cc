// ktune bench service: the server's own costs, on loopback, with an in-process server.
//
// 1. Best-known queries: QueryBest (served from the server's cache) against the standard gRPC
//    health check (an empty RPC) on the same server, in the same run, with 1, 16 and 64 clients
//    calling back to back: calls per second and p50/p99 latency. Both go through the same client
//    path and alternate in slices of the run.
// 2. Dispatch: replay workers (no real measuring) run a job over four recorded spaces through the
//    server; every result is committed to SQLite before it is acknowledged. Measurements per
//    second from submission to the job's end.
#include <algorithm>
#include <future>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cli/command.h"
#include "db/interchange/record_files.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "measurer/replay_measurer.h"
#include "measurer/worker_loop.h"
#include "proto/convert.h"
#include "server/tuning_server.h"

namespace ktune::cli {
namespace {

struct BenchServiceArgs {
  std::string clients = "1,16,64";
  std::string datasets = KTUNE_DEFAULT_DATASETS_DIR;
  double seconds = 3;
  int workers = 8;
  int64_t budget = 4000;
  int connections = 1;
  bool json = false;
};

struct LoadResult {
  double calls_per_second = 0, p50_ms = 0, p99_ms = 0;
  int64_t errors = 0;
};

std::unique_ptr<grpc::ClientContext> Context() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return ctx;
}

// One unary RPC as the load generator sends it: the request serialised once, and a check of each
// response (which parses it where a client would).
struct RpcCall {
  std::string method;
  grpc::ByteBuffer request;
  std::function<bool(grpc::ByteBuffer*)> check;
};

// `clients` concurrent callers for `seconds`, each issuing its next call as soon as the last one
// completes (a closed loop, as gRPC's own benchmarks drive it: callbacks, not a thread per
// caller, so the load generator's context switches stay off the measured latencies). Appends each
// call's latency; a failed call counts as an error and ends its caller.
void RunLoad(const std::vector<std::unique_ptr<grpc::GenericStub>>& stubs, int clients,
             double seconds, const RpcCall& call, std::vector<double>* latencies_ms,
             int64_t* errors) {
  struct Caller {
    std::unique_ptr<grpc::ClientContext> ctx, previous;  // previous: freed after its callback
    grpc::ByteBuffer response;
    absl::Time start;
    std::vector<double> latencies;
    int64_t failed = 0;
  };
  std::vector<Caller> callers(clients);
  const absl::Time end = absl::Now() + absl::Seconds(seconds);
  absl::Mutex mu;
  int running = clients;
  std::function<void(int)> issue = [&](int c) {
    Caller& caller = callers[c];
    caller.previous = std::move(caller.ctx);
    caller.ctx = Context();
    caller.response.Clear();
    caller.start = absl::Now();
    stubs[c % stubs.size()]->UnaryCall(
        caller.ctx.get(), call.method, grpc::StubOptions(), &call.request, &caller.response,
        [&, c](grpc::Status status) {
          Caller& done = callers[c];
          const bool ok = status.ok() && call.check(&done.response);
          const absl::Time now = absl::Now();
          done.latencies.push_back(absl::ToDoubleMilliseconds(now - done.start));
          if (!ok) ++done.failed;
          if (ok && now < end) {
            issue(c);
          } else {
            absl::MutexLock lock(&mu);
            --running;
          }
        });
  };
  for (int c = 0; c < clients; ++c) issue(c);
  mu.LockWhen(absl::Condition(
      +[](int* n) { return *n == 0; }, &running));
  mu.Unlock();
  for (Caller& caller : callers) {
    latencies_ms->insert(latencies_ms->end(), caller.latencies.begin(), caller.latencies.end());
    *errors += caller.failed;
  }
}

LoadResult Summarise(std::vector<double> latencies_ms, int64_t errors, double seconds) {
  std::sort(latencies_ms.begin(), latencies_ms.end());
  LoadResult r;
  r.errors = errors;
  r.calls_per_second = latencies_ms.size() / seconds;
  if (!latencies_ms.empty()) {
    r.p50_ms = latencies_ms[latencies_ms.size() / 2];
    r.p99_ms = latencies_ms[std::min(latencies_ms.size() - 1, latencies_ms.size() * 99 / 100)];
  }
  return r;
}

// Both calls get `seconds` in all, in kRounds alternating slices (A B A B ...), so that a drift in
// the machine's speed during the run (another process, frequency) weighs on both alike.
constexpr int kRounds = 5;
std::pair<LoadResult, LoadResult> CompareLoads(
    const std::vector<std::unique_ptr<grpc::GenericStub>>& stubs, int clients, double seconds,
    const RpcCall& a, const RpcCall& b) {
  std::vector<double> latencies_a, latencies_b;
  int64_t errors_a = 0, errors_b = 0;
  for (int round = 0; round < kRounds; ++round) {
    RunLoad(stubs, clients, seconds / kRounds, a, &latencies_a, &errors_a);
    RunLoad(stubs, clients, seconds / kRounds, b, &latencies_b, &errors_b);
  }
  return {Summarise(std::move(latencies_a), errors_a, seconds),
          Summarise(std::move(latencies_b), errors_b, seconds)};
}

int RunBenchService(const BenchServiceArgs& a) {
  const std::string cmd = "bench service";
  // The command line first, then the files, then the scratch folder (nothing left behind when
  // either is refused).
  if (!(a.seconds >= 0.1 && a.seconds <= 3600)) {
    return UsageError(cmd, "--seconds: from 0.1 to 3600 per load level");
  }
  std::vector<int> client_counts;
  for (absl::string_view c : absl::StrSplit(a.clients, ',')) {
    int n;
    if (!absl::SimpleAtoi(c, &n) || n < 1 || n > 1024) {
      return UsageError(cmd, absl::StrCat("bad --clients entry '", c, "'"));
    }
    client_counts.push_back(n);
  }
  const std::vector<std::string> spaces = {a.datasets + "/spaces/convolution_A100_T4.json.gz",
                                           a.datasets + "/spaces/convolution_A4000_T4.json.gz",
                                           a.datasets + "/spaces/convolution_MI250X_T4.json.gz",
                                           a.datasets + "/spaces/convolution_W6600_T4.json.gz"};
  std::vector<RecordedSpace> recorded;
  for (const std::string& f : spaces) {
    absl::StatusOr<RecordedSpace> r = LoadRecordedSpace(f);
    if (!r.ok()) return Fail(cmd, r.status());
    recorded.push_back(*std::move(r));
  }
  char dir_template[] = "/tmp/ktune-bench-service-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return Fail(cmd, absl::UnavailableError("mkdtemp"));
  const std::string dir = dir_template;
  absl::Cleanup remove_dir = [&dir] {  // on every way out
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  };

  // --- 1. Queries ---
  {
    const std::string db_path = dir + "/queries.db";
    {
      auto db = SqliteTuningDatabase::Open(db_path);
      if (!db.ok()) return Fail(cmd, db.status());
      absl::StatusOr<ImportSummary> imported = ImportRecordFile(**db, spaces[0], {});
      if (!imported.ok()) return Fail(cmd, imported.status());
    }
    TuningServerOptions options;
    options.listen = "127.0.0.1:0";
    options.db_path = db_path;
    auto server = TuningServer::Start(options);
    if (!server.ok()) return Fail(cmd, server.status());
    const std::string address = absl::StrCat("127.0.0.1:", (*server)->port());
    // Callers share `connections` channels, each its own TCP connection (a channel argument
    // unique to each keeps gRPC from sharing one connection between them): caller c uses c mod
    // connections.
    std::vector<std::unique_ptr<grpc::GenericStub>> generic;
    for (int c = 0; c < a.connections; ++c) {
      grpc::ChannelArguments args;
      args.SetInt("ktune.bench_connection", c);
      generic.push_back(std::make_unique<grpc::GenericStub>(
          grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args)));
    }
    const Record& any = recorded[0].records.front();
    v1::QueryBestRequest query;
    query.mutable_kernel()->set_name(any.kernel);
    ToProto(any.problem, query.mutable_problem()->mutable_params());
    query.mutable_device()->set_device_class(any.device.device_class);
    // Both calls go through the same client path (the generic stub's callback API, the request
    // serialised once), so that the ratio measures the server's work, not two client libraries.
    grpc::Slice query_slice(query.SerializeAsString()), empty_slice("");
    const RpcCall query_best{
        "/ktune.v1.TuningService/QueryBest", grpc::ByteBuffer(&query_slice, 1),
        [](grpc::ByteBuffer* bytes) {
          // the answer is parsed, as a client must
          // on an arena, as a latency-minded client would parse
          google::protobuf::Arena arena;
          auto* response = google::protobuf::Arena::CreateMessage<v1::QueryBestResponse>(&arena);
          return grpc::GenericDeserialize<grpc::ProtoBufferReader, v1::QueryBestResponse>(bytes,
                                                                                          response)
                     .ok() &&
                 response->best_size() == 1;
        }};
    const RpcCall health_check{"/grpc.health.v1.Health/Check",  // an empty request
                               grpc::ByteBuffer(&empty_slice, 1),
                               [](grpc::ByteBuffer*) { return true; }};
    for (const RpcCall* call : {&query_best, &health_check}) {
      std::vector<double> latencies;
      int64_t errors = 0;
      RunLoad(generic, 1, 0, *call, &latencies, &errors);  // one call
      if (errors > 0) {
        return Fail(cmd, absl::InternalError(absl::StrCat(call->method, " failed (or, for ",
                                                          "QueryBest, found nothing)")));
      }
    }
    for (int clients : client_counts) {
      const auto [empty, best] =
          CompareLoads(generic, clients, a.seconds, health_check, query_best);
      nlohmann::json out{{"benchmark", "query"},
                         {"clients", clients},
                         {"connections", std::min(clients, a.connections)},
                         {"seconds", a.seconds},
                         {"empty_rpc_calls_per_second", empty.calls_per_second},
                         {"empty_rpc_p50_ms", empty.p50_ms},
                         {"empty_rpc_p99_ms", empty.p99_ms},
                         {"query_best_calls_per_second", best.calls_per_second},
                         {"query_best_p50_ms", best.p50_ms},
                         {"query_best_p99_ms", best.p99_ms},
                         {"query_best_over_empty", best.calls_per_second / empty.calls_per_second},
                         {"errors", empty.errors + best.errors}};
      if (a.json) {
        std::cout << out.dump(-1, ' ', false, kReplaceInvalidUtf8) << std::endl;
      } else {
        std::cout << absl::StrFormat(
                         "%3d clients: QueryBest %8.0f/s (p50 %.3f ms, p99 %.3f ms), empty RPC "
                         "%8.0f/s (p50 %.3f ms, p99 %.3f ms): %.0f%%",
                         clients, best.calls_per_second, best.p50_ms, best.p99_ms,
                         empty.calls_per_second, empty.p50_ms, empty.p99_ms,
                         100 * best.calls_per_second / empty.calls_per_second)
                  << std::endl;
      }
    }
  }

  // --- 2. Dispatch ---
  {
    TuningServerOptions options;
    options.listen = "127.0.0.1:0";
    options.db_path = dir + "/dispatch.db";
    options.replay_files = spaces;
    options.scheduler.batch_size = 64;
    auto server = TuningServer::Start(options);
    if (!server.ok()) return Fail(cmd, server.status());
    const std::string address = absl::StrCat("127.0.0.1:", (*server)->port());
    auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
    auto stub = v1::TuningService::NewStub(channel);
    v1::SubmitJobRequest submit;
    v1::JobSpec* spec = submit.mutable_spec();
    spec->add_kernels()->set_name(recorded[0].records.front().kernel);
    ToProto(recorded[0].records.front().problem, spec->add_problems()->mutable_params());
    for (const RecordedSpace& r : recorded) {
      spec->add_device_classes(r.records.front().device.device_class);
    }
    spec->set_budget_measurements(a.budget);
    spec->set_strategy(v1::STRATEGY_RANDOM);
    v1::Job job;
    const absl::Time start = absl::Now();
    grpc::Status s = stub->SubmitJob(Context().get(), submit, &job);
    if (!s.ok()) return Fail(cmd, absl::InternalError(s.error_message()));
    std::vector<std::thread> threads;
    std::vector<int64_t> reported(a.workers);
    for (int w = 0; w < a.workers; ++w) {
      threads.emplace_back([&, w] {
        ReplayMeasurer measurer(recorded[w % recorded.size()].records);
        auto worker_stub = v1::WorkerService::NewStub(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
        WorkerLoopOptions o;
        o.max_candidates = 64;
        o.idle_exit = absl::Milliseconds(300);
        WorkerLoop loop(worker_stub.get(), &measurer, o);
        loop.Run().IgnoreError();
        reported[w] = loop.reported();
      });
    }
    for (std::thread& t : threads) t.join();
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start) - 0.3;  // less the idle exit
    v1::GetJobRequest get;
    get.set_job_id(job.job_id());
    s = stub->GetJob(Context().get(), get, &job);
    int64_t total = 0;
    for (int64_t r : reported) total += r;
    nlohmann::json out{{"benchmark", "dispatch"},
                       {"workers", a.workers},
                       {"tasks", job.task_count()},
                       {"measurements", job.measurements_done()},
                       {"reported", total},
                       {"job_state", StateName(job.state())},
                       {"seconds", seconds},
                       {"measurements_per_second", job.measurements_done() / seconds}};
    if (a.json) {
      std::cout << out.dump(-1, ' ', false, kReplaceInvalidUtf8) << std::endl;
    } else {
      std::cout << absl::StrFormat(
                       "dispatch: %d workers, %d measurements committed in %.2f s: "
                       "%.0f measurements/s (%s)",
                       a.workers, job.measurements_done(), seconds,
                       job.measurements_done() / seconds, StateName(job.state()))
                << std::endl;
    }
  }
  return kExitOk;
}

}  // namespace

void RegisterBenchServiceCommand(CLI::App& bench, Action* action) {
  auto a = std::make_shared<BenchServiceArgs>();
  CLI::App* sub = bench.add_subcommand("service", "Query and dispatch throughput of the server");
  sub->add_option("--clients", a->clients, "Concurrent query clients, comma-separated")
      ->capture_default_str();
  sub->add_option("--connections", a->connections,
                  "Queries: TCP connections the clients share (client c uses connection c mod N)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  sub->add_option("--seconds", a->seconds, "Seconds per load level (0.1 to 3600)")
      ->capture_default_str();
  // One replay worker per recorded space at least: each serves one device class, and with fewer
  // than four the other tasks never ran (the job ended RUNNING, part measured).
  sub->add_option("--workers", a->workers,
                  "Replay workers for the dispatch benchmark (4 or more: one per space)")
      ->check(CLI::Range(4, 256))
      ->capture_default_str();
  sub->add_option("--budget", a->budget, "Dispatch: measurements per task (4 tasks)")
      ->check(CLI::Range(int64_t{1}, int64_t{4362}))
      ->capture_default_str();
  sub->add_option("--datasets", a->datasets, "Folder with spaces/ (the recorded spaces)")
      ->capture_default_str();
  sub->add_flag("--json", a->json, "One JSON line per measurement");
  sub->callback([=] { *action = [=] { return RunBenchService(*a); }; });
}

}  // namespace ktune::cli
