#include "measurer/runner_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "measurer/runner/framing.h"

namespace ktune {

std::string DescribeSignal(int signal) {
  const char* name = sigabbrev_np(signal);
  return absl::StrCat("SIG", name ? name : std::to_string(signal), " (", strsignal(signal), ")");
}

std::string FindRunner(const std::string& name, const char* env_var) {
  if (const char* p = std::getenv(env_var); p && *p) return p;
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return name;
  for (const auto& candidate :
       {self.parent_path() / name, self.parent_path().parent_path() / "measurer" / name}) {
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return (self.parent_path() / name).string();
}

absl::Status RunnerProcess::CheckExecutable() const {
  if (::access(options_.runner_path.c_str(), X_OK) == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "the measurement runner '", options_.runner_path,
      "' is not executable: ", std::strerror(errno), " (set KTUNE_RUNNER to its path)"));
}

absl::Status RunnerProcess::Start() {
  int down[2], up[2];
  if (::pipe2(down, O_CLOEXEC) != 0 || ::pipe2(up, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  // Checked before fork: exec's failure in the child would look like a crash.
  if (absl::Status executable = CheckExecutable(); !executable.ok()) {
    ::close(down[0]), ::close(down[1]), ::close(up[0]), ::close(up[1]);
    return executable;
  }
  // Built before fork: the child of a multi-threaded worker may only call async-signal-safe
  // functions (no malloc) until exec.
  std::vector<char*> argv = {const_cast<char*>(options_.runner_path.c_str())};
  for (const std::string& a : options_.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(down[0], 0);
    ::dup2(up[1], 1);
    if (options_.memory_limit_bytes > 0) {
      rlimit limit{static_cast<rlim_t>(options_.memory_limit_bytes),
                   static_cast<rlim_t>(options_.memory_limit_bytes)};
      ::setrlimit(RLIMIT_AS, &limit);
    }
    rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    ::setenv("OMP_PROC_BIND", "close", 0);
    ::setenv("OMP_PLACES", "cores", 0);
    ::execv(options_.runner_path.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(down[0]);
  ::close(up[1]);
  pid_ = pid;
  to_child_ = down[1];
  from_child_ = up[0];
  ++starts_;
  return absl::OkStatus();
}

std::string RunnerProcess::Reap() {
  int status = 0;
  std::string how = "ended";
  if (::waitpid(pid_, &status, 0) == pid_) {
    if (WIFSIGNALED(status)) {
      how = absl::StrCat("killed by ", DescribeSignal(WTERMSIG(status)));
    } else if (WIFEXITED(status)) {
      how = absl::StrCat("exited with status ", WEXITSTATUS(status));
    }
  }
  ::close(to_child_);
  ::close(from_child_);
  pid_ = -1;
  to_child_ = from_child_ = -1;
  return how;
}

void RunnerProcess::Stop() {
  if (pid_ <= 0) return;
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  Reap();
}

absl::StatusOr<RunnerProcess::Outcome> RunnerProcess::Call(const runner::RunRequest& request,
                                                           int64_t timeout_ms,
                                                           runner::RunResponse* response,
                                                           std::string* death) {
  absl::StatusOr<Outcome> outcome =
      Call(static_cast<const google::protobuf::MessageLite&>(request), timeout_ms,
           static_cast<google::protobuf::MessageLite*>(response), death);
  if (outcome.ok() && *outcome == Outcome::kAnswered && response->restart()) Reap();
  return outcome;
}

absl::StatusOr<RunnerProcess::Outcome> RunnerProcess::Call(
    const google::protobuf::MessageLite& request, int64_t timeout_ms,
    google::protobuf::MessageLite* response, std::string* death) {
  if (pid_ <= 0) {
    if (absl::Status s = Start(); !s.ok()) return s;
  }
  // A child that died between calls shows up as a broken pipe here or EOF below.
  const sighandler_t old = ::signal(SIGPIPE, SIG_IGN);
  const bool sent = runner::WriteFrame(to_child_, request);
  ::signal(SIGPIPE, old);
  const int64_t deadline_ms = runner::SteadyNowMs() + timeout_ms;
  // With a stop check: wait for the answer to start in slices, asking it between them (a
  // cancelled job's worker waited out a reference that hung, up to 10 minutes a candidate).
  while (sent && stop_) {
    if (stop_()) {
      Stop();
      return absl::CancelledError("stopped while the runner was measuring; it was killed");
    }
    const int64_t left_ms = deadline_ms - runner::SteadyNowMs();
    if (left_ms <= 0) break;
    pollfd readable{from_child_, POLLIN, 0};
    const int ready = ::poll(&readable, 1, static_cast<int>(std::min<int64_t>(left_ms, 100)));
    if (ready > 0 || (ready < 0 && errno != EINTR)) break;  // ReadFrame takes it from here
  }
  bool timed_out = false;
  if (sent && runner::ReadFrame(from_child_, *response, deadline_ms, &timed_out)) {
    return Outcome::kAnswered;
  }
  if (timed_out) {
    Stop();
    return Outcome::kTimedOut;
  }
  ::kill(-pid_, SIGKILL);  // the whole group, in case the kernel forked
  *death = Reap();
  return Outcome::kDied;
}

}  // namespace ktune
