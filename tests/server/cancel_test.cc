// Cancelling a job (Scheduler::Cancel): its answer, whatever else has ended before it.
#include <gtest/gtest.h>

#include <string>

#include "server/scheduler.h"
#include "tests/server/one_task_scheduler.h"

namespace ktune {
namespace {

class CancelTest : public OneTaskScheduler {
 protected:
  int64_t Submit(int64_t budget) { return SubmitRandom({Task()}, budget); }
};

// The server keeps the last 64 ended jobs' status, dropping the smallest ids first. Cancelling an
// older job than those kept it and dropped it at once, and Cancel's answer, read back from what
// was kept, threw (an uncaught std::out_of_range: the server aborted).
TEST_F(CancelTest, CancellingAnOldJobAfterManyHaveEndedAnswersIt) {
  const int64_t old = Submit(1000);
  ASSERT_TRUE(scheduler_->Pause(old).ok());  // the others end meanwhile
  for (int i = 0; i < 65; ++i) {
    Submit(1);
    absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 1);
    ASSERT_TRUE(grant.ok()) << grant.status();
    ASSERT_EQ(grant->candidates.size(), 1u);
    v1::CandidateResult result;
    result.set_candidate_id(grant->candidates[0].candidate_id());
    result.set_status(v1::MEASUREMENT_STATUS_OK);
    result.add_repeat_times_ms(1.0 + i);
    ASSERT_TRUE(scheduler_->Report(worker_, grant->lease_id, {result}).ok());
  }
  int ended = 0;
  for (const TuningDatabase::JobSummary& j : *db_.ListJobSummaries()) {
    ended += j.job.state == JobState::kDone;
  }
  ASSERT_EQ(ended, 65);
  absl::StatusOr<JobStatus> cancelled = scheduler_->Cancel(old);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->job.state, JobState::kCancelled);
  EXPECT_EQ(db_.GetJob(old)->state, JobState::kCancelled);
}

}  // namespace
}  // namespace ktune
