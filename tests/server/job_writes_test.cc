// The scheduler changes a job's state in memory under its lock and stores it after, in order, on a
// writer thread (RequestFlush; inline without one: SchedulerOptions::writer_threads): a job's end,
// a cancel or a pause waiting for the database (a slow sync, another process holding the file, a
// full disk) no longer holds every lease, report and heartbeat of the fleet with it.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "db/memory_tuning_database.h"
#include "server/scheduler.h"
#include "tests/server/one_task_scheduler.h"

namespace ktune {
namespace {

// A database whose job writes (a job's state, its tasks' progress) wait while held, or fail while
// refused (as SQLite's "database is locked" past its busy timeout).
class GatedJobWrites : public MemoryTuningDatabase {
 public:
  absl::Status SetJobState(int64_t id, JobState state, const std::string& message) override {
    if (absl::Status st = Gate(); !st.ok()) return st;
    return MemoryTuningDatabase::SetJobState(id, state, message);
  }
  absl::Status UpdateJobTasks(int64_t job_id,
                              const std::vector<JobTaskProgress>& progress) override {
    if (absl::Status st = Gate(); !st.ok()) return st;
    return MemoryTuningDatabase::UpdateJobTasks(job_id, progress);
  }
  std::atomic<bool> hold_{false}, refuse_{false}, corrupt_{false};
  std::atomic<int> tries_{0};  // job writes tried
  absl::Notification holding_, release_;

 private:
  absl::Status Gate() {
    ++tries_;
    if (refuse_) return absl::AbortedError("database is locked");
    if (corrupt_) return absl::DataLossError("the database file is damaged");
    if (hold_.exchange(false)) {
      holding_.Notify();
      release_.WaitForNotification();
    }
    return absl::OkStatus();
  }
};

class JobWritesTest : public OneTaskScheduler {
 protected:
  JobWritesTest() { Start(/*agent_threads=*/0); }
  // A scheduler over gated_; with a writer thread (SchedulerOptions::writer_threads), its writes
  // are stored there.
  void Start(int agent_threads, int writer_threads = -1) {
    SchedulerOptions options;
    options.agent_threads = agent_threads;
    options.writer_threads = writer_threads;
    scheduler_.reset();
    scheduler_ = std::make_unique<Scheduler>(&gated_, &spaces_, options);
    worker_ = scheduler_->RegisterWorker(kDevice, "test", kCores);
  }
  // The scheduler stores what is left as it goes: before the database it writes to.
  ~JobWritesTest() override {
    if (!gated_.release_.HasBeenNotified()) gated_.release_.Notify();  // a test that failed early
    scheduler_.reset();
  }

  int64_t Submit(int64_t budget, int batch_size) {
    return SubmitRandom({Task()}, budget, batch_size);
  }

  JobState Stored(int64_t id) {
    absl::StatusOr<Job> job = gated_.GetJob(id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? job->state : JobState::kQueued;
  }

  GatedJobWrites gated_;
};

TEST_F(JobWritesTest, AJobsEndWaitingForTheDatabaseHoldsUpNoOtherCall) {
  const int64_t id = Submit(/*budget=*/1, /*batch_size=*/1);
  const std::string other = scheduler_->RegisterWorker(kDevice, "other", kCores);
  absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 1);
  ASSERT_TRUE(grant.ok() && grant->candidates.size() == 1) << grant.status();
  gated_.hold_ = true;  // the job's end, written after the report's records
  absl::StatusOr<int64_t> reported;
  std::thread reporter(
      [&] { reported = scheduler_->Report(worker_, grant->lease_id, AllOk(*grant)); });
  if (!gated_.holding_.WaitForNotificationWithTimeout(absl::Seconds(30))) {
    gated_.release_.Notify();
    reporter.join();
    FAIL() << "the report wrote no job state";
  }

