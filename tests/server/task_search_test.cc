// The server's search of a registry kernel's task (server/task_search.h), driven through the
// Scheduler directly as a worker would (lease, measure with a fake, report), on an in-memory
// database: the default configuration first and once per task, earlier records reused, the job's
// batch size and thread count honoured (also after Recover), PPO's policy saved and loaded.
#include "server/task_search.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <set>

#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "agent/search_strategy.h"
#include "db/memory_tuning_database.h"
#include "kernels/kernel_registry.h"
#include "proto/convert.h"
#include "server/scheduler.h"
#include "server/task_spaces.h"
#include "tests/server/one_task_scheduler.h"

namespace ktune {
namespace {

// A LibTorch build has PPO (tests/CMakeLists.txt defines KTUNE_WITH_TORCH).
constexpr bool kWithTorch = KTUNE_WITH_TORCH;

using ::testing::HasSubstr;

class TaskSearchTest : public OneTaskScheduler {
 protected:
  // A job of Task() alone.
  JobRequest Request(int64_t budget, const std::string& strategy, int batch_size = 0) const {
    JobRequest r;
    r.name = "test";
    r.tasks = {Task()};
    r.budget = budget;
    r.strategy = strategy;
    r.batch_size = batch_size;
    r.spec_json = R"({"name":"test"})";
    return r;
  }

  int64_t Submit(int64_t budget, const std::string& strategy, int batch_size = 0, int threads = 0,
                 std::optional<double> agent_share = std::nullopt) {
    JobRequest r = Request(budget, strategy, batch_size);
    r.agent_share = agent_share;
    r.threads = threads;
    absl::StatusOr<int64_t> id = scheduler_->Submit(r);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.value_or(0);
  }

  // One lease, measured (a time derived from the configuration) and reported with `status`
  // (times only when ok); its configs.
  std::vector<Configuration> LeaseAndReport(
      v1::MeasurementStatus status = v1::MEASUREMENT_STATUS_OK) {
    absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 256);
    EXPECT_TRUE(grant.ok()) << grant.status();
    std::vector<Configuration> configs;
    std::vector<v1::CandidateResult> results;
    for (const v1::Candidate& c : grant->candidates) {
      Configuration config = *FromProto(c.config().params(), "config");
      v1::CandidateResult r;
      r.set_candidate_id(c.candidate_id());
      r.set_status(status);
      if (status == v1::MEASUREMENT_STATUS_OK) {
        r.add_repeat_times_ms(1.0 + std::hash<std::string>()(CanonicalJson(config)) % 1000 / 100.0);
      }
      results.push_back(r);
      configs.push_back(std::move(config));
    }
    if (!grant->lease_id.empty()) {
      EXPECT_TRUE(scheduler_->Report(worker_, grant->lease_id, results).ok());
    }
    return configs;
  }

  // A random search of Task() in batches of 4, budget 9, whose agent may take `agent_share`.
  absl::StatusOr<std::unique_ptr<TaskSearch>> RandomSearch(double agent_share) {
    TaskSearch::Options options;
    options.strategy = "random";
    options.batch_size = 4;
    options.max_agent_share = agent_share;
    return TaskSearch::Create(&db_, spaces_, Task(), options, kCores, 9);
  }

  Configuration Default(int threads = 0) const {
    return **spaces_.DefaultConfiguration(Task(), kCores, threads);
  }
};

// A job whose search runs out of configurations before its budget ends done and says so (it
// ended "done: 956/16000 measurements" with no message).
TEST_F(TaskSearchTest, AJobThatRunsOutOfConfigurationsSaysSo) {
  const int64_t job = Submit(1'000'000, "random", /*batch_size=*/256);
  int64_t measured = 0;
  for (std::vector<Configuration> lease = LeaseAndReport(); !lease.empty();
       lease = LeaseAndReport()) {
    measured += static_cast<int64_t>(lease.size());
  }
  absl::StatusOr<JobStatus> done = scheduler_->GetJob(job);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->job.state, JobState::kDone);
  EXPECT_EQ(done->done, measured);
  EXPECT_LT(measured, 1'000'000);
  EXPECT_THAT(done->job.message,
              ::testing::HasSubstr("search space ran out before the budget: gemm on cpu:test"));
  EXPECT_THAT(done->job.message,
              ::testing::HasSubstr(absl::StrCat("(", measured, " of 1000000 measured")));
}

TEST_F(TaskSearchTest, TheDefaultComesFirstOncePerTaskThenBatchesOfTheJobsSize) {
  const int64_t first = Submit(7, "random", /*batch_size=*/3);
  std::vector<std::vector<Configuration>> leases;
  for (int i = 0; i < 4; ++i) leases.push_back(LeaseAndReport());
  ASSERT_EQ(leases[0].size(), 1u);
  EXPECT_EQ(leases[0][0], Default());
  EXPECT_EQ(leases[1].size(), 3u);
  EXPECT_EQ(leases[2].size(), 3u);
  EXPECT_TRUE(leases[3].empty());  // the budget is spent exactly
  absl::StatusOr<JobStatus> done = scheduler_->GetJob(first);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->job.state, JobState::kDone);
  EXPECT_EQ(done->tasks[0].done, 7);
  EXPECT_EQ(done->tasks[0].prior_records, 0);

  // The next job of the task reuses the 7 and measures neither them nor the default again.
  const int64_t second = Submit(4, "random", /*batch_size=*/4);
  const std::vector<Configuration> next = LeaseAndReport();
  ASSERT_EQ(next.size(), 4u);
  std::set<std::string> before;
  for (const auto& lease : leases) {
    for (const Configuration& c : lease) before.insert(CanonicalJson(c));
  }
  for (const Configuration& c : next) EXPECT_FALSE(before.count(CanonicalJson(c)));
  done = scheduler_->GetJob(second);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->job.state, JobState::kDone);
  EXPECT_EQ(done->tasks[0].prior_records, 7);
}

