#include "agent/model_based_strategy.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/status_macros.h"

namespace ktune {

std::vector<float> ScoreTargets(const std::vector<Observation>& history) {
  double fastest = INFINITY;
  for (const Observation& o : history) {
    if (o.ok) fastest = std::min(fastest, o.time_ms);
  }
  std::vector<float> y(history.size(), 0.f);
  float worst = 0.f;
  for (size_t i = 0; i < history.size(); ++i) {
    if (!history[i].ok) continue;
    y[i] = static_cast<float>(-std::log(history[i].time_ms / fastest));
    worst = std::min(worst, y[i]);
  }
  for (size_t i = 0; i < history.size(); ++i) {
    if (!history[i].ok) y[i] = worst - 1.f;
  }
  return y;
}

absl::Status ModelBasedStrategy::Start() {
  features_ = std::make_unique<SpaceFeatures>(space());
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Point>> ModelBasedStrategy::Generate(int n) {
  const auto& h = history();
  if (static_cast<int>(h.size()) < options_.warmup ||
      std::none_of(h.begin(), h.end(), [](const Observation& o) { return o.ok; })) {
    return std::vector<Point>();  // random warm-up, filled by the base
  }
  const int width = features_->width();
  std::vector<float> x;
  x.reserve(h.size() * width);
  for (const Observation& o : h) features_->Append(o.point, x);
  KTUNE_RETURN_IF_ERROR(model_.Fit(x, width, ScoreTargets(h), rng()()));

  // Candidates: the whole space, or a uniform sample of it.
  std::vector<int64_t> indices;
  std::vector<float> candidates;
  const int64_t size = space().size();
  if (size <= options_.exhaustive_limit) {
    candidates = features_->AllPoints();
    indices.resize(size);
    std::iota(indices.begin(), indices.end(), 0);
  } else {
    std::uniform_int_distribution<int64_t> pick(0, size - 1);
    for (int64_t i = 0; i < options_.exhaustive_limit; ++i) {
      indices.push_back(pick(rng()));
      features_->Append(space().PointAt(indices.back()), candidates);
    }
  }
  KTUNE_ASSIGN_OR_RETURN(std::vector<float> scores, model_.Predict(candidates, width));
  std::vector<size_t> order(indices.size());
  std::iota(order.begin(), order.end(), 0);
  const int exploit = n - static_cast<int>(std::lround(options_.epsilon * n));
  // Ties (common with trees) break by a random key, so equal scores do not favour low indices.
  std::vector<uint32_t> tie(order.size());
  for (auto& t : tie) t = static_cast<uint32_t>(rng()());
  auto better = [&](size_t a, size_t b) {
    return scores[a] != scores[b] ? scores[a] > scores[b] : tie[a] < tie[b];
  };
  size_t want = std::min(order.size(), static_cast<size_t>(exploit) + h.size() + 1);
  std::partial_sort(order.begin(), order.begin() + want, order.end(), better);
  std::vector<Point> out;
  for (size_t i = 0; i < want && static_cast<int>(out.size()) < exploit; ++i) {
    int64_t index = indices[order[i]];
    if (!Visited(index)) out.push_back(space().PointAt(index));
  }
  return out;  // the base fills the epsilon share with random points
}

}  // namespace ktune
