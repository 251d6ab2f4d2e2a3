#include "agent/tuning_loop.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/time_budget.h"
#include "common/status_macros.h"

namespace ktune {

absl::StatusOr<TuningOutcome> RunTuningLoop(SearchStrategy& strategy, const SearchSpace& space,
                                            Measurer& measurer, const TaskKey& task,
                                            const TuningOptions& options,
                                            const BatchCallback& on_batch) {
  TuningOutcome outcome;
  absl::Time t0 = absl::Now();
  KTUNE_RETURN_IF_ERROR(strategy.Initialize(space, options.seed));
  KTUNE_RETURN_IF_ERROR(strategy.AddPriorResults(options.prior));
  KTUNE_RETURN_IF_ERROR(strategy.PreTuning(options.budget, options.batch_size));
  outcome.agent_seconds += absl::ToDoubleSeconds(absl::Now() - t0);
  AgentTimeBudget time_budget(options.max_agent_share);
  time_budget.AddAgentMs(1e3 * outcome.agent_seconds);
  while (true) {
    absl::Time a = absl::Now();
    strategy.SetTimeAllowance(time_budget.AllowanceMs());
    KTUNE_ASSIGN_OR_RETURN(std::vector<Point> batch, strategy.ProposeBatch());
    const double propose_s = absl::ToDoubleSeconds(absl::Now() - a);
    outcome.agent_seconds += propose_s;
    time_budget.AddAgentMs(1e3 * propose_s);
    if (batch.empty()) break;
    std::vector<Configuration> configs;
    configs.reserve(batch.size());
    for (const Point& p : batch) configs.push_back(space.ToConfiguration(p));
    absl::Time m = absl::Now();
    KTUNE_ASSIGN_OR_RETURN(std::vector<MeasureResult> results, measurer.Measure(task, configs));
    const double measure_s = absl::ToDoubleSeconds(absl::Now() - m);
    outcome.measure_seconds += measure_s;
    time_budget.AddMeasurementMs(1e3 * measure_s);
    if (results.size() != batch.size()) {
      return absl::InternalError(absl::StrCat("measurer returned ", results.size(), " results for ",
                                              batch.size(), " candidates"));
    }
    std::vector<Observation> observations;
    for (size_t i = 0; i < batch.size(); ++i) {
      bool ok = results[i].status == MeasurementStatus::kOk && results[i].time_ms.has_value();
      observations.push_back({batch[i], ok, ok ? *results[i].time_ms : 0.0});
    }
    if (on_batch) KTUNE_RETURN_IF_ERROR(on_batch(configs, results));
    absl::Time n = absl::Now();
    KTUNE_RETURN_IF_ERROR(strategy.NotifyResults(observations));
    const double notify_s = absl::ToDoubleSeconds(absl::Now() - n);
    outcome.agent_seconds += notify_s;
    time_budget.AddAgentMs(1e3 * notify_s);
    outcome.trace.insert(outcome.trace.end(), observations.begin(), observations.end());
    ++outcome.batches;
  }
  strategy.PostTuning();
  return outcome;
}

}  // namespace ktune
