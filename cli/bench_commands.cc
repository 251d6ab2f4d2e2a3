// ktune bench: the benchmarks that judge the project. `import` and `space` measure the
// foundation (database import, search-space enumeration); `search`, `kernel` and `service` judge
// the agent, the kernels and the server as those land.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "agent/search_strategy.h"
#include "bench/search_benchmark.h"
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
  const std::string dir = dir_template;
  absl::Cleanup remove_dir = [&dir] {  // on every way out, a failed import's database included
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  };
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
      std::cout << nlohmann::json{{"benchmark", "import"},
                                  {"file", file},
                                  {"records", records},
                                  {"repeats", a.repeats},
                                  {"min_s", t.min_s},
                                  {"median_s", t.median_s},
                                  {"records_per_s", records / t.median_s}}
                       .dump(-1, ' ', false, kReplaceInvalidUtf8)
                << "\n";
    } else {
      std::cout << absl::StrFormat(
          "import %s: %d records, median %.3f s (min %.3f s) over %d, %.0f records/s\n", file,
          records, t.median_s, t.min_s, a.repeats, records / t.median_s);
    }
  }
  return kExitOk;
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
      std::cout << nlohmann::json{{"benchmark", "space"},  {"definition", file},
                                  {"valid", size},         {"unconstrained", unconstrained},
                                  {"repeats", a.repeats},  {"min_s", t.min_s},
                                  {"median_s", t.median_s}}
                       .dump(-1, ' ', false, kReplaceInvalidUtf8)
                << "\n";
    } else {
      std::cout << absl::StrFormat(
          "space %s: %d valid of %.0f, enumerated in median %.1f ms (min %.1f ms)\n", file, size,
          unconstrained, t.median_s * 1e3, t.min_s * 1e3);
    }
  }
  return kExitOk;
}

// Every strategy this build has: PPO and its ablation first (reported every time: trained,
// untrained, no policy (a fixed rule on the same pool), the policy alone (no whole-space ranking,
// not even after stalls), and the policy with the whole-space ranking arms from the start),
// then the others; without LibTorch, the others alone.
std::string DefaultBenchStrategies() {
  const std::vector<std::string> names = StrategyNames();
  if (std::find(names.begin(), names.end(), "ppo") == names.end()) {
    return absl::StrJoin(names, ",");
  }
  return "ppo,ppo-untrained,ppo-nopolicy,ppo-policyonly,ppo-wholespace,random,anneal,genetic,model";
}

struct SearchBenchArgs {
  std::vector<std::string> spaces;
  std::string protocol = "plain";
  PolicyTrainingOptions training;
  int synthetic = 16;
  int training_seeds = 1;
  std::string strategies = DefaultBenchStrategies();
  int64_t budget = 400;
  int seeds = 10;
  int first_seed = 1;
  int batch_size = 8;
  std::vector<std::string> transfer_from;
  std::vector<std::string> train_spaces;
  std::vector<std::string> folds;
  double measure_ms = 0;
  double agent_share = 0.05;
  bool json = false;
  bool quiet = false;
  std::vector<std::string> fold_options_given;  // --train-*, --fold: leave-one-kernel-out's
};

// Across spaces: each strategy's median evaluations to 5% of the optimum, PPO's ablation, and
// PPO against the best other strategy.
void PrintSummary(const SearchBenchSummary& s, const std::string& protocol, std::ostream& out) {
  out << "\nsummary (" << protocol << "): median over spaces of evals_to_5pct\n";
  for (const auto& [name, median] : s.median_evals_to_5pct) {
    out << absl::StrFormat("  %-16s %8.1f\n", name, median);
  }
  if (!s.best_other.empty() && s.spaces > 0) {
    out << absl::StrFormat(
        "  %s / best other strategy (%s): %.2fx; %s at or below it on %d of %d spaces; per-space "
        "ratio, median over spaces: %.2fx\n",
        s.subject, s.best_other, s.ratio, s.subject, s.at_or_below, s.spaces,
        s.space_ratio_median);
    if (std::isfinite(s.ratio_low)) {
      out << absl::StrFormat(
          "  95%% intervals over run seeds (paired bootstrap): ratio %.2fx-%.2fx; at or below on "
          "%d-%d spaces\n",
          s.ratio_low, s.ratio_high, s.at_or_below_low, s.at_or_below_high);
    }
  }
}