// A job's initial configurations (JobSpec.initial_configs: one known to be good, Kernel Tuner's
// x0) are its tasks' first batch, and survive a restart; one the task's records hold, or outside
// its space, is skipped.
TEST_F(TaskSearchTest, InitialConfigurationsAreMeasuredFirstUnlessKnown) {
  Submit(4, "random", /*batch_size=*/4);
  const std::vector<Configuration> first = LeaseAndReport();  // the default
  const std::vector<Configuration> known = LeaseAndReport();
  ASSERT_EQ(known.size(), 3u);
  absl::StatusOr<std::shared_ptr<const SearchSpace>> space = spaces_.Space(Task(), kCores);
  ASSERT_TRUE(space.ok()) << space.status();
  std::set<std::string> measured = {CanonicalJson(first[0])};
  for (const Configuration& c : known) measured.insert(CanonicalJson(c));
  Configuration fresh;  // a valid configuration nothing measured
  for (int64_t i = 0; fresh.empty() || measured.count(CanonicalJson(fresh)); ++i) {
    fresh = (*space)->ToConfiguration((*space)->PointAt(i));
  }
  Configuration outside = fresh;
  outside["MR"] = int64_t{3};  // not one of MR's values

  JobRequest r = Request(4, "random", /*batch_size=*/4);
  r.initial = {known[0], outside, fresh};
  absl::StatusOr<int64_t> job = scheduler_->Submit(r);
  ASSERT_TRUE(job.ok()) << job.status();
  Restart();  // the job's initial configurations are read back from what it stores
  const std::vector<Configuration> lease = LeaseAndReport();
  ASSERT_EQ(lease.size(), 1u);  // the first batch: the one not known, alone
  EXPECT_EQ(CanonicalJson(lease[0]), CanonicalJson(fresh));
  const std::vector<Configuration> next = LeaseAndReport();
  EXPECT_EQ(next.size(), 3u);  // then the strategy, for the rest of the budget
  for (const Configuration& c : next) EXPECT_FALSE(measured.count(CanonicalJson(c)));
  // The ones skipped are said with the job's end (only the server's log said it).
  absl::StatusOr<JobStatus> status = scheduler_->GetJob(*job);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->job.state, JobState::kDone);
  EXPECT_THAT(status->job.message,
              ::testing::HasSubstr("initial configurations skipped by gemm on "));
  EXPECT_THAT(status->job.message, ::testing::HasSubstr("MR=3"));
  // The known one too, and why (it was skipped in silence, though the docs said logged).
  EXPECT_THAT(status->job.message,
              ::testing::HasSubstr("(the task's records hold it measured ok)"));
}

// An initial configuration the task's records hold only as a failure that may have been the
// worker's (a timeout) is measured again, as asked: a candidate stored as a timeout because its
// worker was stopped could never be measured again, and the fleet served a slower one for good.
// One held as a wrong result is not.
TEST_F(TaskSearchTest, AnInitialConfigurationThatTimedOutIsMeasuredAgain) {
  absl::StatusOr<std::shared_ptr<const SearchSpace>> space = spaces_.Space(Task(), kCores);
  ASSERT_TRUE(space.ok()) << space.status();
  std::vector<Configuration> others;  // valid configurations other than the default
  for (int64_t i = 0; others.size() < 2; ++i) {
    Configuration c = (*space)->ToConfiguration((*space)->PointAt(i));
    if (CanonicalJson(c) != CanonicalJson(Default())) others.push_back(std::move(c));
  }
  Submit(1, "random", /*batch_size=*/1);
  ASSERT_EQ(LeaseAndReport().size(), 1u);  // the default ran: later failures are verdicts
  for (auto [config, status] : {std::pair{others[0], v1::MEASUREMENT_STATUS_TIMEOUT},
                                std::pair{others[1], v1::MEASUREMENT_STATUS_WRONG_RESULT}}) {
    JobRequest r = Request(1, "random", /*batch_size=*/1);
    r.initial = {config};
    ASSERT_TRUE(scheduler_->Submit(r).ok());
    const std::vector<Configuration> failed = LeaseAndReport(status);
    ASSERT_EQ(failed.size(), 1u);
    ASSERT_EQ(CanonicalJson(failed[0]), CanonicalJson(config));
  }
  JobRequest again = Request(1, "random", /*batch_size=*/1);
  again.initial = {others[0], others[1]};
  absl::StatusOr<int64_t> job = scheduler_->Submit(again);
  ASSERT_TRUE(job.ok()) << job.status();
  const std::vector<Configuration> lease = LeaseAndReport();
  ASSERT_EQ(lease.size(), 1u);
  EXPECT_EQ(CanonicalJson(lease[0]), CanonicalJson(others[0]));  // the timeout, measured again
  absl::StatusOr<JobStatus> status = scheduler_->GetJob(*job);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->job.state, JobState::kDone);
  EXPECT_THAT(status->job.message, HasSubstr("hold it failed for good"));  // the wrong result
  EXPECT_THAT(status->job.message, ::testing::Not(HasSubstr(FormatParamMapAssignments(others[0]))));
}

