// Where the scheduler's strategy work runs: a task's initialisation, its search's learning step
// and its next proposal (TaskSearch::Create, Complete, NextBatch). None of it runs under the
// scheduler's lock, so leases, reports, heartbeats and queries never wait behind the agent
// (issue 21).
//
// With threads > 0, work runs on that many background threads, in submission order as threads
// free up: a report that completes a batch returns at once and the next batch is prepared
// while workers measure other tasks' batches. With threads == 0, Run runs the work on the
// caller's thread before it returns (deterministic: tests, and single-threaded embedding).
//
// The background threads run at a lower priority (nice kNice) than the threads answering RPCs.
//
// Thread-safe. The destructor waits for the work that is running and drops the rest.
#ifndef KTUNE_SERVER_AGENT_RUNNER_H_
#define KTUNE_SERVER_AGENT_RUNNER_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace ktune {

class AgentRunner {
 public:
  explicit AgentRunner(int threads);
  ~AgentRunner();
  AgentRunner(const AgentRunner&) = delete;
  AgentRunner& operator=(const AgentRunner&) = delete;

  // Runs `work` now (threads == 0) or queues it. The caller must not hold a lock that `work`
  // takes.
  void Run(std::function<void()> work);
  // Waits until no work is queued or running (tests; a server's orderly stop).
  void WaitIdle();
  bool inline_mode() const { return threads_.empty(); }

  static constexpr int kNice = 10;

 private:
  void Loop();

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace ktune

#endif  // KTUNE_SERVER_AGENT_RUNNER_H_
