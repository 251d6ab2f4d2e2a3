// The worker's handle on one ktune-runner child: starts it (own process group, memory limit,
// OpenMP threads bound to cores), sends a request and waits for the answer with a deadline, and
// kills it when it hangs or after it crashed.
#ifndef KTUNE_MEASURER_RUNNER_PROCESS_H_
#define KTUNE_MEASURER_RUNNER_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "measurer/runner/runner.pb.h"

namespace ktune {

class RunnerProcess {
 public:
  struct Options {
    std::string runner_path;
    int64_t memory_limit_bytes = 0;  // RLIMIT_AS of the child; 0: none
    std::vector<std::string> args;   // command-line arguments after the program name
  };

  enum class Outcome {
    kAnswered,  // `response` is the runner's answer
    kTimedOut,  // no answer in time: the child was killed
    kDied,      // the child ended without answering: `death` says how (signal or exit code)
  };

  explicit RunnerProcess(Options options) : options_(std::move(options)) {}
  // FailedPrecondition, naming the path, when the runner is not an executable file: what Call
  // would fail with, found before anything is measured.
  absl::Status CheckExecutable() const;
  ~RunnerProcess() { Stop(); }
  RunnerProcess(const RunnerProcess&) = delete;
  RunnerProcess& operator=(const RunnerProcess&) = delete;

  // A check that Call makes every 100 ms while it waits for the child's answer: once it returns
  // true, the child is killed and Call returns CancelledError (a measurer's stop check: a lease
  // taken back, a worker stopping, no longer wait for a candidate that hangs).
  void set_stop_check(std::function<bool()> stop) { stop_ = std::move(stop); }

  // Sends `request` (starting the child first if none runs) and waits up to `timeout_ms`.
  // An error when the child cannot be started at all, or Cancelled by the stop check (the child
  // killed). Any protocol whose messages are
  // length-prefixed frames (measurer/runner/framing.h) works: the CPU runner's and the CUDA
  // runner's.
  absl::StatusOr<Outcome> Call(const google::protobuf::MessageLite& request, int64_t timeout_ms,
                               google::protobuf::MessageLite* response, std::string* death);
  // The CPU runner's protocol: a response with `restart` set means the child exits by itself;
  // it is reaped before the next call starts a fresh one.
  absl::StatusOr<Outcome> Call(const runner::RunRequest& request, int64_t timeout_ms,
                               runner::RunResponse* response, std::string* death);

  // Kills the child (if any) and reaps it.
  void Stop();

  bool running() const { return pid_ > 0; }
  // Children started so far (the first one included).
  int64_t starts() const { return starts_; }

 private:
  absl::Status Start();
  // Waits for the child to end (it has closed its pipe or been killed); describes how.
  std::string Reap();

  Options options_;
  std::function<bool()> stop_;
  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  int64_t starts_ = 0;
};

// A runner executable: $<env_var> when set, else `name` beside the running executable (or in
// the build tree's measurer/ folder next to cli/).
std::string FindRunner(const std::string& name, const char* env_var);

// "SIGSEGV (segmentation fault)" for 11, and so on.
std::string DescribeSignal(int signal);

}  // namespace ktune

#endif  // KTUNE_MEASURER_RUNNER_PROCESS_H_
