// Drives a strategy against a measurer: the loop behind `ktune tune` and `ktune bench search`.
#ifndef KTUNE_AGENT_TUNING_LOOP_H_
#define KTUNE_AGENT_TUNING_LOOP_H_

#include <functional>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/search_strategy.h"
#include "measurer/measurer.h"

namespace ktune {

struct TuningOptions {
  int64_t budget = 64;  // new measurements, failures included
  int batch_size = 8;
  uint64_t seed = 1;
  std::vector<Observation> prior;  // results already known (AddPriorResults)
  // The strategy's time may be at most this share of the measurement time (AgentTimeBudget,
  // SetTimeAllowance); 0: no limit.
  double max_agent_share = 0;
  // The clock the agent's and the measurer's times are read from (tests give one that the
  // measurer advances).
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

struct TuningOutcome {
  std::vector<Observation> trace;  // every measurement, in order
  double agent_seconds = 0;        // time inside ProposeBatch and NotifyResults
  double measure_seconds = 0;      // time inside Measurer::Measure
  int batches = 0;
};

// Called after each measured batch (to store records, show progress). An error stops the loop.
using BatchCallback = std::function<absl::Status(const std::vector<Configuration>& configs,
                                                 const std::vector<MeasureResult>& results)>;

// Initialises `strategy` with `space`, options.seed and options.prior, then proposes, measures
// and notifies until the strategy's batches run out. Errors of the strategy or the measurer end the
// run.
absl::StatusOr<TuningOutcome> RunTuningLoop(SearchStrategy& strategy, const SearchSpace& space,
                                            Measurer& measurer, const TaskKey& task,
                                            const TuningOptions& options,
                                            const BatchCallback& on_batch = nullptr);

}  // namespace ktune

#endif  // KTUNE_AGENT_TUNING_LOOP_H_
