// The tuning server over real gRPC on loopback: jobs run to completion on replay workers with
// exactly their budget recorded; bad requests get the right codes; a lease that expires is
// handed out again and its late report refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <optional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "db/interchange/record_files.h"
#include "db/sqlite_tuning_database.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "kernels/kernel_registry.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "measurer/cpu_measurer.h"
#include "measurer/replay_measurer.h"
#include "measurer/worker_loop.h"
#include "proto/convert.h"
#include "server/auth.h"
#include "server/job_spec.h"
#include "server/services.h"
#include "server/tuning_server.h"
#include "tests/server/local_stub.h"
#include "tests/server/worker_doubles.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const char* kSpaces[] = {"convolution_A100_T4.json.gz", "convolution_A4000_T4.json.gz",
                         "convolution_MI250X_T4.json.gz"};

std::unique_ptr<grpc::ClientContext> Context() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return ctx;
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TuningServerOptions options;
    options.listen = "127.0.0.1:0";
    options.db_path = dir_.File("server.db");
    for (const char* s : kSpaces) options.replay_files.push_back(testing::SpaceFile(s));
    options.scheduler.lease_timeout = absl::Milliseconds(500);
    options.scheduler.heartbeat_interval = absl::Milliseconds(150);
    // Strategy work inline (still without the scheduler's lock): a lease by hand gets its batch
    // at once. The agent threads are TaskSearchTest's and FleetProcessTest's.
    options.scheduler.agent_threads = 0;
    options.scheduler.now = [this] {
      absl::MutexLock lock(&clock_mu_);
      return frozen_at_ ? *frozen_at_ : absl::Now();
    };
    auto server = TuningServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    address_ = absl::StrCat("127.0.0.1:", server_->port());
    channel_ = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    tuning_ = v1::TuningService::NewStub(channel_);
    workers_ = v1::WorkerService::NewStub(channel_);
  }

  // From now on the scheduler's time moves only by Advance: however long a call takes on a busy
  // machine, it costs the job no time.
  void FreezeClock() {
    absl::MutexLock lock(&clock_mu_);
    frozen_at_ = absl::Now();
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&clock_mu_);
    *frozen_at_ += d;
  }

  // A spec over the three convolution devices: three tasks.
  v1::JobSpec ThreeTaskSpec(int64_t budget) {
    v1::JobSpec spec;
    spec.set_name("conv");
    auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpaces[0]));
    EXPECT_TRUE(recorded.ok());
    spec.add_kernels()->set_name(recorded->records.front().kernel);
    ToProto(recorded->records.front().problem, spec.add_problems()->mutable_params());
    for (const char* s : kSpaces) {
      auto r = LoadRecordedSpace(testing::SpaceFile(s));
      spec.add_device_classes(r->records.front().device.device_class);
    }
    spec.set_budget_measurements(budget);
    spec.set_strategy(v1::STRATEGY_RANDOM);
    spec.set_seed(3);
    return spec;
  }

  // A worker of the first space's device (or of kSpaces[space]'s), as a replay worker of it
  // registers, by hand.
  std::string RegisterWorker(int space = 0) {
    auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpaces[space]));
    v1::RegisterRequest reg;
    *reg.mutable_device() = ToProto(ReplayMeasurer(recorded->records).device());
    v1::RegisterResponse worker;
    EXPECT_TRUE(workers_->Register(Context().get(), reg, &worker).ok());
    return worker.worker_id();
  }

  // A lease of `n` candidates for `worker`.
  v1::LeaseBatchResponse Lease(const std::string& worker, int n) {
    v1::LeaseBatchRequest request;
    request.set_worker_id(worker);
    request.set_max_candidates(n);
    v1::LeaseBatchResponse lease;
    EXPECT_TRUE(workers_->LeaseBatch(Context().get(), request, &lease).ok());
    EXPECT_EQ(lease.candidates_size(), n);
    return lease;
  }

  // A report of every candidate of `lease` as ok in `ms`.
  static v1::ReportResultsRequest OkReport(const std::string& worker,
                                           const v1::LeaseBatchResponse& lease, double ms) {
    v1::ReportResultsRequest report;
    report.set_worker_id(worker);
    report.set_lease_id(lease.lease_id());
    for (const v1::Candidate& c : lease.candidates()) {
      v1::CandidateResult* r = report.add_results();
      r->set_candidate_id(c.candidate_id());
      r->set_status(v1::MEASUREMENT_STATUS_OK);
      r->add_repeat_times_ms(ms);
    }
    return report;
  }

  // The job `submit` asks for (the clock frozen), after a worker of the first space's device
  // measured 4 of its candidates in a quarter second; as GetJob answers then.
  v1::Job SubmitAndMeasureFourInAQuarterSecond(const v1::SubmitJobRequest& submit) {
    v1::Job job;
    EXPECT_TRUE(tuning_->SubmitJob(Context().get(), submit, &job).ok());
    const std::string worker = RegisterWorker();
    const v1::LeaseBatchResponse lease = Lease(worker, 4);
    Advance(absl::Milliseconds(250));
    v1::ReportResultsResponse stored;
    EXPECT_TRUE(
        workers_->ReportResults(Context().get(), OkReport(worker, lease, 2.0), &stored).ok());
    v1::GetJobRequest get;
    get.set_job_id(job.job_id());
    EXPECT_TRUE(tuning_->GetJob(Context().get(), get, &job).ok());
    return job;
  }

  // A three-task job (ThreeTaskSpec(4)) of which a worker has measured 4 candidates; its id.
  std::string SubmitThreeTasksAndMeasureFour() {
    v1::SubmitJobRequest submit;
    *submit.mutable_spec() = ThreeTaskSpec(4);
    v1::Job job;
    EXPECT_TRUE(tuning_->SubmitJob(Context().get(), submit, &job).ok());
    const std::string worker = RegisterWorker();
    const v1::LeaseBatchResponse lease = Lease(worker, 4);
    EXPECT_EQ(lease.candidates_size(), 4);
    v1::ReportResultsResponse stored;
    EXPECT_TRUE(
        workers_->ReportResults(Context().get(), OkReport(worker, lease, 2.0), &stored).ok());
    return job.job_id();
  }

  testing::TempDir dir_;
  // The scheduler's clock (SchedulerOptions::now): real time, unless a test freezes it and moves
  // it by hand (declared before server_, so that it outlives the server's threads).
  absl::Mutex clock_mu_;
  std::optional<absl::Time> frozen_at_ ABSL_GUARDED_BY(clock_mu_);
  std::unique_ptr<TuningServer> server_;
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::TuningService::Stub> tuning_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
};

// Two servers that resume jobs on one database each ran the other's jobs (measured twice, past
// the budget): the second refuses to start, naming the first, until the first has stopped.
TEST(TuningServerTest, ASecondServerOnTheSameDatabaseRefusesToStart) {
  testing::TempDir dir;
  TuningServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir.File("one.db");
  options.db_lock_wait = absl::Milliseconds(200);
  options.scheduler.agent_threads = 0;
  auto first = TuningServer::Start(options);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = TuningServer::Start(options);
  ASSERT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
  EXPECT_THAT(second.status().message(), HasSubstr("served by another ktune server"));
  EXPECT_THAT(second.status().message(), HasSubstr(absl::StrCat("process ", ::getpid())));
  // The embedded default runs only the job it submits: it opens the database beside a server.
  TuningServerOptions embedded = options;
  embedded.listen = "";
  embedded.resume_jobs = false;
  auto in_process = TuningServer::Start(embedded);
  EXPECT_TRUE(in_process.ok()) << in_process.status();
  // Nor through a symbolic link to the file (it took a lock of its own and ran the same job).
  ASSERT_EQ(::symlink(dir.File("one.db").c_str(), dir.File("link.db").c_str()), 0);
  TuningServerOptions linked = options;
  linked.db_path = dir.File("link.db");
  auto through_link = TuningServer::Start(linked);
  ASSERT_TRUE(absl::IsFailedPrecondition(through_link.status())) << through_link.status();
  EXPECT_THAT(through_link.status().message(), HasSubstr("served by another ktune server"));
  // Nor through a hard link, which has a lock file of its own name, and refused even with no
  // server running: SQLite keeps a write-ahead log per name (it started, beside the first).
  ASSERT_EQ(::link(dir.File("one.db").c_str(), dir.File("hard.db").c_str()), 0);
  TuningServerOptions hard = options;
  hard.db_path = dir.File("hard.db");
  auto through_hard_link = TuningServer::Start(hard);
  ASSERT_TRUE(absl::IsFailedPrecondition(through_hard_link.status()))
      << through_hard_link.status();
  EXPECT_THAT(through_hard_link.status().message(), HasSubstr("has 2 names (hard links)"));
  ASSERT_EQ(::unlink(dir.File("hard.db").c_str()), 0);
  first->reset();  // stops it
  auto after = TuningServer::Start(options);
  EXPECT_TRUE(after.ok()) << after.status();
}

// A token given on two lines had both lines' roles (one "downgraded" by a line added below kept
// admin): refused, naming the line.
TEST(AuthenticatorTest, ATokenGivenTwiceIsRefused) {
  testing::TempDir dir;
  std::ofstream(dir.File("tokens")) << "abcdefghijklmnopqrs admin\nabcdefghijklmnopqrs worker\n";
  absl::StatusOr<Authenticator> auth = Authenticator::FromFile(dir.File("tokens"));
  ASSERT_FALSE(auth.ok());
  EXPECT_THAT(auth.status().message(), HasSubstr("tokens line 2: a token given on an earlier line"));
}

// A database in a folder that does not exist, or one this process cannot write, is refused at
// start, saying which (a read-only one started, then failed every worker's registration and
// every submit with SQLite's text, and its workers exited).
TEST(TuningServerTest, ADatabaseItCannotWriteIsRefusedAtStart) {
  testing::TempDir dir;
  TuningServerOptions options;
  options.listen = "127.0.0.1:0";
  options.scheduler.agent_threads = 0;
  options.db_path = dir.File("no/such/folder/x.db");
  auto missing = TuningServer::Start(options);
  ASSERT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
  EXPECT_THAT(missing.status().message(),
              HasSubstr("the folder " + dir.File("no/such/folder") + " of --db"));
  // A name without a folder is one in the working directory (the check took its folder for
  // unwritable, and `ktune serve --db t.db` refused to start).
  const std::string relative = absl::StrCat("relative-", ::getpid(), ".db");
  options.db_path = relative;
  EXPECT_TRUE(TuningServer::Start(options).ok());
  for (const char* suffix : {"", ".lock", "-wal", "-shm"}) ::unlink((relative + suffix).c_str());
  // A database another user owns, served by `ktune serve` as a user who may read it only. Root
  // writes whatever the mode says, so as root (CI) the server runs as nobody (setpriv).
  options.db_path = dir.File("ro.db");
  ASSERT_TRUE(TuningServer::Start(options).ok());  // makes it
  ASSERT_EQ(::chmod(dir.File("ro.db").c_str(), 0444), 0);
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);  // nobody may look in, not write
  std::string ktune = testing::KtuneBinary();
  if (::geteuid() == 0) {
    // nobody may not reach the build (a checkout under /root): the front and the agent beside
    // it (a LibTorch build's), copied where nobody may run them.
    namespace fs = std::filesystem;
    const fs::path bin = fs::path(dir.path()) / "bin";
    fs::create_directories(bin);
    const fs::perms runnable = fs::perms::owner_all | fs::perms::group_read |
                               fs::perms::group_exec | fs::perms::others_read |
                               fs::perms::others_exec;
    for (const char* name : {"ktune", "ktune-agent"}) {
      if (!KTUNE_WITH_TORCH && std::string(name) == "ktune-agent") continue;
      fs::copy_file(fs::path(ktune).parent_path() / name, bin / name);
      fs::permissions(bin / name, runnable);
    }
    fs::permissions(bin, runnable);
    ktune = (bin / "ktune").string();
  }
  std::vector<std::string> serve = {ktune,      "serve",      "--db", dir.File("ro.db"),
                                    "--listen", "127.0.0.1:0"};
  if (::geteuid() == 0) {
    serve.insert(serve.begin(), {"--reuid=65534", "--regid=65534", "--clear-groups"});
  }
  const testing::CommandResult read_only =
      ::geteuid() == 0 ? testing::RunProgram("/usr/bin/setpriv", serve)
                       : testing::RunProgram(serve.front(), {serve.begin() + 1, serve.end()});
  EXPECT_EQ(read_only.exit_code, 1) << read_only.err;
  EXPECT_THAT(read_only.err,
              HasSubstr("the database " + dir.File("ro.db") + " is not writable by this process"));
}

TEST_F(ServerTest, ThreeWorkersFinishAThreeTaskJobWithExactlyTheBudgetRecorded) {
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = ThreeTaskSpec(40);
  v1::Job job;
  ASSERT_TRUE(tuning_->SubmitJob(Context().get(), submit, &job).ok());
  ASSERT_EQ(job.tasks_size(), 3);
  EXPECT_EQ(job.measurements_total(), 120);
  // Nothing is known yet; the answer is cached, and must be dropped when records arrive.
  v1::QueryBestRequest query;
  *query.mutable_kernel() = submit.spec().kernels(0);
  *query.mutable_problem() = submit.spec().problems(0);
  query.mutable_device()->set_device_class(submit.spec().device_classes(1));
  v1::QueryBestResponse answer;
  ASSERT_TRUE(tuning_->QueryBest(Context().get(), query, &answer).ok());
  EXPECT_EQ(answer.level(), v1::MATCH_LEVEL_NONE);

  // A client follows the job on the WatchJob stream while it runs.
  std::vector<v1::JobEvent> events;
  grpc::Status watch_status;
  std::thread watcher([&] {
    v1::WatchJobRequest watch;
    watch.set_job_id(job.job_id());
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto reader = tuning_->WatchJob(&ctx, watch);
    v1::JobEvent event;
    while (reader->Read(&event)) events.push_back(event);
    watch_status = reader->Finish();
  });

  std::vector<std::thread> threads;
  std::vector<int64_t> reported(3);
  for (int w = 0; w < 3; ++w) {
    threads.emplace_back([&, w] {
      auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpaces[w]));
      ReplayMeasurer measurer(recorded->records);
      auto stub = v1::WorkerService::NewStub(channel_);
      WorkerLoopOptions options;
      options.max_candidates = 3;
      options.idle_exit = absl::Seconds(1);
      WorkerLoop loop(stub.get(), &measurer, options);
      EXPECT_TRUE(loop.Run().ok());
      reported[w] = loop.reported();
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(reported, (std::vector<int64_t>{40, 40, 40}));
  watcher.join();
  EXPECT_TRUE(watch_status.ok()) << watch_status.error_message();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().job().state(), v1::JOB_STATE_DONE);
  EXPECT_EQ(events.back().job().measurements_done(), 120);
  EXPECT_EQ(events.back().job().task_count(), 3);  // counted without the tasks (none asked)
  EXPECT_EQ(events.back().job().tasks_size(), 0);
  for (size_t i = 1; i < events.size(); ++i) {  // progress only moves forward
    EXPECT_GE(events[i].job().measurements_done(), events[i - 1].job().measurements_done());
  }

  v1::GetJobRequest get;
  get.set_job_id(job.job_id());
  ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &job).ok());
  EXPECT_EQ(job.state(), v1::JOB_STATE_DONE);
  EXPECT_EQ(job.measurements_done(), 120);
  for (const v1::TaskProgress& t : job.tasks()) {
    EXPECT_EQ(t.measurements_done(), 40);
    EXPECT_TRUE(t.has_best_time_ms());
  }
  // The stream's events name the task that advanced, with its best so far: at the end, one of
  // the three with its final best.
  ASSERT_TRUE(events.back().has_changed_task());
  const v1::TaskProgress& changed = events.back().changed_task();
  bool matched = false;
  for (const v1::TaskProgress& t : job.tasks()) {
    if (t.task().device_class() != changed.task().device_class()) continue;
    matched = true;
    EXPECT_EQ(changed.measurements_done(), 40);
    EXPECT_EQ(changed.best_time_ms(), t.best_time_ms());
  }
  EXPECT_TRUE(matched);
  ASSERT_TRUE(tuning_->QueryBest(Context().get(), query, &answer).ok());
  ASSERT_EQ(answer.level(), v1::MATCH_LEVEL_DEVICE_CLASS);
  ASSERT_EQ(answer.best_size(), 1);
  EXPECT_EQ(answer.best(0).time_ms(), job.tasks(1).best_time_ms());
  server_->Shutdown();
  auto db = SqliteTuningDatabase::Open(dir_.File("server.db"));
  ASSERT_TRUE(db.ok());
  auto stats = (*db)->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->records, 120);
}