  // Another worker's heartbeat, and a client's query, while the end is being written.
  absl::Notification answered;
  absl::StatusOr<std::vector<std::string>> beat;
  std::thread heartbeat([&] {
    beat = scheduler_->Heartbeat(other, {});
    answered.Notify();
  });
  const bool in_time = answered.WaitForNotificationWithTimeout(absl::Seconds(20));
  gated_.release_.Notify();  // also when it waited: the threads must end
  heartbeat.join();
  reporter.join();
  EXPECT_TRUE(in_time) << "the heartbeat waited for the job's end to be written";
  EXPECT_TRUE(beat.ok()) << beat.status();
  ASSERT_TRUE(reported.ok()) << reported.status();
  EXPECT_EQ(*reported, 1);
  EXPECT_EQ(scheduler_->GetJob(id)->job.state, JobState::kDone);
  EXPECT_EQ(Stored(id), JobState::kDone);  // the report returned once it was stored
}

TEST_F(JobWritesTest, ACancelTheDatabaseRefusesHoldsAndIsStoredOnceItTakesWrites) {
  const int64_t id = Submit(/*budget=*/8, /*batch_size=*/4);
  gated_.refuse_ = true;
  absl::StatusOr<JobStatus> cancelled = scheduler_->Cancel(id);
  ASSERT_TRUE(absl::IsUnavailable(cancelled.status())) << cancelled.status();
  EXPECT_NE(cancelled.status().message().find("is cancelled on this server"), std::string::npos)
      << cancelled.status();
  EXPECT_NE(cancelled.status().message().find("database is locked"), std::string::npos);
  // In effect here: nothing more is leased, and clients see it cancelled.
  EXPECT_EQ(scheduler_->GetJob(id)->job.state, JobState::kCancelled);
  absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 4);
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_TRUE(grant->candidates.empty());
  EXPECT_EQ(Stored(id), JobState::kQueued);
  EXPECT_GT(scheduler_->CountNow().job_writes_pending, 0);

  scheduler_->ExpireLeases();  // a tick while the database still refuses: kept
  EXPECT_EQ(Stored(id), JobState::kQueued);
  gated_.refuse_ = false;
  scheduler_->ExpireLeases();  // the next tick stores it
  EXPECT_EQ(Stored(id), JobState::kCancelled);
  EXPECT_EQ(scheduler_->CountNow().job_writes_pending, 0);
  absl::StatusOr<JobStatus> again = scheduler_->Cancel(id);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->job.state, JobState::kCancelled);
}

// While the database refuses, one job's refused write fails no call on another job, and the calls
// that must not wait (leases, reports) leave the retrying to the tick.
TEST_F(JobWritesTest, ARefusedWriteHoldsUpNeitherOtherJobsNorLeases) {
  TaskKey elsewhere = Task();  // a job no worker serves: never started, so its pause stores two
  elsewhere.device_class = "cpu:nobody";  // writes
  const int64_t stuck = SubmitRandom({elsewhere}, /*budget=*/8);
  const int64_t other = Submit(/*budget=*/8, /*batch_size=*/1);
  absl::StatusOr<LeaseGrant> grant;
  gated_.refuse_ = true;
  ASSERT_TRUE(absl::IsUnavailable(scheduler_->Pause(stuck).status()));
  EXPECT_EQ(scheduler_->GetJob(stuck)->job.state, JobState::kPaused);

  // Resuming a job that is not paused changes nothing: it does not wait for, nor fail on, job
  // `stuck`'s write.
  const int tries = gated_.tries_;
  absl::StatusOr<JobStatus> resumed = scheduler_->Resume(other);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->job.state, JobState::kQueued);
  for (int i = 0; i < 3; ++i) {  // leases and reports of the other job
    grant = scheduler_->Lease(worker_, 1);
    ASSERT_TRUE(grant.ok() && grant->candidates.size() == 1) << grant.status();
    ASSERT_TRUE(scheduler_->Report(worker_, grant->lease_id, AllOk(*grant)).ok());
  }
  EXPECT_EQ(gated_.tries_, tries) << "a call retried the refused write";

  gated_.refuse_ = false;
  scheduler_->ExpireLeases();
  // Started (running), then paused, in order: paused first is refused (a queued job cannot be),
  // and the job would be stored running.
  EXPECT_EQ(Stored(stuck), JobState::kPaused);
  EXPECT_EQ(scheduler_->CountNow().job_writes_pending, 0);
}

