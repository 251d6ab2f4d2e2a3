#include "cli/interrupts.h"

#include <signal.h>
#include <time.h>

#include <chrono>
#include <cstdint>

namespace ktune::cli {
namespace {

std::atomic<int> g_signal{0};
std::atomic<std::atomic<bool>*> g_stop{nullptr};
std::atomic<int64_t> g_first_at_ns{0};  // when the first signal came (CLOCK_MONOTONIC)

// A second signal within this of the first is the same one delivered twice: `timeout` sends
// SIGTERM to the command and then to its whole process group, and the second copy ended the
// process before it could cancel its job (left queued on the server). Too soon for a person's
// second Ctrl-C.
constexpr int64_t kSameSignalWithinNs = 300'000'000;

int64_t MonotonicNs() {  // async-signal-safe
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec;
}

void OnSignal(int signal) {
  const int64_t now = MonotonicNs();
  if (g_signal.load() != 0) {
    if (now - g_first_at_ns.load() < kSameSignalWithinNs) return;
    // A second one: what it would have done without this handler (it ends the process).
    ::signal(signal, SIG_DFL);
    ::raise(signal);
    return;
  }
  g_first_at_ns = now;
  g_signal = signal;  // before `stop`: whoever sees the flag set finds the signal too
  if (std::atomic<bool>* stop = g_stop.load()) stop->store(true);
}

}  // namespace

struct InterruptScope::Saved {
  struct sigaction old_int = {}, old_term = {}, old_hup = {};
};

InterruptScope::InterruptScope(std::atomic<bool>* stop) : saved_(std::make_unique<Saved>()) {
  g_signal = 0;
  g_stop = stop;
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  action.sa_flags = 0;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, &saved_->old_int);
  sigaction(SIGTERM, &action, &saved_->old_term);
  // The terminal closed (an SSH session ended), unless SIGHUP is ignored (nohup): then it stays so.
  sigaction(SIGHUP, nullptr, &saved_->old_hup);
  if (saved_->old_hup.sa_handler != SIG_IGN) sigaction(SIGHUP, &action, nullptr);
}

InterruptScope::~InterruptScope() {
  sigaction(SIGINT, &saved_->old_int, nullptr);
  sigaction(SIGTERM, &saved_->old_term, nullptr);
  sigaction(SIGHUP, &saved_->old_hup, nullptr);
  g_stop = nullptr;
}

int InterruptSignal() { return g_signal.load(); }

InterruptWatcher::InterruptWatcher(std::function<void(int signal)> on_interrupt)
    : thread_([this, on_interrupt = std::move(on_interrupt)] {
        while (!stop_) {
          if (const int signal = g_signal.load(); signal != 0) {
            on_interrupt(signal);
            return;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }) {}

void InterruptWatcher::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

}  // namespace ktune::cli
