// A lease writes nothing to the database under the scheduler's lock: a database another process
// holds (an import into the server's file, a `ktune tune` on it) no longer stops every lease and
// heartbeat for its busy timeout. A job's start is stored with its first report. Nor does a
// pause, resume or cancel read it under the lock.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
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
  const DeviceInfo device{R"({"cores":2,"name":"test"})", "cpu:test", "x86-64-v3"};
  const std::string worker = scheduler.RegisterWorker(device, "test", 2);
  const KernelDefinition* gemm = registry.Find("gemm");
  JobRequest r;
  r.name = "stall";
  r.tasks = {{"gemm", gemm->Version(), *gemm->ValidateProblem({{"M", 64}, {"N", 64}, {"K", 64}}),
              device.device_class}};
  r.budget = 4;
  r.batch_size = 4;
  r.strategy = "random";
  r.spec_json = "{}";
  absl::StatusOr<int64_t> id = scheduler.Submit(r);
  ASSERT_TRUE(id.ok()) << id.status();

  sqlite3* other = nullptr;
  sqlite3_open(dir.File("s.db").c_str(), &other);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  absl::StatusOr<LeaseGrant> grant;
  absl::Notification leased;
  std::thread lessee([&] {  // a thread, so that the lock is released even if the lease waits
    grant = scheduler.Lease(worker, 4);
    leased.Notify();
  });
  const bool leased_while_locked = leased.WaitForNotificationWithTimeout(absl::Seconds(30));
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  lessee.join();
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
  const DeviceInfo device{R"({"cores":2,"name":"test"})", "cpu:test", "x86-64-v3"};
  const KernelDefinition* gemm = registry.Find("gemm");
  JobRequest r;
  r.name = "stall";
  r.tasks = {{"gemm", gemm->Version(), *gemm->ValidateProblem({{"M", 64}, {"N", 64}, {"K", 64}}),
              device.device_class}};
  r.budget = 1;
  r.strategy = "random";
  r.spec_json = "{}";
  int64_t ended = 0;
  {  // a job measured and ended by an earlier process
    Scheduler before(&db, &spaces, options);
    const std::string worker = before.RegisterWorker(device, "test", 2);
    ended = before.Submit(r).value_or(0);
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
  const std::string worker = scheduler.RegisterWorker(device, "test", 2);
  r.budget = 4;
  ASSERT_TRUE(scheduler.Submit(r).ok());

  db.hold = true;
  absl::StatusOr<JobStatus> paused;
  std::thread pauser([&] { paused = scheduler.Pause(ended); });
  db.reading.WaitForNotification();
  absl::StatusOr<LeaseGrant> grant;
  absl::Notification leased;
  std::thread lessee([&] {  // a thread, so that the read is released even if the lease waits
    grant = scheduler.Lease(worker, 4);
    leased.Notify();
  });
  const bool leased_while_reading = leased.WaitForNotificationWithTimeout(absl::Seconds(30));
  db.release.Notify();
  pauser.join();
  lessee.join();
  EXPECT_TRUE(leased_while_reading) << "the lease waited for the pause's read";
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_FALSE(grant->candidates.empty());
  EXPECT_TRUE(absl::IsFailedPrecondition(paused.status())) << paused.status();
  EXPECT_THAT(std::string(paused.status().message()), ::testing::HasSubstr("has already ended"));
}

}  // namespace
}  // namespace ktune
