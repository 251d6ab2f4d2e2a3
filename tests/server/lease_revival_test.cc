// A worker cut off from the server (a network partition, a stopped process) past the lease
// timeout is alive after all: its next heartbeat or its report gives it the lease back when every
// candidate of it still waits, unmeasured, for another worker (Scheduler::Revive). Its results
// were refused and measured again (minutes of GPU builds), and a worker cut off three times had
// its candidate stored lost.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/scheduler.h"
#include "tests/server/one_task_scheduler.h"

namespace ktune {
namespace {

class LeaseRevivalTest : public OneTaskScheduler {
 protected:
  LeaseRevivalTest() {
    SchedulerOptions options;
    options.now = [this] { return now_; };
    Restart(options);
  }

  // Past the lease timeout with neither report nor heartbeat: the server takes leases back.
  void CutOff() {
    now_ += absl::Minutes(1);
    scheduler_->ExpireLeases();
  }

  int64_t Done(int64_t job) {
    absl::StatusOr<JobStatus> status = scheduler_->GetJob(job);
    EXPECT_TRUE(status.ok()) << status.status();
    return status.ok() ? status->done : -1;
  }

  // A job of 4 measurements: its first batch (the kernel's default configuration alone)
  // measured, then a lease of the 3 others, returned.
  LeaseGrant LeaseTheSecondBatch(int64_t* job) {
    *job = SubmitRandom({Task()}, /*budget=*/4, /*batch_size=*/4);
    absl::StatusOr<LeaseGrant> first = scheduler_->Lease(worker_, 4);
    EXPECT_TRUE(first.ok()) << first.status();
    EXPECT_EQ(first->candidates.size(), 1u);
    EXPECT_TRUE(scheduler_->Report(worker_, first->lease_id, AllOk(*first)).ok());
    absl::StatusOr<LeaseGrant> second = scheduler_->Lease(worker_, 4);
    EXPECT_TRUE(second.ok()) << second.status();
    EXPECT_EQ(second->candidates.size(), 3u);
    return second.value_or(LeaseGrant{});
  }

  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
};

TEST_F(LeaseRevivalTest, ALateReportOfALeaseNobodyTookIsStored) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job);
  ASSERT_EQ(grant.candidates.size(), 3u);
  CutOff();
  EXPECT_EQ(scheduler_->CountNow().leases_expired, 1);

  absl::StatusOr<int64_t> stored = scheduler_->Report(worker_, grant.lease_id, AllOk(grant));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, 3);
  EXPECT_EQ(scheduler_->CountNow().leases_revived, 1);
  EXPECT_EQ(Done(job), 4);
  absl::StatusOr<LeaseGrant> after = scheduler_->Lease(worker_, 4);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->candidates.empty());  // nothing to measure again
  auto records = db_.TaskRecords(Task());
  ASSERT_TRUE(records.ok());
  EXPECT_EQ(records->size(), 4u);
}

TEST_F(LeaseRevivalTest, AHeartbeatGivesTheLeaseBack) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job);
  ASSERT_EQ(grant.candidates.size(), 3u);
  CutOff();
  absl::StatusOr<std::vector<std::string>> revoked =
      scheduler_->Heartbeat(worker_, {grant.lease_id});
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_TRUE(revoked->empty());  // the worker goes on measuring
  // Held again: no one else gets its candidates, and it does not expire before its new timeout.
  const std::string other = scheduler_->RegisterWorker(kDevice, "other", kCores);
  absl::StatusOr<LeaseGrant> others = scheduler_->Lease(other, 4);
  ASSERT_TRUE(others.ok());
  EXPECT_TRUE(others->candidates.empty());
  scheduler_->ExpireLeases();
  EXPECT_EQ(scheduler_->CountNow().leases_expired, 1);  // not again: its timeout starts anew
  ASSERT_TRUE(scheduler_->Report(worker_, grant.lease_id, AllOk(grant)).ok());
  EXPECT_EQ(Done(job), 4);
  EXPECT_EQ(scheduler_->CountNow().leases_revived, 1);
}