// A Tune's last event gives the untuned default's time, for the speedup: a CPU kernel's default
// (for the measuring worker's cores) is in the first batch (the field was never set).
TEST_F(ServerTest, ATuningsLastEventHasTheDefaultsTime) {
  KernelRegistry registry = KernelRegistry::WithBuiltins();
  CpuMeasurerOptions cpu;
  cpu.runner_path = KTUNE_RUNNER;
  cpu.max_seconds = 0.02;
  CpuMeasurer measurer(&registry, cpu);
  std::thread worker([&] {
    auto stub = v1::WorkerService::NewStub(channel_);
    WorkerLoopOptions options;
    options.max_candidates = 3;
    options.idle_exit = absl::Seconds(2);
    options.registry = &registry;
    WorkerLoop loop(stub.get(), &measurer, options);
    EXPECT_TRUE(loop.Run().ok());
  });
  v1::TuneRequest tune;
  tune.mutable_kernel()->set_name("gemm");
  ToProto(Problem{{"M", int64_t{64}}, {"N", int64_t{64}}, {"K", int64_t{64}}},
          tune.mutable_problem()->mutable_params());
  tune.set_device(measurer.device().device_class);
  tune.set_budget_measurements(3);
  tune.set_strategy(v1::STRATEGY_RANDOM);
  grpc::ClientContext tune_ctx;
  tune_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  auto reader = tuning_->Tune(&tune_ctx, tune);
  v1::TuneEvent event, last;
  bool earlier_had_it = false;
  while (reader->Read(&event)) {
    if (!event.finished()) earlier_had_it |= event.has_default_config_time_ms();
    last = event;
  }
  ASSERT_TRUE(reader->Finish().ok());
  worker.join();
  ASSERT_TRUE(last.finished());
  EXPECT_EQ(last.measurements_done(), 3);
  EXPECT_FALSE(earlier_had_it);  // read once, at the end
  ASSERT_TRUE(last.has_default_config_time_ms());
  // It is the time of the record of the default configuration.
  absl::StatusOr<Configuration> wanted = registry.Find("gemm")->DefaultConfiguration(
      *registry.Find("gemm")->ValidateProblem(
          {{"M", int64_t{64}}, {"N", int64_t{64}}, {"K", int64_t{64}}}),
      MachineVariables{1});  // the worker gives its kernels one core (cores_used)
  ASSERT_TRUE(wanted.ok()) << wanted.status();
  v1::ListRecordsRequest list;
  v1::ListRecordsResponse records;
  ASSERT_TRUE(tuning_->ListRecords(Context().get(), list, &records).ok());
  int matched = 0;
  for (const v1::Record& r : records.records()) {
    absl::StatusOr<ParamMap> config = FromProto(r.config().params(), "config");
    if (config.ok() && *config == *wanted) {
      EXPECT_EQ(r.time_ms(), last.default_config_time_ms());
      ++matched;
    }
  }
  EXPECT_EQ(matched, 1);
}

// Tune (a one-task job streamed as TuneEvents), ListWorkers, ListRecords pages, ExportRecords
// and ImportRecords (the same records again add nothing) over the wire.
TEST_F(ServerTest, TuneRecordsAndWorkersOverTheApi) {
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpaces[0]));
  ASSERT_TRUE(recorded.ok());
  const Record& any = recorded->records.front();
  std::thread worker([&] {
    ReplayMeasurer measurer(recorded->records);
    auto stub = v1::WorkerService::NewStub(channel_);
    WorkerLoopOptions options;
    options.max_candidates = 4;
    options.idle_exit = absl::Seconds(2);
    WorkerLoop loop(stub.get(), &measurer, options);
    EXPECT_TRUE(loop.Run().ok());
  });
  v1::TuneRequest tune;
  tune.mutable_kernel()->set_name(any.kernel);
  ToProto(any.problem, tune.mutable_problem()->mutable_params());
  tune.set_device(any.device.device_class);
  tune.set_budget_measurements(24);
  tune.set_strategy(v1::STRATEGY_RANDOM);
  grpc::ClientContext tune_ctx;
  tune_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto reader = tuning_->Tune(&tune_ctx, tune);
  v1::TuneEvent event, last;
  while (reader->Read(&event)) last = event;
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(last.finished());
  EXPECT_EQ(last.measurements_done(), 24);
  EXPECT_EQ(last.budget_measurements(), 24);
  ASSERT_TRUE(last.has_best_so_far());
  EXPECT_GT(last.best_so_far().time_ms(), 0);

  v1::ListWorkersResponse workers;
  ASSERT_TRUE(tuning_->ListWorkers(Context().get(), {}, &workers).ok());
  ASSERT_EQ(workers.workers_size(), 1);
  EXPECT_EQ(workers.workers(0).measurements_done(), 24);
  EXPECT_EQ(workers.workers(0).device().device_class(), any.device.device_class);
  worker.join();

  // Pages of 10: 10, 10, 4.
  v1::ListRecordsRequest list;
  list.set_page_size(10);
  std::vector<v1::Record> listed;
  int pages = 0;
  for (; pages < 5; ++pages) {
    v1::ListRecordsResponse response;
    ASSERT_TRUE(tuning_->ListRecords(Context().get(), list, &response).ok());
    listed.insert(listed.end(), response.records().begin(), response.records().end());
    if (response.next_page_token().empty()) break;
    list.set_page_token(response.next_page_token());
  }
  EXPECT_EQ(listed.size(), 24u);
  EXPECT_EQ(pages, 2) << "the third page is the last, and has no token";
  std::set<std::string> listed_ids;
  for (const v1::Record& r : listed) listed_ids.insert(r.record_id());
  EXPECT_EQ(listed_ids.size(), 24u) << "each record once";
  // Pages of 12: the second is full and the last, so it has no token (a full page asks whether
  // a record follows).
  list.set_page_size(12);
  list.clear_page_token();
  v1::ListRecordsResponse first_half, second_half;
  ASSERT_TRUE(tuning_->ListRecords(Context().get(), list, &first_half).ok());
  ASSERT_FALSE(first_half.next_page_token().empty());
  list.set_page_token(first_half.next_page_token());
  ASSERT_TRUE(tuning_->ListRecords(Context().get(), list, &second_half).ok());
  EXPECT_EQ(second_half.records_size(), 12);
  EXPECT_TRUE(second_half.next_page_token().empty());
  list.set_page_token("not-a-token");
  v1::ListRecordsResponse ignored;
  EXPECT_EQ(tuning_->ListRecords(Context().get(), list, &ignored).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  v1::ExportRecordsRequest export_all;
  auto ctx = Context();
  auto exported_stream = tuning_->ExportRecords(ctx.get(), export_all);
  std::vector<v1::Record> exported;
  v1::Record r;
  while (exported_stream->Read(&r)) exported.push_back(r);
  ASSERT_TRUE(exported_stream->Finish().ok());
  ASSERT_EQ(exported.size(), 24u);

  // Importing the export adds nothing; one changed record is new.
  auto import = [&](std::vector<v1::Record> records) {
    v1::ImportRecordsResponse response;
    auto ictx = Context();
    auto writer = tuning_->ImportRecords(ictx.get(), &response);
    for (const v1::Record& rec : records) EXPECT_TRUE(writer->Write(rec));
    writer->WritesDone();
    EXPECT_TRUE(writer->Finish().ok());
    return response;
  };
  v1::ImportRecordsResponse again = import(exported);
  EXPECT_EQ(again.records_received(), 24);
  EXPECT_EQ(again.records_added(), 0);
  v1::Record changed = exported[0];
  changed.clear_record_id();
  changed.set_worker_id("another-worker");
  EXPECT_EQ(import({changed}).records_added(), 1);
  // An ok record (the job's seed is drawn: the first may be a failure, which has no time).
  const auto ok = std::find_if(exported.begin(), exported.end(), [](const v1::Record& e) {
    return e.status() == v1::MEASUREMENT_STATUS_OK;
  });
  ASSERT_NE(ok, exported.end());
  v1::Record lying = *ok;
  lying.set_time_ms(lying.time_ms() * 2);  // its record_id no longer matches
  v1::ImportRecordsResponse refused;
  auto ictx = Context();
  auto writer = tuning_->ImportRecords(ictx.get(), &refused);
  writer->Write(lying);
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("does not match its content"));
}

TEST_F(ServerTest, AnExpiredLeaseIsHandedOutAgainAndItsLateReportRefused) {
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = ThreeTaskSpec(4);
  v1::Job job;
  ASSERT_TRUE(tuning_->SubmitJob(Context().get(), submit, &job).ok());
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpaces[0]));
  ReplayMeasurer measurer(recorded->records);

  // A worker that leases and then goes silent.
  const std::string silent = RegisterWorker();
  const v1::LeaseBatchResponse lease = Lease(silent, 4);
  absl::SleepFor(absl::Milliseconds(900));  // past the 500 ms lease timeout
  v1::ListWorkersResponse listed;
  ASSERT_TRUE(tuning_->ListWorkers(Context().get(), v1::ListWorkersRequest(), &listed).ok());
  ASSERT_EQ(listed.workers_size(), 1);
  EXPECT_EQ(listed.workers(0).state(), "lost");  // silent for longer than a lease lives

  // A healthy worker of the same class gets the same work.
  WorkerLoopOptions options;
  options.idle_exit = absl::Milliseconds(500);
  WorkerLoop loop(workers_.get(), &measurer, options);
  ASSERT_TRUE(loop.Run().ok());
  EXPECT_EQ(loop.reported(), 4);

  // The silent worker's late report is refused and stores nothing.
  v1::ReportResultsResponse stored;
  grpc::Status s = workers_->ReportResults(Context().get(), OkReport(silent, lease, 1.0), &stored);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("expired"));

  v1::GetJobRequest get;
  get.set_job_id(job.job_id());
  ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &job).ok());
  EXPECT_EQ(job.tasks(0).measurements_done(), 4);
}

TEST_F(ServerTest, AReportWithARepeatedCandidateOrABadTimeIsRefusedWhole) {
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = ThreeTaskSpec(4);
  v1::Job job;
  ASSERT_TRUE(tuning_->SubmitJob(Context().get(), submit, &job).ok());
  const std::string worker = RegisterWorker();
  const v1::LeaseBatchResponse lease = Lease(worker, 4);
  auto report = [&](const std::function<void(v1::ReportResultsRequest*)>& spoil) {
    v1::ReportResultsRequest r = OkReport(worker, lease, 2.0);
    spoil(&r);
    v1::ReportResultsResponse stored;
    grpc::Status s = workers_->ReportResults(Context().get(), r, &stored);
    return std::make_pair(s, stored.records_stored());
  };
  const std::pair<std::function<void(v1::ReportResultsRequest*)>, std::string> spoiled[] = {
      {[](v1::ReportResultsRequest* r) { *r->add_results() = r->results(0); }, "appears twice"},
      {[](v1::ReportResultsRequest* r) { r->mutable_results(1)->set_repeat_times_ms(0, NAN); },
       "from 1e-09 to 1e+09 ms"},
      {[](v1::ReportResultsRequest* r) { r->mutable_results(2)->set_repeat_times_ms(0, -1); },
       "from 1e-09 to 1e+09 ms"},
      {[](v1::ReportResultsRequest* r) { r->mutable_results(3)->set_repeat_times_ms(0, 0); },
       "from 1e-09 to 1e+09 ms"},
      // No kernel runs in 1e-300 ms (it was served as 0.0000 ms) or 1e308 ms.
      {[](v1::ReportResultsRequest* r) { r->mutable_results(3)->set_repeat_times_ms(0, 1e-300); },
       "from 1e-09 to 1e+09 ms"},
      {[](v1::ReportResultsRequest* r) { r->mutable_results(3)->set_repeat_times_ms(0, 1e308); },
       "from 1e-09 to 1e+09 ms"},
      {[](v1::ReportResultsRequest* r) {
         for (int i = 0; i < 1024; ++i) r->mutable_results(0)->add_repeat_times_ms(1);
       },
       "at most 1024"},
      // The server's own statuses: a worker stored them as its outcomes.
      {[](v1::ReportResultsRequest* r) {
         r->mutable_results(1)->set_status(v1::MEASUREMENT_STATUS_LOST);
         r->mutable_results(1)->clear_repeat_times_ms();
       },
       "lost is the server's to give"},
      {[](v1::ReportResultsRequest* r) {
         r->mutable_results(2)->set_status(v1::MEASUREMENT_STATUS_TOO_INACCURATE);
       },
       "too_inaccurate is the server's to give"},
  };
  for (const auto& [spoil, why] : spoiled) {
    const auto [status, stored] = report(spoil);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << why;
    EXPECT_THAT(status.error_message(), HasSubstr(why));
  }
  // Nothing of the refused reports was stored, and the lease still holds its four candidates.
  const auto [status, stored] = report([](v1::ReportResultsRequest*) {});
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(stored, 4);
  v1::GetJobRequest get;
  get.set_job_id(job.job_id());
  ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &job).ok());
  EXPECT_EQ(job.tasks(0).measurements_done(), 4);
  EXPECT_EQ(job.tasks(0).best_time_ms(), 2.0);
}