// An initial configuration that gives a few parameters takes the others from the kernel's
// default, and a whole number written 8.0 is 8: it is measured first, before the default.
TEST_F(TaskSearchTest, APartialInitialConfigurationIsCompletedFromTheDefault) {
  absl::StatusOr<std::shared_ptr<const SearchSpace>> space = spaces_.Space(Task(), kCores);
  ASSERT_TRUE(space.ok()) << space.status();
  const Configuration partial = {{"MR", 8.0}, {"NR", int64_t{16}}};
  Configuration completed = Default();
  completed["MR"] = int64_t{8};
  completed["NR"] = int64_t{16};
  ASSERT_NE(CanonicalJson(completed), CanonicalJson(Default()));
  const auto points = TaskSearch::InitialPoints(**space, Default(), {partial, {{"MX", 1.0}}});
  ASSERT_TRUE(points[0].first.has_value()) << points[0].second;
  EXPECT_EQ(CanonicalJson((*space)->ToConfiguration(*points[0].first)), CanonicalJson(completed));
  EXPECT_FALSE(points[1].first.has_value());
  EXPECT_THAT(points[1].second, ::testing::HasSubstr("'MX' is not a parameter"));

  JobRequest r = Request(4, "random", /*batch_size=*/4);
  r.initial = {partial};
  ASSERT_TRUE(scheduler_->Submit(r).ok());
  const std::vector<Configuration> lease = LeaseAndReport();
  ASSERT_EQ(lease.size(), 2u);  // the first batch: the given one, then the default
  EXPECT_EQ(CanonicalJson(lease[0]), CanonicalJson(completed));
  EXPECT_EQ(CanonicalJson(lease[1]), CanonicalJson(Default()));
}

TEST_F(TaskSearchTest, AJobsThreadsFixTheThreadCountAndTooManyFailTheTaskSayingWhy) {
  Submit(5, "random", /*batch_size=*/2, /*threads=*/1);
  const std::vector<Configuration> first = LeaseAndReport();
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0], Default(1));
  EXPECT_EQ(std::get<int64_t>(first[0].at("threads")), 1);
  for (int i = 0; i < 2; ++i) {
    for (const Configuration& c : LeaseAndReport()) {
      EXPECT_EQ(std::get<int64_t>(c.at("threads")), 1) << CanonicalJson(c);
    }
  }

  const int64_t too_many = Submit(5, "random", 0, /*threads=*/3);
  EXPECT_TRUE(LeaseAndReport().empty());
  absl::StatusOr<JobStatus> failed = scheduler_->GetJob(too_many);
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->job.state, JobState::kFailed);
  EXPECT_THAT(failed->job.message, HasSubstr("threads 3 is more than the 2 cores"));
}

// The tasks of unfinished jobs are limited (a client submitting in a loop grew the server's
// memory without bound): past the limit a job is refused, until others end.
TEST_F(TaskSearchTest, AJobPastTheActiveTaskLimitIsRefusedUntilOthersEnd) {
  SchedulerOptions small;
  small.max_active_tasks = 2;
  Restart(small);
  const int64_t first = Submit(4, "random");
  Submit(4, "random");  // two tasks: at the limit
  JobRequest third;
  third.name = "third";
  third.tasks = {Task()};
  third.budget = 4;
  third.strategy = "random";
  third.spec_json = R"({"name":"third"})";
  absl::StatusOr<int64_t> refused = scheduler_->Submit(third);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(), HasSubstr("would pass its limit of 2"));
  ASSERT_TRUE(scheduler_->Cancel(first).ok());
  EXPECT_TRUE(scheduler_->Submit(third).ok()) << "a cancelled job's task leaves room";
}

TEST_F(TaskSearchTest, TheBatchSizeSurvivesARestart) {
  const int64_t id = Submit(9, "random", /*batch_size=*/2);
  EXPECT_EQ(LeaseAndReport().size(), 1u);  // the default
  EXPECT_EQ(LeaseAndReport().size(), 2u);
  Restart();
  EXPECT_EQ(LeaseAndReport().size(), 2u);
  EXPECT_EQ(LeaseAndReport().size(), 2u);
  EXPECT_EQ(LeaseAndReport().size(), 2u);
  EXPECT_TRUE(LeaseAndReport().empty());
  absl::StatusOr<JobStatus> done = scheduler_->GetJob(id);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->job.state, JobState::kDone);
  EXPECT_EQ(done->tasks[0].done, 9);
}

