// A worker that cannot measure a task at all (CandidateResult.task_unmeasurable: no inputs file,
// no compiler there) stores nothing of it: another worker of the class takes its candidates, and
// the task fails, saying why, only when no live worker is left that could measure it.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "server/scheduler.h"
#include "tests/server/one_task_scheduler.h"

namespace ktune {
namespace {

class UnmeasurableTaskTest : public OneTaskScheduler {
 protected:
  // A report of every candidate of `grant` as this worker's lack, not the configurations'.
  static std::vector<v1::CandidateResult> Unmeasurable(const LeaseGrant& grant) {
    std::vector<v1::CandidateResult> results;
    for (const v1::Candidate& c : grant.candidates) {
      v1::CandidateResult& r = results.emplace_back();
      r.set_candidate_id(c.candidate_id());
      r.set_status(v1::MEASUREMENT_STATUS_RUNTIME_ERROR);
      r.set_message("this worker cannot measure the task: no inputs file here");
      r.set_task_unmeasurable(true);
    }
    return results;
  }
};

TEST_F(UnmeasurableTaskTest, AnotherWorkerTakesTheCandidatesAndNothingIsStored) {
  const std::string other = scheduler_->RegisterWorker(kDevice, "other", kCores);
  const int64_t job = SubmitRandom({Task()}, /*budget=*/1, /*batch_size=*/1);
  absl::StatusOr<LeaseGrant> first = scheduler_->Lease(worker_, 1);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->candidates.size(), 1u);
  ASSERT_TRUE(scheduler_->Report(worker_, first->lease_id, Unmeasurable(*first)).ok());
  EXPECT_TRUE(db_.TaskRecords(Task())->empty());
  absl::StatusOr<LeaseGrant> again = scheduler_->Lease(worker_, 1);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->candidates.empty()) << "not handed to the worker that cannot measure it";
  absl::StatusOr<LeaseGrant> taken = scheduler_->Lease(other, 1);
  ASSERT_TRUE(taken.ok()) << taken.status();
  ASSERT_EQ(taken->candidates.size(), 1u);
  EXPECT_EQ(taken->candidates[0].config_hash(), first->candidates[0].config_hash());
  ASSERT_TRUE(scheduler_->Report(other, taken->lease_id, AllOk(*taken)).ok());
  absl::StatusOr<JobStatus> status = scheduler_->GetJob(job);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->job.state, JobState::kDone);
  auto records = db_.TaskRecords(Task());
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].status, MeasurementStatus::kOk);
}

TEST_F(UnmeasurableTaskTest, TheTaskFailsSayingWhyOnceNoWorkerCouldMeasureIt) {
  const std::string other = scheduler_->RegisterWorker(kDevice, "other", kCores);
  const int64_t job = SubmitRandom({Task()}, /*budget=*/2, /*batch_size=*/1);
  for (const std::string& w : {worker_, other}) {
    absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(w, 1);
    ASSERT_TRUE(grant.ok()) << grant.status();
    ASSERT_EQ(grant->candidates.size(), 1u) << w;
    ASSERT_TRUE(scheduler_->Report(w, grant->lease_id, Unmeasurable(*grant)).ok());
  }
  absl::StatusOr<JobStatus> status = scheduler_->GetJob(job);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->job.state, JobState::kFailed);
  EXPECT_TRUE(absl::StrContains(status->job.message, "no inputs file here (1 other workers"))
      << status->job.message;
  EXPECT_TRUE(db_.TaskRecords(Task())->empty());
}

}  // namespace
}  // namespace ktune
