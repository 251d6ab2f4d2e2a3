// Uniform random sampling of unvisited valid configurations.
#ifndef KTUNE_AGENT_RANDOM_STRATEGY_H_
#define KTUNE_AGENT_RANDOM_STRATEGY_H_

#include "agent/strategy_base.h"

namespace ktune {

class RandomStrategy : public StrategyBase {
 public:
  std::string name() const override { return "random"; }

 protected:
  absl::StatusOr<std::vector<Point>> Generate(int n) override;
};

}  // namespace ktune

#endif  // KTUNE_AGENT_RANDOM_STRATEGY_H_
