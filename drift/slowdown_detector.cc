#include "drift/slowdown_detector.h"

#include <algorithm>
#include <cmath>

#include "common/median.h"

namespace ktune {
namespace {

constexpr size_t kRecentReports = 5;

}  // namespace

SlowdownDetector::SlowdownDetector(SlowdownDetectorOptions options) : options_(options) {}

bool SlowdownDetector::Observe(double mean_ms) {
  const double x = std::log(mean_ms);
  ++reports_;
  recent_.push_back(x);
  if (recent_.size() > kRecentReports) recent_.pop_front();
  if (!calibrated()) {
    reference_.push_back(x);
    if (calibrated()) {
      center_ = Median(reference_);
      std::vector<double> deviations;
      for (double r : reference_) deviations.push_back(std::fabs(r - center_));
      scale_ = std::max(1.4826 * Median(deviations), options_.min_log_scale);
    }
    return false;
  }
  if (alarmed_) return false;
  const double z = std::clamp((x - center_ - std::log(options_.min_slowdown)) / scale_,
                              -options_.clip, options_.clip);
  cusum_ = std::max(0.0, cusum_ + z - options_.k);
  if (cusum_ > options_.h) {
    alarmed_ = true;
    return true;
  }
  return false;
}

double SlowdownDetector::reference_ms() const { return calibrated() ? std::exp(center_) : 0; }

double SlowdownDetector::recent_ms() const {
  return recent_.empty() ? 0 : std::exp(Median({recent_.begin(), recent_.end()}));
}

void SlowdownDetector::Reset() {
  reference_.clear();
  center_ = scale_ = cusum_ = 0;
  alarmed_ = false;
  reports_ = 0;
  recent_.clear();
}

}  // namespace ktune
