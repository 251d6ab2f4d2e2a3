// A worker sends its report again when the reply to the first was lost (a timeout, a dropped
// connection): the first was stored and ended the lease. The retry is answered as the first was;
// it read as refused ("nothing was stored"), and the worker logged a failure for measurements the
// database holds.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "db/memory_tuning_database.h"
#include "server/scheduler.h"
#include "tests/server/one_task_scheduler.h"

namespace ktune {
namespace {

class ReportRetryTest : public OneTaskScheduler {};

TEST_F(ReportRetryTest, AReportSentAgainAfterItsReplyWasLostIsAnsweredAsTheFirst) {
  SubmitRandom({Task()}, /*budget=*/8, /*batch_size=*/4);
  absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 4);  // the default, alone
  ASSERT_TRUE(grant.ok()) << grant.status();
  ASSERT_TRUE(scheduler_->Report(worker_, grant->lease_id, AllOk(*grant)).ok());
  grant = scheduler_->Lease(worker_, 4);
  ASSERT_TRUE(grant.ok()) << grant.status();
  ASSERT_EQ(grant->candidates.size(), 4u);
  std::vector<v1::CandidateResult> results = AllOk(*grant);
  absl::StatusOr<int64_t> first = scheduler_->Report(worker_, grant->lease_id, results);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, 4);

  std::reverse(results.begin(), results.end());  // the same candidates, in any order
  absl::StatusOr<int64_t> again = scheduler_->Report(worker_, grant->lease_id, results);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, 4);
  auto records = db_.TaskRecords(Task());
  ASSERT_TRUE(records.ok());
  EXPECT_EQ(records->size(), 5u);  // the default and the four, each stored once

  // Other results for the same candidates are refused, not answered "stored" and dropped.
  std::vector<v1::CandidateResult> changed = results;
  changed[0].set_repeat_times_ms(0, 2.5);
  absl::StatusOr<int64_t> other_results = scheduler_->Report(worker_, grant->lease_id, changed);
  EXPECT_TRUE(absl::IsFailedPrecondition(other_results.status())) << other_results.status();
  EXPECT_NE(other_results.status().message().find("reported already, with other results"),
            std::string::npos)
      << other_results.status();

  // Another report on the ended lease (other candidates, another worker) is still refused.
  results.pop_back();
  EXPECT_TRUE(
      absl::IsFailedPrecondition(scheduler_->Report(worker_, grant->lease_id, results).status()));
  const std::string other = scheduler_->RegisterWorker(kDevice, "other", kCores);
  EXPECT_TRUE(absl::IsFailedPrecondition(
      scheduler_->Report(other, grant->lease_id, AllOk(*grant)).status()));
}

// A database whose next commit of job records waits until it is let go: a slow commit, the likely
// reason a report's reply is lost.
class SlowCommits : public MemoryTuningDatabase {
 public:
  absl::StatusOr<int64_t> AddJobRecords(const std::vector<Record>& records,
                                        const std::vector<JobTaskCount>& counts) override {
    if (hold_next_) {
      hold_next_ = false;
      committing_.Notify();
      go_on_.WaitForNotification();
    }
    return MemoryTuningDatabase::AddJobRecords(records, counts);
  }
  std::atomic<bool> hold_next_{false};
  absl::Notification committing_, go_on_;
};

// The retry arrives while the first report is still being committed: told to try again
// (UNAVAILABLE, which a worker retries) rather than refused for good (FAILED_PRECONDITION: the
// worker logged a failure for measurements the commit then stored), and answered once it is in.
TEST_F(ReportRetryTest, ARetryDuringTheFirstReportsCommitIsToldToTryAgain) {
  SlowCommits db;
  SchedulerOptions options;
  options.agent_threads = 0;
  Scheduler scheduler(&db, &spaces_, options);
  const std::string worker = scheduler.RegisterWorker(kDevice, "test", kCores);
  JobRequest r;
  r.name = "slow";
  r.tasks = {Task()};
  r.budget = 4;
  r.batch_size = 1;
  r.strategy = "random";
  r.spec_json = "{}";
  ASSERT_TRUE(scheduler.Submit(r).ok());
  absl::StatusOr<LeaseGrant> grant = scheduler.Lease(worker, 1);
  ASSERT_TRUE(grant.ok() && grant->candidates.size() == 1);
  const std::vector<v1::CandidateResult> results = AllOk(*grant);
  db.hold_next_ = true;
  absl::StatusOr<int64_t> first;
  std::thread reporter([&] { first = scheduler.Report(worker, grant->lease_id, results); });
  db.committing_.WaitForNotification();
  absl::StatusOr<int64_t> during = scheduler.Report(worker, grant->lease_id, results);
  EXPECT_TRUE(absl::IsUnavailable(during.status())) << during.status();
  db.go_on_.Notify();
  reporter.join();
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<int64_t> after = scheduler.Report(worker, grant->lease_id, results);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(*after, *first);
}

}  // namespace
}  // namespace ktune
