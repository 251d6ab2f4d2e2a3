// The fleet with real processes: `ktune serve` and `ktune worker` started as the operator would,
// then killed with SIGKILL mid-job. The job must still finish with exactly its budget recorded,
// no configuration measured twice, and nothing acknowledged lost.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "db/interchange/record_files.h"
#include "db/sqlite_tuning_database.h"
#include "grpcpp/create_channel.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "ktune/v1/worker_service.grpc.pb.h"
#include "proto/convert.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

using testing::KtuneProcess;

const std::string kSpace = "convolution_A100_T4.json.gz";

class FleetProcessTest : public ::testing::Test {
 protected:
  FleetProcessTest() : port_(testing::FreePort()), address_(absl::StrCat("127.0.0.1:", port_)) {}

  std::unique_ptr<KtuneProcess> StartServer() {
    auto server = std::make_unique<KtuneProcess>(std::vector<std::string>{
        "serve", "--listen", address_, "--db", dir_.File("fleet.db"), "--replay",
        testing::SpaceFile(kSpace), "--lease-timeout-ms", "800", "--log-format", "json"});
    // Ready when it says so.
    EXPECT_TRUE(server->WaitForOutput("listening on port")) << server->Err();
    return server;
  }

  std::unique_ptr<KtuneProcess> StartWorker() {
    return std::make_unique<KtuneProcess>(std::vector<std::string>{
        "worker", "--server", address_, "--device", "replay:" + testing::SpaceFile(kSpace),
        "--max-candidates", "4", "--idle-exit", "3"});
  }

  std::unique_ptr<v1::TuningService::Stub> Client() {
    return v1::TuningService::NewStub(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }

  std::string Submit(int64_t budget, v1::Strategy strategy) {
    auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpace));
    EXPECT_TRUE(recorded.ok());
    v1::SubmitJobRequest request;
    v1::JobSpec* spec = request.mutable_spec();
    spec->add_kernels()->set_name(recorded->records.front().kernel);
    ToProto(recorded->records.front().problem, spec->add_problems()->mutable_params());
    spec->add_device_classes(recorded->records.front().device.device_class);
    spec->set_budget_measurements(budget);
    spec->set_strategy(strategy);
    v1::Job job;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::Status s = Client()->SubmitJob(&ctx, request, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job.job_id();
  }

  // The job, or nullopt while the server is unreachable.
  std::optional<v1::Job> Get(const std::string& id) {
    v1::GetJobRequest request;
    request.set_job_id(id);
    v1::Job job;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    if (!Client()->GetJob(&ctx, request, &job).ok()) return std::nullopt;
    return job;
  }

  // Polls the job until `reached` holds, for up to `limit` (generous: the machine may be loaded);
  // the job as last read. A test failure, saying `what`, when the limit passes first.
  v1::Job WaitUntil(const std::string& id, const std::function<bool(const v1::Job&)>& reached,
                    absl::Duration limit, const std::string& what) {
    const absl::Time end = absl::Now() + limit;
    std::optional<v1::Job> job;
    while (absl::Now() < end) {
      job = Get(id);
      if (job && reached(*job)) return *job;
      absl::SleepFor(absl::Milliseconds(20));
    }
    ADD_FAILURE() << "job " << id << " did not " << what << " within " << limit;
    return job.value_or(v1::Job{});
  }

  // Waits until the job has at least `done` measurements (or has ended).
  v1::Job WaitFor(const std::string& id, int64_t done, absl::Duration limit = absl::Seconds(60)) {
    return WaitUntil(
        id,
        [done](const v1::Job& job) {
          return job.measurements_done() >= done || job.state() == v1::JOB_STATE_DONE;
        },
        limit, absl::StrCat("reach ", done, " measurements"));
  }

  // The job once it has ended (done, failed or cancelled). A job ends once its last report is
  // committed, which can come just after its count reached the budget, so tests that check the
  // final state wait for the state itself.
  v1::Job WaitForEnd(const std::string& id, absl::Duration limit = absl::Seconds(180)) {
    return WaitUntil(
        id,
        [](const v1::Job& job) {
          return job.state() == v1::JOB_STATE_DONE || job.state() == v1::JOB_STATE_FAILED ||
                 job.state() == v1::JOB_STATE_CANCELLED;
        },
        limit, "end");
  }

  // Records of the job in the database file: count and distinct configurations.
  std::pair<int64_t, int64_t> StoredRecords(const std::string& job_id) {
    auto db = SqliteTuningDatabase::Open(dir_.File("fleet.db"));
    EXPECT_TRUE(db.ok());
    int64_t n = 0;
    std::set<std::string> configs;
    EXPECT_TRUE((*db)
                    ->ForEachRecord([&](const Record& r) {
                      if (r.source == "job:" + job_id) {
                        ++n;
                        configs.insert(r.ConfigHash());
                      }
                      return absl::OkStatus();
                    })
                    .ok());
    return {n, static_cast<int64_t>(configs.size())};
  }

