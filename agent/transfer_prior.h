// Transfer from other devices: recorded landscapes of the same kernel (TransferSource) as a prior
// of PPO's cost model.
//
// Why: a tuned kernel usually has recordings on other devices, and their fast regions overlap.
// The sources' rows join the cost model's training rows, marked by a domain feature (1 for a
// source, 0 for the target), so the model can learn what differs; their total weight shrinks with
// how far the sources' ranking disagrees with the target's own results, so a device unlike the
// sources drops them instead of being misled. Before the target has results, a prior model fitted
// on the sources alone ranks the first batches.
#ifndef KTUNE_AGENT_TRANSFER_PRIOR_H_
#define KTUNE_AGENT_TRANSFER_PRIOR_H_

#include <random>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/cost_model.h"
#include "agent/features.h"
#include "agent/search_strategy.h"

namespace ktune {

class TransferPrior {
 public:
  // Maps each source onto `space`'s points by parameter name and value (a source that lacks one
  // of `space`'s parameters, or has a parameter of several values that `space` lacks, is
  // skipped; one of a single value, a constant of its variant, is left out; a point whose value
  // `space` lacks is left out) and keeps at most `rows_per_source` rows of
  // each (its best quarter and a uniform sample of the rest), then fits the prior model.
  absl::Status Build(const SearchSpace& space, const SpaceFeatures& features,
                     const std::vector<TransferSource>& sources, int rows_per_source,
                     std::mt19937_64& rng);
  bool empty() const { return y_.empty(); }

  // The prior model's scores of `indices` (higher = faster). FailedPrecondition when empty.
  absl::StatusOr<std::vector<float>> PriorScores(const std::vector<int64_t>& indices) const;
  // The sources' fastest points, in the target's space.
  const std::vector<int64_t>& elites() const { return elites_; }

  // Spearman's rank correlation between the prior's predictions and the target's ok results,
  // clamped to [0, 1]; 1 before 8 ok results.
  absl::StatusOr<double> Agreement(const std::vector<Observation>& history) const;

  // Appends the sources' rows to a fit (each row's features plus the domain feature 1), with rank
  // targets (1 fastest .. 0 slowest) and weights summing to total_weight * agreement.
  void AppendRows(double total_weight, double agreement, std::vector<float>& x,
                  std::vector<float>& y, std::vector<float>& weights) const;

 private:
  const SearchSpace* space_ = nullptr;
  const SpaceFeatures* features_ = nullptr;
  std::vector<float> x_, y_, ranks_;  // source rows: features, -log(time / fastest), rank target
  std::vector<int64_t> elites_;
  XgbCostModel prior_;
};

}  // namespace ktune

#endif  // KTUNE_AGENT_TRANSFER_PRIOR_H_