// A job paused meanwhile: what its worker measured is kept, as a live lease's report is.
TEST_F(LeaseRevivalTest, APausedJobsLeaseIsGivenBackToo) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job);
  CutOff();
  ASSERT_TRUE(scheduler_->Pause(job).ok());
  absl::StatusOr<std::vector<std::string>> revoked =
      scheduler_->Heartbeat(worker_, {grant.lease_id});
  ASSERT_TRUE(revoked.ok());
  EXPECT_TRUE(revoked->empty());
  absl::StatusOr<int64_t> stored = scheduler_->Report(worker_, grant.lease_id, AllOk(grant));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, 3);
}

// A late report the server refuses (a result ok without times) does not take the lease back:
// its candidates are another worker's at once.
TEST_F(LeaseRevivalTest, ARefusedLateReportLeavesTheCandidatesToOthers) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job);
  CutOff();
  std::vector<v1::CandidateResult> bad = AllOk(grant);
  bad[0].clear_repeat_times_ms();
  absl::StatusOr<int64_t> refused = scheduler_->Report(worker_, grant.lease_id, bad);
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  EXPECT_EQ(scheduler_->CountNow().leases_revived, 0);
  const std::string other = scheduler_->RegisterWorker(kDevice, "other", kCores);
  absl::StatusOr<LeaseGrant> others = scheduler_->Lease(other, 4);
  ASSERT_TRUE(others.ok());
  EXPECT_EQ(others->candidates.size(), 3u);
  // And the worker's good report, after, is refused: its candidates are held by another.
  absl::StatusOr<int64_t> late = scheduler_->Report(worker_, grant.lease_id, AllOk(grant));
  EXPECT_TRUE(absl::IsFailedPrecondition(late.status())) << late.status();
}

// A worker that left (or that the server forgot) is no longer the lease's: its report would be
// stored without a device. It is told to register again (NOT_FOUND).
TEST_F(LeaseRevivalTest, AWorkerThatLeftDoesNotGetItsLeaseBack) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job);
  CutOff();
  ASSERT_TRUE(scheduler_->Leave(worker_).ok());
  absl::StatusOr<int64_t> late = scheduler_->Report(worker_, grant.lease_id, AllOk(grant));
  EXPECT_TRUE(absl::IsNotFound(late.status())) << late.status();
  EXPECT_EQ(scheduler_->CountNow().leases_revived, 0);
}

// A heartbeat told the worker its lease was taken back, and the worker dropped it: a later
// heartbeat does not give it back once its candidates are free again (they would wait for a
// report that never comes).
TEST_F(LeaseRevivalTest, ALeaseRevokedOnceStaysRevoked) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job);
  CutOff();
  const std::string other = scheduler_->RegisterWorker(kDevice, "other", kCores);
  absl::StatusOr<LeaseGrant> taken = scheduler_->Lease(other, 1);
  ASSERT_TRUE(taken.ok());
  ASSERT_EQ(taken->candidates.size(), 1u);
  absl::StatusOr<std::vector<std::string>> revoked =
      scheduler_->Heartbeat(worker_, {grant.lease_id});
  ASSERT_TRUE(revoked.ok());
  ASSERT_EQ(revoked->size(), 1u);
  ASSERT_TRUE(scheduler_->Leave(other).ok());  // the taken candidate goes back to the queue
  revoked = scheduler_->Heartbeat(worker_, {grant.lease_id});
  ASSERT_TRUE(revoked.ok());
  EXPECT_EQ(revoked->size(), 1u);
  const std::string third = scheduler_->RegisterWorker(kDevice, "third", kCores);
  absl::StatusOr<LeaseGrant> freed = scheduler_->Lease(third, 4);
  ASSERT_TRUE(freed.ok());
  EXPECT_EQ(freed->candidates.size(), 3u);
}

