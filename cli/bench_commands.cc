// ktune bench: the benchmarks that judge the project. `import` and `space` measure the
// foundation (database import, search-space enumeration); `search`, `kernel` and `service` judge
// the agent, the kernels and the server as those land.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "cli/command.h"
#include "db/interchange/record_files.h"
#include "kernels/t1_definition.h"

namespace ktune::cli {
namespace {

struct Timing {
  double min_s = 0, median_s = 0;
};

Timing Summarise(std::vector<double> seconds) {
  std::sort(seconds.begin(), seconds.end());
  return {seconds.front(), seconds[seconds.size() / 2]};
}

struct ImportBenchArgs {
  std::vector<std::string> files;
  int repeats = 3;
  bool json = false;
};

// Each repeat imports into a fresh SQLite file (WAL, synchronous=FULL), as `ktune db import` does.
int RunImportBench(const ImportBenchArgs& a) {
  const std::string cmd = "bench import";
  char dir_template[] = "/tmp/ktune-bench-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return Fail(cmd, absl::UnavailableError("mkdtemp failed"));
  std::string dir = dir_template;
  int rc = kExitOk;
  for (const std::string& file : a.files) {
    std::vector<double> seconds;
    int64_t records = 0;
    for (int i = 0; i < a.repeats; ++i) {
      std::string path = absl::StrCat(dir, "/bench-", i, ".db");
      absl::Time start = absl::Now();
      auto db = SqliteTuningDatabase::Open(path);
      if (!db.ok()) return Fail(cmd, db.status());
      auto summary = ImportRecordFile(**db, file, {});
      if (!summary.ok()) return Fail(cmd, summary.status());
      seconds.push_back(absl::ToDoubleSeconds(absl::Now() - start));
      records = summary->records_added;
      db->reset();
      for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
    }
    Timing t = Summarise(seconds);
    if (a.json) {
      std::cout << nlohmann::json{{"benchmark", "import"}, {"file", file}, {"records", records},
                                  {"repeats", a.repeats}, {"min_s", t.min_s},
                                  {"median_s", t.median_s},
                                  {"records_per_s", records / t.median_s}}
                       .dump()
                << "\n";
    } else {
      std::cout << absl::StrFormat("import %s: %d records, median %.3f s (min %.3f s) over %d, %.0f records/s\n",
                                   file, records, t.median_s, t.min_s, a.repeats, records / t.median_s);
    }
  }
  rmdir(dir.c_str());
  return rc;
}

struct SpaceBenchArgs {
  std::vector<std::string> definitions;
  int repeats = 5;
  bool json = false;
};

int RunSpaceBench(const SpaceBenchArgs& a) {
  for (const std::string& file : a.definitions) {
    std::vector<double> seconds;
    int64_t size = 0;
    double unconstrained = 0;
    for (int i = 0; i < a.repeats; ++i) {
      absl::Time start = absl::Now();
      auto def = LoadT1Definition(file);
      if (!def.ok()) return Fail("bench space", def.status());
      seconds.push_back(absl::ToDoubleSeconds(absl::Now() - start));
      size = def->space.size();
      unconstrained = def->space.unconstrained_size();
    }
    Timing t = Summarise(seconds);
    if (a.json) {
      std::cout << nlohmann::json{{"benchmark", "space"}, {"definition", file},
                                  {"valid", size}, {"unconstrained", unconstrained},
                                  {"repeats", a.repeats}, {"min_s", t.min_s},
                                  {"median_s", t.median_s}}
                       .dump()
                << "\n";
    } else {
      std::cout << absl::StrFormat("space %s: %d valid of %.0f, enumerated in median %.1f ms (min %.1f ms)\n",
                                   file, size, unconstrained, t.median_s * 1e3, t.min_s * 1e3);
    }
  }
  return kExitOk;
}

}  // namespace

void RegisterBenchCommands(CLI::App& app, Action* action) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks that judge the project");
  bench->require_subcommand(1);

  auto import_args = std::make_shared<ImportBenchArgs>();
  CLI::App* imp = bench->add_subcommand("import", "Time importing record files into a fresh database");
  imp->add_option("FILES", import_args->files, "Record files")->required();
  imp->add_option("--repeats", import_args->repeats, "Imports per file")->check(CLI::Range(1, 100))
      ->capture_default_str();
  imp->add_flag("--json", import_args->json, "One JSON line per file");
  imp->callback([=] { *action = [=] { return RunImportBench(*import_args); }; });

  auto space_args = std::make_shared<SpaceBenchArgs>();
  CLI::App* space = bench->add_subcommand("space", "Time enumerating T1 search-space definitions");
  space->add_option("DEFINITIONS", space_args->definitions, "T1 definition files")->required();
  space->add_option("--repeats", space_args->repeats, "Enumerations per file")
      ->check(CLI::Range(1, 100))->capture_default_str();
  space->add_flag("--json", space_args->json, "One JSON line per file");
  space->callback([=] { *action = [=] { return RunSpaceBench(*space_args); }; });
}

}  // namespace ktune::cli
