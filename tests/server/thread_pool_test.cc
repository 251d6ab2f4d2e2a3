#include "server/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

namespace ktune {
namespace {

// A pool stopped while its threads are busy: the RPC handlers' pools finish every call they
// took (a call never finished would hold the server's shutdown), the agent's pool drops the
// strategy work not yet started.
TEST(ThreadPoolTest, WorkQueuedAtExitRunsOrIsDroppedAsAsked) {
  for (const bool run_queued : {true, false}) {
    std::atomic<int> ran{0};
    absl::Notification started, release;
    std::thread releaser;
    {
      ThreadPool::Options options;
      options.threads = 1;
      options.run_queued_at_exit = run_queued;
      ThreadPool pool(options);
      pool.Run([&] {
        started.Notify();
        release.WaitForNotification();
        ++ran;
      });
      started.WaitForNotification();
      for (int i = 0; i < 5; ++i) pool.Run([&] { ++ran; });
      // The running work ends once the destructor below has begun (it has nothing to wait on
      // that says so: 200 ms is ample for it to mark the pool stopping, which takes a lock).
      releaser = std::thread([&] {
        absl::SleepFor(absl::Milliseconds(200));
        release.Notify();
      });
    }  // the destructor waits for the running work
    releaser.join();
    EXPECT_EQ(ran.load(), run_queued ? 6 : 1) << "run_queued_at_exit " << run_queued;
  }
}

TEST(ThreadPoolTest, WithoutThreadsWorkRunsBeforeRunReturns) {
  ThreadPool pool(0);
  int ran = 0;
  pool.Run([&] { ++ran; });
  EXPECT_EQ(ran, 1);
  EXPECT_TRUE(pool.inline_mode());
}

}  // namespace
}  // namespace ktune
