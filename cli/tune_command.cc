// ktune tune: tune one task on the embedded default (in-process, SQLite file) and print the best
// configuration. Devices: replay:FILE (a recorded space; its kernel and problem come from the
// file). cpu and cuda need the kernel registry and measurers of the kernel issues.
#include <unistd.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "agent/ppo_strategy.h"
#include "agent/tuning_loop.h"
#include "cli/command.h"
#include "db/interchange/record_files.h"
#include "measurer/replay_measurer.h"

namespace ktune::cli {
namespace {

struct TuneArgs {
  std::string db, kernel, problem, device = "cpu", strategy = "ppo", server, dtype = "f32";
  int64_t budget = 64;
  int batch_size = 8;
  uint64_t seed = 1;
  bool json = false;
};

// One line, redrawn in place on a terminal; a line per 10% otherwise.
class Progress {
 public:
  explicit Progress(int64_t total) : total_(total), tty_(isatty(2)) {}
  void Update(int64_t done, double best_ms) {
    if (!tty_ && done * 10 / total_ == last_decile_ && done != total_) return;
    last_decile_ = done * 10 / total_;
    int filled = static_cast<int>(30 * done / total_);
    std::cerr << (tty_ ? "\r" : "") << "[" << std::string(filled, '#')
              << std::string(30 - filled, '.') << "] " << done << "/" << total_;
    if (best_ms > 0) std::cerr << absl::StrFormat("  best %.4f ms", best_ms);
    std::cerr << (tty_ && done != total_ ? "" : "\n") << std::flush;
  }

