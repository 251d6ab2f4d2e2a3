#include "agent/transfer_prior.h"

#include <algorithm>
#include <cmath>
#include <numeric>

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
    const auto& a = source.space->parameters();
    const auto& b = space.parameters();
    bool same = a.size() == b.size();
    for (size_t k = 0; same && k < a.size(); ++k) {
      same = a[k].name == b[k].name && a[k].values.size() == b[k].values.size();
    }
    if (!same) continue;
    // Scores -log(time / fastest) on the target's points (recorded spaces differ in which
    // configurations exist or failed; those the source lacks are left out).
    std::vector<std::pair<float, int64_t>> scored;
    double fastest = INFINITY;
    for (double t : *source.time_ms) {
      if (std::isfinite(t) && t > 0) fastest = std::min(fastest, t);
    }
    for (int64_t i = 0; i < source.space->size(); ++i) {
      const double t = (*source.time_ms)[i];
      const int64_t j = space.IndexOf(source.space->PointAt(i));
      if (j >= 0 && std::isfinite(t) && t > 0) {
        scored.push_back({static_cast<float>(-std::log(t / fastest)), j});
      }
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
