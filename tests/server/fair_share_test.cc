// How jobs share the workers of a device class (stride scheduling, server/scheduler.h): a job
// submitted or resumed competes level with the jobs being served, whatever other jobs wait.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "server/scheduler.h"
#include "tests/server/one_task_scheduler.h"

namespace ktune {
namespace {

class FairShareTest : public OneTaskScheduler {
 protected:
  int64_t Submit(const TaskKey& task) { return Submit(std::vector<TaskKey>{task}); }
  int64_t Submit(const std::vector<TaskKey>& tasks) { return SubmitRandom(tasks, 1000, 4); }

  // `n` leases of one candidate by `worker` (worker_ when empty), each reported at once: how many
  // each job got.
  std::map<int64_t, int> Serve(int n, std::string worker = "") {
    if (worker.empty()) worker = worker_;
    std::map<int64_t, int> got;
    for (int i = 0; i < n; ++i) {
      absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker, 1);
      EXPECT_TRUE(grant.ok()) << grant.status();
      if (!grant.ok() || grant->candidates.empty()) break;
      const std::string& cid = grant->candidates[0].candidate_id();
      ++got[std::stoll(cid.substr(0, cid.find('.')))];
      v1::CandidateResult result;
      result.set_candidate_id(cid);
      result.set_status(v1::MEASUREMENT_STATUS_OK);
      result.add_repeat_times_ms(1.0 + i % 7);
      EXPECT_TRUE(scheduler_->Report(worker, grant->lease_id, {result}).ok());
    }
    return got;
  }
};

// Paused while the other job was served, a job resumes level with it: they share the next
// candidates. (It resumed at its old pass and took all of them until it had caught up.)
TEST_F(FairShareTest, AResumedJobDoesNotCatchUpOnTheTimeItWasPaused) {
  const int64_t paused = Submit(Task());
  const int64_t other = Submit(Task());
  Serve(4);
  ASSERT_TRUE(scheduler_->Pause(paused).ok());
  EXPECT_EQ(Serve(40)[other], 40);
  ASSERT_TRUE(scheduler_->Resume(paused).ok());
  std::map<int64_t, int> got = Serve(20);
  EXPECT_GE(got[other], 8) << "the resumed job took " << got[paused] << " of 20";
  EXPECT_GE(got[paused], 8);
}

// A job no worker serves (its device class has none) does not hold back the jobs submitted after
// it: a new job shares the class's candidates with the one being served. (The lowest pass of
// all jobs was the start of every new one: the waiting job's kept it at the beginning, and the
// new job took every candidate until it had caught up with the served one.)
TEST_F(FairShareTest, AJobNoWorkerServesDoesNotGiveNewJobsALead) {
  TaskKey elsewhere = Task();
  elsewhere.device_class = "cpu:nobody";
  Submit(elsewhere);
  const int64_t served = Submit(Task());
  EXPECT_EQ(Serve(40)[served], 40);
  const int64_t late = Submit(Task());
  std::map<int64_t, int> got = Serve(20);
  EXPECT_GE(got[served], 8) << "the new job took " << got[late] << " of 20";
  EXPECT_GE(got[late], 8);
}

// Classes serve at different rates: a job on a busy class and a quiet one shares the quiet
// class's candidates with the job served there. (With one pass per job, started at the busy
// class's floor, it waited on the quiet class until the other job had caught up with it.)
TEST_F(FairShareTest, AJobOnTwoClassesCompetesOnEachAtItsOwnPace) {
  const DeviceInfo quiet_device{R"({"cores":2,"name":"quiet"})", "cpu:quiet", "x86-64-v3"};
  const std::string quiet_worker = scheduler_->RegisterWorker(quiet_device, "quiet", kCores);
  TaskKey quiet = Task();
  quiet.device_class = quiet_device.device_class;
  Submit(Task());
  EXPECT_EQ(Serve(40).size(), 1u);  // the busy class's floor is at 40
  const int64_t served = Submit(quiet);
  Serve(2, quiet_worker);  // the quiet class's at 2
  const int64_t both = Submit(std::vector<TaskKey>{Task(), quiet});
  std::map<int64_t, int> got = Serve(20, quiet_worker);
  EXPECT_GE(got[both], 8) << "the job on both classes got " << got[both] << " of 20";
  EXPECT_GE(got[served], 8);
}

}  // namespace
}  // namespace ktune
