// A lease writes nothing to the database under the scheduler's lock: a database another process
// holds (an import into the server's file, a `ktune tune` on it) no longer stops every lease and
// heartbeat for its busy timeout. A job's start is stored with its first report. Nor does a
// pause, resume or cancel read it under the lock.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "db/memory_tuning_database.h"
#include "db/sqlite_tuning_database.h"
#include "kernels/kernel_registry.h"
#include "server/scheduler.h"
#include "server/task_spaces.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

const DeviceInfo kDevice{R"({"cores":2,"name":"test"})", "cpu:test", "x86-64-v3"};

// A random-search job of gemm 64^3 on kDevice's class, of `budget` measurements.
JobRequest GemmJob(const KernelRegistry& registry, int64_t budget) {
  const KernelDefinition* gemm = registry.Find("gemm");
  JobRequest r;
  r.name = "stall";
  r.tasks = {{"gemm", gemm->Version(), *gemm->ValidateProblem({{"M", 64}, {"N", 64}, {"K", 64}}),
              kDevice.device_class}};
  r.budget = budget;
  r.batch_size = 4;
  r.strategy = "random";
  r.spec_json = "{}";
  return r;
}

// Leases for `worker` on a thread of its own, so that what holds the database is released even
// if the lease waits for it: whether the lease came within 30 s, before `release` ran. Then runs
// `release` and waits for the lease.
bool LeasedBeforeRelease(Scheduler& scheduler, const std::string& worker,
                         const std::function<void()>& release, absl::StatusOr<LeaseGrant>* grant) {
  absl::Notification leased;
  std::thread lessee([&] {
    *grant = scheduler.Lease(worker, 4);
    leased.Notify();
  });
  const bool in_time = leased.WaitForNotificationWithTimeout(absl::Seconds(30));
  release();
  lessee.join();
  return in_time;
}

TEST(LeaseStallTest, ALeaseIsGrantedWhileAnotherProcessHoldsTheDatabase) {
  testing::TempDir dir;
  SqliteTuningDatabase::Options patient;
  patient.busy_timeout_ms = 120'000;
  auto db = SqliteTuningDatabase::Open(dir.File("s.db"), patient);
  ASSERT_TRUE(db.ok()) << db.status();
  KernelRegistry registry = KernelRegistry::WithBuiltins();
  TaskSpaces spaces(&registry);
  SchedulerOptions options;
  options.agent_threads = 0;
  Scheduler scheduler(db->get(), &spaces, options);
  const std::string worker = scheduler.RegisterWorker(kDevice, "test", 2);
  absl::StatusOr<int64_t> id = scheduler.Submit(GemmJob(registry, /*budget=*/4));
  ASSERT_TRUE(id.ok()) << id.status();

  sqlite3* other = nullptr;
  sqlite3_open(dir.File("s.db").c_str(), &other);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  absl::StatusOr<LeaseGrant> grant;
  const bool leased_while_locked = LeasedBeforeRelease(
      scheduler, worker,
      [&] {
        sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
        sqlite3_close(other);
      },
      &grant);
  EXPECT_TRUE(leased_while_locked) << "the lease waited for the database";
  ASSERT_TRUE(grant.ok()) << grant.status();
  ASSERT_FALSE(grant->candidates.empty());
  EXPECT_EQ(scheduler.GetJob(*id)->job.state, JobState::kRunning);
  EXPECT_EQ((*db)->GetJob(*id)->state, JobState::kQueued);  // nothing measured yet

  std::vector<v1::CandidateResult> results;
  for (const v1::Candidate& c : grant->candidates) {
    v1::CandidateResult result;
    result.set_candidate_id(c.candidate_id());
    result.set_status(v1::MEASUREMENT_STATUS_OK);
    result.add_repeat_times_ms(1.0 + results.size());
    results.push_back(result);
  }
  ASSERT_TRUE(scheduler.Report(worker, grant->lease_id, results).ok());
  const JobState stored = (*db)->GetJob(*id)->state;
  EXPECT_TRUE(stored == JobState::kRunning || stored == JobState::kDone)
      << JobStateName(stored);  // started with its first report (done if that was all)
}

// A database whose job reads wait, once held, until released: a read of a job of 65,536 tasks.
class SlowJobReads : public MemoryTuningDatabase {
 public:
  absl::StatusOr<Job> GetJob(int64_t id) override {
    if (hold) {
      reading.Notify();
      release.WaitForNotification();
    }
    return MemoryTuningDatabase::GetJob(id);
  }
  std::atomic<bool> hold{false};
  absl::Notification reading, release;
};

// Pausing a job that ended before this server process reads it from the database, and that read
// held the scheduler's lock: every lease, heartbeat and report waited for it.
TEST(LeaseStallTest, ALeaseIsGrantedWhileAPauseReadsAJobThatEndedBefore) {
  SlowJobReads db;
  KernelRegistry registry = KernelRegistry::WithBuiltins();
  TaskSpaces spaces(&registry);
  SchedulerOptions options;
  options.agent_threads = 0;
  int64_t ended = 0;
  {  // a job measured and ended by an earlier process
    Scheduler before(&db, &spaces, options);
    const std::string worker = before.RegisterWorker(kDevice, "test", 2);
    ended = before.Submit(GemmJob(registry, /*budget=*/1)).value_or(0);
    absl::StatusOr<LeaseGrant> grant = before.Lease(worker, 4);
    ASSERT_TRUE(grant.ok()) << grant.status();
    ASSERT_EQ(grant->candidates.size(), 1u);
    v1::CandidateResult result;
    result.set_candidate_id(grant->candidates[0].candidate_id());
    result.set_status(v1::MEASUREMENT_STATUS_OK);
    result.add_repeat_times_ms(1.0);
    ASSERT_TRUE(before.Report(worker, grant->lease_id, {result}).ok());
  }
  Scheduler scheduler(&db, &spaces, options);
  ASSERT_TRUE(scheduler.Recover().ok());
  const std::string worker = scheduler.RegisterWorker(kDevice, "test", 2);
  ASSERT_TRUE(scheduler.Submit(GemmJob(registry, /*budget=*/4)).ok());

  db.hold = true;
  absl::StatusOr<JobStatus> paused;
  std::thread pauser([&] { paused = scheduler.Pause(ended); });
  db.reading.WaitForNotification();
  absl::StatusOr<LeaseGrant> grant;
  const bool leased_while_reading = LeasedBeforeRelease(
      scheduler, worker, [&] { db.release.Notify(); }, &grant);
  pauser.join();
  EXPECT_TRUE(leased_while_reading) << "the lease waited for the pause's read";
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_FALSE(grant->candidates.empty());
  EXPECT_TRUE(absl::IsFailedPrecondition(paused.status())) << paused.status();
  EXPECT_THAT(std::string(paused.status().message()), ::testing::HasSubstr("has already ended"));
}

}  // namespace
}  // namespace ktune
