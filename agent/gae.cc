#include "agent/gae.h"

namespace ktune {

GaeResult ComputeGae(const std::vector<float>& rewards, const std::vector<float>& values,
                     int horizon, int envs, double gamma, double lambda) {
  GaeResult out;
  out.advantages.assign(rewards.size(), 0.f);
  out.returns.assign(rewards.size(), 0.f);
  for (int e = 0; e < envs; ++e) {
    double last = 0;
    for (int t = horizon - 1; t >= 0; --t) {
      const bool final_step = t == horizon - 1;
      const double next_value = final_step ? 0.0 : values[(t + 1) * envs + e];
      const double nonterminal = final_step ? 0.0 : 1.0;
      const double delta =
          rewards[t * envs + e] + gamma * next_value * nonterminal - values[t * envs + e];
      last = delta + gamma * lambda * nonterminal * last;
      out.advantages[t * envs + e] = static_cast<float>(last);
      out.returns[t * envs + e] = static_cast<float>(last + values[t * envs + e]);
    }
  }
  return out;
}

}  // namespace ktune
