// The worker's lease heartbeats (measurer/worker_loop.cc) against a server that stops answering
// them.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "db/interchange/record_files.h"
#include "grpcpp/create_channel.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "measurer/replay_measurer.h"
#include "measurer/worker_loop.h"
#include "proto/convert.h"
#include "server/tuning_server.h"
#include "tests/server/local_stub.h"
#include "tests/server/worker_doubles.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

constexpr char kSpace[] = "convolution_A100_T4.json.gz";

// A batch that ends while its heartbeat waits on a hung server reports at once: the heartbeat is
// cancelled, not waited for until its deadline (20 s here), which held the report back.
TEST(WorkerHeartbeatTest, ABatchsEndCancelsAHeartbeatStuckOnAHungServer) {
  testing::TempDir dir;
  auto server =
      TuningServer::Start(QuickLeaseServer(dir.File("server.db"), testing::SpaceFile(kSpace)));
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->port()),
                                     grpc::InsecureChannelCredentials());
  auto tuning = v1::TuningService::NewStub(channel);
  auto workers = v1::WorkerService::NewStub(channel);
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpace));
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  v1::Job job;
  SubmitRandomJob(tuning.get(), recorded->records.front(), 4, "heartbeat", &job);

  HungServer hung;
  auto hung_workers = testing::LocalStub<v1::WorkerService>(hung.port());
  ReplayMeasurer replay(recorded->records);
  // Heartbeats every 150 ms: the first is sent 150 ms into the batch and hangs; the batch ends
  // at 400 ms. Its lease (500 ms) may expire before the report: the server gives it back
  // (revival), as no other worker took the candidates.
  SlowFirstCall slow(&replay, absl::Milliseconds(400));
  FlakyReports flaky(workers.get(), /*outages=*/0);
  flaky.heartbeats_to = hung_workers.get();
  WorkerLoopOptions options;
  options.max_candidates = 4;
  options.idle_exit = absl::Milliseconds(300);
  options.rpc_deadline = absl::Seconds(20);
  WorkerLoop loop(&flaky, &slow, options);
  ASSERT_TRUE(loop.Run().ok());
  EXPECT_EQ(loop.reported(), 4);
  EXPECT_GE(flaky.heartbeats_cancelled.load(), 1);
  EXPECT_EQ(flaky.heartbeats_timed_out.load(), 0);
}

}  // namespace
}  // namespace ktune