// A failure's message is cut to 4,096 bytes; cut inside a UTF-8 character it made the record's id
// throw in the commit, the call end UNIMPLEMENTED and the lease stay "committing" for ever (its
// job never ended). It is cut at a character boundary and stored.
TEST_F(ServerTest, ALongFailureMessageIsCutWholeCharactersAndStored) {
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = ThreeTaskSpec(4);
  v1::Job job;
  ASSERT_TRUE(tuning_->SubmitJob(Context().get(), submit, &job).ok());
  const std::string worker = RegisterWorker();
  const v1::LeaseBatchResponse lease = Lease(worker, 4);
  v1::ReportResultsRequest r = OkReport(worker, lease, 2.0);
  r.mutable_results(0)->set_status(v1::MEASUREMENT_STATUS_RUNTIME_ERROR);
  r.mutable_results(0)->clear_repeat_times_ms();
  r.mutable_results(0)->set_message(std::string(4095, 'a') + "\xC3\xA9" + "b");  // 'é' at 4096
  v1::ReportResultsResponse stored;
  grpc::Status s = workers_->ReportResults(Context().get(), r, &stored);
  ASSERT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
  EXPECT_EQ(stored.records_stored(), 4);
  v1::GetJobRequest get;
  get.set_job_id(job.job_id());
  ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &job).ok());
  EXPECT_EQ(job.tasks(0).measurements_done(), 4);
  EXPECT_EQ(job.tasks(0).measurements_failed(), 1);
}

TEST_F(ServerTest, PauseResumeAndCancelFollowTheJobsState) {
  // Some progress, so that a running job has an estimate of the time left.
  const std::string id = SubmitThreeTasksAndMeasureFour();
  v1::Job job;
  auto pause = [&] {
    v1::PauseJobRequest r;
    r.set_job_id(id);
    return tuning_->PauseJob(Context().get(), r, &job);
  };
  auto resume = [&] {
    v1::ResumeJobRequest r;
    r.set_job_id(id);
    return tuning_->ResumeJob(Context().get(), r, &job);
  };
  auto cancel = [&](const std::string& which) {
    v1::CancelJobRequest r;
    r.set_job_id(which);
    return tuning_->CancelJob(Context().get(), r, &job);
  };
  v1::GetJobRequest get;
  get.set_job_id(id);
  ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &job).ok());
  // Its first task is done, and no worker can measure the others: no estimate.
  EXPECT_EQ(job.estimated_seconds_left(), 0);
  RegisterWorker(1);
  RegisterWorker(2);
  ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &job).ok());
  EXPECT_GT(job.estimated_seconds_left(), 0);
  ASSERT_TRUE(pause().ok());
  EXPECT_EQ(job.state(), v1::JOB_STATE_PAUSED);
  // Unknown while paused (it grew each second the job stayed paused).
  EXPECT_EQ(job.estimated_seconds_left(), 0);
  ASSERT_TRUE(pause().ok());  // pausing a paused job changes nothing
  EXPECT_EQ(job.state(), v1::JOB_STATE_PAUSED);
  ASSERT_TRUE(resume().ok());
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  ASSERT_TRUE(resume().ok());  // resuming a running one neither
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  ASSERT_TRUE(cancel(id).ok());
  EXPECT_EQ(job.state(), v1::JOB_STATE_CANCELLED);
  // An ended job cannot be paused or resumed: it exists, so the code says so.
  for (grpc::Status s : {pause(), resume()}) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(s.error_message(), HasSubstr("has already ended (cancelled)"));
  }
  // Cancelling it again changes nothing, whether or not the server still holds it in memory.
  ASSERT_TRUE(cancel(id).ok());
  EXPECT_EQ(job.state(), v1::JOB_STATE_CANCELLED);
  grpc::Status unknown = cancel("999");
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(unknown.error_message(), HasSubstr("no job 999"));
}

// The time left counts measuring time only: from the first lease after the job was loaded or
// resumed. A pause (and, alike, a restart's wait for workers) counted as if measuring: after 1,000 s
// paused, a job measuring 4 a second said 2,004 s were left of 16 measurements.
TEST_F(ServerTest, TheTimeLeftCountsMeasuringTimeOnly) {
  FreezeClock();
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = ThreeTaskSpec(12);  // 36 measurements; this worker can do 12
  v1::Job job;
  ASSERT_TRUE(tuning_->SubmitJob(Context().get(), submit, &job).ok());
  const std::string id = job.job_id();
  Advance(absl::Seconds(30));  // waiting for a worker
  const std::string worker = RegisterWorker();
  // A quarter second: within the 500 ms lease (a second made the lease expire whenever the
  // server's expiry tick ran between the Advance and the report).
  auto measure_four_in_a_quarter_second = [&] {
    const v1::LeaseBatchResponse lease = Lease(worker, 4);
    Advance(absl::Milliseconds(250));
    v1::ReportResultsResponse stored;
    ASSERT_TRUE(
        workers_->ReportResults(Context().get(), OkReport(worker, lease, 2.0), &stored).ok());
  };
  auto time_left = [&] {
    v1::GetJobRequest get;
    get.set_job_id(id);
    EXPECT_TRUE(tuning_->GetJob(Context().get(), get, &job).ok());
    return job.estimated_seconds_left();
  };
  measure_four_in_a_quarter_second();
  EXPECT_DOUBLE_EQ(time_left(), 32 * 0.25 / 4);  // not 32 * 30.25 / 4
  v1::PauseJobRequest pause;
  pause.set_job_id(id);
  ASSERT_TRUE(tuning_->PauseJob(Context().get(), pause, &job).ok());
  Advance(absl::Seconds(1000));
  v1::ResumeJobRequest resume;
  resume.set_job_id(id);
  ASSERT_TRUE(tuning_->ResumeJob(Context().get(), resume, &job).ok());
  EXPECT_EQ(time_left(), 0);  // unknown until it measures again
  measure_four_in_a_quarter_second();
  EXPECT_DOUBLE_EQ(time_left(), 28 * 0.25 / 4);
}

// While no unfinished task has a worker that can measure it (every worker lost), the time left
// is unknown (0): it grew every second instead ("about 10 s left", then 14, 19, ... 33).
TEST_F(ServerTest, TheTimeLeftIsUnknownWhileNoWorkerCanMeasureTheJob) {
  FreezeClock();
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = ThreeTaskSpec(24);
  const std::string served_class = submit.spec().device_classes(0);
  submit.mutable_spec()->clear_device_classes();
  submit.mutable_spec()->add_device_classes(served_class);  // one task, of this worker's class
  v1::Job job = SubmitAndMeasureFourInAQuarterSecond(submit);
  EXPECT_DOUBLE_EQ(job.estimated_seconds_left(), 20 * 0.25 / 4);
  EXPECT_EQ(job.waiting(), "");
  Advance(absl::Seconds(75));  // past the lease timeout: its only worker is lost
  v1::GetJobRequest get;
  get.set_job_id(job.job_id());
  ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &job).ok());
  EXPECT_THAT(job.waiting(), HasSubstr("1 is lost"));
  EXPECT_EQ(job.estimated_seconds_left(), 0);
}

// A wall-time budget ends a job sooner than its measurements would: the time left says so (a
// fleet trial's job of 10 s said "about 278 s left").
TEST_F(ServerTest, TheTimeLeftIsNoMoreThanTheWallTimeLeft) {
  FreezeClock();
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = ThreeTaskSpec(8);  // 24 measurements
  submit.mutable_spec()->set_budget_wall_seconds(1);
  const v1::Job job = SubmitAndMeasureFourInAQuarterSecond(submit);
  EXPECT_NEAR(job.estimated_seconds_left(), 0.75, 0.05);  // not 20 * 0.25 / 4 = 1.25
}

// A report that meets an outage is sent again: no answer (UNAVAILABLE), or a server stopping
// gracefully (SIGTERM, for an upgrade), which cancels the report it is answering (CANCELLED: the
// measured batch was dropped at 4 of 5 restarts, an operator trial).
TEST_F(ServerTest, AWorkerSendsItsReportAgainAfterAPassingOutage) {
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpaces[0]));
  for (grpc::StatusCode code : {grpc::StatusCode::UNAVAILABLE, grpc::StatusCode::CANCELLED}) {
    SCOPED_TRACE(code);
    v1::SubmitJobRequest submit;
    *submit.mutable_spec() = ThreeTaskSpec(4);
    v1::Job job;
    ASSERT_TRUE(tuning_->SubmitJob(Context().get(), submit, &job).ok());
    ReplayMeasurer measurer(recorded->records);
    FlakyReports flaky(workers_.get(), /*outages=*/2);  // 100 + 200 ms of retries: in the lease
    flaky.outage_code = code;
    WorkerLoopOptions options;
    options.max_candidates = 4;
    options.idle_exit = absl::Milliseconds(300);
    WorkerLoop loop(&flaky, &measurer, options);
    ASSERT_TRUE(loop.Run().ok());
    EXPECT_EQ(loop.reported(), 4);
    EXPECT_EQ(flaky.filled_leases, 1);  // measured once: the results were not dropped
    EXPECT_EQ(flaky.reports_sent, 1);
    v1::GetJobRequest get;
    get.set_job_id(job.job_id());
    ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &job).ok());
    EXPECT_EQ(job.tasks(0).measurements_done(), 4);
  }
}

// `ktune tune`'s worker (nobody reads its embedded server's log) ends at the first report the
// server cannot store, saying why: with the disk full it measured the same batch again and
// again, the progress line standing still.
TEST_F(ServerTest, AWorkerAskedToStopWhenItsMeasurementsCannotBeStoredStops) {
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = ThreeTaskSpec(4);
  v1::Job job;
  ASSERT_TRUE(tuning_->SubmitJob(Context().get(), submit, &job).ok());
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpaces[0]));
  ReplayMeasurer measurer(recorded->records);
  FlakyReports full_disk(workers_.get(), /*outages=*/0);
  full_disk.refuse_reports = true;
  WorkerLoopOptions options;
  options.max_candidates = 4;
  options.idle_exit = absl::Seconds(5);
  options.stop_when_not_stored = true;
  WorkerLoop loop(&full_disk, &measurer, options);
  const absl::Status ran = loop.Run();
  EXPECT_TRUE(absl::IsResourceExhausted(ran)) << ran;
  EXPECT_THAT(std::string(ran.message()),
              ::testing::HasSubstr("could not store 4 measurements: executing 'COMMIT': "
                                   "database or disk is full"));
  EXPECT_EQ(full_disk.filled_leases, 1);
}

// A measurer that cannot measure any task of its device (as a CPU worker without a problem's
// inputs file): Measure fails with InvalidArgument.
class CannotMeasure : public Measurer {
 public:
  explicit CannotMeasure(DeviceInfo device) : device_(std::move(device)) {}
  DeviceInfo device() const override { return device_; }
  absl::StatusOr<std::vector<MeasureResult>> Measure(const TaskKey&,
                                                     const std::vector<Configuration>&) override {
    return absl::InvalidArgumentError("this machine has no inputs file (looked for /x.f32)");
  }

 private:
  DeviceInfo device_;
};

// A task the worker cannot measure at all fails, saying why, and stores no record: its whole
// budget was stored as runtime_error records of configurations that had nothing wrong, and the
// job ended "done".
TEST_F(ServerTest, ATaskItsWorkerCannotMeasureFailsSayingWhyAndStoresNothing) {
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = ThreeTaskSpec(4);
  submit.mutable_spec()->mutable_device_classes()->DeleteSubrange(1, 2);  // the worker's only
  v1::Job job;
  ASSERT_TRUE(tuning_->SubmitJob(Context().get(), submit, &job).ok());
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpaces[0]));
  CannotMeasure measurer(ReplayMeasurer(recorded->records).device());
  WorkerLoopOptions options;
  options.max_candidates = 4;
  options.idle_exit = absl::Seconds(1);
  WorkerLoop loop(workers_.get(), &measurer, options);
  ASSERT_TRUE(loop.Run().ok());
  v1::GetJobRequest get;
  get.set_job_id(job.job_id());
  ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &job).ok());
  const v1::TaskProgress& task = job.tasks(0);
  EXPECT_EQ(task.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(task.measurements_done(), 0);
  v1::ListRecordsRequest list;
  *list.mutable_task() = task.task();
  v1::ListRecordsResponse records;
  ASSERT_TRUE(tuning_->ListRecords(Context().get(), list, &records).ok());
  EXPECT_EQ(records.records_size(), 0);
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(job.message(),
              ::testing::HasSubstr("this worker cannot measure the task: this "
                                   "machine has no inputs file (looked for /x.f32)"));
}

// An error a retry may get past (UNAVAILABLE: a disk failing to read) stops it too once three
// leases in a row could not be stored: it was retried for ever, measuring the batch again.
TEST_F(ServerTest,
       AWorkerAskedToStopWhenItsMeasurementsCannotBeStoredStopsAtTheThirdTransientFailure) {
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = ThreeTaskSpec(4);
  v1::Job job;
  ASSERT_TRUE(tuning_->SubmitJob(Context().get(), submit, &job).ok());
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpaces[0]));
  ReplayMeasurer measurer(recorded->records);
  FlakyReports failing_disk(workers_.get(), /*outages=*/1'000'000);  // UNAVAILABLE, every time
  WorkerLoopOptions options;
  options.max_candidates = 4;
  options.idle_exit = absl::Seconds(30);
  options.stop_when_not_stored = true;
  WorkerLoop loop(&failing_disk, &measurer, options);
  const absl::Status ran = loop.Run();
  EXPECT_TRUE(absl::IsUnavailable(ran)) << ran;
  // (4 measurements, or 1: candidates whose lease expired twice are leased alone.)
  EXPECT_THAT(std::string(ran.message()),
              ::testing::ContainsRegex("could not store [14] measurements"));
  EXPECT_EQ(failing_disk.filled_leases, 3);
}