  testing::TempDir dir_;
  int port_;
  std::string address_;
};

// Light commands (cli/agent_front.h): the server runs the PPO agent and so loads LibTorch; a
// worker, started by the same `ktune` command, never does. (A build without LibTorch: neither.)
TEST_F(FleetProcessTest, OnlyTheServerLoadsLibTorchAWorkerDoesNot) {
  auto server = StartServer();
  EXPECT_EQ(server->HasLibraryLoaded("libtorch"), KTUNE_WITH_TORCH != 0);
  auto worker = std::make_unique<KtuneProcess>(std::vector<std::string>{
      "worker", "--server", address_, "--device", "replay:" + testing::SpaceFile(kSpace)});
  // Registered: the server lists it. The worker then idles, asking for leases.
  bool listed = false;
  for (int i = 0; i < 1200 && !listed; ++i) {
    v1::ListWorkersResponse workers;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    listed = Client()->ListWorkers(&ctx, {}, &workers).ok() && workers.workers_size() == 1;
    if (!listed) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(listed) << worker->Err();
  EXPECT_TRUE(worker->HasLibraryLoaded("libgrpc"));  // the check sees the libraries it maps
  EXPECT_FALSE(worker->HasLibraryLoaded("libtorch"));
  worker->Signal(SIGTERM);
  EXPECT_EQ(worker->Wait(), 0) << worker->Err();
}

TEST_F(FleetProcessTest, AWorkerKilledMidJobCostsNothingButTime) {
  auto server = StartServer();
  const std::string job = Submit(120, v1::STRATEGY_UNSPECIFIED);  // the server's: ppo, or model
  auto first = StartWorker();
  WaitFor(job, 24);
  first->Signal(SIGKILL);  // whatever lease it holds is never reported
  first->Wait();
  auto second = StartWorker();
  v1::Job done = WaitForEnd(job);
  EXPECT_EQ(done.state(), v1::JOB_STATE_DONE);
  EXPECT_EQ(done.measurements_done(), 120);
  EXPECT_EQ(second->Wait(), 0) << second->Err();  // leaves by itself once idle
  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(), 0);
  auto [records, distinct] = StoredRecords(job);
  EXPECT_EQ(records, 120);
  EXPECT_EQ(distinct, 120);
  // The server's log is one JSON object a line; the killed worker's lease expiry is there.
  std::set<std::string> events;
  double job_seconds = -1;
  std::istringstream lines(server->Err());
  for (std::string line; std::getline(lines, line);) {
    auto json = nlohmann::json::parse(line, nullptr, false);
    if (json.is_object() && json.contains("event")) events.insert(json["event"]);
    if (json.is_object() && json.value("event", "") == "job_finished") {
      job_seconds = std::stod(json.value("seconds", "-1"));  // how long the job took
    }
  }
  EXPECT_GT(job_seconds, 0);
  EXPECT_TRUE(events.count("worker_registered"));
  EXPECT_TRUE(events.count("job_submitted"));
  EXPECT_TRUE(events.count("job_finished"));
  EXPECT_TRUE(events.count("server_stopped"));
}

TEST_F(FleetProcessTest, AWorkerStoppedWithSigtermLeavesCleanlyAndItsWorkIsFinishedByAnother) {
  auto server = StartServer();
  const std::string job = Submit(400, v1::STRATEGY_RANDOM);
  auto first = StartWorker();
  WaitFor(job, 40);
  first->Signal(SIGTERM);
  EXPECT_EQ(first->Wait(), 0) << first->Err();  // it reports or hands back its lease, then exits
  EXPECT_THAT(first->Err(), ::testing::HasSubstr("worker_stopped"));
  // It said goodbye: the server dropped it (and returned any candidates it still held).
  const std::string log_before = server->Err();
  EXPECT_THAT(log_before, ::testing::HasSubstr("\"event\":\"worker_left\""));
  auto second = StartWorker();
  v1::Job done = WaitForEnd(job);
  EXPECT_EQ(done.state(), v1::JOB_STATE_DONE);
  EXPECT_EQ(done.measurements_done(), 400);
  EXPECT_EQ(second->Wait(), 0) << second->Err();
  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(), 0);
  auto [records, distinct] = StoredRecords(job);
  EXPECT_EQ(records, 400);
  EXPECT_EQ(distinct, 400);
}

