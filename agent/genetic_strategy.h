// A genetic algorithm: the population is the fastest `population` configurations measured so
// far (elitism); each child comes from two parents chosen by tournament, uniform crossover, and
// per-parameter mutation to a neighbouring or random value. Children that break the constraints
// are mutated again, up to `repair_attempts` times, before the base fills the gap at random.
#ifndef KTUNE_AGENT_GENETIC_STRATEGY_H_
#define KTUNE_AGENT_GENETIC_STRATEGY_H_

#include "agent/strategy_base.h"

namespace ktune {

class GeneticStrategy : public StrategyBase {
 public:
  struct Options {
    int population = 20;         // parents kept: the fastest so far
    int tournament = 3;          // candidates per parent selection
    double mutation_rate = 0.0;  // per parameter; 0 = 1 / number of parameters
    int repair_attempts = 20;    // re-mutations of an invalid child
  };
  GeneticStrategy() : GeneticStrategy(Options()) {}
  explicit GeneticStrategy(Options options) : options_(options) {}
  std::string name() const override { return "genetic"; }

 protected:
  absl::StatusOr<std::vector<Point>> Generate(int n) override;

 private:
  void Mutate(Point& p, double rate);
  Options options_;
};

}  // namespace ktune

#endif  // KTUNE_AGENT_GENETIC_STRATEGY_H_
