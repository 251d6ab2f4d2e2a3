// The search benchmark that judges strategies (`ktune bench search`): every strategy, many seeds,
// on recorded spaces replayed through ReplayMeasurer.
//
// Definitions (from the agent issue): an evaluation is one distinct configuration measured,
// failed ones included; best/opt@B is the median over seeds of (best time within the first B
// evaluations) / (the space's optimum); evals_to_X is the median over seeds of the number of
// evaluations after which the best first came within X of the optimum, a seed that never did
// counting as 10 x budget; reached_X is the fraction of seeds that did.
#ifndef KTUNE_BENCH_SEARCH_BENCHMARK_H_
#define KTUNE_BENCH_SEARCH_BENCHMARK_H_

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/policy_training.h"
#include "agent/search_strategy.h"
#include "db/interchange/record_files.h"
#include "measurer/replay_measurer.h"

namespace ktune {

// Best time within the first `b` evaluations of `trace` (all of it if shorter), divided by
// `optimum`; +infinity if none of them was ok.
double BestOverOptimumAt(const std::vector<Observation>& trace, double optimum, int64_t b);
// 1-based evaluation count after which the best first came within `fraction` of `optimum`
// (time <= optimum * (1 + fraction)), or `never` if it did not.
int64_t EvalsToWithin(const std::vector<Observation>& trace, double optimum, double fraction,
                      int64_t never);
double Median(std::vector<double> values);

// A recorded space loaded for replay: what the benchmark and policy training run on.
// It also serves as a transfer source for other devices of its kernel.
struct ReplaySpace {
  explicit ReplaySpace(RecordedSpace r) : recorded(std::move(r)), measurer(recorded.records) {}
  std::string file, name, kernel;  // name: the file's base name; kernel: from the records
  RecordedSpace recorded;
  ReplayMeasurer measurer;
  std::vector<double> time_ms;  // by point index, as the records say (NaN: failed)
  TrainingSpace AsTrainingSpace();
  TransferSource AsTransferSource() const { return {&recorded.space, &time_ms}; }
};
absl::StatusOr<std::vector<std::unique_ptr<ReplaySpace>>> LoadReplaySpaces(
    const std::vector<std::string>& files);

// Evaluation protocols. kPlain: every strategy as it ships (PPO with its shipped policy, which
// was trained on the shared spaces: do not report it as generalisation). kLeaveOneKernelOut: the
// spaces are grouped by kernel (KernelFamily); for each kernel a policy is trained on the other
// kernels' spaces alone and every PPO variant that uses a policy starts from it there, so no
// space's kernel is ever in its policy's training data.
enum class SearchProtocol { kPlain, kLeaveOneKernelOut };
absl::StatusOr<SearchProtocol> ParseSearchProtocol(const std::string& name);

struct SearchBenchOptions {
  SearchProtocol protocol = SearchProtocol::kPlain;
  PolicyTrainingOptions training;  // the folds' policies (kLeaveOneKernelOut)
  int synthetic = 16;  // synthetic landscapes (synthetic_landscape.h) each fold also trains on
  // kLeaveOneKernelOut: policies per fold, trained with seeds training.seed, training.seed + 1,
  // ... (each with its own synthetic landscapes); run seed s starts from policy (s - 1) % this,
  // so that a row's runs span the training's randomness as well as the search's. One training
  // seed moves the median of a leave-one-kernel-out run by up to 20 evaluations.
  int training_seeds = 1;
  std::vector<std::string> spaces;      // recorded space files
  // kLeaveOneKernelOut: recorded spaces each fold's policy also trains on and no run tunes
  // (more real landscapes to learn from), except in the fold of their own kernel family.
  std::vector<std::string> train_spaces;
  // kLeaveOneKernelOut: the folds to run, by held-out kernel family (empty: every fold). A fold's
  // policy trains on the same spaces either way, so folds run apart (in parallel) give the rows
  // one run gives.
  std::vector<std::string> folds;
  std::vector<std::string> strategies;  // names for MakeStrategy
  int64_t budget = 400;
  int seeds = 10;
  // Run seeds are first_seed .. first_seed + seeds - 1 (a second set of runs, to confirm a
  // comparison made on the first, starts after it; in leave-one-kernel-out run seed s still
  // starts from policy (s - 1) % training_seeds).
  int first_seed = 1;
  int batch_size = 8;
  // Recorded spaces PPO learns from before tuning each target: those of the target's kernel on
  // other devices (a file is never its own source: leave-one-device-out).
  std::vector<std::string> transfer_from;
  // > 0: every replayed measurement takes this long (ms of wall time), and the strategies'
  // own time is limited to agent_share of the measurement time (AgentTimeBudget). 0: replay is
  // instant and the agent's time unlimited (quality per evaluation, as when measurements take
  // seconds: the recorded spaces' compile times alone are 1-3 s per configuration).
  double measure_ms = 0;
  double agent_share = 0.05;
};

struct SearchBenchRow {
  std::string space, strategy;
  int64_t budget = 0;
  int seeds = 0;
  // (B, best/opt@B) for B in 25, 50, 100, 200, 400 up to the budget.
  std::vector<std::pair<int64_t, double>> best_over_opt;
  double evals_to_5pct = 0, reached_5pct = 0, evals_to_2pct = 0, reached_2pct = 0;
  // Each run's evaluations to within 5% (10 x budget if it never came within), in run-seed order
  // (seed 1 first): every strategy of a benchmark runs the same seeds, so two strategies' runs
  // pair up by position, and bench/paired_bootstrap.py resamples them to bound the medians.
  std::vector<double> evals_to_5pct_runs;
  double agent_ms_per_batch = 0;  // median over seeds
  // Median over seeds of the agent's time / (agent + measurement time); meaningful with
  // measure_ms > 0.
  double agent_share = 0;
};

// The files a benchmark reads, loaded once: the tuned spaces (options.spaces), the transfer
// sources among them or beside them (options.transfer_from) and the training-only spaces
// (options.train_spaces).
struct SearchBenchSpaces {
  std::vector<std::unique_ptr<ReplaySpace>> spaces, other_sources, train_only;
  std::vector<const ReplaySpace*> sources;  // options.transfer_from's, in its order
  std::vector<std::string> kernels;         // the tuned spaces' kernel families, in their order
};
// Loads them. Errors are the files' (missing, unreadable, malformed, no records).
absl::StatusOr<SearchBenchSpaces> LoadSearchBenchSpaces(const SearchBenchOptions& options);
// InvalidArgument where the options do not fit the spaces loaded, a mistake of the command
// line rather than of a file: leave-one-kernel-out over the spaces of fewer than two kernels
// (tuned or training-only), a fold (options.folds) that names none of the tuned ones, or a
// --transfer-from space of none of their kernels.
absl::Status CheckSearchBenchOptions(const SearchBenchOptions& options,
                                     const SearchBenchSpaces& loaded);
// Leave-one-kernel-out: a line for each two spaces of different kernels with the same parameter
// names, most likely one kernel under two file names, which would train each other's folds.
std::vector<std::string> LeaveOneKernelOutWarnings(const SearchBenchOptions& options,
                                                   const SearchBenchSpaces& loaded);

// Runs the benchmark on `loaded` (whose replay measurers it uses), after checking the options
// against it (CheckSearchBenchOptions); `on_row` receives each row as soon as it is complete,
// `progress` a line per finished run (may be null).
absl::Status RunSearchBenchmark(const SearchBenchOptions& options, SearchBenchSpaces& loaded,
                                const std::function<void(const SearchBenchRow&)>& on_row,
                                const std::function<void(const std::string&)>& progress);
// Loads the spaces (LoadSearchBenchSpaces) and runs the benchmark on them.
absl::Status RunSearchBenchmark(const SearchBenchOptions& options,
                                const std::function<void(const SearchBenchRow&)>& on_row,
                                const std::function<void(const std::string&)>& progress);

// The row as the one-line JSON object the issue specifies (exactly its keys).
std::string SearchBenchRowJson(const SearchBenchRow& row);

// Across spaces: each strategy's median evals_to_5pct, and for `subject` (PPO) the strategy
// other than PPO's variants with the lowest median, the ratio of the two medians and on how many
// spaces the subject needed at most that strategy's evaluations.
struct SearchBenchSummary {
  std::vector<std::pair<std::string, double>> median_evals_to_5pct;  // in the rows' order
  std::string subject, best_other;
  double ratio = 0;  // subject's median / best_other's
  // The median over spaces of subject's evals_to_5pct / best_other's on the same space: unlike
  // the ratio of medians, one or two spaces near the median cannot swing it far.
  double space_ratio_median = 0;
  int at_or_below = 0, spaces = 0;
  // 95% intervals of `ratio` and `at_or_below` over run seeds: a paired bootstrap (each space's
  // runs resampled with one draw for both strategies, which ran the same seeds), 1,000 resamples
  // with a fixed seed. NaN / -1 unless every compared space has the same number of runs (> 1)
  // of both strategies. They bound the run seeds' randomness on these spaces, not other spaces.
  double ratio_low = std::nan(""), ratio_high = std::nan("");
  int at_or_below_low = -1, at_or_below_high = -1;
};
SearchBenchSummary SummariseSearchBench(const std::vector<SearchBenchRow>& rows,
                                        const std::string& subject);

}  // namespace ktune

#endif  // KTUNE_BENCH_SEARCH_BENCHMARK_H_
