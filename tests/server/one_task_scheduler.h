// A test fixture: a scheduler over an in-memory database, with one CPU worker registered and one
// gemm task (64 x 64 x 64) to tune. Strategy work runs inline (agent_threads 0: on the leasing
// or reporting thread, without the lock), so each lease sees its batch.
#ifndef KTUNE_TESTS_SERVER_ONE_TASK_SCHEDULER_H_
#define KTUNE_TESTS_SERVER_ONE_TASK_SCHEDULER_H_

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "db/memory_tuning_database.h"
#include "kernels/kernel_registry.h"
#include "server/scheduler.h"
#include "server/task_spaces.h"

namespace ktune {

// `Db`: the database, a MemoryTuningDatabase or a double derived from it.
template <typename Db = MemoryTuningDatabase>
class OneTaskSchedulerOn : public ::testing::Test {
 protected:
  static inline const DeviceInfo kDevice{R"({"cores":2,"name":"test"})", "cpu:test", "x86-64-v3"};
  static constexpr int kCores = 2;

  OneTaskSchedulerOn() { Restart(); }

  // A scheduler on the same database, as after a server restart.
  void Restart(SchedulerOptions options = {}) {
    options.agent_threads = 0;
    scheduler_ = std::make_unique<Scheduler>(&db_, &spaces_, std::move(options));
    ASSERT_TRUE(scheduler_->Recover().ok());
    worker_ = scheduler_->RegisterWorker(kDevice, "test", kCores);
  }

  // A report of every candidate of `grant`, measured ok at 1 ms.
  static std::vector<v1::CandidateResult> AllOk(const LeaseGrant& grant) {
    std::vector<v1::CandidateResult> results;
    for (const v1::Candidate& c : grant.candidates) {
      v1::CandidateResult& r = results.emplace_back();
      r.set_candidate_id(c.candidate_id());
      r.set_status(v1::MEASUREMENT_STATUS_OK);
      r.add_repeat_times_ms(1.0);
    }
    return results;
  }

  TaskKey Task() const {
    const KernelDefinition* gemm = registry_.Find("gemm");
    return {"gemm", gemm->Version(), *gemm->ValidateProblem({{"M", 64}, {"N", 64}, {"K", 64}}),
            kDevice.device_class};
  }

  // A random-search job of `tasks`: its id (0, and the test failed, when it is refused).
  int64_t SubmitRandom(const std::vector<TaskKey>& tasks, int64_t budget, int batch_size = 0) {
    JobRequest r;
    r.name = "test";
    r.tasks = tasks;
    r.budget = budget;
    r.batch_size = batch_size;
    r.strategy = "random";
    r.spec_json = "{}";
    absl::StatusOr<int64_t> id = scheduler_->Submit(r);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.value_or(0);
  }

  KernelRegistry registry_ = KernelRegistry::WithBuiltins();
  TaskSpaces spaces_{&registry_};
  Db db_;
  std::unique_ptr<Scheduler> scheduler_;
  std::string worker_;
};

using OneTaskScheduler = OneTaskSchedulerOn<>;

}  // namespace ktune

#endif  // KTUNE_TESTS_SERVER_ONE_TASK_SCHEDULER_H_
