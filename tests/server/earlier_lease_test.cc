// A worker measuring when the server restarts: the restarted server does not know the worker or
// its lease, and refused the report, so the batch (minutes of GPU builds, for a slow one) was
// measured again. The worker now registers again and sends the report with the lease's
// candidates, and the restarted server stores it (Scheduler::ReportEarlierLease).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "db/interchange/record_files.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "kernels/configuration.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "ktune/v1/worker_service.grpc.pb.h"
#include "measurer/replay_measurer.h"
#include "measurer/worker_loop.h"
#include "measurer/worker_metrics.h"
#include "proto/convert.h"
#include "server/scheduler.h"
#include "server/tuning_server.h"
#include "tests/server/metric_value.h"
#include "tests/server/one_task_scheduler.h"
#include "tests/server/worker_doubles.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

// A database whose next report's commit (AddJobRecords), once held, waits until released, then
// fails when told to (a busy or full disk); and whose next read of a task's records, once held,
// waits likewise (a slow read).
class HeldReports : public MemoryTuningDatabase {
 public:
  absl::StatusOr<int64_t> AddJobRecords(const std::vector<Record>& records,
                                        const std::vector<JobTaskCount>& counts) override {
    if (hold.exchange(false)) {
      committing.Notify();
      release.WaitForNotification();
      if (fail) return absl::AbortedError("database is locked");
    }
    return MemoryTuningDatabase::AddJobRecords(records, counts);
  }
  absl::StatusOr<TaskColumns> TaskRecordColumns(const TaskKey& task) override {
    absl::StatusOr<TaskColumns> read = MemoryTuningDatabase::TaskRecordColumns(task);
    if (hold_read.exchange(false)) {
      reading.Notify();
      release.WaitForNotification();
    }
    return read;
  }
  std::atomic<bool> hold{false}, hold_read{false};
  bool fail = false;
  absl::Notification committing, reading, release;
};

class EarlierLeaseTest : public OneTaskSchedulerOn<HeldReports> {
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

  // `grant`'s candidates, measured ok at `ms`.
  static std::vector<v1::CandidateResult> AllOkAt(const LeaseGrant& grant, double ms) {
    std::vector<v1::CandidateResult> results = AllOk(grant);
    for (v1::CandidateResult& r : results) r.set_repeat_times_ms(0, ms);
    return results;
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

  // `grant`'s candidates moved to other valid points of the task's space, none of `avoid`'s nor
  // the default's: what a search that proposes other points after the restart (PPO, whose
  // proposals depend on its time allowance) leaves the earlier lease with.
  LeaseGrant ElsewhereThan(LeaseGrant grant, const LeaseGrant& avoid) {
    absl::StatusOr<std::shared_ptr<const SearchSpace>> space = spaces_.Space(Task(), kCores);
    EXPECT_TRUE(space.ok()) << space.status();
    std::set<std::string> taken;
    for (const v1::Candidate& c : avoid.candidates) taken.insert(c.config_hash());
    for (const v1::Candidate& c : grant.candidates) taken.insert(c.config_hash());
    const std::optional<Configuration> fallback =
        spaces_.DefaultConfiguration(Task(), kCores).value_or(std::nullopt);
    if (fallback) taken.insert(ParamMapHash(*fallback));
    int64_t i = 0;
    for (v1::Candidate& c : grant.candidates) {
      Configuration config;
      do {
        config = (*space)->ToConfiguration((*space)->PointAt(i++));
      } while (taken.count(ParamMapHash(config)));
      taken.insert(ParamMapHash(config));
      c.mutable_config()->clear_params();
      ToProto(config, c.mutable_config()->mutable_params());
      c.set_config_hash(ParamMapHash(config));
    }
    return grant;
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

// Results of a job that ended, or of a worker of another class, are left out: nothing stored.
TEST_F(EarlierLeaseTest, ACancelledJobTakesNothing) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job);
  Restart(Options());
  ASSERT_TRUE(scheduler_->Cancel(job).ok());
  absl::StatusOr<int64_t> stored = ReportEarlier(grant, AllOk(grant));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, 0);
  EXPECT_EQ(Records(), 1u);
  EXPECT_EQ(scheduler_->CountNow().earlier_leases_stored, 0);
}