// A job that ended here is reported as ended, in the state it ended in, while the database still
// holds it as running.
TEST_F(JobWritesTest, AJobThatEndedIsSaidToHaveEndedBeforeItsEndIsStored) {
  const int64_t id = Submit(/*budget=*/1, /*batch_size=*/1);
  absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 1);
  ASSERT_TRUE(grant.ok() && grant->candidates.size() == 1) << grant.status();
  gated_.refuse_ = true;
  ASSERT_TRUE(scheduler_->Report(worker_, grant->lease_id, AllOk(*grant)).ok());
  EXPECT_EQ(Stored(id), JobState::kRunning);
  absl::StatusOr<JobStatus> paused = scheduler_->Pause(id);
  EXPECT_TRUE(absl::IsFailedPrecondition(paused.status())) << paused.status();
  EXPECT_NE(paused.status().message().find("has already ended (done)"), std::string::npos)
      << paused.status();
}

TEST_F(JobWritesTest, AReportWhoseJobEndTheDatabaseRefusesIsStillStored) {
  const int64_t id = Submit(/*budget=*/1, /*batch_size=*/1);
  absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 1);
  ASSERT_TRUE(grant.ok() && grant->candidates.size() == 1) << grant.status();
  gated_.refuse_ = true;  // records go in; the job's end does not
  absl::StatusOr<int64_t> reported = scheduler_->Report(worker_, grant->lease_id, AllOk(*grant));
  ASSERT_TRUE(reported.ok()) << reported.status();  // it failed, and the worker sent it again
  EXPECT_EQ(*reported, 1);
  EXPECT_EQ(scheduler_->GetJob(id)->job.state, JobState::kDone);
  EXPECT_NE(Stored(id), JobState::kDone);
  gated_.refuse_ = false;
  scheduler_->ExpireLeases();
  EXPECT_EQ(Stored(id), JobState::kDone);
  absl::StatusOr<Job> stored = gated_.GetJob(id);
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->tasks.size(), 1u);
  EXPECT_EQ(stored->tasks[0].state, JobState::kDone);
}

