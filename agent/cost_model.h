// A regression model from configuration features to a score (higher = faster), as AutoTVM's
// cost model: gradient-boosted trees through XGBoost's C API. Deterministic for a seed; uses one
// thread so that runs are reproducible and do not compete with measurements.
#ifndef KTUNE_AGENT_COST_MODEL_H_
#define KTUNE_AGENT_COST_MODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ktune {

// Spaces up to this many configurations are ranked whole by a cost model each batch (one
// prediction per point); larger ones by a uniform sample of this many. The model-based baseline
// and PPO share it, so that neither sees more of a space than the other.
inline constexpr int64_t kWholeSpaceRankLimit = 250'000;

class XgbCostModel {
 public:
  struct Options {
    int rounds = 60;  // boosting rounds per fit
    int max_depth = 5;
    double eta = 0.2;  // learning rate
    double subsample = 1.0;
    // XGBoost's tree construction. "hist" (split candidates from per-feature histograms) made
    // a PPO batch 1.46x and a `model` batch 1.59x faster than "exact" (every sorted value), and
    // a batch with transfer sources about 6x, with the same search quality under
    // leave-one-kernel-out (agent/README.md, "Cost").
    std::string tree_method = "hist";
    // XGBoost's learning objective. "reg:squarederror" fits the targets; "rank:pairwise" fits
    // only their order (all rows one group; AutoTVM's XGBTuner with loss_type "rank"): a search
    // needs the best candidates first, not their times. Ranking ignores row weights across
    // groups, so it suits fits without weighted transfer rows.
    std::string objective = "reg:squarederror";
  };
  XgbCostModel() : XgbCostModel(Options()) {}
  explicit XgbCostModel(Options options) : options_(options) {}
  ~XgbCostModel();
  XgbCostModel(const XgbCostModel&) = delete;
  XgbCostModel& operator=(const XgbCostModel&) = delete;

  // Fits from scratch: `x` holds rows of `width` features, `y` one target per row, `weights`
  // (if not empty) one weight per row.
  absl::Status Fit(const std::vector<float>& x, int width, const std::vector<float>& y,
                   uint64_t seed, const std::vector<float>& weights = {});
  // Scores rows of `x`. FailedPrecondition before Fit.
  absl::StatusOr<std::vector<float>> Predict(const std::vector<float>& x, int width) const;

 private:
  Options options_;
  void* booster_ = nullptr;  // BoosterHandle
};

}  // namespace ktune

#endif  // KTUNE_AGENT_COST_MODEL_H_
