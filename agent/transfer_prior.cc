#include "agent/transfer_prior.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>

#include "absl/container/flat_hash_set.h"
#include "common/status_macros.h"

namespace ktune {
namespace {

// Ranks of `v`, 0 for the smallest (ties broken by order: enough for a weight).
template <typename T>
std::vector<double> Ranks(const std::vector<T>& v) {
  std::vector<size_t> order(v.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t k = 0; k < order.size(); ++k) r[order[k]] = static_cast<double>(k);
  return r;
}

// A source space's points in the target's terms: each target parameter is the source's parameter
// of the same name, its values matched by value; a source parameter the target lacks must have
// one value (a constant of the source's variant, such as a fixed filter size).
struct PointMap {
  std::vector<size_t> source_param;            // per target parameter
  std::vector<std::vector<int>> target_value;  // per target parameter, by source value index
  // The target point of source point `p` in `out`; false when a value is not in the target.
  bool Map(const Point& p, Point& out) const {
    for (size_t k = 0; k < source_param.size(); ++k) {
      const int v = target_value[k][p[source_param[k]]];
      if (v < 0) return false;
      out[k] = static_cast<uint16_t>(v);
    }
    return true;
  }
};

std::optional<PointMap> MapParameters(const SearchSpace& source, const SearchSpace& target) {
  const auto& from = source.parameters();
  const auto& to = target.parameters();
  PointMap map;
  std::vector<bool> used(from.size(), false);
  for (const Parameter& p : to) {
    auto it = std::find_if(from.begin(), from.end(),
                           [&](const Parameter& q) { return q.name == p.name; });
    if (it == from.end()) return std::nullopt;
    const size_t i = static_cast<size_t>(it - from.begin());
    used[i] = true;
    map.source_param.push_back(i);
    std::vector<int> values;
    for (const ParamValue& v : it->values) {
      auto at = std::find(p.values.begin(), p.values.end(), v);
      values.push_back(at == p.values.end() ? -1 : static_cast<int>(at - p.values.begin()));
    }
    map.target_value.push_back(std::move(values));
  }
  for (size_t i = 0; i < from.size(); ++i) {
    if (!used[i] && from[i].values.size() != 1) return std::nullopt;
  }
  return map;
}

}  // namespace

absl::Status TransferPrior::Build(const SearchSpace& space, const SpaceFeatures& features,
                                  const std::vector<TransferSource>& sources, int rows_per_source,
                                  std::mt19937_64& rng) {
  space_ = &space;
  features_ = &features;
  x_.clear();
  y_.clear();
  elites_.clear();
  for (const TransferSource& source : sources) {
    std::optional<PointMap> map = MapParameters(*source.space, space);
    if (!map) continue;
    // Scores -log(time / fastest) on the target's points (recorded spaces differ in which
    // configurations exist or failed; those the source lacks are left out).
    std::vector<std::pair<float, int64_t>> scored;
    double fastest = INFINITY;
    for (double t : *source.time_ms) {
      if (std::isfinite(t) && t > 0) fastest = std::min(fastest, t);
    }
    Point target(space.parameters().size());
    for (int64_t i = 0; i < source.space->size(); ++i) {
      const double t = (*source.time_ms)[i];
      if (!std::isfinite(t) || t <= 0 || !map->Map(source.space->PointAt(i), target)) continue;
      const int64_t j = space.IndexOf(target);
      if (j >= 0) scored.push_back({static_cast<float>(-std::log(t / fastest)), j});
    }
    if (scored.empty()) continue;
    std::sort(scored.begin(), scored.end(), std::greater<>());
    for (size_t e = 0; e < std::min<size_t>(8, scored.size()); ++e) {
      elites_.push_back(scored[e].second);
    }
    // Its best quarter, then a uniform sample of the rest, up to rows_per_source rows.
    const size_t best = std::min(scored.size(), static_cast<size_t>(rows_per_source / 4));
    std::shuffle(scored.begin() + best, scored.end(), rng);
    const size_t rows = std::min(scored.size(), static_cast<size_t>(rows_per_source));
    for (size_t r = 0; r < rows; ++r) {
      features.Append(space.PointAt(scored[r].second), x_);
      y_.push_back(scored[r].first);
    }
  }
  if (y_.empty()) return absl::OkStatus();
  std::vector<double> r = Ranks(y_);
  const double n = static_cast<double>(std::max<size_t>(1, y_.size() - 1));
  ranks_.resize(y_.size());
  for (size_t i = 0; i < r.size(); ++i) ranks_[i] = static_cast<float>(r[i] / n);
  return prior_.Fit(x_, features.width(), y_, rng());
}

absl::StatusOr<std::vector<float>> TransferPrior::PriorScores(
    const std::vector<int64_t>& indices) const {
  if (empty()) return absl::FailedPreconditionError("no transfer source");
  std::vector<float> x;
  for (int64_t i : indices) features_->Append(space_->PointAt(i), x);
  return prior_.Predict(x, features_->width());
}

absl::StatusOr<double> TransferPrior::Agreement(const std::vector<Observation>& history) const {
  std::vector<int64_t> points;
  std::vector<double> measured;
  for (const Observation& o : history) {
    if (!o.ok) continue;
    points.push_back(space_->IndexOf(o.point));
    measured.push_back(-o.time_ms);
  }
  if (empty() || measured.size() < 8) return 1.0;
  KTUNE_ASSIGN_OR_RETURN(std::vector<float> predicted, PriorScores(points));
  std::vector<double> a = Ranks(predicted), b = Ranks(measured);
  const double n = static_cast<double>(a.size());
  double d2 = 0;
  for (size_t k = 0; k < a.size(); ++k) d2 += (a[k] - b[k]) * (a[k] - b[k]);
  return std::max(0.0, 1 - 6 * d2 / (n * (n * n - 1)));
}

void TransferPrior::AppendRows(double total_weight, double agreement, std::vector<float>& x,
                               std::vector<float>& y, std::vector<float>& weights) const {
  const int w = features_->width();
  const float each = static_cast<float>(total_weight * agreement / std::max<size_t>(1, y_.size()));
  for (size_t r = 0; r < y_.size(); ++r) {
    x.insert(x.end(), x_.begin() + r * w, x_.begin() + (r + 1) * w);
    x.push_back(1.f);
    y.push_back(ranks_[r]);
    weights.push_back(each);
  }
}

}  // namespace ktune