TEST_F(EarlierLeaseTest, AWorkerOfAnotherClassTakesNothing) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job);
  Restart(Options());
  const DeviceInfo elsewhere{R"({"cores":2,"name":"other"})", "cpu:other", "x86-64-v3"};
  worker_ = scheduler_->RegisterWorker(elsewhere, "elsewhere", kCores);
  absl::StatusOr<int64_t> stored = ReportEarlier(grant, AllOk(grant));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, 0);
  EXPECT_EQ(Records(), 1u);
}

// A job submitted after the restart cannot have a lease from before it.
TEST_F(EarlierLeaseTest, AJobOfThisProcessTakesNothing) {
  Restart(Options());
  const int64_t job = SubmitRandom({Task()}, /*budget=*/4, /*batch_size=*/4);
  absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 4);
  ASSERT_TRUE(grant.ok()) << grant.status();
  absl::StatusOr<int64_t> stored = ReportEarlier(*grant, AllOk(*grant));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, 0);
  EXPECT_EQ(Done(job), 0);
}

// Configurations the task's space rules out (its constraints, not only its value lists) are
// left out: a worker could have made any configuration the task's best.
TEST_F(EarlierLeaseTest, AConfigurationTheSpaceRulesOutIsLeftOut) {
  int64_t job = 0;
  LeaseGrant grant = LeaseTheSecondBatch(&job);
  Restart(Options());
  auto& params = *grant.candidates[0].mutable_config()->mutable_params();
  params["MR"].set_int_value(16);  // 16 x 32 > 192: "MR * NR <= 192"
  params["NR"].set_int_value(32);
  (*grant.candidates[1].mutable_config()->mutable_params())["MR"].set_int_value(3);  // no value
  absl::StatusOr<int64_t> stored = ReportEarlier(grant, AllOk(grant));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, 1);
  EXPECT_EQ(Done(job), 2);
}

// A worker with more cores than the scheduler's first: its configurations (threads up to its
// cores) are checked in the space on its cores, not refused as malformed (a refusal a worker
// takes as fatal).
TEST_F(EarlierLeaseTest, AWorkerWithOtherCoresHasItsBatchStored) {
  const std::string six = scheduler_->RegisterWorker(kDevice, "six", 6);
  const int64_t job = SubmitRandom({Task()}, /*budget=*/4, /*batch_size=*/4);
  absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(six, 4);  // the default: 6 threads
  ASSERT_TRUE(grant.ok()) << grant.status();
  ASSERT_EQ(grant->candidates.size(), 1u);
  ASSERT_EQ(grant->candidates[0].config().params().at("threads").int_value(), 6);
  Restart(Options());
  worker_ = scheduler_->RegisterWorker(kDevice, "six", 6);
  absl::StatusOr<int64_t> stored = ReportEarlier(*grant, AllOk(*grant));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, 1);
  EXPECT_EQ(Done(job), 1);
}

// The restarted search proposed the earlier lease's points again (the same seed, the same
// records), another worker measured them and its batch moved on: the earlier results, other
// measurements of the same configurations, are not stored as well (the job paid twice for them).
TEST_F(EarlierLeaseTest, PointsTheRestartedJobMeasuredAreNotStoredAgain) {
  int64_t job = 0;
  const LeaseGrant earlier = LeaseTheSecondBatch(&job, /*budget=*/12);  // 1 done, 4 leased
  Restart(Options());
  const std::string other = scheduler_->RegisterWorker(kDevice, "other", kCores);
  absl::StatusOr<LeaseGrant> again = scheduler_->Lease(other, 8);
  ASSERT_TRUE(again.ok()) << again.status();
  std::set<std::string> earlier_points;
  for (const v1::Candidate& c : earlier.candidates) earlier_points.insert(c.config_hash());
  for (const v1::Candidate& c : again->candidates)
    ASSERT_EQ(earlier_points.count(c.config_hash()), 1u);
  ASSERT_TRUE(scheduler_->Report(other, again->lease_id, AllOk(*again)).ok());
  EXPECT_EQ(Done(job), 5);

  absl::StatusOr<int64_t> stored = ReportEarlier(earlier, AllOkAt(earlier, 2.0));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, 0);
  EXPECT_EQ(Done(job), 5);
  EXPECT_EQ(Records(), 5u);
}