TEST_F(TaskSearchTest, PpoSavesItsPolicyAndTheNextJobOfTheKernelWarmStarts) {
  absl::StatusOr<std::unique_ptr<SearchStrategy>> ppo = MakeStrategy("ppo");
  if (!kWithTorch) GTEST_SKIP() << "built without LibTorch: no PPO";
  ASSERT_TRUE(ppo.ok()) << ppo.status();
  const std::string key = (*ppo)->CheckpointKey("gemm", **spaces_.Space(Task(), kCores));
  ASSERT_FALSE(key.empty());
  // A job too short to leave the random warm-up: its untrained policy is not kept.
  const int64_t warmup_only = Submit(9, "ppo", /*batch_size=*/4);
  while (!LeaseAndReport().empty()) {
  }
  absl::StatusOr<JobStatus> done = scheduler_->GetJob(warmup_only);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->job.state, JobState::kDone);
  EXPECT_FALSE(db_.LoadCheckpoint(key).ok()) << "an untrained policy was saved";

  // One that learns (past the 16 random measurements, with no limit on the agent's time: the
  // fake measurements here take no time at all) saves its policy, updated at its end even when
  // the run is shorter than PPO's update interval.
  const int64_t first = Submit(29, "ppo", /*batch_size=*/4, /*threads=*/0, /*agent_share=*/0.0);
  while (!LeaseAndReport().empty()) {
  }
  done = scheduler_->GetJob(first);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->job.state, JobState::kDone);
  EXPECT_FALSE(done->tasks[0].warm_started);
  EXPECT_GT(done->tasks[0].agent_seconds, 0);
  EXPECT_TRUE(db_.LoadCheckpoint(key).ok()) << "the policy was not saved";

  const int64_t second = Submit(5, "ppo", /*batch_size=*/4);
  while (!LeaseAndReport().empty()) {
  }
  done = scheduler_->GetJob(second);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->tasks[0].done, 5);
  EXPECT_TRUE(done->tasks[0].warm_started);
}

// A saved policy this agent cannot use (another ktune's, an edited blob) failed every job of the
// kernel ("not a policy for this agent"); the job now starts from the shipped policy and its end
// replaces the bad one.
TEST_F(TaskSearchTest, AnUnusableSavedPolicyIsReplacedNotFatal) {
  absl::StatusOr<std::unique_ptr<SearchStrategy>> ppo = MakeStrategy("ppo");
  if (!kWithTorch) GTEST_SKIP() << "built without LibTorch: no PPO";
  ASSERT_TRUE(ppo.ok()) << ppo.status();
  const std::string key = (*ppo)->CheckpointKey("gemm", **spaces_.Space(Task(), kCores));
  ASSERT_TRUE(db_.SaveCheckpoint(key, R"({"features":15,"hidden":-1})").ok());
  const int64_t job = Submit(29, "ppo", /*batch_size=*/4, /*threads=*/0, /*agent_share=*/0.0);
  while (!LeaseAndReport().empty()) {
  }
  absl::StatusOr<JobStatus> done = scheduler_->GetJob(job);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->job.state, JobState::kDone) << done->job.message;
  EXPECT_EQ(done->tasks[0].done, 29);
  EXPECT_FALSE(done->tasks[0].warm_started);
  absl::StatusOr<std::string> saved = db_.LoadCheckpoint(key);
  ASSERT_TRUE(saved.ok());
  EXPECT_NE(*saved, R"({"features":15,"hidden":-1})") << "the bad policy was kept";
}

// After a regression (MarkStale), the old records no longer answer, and they are the retuning
// search's transfer source, not its prior: PPO ranks its first batches from them and measures
// the old fastest configuration again, which as a prior result it never could.
TEST_F(TaskSearchTest, AfterARegressionTheOldRecordsLeadTheSearchAndCanBeMeasuredAgain) {
  absl::StatusOr<std::unique_ptr<SearchStrategy>> ppo = MakeStrategy("ppo");
  if (!kWithTorch) GTEST_SKIP() << "built without LibTorch: no PPO";
  ASSERT_TRUE(ppo.ok()) << ppo.status();
  Submit(30, "random", /*batch_size=*/5);
  while (!LeaseAndReport().empty()) {
  }
  absl::StatusOr<std::vector<Record>> old = db_.TaskRecords(Task());
  ASSERT_TRUE(old.ok()) << old.status();
  ASSERT_EQ(old->size(), 30u);
  const Record* old_best = nullptr;
  for (const Record& r : *old) {
    if (r.time_ms && (old_best == nullptr || *r.time_ms < *old_best->time_ms)) old_best = &r;
  }
  ASSERT_NE(old_best, nullptr);
  const Configuration old_best_config = old_best->config;
  ASSERT_TRUE(db_.MarkStale(Task(), absl::ToUnixMicros(absl::Now()) + 1).ok());
  ASSERT_TRUE(db_.TaskRecords(Task())->empty());

  const int64_t retune = Submit(12, "ppo", /*batch_size=*/4, /*threads=*/0, /*agent_share=*/0.0);
  std::vector<Configuration> measured;
  for (std::vector<Configuration> lease = LeaseAndReport(); !lease.empty();
       lease = LeaseAndReport()) {
    measured.insert(measured.end(), lease.begin(), lease.end());
  }
  absl::StatusOr<JobStatus> done = scheduler_->GetJob(retune);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->tasks[0].done, 12);
  EXPECT_EQ(measured.size(), 12u);
  EXPECT_THAT(measured, ::testing::Contains(old_best_config));
  EXPECT_EQ(db_.TaskRecords(Task())->size(), 12u);  // the new records answer
}

