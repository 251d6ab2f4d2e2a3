// A candidate whose leases keep expiring (each worker measuring it stops answering: it hangs or
// crashes them) is stored as lost after Scheduler::kMaxLeaseExpiries, and its job goes on. It was
// handed out again for ever, its job never ending.
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/match.h"
#include "server/scheduler.h"
#include "tests/server/one_task_scheduler.h"

namespace ktune {
namespace {

class LostCandidateTest : public OneTaskScheduler {
 protected:
  LostCandidateTest() {
    SchedulerOptions options;
    options.now = [this] { return now_; };
    Restart(options);
  }
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
};

TEST_F(LostCandidateTest, ACandidateWhoseLeasesKeepExpiringIsStoredLost) {
  const int64_t job = SubmitRandom({Task()}, /*budget=*/1, /*batch_size=*/1);
  std::string config;
  for (int expiry = 1; expiry <= Scheduler::kMaxLeaseExpiries; ++expiry) {
    absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 1);
    ASSERT_TRUE(grant.ok()) << grant.status();
    ASSERT_EQ(grant->candidates.size(), 1u) << "lease " << expiry;
    if (config.empty()) config = grant->candidates[0].config_hash();
    EXPECT_EQ(grant->candidates[0].config_hash(), config);  // the same one, leased again
    now_ += absl::Minutes(1);  // past the lease timeout, no report, no heartbeat
    scheduler_->ExpireLeases();
  }
  absl::StatusOr<JobStatus> status = scheduler_->GetJob(job);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->job.state, JobState::kDone);
  EXPECT_EQ(status->done, 1);
  auto records = db_.TaskRecords(Task());
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].status, MeasurementStatus::kLost);
  EXPECT_TRUE(absl::StrContains((*records)[0].message, "expired 3 times")) << (*records)[0].message;
  absl::StatusOr<LeaseGrant> after = scheduler_->Lease(worker_, 1);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->candidates.empty());  // not handed out again
}

}  // namespace
}  // namespace ktune