// The same, with the other worker's report stored while the earlier report read the task's
// records: what this process stored since its recovery is checked under the lock too.
TEST_F(EarlierLeaseTest, PointsStoredWhileTheReportReadsAreNotStoredAgain) {
  int64_t job = 0;
  const LeaseGrant earlier = LeaseTheSecondBatch(&job, /*budget=*/12);
  Restart(Options());
  const std::string other = scheduler_->RegisterWorker(kDevice, "other", kCores);
  absl::StatusOr<LeaseGrant> again = scheduler_->Lease(other, 8);
  ASSERT_TRUE(again.ok()) << again.status();
  db_.hold_read = true;
  absl::StatusOr<int64_t> stored;
  std::thread reporter([&] { stored = ReportEarlier(earlier, AllOkAt(earlier, 2.0)); });
  db_.reading.WaitForNotification();
  ASSERT_TRUE(scheduler_->Report(other, again->lease_id, AllOk(*again)).ok());
  db_.release.Notify();
  reporter.join();
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, 0);
  EXPECT_EQ(Done(job), 5);
  EXPECT_EQ(Records(), 5u);
}

// Earlier results that the restarted search's batch leaves no room for (it proposed other
// points, all leased) are left out: the task stays within its budget.
TEST_F(EarlierLeaseTest, EarlierResultsDoNotTakeATaskPastItsBudget) {
  int64_t job = 0;
  const LeaseGrant earlier = LeaseTheSecondBatch(&job);  // budget 4: 1 done, 3 leased
  Restart(Options());
  const std::string other = scheduler_->RegisterWorker(kDevice, "other", kCores);
  absl::StatusOr<LeaseGrant> batch = scheduler_->Lease(other, 4);
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_EQ(batch->candidates.size(), 3u);
  const LeaseGrant elsewhere = ElsewhereThan(earlier, *batch);
  absl::StatusOr<int64_t> stored = ReportEarlier(elsewhere, AllOk(elsewhere));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, 0);
  ASSERT_TRUE(scheduler_->Report(other, batch->lease_id, AllOk(*batch)).ok());
  EXPECT_EQ(Done(job), 4);
  EXPECT_EQ(Records(), 4u);
}

// A commit that fails releases its hold on the task: the batch another worker completed
// meanwhile goes to the search (its strategy work was dropped, and the task waited for ever).
TEST_F(EarlierLeaseTest, AFailedCommitLeavesNoTaskWaiting) {
  int64_t job = 0;
  const LeaseGrant earlier = LeaseTheSecondBatch(&job, /*budget=*/12);  // 1 done, 4 leased
  Restart(Options());
  const std::string other = scheduler_->RegisterWorker(kDevice, "other", kCores);
  absl::StatusOr<LeaseGrant> batch = scheduler_->Lease(other, 8);
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_EQ(batch->candidates.size(), 4u);
  const LeaseGrant elsewhere = ElsewhereThan(earlier, *batch);
  db_.hold = true;
  db_.fail = true;
  absl::StatusOr<int64_t> stored;
  std::thread reporter([&] { stored = ReportEarlier(elsewhere, AllOk(elsewhere)); });
  db_.committing.WaitForNotification();
  ASSERT_TRUE(scheduler_->Report(other, batch->lease_id, AllOk(*batch)).ok());
  db_.release.Notify();
  reporter.join();
  EXPECT_TRUE(absl::IsAborted(stored.status())) << stored.status();
  absl::StatusOr<LeaseGrant> next = scheduler_->Lease(other, 8);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_FALSE(next->candidates.empty()) << "the task waits for strategy work that never runs";
  EXPECT_EQ(Done(job), 5);
}

