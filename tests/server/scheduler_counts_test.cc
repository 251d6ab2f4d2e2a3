// What the scheduler counts for the metrics (Scheduler::CountNow): work that waits, and why.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <string>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/scheduler.h"
#include "tests/server/one_task_scheduler.h"

namespace ktune {
namespace {

class SchedulerCountsTest : public OneTaskScheduler {
 protected:
  int64_t Submit(const TaskKey& task) { return SubmitRandom({task}, 100, 8); }
};

// A task whose device class no worker has is counted by class (the metrics showed nothing: its
// search starts at a lease, so it had no queued candidates), and a paused job's queued candidates
// are not work waiting for a worker (they raised the "nobody takes it" alert for a pause).
TEST_F(SchedulerCountsTest, TasksWithoutAWorkerAreCountedAndAPausedJobsQueueIsNot) {
  TaskKey elsewhere = Task();
  elsewhere.device_class = "cpu:nobody";
  Submit(elsewhere);
  const int64_t served = Submit(Task());
  Scheduler::Counts counts;
  for (int i = 0; i < 3 && counts.queued_candidates == 0; ++i) {  // (a first batch may be 1)
    absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 1);
    ASSERT_TRUE(grant.ok() && grant->candidates.size() == 1);
    v1::CandidateResult result;
    result.set_candidate_id(grant->candidates[0].candidate_id());
    result.set_status(v1::MEASUREMENT_STATUS_OK);
    result.add_repeat_times_ms(1.0);
    ASSERT_TRUE(scheduler_->Report(worker_, grant->lease_id, {result}).ok());
    counts = scheduler_->CountNow();
  }
  EXPECT_EQ(counts.tasks_without_worker, (std::map<std::string, int64_t>{{"cpu:nobody", 1}}));
  EXPECT_GT(counts.queued_candidates, 0);
  ASSERT_TRUE(scheduler_->Pause(served).ok());
  counts = scheduler_->CountNow();
  EXPECT_EQ(counts.queued_candidates, 0);
  EXPECT_EQ(counts.jobs["paused"], 1);
  EXPECT_EQ(counts.tasks_without_worker.size(), 1u);
}

// A job whose `ktune tune` session died is cancelled when a server starts, and counted with the
// jobs this server ended (ktune_jobs_ended_total missed it: the cancel went straight to the
// database).
TEST_F(SchedulerCountsTest, AJobOfAGoneSessionCancelledAtStartIsCounted) {
  const pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);  // reaped: its id names no process now
  std::vector<std::string> session = absl::StrSplit(ThisProcessSession(), absl::MaxSplits(':', 3));
  ASSERT_EQ(session.size(), 4u) << ThisProcessSession();
  session[1] = std::to_string(child);
  session[2] = "";  // its start time is not known: the id alone says it is gone
  SchedulerOptions gone;
  gone.session = absl::StrJoin(session, ":");
  Restart(gone);
  const int64_t job = Submit(Task());
  std::vector<std::string> observed;  // ktune_job_duration_seconds' states
  SchedulerOptions next;
  next.on_job_ended = [&observed](const std::string& state, absl::Duration) {
    observed.push_back(state);
  };
  Restart(next);  // another server starts on the database
  EXPECT_EQ(scheduler_->CountNow().jobs_ended["cancelled"], 1);
  EXPECT_EQ(observed, std::vector<std::string>{"cancelled"});
  absl::StatusOr<JobStatus> ended = scheduler_->GetJob(job);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->job.state, JobState::kCancelled);
}