// Calls that wait for the database hold up no heartbeat: with the file locked by another
// process, twenty job submissions wait for SQLite's busy timeout (5 s each) while a worker's
// heartbeat is answered before any of them. A submission stored its job under the scheduler's
// lock, and the heartbeat waited behind all of them, past its deadline (checked with the binary
// of b838819). (That the RPC pools keep gRPC's threads free is measured, not tested here: gRPC
// adds threads of its own after a while; bench/results/rpc-threads-2026-12-06-session51.txt.)
TEST_F(ServerTest, AHeartbeatIsAnsweredWhileCallsWaitForTheDatabase) {
  const std::string worker = RegisterWorker();
  sqlite3* other = nullptr;  // another process's writer, holding the file's write lock
  ASSERT_EQ(sqlite3_open(dir_.File("server.db").c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  std::atomic<int> submits_returned{0};
  std::vector<std::thread> submits;
  for (int i = 0; i < 20; ++i) {
    submits.emplace_back([&] {
      v1::SubmitJobRequest submit;
      *submit.mutable_spec() = ThreeTaskSpec(4);
      v1::Job job;
      auto ctx = std::make_unique<grpc::ClientContext>();
      ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      tuning_->SubmitJob(ctx.get(), submit, &job);
      ++submits_returned;
    });
  }
  // Heartbeats every 100 ms for 2 s, each answered while no submission has returned: the
  // submissions wait 5 s for the lock, so those that reached the server in the first 2 s (all of
  // them, but on a machine that could not start 20 calls in that time) are waiting meanwhile. (One
  // heartbeat after a fixed 300 ms passed without its case on a machine slower than that.)
  v1::HeartbeatRequest beat;
  beat.set_worker_id(worker);
  for (int i = 0; i < 20; ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    v1::HeartbeatResponse answer;
    EXPECT_TRUE(workers_->Heartbeat(Context().get(), beat, &answer).ok()) << "heartbeat " << i;
    EXPECT_EQ(submits_returned.load(), 0) << "the heartbeat waited for the database's callers";
  }
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  for (std::thread& t : submits) t.join();
}

TEST_F(ServerTest, AWorkerDropsALeaseTheServerTookBackInsteadOfReportingIt) {
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = ThreeTaskSpec(4);
  v1::Job job;
  ASSERT_TRUE(tuning_->SubmitJob(Context().get(), submit, &job).ok());
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpaces[0]));
  ReplayMeasurer replay(recorded->records);
  // Heartbeats every 150 ms fail for 600 ms, past the 500 ms lease timeout, while the first
  // batch takes 3 s, and another worker takes the candidates meanwhile: the next heartbeat
  // hears that the lease was taken back (and not given back: AnotherWorkerTakesThem).
  SlowFirstCall slow(&replay, absl::Seconds(3));
  FlakyReports flaky(workers_.get(), /*outages=*/0, /*heartbeat_outages=*/4);
  flaky.before_heartbeats_return = [&] {
    AnotherWorkerTakesThem(workers_.get(), replay.device(), 4);
  };
  WorkerLoopOptions options;
  options.max_candidates = 4;
  options.idle_exit = absl::Milliseconds(300);
  WorkerLoop loop(&flaky, &slow, options);
  ASSERT_TRUE(loop.Run().ok());
  EXPECT_EQ(flaky.filled_leases, 1);
  EXPECT_EQ(flaky.reports_sent, 0);  // the lease taken back was not reported
  EXPECT_EQ(loop.reported(), 0);
  v1::GetJobRequest get;
  get.set_job_id(job.job_id());
  ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &job).ok());
  EXPECT_EQ(job.tasks(0).measurements_done(), 4);
}

TEST_F(ServerTest, AJobSaysWhichOfItsTasksWaitForAWorkerAndWhy) {
  FreezeClock();
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = ThreeTaskSpec(4);
  v1::Job job;
  ASSERT_TRUE(tuning_->SubmitJob(Context().get(), submit, &job).ok());
  const std::string first = submit.spec().device_classes(0);
  const std::string others[] = {submit.spec().device_classes(1), submit.spec().device_classes(2)};
  const auto Waiting = [&] {
    v1::GetJobRequest get;
    get.set_job_id(job.job_id());
    v1::Job now;
    EXPECT_TRUE(tuning_->GetJob(Context().get(), get, &now).ok());
    return now.waiting();
  };
  const auto NoneFor = [](const std::string& device_class) {
    return absl::StrCat("1 task waits for a worker of device class '", device_class,
                        "': none has registered");
  };
  EXPECT_THAT(Waiting(), HasSubstr(NoneFor(first)));
  EXPECT_THAT(Waiting(), HasSubstr(NoneFor(others[0])));
  EXPECT_THAT(Waiting(), HasSubstr(NoneFor(others[1])));
  RegisterWorker();  // of the first class: its task is served, the others still wait
  EXPECT_THAT(Waiting(), Not(HasSubstr(first)));
  EXPECT_THAT(Waiting(), HasSubstr(NoneFor(others[0])));
  const absl::Time registered = *frozen_at_;
  Advance(absl::Seconds(75));  // past the lease timeout: the worker is lost
  // A fixed time, not "75 s ago": a watcher's event would change every second.
  EXPECT_THAT(Waiting(),
              HasSubstr(absl::StrCat(
                  "1 task waits for a worker of device class '", first,
                  "': of its 1 worker, 1 is lost, last heard from at ",
                  absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", registered, absl::UTCTimeZone()))));
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.job_id());
  ASSERT_TRUE(tuning_->CancelJob(Context().get(), cancel, &job).ok());
  EXPECT_EQ(job.waiting(), "");  // an ended job waits for nothing
}

// Sets `stop` while it measures (a SIGTERM arriving mid-lease), then measures with `real`.
class StopsTheWorker : public Measurer {
 public:
  StopsTheWorker(Measurer* real, std::atomic<bool>* stop) : real_(real), stop_(stop) {}
  DeviceInfo device() const override { return real_->device(); }
  absl::StatusOr<std::vector<MeasureResult>> Measure(
      const TaskKey& task, const std::vector<Configuration>& configs) override {
    *stop_ = true;
    return real_->Measure(task, configs);
  }

 private:
  Measurer* real_;
  std::atomic<bool>* stop_;
};

// A worker told to stop while its server is unreachable tries its last report for a short
// grace, not for the whole lease: it held its shutdown for the lease timeout (25 s of 30 by
// hand; minutes with long leases). The bound below is 6x the grace, far from the 120 s lease.
TEST_F(ServerTest, AStoppingWorkerGivesUpItsLastReportSoonWhenTheServerIsGone) {
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = ThreeTaskSpec(4);
  v1::Job job;
  ASSERT_TRUE(tuning_->SubmitJob(Context().get(), submit, &job).ok());
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpaces[0]));
  ReplayMeasurer replay(recorded->records);
  std::atomic<bool> stop{false};
  StopsTheWorker stops(&replay, &stop);
  FlakyReports gone(workers_.get(), /*outages=*/1'000'000);  // every report: unreachable
  gone.lease_ms = 120'000;
  WorkerLoopOptions options;
  options.max_candidates = 4;
  WorkerLoop loop(&gone, &stops, options, &stop);
  const absl::Time start = absl::Now();
  EXPECT_TRUE(loop.Run().ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  EXPECT_EQ(gone.filled_leases, 1);  // stopping: no lease after it
  EXPECT_EQ(loop.reported(), 0);
}

// Measures one configuration at a time, stopping at the caller's stop check; its first call
// waits after its first configuration until the check says stop (at most 10 s).
class StopsWhenTold : public Measurer {
 public:
  explicit StopsWhenTold(Measurer* real) : real_(real) {}
  DeviceInfo device() const override { return real_->device(); }
  absl::StatusOr<std::vector<MeasureResult>> Measure(
      const TaskKey& task, const std::vector<Configuration>& configs) override {
    const bool first_call = calls_++ == 0;
    std::vector<MeasureResult> results;
    for (const Configuration& config : configs) {
      if (StopRequested()) {
        stopped_after = static_cast<int>(results.size());
        return Stopped(results.size(), configs.size());
      }
      KTUNE_ASSIGN_OR_RETURN(std::vector<MeasureResult> one, real_->Measure(task, {config}));
      results.push_back(one.front());
      for (int i = 0; first_call && i < 200 && !StopRequested(); ++i) {
        absl::SleepFor(absl::Milliseconds(50));
      }
    }
    return results;
  }
  int stopped_after = -1;  // configurations measured by the call that stopped; -1: none did

 private:
  Measurer* real_;
  int calls_ = 0;
};

TEST_F(ServerTest, AWorkerStopsMeasuringALeaseTheServerTookBackBetweenCandidates) {
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = ThreeTaskSpec(4);
  v1::Job job;
  ASSERT_TRUE(tuning_->SubmitJob(Context().get(), submit, &job).ok());
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpaces[0]));
  ReplayMeasurer replay(recorded->records);
  // As above, the lease is taken back while its first candidate's measurement is done: the
  // other three of the lease are not measured (they were, for nothing, before the stop check).
  StopsWhenTold stops(&replay);
  FlakyReports flaky(workers_.get(), /*outages=*/0, /*heartbeat_outages=*/4);
  flaky.before_heartbeats_return = [&] {
    AnotherWorkerTakesThem(workers_.get(), replay.device(), 4);
  };
  WorkerLoopOptions options;
  options.max_candidates = 4;
  options.idle_exit = absl::Milliseconds(300);
  WorkerLoop loop(&flaky, &stops, options);
  ASSERT_TRUE(loop.Run().ok());
  EXPECT_EQ(stops.stopped_after, 1);
  EXPECT_EQ(flaky.filled_leases, 1);
  EXPECT_EQ(flaky.reports_sent, 0);
  EXPECT_EQ(loop.reported(), 0);
  v1::GetJobRequest get;
  get.set_job_id(job.job_id());
  ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &job).ok());
  EXPECT_EQ(job.tasks(0).measurements_done(), 4);
}

// A measurer whose timer is broken: every time it returns is NaN.
class NanTimes : public Measurer {
 public:
  explicit NanTimes(Measurer* real) : real_(real) {}
  DeviceInfo device() const override { return real_->device(); }
  absl::StatusOr<std::vector<MeasureResult>> Measure(
      const TaskKey& task, const std::vector<Configuration>& configs) override {
    KTUNE_ASSIGN_OR_RETURN(std::vector<MeasureResult> results, real_->Measure(task, configs));
    for (MeasureResult& r : results) {
      for (double& t : r.repeat_times_ms) t = NAN;
    }
    return results;
  }

 private:
  Measurer* real_;
};

TEST_F(ServerTest, AWorkerReportsTimesTheServerWouldRefuseAsFailedMeasurements) {
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = ThreeTaskSpec(4);
  v1::Job job;
  ASSERT_TRUE(tuning_->SubmitJob(Context().get(), submit, &job).ok());
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpaces[0]));
  ReplayMeasurer replay(recorded->records);
  NanTimes broken(&replay);
  WorkerLoopOptions options;
  options.idle_exit = absl::Milliseconds(300);
  WorkerLoop loop(workers_.get(), &broken, options);
  ASSERT_TRUE(loop.Run().ok());  // the worker carries on
  EXPECT_EQ(loop.reported(), 4);
  v1::GetJobRequest get;
  get.set_job_id(job.job_id());
  ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &job).ok());
  EXPECT_EQ(job.tasks(0).measurements_done(), 4);
  EXPECT_EQ(job.tasks(0).measurements_failed(), 4);
  EXPECT_FALSE(job.tasks(0).has_best_time_ms());
}

// A worker capped at 3 measurements leases no more than it may measure (a lease of 8 took it to
// 7, past its cap).
TEST_F(ServerTest, AWorkersMeasurementCapBoundsItsLeases) {
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = ThreeTaskSpec(8);
  v1::Job job;
  ASSERT_TRUE(tuning_->SubmitJob(Context().get(), submit, &job).ok());
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpaces[0]));
  ASSERT_TRUE(recorded.ok());
  ReplayMeasurer measurer(recorded->records);
  WorkerLoopOptions options;
  options.max_candidates = 8;
  options.max_measurements = 3;
  WorkerLoop loop(workers_.get(), &measurer, options);
  ASSERT_TRUE(loop.Run().ok());
  EXPECT_EQ(loop.reported(), 3);
  v1::GetJobRequest get;
  get.set_job_id(job.job_id());
  ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &job).ok());
  EXPECT_LE(job.measurements_done(), 3);  // (the last report may commit just after)
}

TEST_F(ServerTest, JobsShareWorkersByPriorityAndNoneStarves) {
  // Two jobs on the same device class, priorities 90 and 0; one worker leases one candidate at
  // a time. The high-priority job gets most leases, the low one still gets some.
  v1::SubmitJobRequest high, low;
  *high.mutable_spec() = ThreeTaskSpec(200);
  high.mutable_spec()->set_priority(90);
  *low.mutable_spec() = ThreeTaskSpec(200);
  low.mutable_spec()->set_priority(0);
  for (v1::SubmitJobRequest* r : {&high, &low}) {
    r->mutable_spec()->clear_device_classes();
    r->mutable_spec()->add_device_classes(ThreeTaskSpec(1).device_classes(0));
  }
  v1::Job high_job, low_job;
  ASSERT_TRUE(tuning_->SubmitJob(Context().get(), high, &high_job).ok());
  ASSERT_TRUE(tuning_->SubmitJob(Context().get(), low, &low_job).ok());
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpaces[0]));
  ReplayMeasurer measurer(recorded->records);
  WorkerLoopOptions options;
  options.max_candidates = 1;
  options.max_measurements = 91;
  WorkerLoop loop(workers_.get(), &measurer, options);
  ASSERT_TRUE(loop.Run().ok());
  v1::GetJobRequest get;
  get.set_job_id(high_job.job_id());
  ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &high_job).ok());
  get.set_job_id(low_job.job_id());
  ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &low_job).ok());
  EXPECT_EQ(high_job.measurements_done() + low_job.measurements_done(), 91);
  EXPECT_GE(low_job.measurements_done(), 1);    // not starved
  EXPECT_GE(high_job.measurements_done(), 80);  // 91 : 1 by stride
}

TEST_F(ServerTest, TheStandardHealthCheckSaysServing) {
  grpc::GenericStub generic(channel_);
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1), response;
  std::promise<grpc::Status> done;
  auto ctx = Context();
  generic.UnaryCall(ctx.get(), "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                    &response, [&](grpc::Status status) { done.set_value(status); });
  grpc::Status s = done.get_future().get();
  ASSERT_TRUE(s.ok()) << s.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& slice : slices) bytes.append(slice.begin(), slice.end());
  EXPECT_EQ(bytes, std::string("\x08\x01"));  // HealthCheckResponse{status: SERVING}
}