TEST_F(FleetProcessTest, AServerKilledMidJobResumesItAndLosesNothingAcknowledged) {
  auto server = StartServer();
  const std::string job = Submit(160, v1::STRATEGY_UNSPECIFIED);  // the server's: ppo, or model
  auto worker = StartWorker();
  const v1::Job before = WaitFor(job, 40);
  server->Signal(SIGKILL);
  server->Wait();
  const int64_t acknowledged = before.measurements_done();
  // Every result the server acknowledged is in the file, even with no server running.
  EXPECT_GE(StoredRecords(job).first, acknowledged);

  server = StartServer();  // the worker reconnects and registers again by itself
  v1::Job done = WaitForEnd(job);
  EXPECT_EQ(done.state(), v1::JOB_STATE_DONE);
  EXPECT_EQ(done.measurements_done(), 160);
  EXPECT_EQ(worker->Wait(), 0) << worker->Err();
  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(), 0);
  auto [records, distinct] = StoredRecords(job);
  EXPECT_EQ(records, 160);
  EXPECT_EQ(distinct, 160);
}

// A server that stood still longer than a lease lasts (SIGSTOP here; a paused VM, a machine
// asleep) gives its leases that time back: its first tick after the stall took back every lease
// of the fleet, before the heartbeats the workers had sent meanwhile were read, and the work was
// measured again. The test is the worker: it holds a lease through the stall, then heartbeats it
// and reports it.
TEST_F(FleetProcessTest, LeasesOutliveAServerThatStoodStill) {
  auto server = StartServer();  // leases last 800 ms; the server checks them every 80 ms
  const std::string job = Submit(8, v1::STRATEGY_RANDOM);
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpace));
  ASSERT_TRUE(recorded.ok());
  auto worker =
      v1::WorkerService::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  auto call = [](auto method) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return method(&ctx);
  };
  v1::RegisterRequest join;
  *join.mutable_device() = ToProto(recorded->records.front().device);
  join.mutable_device()->set_kind(v1::DEVICE_KIND_REPLAY);
  v1::RegisterResponse joined;
  ASSERT_TRUE(
      call([&](grpc::ClientContext* c) { return worker->Register(c, join, &joined); }).ok());
  v1::LeaseBatchRequest ask;
  ask.set_worker_id(joined.worker_id());
  ask.set_max_candidates(4);
  v1::LeaseBatchResponse lease;
  for (int i = 0; i < 1200 && lease.lease_id().empty(); ++i) {  // the agent prepares the batch
    ASSERT_TRUE(
        call([&](grpc::ClientContext* c) { return worker->LeaseBatch(c, ask, &lease); }).ok());
    if (lease.lease_id().empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_FALSE(lease.lease_id().empty());

  server->Signal(SIGSTOP);
  std::this_thread::sleep_for(std::chrono::seconds(3));  // almost four lease timeouts
  server->Signal(SIGCONT);
  // Its first tick after the stall, which took every lease back: waited for, not assumed.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (server->Err().find("\"event\":\"server_stalled\"") == std::string::npos &&
         server->Err().find("\"event\":\"lease_expired\"") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  v1::HeartbeatRequest beat;
  beat.set_worker_id(joined.worker_id());
  beat.add_lease_ids(lease.lease_id());
  v1::HeartbeatResponse beaten;
  ASSERT_TRUE(
      call([&](grpc::ClientContext* c) { return worker->Heartbeat(c, beat, &beaten); }).ok());
  EXPECT_THAT(beaten.revoked_lease_ids(), ::testing::IsEmpty());
  EXPECT_FALSE(beaten.reregister());
  v1::ReportResultsRequest report;
  report.set_worker_id(joined.worker_id());
  report.set_lease_id(lease.lease_id());
  for (const v1::Candidate& c : lease.candidates()) {
    v1::CandidateResult* r = report.add_results();
    r->set_candidate_id(c.candidate_id());
    r->set_status(v1::MEASUREMENT_STATUS_OK);
    r->add_repeat_times_ms(1.0);
  }
  v1::ReportResultsResponse stored;
  grpc::Status reported =
      call([&](grpc::ClientContext* c) { return worker->ReportResults(c, report, &stored); });
  EXPECT_TRUE(reported.ok()) << reported.error_message();
  EXPECT_THAT(server->Err(), ::testing::HasSubstr("\"event\":\"server_stalled\""));
  EXPECT_THAT(server->Err(), ::testing::Not(::testing::HasSubstr("\"event\":\"lease_expired\"")));
  server->Signal(SIGTERM);
  EXPECT_EQ(server->Wait(), 0);
}

TEST_F(FleetProcessTest, TuneThroughAServerWatchesItsJobAndPrintsTheBest) {
  auto server = StartServer();
  auto worker = StartWorker();
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpace));
  ASSERT_TRUE(recorded.ok());
  const Record& any = recorded->records.front();
  auto tune = testing::RunKtune({"tune", "--server", address_, "--kernel", any.kernel, "--problem",
                                 FormatParamMapAssignments(any.problem), "--device",
                                 any.device.device_class, "--budget", "24", "--strategy", "random",
                                 "--json"});
  ASSERT_EQ(tune.exit_code, 0) << tune.err;
  auto result = nlohmann::json::parse(tune.out);
  EXPECT_EQ(result["measurements"], 24);
  EXPECT_GT(result["best_time_ms"].get<double>(), 0);
  auto [records, distinct] = StoredRecords(result["job_id"].get<std::string>());
  EXPECT_EQ(records, 24);
  EXPECT_EQ(distinct, 24);
  auto unknown = testing::RunKtune({"tune", "--server", address_, "--kernel", "fft", "--problem",
                                    "N=8", "--device", "x", "--budget", "4"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, ::testing::HasSubstr("unknown kernel 'fft'"));

  // A compiler asks the server for what the job found.
  auto best = testing::RunKtune({"best", "--server", address_, "--kernel", any.kernel, "--problem",
                                 FormatParamMapAssignments(any.problem), "--device",
                                 any.device.device_class, "--json"});
  ASSERT_EQ(best.exit_code, 0) << best.err;
  auto answer = nlohmann::json::parse(best.out);
  EXPECT_EQ(answer["level"], "device_class");
  ASSERT_EQ(answer["best"].size(), 1u);
  EXPECT_DOUBLE_EQ(answer["best"][0]["time_ms"].get<double>(),
                   result["best_time_ms"].get<double>());
  auto nothing =
      testing::RunKtune({"best", "--server", address_, "--kernel", any.kernel, "--problem",
                         FormatParamMapAssignments(any.problem), "--device", "no_such_gpu"});
  EXPECT_EQ(nothing.exit_code, 0) << nothing.err;
  EXPECT_THAT(nothing.out, ::testing::HasSubstr("nothing known"));
  auto no_server =
      testing::RunKtune({"best", "--kernel", any.kernel, "--device", "x", "--tune-if-missing"});
  EXPECT_EQ(no_server.exit_code, 2);
  EXPECT_THAT(no_server.err, ::testing::HasSubstr("--tune-if-missing needs --server"));
}