 private:
  int64_t total_;
  bool tty_;
  int64_t last_decile_ = -1;
};

int RunTune(const TuneArgs& a) {
  const std::string cmd = "tune";
  if (!a.server.empty()) {
    return Fail(cmd, absl::UnimplementedError(
                         "--server needs the tuning server, which is not in this build yet"));
  }
  if (!absl::StartsWith(a.device, "replay:")) {
    return Fail(cmd, absl::UnimplementedError(absl::StrCat(
                         "device '", a.device,
                         "' needs the kernel registry and its measurer, not in this build yet; "
                         "use --device replay:FILE to tune on a recorded space")));
  }
  if (a.budget < 1) return UsageError(cmd, "--budget must be at least 1");
  auto strategy = MakeStrategy(a.strategy);
  if (!strategy.ok()) return UsageError(cmd, std::string(strategy.status().message()));
  std::string file = a.device.substr(strlen("replay:"));
  auto recorded = LoadRecordedSpace(file);
  if (!recorded.ok()) return Fail(cmd, recorded.status());
  if (!a.kernel.empty() && a.kernel != recorded->records.front().kernel) {
    return UsageError(
        cmd, absl::StrCat("--kernel ", a.kernel, " does not match the recorded space's kernel ",
                          recorded->records.front().kernel));
  }
  auto db = OpenDatabase(a.db);
  if (!db.ok()) return Fail(cmd, db.status());

  // PPO warm-starts from the kernel's saved policy and saves what it learned.
  auto* ppo = dynamic_cast<PpoStrategy*>(strategy->get());
  const std::string checkpoint =
      PpoStrategy::CheckpointKey(recorded->records.front().kernel, recorded->space);
  bool warm = false;
  if (ppo != nullptr) {
    auto saved = (*db)->LoadCheckpoint(checkpoint);
    if (saved.ok()) {
      ppo->LoadPolicy(*saved);
      warm = true;
    } else if (!absl::IsNotFound(saved.status())) {
      return Fail(cmd, saved.status());
    }
  }

  ReplayMeasurer measurer(recorded->records);
  const Record& first = recorded->records.front();
  TaskKey task{first.kernel, first.kernel_version, first.problem, measurer.device().device_class};
  Progress progress(std::max<int64_t>(1, std::min<int64_t>(a.budget, recorded->space.size())));
  int64_t done = 0, stored = 0;
  double best_ms = 0;
  Record best;
  auto on_batch = [&](const std::vector<Configuration>& configs,
                      const std::vector<MeasureResult>& results) -> absl::Status {
    std::vector<Record> records;
    int64_t now = absl::ToUnixMicros(absl::Now());
    for (size_t i = 0; i < configs.size(); ++i) {
      Record r = ToRecord(task, measurer.device(), configs[i], results[i], "embedded-replay");
      r.measured_at_us = now;
      if (r.time_ms && (best_ms == 0 || *r.time_ms < best_ms)) {
        best_ms = *r.time_ms;
        best = r;
      }
      records.push_back(std::move(r));
    }
    auto added = (*db)->AddRecords(records);  // committed before the next batch is proposed
    if (!added.ok()) return added.status();
    stored += *added;
    done += static_cast<int64_t>(configs.size());
    if (!a.json) progress.Update(done, best_ms);
    return absl::OkStatus();
  };
  // What the database already holds for this task is never measured again: it seeds the search
  // and the budget buys new measurements only.
  TuningOptions options{a.budget, a.batch_size, a.seed};
  auto known = (*db)->TaskRecords(task);
  if (!known.ok()) return Fail(cmd, known.status());
  for (const Record& r : *known) {
    auto point = recorded->space.ToPoint(r.config);
    if (!point.ok()) continue;  // another version's parameters
    bool ok = r.status == MeasurementStatus::kOk;
    options.prior.push_back({*point, ok, ok ? *r.time_ms : 0.0});
    if (ok && (best_ms == 0 || *r.time_ms < best_ms)) {
      best_ms = *r.time_ms;
      best = r;
    }
  }
  absl::Time start = absl::Now();
  auto outcome =
      RunTuningLoop(**strategy, recorded->space, measurer, task, options, on_batch);
  if (!outcome.ok()) return Fail(cmd, outcome.status());
  double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (ppo != nullptr) {
    auto blob = ppo->SavePolicy();
    absl::Status saved = blob.ok() ? (*db)->SaveCheckpoint(checkpoint, *blob) : blob.status();
    if (!saved.ok()) return Fail(cmd, saved);
  }
  if (best_ms == 0) {
    return Fail(cmd, absl::NotFoundError(absl::StrCat("no configuration measured ok in ", done)));
  }
  const double optimum = measurer.optimum_ms();
  if (a.json) {
    std::cout << nlohmann::json{{"kernel", task.kernel},
                                {"device", task.device_class},
                                {"strategy", a.strategy},
                                {"measurements", done},
                                {"records_stored", stored},
                                {"seconds", seconds},
                                {"agent_seconds", outcome->agent_seconds},
                                {"warm_started", warm},
                                {"prior_records", options.prior.size()},
                                {"best", nlohmann::json::parse(RecordToJsonLine(best))},
                                {"space_optimum_ms", optimum},
                                {"best_over_optimum", best_ms / optimum}}
                     .dump()
              << "\n";
    return kExitOk;
  }
  std::cout << task.kernel << " on " << task.device_class << " (replayed from " << file << "), "
            << a.strategy << ", " << done << " measurements in "
            << absl::StrFormat("%.1f s (agent %.1f s)", seconds, outcome->agent_seconds)
            << (warm ? ", policy warm-started from " + checkpoint : "")
            << (options.prior.empty() ? ""
                                      : absl::StrCat(", ", options.prior.size(),
                                                     " earlier measurements reused"))
            << "\n"
            << absl::StrFormat("  best      %.4f ms  (%.3fx the recorded optimum %.4f ms)\n",
                               best_ms, best_ms / optimum, optimum)
            << "  config    " << FormatParamMapAssignments(best.config) << "\n"
            << "  stored    " << stored << " records in " << a.db << "\n";
  return kExitOk;
}

}  // namespace

void RegisterTuneCommand(CLI::App& app, Action* action) {
  auto a = std::make_shared<TuneArgs>();
  CLI::App* tune = app.add_subcommand("tune", "Tune one task and print the best configuration");
  AddDbOption(tune, &a->db);
  tune->add_option("--kernel", a->kernel, "Kernel from the registry (replay: from the file)");
  tune->add_option("--problem", a->problem, "Problem, e.g. M=1024,N=1024,K=1024");
  tune->add_option("--dtype", a->dtype, "Data type")->capture_default_str();
  tune->add_option("--device", a->device, "cpu, cuda[:N] or replay:FILE")->capture_default_str();
  tune->add_option("--budget", a->budget, "Measurements, failures included")->capture_default_str();
  tune->add_option("--batch-size", a->batch_size, "Measurements per batch")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  tune->add_option("--strategy", a->strategy, "ppo, random, anneal, genetic or model")
      ->capture_default_str();
  tune->add_option("--seed", a->seed, "Random seed")->capture_default_str();
  tune->add_option("--server", a->server, "Use a running server instead of the embedded one");
  tune->add_flag("--json", a->json, "Print the result as JSON");
  tune->callback([=] { *action = [=] { return RunTune(*a); }; });
}

}  // namespace ktune::cli
