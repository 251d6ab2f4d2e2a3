// A candidate whose leases keep expiring (each worker measuring it stops answering: it hangs or
// crashes them) is stored as lost after Scheduler::kMaxLeaseExpiries, and its job goes on. It was
// handed out again for ever, its job never ending.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "db/memory_tuning_database.h"
#include "server/scheduler.h"
#include "tests/server/one_task_scheduler.h"

namespace ktune {
namespace {

// The scheduler of OneTaskSchedulerOn<Db> on a clock the test moves (now_).
template <typename Db = MemoryTuningDatabase>
class OnATestClock : public OneTaskSchedulerOn<Db> {
 protected:
  OnATestClock() {
    SchedulerOptions options;
    options.now = [this] { return now_; };
    this->Restart(options);
  }
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
};

using LostCandidateTest = OnATestClock<>;

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
    EXPECT_EQ(scheduler_->CountNow().leases_expired, expiry);  // ktune_lease_expiries_total
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

// A worker dies on one candidate of a lease of four, again and again: the three others are
// measured (each goes alone after a second expiry), and only the one it dies on is stored lost.
// (Counted per lease, all four were given up after three rounds.)
TEST_F(LostCandidateTest, OnlyTheCandidateItsWorkersDieOnIsLost) {
  const int64_t job = SubmitRandom({Task()}, /*budget=*/4, /*batch_size=*/4);
  std::string culprit;
  int ok = 0;
  for (int lease = 0; lease < 20; ++lease) {
    absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 4);
    ASSERT_TRUE(grant.ok()) << grant.status();
    if (grant->candidates.empty()) break;
    if (culprit.empty()) culprit = grant->candidates[0].config_hash();
    bool dies = false;
    std::vector<v1::CandidateResult> results;
    for (const v1::Candidate& c : grant->candidates) {
      dies |= c.config_hash() == culprit;
      v1::CandidateResult r;
      r.set_candidate_id(c.candidate_id());
      r.set_status(v1::MEASUREMENT_STATUS_OK);
      r.add_repeat_times_ms(1.0 + results.size());
      results.push_back(r);
    }
    if (dies) {  // the worker dies: no report, the lease expires
      now_ += absl::Minutes(1);
      scheduler_->ExpireLeases();
    } else {
      ASSERT_TRUE(scheduler_->Report(worker_, grant->lease_id, results).ok());
      ok += static_cast<int>(results.size());
    }
  }
  EXPECT_EQ(ok, 3);
  absl::StatusOr<JobStatus> status = scheduler_->GetJob(job);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->job.state, JobState::kDone);
  auto records = db_.TaskRecords(Task());
  ASSERT_TRUE(records.ok()) << records.status();
  int lost = 0;
  for (const Record& r : *records) lost += r.status == MeasurementStatus::kLost;
  EXPECT_EQ(records->size(), 4u);
  EXPECT_EQ(lost, 1);
}

// A database whose disk is full while `full` is set: every report's commit is refused.
class FullDisk : public MemoryTuningDatabase {
 public:
  absl::StatusOr<int64_t> AddJobRecords(const std::vector<Record>& records,
                                        const std::vector<JobTaskCount>& counts) override {
    if (full) return absl::ResourceExhaustedError("database or disk is full");
    return MemoryTuningDatabase::AddJobRecords(records, counts);
  }
  bool full = true;
};

using FullDiskTest = OnATestClock<FullDisk>;

// A candidate measured and reported while the disk is full is not the candidate's fault: its
// leases' expiries do not count, and it is measured and stored once there is room. (Three
// refused reports stored it lost for good, "each worker measuring it stopped answering".)
TEST_F(FullDiskTest, ACandidateWhoseReportsTheDatabaseRefusedIsNotStoredLost) {
  const int64_t job = SubmitRandom({Task()}, /*budget=*/1, /*batch_size=*/1);
  for (int round = 1; round <= Scheduler::kMaxLeaseExpiries; ++round) {
    absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 1);
    ASSERT_TRUE(grant.ok()) << grant.status();
    ASSERT_EQ(grant->candidates.size(), 1u) << "round " << round;
    EXPECT_TRUE(absl::IsResourceExhausted(
        scheduler_->Report(worker_, grant->lease_id, AllOk(*grant)).status()));
    // Room again as the last refused lease expires (a lost record could be stored now).
    if (round == Scheduler::kMaxLeaseExpiries) db_.full = false;
    now_ += absl::Minutes(1);
    scheduler_->ExpireLeases();
  }
  absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 1);
  ASSERT_TRUE(grant.ok()) << grant.status();
  ASSERT_EQ(grant->candidates.size(), 1u) << "handed out again, not given up";
  ASSERT_TRUE(scheduler_->Report(worker_, grant->lease_id, AllOk(*grant)).ok());
  auto records = db_.TaskRecords(Task());
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].status, MeasurementStatus::kOk);
  absl::StatusOr<JobStatus> status = scheduler_->GetJob(job);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->job.state, JobState::kDone);
}

}  // namespace
}  // namespace ktune
