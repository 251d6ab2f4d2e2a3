// Generalized Advantage Estimation (Schulman et al. 2016) over fixed-horizon episodes, the way
// CleanRL's PPO computes it: backwards over time, no bootstrap past the last step.
#ifndef KTUNE_AGENT_GAE_H_
#define KTUNE_AGENT_GAE_H_

#include <vector>

namespace ktune {

struct GaeResult {
  std::vector<float> advantages;  // [t * envs + e]
  std::vector<float> returns;     // advantages + values
};

// rewards and values are [t * envs + e] for t < horizon; every episode ends after step
// horizon - 1 (its next value counts as 0).
GaeResult ComputeGae(const std::vector<float>& rewards, const std::vector<float>& values,
                     int horizon, int envs, double gamma, double lambda);

}  // namespace ktune

#endif  // KTUNE_AGENT_GAE_H_