int RunSearchBench(const SearchBenchArgs& a) {
  const std::string cmd = "bench search";
  SearchBenchOptions options;
  options.spaces = a.spaces;
  auto protocol = ParseSearchProtocol(a.protocol);
  if (!protocol.ok()) return UsageError(cmd, std::string(protocol.status().message()));
  options.protocol = *protocol;
  options.training = a.training;
  options.synthetic = a.synthetic;
  options.training_seeds = a.training_seeds;
  options.strategies = absl::StrSplit(a.strategies, ',', absl::SkipEmpty());
  if (options.strategies.empty()) return UsageError(cmd, "--strategies names no strategy");
  for (const std::string& s : options.strategies) {
    auto made = MakeStrategy(s);
    if (!made.ok()) return UsageError(cmd, std::string(made.status().message()));
  }
  options.budget = a.budget;
  options.seeds = a.seeds;
  options.first_seed = a.first_seed;
  options.batch_size = a.batch_size;
  options.transfer_from = a.transfer_from;
  options.train_spaces = a.train_spaces;
  options.folds = a.folds;
  if (!a.fold_options_given.empty() && options.protocol != SearchProtocol::kLeaveOneKernelOut) {
    return UsageError(cmd, absl::StrCat(absl::StrJoin(a.fold_options_given, ", "),
                                        ": only --protocol leave-one-kernel-out trains policies "
                                        "(plain uses the shipped one)"));
  }
  options.measure_ms = a.measure_ms;
  options.agent_share = a.agent_share;
  if (!a.quiet) {
    std::cerr << "protocol: " << a.protocol
              << (options.protocol == SearchProtocol::kPlain
                      ? " (PPO starts from its shipped policy, trained on the shared spaces)"
                      : " (each kernel's spaces are tuned by PPO with a policy trained only on "
                        "the other kernels' spaces)")
              << "\n";
  }
  // The files first (a failure), then whether the options fit them (usage: a --fold that names
  // no kernel of the spaces).
  absl::StatusOr<SearchBenchSpaces> loaded = LoadSearchBenchSpaces(options);
  if (!loaded.ok()) return Fail(cmd, loaded.status());
  if (absl::Status fits = CheckSearchBenchOptions(options, *loaded); !fits.ok()) {
    return UsageError(cmd, std::string(fits.message()));
  }
  for (const std::string& w : LeaveOneKernelOutWarnings(options, *loaded)) {
    std::cerr << "ktune bench search: warning: " << w << "\n";
  }
  std::vector<SearchBenchRow> rows;
  absl::Status st = RunSearchBenchmark(
      options, *loaded,
      [&](const SearchBenchRow& row) {
        rows.push_back(row);
        if (a.json) {
          std::cout << SearchBenchRowJson(row) << std::endl;
          // The agent's cost and each run's count are not among the row's keys (the issue fixes
          // them): on stderr.
          if (!a.quiet) {
            // How the runs were made: a script joining files (bench/paired_bootstrap.py)
            // refuses to mix protocols, budgets, or one seed set twice.
            std::cerr << nlohmann::json{{"space", row.space},
                                        {"strategy", row.strategy},
                                        {"protocol", a.protocol},
                                        {"budget", a.budget},
                                        {"first_seed", a.first_seed},
                                        {"seeds", a.seeds},
                                        {"measure_ms", a.measure_ms},
                                        {"agent_ms_per_batch", row.agent_ms_per_batch},
                                        {"agent_share", row.agent_share},
                                        {"evals_to_5pct_runs", row.evals_to_5pct_runs}}
                             .dump(-1, ' ', false, kReplaceInvalidUtf8)
                      << std::endl;
          }
          return;
        }
        if (rows.size() == 1) {  // the header with the first row: a bad file prints no table
          std::cout << absl::StrFormat("%-44s %-14s %8s %8s %8s %8s %8s %8s %6s %8s %6s %9s %7s\n",
                                       "space", "strategy", "@25", "@50", "@100", "@200", "@400",
                                       "to5%", "hit5%", "to2%", "hit2%", "agent ms", "agent%");
        }
        std::cout << absl::StrFormat("%-44s %-14s", row.space, row.strategy);
        for (int64_t column : {25, 50, 100, 200, 400}) {  // "-" past the budget
          auto at = std::find_if(row.best_over_opt.begin(), row.best_over_opt.end(),
                                 [&](const auto& p) { return p.first == column; });
          std::cout << (at == row.best_over_opt.end() ? absl::StrFormat(" %8s", "-")
                                                      : absl::StrFormat(" %8.4f", at->second));
        }
        // The agent's share of the measuring time means nothing where replay takes none.
        std::cout << absl::StrFormat(" %8.1f %6.2f %8.1f %6.2f %9.2f", row.evals_to_5pct,
                                     row.reached_5pct, row.evals_to_2pct, row.reached_2pct,
                                     row.agent_ms_per_batch)
                  << (a.measure_ms > 0 ? absl::StrFormat(" %6.1f%%", 100 * row.agent_share)
                                       : absl::StrFormat(" %7s", "-"))
                  << std::endl;
      },
      [&](const std::string& line) {
        if (!a.quiet) std::cerr << line << "\n";
      });
  if (!st.ok()) return Fail(cmd, st);
  PrintSummary(SummariseSearchBench(rows, "ppo"), a.protocol, a.json ? std::cerr : std::cout);
  return kExitOk;
}

}  // namespace

