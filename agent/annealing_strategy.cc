#include "agent/annealing_strategy.h"

#include <algorithm>
#include <cmath>

namespace ktune {

double AnnealingStrategy::Temperature() const {
  double progress = budget() > 0 ? static_cast<double>(history().size()) / budget() : 0;
  return options_.initial_temperature *
         std::pow(options_.final_temperature / options_.initial_temperature, progress);
}

absl::StatusOr<std::vector<Point>> AnnealingStrategy::Generate(int n) {
  if (!current_ && best()) {  // prior results: start from the best of them
    current_ = best()->point;
    current_ms_ = best()->time_ms;
  }
  if (!current_) return std::vector<Point>();  // first batch: random (filled by the base)
  std::vector<Point> adjacent = space().Neighbours(*current_, Neighbourhood::kAdjacent);
  std::vector<Point> far = space().Neighbours(*current_, Neighbourhood::kHamming);
  auto unvisited = [&](std::vector<Point>& v) {
    v.erase(std::remove_if(v.begin(), v.end(), [&](const Point& p) { return Visited(p); }),
            v.end());
    std::shuffle(v.begin(), v.end(), rng());
  };
  unvisited(adjacent);
  unvisited(far);
  if (adjacent.empty() && far.empty()) {
    // Stuck: restart from the best point's neighbourhood next time, from random points now.
    current_.reset();
    if (best()) {
      current_ = best()->point;
      current_ms_ = best()->time_ms;
    }
    return std::vector<Point>();
  }
  std::vector<Point> out;
  std::bernoulli_distribution jump(options_.hamming_fraction);
  size_t a = 0, f = 0;
  while (static_cast<int>(out.size()) < n && (a < adjacent.size() || f < far.size())) {
    bool take_far = f < far.size() && (a >= adjacent.size() || jump(rng()));
    out.push_back(take_far ? far[f++] : adjacent[a++]);
  }
  return out;
}

absl::Status AnnealingStrategy::Observe(const std::vector<Observation>& results) {
  const Observation* pick = nullptr;
  for (const Observation& o : results) {
    if (o.ok && (pick == nullptr || o.time_ms < pick->time_ms)) pick = &o;
  }
  if (pick == nullptr) return absl::OkStatus();  // all failed: stay
  if (!current_) {
    current_ = pick->point;
    current_ms_ = pick->time_ms;
    return absl::OkStatus();
  }
  double worse = pick->time_ms / current_ms_ - 1;
  std::uniform_real_distribution<double> u(0, 1);
  if (worse <= 0 || u(rng()) < std::exp(-worse / Temperature())) {
    current_ = pick->point;
    current_ms_ = pick->time_ms;
  }
  return absl::OkStatus();
}

}  // namespace ktune