// A worker that builds nothing (a broken toolchain, the wrong image) fails every candidate of a
// task: later jobs may measure those configurations again. Once something ran, later failures
// are the configurations' own, and no job measures them again.
TEST_F(TaskSearchTest, FailuresFromBeforeAnythingRanAreMeasuredAgainByLaterJobs) {
  // The scheduler's clock, which stamps the records: each job's a second after the last (the
  // rule compares their times).
  absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  SchedulerOptions options;
  options.now = [&now] { return now; };
  Restart(std::move(options));
  const auto MeasureJob = [&](int64_t budget, v1::MeasurementStatus status) {
    Submit(budget, "random", /*batch_size=*/4);
    std::vector<Configuration> measured;
    for (std::vector<Configuration> lease = LeaseAndReport(status); !lease.empty();
         lease = LeaseAndReport(status)) {
      measured.insert(measured.end(), lease.begin(), lease.end());
    }
    now += absl::Seconds(1);  // the next job's records are measured later
    return measured;
  };
  const auto Prior = [&] {
    absl::StatusOr<std::unique_ptr<TaskSearch>> search = RandomSearch(0);
    EXPECT_TRUE(search.ok()) << search.status();
    return search.ok() ? (*search)->prior_records() : -1;
  };
  const std::vector<Configuration> broken = MeasureJob(4, v1::MEASUREMENT_STATUS_COMPILE_ERROR);
  ASSERT_EQ(broken.size(), 4u);
  EXPECT_THAT(broken, ::testing::Contains(Default()));
  EXPECT_EQ(Prior(), 0);
  // The next job starts with the default again (it was one of the failures), and it runs: the
  // failures from before stay out of the prior, and the default is ok there, not failed.
  EXPECT_EQ(MeasureJob(1, v1::MEASUREMENT_STATUS_OK), std::vector<Configuration>{Default()});
  EXPECT_EQ(Prior(), 1);
  // Failures after a run are the configurations': prior results, never measured again.
  const std::vector<Configuration> failing = MeasureJob(3, v1::MEASUREMENT_STATUS_RUNTIME_ERROR);
  ASSERT_EQ(failing.size(), 3u);
  EXPECT_EQ(Prior(), 4);
  Restart();  // a scheduler on the real clock: this one's reads `now`, which ends here
}

TEST_F(TaskSearchTest, PpoSavesItsPolicyWhileTheTaskRunsSoARestartKeepsTheLearning) {
  absl::StatusOr<std::unique_ptr<SearchStrategy>> ppo = MakeStrategy("ppo");
  if (!kWithTorch) GTEST_SKIP() << "built without LibTorch: no PPO";
  ASSERT_TRUE(ppo.ok()) << ppo.status();
  const std::string key = (*ppo)->CheckpointKey("gemm", **spaces_.Space(Task(), kCores));
  SchedulerOptions every_batch;
  every_batch.checkpoint_every = absl::ZeroDuration();
  Restart(every_batch);
  const int64_t job = Submit(200, "ppo", /*batch_size=*/4, /*threads=*/0, /*agent_share=*/0.0);
  for (int leases = 0; !db_.LoadCheckpoint(key).ok(); ++leases) {
    ASSERT_LT(leases, 50) << "no policy was saved while the task ran";
    ASSERT_FALSE(LeaseAndReport().empty());
  }
  absl::StatusOr<JobStatus> running = scheduler_->GetJob(job);
  ASSERT_TRUE(running.ok());
  EXPECT_EQ(running->job.state, JobState::kRunning);
  EXPECT_LT(running->tasks[0].done, 200);

  // As after a crash: a new scheduler on the database resumes the task from the saved policy.
  Restart();
  ASSERT_FALSE(LeaseAndReport().empty());
  running = scheduler_->GetJob(job);
  ASSERT_TRUE(running.ok());
  EXPECT_TRUE(running->tasks[0].warm_started);
}

// Two jobs of one task at once: a point that the other measured meanwhile is answered from its
// record, not measured again (the same seed proposed the same points, and each was measured
// twice), and the strategy hears of it with the rest of its batch.
TEST_F(TaskSearchTest, APointAnotherJobMeasuredMeanwhileIsNotMeasuredAgain) {
  absl::StatusOr<std::unique_ptr<TaskSearch>> first = RandomSearch(0);
  absl::StatusOr<std::unique_ptr<TaskSearch>> second = RandomSearch(0);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  // Measures a batch of `search` (every point 2 ms, or 3 ms for the second job), stores its
  // records as the scheduler does, and completes it.
  auto measure = [&](TaskSearch& search, double ms) {
    absl::StatusOr<std::vector<Point>> points = search.NextBatch();
    EXPECT_TRUE(points.ok()) << points.status();
    std::vector<Observation> results;
    std::vector<Record> records;
    for (const Point& p : points.value_or(std::vector<Point>())) {
      results.push_back({p, true, ms});
      Record r;
      r.kernel = Task().kernel;
      r.kernel_version = Task().kernel_version;
      r.problem = Task().problem;
      r.device = kDevice;
      r.config = search.space()->ToConfiguration(p);
      r.time_ms = ms;
      r.source = ms == 2.0 ? "job:1" : "job:2";
      records.push_back(std::move(r));
    }
    if (records.empty()) return std::vector<Point>();  // the search is over
    EXPECT_TRUE(db_.AddRecords(records).ok());
    absl::Status completed = search.Complete(results);
    EXPECT_TRUE(completed.ok()) << completed;
    return *points;
  };
  std::set<Point> by_first;
  for (int batch = 0; batch < 2; ++batch) {  // the default, then a batch of 4
    for (const Point& p : measure(**first, 2.0)) by_first.insert(p);
  }
  ASSERT_EQ(by_first.size(), 5u);
  std::vector<Point> by_second;
  while (true) {
    std::vector<Point> batch = measure(**second, 3.0);
    if (batch.empty()) break;
    by_second.insert(by_second.end(), batch.begin(), batch.end());
  }
  EXPECT_EQ(by_second.size(), 9u) << "the budget buys the job's own measurements";
  for (const Point& p : by_second) EXPECT_EQ(by_first.count(p), 0u) << "measured twice";
  EXPECT_EQ((*second)->answered_by_others(), 5);
  EXPECT_EQ((*first)->answered_by_others(), 0);
}

