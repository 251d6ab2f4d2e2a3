#include "cli/interrupts.h"

#include <signal.h>

#include <chrono>

namespace ktune::cli {
namespace {

std::atomic<int> g_signal{0};
std::atomic<std::atomic<bool>*> g_stop{nullptr};

void OnSignal(int signal) {
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
  action.sa_flags = SA_RESETHAND;
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
