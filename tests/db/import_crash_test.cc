// Crash safety for real: a child `ktune db import` process is killed with SIGKILL at a random
// moment, many times; afterwards the file must pass PRAGMA integrity_check and hold either all
// of the import or none of it, on top of what was committed before.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>

#include "db/interchange/record_files.h"
#include "db/sqlite_tuning_database.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

using testing::KtuneBinary;
using testing::SpaceFile;
using testing::TempDir;

pid_t StartImport(const std::string& db, const std::string& file) {
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    std::string bin = KtuneBinary();
    execl(bin.c_str(), bin.c_str(), "db", "import", file.c_str(), "--db", db.c_str(), nullptr);
    _exit(127);
  }
  return pid;
}

// A database holding `base`, as every crash run starts from.
void PrepareBase(const std::string& db_path, const std::string& base) {
  auto db = SqliteTuningDatabase::Open(db_path);
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_TRUE(ImportRecordFile(**db, base, {}).ok());
}

TEST(ImportCrashTest, SigkillDuringImportLosesAtMostThatImport) {
  TempDir dir;
  const std::string base = SpaceFile("convolution_A100_T4.json.gz");      // 4362 records
  const std::string killed = SpaceFile("dedispersion_A4000_T4.json.gz");  // 11130 records
  std::mt19937 rng(20261127);
  int all = 0, none = 0;
  // How long one import takes on this machine now, on top of the same base as the crash runs
  // (it varies with load): kills are spread over that, so that some land before, some inside and
  // some after the write transaction. A loaded machine can slow the later imports down, so the
  // window widens while no import has completed, and the runs go on (up to kMaxRuns) until both
  // outcomes have been seen.
  PrepareBase(dir.File("timing.db"), base);
  const auto start = std::chrono::steady_clock::now();
  {
    pid_t pid = StartImport(dir.File("timing.db"), killed);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  const int import_us = static_cast<int>(std::chrono::duration_cast<std::chrono::microseconds>(
                                             std::chrono::steady_clock::now() - start)
                                             .count());
  const int kMinRuns = 16, kMaxRuns = 48;
  double window = 1.3;  // kills land in [import_us / 20, import_us * window]
  for (int run = 0; run < kMaxRuns && (run < kMinRuns || all == 0 || none == 0); ++run) {
    std::string db_path = dir.File("crash-" + std::to_string(run) + ".db");
    PrepareBase(db_path, base);
    pid_t pid = StartImport(db_path, killed);
    // Most of an import's time is parsing; the commit comes at the end.
    usleep(std::uniform_int_distribution<int>(import_us / 20,
                                              static_cast<int>(import_us * window))(rng));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);

    auto db = SqliteTuningDatabase::Open(db_path);
    ASSERT_TRUE(db.ok()) << "run " << run << ": " << db.status();
    ASSERT_TRUE((*db)->CheckIntegrity().ok()) << "run " << run;
    int64_t records = (*db)->Stats()->records;
    ASSERT_TRUE(records == 4362 || records == 4362 + 11130) << "run " << run << ": " << records;
    (records == 4362 ? none : all)++;
    if (all == 0 && run % 4 == 3) window *= 1.5;
  }
  // Both outcomes must have occurred, or the test did not test the crash window.
  EXPECT_GT(all, 0);
  EXPECT_GT(none, 0);
}

}  // namespace
}  // namespace ktune