void RegisterBenchCommands(CLI::App& app, Action* action) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks that judge the project");
  RegisterBenchKernelCommand(*bench, action);
  bench->require_subcommand(1);

  auto import_args = std::make_shared<ImportBenchArgs>();
  CLI::App* imp =
      bench->add_subcommand("import", "Time importing record files into a fresh database");
  imp->add_option("FILES", import_args->files, "Record files")->required();
  imp->add_option("--repeats", import_args->repeats, "Imports per file")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  imp->add_flag("--json", import_args->json, "One JSON line per file");
  imp->callback([=] { *action = [=] { return RunImportBench(*import_args); }; });

  auto space_args = std::make_shared<SpaceBenchArgs>();
  CLI::App* space = bench->add_subcommand("space", "Time enumerating T1 search-space definitions");
  space->add_option("DEFINITIONS", space_args->definitions, "T1 definition files")->required();
  space->add_option("--repeats", space_args->repeats, "Enumerations per file")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  space->add_flag("--json", space_args->json, "One JSON line per file");
  space->callback([=] { *action = [=] { return RunSpaceBench(*space_args); }; });

  auto search_args = std::make_shared<SearchBenchArgs>();
  CLI::App* search = bench->add_subcommand(
      "search", "Compare search strategies on recorded spaces (replayed, many seeds)");
  search->add_option("--space", search_args->spaces, "Recorded space files (T4 / Kernel Tuner)")
      ->required();
  search->add_option("--strategies", search_args->strategies, "Comma-separated strategy names")
      ->capture_default_str();
  search->footer(
      "Columns: @B is the best time within B evaluations over the optimum; to5% and to2% the "
      "median evaluations to within 5% and 2% of the optimum, where a run that never gets there "
      "counts 10x the budget (so a median above the budget means most runs missed); hit5% and "
      "hit2% the share of runs that got there.");
  search->add_option("--budget", search_args->budget, "Measurements per run")
      ->check(CLI::Range(int64_t{1}, int64_t{100000}))
      ->capture_default_str();
  search->add_option("--seeds", search_args->seeds, "Runs per strategy and space")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  search->add_option("--first-seed", search_args->first_seed,
                     "First run seed: runs use seeds --first-seed .. --first-seed + --seeds - 1 "
                     "(a fresh set of runs to confirm a comparison made on seeds 1..N)")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  search->add_option("--batch-size", search_args->batch_size, "Measurements per batch")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  search->add_option("--transfer-from", search_args->transfer_from,
                     "Recorded spaces of the same kernel on other devices for PPO to learn from "
                     "first (a space is never its own source)");
  search
      ->add_option("--measure-ms", search_args->measure_ms,
                   "Make each replayed measurement take this long and limit the agent's time "
                   "to --agent-share of it (0: instant replay, agent time unlimited)")
      ->check(CLI::Range(0.0, 60000.0))
      ->capture_default_str();
  search
      ->add_option("--agent-share", search_args->agent_share,
                   "With --measure-ms: the agent's time as a share of the measurement time")
      ->check(CLI::Range(0.001, 10.0))
      ->capture_default_str();
  search
      ->add_option("--protocol", search_args->protocol,
                   "plain, or leave-one-kernel-out: a policy per kernel, trained on the other "
                   "kernels' spaces only, for every PPO variant that uses one")
      ->check(CLI::IsMember({"plain", "leave-one-kernel-out"}))
      ->capture_default_str();
  search
      ->add_option("--train-seeds", search_args->training_seeds,
                   "leave-one-kernel-out: policies per fold, trained with seeds --train-seed, "
                   "--train-seed + 1, ...; run seed s starts from policy (s - 1) mod N, so a "
                   "row spans the training's randomness too")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  search->add_option("--train-space", search_args->train_spaces,
                     "leave-one-kernel-out: recorded spaces every fold's policy also trains on "
                     "(never tuned), except the fold of their own kernel family");
  search->add_option("--fold", search_args->folds,
                     "leave-one-kernel-out: run only these folds (held-out kernel families, as "
                     "the progress lines name them); each trains as in a full run");
  AddPolicyTrainingOptions(search, "--train-",
                           "leave-one-kernel-out, each fold's policy: ", &search_args->training,
                           &search_args->synthetic);
  search->add_flag("--json", search_args->json,
                   "One JSON line per space and strategy (the summary goes to stderr)");
  search->add_flag("--quiet", search_args->quiet, "No per-run progress on stderr");
  search->callback([=] {
    // Options that only leave-one-kernel-out reads, as given (they were ignored under plain).
    search_args->fold_options_given.clear();
    for (const CLI::Option* o : search->get_options()) {
      const std::string name = o->get_name();
      if (o->count() > 0 && (absl::StartsWith(name, "--train") || name == "--fold")) {
        search_args->fold_options_given.push_back(name);
      }
    }
    *action = [=] { return RunSearchBench(*search_args); };
  });
}

}  // namespace ktune::cli
