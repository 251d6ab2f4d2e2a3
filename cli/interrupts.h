// Ctrl-C (SIGINT), SIGTERM and SIGHUP (the terminal closed) for commands that clean up before
// they exit: `tune` cancels its
// job (keeping what was measured), then exits 128 + the signal, as shells expect.
#ifndef KTUNE_CLI_INTERRUPTS_H_
#define KTUNE_CLI_INTERRUPTS_H_

#include <atomic>
#include <functional>
#include <memory>
#include <thread>

namespace ktune::cli {

// While it lives, the first SIGINT, SIGTERM or SIGHUP is recorded (InterruptSignal()) and sets
// `stop` (when given); a second one acts as usual (it ends the process), unless it comes within
// 300 ms of the first (the same signal sent twice, as `timeout` does). The previous handlers
// come back when it ends. One scope at a time.
class InterruptScope {
 public:
  explicit InterruptScope(std::atomic<bool>* stop = nullptr);
  ~InterruptScope();
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

 private:
  struct Saved;
  std::unique_ptr<Saved> saved_;  // the handlers to restore
};

// The signal that came during the last InterruptScope, 0 while none did.
int InterruptSignal();

// A thread that calls `on_interrupt` once, soon (within 50 ms) after a signal comes in a live
// InterruptScope, unless Stop() came first. Stop() (or the destructor) ends the thread; it waits
// for a running `on_interrupt` to return.
class InterruptWatcher {
 public:
  explicit InterruptWatcher(std::function<void(int signal)> on_interrupt);
  ~InterruptWatcher() { Stop(); }
  void Stop();
  InterruptWatcher(const InterruptWatcher&) = delete;
  InterruptWatcher& operator=(const InterruptWatcher&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace ktune::cli

#endif  // KTUNE_CLI_INTERRUPTS_H_
