// A worker measuring when the server restarts: the restarted server does not know the worker or
// its lease, and refused the report, so the batch (minutes of GPU builds, for a slow one) was
// measured again. The worker now registers again and sends the report with the lease's
// candidates, and the restarted server stores it (Scheduler::ReportEarlierLease).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "db/interchange/record_files.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "ktune/v1/worker_service.grpc.pb.h"
#include "measurer/replay_measurer.h"
#include "measurer/worker_loop.h"
#include "proto/convert.h"
#include "server/scheduler.h"
#include "server/tuning_server.h"
#include "tests/server/one_task_scheduler.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

class EarlierLeaseTest : public OneTaskScheduler {
 protected:
  EarlierLeaseTest() { Restart(Options()); }

  SchedulerOptions Options() {
    SchedulerOptions options;
    options.now = [this] { return now_; };
    return options;
  }

  // A job of `budget` measurements in batches of 4: its first batch (the kernel's default
  // configuration alone) measured, then a lease of the next, which the restart below leaves
  // unreported (3 candidates for the budget of 4).
  LeaseGrant LeaseTheSecondBatch(int64_t* job, int64_t budget = 4) {
    *job = SubmitRandom({Task()}, budget, /*batch_size=*/4);
    absl::StatusOr<LeaseGrant> first = scheduler_->Lease(worker_, 4);
    EXPECT_TRUE(first.ok()) << first.status();
    EXPECT_TRUE(scheduler_->Report(worker_, first->lease_id, AllOk(*first)).ok());
    absl::StatusOr<LeaseGrant> second = scheduler_->Lease(worker_, 4);
    EXPECT_TRUE(second.ok()) << second.status();
    EXPECT_EQ(second->candidates.size(), static_cast<size_t>(std::min<int64_t>(4, budget - 1)));
    return second.value_or(LeaseGrant{});
  }

  absl::StatusOr<int64_t> ReportEarlier(const LeaseGrant& grant,
                                        const std::vector<v1::CandidateResult>& results) {
    return scheduler_->ReportEarlierLease(worker_, grant.lease_id, grant.candidates, results);
  }

  int64_t Done(int64_t job) {
    absl::StatusOr<JobStatus> status = scheduler_->GetJob(job);
    EXPECT_TRUE(status.ok()) << status.status();
    return status.ok() ? status->done : -1;
  }

  size_t Records() {
    absl::StatusOr<std::vector<Record>> records = db_.TaskRecords(Task());
    EXPECT_TRUE(records.ok()) << records.status();
    return records.ok() ? records->size() : 0;
  }

  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
};

TEST_F(EarlierLeaseTest, ALeaseFromBeforeARestartIsStoredNotMeasuredAgain) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job);
  const std::string before = worker_;
  Restart(Options());
  // The worker's own id is unknown now: it is told to register again (it was told the lease was
  // not its own, and dropped the batch).
  absl::StatusOr<int64_t> refused = scheduler_->Report(before, grant.lease_id, AllOk(grant));
  EXPECT_TRUE(absl::IsNotFound(refused.status())) << refused.status();

  absl::StatusOr<int64_t> stored = ReportEarlier(grant, AllOk(grant));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, 3);
  EXPECT_EQ(Done(job), 4);
  EXPECT_EQ(scheduler_->GetJob(job)->job.state, JobState::kDone);
  EXPECT_EQ(scheduler_->CountNow().earlier_leases_stored, 1);
  absl::StatusOr<LeaseGrant> after = scheduler_->Lease(worker_, 4);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->candidates.empty());  // nothing measured again
  EXPECT_EQ(Records(), 4u);

  // Sent again, its reply lost: answered as the first was, nothing more stored.
  stored = ReportEarlier(grant, AllOk(grant));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, 3);
  EXPECT_EQ(Records(), 4u);
}

// The report reached the earlier process, which stored it and died before it replied: the
// worker sends it again to the restarted server, which stores nothing twice.
TEST_F(EarlierLeaseTest, AReportTheEarlierProcessStoredIsNotStoredTwice) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job, /*budget=*/8);
  ASSERT_TRUE(scheduler_->Report(worker_, grant.lease_id, AllOk(grant)).ok());
  Restart(Options());
  absl::StatusOr<int64_t> stored = ReportEarlier(grant, AllOk(grant));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, 0);
  EXPECT_EQ(Records(), 5u);
  EXPECT_EQ(Done(job), 5);
}