// A writer thread stores the writes (a server always has one, whatever its agent threads): a
// cancel whose write the database holds answers within its bound (UNAVAILABLE, the change in
// effect), and leases and reports go on meanwhile; the write is stored once the database lets go.
TEST_F(JobWritesTest, ACancelAnswersInBoundedTimeWhileTheDatabaseHoldsItsWrite) {
  Start(/*agent_threads=*/0, /*writer_threads=*/1);
  const int64_t held = Submit(/*budget=*/8, /*batch_size=*/4);
  gated_.hold_ = true;
  const absl::Time start = absl::Now();
  absl::StatusOr<JobStatus> cancelled = scheduler_->Cancel(held);
  const absl::Duration took = absl::Now() - start;
  const bool was_held = gated_.holding_.HasBeenNotified();
  EXPECT_TRUE(absl::IsUnavailable(cancelled.status())) << cancelled.status();
  EXPECT_LT(took, absl::Seconds(8)) << "the call's deadline is 10 s";
  EXPECT_NE(cancelled.status().message().find("no answer from it within 3s"), std::string::npos)
      << cancelled.status();
  // Meanwhile another job is leased and reported as usual.
  const int64_t other = Submit(/*budget=*/8, /*batch_size=*/1);
  absl::StatusOr<LeaseGrant> grant;
  // Polled for up to 10 s: on a busy machine the agent thread may take seconds to run.
  for (int i = 0; i < 1000 && (!grant.ok() || grant->candidates.empty()); ++i) {
    grant = scheduler_->Lease(worker_, 1);  // its first batch is prepared by an agent thread
    if (grant.ok() && grant->candidates.empty()) absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE(grant.ok() && grant->candidates.size() == 1) << grant.status();
  EXPECT_EQ(grant->candidates[0].candidate_id().rfind(absl::StrCat(other, "."), 0), 0u);
  EXPECT_TRUE(scheduler_->Report(worker_, grant->lease_id, AllOk(*grant)).ok());
  gated_.release_.Notify();
  ASSERT_TRUE(was_held) << "the cancel's write never reached the database";
  for (int i = 0; i < 1000 && Stored(held) != JobState::kCancelled; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(Stored(held), JobState::kCancelled);
  absl::StatusOr<JobStatus> again = scheduler_->Cancel(held);
  EXPECT_TRUE(again.ok()) << again.status();
}

// A write the database refuses for good (not another process's end of the job) is not retried
// for ever, and the call it belongs to says so.
TEST_F(JobWritesTest, AWriteRefusedForGoodIsDroppedAndItsCallSaysSo) {
  const int64_t id = Submit(/*budget=*/8, /*batch_size=*/4);
  gated_.corrupt_ = true;
  absl::StatusOr<JobStatus> cancelled = scheduler_->Cancel(id);
  EXPECT_TRUE(absl::IsDataLoss(cancelled.status())) << cancelled.status();
  EXPECT_NE(cancelled.status().message().find("a restart of the server undoes it"),
            std::string::npos)
      << cancelled.status();
  EXPECT_EQ(scheduler_->CountNow().job_writes_pending, 0);
  gated_.corrupt_ = false;
  const int64_t next = Submit(/*budget=*/8, /*batch_size=*/4);  // the queue goes on
  ASSERT_TRUE(scheduler_->Cancel(next).ok());
  EXPECT_EQ(Stored(next), JobState::kCancelled);
}

// A write of the job that no call made (a task's end, from a report) and that the database refused
// for good is not a later call's failure.
TEST_F(JobWritesTest, AnEarlierWritesErrorIsNotALaterCallsFailure) {
  TaskKey second = Task();
  second.problem = *registry_.Find("gemm")->ValidateProblem({{"M", 32}, {"N", 64}, {"K", 64}});
  const int64_t id = SubmitRandom({Task(), second}, /*budget=*/1, /*batch_size=*/1);
  absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 1);
  ASSERT_TRUE(grant.ok() && grant->candidates.size() == 1) << grant.status();
  gated_.corrupt_ = true;  // the first task's end, which the report makes; the job goes on
  ASSERT_TRUE(scheduler_->Report(worker_, grant->lease_id, AllOk(*grant)).ok());
  const int tries = gated_.tries_;
  gated_.corrupt_ = false;
  absl::StatusOr<JobStatus> resumed = scheduler_->Resume(id);  // changes nothing
  EXPECT_TRUE(resumed.ok()) << resumed.status();
  absl::StatusOr<JobStatus> paused = scheduler_->Pause(id);
  EXPECT_TRUE(paused.ok()) << paused.status();
  EXPECT_EQ(Stored(id), JobState::kPaused);
  EXPECT_GT(tries, 0) << "the report wrote nothing the database could refuse";
}

// Tasks that end out of order end their job: the check whether all are final skips those before
// the first open one (JobRun::first_open), and a report looks at the tasks it touched only.
TEST_F(JobWritesTest, TasksEndingOutOfOrderEndTheirJob) {
  const KernelDefinition* gemm = registry_.Find("gemm");
  std::vector<TaskKey> tasks;
  for (int64_t m : {16, 32, 48}) {
    tasks.push_back({"gemm", gemm->Version(),
                     *gemm->ValidateProblem({{"M", m}, {"N", 64}, {"K", 64}}),
                     kDevice.device_class});
  }
  const int64_t id = SubmitRandom(tasks, /*budget=*/1, /*batch_size=*/1);
  std::vector<LeaseGrant> grants;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 1);
    ASSERT_TRUE(grant.ok() && grant->candidates.size() == 1) << i;
    grants.push_back(*grant);
  }
  for (int i : {2, 0}) {
    ASSERT_TRUE(scheduler_->Report(worker_, grants[i].lease_id, AllOk(grants[i])).ok());
    EXPECT_EQ(scheduler_->GetJob(id)->job.state, JobState::kRunning) << "after task " << i;
  }
  ASSERT_TRUE(scheduler_->Report(worker_, grants[1].lease_id, AllOk(grants[1])).ok());
  EXPECT_EQ(scheduler_->GetJob(id)->job.state, JobState::kDone);
  EXPECT_EQ(Stored(id), JobState::kDone);
}

}  // namespace
}  // namespace ktune
