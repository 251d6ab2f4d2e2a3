// Replay workers of one device class with different recorded spaces: each measures its own
// file's task only (RecordedSpaceLanguage), and no registry kernel of the class.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "db/interchange/record_files.h"
#include "db/sqlite_tuning_database.h"
#include "grpcpp/create_channel.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "measurer/replay_measurer.h"
#include "measurer/worker_loop.h"
#include "proto/convert.h"
#include "server/tuning_server.h"
#include "tests/server/worker_doubles.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

using ::testing::HasSubstr;

// A server replaying `files` over the database `db`, with leases of 10 s.
TuningServerOptions ReplayOptions(const std::string& db, const std::vector<std::string>& files) {
  TuningServerOptions options = QuickLeaseServer(db, files.front());
  options.replay_files = files;
  options.scheduler.lease_timeout = absl::Seconds(10);
  return options;
}

std::shared_ptr<grpc::Channel> ChannelTo(const TuningServer& server) {
  return grpc::CreateChannel(absl::StrCat("127.0.0.1:", server.port()),
                             grpc::InsecureChannelCredentials());
}

// A user trial: with the dedispersion and the convolution spaces of the A100 replayed by one
// worker each, each worker leased the other's candidates and answered them invalid_config (about
// 40% of every budget, the optimum among them, stored for good), and a gemm job on A100 "ran" on
// them, every measurement invalid_config.
TEST(ReplayWorkersTest, EachMeasuresItsOwnRecordedSpaceOnly) {
  testing::TempDir dir;
  const std::vector<std::string> files = {testing::SpaceFile("dedispersion_A100_T4.json.gz"),
                                          testing::SpaceFile("convolution_A100_T4.json.gz")};
  auto server = TuningServer::Start(ReplayOptions(dir.File("server.db"), files));
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = ChannelTo(**server);
  auto tuning = v1::TuningService::NewStub(channel);
  std::vector<std::vector<Record>> records;
  for (const std::string& f : files) {
    absl::StatusOr<RecordedSpace> recorded = LoadRecordedSpace(f);
    ASSERT_TRUE(recorded.ok()) << recorded.status();
    ASSERT_EQ(recorded->records.front().device.device_class, "A100");
    records.push_back(recorded->records);
  }
  v1::SubmitJobRequest submit;
  submit.set_spec_text(
      "kernels: [dedispersion, convolution]\nproblems: [{}]\ndevice_classes: [A100]\n"
      "budget: 24\nstrategy: random\nseed: 5\n");
  v1::Job job;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(tuning->SubmitJob(&context, submit, &job).ok());
  }
  v1::SubmitJobRequest gemm;
  gemm.set_spec_text(
      "kernels: [cuda_gemm]\nproblems: [{M: 64, N: 64, K: 64}]\ndevice_classes: [A100]\n"
      "budget: 4\nstrategy: random\n");
  v1::Job gemm_job;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(tuning->SubmitJob(&context, gemm, &gemm_job).ok());
  }
  std::vector<std::thread> workers;
  for (const std::vector<Record>& r : records) {
    workers.emplace_back([&channel, &r] {
      ReplayMeasurer measurer(r);
      auto stub = v1::WorkerService::NewStub(channel);
      WorkerLoopOptions w;
      w.max_candidates = 4;
      w.idle_exit = absl::Seconds(2);
      w.languages = {RecordedSpaceLanguage(r.front().kernel, r.front().problem)};
      WorkerLoop loop(stub.get(), &measurer, w);
      EXPECT_TRUE(loop.Run().ok());
    });
  }
  for (std::thread& t : workers) t.join();
  v1::GetJobRequest get;
  get.set_job_id(job.job_id());
  {
    grpc::ClientContext context;
    ASSERT_TRUE(tuning->GetJob(&context, get, &job).ok());
  }
  EXPECT_EQ(job.state(), v1::JOB_STATE_DONE);
  // The gemm job waits: no worker of the class measures CUDA kernels, and it says so.
  get.set_job_id(gemm_job.job_id());
  {
    grpc::ClientContext context;
    ASSERT_TRUE(tuning->GetJob(&context, get, &gemm_job).ok());
  }
  EXPECT_EQ(gemm_job.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(gemm_job.measurements_done(), 0);
  (*server)->Shutdown();
  auto db = SqliteTuningDatabase::Open(dir.File("server.db"));
  ASSERT_TRUE(db.ok()) << db.status();
  std::map<std::string, int> by_kernel, invalid;
  ASSERT_TRUE((*db)
                  ->ForEachRecord([&](const Record& r) {
                    ++by_kernel[r.kernel];
                    if (r.status == MeasurementStatus::kInvalidConfig) ++invalid[r.kernel];
                    return absl::OkStatus();
                  })
                  .ok());
  EXPECT_EQ(by_kernel["dedispersion"], 24);
  EXPECT_EQ(by_kernel["convolution"], 24);
  EXPECT_EQ(by_kernel["cuda_gemm"], 0);
  EXPECT_EQ(invalid["dedispersion"], 0);  // every configuration proposed is in its space
  EXPECT_EQ(invalid["convolution"], 0);
}