TEST_F(FleetProcessTest, AnOperatorSubmitsWatchesListsAndCancelsFromTheCommandLine) {
  auto server = StartServer();
  auto worker = StartWorker();
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpace));
  ASSERT_TRUE(recorded.ok());
  const Record& any = recorded->records.front();
  const std::string spec = dir_.File("job.yaml");
  std::ofstream(spec) << "name: conv\nkernels: [" << any.kernel << "]\nproblems: ["
                      << CanonicalJson(any.problem) << "]\ndevice_classes: ["
                      << any.device.device_class << "]\nbudget: 40\nstrategy: random\n";
  auto submit = testing::RunKtune({"submit", spec, "--server", address_, "--json"});
  ASSERT_EQ(submit.exit_code, 0) << submit.err;
  const std::string id = nlohmann::json::parse(submit.out)["job_id"];

  // watch follows the job to its end: progress lines name the task with its best so far, and
  // the summary gives each task's best.
  auto watch = testing::RunKtune({"watch", id, "--server", address_});
  ASSERT_EQ(watch.exit_code, 0) << watch.err;
  EXPECT_THAT(watch.out, ::testing::HasSubstr("done: 40/40 measurements"));
  const std::string problem = FormatParamMapAssignments(any.problem);  // empty for this space
  EXPECT_THAT(watch.out, ::testing::HasSubstr(
                             absl::StrCat("; ", any.kernel, problem.empty() ? "" : " ", problem,
                                          " on ", any.device.device_class, ": best ")));
  // No line said twice in a row (the stream repeats its state about every second).
  std::vector<std::string> lines = absl::StrSplit(watch.out, '\n');
  for (size_t i = 1; i < lines.size(); ++i) {
    if (!lines[i].empty()) EXPECT_NE(lines[i], lines[i - 1]) << watch.out;
  }
  auto [records, distinct] = StoredRecords(id);
  EXPECT_EQ(records, 40);

  // jobs lists the server's jobs, as JSON too.
  auto jobs = testing::RunKtune({"jobs", "--server", address_, "--json"});
  ASSERT_EQ(jobs.exit_code, 0) << jobs.err;
  auto listed = nlohmann::json::parse(jobs.out);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["job_id"], id);  // a string, as watch, submit and tune --server give it
  EXPECT_EQ(listed[0]["state"], "done");
  EXPECT_EQ(listed[0]["measurements_done"], 40);

  // Cancelling a job that ended says so, and fails; an unknown job too.
  auto cancel = testing::RunKtune({"cancel", id, "--server", address_});
  EXPECT_EQ(cancel.exit_code, 1);
  EXPECT_THAT(cancel.err, ::testing::HasSubstr("has already ended (done)"));
  auto unknown = testing::RunKtune({"watch", "999", "--server", address_});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, ::testing::HasSubstr("no job 999"));
}

}  // namespace
}  // namespace ktune
