#include "measurer/cpu_kernel_compiler.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/hash.h"
#include "common/utf8.h"
#include "measurer/cpu_kernel_abi_text.h"

namespace ktune {
namespace {

// Runs argv with stdout+stderr into `log_path`, killing it after timeout_ms. Returns the exit
// status as from waitpid, or -1 on timeout.
absl::StatusOr<int> RunWithTimeout(const std::vector<std::string>& argv,
                                   const std::string& log_path, int64_t timeout_ms) {
  const pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    ::setpgid(0, 0);
    const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (log >= 0) {
      ::dup2(log, 1);
      ::dup2(log, 2);
    }
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  int status = 0;
  while (true) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace

std::string DefaultCacheDir() {
  if (const char* d = std::getenv("KTUNE_CACHE_DIR"); d && *d) return d;
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d) return absl::StrCat(d, "/ktune");
  if (const char* d = std::getenv("HOME"); d && *d) return absl::StrCat(d, "/.cache/ktune");
  return "/tmp/ktune-cache";
}

absl::StatusOr<CpuBuild> CpuKernelCompiler::Build(const KernelDefinition& definition,
                                                  const Configuration& config) {
  std::vector<std::string> defines;
  for (const KernelParameter& p : definition.parameters) {
    if (!p.compile_time) continue;
    auto it = config.find(p.name);
    if (it == config.end()) {
      return absl::InvalidArgumentError(absl::StrCat("configuration lacks ", p.name));
    }
    defines.push_back(absl::StrCat("-DKT_", p.name, "=", FormatParamValue(it->second)));
  }
  const std::string key = StableHashHex(
      absl::StrCat(options_.compiler, "\n", absl::StrJoin(options_.flags, " "), "\n",
                   absl::StrJoin(defines, " "), "\n", kCpuKernelAbiText, "\n", definition.source));
  if (auto it = failed_.find(key); it != failed_.end()) return it->second;

  const std::filesystem::path dir =
      options_.cache_dir.empty() ? DefaultCacheDir() : options_.cache_dir;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create the kernel cache ", dir.string(), ": ", ec.message()));
  }
  CpuBuild build;
  build.library_path = (dir / (key + ".so")).string();
  if (::access(build.library_path.c_str(), R_OK) == 0) {
    build.ok = true;
    return build;
  }
  const std::string header = (dir / "ktune_cpu_kernel_abi.h").string();
  if (::access(header.c_str(), R_OK) != 0) {
    if (absl::Status s = WriteFileAtomically(header, kCpuKernelAbiText); !s.ok()) return s;
  }
  const std::string source = (dir / (key + ".cc")).string();
  if (absl::Status s = WriteFileAtomically(source, definition.source); !s.ok()) return s;
  const std::string tmp = absl::StrCat(build.library_path, ".", ::getpid(), ".tmp");
  const std::string log = (dir / (key + ".log")).string();
  std::vector<std::string> argv = {options_.compiler};
  argv.insert(argv.end(), options_.flags.begin(), options_.flags.end());
  argv.insert(argv.end(), defines.begin(), defines.end());
  argv.insert(argv.end(), {"-include", header, source, "-o", tmp});

  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<int> status = RunWithTimeout(argv, log, options_.timeout_ms);
  if (!status.ok()) return status.status();
  build.build_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  ++builds_;
  if (*status == 0) {
    std::filesystem::rename(tmp, build.library_path, ec);
    if (ec) return absl::InternalError(absl::StrCat("rename ", tmp, ": ", ec.message()));
    build.ok = true;
    return build;
  }
  std::filesystem::remove(tmp, ec);
  if (WIFEXITED(*status) && WEXITSTATUS(*status) == 127) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run the compiler '", options_.compiler, "'"));
  }
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  build.ok = false;
  build.library_path.clear();
  build.message = *status < 0 ? absl::StrCat("the compiler ran longer than ",
                                             options_.timeout_ms / 1000.0, " s and was stopped")
                              : Utf8Prefix(text.str(), 4096);
  failed_[key] = build;
  return build;
}

}  // namespace ktune
