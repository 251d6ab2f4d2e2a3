#include "cli/tune_job.h"

#include <gtest/gtest.h>

#include <thread>

#include "kernels/kernel_registry.h"
#include "server/tuning_server.h"
#include "tests/testing/test_util.h"

namespace ktune::cli {
namespace {

// The embedded session stops its watch when the job cannot end on its own (its worker failed,
// and the cancel could not be stored either: a full disk): the watch of a job nobody measures
// returns the reason it was given, where it waited for ever.
TEST(TuneJobTest, AWatchStoppedFromAnotherThreadEndsWithTheReasonGiven) {
  testing::TempDir dir;
  TuningServerOptions options;
  options.listen = "";
  options.db_path = dir.File("k.db");
  options.resume_jobs = false;
  absl::StatusOr<std::unique_ptr<TuningServer>> server = TuningServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = v1::TuningService::NewStub((*server)->InProcessChannel());
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  TuneJobRequest request;
  request.task = {"gemm", "",
                  *registry.Find("gemm")->ValidateProblem({{"M", 64}, {"N", 64}, {"K", 64}}),
                  "cpu:no-worker"};
  request.budget = 4;
  request.strategy = "random";
  WatchStopper stopper;
  request.stopper = &stopper;
  std::thread stopping;
  absl::StatusOr<v1::Job> job = RunTuneJob(
      *stub, request,
      [&](const std::string&) {
        stopping = std::thread([&] { stopper.Stop(absl::ResourceExhaustedError("disk full")); });
      },
      nullptr);
  stopping.join();
  EXPECT_EQ(job.status(), absl::ResourceExhaustedError("disk full"));
}

}  // namespace
}  // namespace ktune::cli
