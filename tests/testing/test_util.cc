#include "tests/testing/test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace ktune::testing {

TempDir::TempDir() {
  char tmpl[] = "/tmp/ktune-test-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::string cmd = "rm -rf '" + path_ + "'";
  (void)std::system(cmd.c_str());
}

// $KTUNE_BINARY when set (a bundle run on another machine: bench/cuda/run-on-gpu.sh), else the
// binary built beside the tests.
std::string KtuneBinary() {
  const char* env = std::getenv("KTUNE_BINARY");
  return env && *env ? env : KTUNE_BINARY;
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ReadGzipFile(const std::string& path) {
  gzFile gz = gzopen(path.c_str(), "rb");
  std::string out;
  if (gz == nullptr) return out;
  char buf[65536];
  int n;
  while ((n = gzread(gz, buf, sizeof buf)) > 0) out.append(buf, n);
  gzclose(gz);
  return out;
}

namespace {

// Starts the ktune binary with `args`, stdout and stderr into the given files.
pid_t SpawnProgram(const std::string& program, const std::vector<std::string>& args,
                   const std::string& out_path, const std::string& err_path) {
  pid_t pid = fork();
  if (pid == 0) {
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(out, 1);
    dup2(err, 2);
    std::vector<char*> argv;
    std::string bin = program;
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (std::string& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

pid_t SpawnKtune(const std::vector<std::string>& args, const std::string& out_path,
                 const std::string& err_path) {
  return SpawnProgram(KtuneBinary(), args, out_path, err_path);
}

}  // namespace

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

CommandResult RunKtune(const std::vector<std::string>& args) {
  return RunProgram(KtuneBinary(), args);
}

CommandResult RunProgram(const std::string& program, const std::vector<std::string>& args) {
  TempDir dir;
  std::string out_path = dir.File("out"), err_path = dir.File("err");
  pid_t pid = SpawnProgram(program, args, out_path, err_path);
  int status = 0;
  waitpid(pid, &status, 0);
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = ReadWholeFile(out_path);
  r.err = ReadWholeFile(err_path);
  return r;
}

KtuneProcess::KtuneProcess(const std::vector<std::string>& args)
    : pid_(SpawnKtune(args, dir_.File("out"), dir_.File("err"))) {}

KtuneProcess::~KtuneProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    Wait();
  }
}

void KtuneProcess::Signal(int signal) {
  if (pid_ > 0) kill(pid_, signal);
}

int KtuneProcess::Wait() {
  if (pid_ <= 0) return exit_code_;
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return exit_code_;
}

bool KtuneProcess::HasLibraryLoaded(const std::string& name) const {
  std::ifstream maps("/proc/" + std::to_string(pid_) + "/maps");
  for (std::string line; std::getline(maps, line);) {
    const size_t slash = line.rfind('/');
    if (slash != std::string::npos && line.find(name, slash) != std::string::npos) return true;
  }
  return false;
}

std::string KtuneProcess::Out() const { return ReadWholeFile(dir_.File("out")); }
std::string KtuneProcess::Err() const { return ReadWholeFile(dir_.File("err")); }

bool KtuneProcess::WaitForOutput(const std::string& text, double seconds) const {
  return WaitFor([this] { return Out(); }, text, seconds);
}

bool KtuneProcess::WaitForError(const std::string& text, double seconds) const {
  return WaitFor([this] { return Err(); }, text, seconds);
}

bool KtuneProcess::WaitFor(const std::function<std::string()>& read, const std::string& text,
                           double seconds) const {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (read().find(text) != std::string::npos) return true;
    siginfo_t info{};
    if (pid_ > 0 && waitid(P_PID, pid_, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == pid_) {
      break;  // it ended (still to be reaped by Wait)
    }
    usleep(50'000);
  }
  return read().find(text) != std::string::npos;
}

std::string SpaceFile(const std::string& name) {
  return std::string(KTUNE_DATASETS_DIR) + "/spaces/" + name;
}

std::string DefinitionFile(const std::string& name) {
  return std::string(KTUNE_DATASETS_DIR) + "/definitions/" + name;
}

std::vector<std::string> AllSpaceFiles() {
  std::vector<std::string> out;
  std::string dir = std::string(KTUNE_DATASETS_DIR) + "/spaces";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > 8 && n.substr(n.size() - 8) == ".json.gz") out.push_back(n);
    }
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string ReadOnlyQuery(const std::string& path, const std::string& sql) {
  std::string value;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* statement = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr) == SQLITE_OK &&
        sqlite3_step(statement) == SQLITE_ROW && sqlite3_column_text(statement, 0) != nullptr) {
      value = reinterpret_cast<const char*>(sqlite3_column_text(statement, 0));
    }
    sqlite3_finalize(statement);
  }
  sqlite3_close(db);
  return value;
}

}  // namespace ktune::testing