TEST_F(LeaseRevivalTest, ALeaseWhoseCandidatesWereTakenIsNotGivenBack) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job);
  ASSERT_EQ(grant.candidates.size(), 3u);
  CutOff();
  const std::string other = scheduler_->RegisterWorker(kDevice, "other", kCores);
  absl::StatusOr<LeaseGrant> taken = scheduler_->Lease(other, 1);  // one of the three
  ASSERT_TRUE(taken.ok());
  ASSERT_EQ(taken->candidates.size(), 1u);

  absl::StatusOr<std::vector<std::string>> revoked =
      scheduler_->Heartbeat(worker_, {grant.lease_id});
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_EQ(*revoked, std::vector<std::string>{grant.lease_id});
  absl::StatusOr<int64_t> late = scheduler_->Report(worker_, grant.lease_id, AllOk(grant));
  EXPECT_TRUE(absl::IsFailedPrecondition(late.status())) << late.status();
  EXPECT_EQ(scheduler_->CountNow().leases_revived, 0);
  // The two others still wait, and are measured once: by whoever leases them next.
  ASSERT_TRUE(scheduler_->Report(other, taken->lease_id, AllOk(*taken)).ok());
  absl::StatusOr<LeaseGrant> rest = scheduler_->Lease(other, 4);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(rest->candidates.size(), 2u);
  ASSERT_TRUE(scheduler_->Report(other, rest->lease_id, AllOk(*rest)).ok());
  EXPECT_EQ(Done(job), 4);
}

TEST_F(LeaseRevivalTest, AnotherWorkerCannotTakeALeaseBack) {
  SubmitRandom({Task()}, /*budget=*/4, /*batch_size=*/4);
  absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 4);
  ASSERT_TRUE(grant.ok()) << grant.status();
  CutOff();
  const std::string other = scheduler_->RegisterWorker(kDevice, "other", kCores);
  absl::StatusOr<std::vector<std::string>> revoked =
      scheduler_->Heartbeat(other, {grant->lease_id});
  ASSERT_TRUE(revoked.ok());
  EXPECT_EQ(revoked->size(), 1u);
  absl::StatusOr<int64_t> report = scheduler_->Report(other, grant->lease_id, AllOk(*grant));
  EXPECT_TRUE(absl::IsFailedPrecondition(report.status())) << report.status();
}

// A worker cut off three times while measuring one candidate is not taken for one the candidate
// kills: each time it comes back, the expiry is taken back, and its result is stored, not lost.
TEST_F(LeaseRevivalTest, AWorkerCutOffAgainAndAgainDoesNotLoseItsCandidate) {
  const int64_t job = SubmitRandom({Task()}, /*budget=*/1, /*batch_size=*/1);
  absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 1);
  ASSERT_TRUE(grant.ok()) << grant.status();
  ASSERT_EQ(grant->candidates.size(), 1u);
  for (int partition = 0; partition < Scheduler::kMaxLeaseExpiries + 1; ++partition) {
    CutOff();
    absl::StatusOr<std::vector<std::string>> revoked =
        scheduler_->Heartbeat(worker_, {grant->lease_id});
    ASSERT_TRUE(revoked.ok());
    ASSERT_TRUE(revoked->empty()) << "partition " << partition;
  }
  ASSERT_TRUE(scheduler_->Report(worker_, grant->lease_id, AllOk(*grant)).ok());
  auto records = db_.TaskRecords(Task());
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].status, MeasurementStatus::kOk);
  EXPECT_EQ(Done(job), 1);
}

