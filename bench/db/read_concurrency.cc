// Reads against writes on one SqliteTuningDatabase: how long QueryBest, a task's records and a
// report's commit take while other threads write and walk the records, with reads through their
// own connections (the default) and through the writer's, in the same run.
//
//   ktune-db-read-bench [--records N] [--seconds S] [--dir FOLDER]
//
// Two scenarios, each run for S seconds per mode on a file of N records over 32 tasks:
//   reports: 2 threads commit reports of 8 records (as workers' reports do; each commit syncs the
//            file), 2 threads ask QueryBest and 1 reads a task's records (as explain does);
//   export:  1 thread walks every record (an ExportRecords), 1 commits reports, 1 asks QueryBest.
// Prints the latency percentiles of each kind of call and the calls made.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "db/sqlite_tuning_database.h"

namespace ktune {
namespace {

constexpr int kTasks = 32;

Record MakeRecord(int task, int64_t config, double ms) {
  Record r;
  r.kernel = "gemm";
  r.problem = {{"M", int64_t{256} * (task + 1)}};
  r.device = DeviceInfo::FromName("H100");
  r.config = {{"tile", config}};
  r.time_ms = ms;
  r.repeat_times_ms = {ms, ms * 1.01, ms * 0.99};
  FillRepeatStatistics(r);
  r.worker = "bench";
  r.measured_at_us = 1'700'000'000'000'000 + config;
  r.source = "worker";
  return r;
}

BestQuery QueryOf(int task) {
  BestQuery q;
  q.kernel = "gemm";
  q.problem = {{"M", int64_t{256} * (task + 1)}};
  q.device_class = "H100";
  return q;
}

// Latencies of one kind of call, in milliseconds.
class Latencies {
 public:
  void Add(double ms) {
    absl::MutexLock lock(&mu_);
    ms_.push_back(ms);
  }
  std::string Summary() {
    absl::MutexLock lock(&mu_);
    if (ms_.empty()) return "no calls";
    std::sort(ms_.begin(), ms_.end());
    auto at = [&](double p) { return ms_[std::min(ms_.size() - 1, size_t(p * ms_.size()))]; };
    char line[160];
    std::snprintf(line, sizeof(line), "calls %6zu  p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms",
                  ms_.size(), at(0.5), at(0.99), ms_.back());
    return line;
  }

 private:
  absl::Mutex mu_;
  std::vector<double> ms_ ABSL_GUARDED_BY(mu_);
};

// Runs `fn` in a loop until `stop`, timing each call into `out`.
std::thread Loop(std::atomic<bool>& stop, Latencies& out, std::function<void(std::mt19937&)> fn,
                 int seed) {
  return std::thread([&stop, &out, fn = std::move(fn), seed] {
    std::mt19937 rng(seed);
    while (!stop) {
      const absl::Time start = absl::Now();
      fn(rng);
      out.Add(absl::ToDoubleMilliseconds(absl::Now() - start));
    }
  });
}

int Run(int records, double seconds, const std::string& dir) {
  const std::string seed_path = dir + "/seed.db";
  std::filesystem::remove(seed_path);
  {
    auto db = SqliteTuningDatabase::Open(seed_path);
    if (!db.ok()) {
      std::fprintf(stderr, "%s\n", std::string(db.status().message()).c_str());
      return 1;
    }
    std::mt19937 rng(1);
    std::uniform_real_distribution<double> ms(1.0, 10.0);
    std::vector<Record> batch;
    for (int i = 0; i < records; ++i) {
      batch.push_back(MakeRecord(i % kTasks, i, ms(rng)));
      if (batch.size() == 5000 || i + 1 == records) {
        if (!(*db)->AddRecords(batch).ok()) return 1;
        batch.clear();
      }
    }
  }
  std::printf("file: %d records over %d tasks; %.0f s per scenario and mode\n", records, kTasks,
              seconds);
  std::atomic<int64_t> next_config{int64_t{1} << 40};
  for (const char* scenario : {"reports", "export"}) {
    for (int connections : {0, 4}) {
      const std::string path = absl::StrCat(dir, "/", scenario, connections, ".db");
      std::filesystem::copy_file(seed_path, path,
                                 std::filesystem::copy_options::overwrite_existing);
      SqliteTuningDatabase::Options options;
      options.read_connections = connections;
      auto opened = SqliteTuningDatabase::Open(path, options);
      if (!opened.ok()) return 1;
      SqliteTuningDatabase& db = **opened;
      std::map<std::string, Latencies> calls;
      std::atomic<bool> stop{false};
      std::atomic<int> failures{0};
      auto report = [&](std::mt19937& rng) {
        std::vector<Record> batch;
        const int task = static_cast<int>(rng() % kTasks);
        for (int i = 0; i < 8; ++i) batch.push_back(MakeRecord(task, next_config++, 5.0));
        if (!db.AddRecords(batch).ok()) ++failures;
      };
      auto best = [&](std::mt19937& rng) {
        if (!db.QueryBest(QueryOf(static_cast<int>(rng() % kTasks))).ok()) ++failures;
      };
      auto task_records = [&](std::mt19937& rng) {
        const BestQuery q = QueryOf(static_cast<int>(rng() % kTasks));
        if (!db.TaskRecordColumns({q.kernel, "", q.problem, q.device_class}).ok()) ++failures;
      };
      auto walk = [&](std::mt19937&) {
        int64_t n = 0;
        if (!db.ForEachRecord([&](const Record&) {
                 ++n;
                 return absl::OkStatus();
               }).ok()) {
          ++failures;
        }
      };
      std::vector<std::thread> threads;
      if (std::string(scenario) == "reports") {
        threads.push_back(Loop(stop, calls["report (8 records)"], report, 1));
        threads.push_back(Loop(stop, calls["report (8 records)"], report, 2));
        threads.push_back(Loop(stop, calls["QueryBest"], best, 3));
        threads.push_back(Loop(stop, calls["QueryBest"], best, 4));
        threads.push_back(Loop(stop, calls["task columns"], task_records, 5));
      } else {
        threads.push_back(Loop(stop, calls["walk every record"], walk, 1));
        threads.push_back(Loop(stop, calls["report (8 records)"], report, 2));
        threads.push_back(Loop(stop, calls["QueryBest"], best, 3));
      }
      absl::SleepFor(absl::Seconds(seconds));
      stop = true;
      for (std::thread& t : threads) t.join();
      std::printf("\n%s, read connections %d%s\n", scenario, connections,
                  connections == 0 ? " (reads through the writer's, under its lock)" : "");
      for (auto& [name, latencies] : calls) {
        std::printf("  %-20s %s\n", name.c_str(), latencies.Summary().c_str());
      }
      if (failures > 0) std::printf("  FAILED CALLS: %d\n", failures.load());
    }
  }
  return 0;
}

}  // namespace
}  // namespace ktune

int main(int argc, char** argv) {
  CLI::App app{"Reads against writes on one SQLite tuning database"};
  int records = 100'000;
  double seconds = 5;
  std::string dir = std::filesystem::temp_directory_path() / "ktune-db-read-bench";
  app.add_option("--records", records, "records in the file")->check(CLI::Range(1, 10'000'000));
  app.add_option("--seconds", seconds, "seconds per scenario and mode")
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--dir", dir, "folder for the database files");
  CLI11_PARSE(app, argc, argv);
  std::filesystem::create_directories(dir);
  return ktune::Run(records, seconds, dir);
}