// What a watcher polls: each task's count and the job's totals as GetJob gives them, without
// the tasks (WatchJob copied every task of the job four times a second).
TEST_F(TaskSearchTest, AWatchersPollReadsTheCountsWithoutTheTasks) {
  const int64_t id = Submit(8, "random", /*batch_size=*/4);
  ASSERT_FALSE(LeaseAndReport().empty());
  std::vector<int64_t> done;
  absl::StatusOr<JobStatus> progress = scheduler_->GetJobProgress(id, &done);
  absl::StatusOr<JobStatus> full = scheduler_->GetJob(id);
  ASSERT_TRUE(progress.ok()) << progress.status();
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_EQ(done.size(), full->tasks.size());
  for (size_t i = 0; i < done.size(); ++i) EXPECT_EQ(done[i], full->tasks[i].done);
  EXPECT_GT(done[0], 0);
  EXPECT_EQ(progress->done, full->done);
  EXPECT_EQ(progress->total, full->total);
  EXPECT_EQ(progress->job.name, full->job.name);
  EXPECT_EQ(progress->job.state, full->job.state);
  EXPECT_TRUE(progress->tasks.empty());
  EXPECT_TRUE(progress->job.tasks.empty());
  // One task by page, without the job's task list.
  absl::StatusOr<JobStatus> one = scheduler_->GetJob(id, TaskPage{0, 1}, /*with_job_tasks=*/false);
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->tasks.size(), 1u);
  EXPECT_EQ(one->tasks[0].done, done[0]);
  EXPECT_TRUE(one->job.tasks.empty());
}

// The strategy's time allowance comes from the time its batches spend out being measured.
TEST_F(TaskSearchTest, TheAgentsTimeIsBudgetedAgainstTheTimeBatchesSpendBeingMeasured) {
  absl::StatusOr<std::unique_ptr<TaskSearch>> search = RandomSearch(0.05);
  ASSERT_TRUE(search.ok()) << search.status();
  for (int batch = 0; batch < 3; ++batch) {
    absl::StatusOr<std::vector<Point>> points = (*search)->NextBatch();
    ASSERT_TRUE(points.ok()) << points.status();
    ASSERT_FALSE(points->empty());
    absl::SleepFor(absl::Milliseconds(30));  // the workers measure
    std::vector<Observation> results;
    for (const Point& p : *points) results.push_back({p, true, 1.0});
    ASSERT_TRUE((*search)->Complete(results).ok());
  }
  const AgentTimeBudget& budget = (*search)->time_budget();
  EXPECT_GE(budget.measured_ms(), 90);
  EXPECT_GT(budget.agent_ms(), 0);
  EXPECT_DOUBLE_EQ(budget.AllowanceMs(), 0.05 * budget.measured_ms() - budget.agent_ms());
}

// The random strategy, to be changed in part by the tests' strategies below.
class RandomInside : public SearchStrategy {
 public:
  RandomInside() : inner_(*MakeStrategy("random")) {}
  absl::Status Initialize(const SearchSpace& space, uint64_t seed) override {
    return inner_->Initialize(space, seed);
  }
  absl::Status AddPriorResults(const std::vector<Observation>& r) override {
    return inner_->AddPriorResults(r);
  }
  absl::Status PreTuning(int64_t budget, int batch_size) override {
    return inner_->PreTuning(budget, batch_size);
  }
  absl::StatusOr<std::vector<Point>> ProposeBatch() override { return inner_->ProposeBatch(); }
  absl::Status NotifyResults(const std::vector<Observation>& r) override {
    return inner_->NotifyResults(r);
  }

 private:
  std::unique_ptr<SearchStrategy> inner_;
};

// The random strategy, except that its first proposal waits at a gate: it tells when it is
// inside (entered) and proceeds when the test says so (release).
struct Gate {
  absl::Notification entered, release;
};
class GatedStrategy : public RandomInside {
 public:
  explicit GatedStrategy(Gate* gate) : gate_(gate) {}
  absl::StatusOr<std::vector<Point>> ProposeBatch() override {
    if (!gate_->entered.HasBeenNotified()) {
      gate_->entered.Notify();
      gate_->release.WaitForNotification();
    }
    return RandomInside::ProposeBatch();
  }
  std::string name() const override { return "gated"; }

 private:
  Gate* gate_;
};

