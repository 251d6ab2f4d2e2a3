// The bookkeeping every strategy shares, so that each strategy file holds only its search logic
// (as Kernel Tuner's strategies do): budget and batch sizes, never proposing a point twice,
// filling a short batch with random unvisited points, the history of results, the seeded
// generator.
//
// A strategy derives from StrategyBase and implements Generate (candidates for the next batch,
// best first; duplicates and visited points are dropped here) and, optionally, Observe.
#ifndef KTUNE_AGENT_STRATEGY_BASE_H_
#define KTUNE_AGENT_STRATEGY_BASE_H_

#include <limits>
#include <random>

#include "absl/container/flat_hash_set.h"
#include "agent/search_strategy.h"

namespace ktune {

class StrategyBase : public SearchStrategy {
 public:
  absl::Status Initialize(const SearchSpace& space, uint64_t seed) final;
  absl::Status AddPriorResults(const std::vector<Observation>& results) final;
  absl::Status PreTuning(int64_t budget, int batch_size) final;
  absl::StatusOr<std::vector<Point>> ProposeBatch() final;
  absl::Status NotifyResults(const std::vector<Observation>& results) final;
  void SetTimeAllowance(double ms) final { allowance_ms_ = ms; }
  void GiveBackBudget(int64_t measurements) final;

 protected:
  // Up to `n` candidate points for the next batch, most wanted first. Visited points and
  // repeats are dropped; a shortfall is filled with random unvisited points.
  virtual absl::StatusOr<std::vector<Point>> Generate(int n) = 0;
  // Called after the history has been extended with `results`.
  virtual absl::Status Observe(const std::vector<Observation>& results) { return absl::OkStatus(); }
  // Called once the space, seed, budget and batch size are known.
  virtual absl::Status Start() { return absl::OkStatus(); }

  const SearchSpace& space() const { return *space_; }
  std::mt19937_64& rng() { return rng_; }
  int64_t budget() const { return budget_; }
  int batch_size() const { return batch_size_; }
  // Results given by AddPriorResults (the first prior_count() of history()).
  int64_t prior_count() const { return prior_count_; }
  // Every result so far, prior results first, in measurement order.
  const std::vector<Observation>& history() const { return history_; }
  bool Visited(const Point& p) const;
  bool Visited(int64_t index) const { return visited_.contains(index); }
  // A random valid point not yet proposed; requires one to exist.
  Point RandomUnvisited();
  // The fastest ok observation so far, or null.
  const Observation* best() const { return best_index_ < 0 ? nullptr : &history_[best_index_]; }
  // The driver's time allowance for this proposal (SetTimeAllowance); +infinity: no limit.
  double allowance_ms() const { return allowance_ms_; }

 private:
  const SearchSpace* space_ = nullptr;
  std::mt19937_64 rng_;
  bool tuning_ = false;  // PreTuning has run
  int64_t budget_ = 0;   // measurements this run may propose
  int batch_size_ = 0;
  int64_t prior_count_ = 0;
  int64_t proposed_ = 0;
  std::vector<Point> pending_;  // the batch awaiting results
  std::vector<Observation> history_;
  int64_t best_index_ = -1;
  absl::flat_hash_set<int64_t> visited_;  // space indices proposed or known so far
  double allowance_ms_ = std::numeric_limits<double>::infinity();
};

}  // namespace ktune

#endif  // KTUNE_AGENT_STRATEGY_BASE_H_
