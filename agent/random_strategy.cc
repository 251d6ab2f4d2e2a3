// Uniform random search without replacement: the floor every other strategy must beat.
#include "agent/random_strategy.h"

namespace ktune {

absl::StatusOr<std::vector<Point>> RandomStrategy::Generate(int n) {
  std::vector<Point> out;
  for (int i = 0; i < n; ++i) out.push_back(RandomUnvisited());
  return out;
}

}  // namespace ktune