// A job of a `ktune tune` session on the server's database (the embedded default, on the same
// file) is the session's to end while it lives, and the server's once it is gone: a fleet trial
// killed the session, and cancel, pause and resume answered "has already ended (running)" while
// the job stayed running for ever.
TEST_F(SchedulerCountsTest, AJobOfASessionIsLeftToItWhileItLivesAndEndedOnceItIsGone) {
  const pid_t child = fork();
  if (child == 0) {
    pause();
    _exit(0);
  }
  ASSERT_GT(child, 0);
  std::vector<std::string> session = absl::StrSplit(ThisProcessSession(), absl::MaxSplits(':', 3));
  ASSERT_EQ(session.size(), 4u) << ThisProcessSession();
  session[1] = std::to_string(child);
  session[2] = "";  // the id alone says whether it lives
  SchedulerOptions of_session;
  of_session.session = absl::StrJoin(session, ":");
  Restart(of_session);
  const int64_t job = Submit(Task());
  Restart(SchedulerOptions());  // a server on the database: the job is left to its session
  absl::StatusOr<JobStatus> cancelled = scheduler_->Cancel(job);
  EXPECT_TRUE(absl::IsFailedPrecondition(cancelled.status())) << cancelled.status();
  EXPECT_THAT(std::string(cancelled.status().message()),
              ::testing::HasSubstr(absl::StrCat("belongs to a running ktune tune session (process ",
                                                child, " on ")));
  ASSERT_EQ(kill(child, SIGKILL), 0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  absl::StatusOr<JobStatus> paused = scheduler_->Pause(job);
  EXPECT_TRUE(absl::IsFailedPrecondition(paused.status())) << paused.status();
  EXPECT_THAT(std::string(paused.status().message()),
              ::testing::HasSubstr("that ended before it did: it is cancelled now"));
  cancelled = scheduler_->Cancel(job);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->job.state, JobState::kCancelled);
  EXPECT_EQ(scheduler_->GetJob(job)->job.state, JobState::kCancelled);
}

// Each job this process ends is handed to on_job_ended with its final state and how long it lived
// since it was submitted (ktune_job_duration_seconds).
TEST_F(SchedulerCountsTest, EndedJobsAreReportedWithHowLongTheyLived) {
  absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  std::vector<std::pair<std::string, absl::Duration>> ended;
  SchedulerOptions options;
  options.now = [&now] { return now; };
  options.on_job_ended = [&ended](const std::string& state, absl::Duration lived) {
    ended.emplace_back(state, lived);
  };
  Restart(options);
  const int64_t done = SubmitRandom({Task()}, /*budget=*/1, /*batch_size=*/1);
  absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 1);
  ASSERT_TRUE(grant.ok() && grant->candidates.size() == 1);
  now += absl::Seconds(90);
  v1::CandidateResult result;
  result.set_candidate_id(grant->candidates[0].candidate_id());
  result.set_status(v1::MEASUREMENT_STATUS_OK);
  result.add_repeat_times_ms(1.0);
  ASSERT_TRUE(scheduler_->Report(worker_, grant->lease_id, {result}).ok());
  ASSERT_EQ(scheduler_->GetJob(done)->job.state, JobState::kDone);
  const int64_t cancelled = SubmitRandom({Task()}, /*budget=*/4);
  now += absl::Seconds(5);
  ASSERT_TRUE(scheduler_->Cancel(cancelled).ok());
  EXPECT_EQ(ended, (std::vector<std::pair<std::string, absl::Duration>>{
                       {"done", absl::Seconds(90)}, {"cancelled", absl::Seconds(5)}}));
}

// Each piece of strategy work is handed to on_agent_work with its kind and duration
// (ktune_agent_work_seconds): the search's start with its first batch, then one per batch learned.
TEST_F(SchedulerCountsTest, StrategyWorkIsReportedByKind) {
  std::map<std::string, int> work;
  SchedulerOptions options;
  options.on_agent_work = [&work](const std::string& kind, absl::Duration took) {
    EXPECT_GE(took, absl::ZeroDuration());
    ++work[kind];
  };
  Restart(options);
  SubmitRandom({Task()}, /*budget=*/3, /*batch_size=*/1);
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 1);
    ASSERT_TRUE(grant.ok() && grant->candidates.size() == 1) << i;
    ASSERT_TRUE(scheduler_->Report(worker_, grant->lease_id, AllOk(*grant)).ok());
  }
  // One start; a batch after each of the three results (the last learns and proposes nothing).
  EXPECT_EQ(work, (std::map<std::string, int>{{"start", 1}, {"batch", 3}}));
}

}  // namespace
}  // namespace ktune
