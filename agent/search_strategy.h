// Search strategies: what to measure next.
//
// Lifecycle (as TVM MetaSchedule's): Initialize once with the space and a seed -> optionally
// AddPriorResults (what the database already holds for the task) -> PreTuning with the budget and
// batch size -> ProposeBatch / NotifyResults, repeatedly, until ProposeBatch returns an empty
// batch -> PostTuning.
//
// Contract, for every strategy (tests/agent/strategy_contract_test.cc checks it):
// - proposals are valid points of the space, never one proposed before nor a prior result;
// - the number proposed in total is exactly min(budget, points left): batches of batch_size, the
//   last one smaller (20 in batches of 7: 7, 7, 6);
// - the same seed gives the same proposals, given the same results;
// - failed measurements are results too (ok = false), and the strategy goes on.
// Not thread-safe: one tuning loop drives one strategy.
#ifndef KTUNE_AGENT_SEARCH_STRATEGY_H_
#define KTUNE_AGENT_SEARCH_STRATEGY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/search_space.h"

namespace ktune {

// The outcome of measuring one point, as a strategy sees it.
struct Observation {
  Point point;
  bool ok = false;     // false for every failure status
  double time_ms = 0;  // meaningful only when ok
};

// A recorded landscape of the same kernel on another device: the valid points of `space` with
// their measured times (NaN for failures). Both must outlive the strategy.
struct TransferSource {
  const SearchSpace* space = nullptr;
  const std::vector<double>* time_ms = nullptr;  // indexed like space->PointAt(i)
};

class SearchStrategy {
 public:
  virtual ~SearchStrategy() = default;

  // Starts a run (forgetting any previous one). `space` must outlive the strategy.
  // InvalidArgument for an empty space.
  virtual absl::Status Initialize(const SearchSpace& space, uint64_t seed) = 0;
  // Results measured before this run (e.g. earlier runs of the task): they are never proposed
  // again and inform the search, and do not count against the budget. Points outside the space
  // are InvalidArgument. Call between Initialize and PreTuning.
  virtual absl::Status AddPriorResults(const std::vector<Observation>& results) = 0;
  // InvalidArgument unless budget >= 1 and batch_size >= 1.
  virtual absl::Status PreTuning(int64_t budget, int batch_size) = 0;
  // The next batch; empty when the budget is spent or the space exhausted.
  virtual absl::StatusOr<std::vector<Point>> ProposeBatch() = 0;
  // Results of the last batch, one per proposed point, in proposal order. InvalidArgument if
  // they do not match the batch.
  virtual absl::Status NotifyResults(const std::vector<Observation>& results) = 0;
  virtual void PostTuning() {}

  virtual std::string name() const = 0;

  // What a strategy learns across tasks (PPO's policy), kept in the database between runs. Empty
  // key: the strategy keeps nothing. LoadCheckpoint goes before PreTuning; SaveCheckpoint after
  // a run that measured something (an empty blob: nothing worth keeping from this run).
  virtual std::string CheckpointKey(const std::string& kernel, const SearchSpace& space) const {
    return "";
  }
  virtual void LoadCheckpoint(std::string blob) {}
  virtual absl::StatusOr<std::string> SaveCheckpoint() const { return std::string(); }
  // Strategies that learn from other devices' recordings (PPO: transfer) take them before
  // PreTuning; the others ignore them.
  virtual absl::Status AddTransferSource(TransferSource source) { return absl::OkStatus(); }

  // The time the strategy may spend on its next ProposeBatch, in milliseconds, as its driver
  // accounts it (AgentTimeBudget: a share of the measurement time so far, less the agent time
  // already spent; may be negative). +infinity, the default, means no limit. Strategies whose
  // proposals are cheap ignore it; PPO learns only when the allowance covers a learning step.
  // Called before ProposeBatch; the allowance holds until the next call.
  virtual void SetTimeAllowance(double ms) {}

  // `measurements` results of the batches so far were not measured for this run (another job
  // of the task measured those points meanwhile; NotifyResults still gets them as results): they
  // do not count against the budget, which grows by as many (within what the space has left).
  // The server's TaskSearch calls it; `ktune bench search` never does. StrategyBase keeps the
  // budget of every strategy of ktune's.
  virtual void GiveBackBudget(int64_t measurements) {}
};

// Strategies by name: "random", "anneal", "genetic", "model", "ppo". InvalidArgument listing
// the known names otherwise. Registration is explicit here, not by static initialisers.
// MakeStrategy also makes PPO's ablation variants (agent/README.md): "ppo-untrained",
// "ppo-nopolicy", "ppo-wholespace", "ppo-policyonly" (AblationStrategyNames; empty without
// LibTorch).
absl::StatusOr<std::unique_ptr<SearchStrategy>> MakeStrategy(const std::string& name);
// Makes a strategy by name, as MakeStrategy does (a seam for callers that choose their own).
using StrategyFactory =
    std::function<absl::StatusOr<std::unique_ptr<SearchStrategy>>(const std::string& name)>;
std::vector<std::string> StrategyNames();
std::vector<std::string> AblationStrategyNames();
// The strategy of a request or job that names none: "ppo" where this program can run PPO (the
// `ktune` front counts, since it hands PPO work to ktune-agent), "model" in a build without
// LibTorch (the best of the other strategies in agent/README.md's figures).
std::string DefaultStrategyName();

}  // namespace ktune

#endif  // KTUNE_AGENT_SEARCH_STRATEGY_H_
