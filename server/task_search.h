// One task's search inside a job: the part of the scheduler that drives the strategy, and the
// only tuning loop of ktune (`ktune tune` runs it through an in-process server too).
//
// The search, in order:
// 1. Every record the database holds for the task (any job, any earlier tune) that is a valid
//    point of the space becomes a prior result: never measured again, and the strategy starts
//    from it. The budget buys new measurements only. But failures that may be the worker's doing
//    (compile_error, runtime_error, timeout: a broken toolchain or image fails every candidate)
//    measured before the task's first record that ran (ok, too_inaccurate, wrong_result) are
//    not prior results, and may be measured again; from then on they are taken to be the
//    configurations' own. A point with an ok record is ok, whatever failed there before. Records
//    from before a regression (stale: they no longer answer queries) are the strategy's transfer
//    source instead, the landscape of the environment before the change: the strategy learns from
//    them (PPO's prior model ranks its first batches from them, and weighs them by how far the new
//    results agree), but may measure any of them again (strategies without transfer sources, all
//    but PPO, search without them). As prior results they could not be: a retuning search then
//    never re-measured the old second-best configurations, which a regression of the best
//    leaves as the new best, and answered with a slower one found elsewhere.
// 2. A registry kernel's untuned default configuration is the first batch (of one), unless the
//    database already has it (once per task, and once more after a regression, where the stale
//    records are the transfer source): speedups are reported against it. It counts
//    against the budget and becomes a prior result of the strategy. The job's initial
//    configurations (JobSpec.initial_configs) that the records do not hold come before it in
//    that batch, and a retuning job's re-verified ones after it.
// 3. The strategy loads what it learned before (PPO's policy, by its CheckpointKey) from the
//    database, is initialised with the seed and the prior results, and proposes batches of
//    batch_size until the budget is spent or the space exhausted.
// 4. Then it is finished (PostTuning) and, if it learned from at least one batch, its checkpoint
//    is saved to the database.
// Another job may tune the same task meanwhile (two fleet jobs, a `ktune tune` beside one). A
// point of a batch that a record stored since this search began holds (the other job measured
// it) is answered from that record, not measured again, and its result goes to the strategy with
// the measured ones; only the rest is handed out (a batch all answered is followed by the next).
// The budget buys this search's own measurements.
//
// The scheduler keeps the queue and the leases; it calls NextBatch when the previous batch's
// results were all given to Complete. Not thread-safe: the scheduler lets one thread at a time
// call it (TaskRun::agent_busy), without holding its own lock.
#ifndef KTUNE_SERVER_TASK_SEARCH_H_
#define KTUNE_SERVER_TASK_SEARCH_H_

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/search_strategy.h"
#include "agent/time_budget.h"
#include "db/tuning_database.h"
#include "server/task_spaces.h"

namespace ktune {

// The largest space whose stale records become a transfer source: one double per point.
inline constexpr int64_t kMaxStaleSourcePoints = int64_t{1} << 22;

class TaskSearch {
 public:
  struct Options {
    std::string strategy = DefaultStrategyName();
    uint64_t seed = 1;
    int batch_size = 8;
    int threads = 0;  // > 0: registry CPU kernels tune with exactly this many threads
    // The strategy's own time may be at most this share of the time its batches spend being
    // measured (from NextBatch to Complete: queue, lease, measurement, report), as
    // AgentTimeBudget accounts it; 0: no limit. PPO learns less often when measurements are
    // cheap (agent/README.md).
    double max_agent_share = 0.05;
    // The strategy's checkpoint (PPO's policy) is saved this often between batches, and when
    // the search finishes.
    absl::Duration checkpoint_every = absl::Seconds(30);
    StrategyFactory make_strategy;  // unset: MakeStrategy
    // Configurations measured again first, in the first batch (with the default configuration
    // when it is unknown), before the strategy proposes anything: a retuning job re-verifies the
    // old best alongside the new candidates. Those outside the task's space are skipped.
    std::vector<Configuration> reverify;
    // Configurations measured first, before those, unless the task's records hold them (a
    // job's JobSpec.initial_configs: one known to be good, to start from), completed and read
    // as InitialPoints says. Those that are not points of the task's space are skipped, logged.
    std::vector<Configuration> initial;
    // The job's accuracy budget: earlier records whose error is above it, or unknown, count as
    // failures for the strategy (as this job's own results would). Unset: none.
    std::optional<double> max_rel_error;
  };

