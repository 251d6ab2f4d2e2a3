#include "cli/tune_session.h"

#include <unistd.h>

#include <iostream>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "agent/tuning_loop.h"
#include "common/status_macros.h"

namespace ktune::cli {

Progress::Progress(int64_t total, std::string label)
    : total_(std::max<int64_t>(1, total)), label_(std::move(label)), tty_(isatty(2)) {}

void Progress::Update(int64_t done, double best_ms) {
  if (!tty_ && done * 10 / total_ == last_decile_ && done != total_) return;
  last_decile_ = done * 10 / total_;
  const int filled = static_cast<int>(30 * std::min(done, total_) / total_);
  std::cerr << (tty_ ? "\r" : "") << label_ << "[" << std::string(filled, '#')
            << std::string(30 - filled, '.') << "] " << done << "/" << total_;
  if (best_ms > 0) std::cerr << absl::StrFormat("  best %.4f ms", best_ms);
  std::cerr << (tty_ && done < total_ ? "" : "\n") << std::flush;
}

Throughput ThroughputOf(const TuneTarget& t, const Record& r) {
  Throughput out;
  if (t.flops <= 0 || !r.time_ms || *r.time_ms <= 0) return out;
  out.gflops = t.flops / (*r.time_ms * 1e6);
  const double peak = t.peak_gflops_per_thread * std::min(ThreadsOf(r.config), t.cores);
  if (peak > 0) out.percent_of_peak = 100 * out.gflops / peak;
  return out;
}

absl::StatusOr<TuneSummary> RunTuneSession(TuneTarget& t, TuningDatabase& db,
                                           const TuneSessionOptions& o) {
  KTUNE_ASSIGN_OR_RETURN(std::unique_ptr<SearchStrategy> strategy, MakeStrategy(o.strategy));
  TuneSummary summary;
  // A learning strategy (PPO) warm-starts from what it saved for the kernel and saves what it
  // learned.
  summary.checkpoint = strategy->CheckpointKey(t.task.kernel, *t.space);
  if (!summary.checkpoint.empty()) {
    absl::StatusOr<std::string> saved = db.LoadCheckpoint(summary.checkpoint);
    if (saved.ok()) {
      strategy->LoadCheckpoint(*saved);
      summary.warm_started = true;
    } else if (!absl::IsNotFound(saved.status())) {
      return saved.status();
    }
  }
  auto note = [&](const Record& r) {
    if (r.time_ms && (!summary.best || *r.time_ms < *summary.best->time_ms)) summary.best = r;
    if (t.default_config && r.config == *t.default_config) summary.default_record = r;
  };
  auto store = [&](const std::vector<Configuration>& configs,
                   const std::vector<MeasureResult>& results) -> absl::Status {
    std::vector<Record> records;
    const int64_t now = absl::ToUnixMicros(absl::Now());
    for (size_t i = 0; i < configs.size(); ++i) {
      Record r = ToRecord(t.task, t.measurer->device(), configs[i], results[i], t.worker_id);
      r.measured_at_us = now;
      if (r.status != MeasurementStatus::kOk) {
        ++summary.failures[std::string(StatusName(r.status))];
      }
      note(r);
      records.push_back(std::move(r));
    }
    KTUNE_ASSIGN_OR_RETURN(int64_t added, db.AddRecords(records));  // committed first
    summary.records_stored += added;
    summary.measurements += static_cast<int64_t>(configs.size());
    if (o.on_progress) {
      o.on_progress(summary.measurements, summary.best ? *summary.best->time_ms : 0);
    }
    return absl::OkStatus();
  };

  // What the database already holds for this task is never measured again: it seeds the search
  // and the budget buys new measurements only.
  TuningOptions options{o.budget, o.batch_size, o.seed};
  KTUNE_ASSIGN_OR_RETURN(std::vector<Record> known, db.TaskRecords(t.task));
  for (const Record& r : known) {
    absl::StatusOr<Point> point = t.space->ToPoint(r.config);
    if (!point.ok() || !t.space->IsValid(*point)) continue;  // another version or space
    const bool ok = r.status == MeasurementStatus::kOk;
    options.prior.push_back({*point, ok, ok ? *r.time_ms : 0.0});
    note(r);
  }
  summary.reused = options.prior.size();
  const absl::Time start = absl::Now();
  // The untuned default is measured first (once per task): speedups are reported against it.
  if (t.default_config && !summary.default_record && options.budget > 0) {
    KTUNE_ASSIGN_OR_RETURN(std::vector<MeasureResult> results,
                           t.measurer->Measure(t.task, {*t.default_config}));
    KTUNE_RETURN_IF_ERROR(store({*t.default_config}, results));
    if (absl::StatusOr<Point> point = t.space->ToPoint(*t.default_config); point.ok()) {
      const MeasureResult& r = results.front();
      options.prior.push_back({*point, r.status == MeasurementStatus::kOk, r.time_ms.value_or(0)});
    }
    --options.budget;
  }
  if (options.budget > 0) {
    KTUNE_ASSIGN_OR_RETURN(TuningOutcome outcome,
                           RunTuningLoop(*strategy, *t.space, *t.measurer, t.task, options, store));
    summary.agent_seconds = outcome.agent_seconds;
    if (!summary.checkpoint.empty() && outcome.batches > 0) {
      KTUNE_ASSIGN_OR_RETURN(std::string blob, strategy->SaveCheckpoint());
      KTUNE_RETURN_IF_ERROR(db.SaveCheckpoint(summary.checkpoint, blob));
    }
  }
  summary.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return summary;
}

}  // namespace ktune::cli
