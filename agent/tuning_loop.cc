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
  // The budget keeps the accounts: agent time (the strategy's calls) and measuring time.
  AgentTimeBudget time_budget(options.max_agent_share);
  const std::function<absl::Time()>& now = options.now;
  auto ms_since = [&now](absl::Time start) { return absl::ToDoubleMilliseconds(now() - start); };
  absl::Time start = now();
  KTUNE_RETURN_IF_ERROR(strategy.Initialize(space, options.seed));
  KTUNE_RETURN_IF_ERROR(strategy.AddPriorResults(options.prior));
  KTUNE_RETURN_IF_ERROR(strategy.PreTuning(options.budget, options.batch_size));
  time_budget.AddAgentMs(ms_since(start));
  while (true) {
    start = now();
    strategy.SetTimeAllowance(time_budget.AllowanceMs());
    KTUNE_ASSIGN_OR_RETURN(std::vector<Point> batch, strategy.ProposeBatch());
    time_budget.AddAgentMs(ms_since(start));
    if (batch.empty()) break;
    std::vector<Configuration> configs;
    configs.reserve(batch.size());
    for (const Point& p : batch) configs.push_back(space.ToConfiguration(p));
    start = now();
    KTUNE_ASSIGN_OR_RETURN(std::vector<MeasureResult> results, measurer.Measure(task, configs));
    time_budget.AddMeasurementMs(ms_since(start));
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
    start = now();
    KTUNE_RETURN_IF_ERROR(strategy.NotifyResults(observations));
    time_budget.AddAgentMs(ms_since(start));
    outcome.trace.insert(outcome.trace.end(), observations.begin(), observations.end());
    ++outcome.batches;
  }
  start = now();
  strategy.PostTuning();  // the agent's work too (PPO's last policy update)
  time_budget.AddAgentMs(ms_since(start));
  outcome.agent_seconds = time_budget.agent_ms() / 1e3;
  outcome.measure_seconds = time_budget.measured_ms() / 1e3;
  return outcome;
}

}  // namespace ktune