  // Prepares the search of canonical `task` as measured by workers with `cores` cores, with
  // `budget_left` (>= 1) new measurements to spend. `db` must outlive the search. Errors: the
  // task has no space for such workers (InvalidArgument, NotFound), an unknown strategy, or the
  // database's.
  // `initial` as points of `space`, each completed from `default_config` (the parameters it
  // does not give: "start from" a few tile sizes) and with its numbers taken as the space's (4.0
  // for an integer parameter is 4); a configuration that is not one has no point, and why.
  static std::vector<std::pair<std::optional<Point>, std::string>> InitialPoints(
      const SearchSpace& space, const std::optional<Configuration>& default_config,
      const std::vector<Configuration>& initial);

  static absl::StatusOr<std::unique_ptr<TaskSearch>> Create(TuningDatabase* db,
                                                            const TaskSpaces& spaces,
                                                            const TaskKey& task,
                                                            const Options& options, int cores,
                                                            int64_t budget_left);

  // The next batch to measure (at most the budget left); call once the previous batch's results
  // went to Complete. Empty when the search is over; the strategy was then finished.
  absl::StatusOr<std::vector<Point>> NextBatch();
  // The results of the last batch, one per point, in order. The search finishes when they spend
  // the budget.
  absl::Status Complete(const std::vector<Observation>& results);
  // `n` measurements of the task stored for this search's job outside its batches (a report of
  // a lease from before a server restart): they take that much of the budget left, so that the
  // search finishes (Finish) when the batch out now spends the rest.
  void Spend(int64_t n) { budget_left_ = std::max<int64_t>(0, budget_left_ - n); }

  std::shared_ptr<const SearchSpace> space() const { return space_; }
  // Points of this search's batches that other records answered (see the top of this file).
  int64_t answered_by_others() const { return answered_by_others_; }
  // For progress reports and tests.
  int64_t prior_records() const { return prior_records_; }
  bool warm_started() const { return warm_started_; }
  double agent_seconds() const { return agent_seconds_; }  // inside the strategy's calls
  // The job's initial configurations this task skipped, each "MR=99 (why)".
  const std::vector<std::string>& skipped_initial() const { return skipped_initial_; }
  const AgentTimeBudget& time_budget() const { return time_budget_; }

 private:
  TaskSearch() = default;
  absl::Status StartStrategy();
  absl::Status Finish();
  // Saves the strategy's checkpoint, unless it has learned nothing to save.
  absl::Status SaveCheckpoint();
  // Sets proposed_ to `batch` and answered_ to the results that the records `newer` (indices
  // into `now`, the task's columns: those stored since Create) hold for its points; returns the
  // points left to measure, in order.
  std::vector<Point> AnswerFromNewRecords(std::vector<Point> batch, const TaskColumns& now,
                                          const std::vector<size_t>& newer);
  // The whole batch's results: answered_ with `measured` (the rest, in order) filled in.
  absl::StatusOr<std::vector<Observation>> MergeResults(const std::vector<Observation>& measured);
  // Hands `results` of the current batch to the strategy (or, for the first batch, the prior).
  absl::Status Deliver(const std::vector<Observation>& results);

  TuningDatabase* db_ = nullptr;
  TaskKey task_;
  Options options_;
  std::shared_ptr<const SearchSpace> space_;
  std::unique_ptr<SearchStrategy> strategy_;
  std::vector<Observation> prior_;      // handed to the strategy when it starts
  // The stale records' times by point index (NaN: none), the strategy's transfer source; empty
  // when there are none, or the space has more than kMaxStaleSourcePoints points (the stale
  // records are then prior results at points not measured since, as before).
  std::vector<double> stale_times_;
  bool has_stale_source_ = false;
  std::vector<Point> first_points_;  // to measure first: the default, then `reverify`
  bool default_batch_ = false;       // the current batch is first_points_
  bool started_ = false, finished_ = false;
  int64_t budget_left_ = 0;
  int64_t batches_ = 0;  // strategy batches completed
  std::string checkpoint_;
  absl::Time last_checkpoint_ = absl::Now();
  int64_t prior_records_ = 0;
  bool warm_started_ = false;
  double agent_seconds_ = 0;
  AgentTimeBudget time_budget_{0};
  absl::Time batch_out_at_;  // when the current batch was handed out
  // The task's record handles when the search was created: any other record is newer.
  absl::flat_hash_set<int64_t> handles_at_start_;
  std::vector<Point> proposed_;                       // the current batch, whole
  std::vector<std::optional<Observation>> answered_;  // per point of proposed_
  int64_t answered_by_others_ = 0;
  std::vector<std::string> skipped_initial_;
};

}  // namespace ktune

#endif  // KTUNE_SERVER_TASK_SEARCH_H_
