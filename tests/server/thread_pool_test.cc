#include "server/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>

#include "absl/synchronization/notification.h"

namespace ktune {
namespace {

// A pool stopped while its threads are busy: the RPC handlers' pools finish every call they
// took (a call never finished would hold the server's shutdown), the agent's pool drops the
// strategy work not yet started.
TEST(ThreadPoolTest, WorkQueuedAtExitRunsOrIsDroppedAsAsked) {
  for (const bool run_queued : {true, false}) {
    std::atomic<int> ran{0};
    absl::Notification started, release;
    {
      ThreadPool::Options options;
      options.threads = 1;
      options.run_queued_at_exit = run_queued;
      options.on_stopping = [&] { release.Notify(); };  // the running work ends once stopping
      ThreadPool pool(options);
      pool.Run([&] {
        started.Notify();
        release.WaitForNotification();
        ++ran;
      });
      started.WaitForNotification();
      for (int i = 0; i < 5; ++i) pool.Run([&] { ++ran; });
      EXPECT_EQ(pool.Queued(), 5);  // the backlog the metrics show (ktune_agent_work_queued)
    }  // the destructor waits for the running work
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