// A replay worker of a file with a problem registers (its language named the whole problem, past
// the 32 bytes a language name may have), and a recorded space named like a registry kernel is
// measured by its replay worker, not waited on by CPU workers (it took the registry's language).
TEST(ReplayWorkersTest, AReplayedSpaceWithAProblemOrARegistryKernelsNameIsMeasured) {
  const std::string language = RecordedSpaceLanguage("cuda_gemm", {{"M", int64_t{4096}},
                                                                   {"N", int64_t{4096}},
                                                                   {"K", int64_t{4096}},
                                                                   {"dtype", std::string("f16")}});
  EXPECT_LE(language.size(), 32u) << language;
  EXPECT_NE(language, RecordedSpaceLanguage("cuda_gemm", {{"M", int64_t{16}}}));
  testing::TempDir dir;
  // pnpoly's records under the name gemm (the file's name names its kernel).
  const std::string file = dir.File("gemm_RTX_3090_T4.json.gz");
  std::filesystem::copy_file(testing::SpaceFile("pnpoly_RTX_3090_T4.json.gz"), file);
  auto server = TuningServer::Start(ReplayOptions(dir.File("server.db"), {file}));
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = ChannelTo(**server);
  auto tuning = v1::TuningService::NewStub(channel);
  v1::SubmitJobRequest submit;
  submit.set_spec_text(
      "kernels: [gemm]\nproblems: [{}]\ndevice_classes: [RTX_3090]\nbudget: 8\n"
      "strategy: random\n");
  v1::Job job;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(tuning->SubmitJob(&context, submit, &job).ok());
  }
  absl::StatusOr<RecordedSpace> recorded = LoadRecordedSpace(file);
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  ASSERT_EQ(recorded->records.front().kernel, "gemm");
  {
    ReplayMeasurer measurer(recorded->records);
    auto stub = v1::WorkerService::NewStub(channel);
    WorkerLoopOptions w;
    w.max_candidates = 4;
    w.idle_exit = absl::Seconds(1);
    w.languages = {RecordedSpaceLanguage("gemm", recorded->records.front().problem)};
    WorkerLoop loop(stub.get(), &measurer, w);
    EXPECT_TRUE(loop.Run().ok());
    EXPECT_EQ(loop.reported(), 8);
  }
  // A language of the longest kind registers.
  auto stub = v1::WorkerService::NewStub(channel);
  v1::RegisterRequest reg;
  reg.mutable_device()->set_device_class("H200");
  reg.mutable_capabilities()->add_languages(language);
  v1::RegisterResponse registered;
  grpc::ClientContext context;
  const grpc::Status s = stub->Register(&context, reg, &registered);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

// A server restarted without the --replay FILE of a recorded space its jobs use keeps them
// waiting, saying why, and one started with it again runs them (a fleet trial: the job failed
// for good at its first lease, "unknown kernel 'dedispersion'", and resume then answered "has
// already ended (failed)").
TEST(ReplayWorkersTest, AJobOfASpaceTheRestartedServerDoesNotReplayWaitsForOneThatDoes) {
  testing::TempDir dir;
  const std::string file = testing::SpaceFile("pnpoly_RTX_3090_T4.json.gz");
  const TuningServerOptions options = ReplayOptions(dir.File("server.db"), {file});
  v1::Job job;
  {
    auto server = TuningServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    auto tuning = v1::TuningService::NewStub(ChannelTo(**server));
    v1::SubmitJobRequest submit;
    submit.set_spec_text(
        "kernels: [pnpoly]\nproblems: [{}]\ndevice_classes: [RTX_3090]\nbudget: 8\n"
        "strategy: random\n");
    grpc::ClientContext context;
    ASSERT_TRUE(tuning->SubmitJob(&context, submit, &job).ok());
  }
  absl::StatusOr<RecordedSpace> recorded = LoadRecordedSpace(file);
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  const auto run_worker = [&](std::shared_ptr<grpc::Channel> channel) {
    ReplayMeasurer measurer(recorded->records);
    auto stub = v1::WorkerService::NewStub(channel);
    WorkerLoopOptions w;
    w.max_candidates = 4;
    w.idle_exit = absl::Seconds(1);  // an "any" worker (no language), as the tests' are
    WorkerLoop loop(stub.get(), &measurer, w);
    EXPECT_TRUE(loop.Run().ok());
  };
  const auto get = [](v1::TuningService::Stub* tuning, const std::string& id) {
    v1::GetJobRequest request;
    request.set_job_id(id);
    v1::Job got;
    grpc::ClientContext context;
    EXPECT_TRUE(tuning->GetJob(&context, request, &got).ok());
    return got;
  };
  {
    TuningServerOptions without = options;
    without.replay_files.clear();
    auto server = TuningServer::Start(without);
    ASSERT_TRUE(server.ok()) << server.status();
    auto channel = ChannelTo(**server);
    auto tuning = v1::TuningService::NewStub(channel);
    run_worker(channel);  // it takes nothing
    const v1::Job waiting = get(tuning.get(), job.job_id());
    EXPECT_EQ(waiting.state(), v1::JOB_STATE_QUEUED);
    EXPECT_EQ(waiting.measurements_done(), 0);
    EXPECT_THAT(waiting.waiting(), HasSubstr("this server does not know kernel 'pnpoly' (a "
                                             "recorded space: start it with --replay FILE"));
  }
  auto server = TuningServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = ChannelTo(**server);
  auto tuning = v1::TuningService::NewStub(channel);
  run_worker(channel);
  const v1::Job done = get(tuning.get(), job.job_id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_DONE);
  EXPECT_EQ(done.measurements_done(), 8);
}

}  // namespace
}  // namespace ktune