// The same report sent again while the first is being stored (its reply late) is told to try
// again, and nothing is stored twice.
TEST_F(EarlierLeaseTest, TheSameReportTwiceAtOnceIsStoredOnce) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job, /*budget=*/8);  // 1 done, 4 leased
  Restart(Options());
  db_.hold = true;
  absl::StatusOr<int64_t> first;
  std::thread reporter([&] { first = ReportEarlier(grant, AllOk(grant)); });
  db_.committing.WaitForNotification();
  absl::StatusOr<int64_t> second = ReportEarlier(grant, AllOk(grant));
  db_.release.Notify();
  reporter.join();
  EXPECT_TRUE(absl::IsUnavailable(second.status())) << second.status();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, 4);
  EXPECT_EQ(Done(job), 5);
  second = ReportEarlier(grant, AllOk(grant));  // sent again later: answered as the first was
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*second, 4);
  EXPECT_EQ(Done(job), 5);
}

// Another job's records of the same points and times (a replay answers every job alike) are not
// this report's: its results are stored.
TEST_F(EarlierLeaseTest, AnotherJobsEqualRecordsAreNotThisReports) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job);
  absl::StatusOr<std::vector<Record>> records = db_.TaskRecords(Task());
  ASSERT_TRUE(records.ok() && !records->empty());
  std::vector<Record> others;
  for (const v1::Candidate& c : grant.candidates) {
    Record r = records->front();  // the default's, from this job
    absl::StatusOr<ParamMap> config = FromProto(c.config().params(), "config");
    ASSERT_TRUE(config.ok());
    r.config = *config;
    r.time_ms = 1.0;
    r.repeat_times_ms = {1.0};
    r.source = "job:999";
    r.measured_at_us = r.measured_at_us.value_or(0) + 1;
    others.push_back(r);
  }
  ASSERT_TRUE(db_.AddRecords(others).ok());
  Restart(Options());
  absl::StatusOr<int64_t> stored = ReportEarlier(grant, AllOk(grant));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, 3);
  EXPECT_EQ(Done(job), 4);
}

// What a worker cannot have been leased is refused whole: nothing of the report is stored.
TEST_F(EarlierLeaseTest, AMalformedReportStoresNothing) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job);
  Restart(Options());
  {  // a result of a candidate the lease did not have
    std::vector<v1::CandidateResult> results = AllOk(grant);
    results[2].set_candidate_id("1.0.7.99");
    absl::StatusOr<int64_t> stored = ReportEarlier(grant, results);
    EXPECT_TRUE(absl::IsInvalidArgument(stored.status())) << stored.status();
  }
  {  // a time that is not one
    std::vector<v1::CandidateResult> results = AllOk(grant);
    results[0].set_repeat_times_ms(0, -1);
    absl::StatusOr<int64_t> stored = ReportEarlier(grant, results);
    EXPECT_TRUE(absl::IsInvalidArgument(stored.status())) << stored.status();
  }
  {  // a lease id no server writes, of 4 MiB
    absl::StatusOr<int64_t> stored = scheduler_->ReportEarlierLease(
        worker_, std::string(1 << 22, 'L'), grant.candidates, AllOk(grant));
    EXPECT_TRUE(absl::IsInvalidArgument(stored.status())) << stored.status();
  }
  {  // a candidate id no server wrote: left out
    LeaseGrant bad = grant;
    bad.candidates[0].set_candidate_id("x");
    std::vector<v1::CandidateResult> results = AllOk(bad);
    results.resize(1);
    absl::StatusOr<int64_t> stored = ReportEarlier(bad, results);
    ASSERT_TRUE(stored.ok()) << stored.status();
    EXPECT_EQ(*stored, 0);
  }
  // No results: nothing stored, nothing kept.
  absl::StatusOr<int64_t> empty = ReportEarlier(grant, {});
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(*empty, 0);
  EXPECT_EQ(Records(), 1u);
  EXPECT_EQ(Done(job), 1);
  EXPECT_EQ(scheduler_->CountNow().earlier_leases_stored, 0);
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
class EarlierLeaseWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_ = QuickLeaseServer(dir_.File("server.db"), testing::SpaceFile(kSpace));
    server_ = TuningServer::Start(options_);
    ASSERT_TRUE(server_.ok()) << server_.status();
    address_ = absl::StrCat("127.0.0.1:", (*server_)->port());
    auto channel = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    tuning_ = v1::TuningService::NewStub(channel);
    workers_ = v1::WorkerService::NewStub(channel);
    absl::StatusOr<RecordedSpace> recorded = LoadRecordedSpace(testing::SpaceFile(kSpace));
    ASSERT_TRUE(recorded.ok()) << recorded.status();
    records_ = recorded->records;
    SubmitRandomJob(tuning_.get(), records_.front(), 4, "restart", &job_);
  }

  // A worker of 4 candidates a lease runs until idle; during its first batch the server is
  // restarted on the same address and `after_restart` runs, then the worker's heartbeats meet
  // the restarted server. Returns how many configurations it measured.
  int RunWorkerAcrossARestart(std::function<void()> after_restart, WorkerMetrics* metrics) {
    ReplayMeasurer replay(records_);
    RestartsTheServer measurer(&replay, [&] {
      server_->reset();  // stops it: gRPC shuts down, the database closes
      options_.listen = address_;
      server_ = TuningServer::Start(options_);
      ASSERT_TRUE(server_.ok()) << server_.status();
      after_restart();
      absl::SleepFor(absl::Milliseconds(600));
    });
    WorkerLoopOptions loop_options;
    loop_options.max_candidates = 4;
    loop_options.idle_exit = absl::Milliseconds(300);
    loop_options.metrics = metrics;
    WorkerLoop loop(workers_.get(), &measurer, loop_options);
    EXPECT_TRUE(loop.Run().ok());
    return measurer.measured;
  }

  v1::Job Job() {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    context.set_wait_for_ready(true);
    v1::GetJobRequest get;
    get.set_job_id(job_.job_id());
    v1::Job job;
    EXPECT_TRUE(tuning_->GetJob(&context, get, &job).ok());
    return job;
  }

  static constexpr char kSpace[] = "convolution_A100_T4.json.gz";
  testing::TempDir dir_;
  TuningServerOptions options_;
  absl::StatusOr<std::unique_ptr<TuningServer>> server_;
  std::string address_;
  std::unique_ptr<v1::TuningService::Stub> tuning_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
  std::vector<Record> records_;
  v1::Job job_;
};

