#include "agent/features.h"

#include <cmath>

namespace ktune {

SpaceFeatures::SpaceFeatures(const SearchSpace& space) : space_(space) {
  for (const Parameter& p : space.parameters()) {
    std::vector<float> index, value;
    const size_t n = p.values.size();
    for (size_t i = 0; i < n; ++i) {
      index.push_back(n > 1 ? static_cast<float>(i) / static_cast<float>(n - 1) : 0.f);
      double v = static_cast<double>(i);
      if (const auto* x = std::get_if<int64_t>(&p.values[i])) v = static_cast<double>(*x);
      if (const auto* x = std::get_if<double>(&p.values[i])) v = *x;
      value.push_back(static_cast<float>((v < 0 ? -1 : 1) * std::log2(1 + std::fabs(v))));
    }
    index_feature_.push_back(std::move(index));
    value_feature_.push_back(std::move(value));
  }
  width_ = static_cast<int>(2 * space.parameters().size());
}

void SpaceFeatures::Append(const Point& p, std::vector<float>& out) const {
  for (size_t k = 0; k < p.size(); ++k) {
    out.push_back(index_feature_[k][p[k]]);
    out.push_back(value_feature_[k][p[k]]);
  }
}

const std::vector<float>& SpaceFeatures::AllPoints() {
  if (all_.empty() && space_.size() > 0) {
    all_.reserve(static_cast<size_t>(space_.size()) * width_);
    for (int64_t i = 0; i < space_.size(); ++i) Append(space_.PointAt(i), all_);
  }
  return all_;
}

}  // namespace ktune