// A recorded space of a kernel named as a built-in one (Kernel Tuner's gemm files: problem {})
// answers QueryBest with the problem as recorded, as `ktune best` answers it.
TEST_F(ServerTest, ARecordedSpaceNamedAsABuiltinKernelIsFound) {
  Record r;
  r.kernel = "gemm";
  r.device = DeviceInfo::FromName("RTX_Titan");
  r.config = {{"MWG", int64_t{64}}};
  r.time_ms = 1.5;
  r.repeat_times_ms = {1.5};
  FillRepeatStatistics(r);
  r.source = "import:gemm_RTX_Titan_kernel_tuner_cache.json.gz";
  grpc::ClientContext import_ctx;
  v1::ImportRecordsResponse imported;
  auto writer = tuning_->ImportRecords(&import_ctx, &imported);
  ASSERT_TRUE(writer->Write(ToProto(r)));
  writer->WritesDone();
  ASSERT_TRUE(writer->Finish().ok());
  v1::QueryBestRequest query;
  query.mutable_kernel()->set_name("gemm");
  query.mutable_device()->set_device_class("RTX_Titan");
  v1::QueryBestResponse answer;
  ASSERT_TRUE(tuning_->QueryBest(Context().get(), query, &answer).ok());
  ASSERT_EQ(answer.best_size(), 1);
  EXPECT_DOUBLE_EQ(answer.best(0).time_ms(), 1.5);
}

TEST_F(ServerTest, ListKernelsShowsTheRegistry) {
  v1::ListKernelsResponse kernels;
  ASSERT_TRUE(tuning_->ListKernels(Context().get(), v1::ListKernelsRequest(), &kernels).ok());
  ASSERT_GE(kernels.kernels_size(), 3);
  EXPECT_EQ(kernels.kernels(0).kernel().name(), "gemm");
  EXPECT_EQ(kernels.kernels(0).kernel().version().size(), 16u);
  EXPECT_EQ(kernels.kernels(0).default_config().params().at("MR").int_value(), 6);
}

// A replay server's kernels are its recorded spaces: listed with the problem and class a job
// gives (ListKernels showed the registry only, never what the server could tune).
TEST_F(ServerTest, ListKernelsShowsTheRecordedSpacesAReplayServerTunes) {
  v1::ListKernelsResponse kernels;
  ASSERT_TRUE(tuning_->ListKernels(Context().get(), v1::ListKernelsRequest(), &kernels).ok());
  std::vector<const v1::KernelInfo*> replayed;
  for (const v1::KernelInfo& k : kernels.kernels()) {
    if (k.language() == "replay") replayed.push_back(&k);
  }
  ASSERT_EQ(replayed.size(), std::size(kSpaces));
  for (const char* file : kSpaces) {
    auto recorded = LoadRecordedSpace(testing::SpaceFile(file));
    ASSERT_TRUE(recorded.ok());
    const Record& first = recorded->records.front();
    const auto it = std::find_if(replayed.begin(), replayed.end(), [&](const v1::KernelInfo* k) {
      return absl::StrContains(k->description(),
                               absl::StrCat("device class '", first.device.device_class, "'"));
    });
    ASSERT_NE(it, replayed.end()) << file;
    EXPECT_EQ((*it)->kernel().name(), first.kernel);
    EXPECT_THAT((*it)->description(), HasSubstr(CanonicalJson(first.problem)));
    EXPECT_EQ((*it)->space_size(), recorded->space.size());
    ASSERT_EQ((*it)->parameters_size(), static_cast<int>(recorded->space.parameters().size()));
    EXPECT_EQ((*it)->parameters(0).name(), recorded->space.parameters()[0].name);
    EXPECT_EQ((*it)->parameters(0).values_size(),
              static_cast<int>(recorded->space.parameters()[0].values.size()));
  }
}

// A job submitted without a seed gets one of its own, stored with it: two such jobs of one task
// propose different configurations (every job had seed 1, and concurrent jobs of one task
// measured the same configurations twice). A seed given is kept.
TEST_F(ServerTest, AJobWithoutASeedGetsOneOfItsOwn) {
  std::vector<uint64_t> seeds;
  for (uint64_t given : {uint64_t{0}, uint64_t{0}, uint64_t{9}}) {
    v1::SubmitJobRequest submit;
    *submit.mutable_spec() = ThreeTaskSpec(7);
    submit.mutable_spec()->set_seed(given);
    v1::Job job;
    ASSERT_TRUE(tuning_->SubmitJob(Context().get(), submit, &job).ok());
    v1::GetJobRequest get;
    get.set_job_id(job.job_id());
    ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &job).ok());
    seeds.push_back(job.spec().seed());
  }
  EXPECT_NE(seeds[0], 0u);
  EXPECT_NE(seeds[1], 0u);
  EXPECT_NE(seeds[0], seeds[1]);
  EXPECT_EQ(seeds[2], 9u);
}

// GetJob and ListJobs give the spec a job was submitted with (they gave its name alone); the
// kernels, problems and device classes come with the tasks (GetJob), not in every list row.
TEST_F(ServerTest, AJobKeepsTheSpecItWasSubmittedWith) {
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = ThreeTaskSpec(7);
  v1::JobSpec& spec = *submit.mutable_spec();
  spec.set_strategy(v1::STRATEGY_ANNEALING);
  spec.set_priority(42);
  spec.set_seed(9);
  spec.set_batch_size(3);
  spec.set_budget_wall_seconds(3600);
  spec.set_agent_share(0.5);
  spec.set_retune("off");
  (*spec.add_initial_configs()->mutable_params())["block_size_x"].set_int_value(32);
  v1::Job submitted;
  ASSERT_TRUE(tuning_->SubmitJob(Context().get(), submit, &submitted).ok());
  v1::GetJobRequest get;
  get.set_job_id(submitted.job_id());
  v1::Job job;
  ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &job).ok());
  v1::JobSpec expected = spec;
  expected.mutable_kernels(0)->set_version(job.spec().kernels(0).version());  // the server's
  EXPECT_EQ(job.spec().DebugString(), expected.DebugString());
  v1::ListJobsResponse listed;
  ASSERT_TRUE(tuning_->ListJobs(Context().get(), v1::ListJobsRequest(), &listed).ok());
  ASSERT_EQ(listed.jobs_size(), 1);
  EXPECT_EQ(listed.jobs(0).spec().priority(), 42);
  EXPECT_EQ(listed.jobs(0).spec().budget_measurements(), 7);
  EXPECT_EQ(listed.jobs(0).spec().strategy(), v1::STRATEGY_ANNEALING);
  EXPECT_EQ(listed.jobs(0).spec().device_classes_size(), 0);  // with the tasks only
  EXPECT_EQ(listed.jobs(0).task_count(), 3);                  // counted, not copied
}

// A YAML spec's initial configurations; what is not a list of mappings is refused, naming the
// field.
TEST(JobSpecTextTest, InitialConfigurationsAreAListOfMappings) {
  absl::StatusOr<v1::JobSpec> spec = ParseJobSpecText(
      "kernels: [gemm]\nproblems: [{M: 64}]\ndevice_classes: [cpu]\nbudget: 5\n"
      "initial_configs: [{MR: 4, NR: 16}, {MR: 8}]\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->initial_configs_size(), 2);
  EXPECT_EQ(spec->initial_configs(0).params().at("NR").int_value(), 16);
  EXPECT_EQ(spec->initial_configs(1).params().at("MR").int_value(), 8);
  for (const char* bad :
       {"initial_configs: 5\n", "initial_configs: [4]\n", "initial_configs: [{MR: 4, MR: 8}]\n"}) {
    absl::StatusOr<v1::JobSpec> refused =
        ParseJobSpecText(absl::StrCat("kernels: [gemm]\nbudget: 5\n", bad));
    EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << bad;
    EXPECT_THAT(std::string(refused.status().message()), ::testing::HasSubstr("initial")) << bad;
  }
}

// An initial configuration naming a parameter no kernel of the job has is refused at submit (every
// task skipped it, unseen).
TEST(JobSpecTextTest, AnInitialConfigurationOfNoKernelOfTheJobIsRefused) {
  KernelRegistry registry = KernelRegistry::WithBuiltins();
  TaskSpaces spaces(&registry);
  absl::StatusOr<v1::JobSpec> spec = ParseJobSpecText(
      "kernels: [gemm]\nproblems: [{M: 64, N: 64, K: 64}]\ndevice_classes: [cpu:test]\n"
      "budget: 5\ninitial_configs: [{MR: 4}, {MX: 4}]\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  absl::StatusOr<JobRequest> refused = ToJobRequest(*spec, spaces);
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr("initial_configs[1]: 'MX' is not a parameter of gemm"));
  spec->mutable_initial_configs()->RemoveLast();
  absl::StatusOr<JobRequest> taken = ToJobRequest(*spec, spaces);
  ASSERT_TRUE(taken.ok()) << taken.status();
  ASSERT_EQ(taken->initial.size(), 1u);
}

// A thread count for a kernel that takes none is refused at submit (the job was created, then
// failed at its first lease).
TEST(JobSpecTextTest, AThreadCountForAKernelWithoutThreadsIsRefused) {
  KernelRegistry registry = KernelRegistry::WithBuiltins();
  TaskSpaces spaces(&registry);
  absl::StatusOr<v1::JobSpec> spec = ParseJobSpecText(
      "kernels: [cuda_reduce_rows]\nproblems: [{rows: 64, cols: 64}]\ndevice_classes: [H100]\n"
      "budget: 5\nthreads: 2\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  absl::StatusOr<JobRequest> refused = ToJobRequest(*spec, spaces);
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr("threads: kernel 'cuda_reduce_rows' has no threads parameter"));
  spec->set_threads(0);
  EXPECT_TRUE(ToJobRequest(*spec, spaces).ok());
  // A problem no worker can allocate: refused at submit (every configuration failed at the
  // workers), though its records can still be read and queried.
  absl::StatusOr<v1::JobSpec> huge = ParseJobSpecText(
      "kernels: [gemm]\nproblems: [{M: 65536, N: 65536, K: 65536}]\ndevice_classes: [cpu:test]\n"
      "budget: 5\n");
  ASSERT_TRUE(huge.ok()) << huge.status();
  absl::StatusOr<JobRequest> too_large = ToJobRequest(*huge, spaces);
  EXPECT_TRUE(absl::IsInvalidArgument(too_large.status())) << too_large.status();
  EXPECT_THAT(std::string(too_large.status().message()),
              ::testing::HasSubstr("the problem is too large: buffer A"));
}

// After a restart, ListJobs reads a job that ended before from the progress its tasks stored
// (counting every record of every task on each call took seconds), and says what GetJob, which
// counts the records, says.
TEST_F(ServerTest, ListJobsAfterARestartAgreesWithGetJob) {
  v1::Job job;
  job.set_job_id(SubmitThreeTasksAndMeasureFour());
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.job_id());
  ASSERT_TRUE(tuning_->CancelJob(Context().get(), cancel, &job).ok());
  server_->Shutdown();
  server_.reset();
  SetUp();  // a new server process on the same database
  v1::ListJobsResponse listed;
  ASSERT_TRUE(tuning_->ListJobs(Context().get(), v1::ListJobsRequest(), &listed).ok());
  ASSERT_EQ(listed.jobs_size(), 1);
  v1::GetJobRequest get;
  get.set_job_id(job.job_id());
  v1::Job counted;
  ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &counted).ok());
  EXPECT_EQ(counted.measurements_done(), 4);
  EXPECT_EQ(listed.jobs(0).measurements_done(), counted.measurements_done());
  EXPECT_EQ(listed.jobs(0).measurements_total(), counted.measurements_total());
  EXPECT_EQ(listed.jobs(0).state(), v1::JOB_STATE_CANCELLED);
}

// GetJob lists a job's tasks in pages (a 65,536-task listing is 5.9 MB, past a default client's
// 4 MiB), in the job's order, with the job's counts over all its tasks on every page: for a job
// in memory and for one read from the database after a restart (which counts only the page's
// records).
TEST_F(ServerTest, GetJobListsItsTasksInPages) {
  v1::Job job;
  job.set_job_id(SubmitThreeTasksAndMeasureFour());
  const auto check_pages = [&](const char* when) {
    SCOPED_TRACE(when);
    v1::GetJobRequest get;
    get.set_job_id(job.job_id());
    v1::Job whole;
    ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &whole).ok());
    ASSERT_EQ(whole.tasks_size(), 3);
    EXPECT_EQ(whole.next_task_page_token(), "");
    get.set_task_page_size(1);
    std::vector<std::string> tokens;
    for (int i = 0; i < 3; ++i) {
      v1::Job page;
      ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &page).ok());
      ASSERT_EQ(page.tasks_size(), 1);
      EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(page.tasks(0), whole.tasks(i)))
          << page.tasks(0).DebugString() << "\n"
          << whole.tasks(i).DebugString();
      EXPECT_EQ(page.task_count(), 3);
      EXPECT_EQ(page.measurements_done(), whole.measurements_done());
      EXPECT_EQ(page.measurements_total(), whole.measurements_total());
      tokens.push_back(page.next_task_page_token());
      get.set_task_page_token(page.next_task_page_token());
    }
    EXPECT_EQ(tokens, (std::vector<std::string>{"1", "2", ""}));
    EXPECT_EQ(whole.measurements_done(), 4);
    for (int size : {-1, 4097}) {
      get.set_task_page_size(size);
      EXPECT_EQ(tuning_->GetJob(Context().get(), get, &whole).error_code(),
                grpc::StatusCode::INVALID_ARGUMENT);
    }
    get.set_task_page_size(0);
    get.set_task_page_token("x");
    const grpc::Status bad = tuning_->GetJob(Context().get(), get, &whole);
    EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(bad.error_message(), HasSubstr("use next_task_page_token"));
  };
  check_pages("running");
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.job_id());
  ASSERT_TRUE(tuning_->CancelJob(Context().get(), cancel, &job).ok());
  check_pages("ended, in memory");
  server_->Shutdown();
  server_.reset();
  SetUp();  // a new server process on the same database
  check_pages("ended, from the database");
}

// Register takes what a worker is, within bounds: fields that went into the log (a newline in
// the host forged a line) and into every ListWorkers answer (200 KB families, 100 KB languages)
// are checked, each refusal naming its field.
TEST_F(ServerTest, RegisterRefusesFieldsOutOfBounds) {
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpaces[0]));
  const v1::DeviceFingerprint device = ToProto(ReplayMeasurer(recorded->records).device());
  for (const auto& [change, says] :
       std::vector<std::pair<std::function<void(v1::RegisterRequest&)>, std::string>>{
           {[](v1::RegisterRequest& r) { r.set_host("evil\n2026 worker_left worker_id=w1"); },
            "host has a control character"},
           {[](v1::RegisterRequest& r) { r.mutable_device()->set_family(std::string(300, 'f')); },
            "device.family is longer than 256 bytes"},
           {[](v1::RegisterRequest& r) { r.mutable_device()->set_device_class("a\tb"); },
            "must not hold control characters"},
           {[](v1::RegisterRequest& r) {
              r.mutable_capabilities()->add_languages(std::string(100, 'l'));
            },
            "capabilities.languages: names of 1 to 32 bytes"},
           {[](v1::RegisterRequest& r) { r.mutable_capabilities()->set_max_parallel(-5); },
            "max_parallel must not be negative"}}) {
    v1::RegisterRequest reg;
    *reg.mutable_device() = device;
    change(reg);
    v1::RegisterResponse worker;
    const grpc::Status s = workers_->Register(Context().get(), reg, &worker);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << says;
    EXPECT_THAT(s.error_message(), HasSubstr(says));
  }
  EXPECT_FALSE(RegisterWorker().empty());  // the same worker, within bounds
}

