#include "server/thread_pool.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace ktune {

ThreadPool::ThreadPool(Options options) : options_(options) {
  for (int i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { Loop(); });
}

ThreadPool::~ThreadPool() { Stop(); }

void ThreadPool::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;  // stopped already (the threads are joined)
    stopping_ = true;
    if (!options_.run_queued_at_exit) queue_.clear();
  }
  if (options_.on_stopping) options_.on_stopping();
  for (std::thread& t : threads_) t.join();
}

void ThreadPool::Run(std::function<void()> work) {
  if (threads_.empty()) {
    work();
    return;
  }
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(work));
}

int64_t ThreadPool::Queued() {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(queue_.size());
}

void ThreadPool::WaitIdle() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](ThreadPool* p)
           ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) { return p->queue_.empty() && p->running_ == 0; },
      this));
}

void ThreadPool::Loop() {
  // Linux: a thread's nice value is its own. Failing to change it changes nothing else.
  if (options_.nice != 0) {
    setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), options_.nice);
  }
  while (true) {
    std::function<void()> work;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](ThreadPool* p)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) { return p->stopping_ || !p->queue_.empty(); },
          this));
      if (queue_.empty()) return;  // stopping, nothing left to run
      work = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    work();
    absl::MutexLock lock(&mu_);
    --running_;
  }
}

}  // namespace ktune
