// A worker sends its report again when the reply to the first was lost (a timeout, a dropped
// connection): the first was stored and ended the lease. The retry is answered as the first was;
// it read as refused ("nothing was stored"), and the worker logged a failure for measurements the
// database holds.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "server/scheduler.h"
#include "tests/server/one_task_scheduler.h"

namespace ktune {
namespace {

class ReportRetryTest : public OneTaskScheduler {
 protected:
  std::vector<v1::CandidateResult> AllOk(const LeaseGrant& grant) {
    std::vector<v1::CandidateResult> results;
    for (const v1::Candidate& c : grant.candidates) {
      v1::CandidateResult& r = results.emplace_back();
      r.set_candidate_id(c.candidate_id());
      r.set_status(v1::MEASUREMENT_STATUS_OK);
      r.add_repeat_times_ms(1.0);
    }
    return results;
  }
};

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

  // Another report on the ended lease (other candidates, another worker) is still refused.
  results.pop_back();
  EXPECT_TRUE(
      absl::IsFailedPrecondition(scheduler_->Report(worker_, grant->lease_id, results).status()));
  const std::string other = scheduler_->RegisterWorker(kDevice, "other", kCores);
  EXPECT_TRUE(absl::IsFailedPrecondition(
      scheduler_->Report(other, grant->lease_id, AllOk(*grant)).status()));
}

}  // namespace
}  // namespace ktune