// Another worker started the task's search on the restarted server first, and the search (the
// same seed, the same records) proposed the earlier lease's points again: the point leased to
// that worker is left to its report, and the others are answered in the batch, not handed out.
TEST_F(EarlierLeaseTest, PointsTheRestartedSearchProposedAgainAreMeasuredOnce) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job);
  Restart(Options());
  const std::string other = scheduler_->RegisterWorker(kDevice, "other", kCores);
  absl::StatusOr<LeaseGrant> one = scheduler_->Lease(other, 1);
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_EQ(one->candidates.size(), 1u);
  std::set<std::string> earlier_points;
  for (const v1::Candidate& c : grant.candidates) earlier_points.insert(c.config_hash());
  ASSERT_EQ(earlier_points.count(one->candidates[0].config_hash()), 1u)
      << "the restarted search proposed other points";

  absl::StatusOr<int64_t> stored = ReportEarlier(grant, AllOk(grant));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, 2);
  EXPECT_EQ(Done(job), 3);
  absl::StatusOr<LeaseGrant> rest = scheduler_->Lease(worker_, 4);
  ASSERT_TRUE(rest.ok());
  EXPECT_TRUE(rest->candidates.empty());  // answered by the earlier lease's results
  ASSERT_TRUE(scheduler_->Report(other, one->lease_id, AllOk(*one)).ok());
  EXPECT_EQ(Done(job), 4);
  EXPECT_EQ(scheduler_->GetJob(job)->job.state, JobState::kDone);
  EXPECT_EQ(Records(), 4u);
}

TEST_F(EarlierLeaseTest, NothingIsStoredLongAfterTheRestart) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job);
  Restart(Options());
  now_ += Scheduler::kEarlierLeasesWithin + absl::Seconds(1);
  absl::StatusOr<int64_t> stored = ReportEarlier(grant, AllOk(grant));
  EXPECT_TRUE(absl::IsFailedPrecondition(stored.status())) << stored.status();
  EXPECT_EQ(Records(), 1u);
}

TEST_F(EarlierLeaseTest, AServerThatDidNotRestartStoresNoneOfAnother) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job);
  scheduler_ = std::make_unique<Scheduler>(&db_, &spaces_, Options());  // no Recover
  worker_ = scheduler_->RegisterWorker(kDevice, "test", kCores);
  absl::StatusOr<int64_t> stored = ReportEarlier(grant, AllOk(grant));
  EXPECT_TRUE(absl::IsFailedPrecondition(stored.status())) << stored.status();
  EXPECT_EQ(Records(), 1u);
}

TEST_F(EarlierLeaseTest, ACancelledJobTakesNothing) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job);
  Restart(Options());
  ASSERT_TRUE(scheduler_->Cancel(job).ok());
  absl::StatusOr<int64_t> stored = ReportEarlier(grant, AllOk(grant));
  EXPECT_TRUE(absl::IsFailedPrecondition(stored.status())) << stored.status();
  EXPECT_EQ(Records(), 1u);
}

TEST_F(EarlierLeaseTest, AWorkerOfAnotherClassTakesNothing) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job);
  Restart(Options());
  const DeviceInfo elsewhere{R"({"cores":2,"name":"other"})", "cpu:other", "x86-64-v3"};
  worker_ = scheduler_->RegisterWorker(elsewhere, "elsewhere", kCores);
  absl::StatusOr<int64_t> stored = ReportEarlier(grant, AllOk(grant));
  EXPECT_TRUE(absl::IsFailedPrecondition(stored.status())) << stored.status();
  EXPECT_EQ(Records(), 1u);
}

// What a worker cannot have been leased is refused whole: nothing of the report is stored.
TEST_F(EarlierLeaseTest, AMalformedReportStoresNothing) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job);
  Restart(Options());
  {  // a configuration outside the task's space
    LeaseGrant bad = grant;
    (*bad.candidates[1].mutable_config()->mutable_params())["MR"].set_int_value(3);
    absl::StatusOr<int64_t> stored = ReportEarlier(bad, AllOk(bad));
    EXPECT_TRUE(absl::IsInvalidArgument(stored.status())) << stored.status();
  }
  {  // a result of a candidate the lease did not have
    std::vector<v1::CandidateResult> results = AllOk(grant);
    results[2].set_candidate_id("1.0.7.99");
    absl::StatusOr<int64_t> stored = ReportEarlier(grant, results);
    EXPECT_TRUE(absl::IsInvalidArgument(stored.status())) << stored.status();
  }
  {  // a candidate id no server wrote
    LeaseGrant bad = grant;
    bad.candidates[0].set_candidate_id("x");
    absl::StatusOr<int64_t> stored = ReportEarlier(bad, AllOk(bad));
    EXPECT_TRUE(absl::IsInvalidArgument(stored.status())) << stored.status();
  }
  {  // a time that is not one
    std::vector<v1::CandidateResult> results = AllOk(grant);
    results[0].set_repeat_times_ms(0, -1);
    absl::StatusOr<int64_t> stored = ReportEarlier(grant, results);
    EXPECT_TRUE(absl::IsInvalidArgument(stored.status())) << stored.status();
  }
  EXPECT_EQ(Records(), 1u);
  EXPECT_EQ(Done(job), 1);
  absl::StatusOr<int64_t> unknown =
      scheduler_->ReportEarlierLease("w0-0", grant.lease_id, grant.candidates, AllOk(grant));
  EXPECT_TRUE(absl::IsNotFound(unknown.status())) << unknown.status();
}

