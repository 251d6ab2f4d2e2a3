// A job bound to a worker (JobSpec.worker_id: a client that measures its own kernel, as the Kernel
// Tuner bridge does): only that worker measures it, and it ends when the worker is gone, so that
// a client that crashed leaves no job running (other sessions of its class leased its candidates
// for ever).
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "server/scheduler.h"
#include "tests/server/one_task_scheduler.h"

namespace ktune {
namespace {

class BoundJobTest : public OneTaskScheduler {
 protected:
  BoundJobTest() {
    SchedulerOptions options;
    options.now = [this] { return now_; };
    Restart(options);
    other_ = scheduler_->RegisterWorker(kDevice, "other", kCores);
  }

  absl::StatusOr<int64_t> SubmitBoundTo(const std::string& worker) {
    JobRequest r;
    r.name = "bound";
    r.tasks = {Task()};
    r.budget = 100;
    r.strategy = "random";
    r.batch_size = 4;
    r.spec_json = "{}";
    r.worker_id = worker;
    return scheduler_->Submit(r);
  }

  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
  std::string other_;
};

TEST_F(BoundJobTest, OnlyItsWorkerMeasuresIt) {
  absl::StatusOr<int64_t> job = SubmitBoundTo(worker_);
  ASSERT_TRUE(job.ok()) << job.status();
  absl::StatusOr<LeaseGrant> theirs = scheduler_->Lease(other_, 8);
  ASSERT_TRUE(theirs.ok()) << theirs.status();
  EXPECT_TRUE(theirs->candidates.empty());
  absl::StatusOr<LeaseGrant> mine = scheduler_->Lease(worker_, 8);
  ASSERT_TRUE(mine.ok()) << mine.status();
  EXPECT_FALSE(mine->candidates.empty());
  EXPECT_EQ(scheduler_->GetJob(*job)->job.state, JobState::kRunning);
}

// Tasks of another class than the worker's would wait for ever: refused.
TEST_F(BoundJobTest, AJobOfAnotherDeviceClassThanItsWorkersIsRefused) {
  JobRequest r;
  r.name = "elsewhere";
  TaskKey task = Task();
  task.device_class = "another class";
  r.tasks = {task};
  r.budget = 4;
  r.spec_json = "{}";
  r.worker_id = worker_;
  absl::StatusOr<int64_t> job = scheduler_->Submit(r);
  EXPECT_EQ(job.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(job.status().message(), "and this job has 'another class'"))
      << job.status();
}

TEST_F(BoundJobTest, ItSaysWhenItWaitsForItsSilentWorker) {
  absl::StatusOr<int64_t> job = SubmitBoundTo(worker_);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(scheduler_->GetJob(*job)->waiting, "");  // its worker is there
  const absl::Time heard = now_;
  now_ += absl::Seconds(40);  // past the lease timeout, not yet taken for gone
  EXPECT_EQ(scheduler_->GetJob(*job)->waiting,
            absl::StrCat("1 task waits for its worker ", worker_, ", last heard from at ",
                         absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", heard, absl::UTCTimeZone())));
}

TEST_F(BoundJobTest, ItEndsWhenItsWorkerLeaves) {
  absl::StatusOr<int64_t> job = SubmitBoundTo(worker_);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(scheduler_->Leave(worker_).ok());
  absl::StatusOr<JobStatus> ended = scheduler_->GetJob(*job);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->job.state, JobState::kCancelled);
  EXPECT_TRUE(absl::StrContains(ended->job.message, "its worker " + worker_)) << ended->job.message;
  EXPECT_EQ(db_.GetJob(*job)->state, JobState::kCancelled);  // stored so
}

TEST_F(BoundJobTest, ItEndsWhenItsWorkerIsLostAndAtARestart) {
  absl::StatusOr<int64_t> job = SubmitBoundTo(worker_);
  ASSERT_TRUE(job.ok()) << job.status();
  now_ += absl::Seconds(10);  // within the lease timeout: still measuring for it
  scheduler_->ExpireLeases();
  EXPECT_EQ(scheduler_->GetJob(*job)->job.state, JobState::kQueued);
  now_ += absl::Minutes(5);  // no heartbeat since: lost
  scheduler_->ExpireLeases();
  EXPECT_EQ(scheduler_->GetJob(*job)->job.state, JobState::kCancelled);

  absl::StatusOr<int64_t> second = SubmitBoundTo(other_);
  ASSERT_TRUE(second.ok()) << second.status();
  SchedulerOptions options;
  options.now = [this] { return now_; };
  Restart(options);  // worker ids do not survive it
  EXPECT_EQ(db_.GetJob(*second)->state, JobState::kCancelled);
}

TEST_F(BoundJobTest, AWorkerNotRegisteredIsRefused) {
  absl::StatusOr<int64_t> job = SubmitBoundTo("w99-nobody");
  EXPECT_EQ(job.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(job.status().message(), "w99-nobody is not registered"));
  EXPECT_EQ(db_.Stats()->jobs, 0);
}

}  // namespace
}  // namespace ktune
