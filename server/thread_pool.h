// A fixed set of threads that run queued work in submission order, as threads free up. Two
// kinds of the server's work run on them, each off the threads that take calls:
// - the scheduler's strategy work (a task's set-up, its learning step and next proposal), at a
//   lower priority (nice), dropped when the server stops; nothing runs it under the scheduler's
//   lock, so no lease, report, heartbeat or query waits behind the agent (issue 21);
// - the RPC handlers (services.h), so that a call waiting for a lock or the database holds up
//   only its own thread: gRPC 1.51 runs callback handlers on few threads of its own on a small
//   machine (it adds more only after a while), and four slow calls there held every heartbeat
//   205 ms at the median (bench/results/rpc-threads-2026-12-06-session51.txt).
//
// With threads == 0, Run runs the work on the caller's thread before it returns (deterministic:
// tests, and single-threaded embedding).
//
// Thread-safe. The destructor waits for the work that is running, then runs or drops the rest
// as Options::run_queued_at_exit says.
#ifndef KTUNE_SERVER_THREAD_POOL_H_
#define KTUNE_SERVER_THREAD_POOL_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace ktune {

class ThreadPool {
 public:
  struct Options {
    int threads = 1;
    int nice = 0;  // added to each thread's nice value (Linux): background work yields
    // Work queued but not started when the pool is destroyed: run (an RPC must be finished) or
    // dropped (strategy work of a server that stops).
    bool run_queued_at_exit = true;
    // Called by the destructor once the pool is stopping (queued work dropped, if so), before it
    // waits for the running work: tests.
    std::function<void()> on_stopping;
  };
  explicit ThreadPool(Options options);
  explicit ThreadPool(int threads) : ThreadPool(Options{threads}) {}
  ~ThreadPool();  // Stop()
  // Runs or drops the queued work as Options say, and waits for the running work; work Run is given
  // afterwards never runs. Idempotent.
  void Stop();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Runs `work` now (threads == 0) or queues it. The caller must not hold a lock that `work`
  // takes.
  void Run(std::function<void()> work);
  // Waits until no work is queued or running (tests; a server's orderly stop).
  void WaitIdle();
  // Work queued and not started yet (0 with threads == 0).
  int64_t Queued();
  bool inline_mode() const { return threads_.empty(); }

 private:
  void Loop();

  const Options options_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace ktune

#endif  // KTUNE_SERVER_THREAD_POOL_H_