// A measurer that restarts the server during its first batch, and counts what it measures.
class RestartsTheServer : public Measurer {
 public:
  RestartsTheServer(Measurer* real, std::function<void()> restart)
      : real_(real), restart_(std::move(restart)) {}
  DeviceInfo device() const override { return real_->device(); }
  absl::StatusOr<std::vector<MeasureResult>> Measure(
      const TaskKey& task, const std::vector<Configuration>& configs) override {
    if (auto restart = std::exchange(restart_, nullptr)) restart();
    measured += static_cast<int>(configs.size());
    return real_->Measure(task, configs);
  }
  std::atomic<int> measured{0};

 private:
  Measurer* real_;
  std::function<void()> restart_;
};

// The worker loop and a real server, restarted on the same address while the worker measures
// (its heartbeats reach the new server, which no longer knows it): the batch is stored, and
// nothing is measured twice. Before, the heartbeat's answer revoked the lease, the worker
// dropped the batch, and the restarted job had it measured again (8 measurements for 4).
TEST(EarlierLeaseWorkerTest, ABatchMeasuredAcrossAServerRestartIsStored) {
  const char* kSpace = "convolution_A100_T4.json.gz";
  testing::TempDir dir;
  TuningServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir.File("server.db");
  options.replay_files = {testing::SpaceFile(kSpace)};
  options.scheduler.agent_threads = 0;
  options.scheduler.lease_timeout = absl::Milliseconds(500);
  options.scheduler.heartbeat_interval = absl::Milliseconds(150);
  absl::StatusOr<std::unique_ptr<TuningServer>> server = TuningServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = absl::StrCat("127.0.0.1:", (*server)->port());
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto tuning = v1::TuningService::NewStub(channel);
  auto workers = v1::WorkerService::NewStub(channel);
  absl::StatusOr<RecordedSpace> recorded = LoadRecordedSpace(testing::SpaceFile(kSpace));
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  const Record& first = recorded->records.front();

  v1::SubmitJobRequest submit;
  v1::JobSpec* spec = submit.mutable_spec();
  spec->set_name("restart");
  spec->add_kernels()->set_name(first.kernel);
  ToProto(first.problem, spec->add_problems()->mutable_params());
  spec->add_device_classes(first.device.device_class);
  spec->set_budget_measurements(4);
  spec->set_strategy(v1::STRATEGY_RANDOM);
  spec->set_seed(3);
  v1::Job job;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ASSERT_TRUE(tuning->SubmitJob(&context, submit, &job).ok());
  }

  ReplayMeasurer replay(recorded->records);
  RestartsTheServer measurer(&replay, [&] {
    server->reset();  // stops it: gRPC shuts down, the database closes
    options.listen = address;
    server = TuningServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    absl::SleepFor(absl::Milliseconds(600));  // heartbeats meet the restarted server
  });
  WorkerLoopOptions loop_options;
  loop_options.max_candidates = 4;
  loop_options.idle_exit = absl::Milliseconds(300);
  WorkerLoop loop(workers.get(), &measurer, loop_options);
  ASSERT_TRUE(loop.Run().ok());
  EXPECT_EQ(measurer.measured, 4);  // nothing measured twice
  EXPECT_EQ(loop.reported(), 4);

  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::GetJobRequest get;
  get.set_job_id(job.job_id());
  v1::Job done;
  ASSERT_TRUE(tuning->GetJob(&context, get, &done).ok());
  EXPECT_EQ(done.state(), v1::JOB_STATE_DONE);
  EXPECT_EQ(done.measurements_done(), 4);
}

}  // namespace
}  // namespace ktune
