// A model-based tuner in the AutoTVM style: after a random warm-up, each batch refits a
// gradient-boosted-tree cost model (XgbCostModel) on every result so far and measures the
// unvisited configurations it scores best, keeping an epsilon share of the batch random.
//
// AutoTVM searches the model with simulated annealing because its spaces are too large to score
// whole. Our spaces are enumerated (SearchSpace), so up to `exhaustive_limit` configurations the
// model scores every one of them: the exact answer that annealing approximates. Larger spaces
// score a uniform sample of that size.
#ifndef KTUNE_AGENT_MODEL_BASED_STRATEGY_H_
#define KTUNE_AGENT_MODEL_BASED_STRATEGY_H_

#include <memory>

#include "agent/cost_model.h"
#include "agent/features.h"
#include "agent/strategy_base.h"

namespace ktune {

class ModelBasedStrategy : public StrategyBase {
 public:
  struct Options {
    int warmup = 16;       // random measurements before the first model
    double epsilon = 0.1;  // share of each batch chosen at random
    int64_t exhaustive_limit = kWholeSpaceRankLimit;
    XgbCostModel::Options model;
  };
  ModelBasedStrategy() : ModelBasedStrategy(Options()) {}
  explicit ModelBasedStrategy(Options options) : options_(options) {}
  std::string name() const override { return "model"; }

 protected:
  absl::Status Start() override;
  absl::StatusOr<std::vector<Point>> Generate(int n) override;

 private:
  Options options_;
  std::unique_ptr<SpaceFeatures> features_;
  XgbCostModel model_{options_.model};
};

// Regression targets for the results in `history`: -log(time / fastest) for ok results, and one
// below the worst ok target for failures (a failed configuration is worse than any slow one).
std::vector<float> ScoreTargets(const std::vector<Observation>& history);

}  // namespace ktune

#endif  // KTUNE_AGENT_MODEL_BASED_STRATEGY_H_
