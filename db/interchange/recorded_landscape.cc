#include "db/interchange/recorded_landscape.h"

#include <algorithm>

#include "common/median.h"

namespace ktune {

RecordedLandscape DescribeLandscape(const std::vector<Record>& records) {
  RecordedLandscape l;
  l.configurations = static_cast<int64_t>(records.size());
  std::vector<double> times;
  for (const Record& r : records) {
    if (r.status == MeasurementStatus::kOk && r.time_ms) {
      times.push_back(*r.time_ms);
    } else {
      ++l.failed;
    }
  }
  if (times.empty()) return l;
  double optimum = times.front();
  for (double t : times) optimum = std::min(optimum, t);
  const double median = Median(times);
  const double cutoff = optimum + 0.05 * (median - optimum);
  int64_t within_cutoff = 0;
  for (double t : times) {
    within_cutoff += t <= cutoff;
    l.within_2pct += t <= 1.02 * optimum;
  }
  l.optimum_ms = optimum;
  l.median_ms = median;
  l.random_draws_to_cutoff =
      static_cast<double>(times.size() + 1) / static_cast<double>(within_cutoff + 1);
  return l;
}

}  // namespace ktune
