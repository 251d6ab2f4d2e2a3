#include "agent/strategy_base.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace ktune {

absl::Status StrategyBase::Initialize(const SearchSpace& space, uint64_t seed) {
  if (space.size() == 0) return absl::InvalidArgumentError("the search space is empty");
  space_ = &space;
  rng_.seed(seed);
  // A new run: forget everything of a previous one.
  tuning_ = false;
  budget_ = proposed_ = 0;
  batch_size_ = 0;
  pending_.clear();
  history_.clear();
  best_index_ = -1;
  visited_.clear();
  return absl::OkStatus();
}

absl::Status StrategyBase::AddPriorResults(const std::vector<Observation>& results) {
  if (space_ == nullptr) return absl::FailedPreconditionError("AddPriorResults before Initialize");
  if (tuning_) return absl::FailedPreconditionError("AddPriorResults after PreTuning");
  for (const Observation& o : results) {
    int64_t i = space_->IndexOf(o.point);
    if (i < 0) return absl::InvalidArgumentError("a prior result is not a point of the space");
    if (!visited_.insert(i).second) continue;  // measured twice before: keep the first
    history_.push_back(o);
    if (o.ok && (best_index_ < 0 || o.time_ms < history_[best_index_].time_ms)) {
      best_index_ = static_cast<int64_t>(history_.size() - 1);
    }
  }
  return absl::OkStatus();
}

absl::Status StrategyBase::PreTuning(int64_t budget, int batch_size) {
  if (space_ == nullptr) return absl::FailedPreconditionError("PreTuning before Initialize");
  if (budget < 1) return absl::InvalidArgumentError("the budget must be at least 1");
  if (batch_size < 1) return absl::InvalidArgumentError("the batch size must be at least 1");
  budget_ = std::min<int64_t>(budget, space_->size() - static_cast<int64_t>(visited_.size()));
  batch_size_ = batch_size;
  prior_count_ = static_cast<int64_t>(history_.size());
  tuning_ = true;
  return Start();
}

void StrategyBase::GiveBackBudget(int64_t measurements) {
  if (measurements <= 0 || !tuning_) return;
  const int64_t unvisited = space_->size() - static_cast<int64_t>(visited_.size());
  budget_ = std::min(budget_ + measurements, proposed_ + unvisited);
}

bool StrategyBase::Visited(const Point& p) const {
  int64_t i = space_->IndexOf(p);
  return i >= 0 && visited_.contains(i);
}

Point StrategyBase::RandomUnvisited() {
  const int64_t n = space_->size();
  std::uniform_int_distribution<int64_t> pick(0, n - 1);
  for (int attempt = 0; attempt < 64; ++attempt) {
    int64_t i = pick(rng_);
    if (!visited_.contains(i)) return space_->PointAt(i);
  }
  // Dense history: choose uniformly among what is left.
  std::vector<int64_t> left;
  left.reserve(n - visited_.size());
  for (int64_t i = 0; i < n; ++i) {
    if (!visited_.contains(i)) left.push_back(i);
  }
  return space_->PointAt(left[std::uniform_int_distribution<size_t>(0, left.size() - 1)(rng_)]);
}

absl::StatusOr<std::vector<Point>> StrategyBase::ProposeBatch() {
  if (!tuning_) return absl::FailedPreconditionError("ProposeBatch before PreTuning");
  if (!pending_.empty()) {
    return absl::FailedPreconditionError("ProposeBatch before the last batch's results");
  }
  const int64_t n = std::min<int64_t>(batch_size_, budget_ - proposed_);
  if (n <= 0) return std::vector<Point>();
  KTUNE_ASSIGN_OR_RETURN(std::vector<Point> candidates, Generate(static_cast<int>(n)));
  std::vector<Point> batch;
  batch.reserve(n);
  for (Point& p : candidates) {
    if (static_cast<int64_t>(batch.size()) == n) break;
    int64_t i = space_->IndexOf(p);
    if (i < 0 || visited_.contains(i)) continue;  // invalid, measured, or repeated in the batch
    visited_.insert(i);
    batch.push_back(std::move(p));
  }
  while (static_cast<int64_t>(batch.size()) < n) {
    Point p = RandomUnvisited();
    visited_.insert(space_->IndexOf(p));
    batch.push_back(std::move(p));
  }
  proposed_ += n;
  pending_ = batch;
  return batch;
}

absl::Status StrategyBase::NotifyResults(const std::vector<Observation>& results) {
  if (results.size() != pending_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", pending_.size(), " results, got ", results.size()));
  }
  for (size_t i = 0; i < results.size(); ++i) {
    if (results[i].point != pending_[i]) {
      return absl::InvalidArgumentError(absl::StrCat("result ", i, " is not for proposal ", i));
    }
  }
  pending_.clear();
  for (const Observation& o : results) {
    history_.push_back(o);
    if (o.ok && (best_index_ < 0 || o.time_ms < history_[best_index_].time_ms)) {
      best_index_ = static_cast<int64_t>(history_.size() - 1);
    }
  }
  return Observe(results);
}

}  // namespace ktune
