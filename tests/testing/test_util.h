// Shared test helpers: temporary folders, running the ktune binary, locating datasets.
#ifndef KTUNE_TESTS_TESTING_TEST_UTIL_H_
#define KTUNE_TESTS_TESTING_TEST_UTIL_H_

#include <functional>
#include <string>
#include <vector>

namespace ktune::testing {

// A fresh folder under /tmp, removed with everything in it when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal
  std::string out, err;
};

// Runs the ktune binary built with the tests, with `args`, and waits for it.
CommandResult RunKtune(const std::vector<std::string>& args);
// Runs `program` (a path) with `args` and waits for it.
CommandResult RunProgram(const std::string& program, const std::vector<std::string>& args);

// A ktune process running in the background (a server, a worker), killed when destroyed.
class KtuneProcess {
 public:
  explicit KtuneProcess(const std::vector<std::string>& args);
  ~KtuneProcess();
  KtuneProcess(const KtuneProcess&) = delete;
  void Signal(int signal);
  // Waits for the process to end; its exit code, or -1 when a signal ended it.
  int Wait();
  std::string Out() const;  // what it printed so far
  std::string Err() const;
  // Waits until the process has printed `text` on stdout or has ended, for at most `seconds`
  // (generous: on a busy machine the binary alone can take seconds to load); true if it printed
  // it. Readiness is waited for, never assumed after a fixed delay.
  bool WaitForOutput(const std::string& text, double seconds = 120) const;
  // The same for what it wrote to stderr (log events).
  bool WaitForError(const std::string& text, double seconds = 120) const;
  // True while the running process has a shared library whose file name contains `name` mapped
  // (/proc/PID/maps).
  bool HasLibraryLoaded(const std::string& name) const;

 private:
  bool WaitFor(const std::function<std::string()>& read, const std::string& text,
               double seconds) const;
  TempDir dir_;
  int pid_ = -1;
  int exit_code_ = -1;
};

// A TCP port on 127.0.0.1 that was free a moment ago (for servers a test starts by address).
int FreePort();

// Path of the ktune binary (for tests that start and kill it themselves).
std::string KtuneBinary();

// ../shared/datasets/spaces/<name> and ../shared/datasets/definitions/<name>.
std::string SpaceFile(const std::string& name);
std::string DefinitionFile(const std::string& name);
// The 17 recorded spaces shipped in ../shared/datasets/spaces, sorted.
std::vector<std::string> AllSpaceFiles();

std::string ReadWholeFile(const std::string& path);
// The first column of `sql`'s first row in the SQLite database at `path`, through a read-only
// connection (opening it for writing could race a ktune process creating it); "" when there is
// none (no such table or row yet, or NULL).
std::string ReadOnlyQuery(const std::string& path, const std::string& sql);
// The decompressed contents of a gzip file.
std::string ReadGzipFile(const std::string& path);

// The C++ source of docs/operations.md's client kernel "scale2" (y = 2x, a compile-time unroll),
// as `ktune kernels register --source` takes it.
inline constexpr char kScale2KernelSource[] = R"(
extern "C" int ktune_reference(const ktune_cpu_call* c) {
  for (int64_t i = 0; i < c->problem[0]; ++i) c->buffers[1][i] = 2 * c->buffers[0][i];
  return 0;
}
extern "C" int ktune_kernel(const ktune_cpu_call* c) {
  const int64_t n = c->problem[0];
  int64_t i = 0;
  for (; i + KT_unroll <= n; i += KT_unroll)
    for (int u = 0; u < KT_unroll; ++u) c->buffers[1][i + u] = 2 * c->buffers[0][i + u];
  for (; i < n; ++i) c->buffers[1][i] = 2 * c->buffers[0][i];
  return 0;
}
)";

}  // namespace ktune::testing

#endif  // KTUNE_TESTS_TESTING_TEST_UTIL_H_