// Issue 21: strategy work runs on the agent threads, without the scheduler's lock. While a
// proposal is stuck, every other call returns; a report that completes a batch has the next one
// prepared before any worker asks for it.
TEST_F(TaskSearchTest, StrategyWorkRunsOffTheLockAndTheNextBatchIsPreparedAhead) {
  Gate gate;
  SchedulerOptions options;
  options.agent_threads = 1;
  options.make_strategy =
      [&gate](const std::string&) -> absl::StatusOr<std::unique_ptr<SearchStrategy>> {
    return std::make_unique<GatedStrategy>(&gate);
  };
  scheduler_ = std::make_unique<Scheduler>(&db_, &spaces_, std::move(options));
  worker_ = scheduler_->RegisterWorker(kDevice, "test", kCores);
  const int64_t job = Submit(9, "random", /*batch_size=*/4);

  // The first lease starts the task's set-up on an agent thread and asks to come back soon.
  absl::StatusOr<LeaseGrant> first = scheduler_->Lease(worker_, 256);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->lease_id.empty());
  EXPECT_LT(first->retry_after, absl::Milliseconds(200));
  scheduler_->WaitForAgents();
  // The default configuration; its report makes the agent thread propose, which blocks.
  ASSERT_EQ(LeaseAndReport().size(), 1u);
  gate.entered.WaitForNotification();

  auto others = std::async(std::launch::async, [&] {
    absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 256);
    EXPECT_TRUE(grant.ok() && grant->lease_id.empty());  // its batch is not ready
    if (grant.ok()) {
      EXPECT_LT(grant->retry_after, absl::Milliseconds(200));
    }
    EXPECT_TRUE(scheduler_->GetJob(job).ok());
    EXPECT_TRUE(scheduler_->ListJobs().ok());
    EXPECT_TRUE(scheduler_->Heartbeat(worker_, {}).ok());
    EXPECT_EQ(scheduler_->ListWorkers().size(), 1u);
    EXPECT_EQ(scheduler_->CountNow().queued_candidates, 0);
  });
  const bool returned = others.wait_for(std::chrono::seconds(60)) == std::future_status::ready;
  gate.release.Notify();
  ASSERT_TRUE(returned) << "a call waited for the agent";
  others.get();

  scheduler_->WaitForAgents();
  EXPECT_EQ(scheduler_->CountNow().queued_candidates, 4);  // before any lease asked
  EXPECT_EQ(LeaseAndReport().size(), 4u);
  scheduler_->WaitForAgents();
  EXPECT_EQ(LeaseAndReport().size(), 4u);
  scheduler_->WaitForAgents();
  absl::StatusOr<JobStatus> done = scheduler_->GetJob(job);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->job.state, JobState::kDone);
  EXPECT_EQ(done->tasks[0].done, 9);
  // The metrics' view: no active job left, one ended done (as a gauge it read 0 once the job
  // left memory).
  const Scheduler::Counts counts = scheduler_->CountNow();
  EXPECT_EQ(counts.jobs.count("done"), 0u);
  EXPECT_EQ(counts.jobs_ended, (std::map<std::string, int64_t>{{"done", 1}}));
}

// The random strategy, counting how many were made and how many exist.
class CountedStrategy : public RandomInside {
 public:
  CountedStrategy(std::atomic<int>* live, std::atomic<int>* made) : live_(live) {
    ++*live_;
    ++*made;
  }
  ~CountedStrategy() override { --*live_; }
  std::string name() const override { return "counted"; }

 private:
  std::atomic<int>* live_;
};

// A job of many tasks starts their searches as workers need batches, a few at a time, and a
// task's search is released when the task ends: the first lease of a job of 8,192 tasks created
// every search (a minute of strategy work before any second batch, and all of them in memory
// until the job ended).
TEST_F(TaskSearchTest, SearchesStartAsWorkersNeedThemAndEndWithTheirTask) {
  std::atomic<int> live{0}, made{0};
  SchedulerOptions options;
  options.max_starting_searches = 4;
  options.make_strategy =
      [&](const std::string&) -> absl::StatusOr<std::unique_ptr<SearchStrategy>> {
    return std::make_unique<CountedStrategy>(&live, &made);
  };
  Restart(std::move(options));
  JobRequest r;
  r.name = "many";
  const KernelDefinition* gemm = registry_.Find("gemm");
  for (int m = 1; m <= 64; ++m) {
    r.tasks.push_back({"gemm", gemm->Version(),
                       *gemm->ValidateProblem({{"M", m}, {"N", 64}, {"K", 64}}),
                       kDevice.device_class});
  }
  r.budget = 2;
  r.strategy = "random";
  r.spec_json = R"({"name":"many"})";
  absl::StatusOr<int64_t> job = scheduler_->Submit(r);
  ASSERT_TRUE(job.ok()) << job.status();

  // The first lease: four tasks' defaults, and the next four tasks' searches started (not 64).
  ASSERT_EQ(LeaseAndReport().size(), 4u);
  EXPECT_EQ(made.load(), 8);
  int leases = 1;
  while (!LeaseAndReport().empty()) {
    ++leases;
    // After a report: four tasks with their second point queued, four with their default.
    EXPECT_LE(live.load(), 8) << "after lease " << leases;
  }
  absl::StatusOr<JobStatus> done = scheduler_->GetJob(*job);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->job.state, JobState::kDone);
  EXPECT_EQ(done->done, 128);
  EXPECT_EQ(made.load(), 64);
  EXPECT_EQ(live.load(), 0);  // each went with its task, before the job left memory
}