// Before, the heartbeat's answer revoked the lease, the worker dropped the batch, and the
// restarted job had it measured again (8 measurements for 4).
TEST_F(EarlierLeaseWorkerTest, ABatchMeasuredAcrossAServerRestartIsStored) {
  WorkerMetrics metrics;
  EXPECT_EQ(RunWorkerAcrossARestart([] {}, &metrics), 4);  // nothing measured twice
  const v1::Job done = Job();
  EXPECT_EQ(done.state(), v1::JOB_STATE_DONE);
  EXPECT_EQ(done.measurements_done(), 4);
  const auto m = metrics.Collect();
  EXPECT_EQ(MetricValue(m, "ktune_worker_reports_total", {{"result", "stored"}}), 1);
  EXPECT_EQ(MetricValue(m, "ktune_worker_measurements_dropped_total"), 0);
  EXPECT_EQ(MetricValue(m, "ktune_worker_registrations_total"), 2);
}

// The job was cancelled while the server was away: the restarted server leaves the batch out,
// and the worker counts its results as dropped.
TEST_F(EarlierLeaseWorkerTest, ResultsTheRestartedServerLeavesOutAreDropped) {
  WorkerMetrics metrics;
  const int measured = RunWorkerAcrossARestart(
      [&] {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        context.set_wait_for_ready(true);  // the channel may still be in its reconnect backoff
        v1::CancelJobRequest cancel;
        cancel.set_job_id(job_.job_id());
        v1::Job cancelled;
        ASSERT_TRUE(tuning_->CancelJob(&context, cancel, &cancelled).ok());
      },
      &metrics);
  EXPECT_EQ(measured, 4);
  EXPECT_EQ(Job().measurements_done(), 0);
  const auto m = metrics.Collect();
  // Nothing of it was stored: not a stored report (it counted as one, a fleet trial found).
  EXPECT_EQ(MetricValue(m, "ktune_worker_reports_total", {{"result", "stored"}}), 0);
  EXPECT_EQ(MetricValue(m, "ktune_worker_reports_total", {{"result", "not_stored"}}), 1);
  EXPECT_EQ(MetricValue(m, "ktune_worker_measurements_dropped_total"), 4);
}

}  // namespace
}  // namespace ktune
