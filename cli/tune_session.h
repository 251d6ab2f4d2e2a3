// One tuning session of the embedded default: the task's earlier records are reused, the
// kernel's default configuration is measured first (once per task), then a strategy spends the
// budget; every batch is committed to the database before the next is proposed. Used by
// `ktune tune` and `ktune bench kernel`.
#ifndef KTUNE_CLI_TUNE_SESSION_H_
#define KTUNE_CLI_TUNE_SESSION_H_

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "cli/tune_target.h"
#include "db/tuning_database.h"

namespace ktune::cli {

struct TuneSessionOptions {
  std::string strategy = "ppo";
  int64_t budget = 64;  // new measurements, the default configuration's included
  int batch_size = 8;
  uint64_t seed = 1;
  // Called after each committed batch with (measurements so far, best time so far or 0).
  std::function<void(int64_t, double)> on_progress;
};

struct TuneSummary {
  std::optional<Record> best;            // fastest ok record of the task, old or new
  std::optional<Record> default_record;  // the default configuration's record
  int64_t measurements = 0;              // new ones
  int64_t records_stored = 0;
  std::map<std::string, int64_t> failures;  // new failed measurements by status name
  double seconds = 0;
  double agent_seconds = 0;
  bool warm_started = false;  // PPO started from a saved policy
  std::string checkpoint;     // the policy's key in the database
  size_t reused = 0;          // earlier records of the task used as prior results
};

absl::StatusOr<TuneSummary> RunTuneSession(TuneTarget& target, TuningDatabase& db,
                                           const TuneSessionOptions& options);

// GFLOP/s of a record and its percent of the machine's peak at the record's thread count; zeros
// when the target has no FLOP count or the record no time.
struct Throughput {
  double gflops = 0;
  double percent_of_peak = 0;
};
Throughput ThroughputOf(const TuneTarget& target, const Record& record);

// One line on stderr, redrawn in place on a terminal; a line per 10% otherwise.
class Progress {
 public:
  explicit Progress(int64_t total, std::string label = "");
  void Update(int64_t done, double best_ms);

 private:
  int64_t total_;
  std::string label_;
  bool tty_;
  int64_t last_decile_ = -1;
};

}  // namespace ktune::cli

#endif  // KTUNE_CLI_TUNE_SESSION_H_
