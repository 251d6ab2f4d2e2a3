// Simulated annealing over the space's neighbourhood graph, batched: each batch is a set of
// distinct neighbours of the current point; the best of them replaces the current point if it is
// faster, or with probability exp(-(t_new / t_cur - 1) / T) otherwise. The temperature decays
// geometrically from `initial_temperature` to `final_temperature` over the budget. A point with
// no unvisited neighbour left restarts the walk from the best point so far, or at random.
#ifndef KTUNE_AGENT_ANNEALING_STRATEGY_H_
#define KTUNE_AGENT_ANNEALING_STRATEGY_H_

#include <optional>

#include "agent/strategy_base.h"

namespace ktune {

class AnnealingStrategy : public StrategyBase {
 public:
  struct Options {
    double initial_temperature = 0.5;  // relative slowdown accepted with probability 1/e at start
    double final_temperature = 0.005;  // ... at the end of the budget
    double hamming_fraction = 0.3;     // share of moves that jump to any value, not a neighbour
  };
  AnnealingStrategy() : AnnealingStrategy(Options()) {}
  explicit AnnealingStrategy(Options options) : options_(options) {}
  std::string name() const override { return "anneal"; }

 protected:
  absl::StatusOr<std::vector<Point>> Generate(int n) override;
  absl::Status Observe(const std::vector<Observation>& results) override;

 private:
  double Temperature() const;
  Options options_;
  std::optional<Point> current_;
  double current_ms_ = 0;
};

}  // namespace ktune

#endif  // KTUNE_AGENT_ANNEALING_STRATEGY_H_