TEST_F(ServerTest, BadRequestsGetTheRightCodeAndSayWhatIsWrong) {
  v1::SubmitJobRequest unknown_kernel;
  *unknown_kernel.mutable_spec() = ThreeTaskSpec(4);
  unknown_kernel.mutable_spec()->mutable_kernels(0)->set_name("fft");
  v1::Job job;
  grpc::Status s = tuning_->SubmitJob(Context().get(), unknown_kernel, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("unknown kernel 'fft'"));
  // The kernels it may have meant: the registry's, and the recorded spaces' it replays.
  EXPECT_THAT(s.error_message(), HasSubstr("known kernels: gemm, "));
  EXPECT_THAT(s.error_message(), HasSubstr("; recorded spaces this server replays: convolution"));
  // A recorded space's kernel for a class it was not recorded on: what it was recorded for (it
  // said "unknown kernel", of a kernel the server lists).
  v1::SubmitJobRequest elsewhere;
  *elsewhere.mutable_spec() = ThreeTaskSpec(4);
  elsewhere.mutable_spec()->clear_device_classes();
  elsewhere.mutable_spec()->add_device_classes("NOWORKER");
  s = tuning_->SubmitJob(Context().get(), elsewhere, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("is a recorded space this server replays, for device "
                                           "class '"));
  EXPECT_THAT(s.error_message(), HasSubstr("not for device class 'NOWORKER'"));

  v1::SubmitJobRequest bad_problem;
  bad_problem.set_spec_text(
      "kernels: [gemm]\nproblems: [{M: -4, N: 8, K: 8}]\ndevice_classes: [cpu:x]\nbudget: 5\n");
  s = tuning_->SubmitJob(Context().get(), bad_problem, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("M=-4 is out of range"));

  // Tasks no worker could ever measure (they waited queued for ever, without a word).
  for (const auto& [text, expect] : std::vector<std::pair<std::string, std::string>>{
           {"kernels: [cuda_softmax]\nproblems: [{rows: 64, cols: 64}]\ndevice_classes: [cpu:x]\n"
            "budget: 5\n",
            "is a CUDA kernel, and cpu:x is a CPU"},
           {"kernels: [gemm]\nproblems: [{M: 8, N: 8, K: 8}]\ndevice_classes: [cpu]\nbudget: 5\n",
            "device class 'cpu' names no worker"}}) {
    v1::SubmitJobRequest request;
    request.set_spec_text(text);
    s = tuning_->SubmitJob(Context().get(), request, &job);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << text;
    EXPECT_THAT(s.error_message(), HasSubstr(expect)) << text;
  }

  v1::SubmitJobRequest bad_yaml;
  bad_yaml.set_spec_text("kernels: [gemm\nbudget: 5\n");
  s = tuning_->SubmitJob(Context().get(), bad_yaml, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("line"));

  v1::SubmitJobRequest unknown_field;
  unknown_field.set_spec_text("kernels: [gemm]\nbudgett: 5\n");
  s = tuning_->SubmitJob(Context().get(), unknown_field, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("unknown field 'budgett'"));

  // YAML keeps the last of two equal keys; a spec that gives one twice is refused, and a value
  // of the wrong type names its field.
  for (const auto& [text, expect] : std::vector<std::pair<std::string, std::string>>{
           {"kernels: [gemm]\nbudget: 5\nbudget: 500\n", "line 3: 'budget' appears twice"},
           {"kernels: [gemm]\nproblems: [{M: 8, M: 16}]\n", "problem parameter 'M' appears twice"},
           // What the field takes and what it got ("has the wrong type (bad conversion)").
           {"kernels: [gemm]\nbudget: lots\n",
            "line 2: 'budget' must be a whole number of measurements per task, not 'lots'"},
           {"kernels: [gemm]\nbudget: 10.5\n", "not '10.5'"},
           {"kernels: [gemm]\nbudget: 5\nseed: -1\n",
            "'seed' must be a whole number from 0 to 18446744073709551615, not '-1'"},
           {"kernels: [gemm]\nbudget: 5\npriority: null\n", "not nothing (null)"},
           {"kernels: [gemm]\nbudget: 5\nname: [a, b]\n", "'name' must be text, not a list"},
           {"kernels: [gemm]\nproblems: [{M: 8}]\ndevice_classes: [x]\n",
            "budget is missing or 0: give the measurements per task"}}) {
    v1::SubmitJobRequest request;
    request.set_spec_text(text);
    s = tuning_->SubmitJob(Context().get(), request, &job);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << text;
    EXPECT_THAT(s.error_message(), HasSubstr(expect)) << text;
  }

  // YAML aliases repeat their anchor: a spec of 22 KB read as a million problem parameters (one
  // of 1 MiB, nesting aliases, as more than the server's memory). Refused before any is copied.
  {
    std::string anchor = "&p {";
    for (int i = 0; i < 200; ++i) absl::StrAppend(&anchor, i ? ", " : "", "k", i, ": 1");
    std::string text = absl::StrCat("kernels: [gemm]\nbudget: 5\nproblems: [", anchor, "}");
    for (int i = 0; i < 5000; ++i) text += ", *p";
    v1::SubmitJobRequest request;
    request.set_spec_text(text + "]\n");
    s = tuning_->SubmitJob(Context().get(), request, &job);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("once its YAML aliases are expanded"));
    // Aliases of aliases: ten levels of ten read as ten billion values; refused as quickly.
    std::string nested = "kernels: [gemm]\nbudget: 5\nname: x\nseed: 1\nbatch_size: 1\n";
    std::string previous = "[1, 1, 1, 1, 1, 1, 1, 1, 1, 1]";
    for (int level = 0; level < 10; ++level) {
      const std::string anchor = absl::StrCat("a", level);
      absl::StrAppend(&nested, "x", level, ": &", anchor, " ", previous, "\n");
      previous = "[";
      for (int i = 0; i < 10; ++i) absl::StrAppend(&previous, i ? ", *" : "*", anchor);
      previous += "]";
    }
    request.set_spec_text(absl::StrCat(nested, "problems: ", previous, "\n"));
    s = tuning_->SubmitJob(Context().get(), request, &job);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("once its YAML aliases are expanded"));
  }

  v1::SubmitJobRequest zero_budget;
  *zero_budget.mutable_spec() = ThreeTaskSpec(0);
  s = tuning_->SubmitJob(Context().get(), zero_budget, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("budget"));

  v1::SubmitJobRequest repeated_task;
  *repeated_task.mutable_spec() = ThreeTaskSpec(4);
  *repeated_task.mutable_spec()->add_kernels() = repeated_task.spec().kernels(0);
  s = tuning_->SubmitJob(Context().get(), repeated_task, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("appears twice"));

  v1::SubmitJobRequest negative_wall_time;
  *negative_wall_time.mutable_spec() = ThreeTaskSpec(4);
  negative_wall_time.mutable_spec()->set_budget_wall_seconds(-1);
  s = tuning_->SubmitJob(Context().get(), negative_wall_time, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("budget_wall_seconds"));

  // An enum value the API does not have, and names past every other request's limit (a 3 MB
  // device class was stored, and echoed in errors bigger than gRPC's metadata limit).
  v1::SubmitJobRequest unknown_strategy;
  *unknown_strategy.mutable_spec() = ThreeTaskSpec(4);
  unknown_strategy.mutable_spec()->set_strategy(static_cast<v1::Strategy>(99));
  s = tuning_->SubmitJob(Context().get(), unknown_strategy, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("strategy 99 is not a known Strategy value"));
  v1::SubmitJobRequest long_names;
  *long_names.mutable_spec() = ThreeTaskSpec(4);
  long_names.mutable_spec()->set_device_classes(0, std::string(300'000, 'x'));
  s = tuning_->SubmitJob(Context().get(), long_names, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("device_classes: a class is longer than 256 bytes"));
  long_names.mutable_spec()->set_device_classes(0, "cpu:x");
  long_names.mutable_spec()->mutable_kernels(0)->set_name(std::string(300'000, 'k'));
  s = tuning_->SubmitJob(Context().get(), long_names, &job);
  EXPECT_THAT(s.error_message(), HasSubstr("kernels: a name or version is longer than 256 bytes"));

  v1::ListJobsRequest all_states;
  for (int i = 0; i < 8; ++i) all_states.add_states(v1::JOB_STATE_QUEUED);
  v1::ListJobsResponse jobs;
  s = tuning_->ListJobs(Context().get(), all_states, &jobs);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // A state number no job has (an empty list), a negative page (the default), a page token the
  // server never gave (-3 listed jobs again and again): each refused, naming what.
  for (const auto& [spoil, says] :
       std::vector<std::pair<std::function<void(v1::ListJobsRequest&)>, std::string>>{
           {[](v1::ListJobsRequest& r) { r.add_states(static_cast<v1::JobState>(99)); },
            "states: 99 is no job state"},
           {[](v1::ListJobsRequest& r) { r.set_page_size(-5); }, "page_size must be between"},
           {[](v1::ListJobsRequest& r) { r.set_page_size(1001); }, "page_size must be between"},
           {[](v1::ListJobsRequest& r) { r.set_page_token("-3"); }, "page_token is not one"}}) {
    v1::ListJobsRequest request;
    spoil(request);
    s = tuning_->ListJobs(Context().get(), request, &jobs);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << says;
    EXPECT_THAT(s.error_message(), HasSubstr(says));
  }
  v1::HeartbeatRequest many_leases;
  many_leases.set_worker_id("nobody");
  for (int i = 0; i < 65; ++i) many_leases.add_lease_ids("L1");
  v1::HeartbeatResponse beat;
  s = workers_->Heartbeat(Context().get(), many_leases, &beat);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("at most 64"));

  v1::GetJobRequest missing;
  missing.set_job_id("424242");
  s = tuning_->GetJob(Context().get(), missing, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  missing.set_job_id("abc");
  s = tuning_->GetJob(Context().get(), missing, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  missing.set_job_id(std::string(100'000, '9') + "x");  // the message quotes 64 bytes of it
  s = tuning_->GetJob(Context().get(), missing, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LT(s.error_message().size(), 200u);

  v1::LeaseBatchRequest stranger;
  stranger.set_worker_id("nobody");
  stranger.set_max_candidates(1);
  v1::LeaseBatchResponse lease;
  s = workers_->LeaseBatch(Context().get(), stranger, &lease);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);

  v1::QueryBestRequest no_kernel;
  v1::QueryBestResponse answer;
  s = tuning_->QueryBest(Context().get(), no_kernel, &answer);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("kernel.name is required"));
  v1::QueryBestRequest no_device = no_kernel;  // answered NONE, as if a device had been asked
  no_device.mutable_kernel()->set_name("gemm");
  s = tuning_->QueryBest(Context().get(), no_device, &answer);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("device.device_class is required"));
  v1::QueryBestRequest many_extras = no_device;  // the documented limits: 32 each
  many_extras.mutable_device()->set_device_class("cpu:x");
  for (int i = 0; i < 33; ++i)
    (*many_extras.mutable_device()->mutable_extra())[absl::StrCat(i)] = "";
  s = tuning_->QueryBest(Context().get(), many_extras, &answer);
  EXPECT_THAT(s.error_message(), HasSubstr("device.extra: at most 32 entries"));
  v1::QueryBestRequest many_params = no_device;
  many_params.mutable_device()->set_device_class("cpu:x");
  for (int i = 0; i < 35; ++i) {
    (*many_params.mutable_problem()->mutable_params())[absl::StrCat("p", i)].set_int_value(1);
  }
  s = tuning_->QueryBest(Context().get(), many_params, &answer);
  EXPECT_THAT(s.error_message(), HasSubstr("problem: at most 34 parameters"));
  v1::QueryBestRequest too_many = no_kernel;
  too_many.mutable_kernel()->set_name("gemm");
  too_many.mutable_device()->set_device_class("cpu:x");
  too_many.set_top_k(101);
  s = tuning_->QueryBest(Context().get(), too_many, &answer);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("top_k"));

  v1::QueryBestRequest long_class = too_many;
  long_class.set_top_k(1);
  long_class.mutable_device()->set_device_class(std::string(300, 'x'));
  s = tuning_->QueryBest(Context().get(), long_class, &answer);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("device.device_class is 300 bytes long; at most 256"));

  // Bytes that are not a QueryBestRequest (QueryBest parses its request itself).
  grpc::GenericStub generic(channel_);
  grpc::Slice garbage(std::string("\xff\xff\xff\xff"));
  grpc::ByteBuffer request(&garbage, 1), response;
  std::promise<grpc::Status> done;
  auto ctx = Context();
  generic.UnaryCall(ctx.get(), "/ktune.v1.TuningService/QueryBest", grpc::StubOptions(), &request,
                    &response, [&](grpc::Status status) { done.set_value(status); });
  s = done.get_future().get();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("not a QueryBestRequest"));

  // A message over the server's size limit.
  v1::SubmitJobRequest huge;
  huge.set_spec_text(std::string(5 << 20, '#'));
  s = tuning_->SubmitJob(Context().get(), huge, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("larger than max"));
}

TEST_F(ServerTest, AJobEndsDoneWhenItsWallTimeRunsOut) {
  FreezeClock();  // the wall time is the scheduler's: a slow first lease must not spend it
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = ThreeTaskSpec(1000);
  submit.mutable_spec()->set_budget_wall_seconds(1);
  v1::Job job;
  ASSERT_TRUE(tuning_->SubmitJob(Context().get(), submit, &job).ok());
  // A worker takes a lease and holds it past the deadline: the job waits for it, leases nothing
  // more, and ends once the lease is reported.
  const std::string worker = RegisterWorker();
  const v1::LeaseBatchResponse lease = Lease(worker, 2);
  v1::GetJobRequest get;
  get.set_job_id(job.job_id());
  for (int i = 0; i < 5; ++i) {  // 1.2 s, beating the heartbeat: past the wall time
    Advance(absl::Milliseconds(240));
    v1::HeartbeatRequest beat;
    beat.set_worker_id(worker);
    beat.add_lease_ids(lease.lease_id());
    v1::HeartbeatResponse revoked;
    ASSERT_TRUE(workers_->Heartbeat(Context().get(), beat, &revoked).ok());
  }
  ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &job).ok());
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);  // waiting for the lease
  v1::LeaseBatchRequest more;
  more.set_worker_id(worker);
  more.set_max_candidates(2);
  v1::LeaseBatchResponse none;
  ASSERT_TRUE(workers_->LeaseBatch(Context().get(), more, &none).ok());
  EXPECT_EQ(none.candidates_size(), 0);
  v1::ReportResultsResponse stored;
  ASSERT_TRUE(workers_->ReportResults(Context().get(), OkReport(worker, lease, 3.0), &stored).ok());
  EXPECT_EQ(stored.records_stored(), 2);
  // The scheduler's expiry tick (real time, every few hundred ms) sees the deadline passed and
  // ends the job: waited for, with a generous limit.
  for (int i = 0; i < 1200 && job.state() != v1::JOB_STATE_DONE; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
    ASSERT_TRUE(tuning_->GetJob(Context().get(), get, &job).ok());
  }
  EXPECT_EQ(job.state(), v1::JOB_STATE_DONE);
  EXPECT_THAT(job.message(), HasSubstr("wall-time budget ran out"));
  EXPECT_EQ(job.measurements_done(), 2);
}