// A job of a `ktune tune` session (its embedded server's) is that session's: a server started on
// the file meanwhile leaves it alone while the process lives (both ran it: measured twice, past
// its budget), and ends it cancelled once the process is gone from this host (a killed tune left
// it running in the file for ever, for the next server to resume).
TEST_F(TaskSearchTest, ASessionsJobIsLeftToItUntilItsProcessIsGone) {
  const std::string me = ThisProcessSession();  // HOST:PID:START:PIDNS
  const std::vector<std::string> parts = absl::StrSplit(me, absl::MaxSplits(':', 3));
  ASSERT_EQ(parts.size(), 4u) << me;
  const std::string& host = parts[0];
  const pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  for (const auto& [session, ends] : std::vector<std::pair<std::string, bool>>{
           {me, false},
           {absl::StrCat(host, ":", child), true},  // no such process
           // This process's id, but a process that started at another time: the id was reused.
           {absl::StrCat(host, ":", parts[1], ":1:", parts[3]), true},
           // Another PID namespace (a container on the host's network): not this one's to judge.
           {absl::StrCat(host, ":", child, ":1:pid:[1]"), false},
           {"another-host:1", false}}) {
    SCOPED_TRACE(session);
    SchedulerOptions in_session;
    in_session.session = session;
    Restart(std::move(in_session));
    const int64_t job = Submit(4, "random");
    Restart();  // a server on the file
    EXPECT_TRUE(LeaseAndReport().empty());
    absl::StatusOr<JobStatus> status = scheduler_->GetJob(job);
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_EQ(status->job.state, ends ? JobState::kCancelled : JobState::kQueued);
    if (ends) {
      EXPECT_THAT(status->job.message, ::testing::HasSubstr("ktune tune session"));
    }
  }
}

// A restart recounts a job's progress from the records it stored: a job of 1,024 tasks or more
// in one read of the database (TuningDatabase::SummarizeSource), matched to its tasks by key.
TEST_F(TaskSearchTest, ALargeJobsProgressIsRecountedInOneReadAfterARestart) {
  const KernelDefinition* gemm = registry_.Find("gemm");
  std::vector<TaskKey> tasks;
  for (int64_t m = 1; m <= 1024; ++m) {
    tasks.push_back({"gemm", gemm->Version(),
                     *gemm->ValidateProblem({{"M", m}, {"N", 16}, {"K", 16}}),
                     kDevice.device_class});
  }
  const int64_t job = SubmitRandom(tasks, /*budget=*/2, /*batch_size=*/2);
  int64_t measured = 0;
  for (int i = 0; i < 12; ++i) measured += static_cast<int64_t>(LeaseAndReport().size());
  ASSERT_GT(measured, 0);
  absl::StatusOr<JobStatus> before = scheduler_->GetJob(job);
  ASSERT_TRUE(before.ok());
  Restart();
  absl::StatusOr<JobStatus> after = scheduler_->GetJob(job);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->done, measured);
  ASSERT_EQ(after->tasks.size(), before->tasks.size());
  int64_t tasks_with_records = 0;
  for (size_t i = 0; i < after->tasks.size(); ++i) {
    const TaskStatus& a = after->tasks[i];
    const TaskStatus& b = before->tasks[i];
    EXPECT_EQ(a.done, b.done) << i;
    EXPECT_EQ(a.best_ms, b.best_ms) << i;
    EXPECT_EQ(a.best_config, b.best_config) << i;
    tasks_with_records += a.done > 0;
  }
  EXPECT_GT(tasks_with_records, 1);
}

// An in-memory database whose disk is full: every commit of records fails.
class FullDatabase : public MemoryTuningDatabase {
 public:
  absl::StatusOr<int64_t> AddRecords(const std::vector<Record>&) override {
    return absl::ResourceExhaustedError("database or disk is full");
  }
  absl::StatusOr<int64_t> AddJobRecords(const std::vector<Record>&,
                                        const std::vector<JobTaskCount>&) override {
    return absl::ResourceExhaustedError("database or disk is full");
  }
};

// A report whose records cannot be committed fails, tells on_not_stored (the server counts it in
// ktune_db_commit_failures_total), and leaves the job's count where it was.
TEST_F(TaskSearchTest, AReportTheDatabaseRefusesIsCountedAndNotRecorded) {
  FullDatabase full;
  std::vector<absl::StatusCode> refused;
  SchedulerOptions options;
  options.agent_threads = 0;
  options.on_not_stored = [&](const absl::Status& why) { refused.push_back(why.code()); };
  scheduler_ = std::make_unique<Scheduler>(&full, &spaces_, std::move(options));
  worker_ = scheduler_->RegisterWorker(kDevice, "test", kCores);
  const int64_t job = Submit(2, "random");
  absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 8);
  ASSERT_TRUE(grant.ok() && !grant->candidates.empty());
  std::vector<v1::CandidateResult> results;
  for (const v1::Candidate& c : grant->candidates) {
    v1::CandidateResult result;
    result.set_candidate_id(c.candidate_id());
    result.set_status(v1::MEASUREMENT_STATUS_OK);
    result.add_repeat_times_ms(1.0);
    results.push_back(result);
  }
  EXPECT_TRUE(
      absl::IsResourceExhausted(scheduler_->Report(worker_, grant->lease_id, results).status()));
  EXPECT_EQ(refused, std::vector<absl::StatusCode>{absl::StatusCode::kResourceExhausted});
  EXPECT_EQ(scheduler_->GetJob(job)->done, 0);
}

}  // namespace
}  // namespace ktune