// The window holds for a lease behind one that was revived and expired again (its id twice in
// the expiry order): it stopped the pruning, and the lease behind it was given back past it.
TEST_F(LeaseRevivalTest, TheWindowHoldsBehindALeaseThatExpiredTwice) {
  SubmitRandom({Task()}, /*budget=*/4, /*batch_size=*/4);
  absl::StatusOr<LeaseGrant> first = scheduler_->Lease(worker_, 4);  // the default alone
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(scheduler_->Report(worker_, first->lease_id, AllOk(*first)).ok());
  absl::StatusOr<LeaseGrant> a = scheduler_->Lease(worker_, 1);
  absl::StatusOr<LeaseGrant> b = scheduler_->Lease(worker_, 2);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->candidates.size(), 1u);
  ASSERT_EQ(b->candidates.size(), 2u);
  CutOff();                                                             // both expire now
  ASSERT_TRUE(scheduler_->Heartbeat(worker_, {a->lease_id})->empty());  // a is given back
  CutOff();                                                             // and expires again
  const absl::Duration window =
      Scheduler::kReviveWithinLeaseTimeouts * SchedulerOptions().lease_timeout;
  now_ += window - absl::Minutes(1) + absl::Seconds(1);  // b's window is over, a's second is not
  scheduler_->ExpireLeases();
  absl::StatusOr<int64_t> late = scheduler_->Report(worker_, b->lease_id, AllOk(*b));
  EXPECT_TRUE(absl::IsFailedPrecondition(late.status())) << late.status();
  ASSERT_TRUE(scheduler_->Report(worker_, a->lease_id, AllOk(*a)).ok());
}

TEST_F(LeaseRevivalTest, ACancelledJobsLeaseIsNotGivenBack) {
  int64_t job = 0;
  const LeaseGrant grant = LeaseTheSecondBatch(&job);
  CutOff();
  ASSERT_TRUE(scheduler_->Cancel(job).ok());
  absl::StatusOr<int64_t> late = scheduler_->Report(worker_, grant.lease_id, AllOk(grant));
  EXPECT_TRUE(absl::IsFailedPrecondition(late.status())) << late.status();
  EXPECT_EQ(scheduler_->CountNow().leases_revived, 0);
}

// Another worker measured the batch and the task moved on to its next one, whose candidates sit
// at the same places in the queue: the late report is of other configurations, and is refused
// (stored, its times would have gone to the new batch's configurations).
TEST_F(LeaseRevivalTest, ALeaseOfABatchReplacedSinceIsNotGivenBack) {
  const int64_t job = SubmitRandom({Task()}, /*budget=*/7, /*batch_size=*/3);
  absl::StatusOr<LeaseGrant> first = scheduler_->Lease(worker_, 3);  // the default alone
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(scheduler_->Report(worker_, first->lease_id, AllOk(*first)).ok());
  absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 3);
  ASSERT_TRUE(grant.ok());
  ASSERT_EQ(grant->candidates.size(), 3u);
  CutOff();
  const std::string other = scheduler_->RegisterWorker(kDevice, "other", kCores);
  absl::StatusOr<LeaseGrant> taken = scheduler_->Lease(other, 3);
  ASSERT_TRUE(taken.ok());
  ASSERT_EQ(taken->candidates.size(), 3u);
  ASSERT_TRUE(scheduler_->Report(other, taken->lease_id, AllOk(*taken)).ok());  // batch done
  absl::StatusOr<int64_t> late = scheduler_->Report(worker_, grant->lease_id, AllOk(*grant));
  EXPECT_TRUE(absl::IsFailedPrecondition(late.status())) << late.status();
  absl::StatusOr<LeaseGrant> next = scheduler_->Lease(other, 3);  // the next batch, untouched
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->candidates.size(), 3u);
  EXPECT_EQ(Done(job), 4);
}

// Past kReviveWithinLeaseTimeouts the lease is forgotten: the report is refused, as before.
TEST_F(LeaseRevivalTest, ALeaseExpiredLongAgoIsNotGivenBack) {
  SubmitRandom({Task()}, /*budget=*/4, /*batch_size=*/4);
  absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 4);
  ASSERT_TRUE(grant.ok()) << grant.status();
  CutOff();
  now_ += (Scheduler::kReviveWithinLeaseTimeouts + 1) * SchedulerOptions().lease_timeout;
  scheduler_->ExpireLeases();
  absl::StatusOr<int64_t> late = scheduler_->Report(worker_, grant->lease_id, AllOk(*grant));
  EXPECT_TRUE(absl::IsFailedPrecondition(late.status())) << late.status();
}

}  // namespace
}  // namespace ktune