TEST(ServerPredictionTest, ANeverTunedProblemGetsThePredictionOfTheNearestAndCanBeQueued) {
  testing::TempDir dir;
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  const KernelDefinition* gemm = registry.Find("gemm");
  auto problem_of = [&](int64_t n) {
    return *gemm->ValidateProblem({{"M", n}, {"N", n}, {"K", n}});
  };
  DeviceInfo device{R"({"cores":2,"name":"test"})", "cpu:test", "x86-64-v3"};
  {
    auto db = SqliteTuningDatabase::Open(dir.File("p.db"));
    ASSERT_TRUE(db.ok());
    std::vector<Record> records;
    for (int64_t n : {128, 4096}) {  // 256 is nearer to 128 (distance 3) than to 4096 (12)
      Configuration config = *gemm->DefaultConfiguration(problem_of(n), {2});
      config["MC"] = n == 128 ? int64_t{96} : int64_t{288};
      MeasureResult m;
      m.time_ms = 1.0;
      m.repeat_times_ms = {1.0};
      records.push_back(
          ToRecord({"gemm", gemm->Version(), problem_of(n), "cpu:test"}, device, config, m, "w"));
    }
    // A task whose only record failed, listed first of the class: its class's family is still
    // the devices' (it was read from the task's best answer, none, and the class dropped).
    Configuration failed_config = *gemm->DefaultConfiguration(problem_of(1024), {2});
    MeasureResult failed;
    failed.status = MeasurementStatus::kRuntimeError;
    failed.message = "crashed";
    records.push_back(ToRecord({"gemm", gemm->Version(), problem_of(1024), "cpu:test"}, device,
                               failed_config, failed, "w"));
    ASSERT_TRUE((*db)->AddRecords(records).ok());
  }
  TuningServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir.File("p.db");
  auto server = TuningServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto tuning = testing::LocalStub<v1::TuningService>((*server)->port());
  v1::QueryBestRequest query;
  query.mutable_kernel()->set_name("gemm");
  ToProto(Problem{{"M", int64_t{256}}, {"N", int64_t{256}}, {"K", int64_t{256}}},
          query.mutable_problem()->mutable_params());
  query.mutable_device()->set_device_class("cpu:test");
  v1::QueryBestResponse answer;
  ASSERT_TRUE(tuning->QueryBest(Context().get(), query, &answer).ok());
  EXPECT_EQ(answer.level(), v1::MATCH_LEVEL_PREDICTED);
  ASSERT_EQ(answer.best_size(), 1);
  EXPECT_EQ(answer.best(0).config().params().at("MC").int_value(), 96);
  EXPECT_TRUE(answer.queued_job_id().empty());
  // Another class of the same family may lend its tuned neighbour; a device of another family, or
  // of no known family, never does (a CPU's tiles were served to an A100).
  for (const auto& [device_class, family, predicted] :
       std::vector<std::tuple<std::string, std::string, bool>>{{"cpu:other", "x86-64-v3", true},
                                                               {"cpu:arm", "armv8", false},
                                                               {"A100", "", false},
                                                               {"cpu:unknown", "", false}}) {
    v1::QueryBestRequest elsewhere = query;
    elsewhere.mutable_device()->set_device_class(device_class);
    elsewhere.mutable_device()->set_family(family);
    ASSERT_TRUE(tuning->QueryBest(Context().get(), elsewhere, &answer).ok());
    EXPECT_EQ(answer.level(), predicted ? v1::MATCH_LEVEL_PREDICTED : v1::MATCH_LEVEL_NONE)
        << device_class;
    if (predicted) {  // the tuned neighbour it came from, and only it
      ASSERT_EQ(answer.best_size(), 1) << device_class;
      EXPECT_EQ(answer.best(0).device().device_class(), "cpu:test");
    }
  }

  query.set_tune_if_missing(true);
  // No worker of the class: no job that would wait (a compiler asking for each shape queued one
  // each, without bound, for a class no worker had), and the answer says why, predicted as before.
  ASSERT_TRUE(tuning->QueryBest(Context().get(), query, &answer).ok());
  EXPECT_EQ(answer.level(), v1::MATCH_LEVEL_PREDICTED);
  EXPECT_TRUE(answer.queued_job_id().empty());
  EXPECT_THAT(answer.not_queued(), HasSubstr("no worker of device class cpu:test is connected"));
  auto workers = testing::LocalStub<v1::WorkerService>((*server)->port());
  v1::RegisterRequest reg;
  *reg.mutable_device() = ToProto(device);
  v1::RegisterResponse registered;
  ASSERT_TRUE(workers->Register(Context().get(), reg, &registered).ok());
  ASSERT_TRUE(tuning->QueryBest(Context().get(), query, &answer).ok());
  const std::string job = answer.queued_job_id();
  EXPECT_FALSE(job.empty());
  EXPECT_EQ(answer.not_queued(), "");
  // At most 16 background jobs at once: the 17th problem is answered without one.
  int not_queued = 0;
  for (int64_t n = 300; n < 317; ++n) {
    v1::QueryBestRequest other = query;
    ToProto(Problem{{"M", n}, {"N", n}, {"K", n}}, other.mutable_problem()->mutable_params());
    ASSERT_TRUE(tuning->QueryBest(Context().get(), other, &answer).ok());
    if (answer.queued_job_id().empty()) {
      ++not_queued;
      EXPECT_THAT(answer.not_queued(), HasSubstr("16 tune_if_missing jobs are queued or running"));
    }
  }
  EXPECT_EQ(not_queued, 2);  // 1 + 17 asked, 16 queued
  ASSERT_TRUE(tuning->QueryBest(Context().get(), query, &answer).ok());
  EXPECT_EQ(answer.queued_job_id(), job);  // the same job, not a second one
  v1::GetJobRequest get;
  get.set_job_id(job);
  v1::Job queued;
  ASSERT_TRUE(tuning->GetJob(Context().get(), get, &queued).ok());
  EXPECT_EQ(queued.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(queued.tasks(0).task().device_class(), "cpu:test");
}

// A server on a new database in `dir` whose token file holds `tokens` (its lines).
absl::StatusOr<std::unique_ptr<TuningServer>> StartWithTokens(const testing::TempDir& dir,
                                                              const std::string& tokens) {
  std::ofstream(dir.File("tokens")) << tokens;
  TuningServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir.File("auth.db");
  options.auth_file = dir.File("tokens");
  return TuningServer::Start(options);
}

TEST(ServerAuthTest, TokensAndRolesAreEnforced) {
  testing::TempDir dir;
  auto server = StartWithTokens(dir,
                                "# token roles\n"
                                "worker-token-0123456789 worker\n"
                                "query-token-0123456789  query\n"
                                "admin-token-0123456789  admin\n");
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->port()),
                                     grpc::InsecureChannelCredentials());
  auto tuning = v1::TuningService::NewStub(channel);
  auto workers = v1::WorkerService::NewStub(channel);
  auto with = [](const std::string& token) {
    auto ctx = Context();
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    return ctx;
  };
  v1::ListJobsRequest list;
  v1::ListJobsResponse jobs;
  // A refusal is logged for the operator (who called, for which role, why), never with the token,
  // and a client retrying in a loop makes one event a second, not one a call.
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(tuning->ListJobs(with("guessed-token-0123456789").get(), list, &jobs).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  const std::string logged = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(logged, HasSubstr("auth_refused peer=ipv4:127.0.0.1:"));
  EXPECT_THAT(logged, HasSubstr("role=query reason=\"unknown token\""));
  EXPECT_THAT(logged, Not(HasSubstr("guessed-token")));
  size_t events = 0;
  for (size_t at = 0; (at = logged.find("auth_refused", at)) != std::string::npos; ++at) ++events;
  EXPECT_LT(events, 10u) << logged;
  const grpc::Status no_token = tuning->ListJobs(with("").get(), list, &jobs);
  EXPECT_EQ(no_token.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(no_token.error_message(), HasSubstr("--token or $KTUNE_TOKEN"));  // what to give
  EXPECT_EQ(tuning->ListJobs(with("not-a-token-at-all").get(), list, &jobs).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(tuning->ListJobs(with("query-token-0123456789").get(), list, &jobs).ok());
  EXPECT_TRUE(tuning->ListJobs(with("admin-token-0123456789").get(), list, &jobs).ok());
  // A query-only token asking tune_if_missing gets its answer, and why no job was queued (it was
  // refused the answer: PERMISSION_DENIED, and a compiler had to ask again without it).
  v1::QueryBestRequest ask;
  ask.mutable_kernel()->set_name("gemm");
  ToProto(Problem{{"M", int64_t{64}}, {"N", int64_t{64}}, {"K", int64_t{64}}},
          ask.mutable_problem()->mutable_params());
  ask.mutable_device()->set_device_class("cpu:x");
  ask.set_tune_if_missing(true);
  v1::QueryBestResponse answered;
  ASSERT_TRUE(tuning->QueryBest(with("query-token-0123456789").get(), ask, &answered).ok());
  EXPECT_EQ(answered.level(), v1::MATCH_LEVEL_NONE);
  EXPECT_THAT(answered.not_queued(), HasSubstr("does not have the submit role"));

  v1::SubmitJobRequest submit;
  submit.set_spec_text(
      "kernels: [gemm]\nproblems: [{M: 8, N: 8, K: 8}]\n"
      "device_classes: [cpu:x]\nbudget: 2\n");
  v1::Job job;
  grpc::Status s = tuning->SubmitJob(with("query-token-0123456789").get(), submit, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("submit role"));
  EXPECT_TRUE(tuning->SubmitJob(with("admin-token-0123456789").get(), submit, &job).ok());

  v1::RegisterRequest reg;
  reg.mutable_device()->set_device_class("cpu:x");
  v1::RegisterResponse registered;
  EXPECT_EQ(workers->Register(with("query-token-0123456789").get(), reg, &registered).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(workers->Register(with("worker-token-0123456789").get(), reg, &registered).ok());

  // Importing records is an admin's: they become everyone's answers.
  v1::ImportRecordsResponse imported;
  auto import_ctx = with("query-token-0123456789");
  auto writer = tuning->ImportRecords(import_ctx.get(), &imported);
  writer->WritesDone();
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

// A call the server itself failed (its database busy past the timeout) is in its log; a caller's
// mistake is not.
TEST(ServerLogTest, TheServersOwnFailuresAreLoggedAndCallersMistakesAreNot) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(ToGrpc(absl::AbortedError("database is locked")).error_code(),
            grpc::StatusCode::ABORTED);
  EXPECT_EQ(ToGrpc(absl::InvalidArgumentError("budget must be positive")).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  const std::string logged = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(logged, HasSubstr("rpc_failed code=ABORTED reason=\"database is locked\""));
  EXPECT_THAT(logged, Not(HasSubstr("budget")));
}

TEST(ServerAuthTest, ABadTokenFileStopsTheServerWithTheLine) {
  testing::TempDir dir;
  {
    std::ofstream tokens(dir.File("tokens"));
    tokens << "good-token-0123456789 worker\nshort query\n";
  }
  TuningServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir.File("auth.db");
  options.auth_file = dir.File("tokens");
  auto server = TuningServer::Start(options);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(server.status().message(), HasSubstr("line 2"));
}

}  // namespace
}  // namespace ktune

namespace ktune {
namespace {

// A client kernel for the CPU: y = 2x, with a compile-time unroll parameter.
v1::KernelSpec ScaleKernelSpec() {
  v1::KernelSpec spec;
  spec.set_name("scale2");
  spec.set_language("cpp");
  spec.set_description("y = 2x, registered by a client");
  spec.set_source(testing::kScale2KernelSource);
  v1::KernelParameterSpec* unroll = spec.add_parameters();
  unroll->set_name("unroll");
  for (int v : {1, 2, 4, 8}) unroll->add_values(v);
  unroll->set_compile_time(true);
  v1::ProblemParameterSpec* n = spec.add_problem();
  n->set_name("n");
  n->set_min(1);
  n->set_max(1 << 24);
  v1::BufferSpec* x = spec.add_buffers();
  x->set_name("x");
  x->set_elements("n");
  v1::BufferSpec* y = spec.add_buffers();
  y->set_name("y");
  y->set_elements("n");
  y->set_output(true);
  spec.set_flops("n");
  spec.set_bytes("8 * n");
  (*spec.mutable_default_config())["unroll"] = "1";
  return spec;
}

// With tokens, a worker acts with the token it registered with: another worker token could
// end its leases (Leave) or report results under its name.
TEST(ServerAuthTest, AWorkerActsOnlyWithTheTokenItRegisteredWith) {
  testing::TempDir dir;
  auto server = StartWithTokens(dir,
                                "worker-a-token-0123456789 worker\n"
                                "worker-b-token-0123456789 worker\n");
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = testing::LocalStub<v1::WorkerService>((*server)->port());
  auto as = [](const std::string& token) {
    auto ctx = Context();
    ctx->AddMetadata("authorization", "Bearer " + token);
    return ctx;
  };
  v1::RegisterRequest reg;
  reg.mutable_device()->set_device_class("cpu:owners");
  (*reg.mutable_device()->mutable_extra())["fingerprint_json"] = R"({"name":"owners"})";
  v1::RegisterResponse registered;
  ASSERT_TRUE(stub->Register(as("worker-a-token-0123456789").get(), reg, &registered).ok());
  const std::string a = registered.worker_id();

  v1::LeaseBatchRequest lease;
  lease.set_worker_id(a);
  lease.set_max_candidates(1);
  v1::LeaseBatchResponse leased;
  grpc::Status s = stub->LeaseBatch(as("worker-b-token-0123456789").get(), lease, &leased);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("was registered with another token"));
  v1::HeartbeatRequest beat;
  beat.set_worker_id(a);
  v1::HeartbeatResponse beaten;
  EXPECT_EQ(stub->Heartbeat(as("worker-b-token-0123456789").get(), beat, &beaten).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::LeaveRequest leave;
  leave.set_worker_id(a);
  v1::LeaveResponse left;
  EXPECT_EQ(stub->Leave(as("worker-b-token-0123456789").get(), leave, &left).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::ReportResultsRequest report;
  report.set_worker_id(a);
  report.set_lease_id("L1");
  v1::ReportResultsResponse reported;
  EXPECT_EQ(
      stub->ReportResults(as("worker-b-token-0123456789").get(), report, &reported).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);

  // The worker itself goes on as before, and leaves.
  EXPECT_TRUE(stub->LeaseBatch(as("worker-a-token-0123456789").get(), lease, &leased).ok());
  EXPECT_TRUE(stub->Heartbeat(as("worker-a-token-0123456789").get(), beat, &beaten).ok());
  EXPECT_FALSE(beaten.reregister());
  EXPECT_TRUE(stub->Leave(as("worker-a-token-0123456789").get(), leave, &left).ok());
}

// RegisterKernel: admin only, validated, versioned, stored across restarts; a job of the
// client kernel runs to completion on a CPU worker that knew only the built-ins.
TEST(ServerClientKernelTest, AnAdminRegistersAKernelThatWorkersThenMeasure) {
  testing::TempDir dir;
  {
    std::ofstream tokens(dir.File("tokens"));
    tokens << "submit-token-0123456789 submit\n"
           << "worker-token-0123456789 worker\n"
           << "admin-token-0123456789  admin\n";
  }
  TuningServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir.File("kernels.db");
  options.auth_file = dir.File("tokens");
  auto with = [](const std::string& token) {
    auto ctx = Context();
    ctx->AddMetadata("authorization", "Bearer " + token);
    return ctx;
  };
  std::string version;
  {
    auto server = TuningServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->port()),
                                       grpc::InsecureChannelCredentials());
    auto tuning = v1::TuningService::NewStub(channel);
    v1::RegisterKernelRequest request;
    *request.mutable_kernel() = ScaleKernelSpec();
    v1::KernelInfo info;

    grpc::Status s = tuning->RegisterKernel(with("submit-token-0123456789").get(), request, &info);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    v1::RegisterKernelRequest bad = request;
    bad.mutable_kernel()->mutable_buffers(1)->set_output(false);
    s = tuning->RegisterKernel(with("admin-token-0123456789").get(), bad, &info);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("output buffer"));
    // A buffer no worker can allocate, a default outside the parameter's values: each was
    // registered, and then every measurement failed.
    for (const auto& [spoil, why] :
         std::vector<std::pair<std::function<void(v1::KernelSpec*)>, std::string>>{
             {[](v1::KernelSpec* k) { k->mutable_buffers(0)->set_elements("-n"); },
              "buffer x has -"},
             {[](v1::KernelSpec* k) { k->mutable_buffers(0)->set_elements("n * 1000000000000"); },
              "1 to 2^34"},
             {[](v1::KernelSpec* k) { (*k->mutable_default_config())["unroll"] = "3"; },
              "is not a valid configuration at the sample problem n=1 (each problem parameter at "
              "its min): parameter 'unroll' has value 3, which is not in its value list"},
             // A constraint of the problem that the default breaks at the smallest problem: the
             // message names that problem and the constraint (it named neither).
             {[](v1::KernelSpec* k) {
                k->add_constraints("unroll <= n");
                (*k->mutable_default_config())["unroll"] = "2";
              },
              "at the sample problem n=1 (each problem parameter at its min): it breaks the "
              "constraint 'unroll <= n'"},
             // Constraints that leave no configuration at all: the one to blame is named, not
             // the default (which was blamed); a constraint's syntax error quotes it.
             {[](v1::KernelSpec* k) {
                k->add_constraints("unroll >= 1");
                k->add_constraints("unroll > 100");
              },
              "no configuration satisfies the constraints at the sample problem n=1 (each "
              "problem parameter at its min): 'unroll > 100' alone rules out every one"},
             {[](v1::KernelSpec* k) {
                k->add_constraints("unroll < 2");
                k->add_constraints("unroll > 4");
              },
              "n=1 (each problem parameter at its min): together they rule out every one"},
             {[](v1::KernelSpec* k) { k->add_constraints("unroll > 2 && unroll < 8"); },
              "in expression 'unroll > 2 && unroll < 8': unexpected character '&' at column 12 (write "
              "'and', 'or', 'not')"}}) {
      v1::RegisterKernelRequest spoiled = request;
      spoiled.mutable_kernel()->set_name("spoiled");
      spoil(spoiled.mutable_kernel());
      s = tuning->RegisterKernel(with("admin-token-0123456789").get(), spoiled, &info);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << why;
      EXPECT_THAT(s.error_message(), HasSubstr(why));
    }
    // Hostile expressions are refused with a short message, and the server lives on to answer
    // (the registration of `taken` below): a constraint or flops nested 20,000 deep overflowed
    // its stack (signal 11), INT64_MIN // -1 trapped (signal 8; now it rules configurations out).
    const std::string deep = std::string(20000, '(') + "unroll" + std::string(20000, ')');
    v1::RegisterKernelRequest hostile = request;
    hostile.mutable_kernel()->set_name("hostile");
    hostile.mutable_kernel()->add_constraints(deep + " > 0");
    s = tuning->RegisterKernel(with("admin-token-0123456789").get(), hostile, &info);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("levels deep"));
    EXPECT_LT(s.error_message().size(), 400u);
    hostile = request;
    hostile.mutable_kernel()->set_name("hostile");
    hostile.mutable_kernel()->set_flops(deep);
    s = tuning->RegisterKernel(with("admin-token-0123456789").get(), hostile, &info);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("levels deep"));
    hostile = request;
    hostile.mutable_kernel()->set_name("hostile");
    hostile.mutable_kernel()->add_constraints("unroll // -1 > (-9223372036854775807 - 1) // -1");
    tuning->RegisterKernel(with("admin-token-0123456789").get(), hostile, &info);
    v1::RegisterKernelRequest taken = request;
    taken.mutable_kernel()->set_name("gemm");
    s = tuning->RegisterKernel(with("admin-token-0123456789").get(), taken, &info);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
    EXPECT_THAT(s.error_message(), HasSubstr("built-in"));

    // Before it is registered, a question about the kernel says the name is unknown (as it
    // does of a misspelt name); a built-in without records is known.
    auto unknown = [&](const std::string& kernel) {
      v1::QueryBestRequest ask;
      ask.mutable_kernel()->set_name(kernel);
      ask.mutable_device()->set_device_class("cpu:somewhere");
      v1::QueryBestResponse answer;
      grpc::Status q = tuning->QueryBest(with("submit-token-0123456789").get(), ask, &answer);
      EXPECT_TRUE(q.ok()) << q.error_message();
      EXPECT_EQ(answer.best_size(), 0);
      return answer.kernel_unknown();
    };
    EXPECT_TRUE(unknown("scale2"));
    EXPECT_TRUE(unknown("scael2"));
    EXPECT_FALSE(unknown("softmax"));

    s = tuning->RegisterKernel(with("admin-token-0123456789").get(), request, &info);
    ASSERT_TRUE(s.ok()) << s.error_message();
    version = info.kernel().version();
    EXPECT_FALSE(unknown("scale2")) << "the cached answer of before the registration was kept";
    EXPECT_TRUE(unknown("scael2"));
    // The same code with another tolerance or default is refused, naming what differs: it was
    // a no-op that kept the registered rtol without a word.
    v1::RegisterKernelRequest retoleranced = request;
    retoleranced.mutable_kernel()->set_rtol(0.05);
    (*retoleranced.mutable_kernel()->mutable_default_config())["unroll"] = "2";
    s = tuning->RegisterKernel(with("admin-token-0123456789").get(), retoleranced, &info);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
    EXPECT_THAT(s.error_message(), HasSubstr("rtol '"));
    EXPECT_THAT(s.error_message(), HasSubstr("not '0.05'"));
    EXPECT_THAT(s.error_message(), HasSubstr("default 'unroll=1', not 'unroll=2'"));
    // Another description only shows: the registration is a no-op, as for the same spec.
    v1::RegisterKernelRequest redescribed = request;
    redescribed.mutable_kernel()->set_description("the same kernel, described again");
    s = tuning->RegisterKernel(with("admin-token-0123456789").get(), redescribed, &info);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(version.size(), 16u);
    EXPECT_EQ(info.language(), "cpp");
    ASSERT_TRUE(tuning->RegisterKernel(with("admin-token-0123456789").get(), request, &info).ok())
        << "registering the same kernel again is a no-op";
    EXPECT_EQ(info.kernel().version(), version);

    // A job of the new kernel, measured by a CPU worker that learns it from its candidates.
    KernelRegistry worker_registry = KernelRegistry::WithBuiltins();
    CpuMeasurerOptions cpu;
    cpu.runner_path = KTUNE_RUNNER;
    cpu.compile.cache_dir = dir.File("cache");
    cpu.max_seconds = 0.02;
    CpuMeasurer measurer(&worker_registry, cpu);
    v1::SubmitJobRequest submit;
    submit.set_spec_text(absl::StrCat("kernels: [scale2]\nproblems: [{n: 4096}]\n",
                                      "device_classes: [\"", measurer.device().device_class,
                                      "\"]\nbudget: 4\nstrategy: random\n"));
    v1::Job job;
    s = tuning->SubmitJob(with("submit-token-0123456789").get(), submit, &job);
    ASSERT_TRUE(s.ok()) << s.error_message();
    auto stub = v1::WorkerService::NewStub(channel);
    // Workers of the class that cannot build it get none of it: a CUDA-only one, and one that
    // takes no client kernels.
    for (const auto& [language, untrusted] :
         {std::pair<std::string, bool>{"cuda", true}, {"cpp", false}}) {
      v1::RegisterRequest reg;
      *reg.mutable_device() = ToProto(measurer.device());
      reg.mutable_capabilities()->add_languages(language);
      reg.mutable_capabilities()->set_can_run_untrusted(untrusted);
      v1::RegisterResponse registered;
      ASSERT_TRUE(stub->Register(with("worker-token-0123456789").get(), reg, &registered).ok());
      v1::LeaseBatchRequest lease_request;
      lease_request.set_worker_id(registered.worker_id());
      lease_request.set_max_candidates(4);
      v1::LeaseBatchResponse lease;
      ASSERT_TRUE(
          stub->LeaseBatch(with("worker-token-0123456789").get(), lease_request, &lease).ok());
      EXPECT_EQ(lease.candidates_size(), 0) << language << (untrusted ? "" : ", no client kernels");
      // ... and the job says why it waits.
      v1::GetJobRequest get;
      get.set_job_id(job.job_id());
      v1::Job now;
      ASSERT_TRUE(tuning->GetJob(with("admin-token-0123456789").get(), get, &now).ok());
      EXPECT_THAT(now.waiting(),
                  HasSubstr(language == "cuda"
                                ? "of its 1 worker, 1 does not build cpp kernels"
                                : "of its 2 workers, 1 does not build cpp kernels, 1 runs with "
                                  "--no-client-kernels"));
    }
    WorkerLoopOptions worker;
    worker.token = "worker-token-0123456789";
    worker.registry = &worker_registry;
    worker.languages = {"cpp"};
    {
      // A worker started with --no-client-kernels measures none of it.
      WorkerLoopOptions builtins_only = worker;
      builtins_only.client_kernels = false;
      builtins_only.max_measurements = 1;
      builtins_only.idle_exit = absl::Seconds(1);
      WorkerLoop refusing(stub.get(), &measurer, builtins_only);
      ASSERT_TRUE(refusing.Run().ok());
      EXPECT_EQ(refusing.reported(), 0);
      // ... and builds none that a server leases it anyway (the worker's own check).
      KernelRegistry untouched = KernelRegistry::WithBuiltins();
      builtins_only.registry = &untouched;
      absl::Status taken = TakeClientKernel(builtins_only, ScaleKernelSpec());
      EXPECT_EQ(taken.code(), absl::StatusCode::kFailedPrecondition);
      EXPECT_EQ(untouched.Find("scale2"), nullptr);
      builtins_only.client_kernels = true;
      EXPECT_TRUE(TakeClientKernel(builtins_only, ScaleKernelSpec()).ok());
      EXPECT_NE(untouched.Find("scale2"), nullptr);
    }
    worker.max_measurements = 4;
    // It stops after its 4 measurements; the idle limit only ends a run that went wrong, so it
    // is long enough for a loaded machine to prepare and build the batches.
    worker.idle_exit = absl::Seconds(30);
    WorkerLoop loop(stub.get(), &measurer, worker);
    ASSERT_TRUE(loop.Run().ok());
    EXPECT_EQ(loop.reported(), 4);
    ASSERT_NE(worker_registry.Find("scale2"), nullptr);
    EXPECT_EQ(worker_registry.Find("scale2")->Version(), version);
    // The job ends once its last report is committed, which may come just after the worker
    // stopped: follow it to its end.
    v1::WatchJobRequest watch;
    watch.set_job_id(job.job_id());
    watch.set_with_tasks(true);
    std::unique_ptr<grpc::ClientContext> watch_ctx = with("submit-token-0123456789");
    auto events = tuning->WatchJob(watch_ctx.get(), watch);
    v1::JobEvent event;
    while (events->Read(&event)) job = event.job();
    ASSERT_TRUE(events->Finish().ok());
    EXPECT_EQ(job.state(), v1::JOB_STATE_DONE);
    EXPECT_EQ(job.waiting(), "");  // an ended job waits for nothing
    ASSERT_EQ(job.tasks_size(), 1);
    EXPECT_EQ(job.tasks(0).measurements_done(), 4);
    EXPECT_TRUE(job.tasks(0).has_best_time_ms()) << "every measurement failed";
    (*server)->Shutdown();
  }
  // A restarted server still knows the kernel, at the same version.
  auto server = TuningServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto tuning = testing::LocalStub<v1::TuningService>((*server)->port());
  v1::ListKernelsResponse kernels;
  ASSERT_TRUE(tuning->ListKernels(with("submit-token-0123456789").get(), {}, &kernels).ok());
  bool found = false;
  for (const v1::KernelInfo& k : kernels.kernels()) {
    if (k.kernel().name() == "scale2") found = k.kernel().version() == version;
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace ktune
