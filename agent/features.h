// Numeric features of configurations, for cost models and policies: per parameter, the value's
// index scaled to [0, 1] and, for numbers, sign(v) * log2(1 + |v|). The same function serves
// every space, so models can be compared (and later transferred) across spaces of one kernel.
#ifndef KTUNE_AGENT_FEATURES_H_
#define KTUNE_AGENT_FEATURES_H_

#include <vector>

#include "kernels/search_space.h"

namespace ktune {

class SpaceFeatures {
 public:
  explicit SpaceFeatures(const SearchSpace& space);
  int width() const { return width_; }
  // Appends the features of `p` to `out`.
  void Append(const Point& p, std::vector<float>& out) const;
  // Features of every valid point, row i = space.PointAt(i); computed once, on first use.
  const std::vector<float>& AllPoints();

 private:
  const SearchSpace& space_;
  int width_ = 0;
  std::vector<std::vector<float>> index_feature_, value_feature_;  // [param][value index]
  std::vector<float> all_;
};

}  // namespace ktune

#endif  // KTUNE_AGENT_FEATURES_H_
