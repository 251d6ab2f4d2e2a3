// How hard a recorded space is to search, from its records alone: the figures of the table in
// ../shared/datasets/README.md and bench/spaces/README.md, for `ktune space --recorded`.
#ifndef KTUNE_DB_INTERCHANGE_RECORDED_LANDSCAPE_H_
#define KTUNE_DB_INTERCHANGE_RECORDED_LANDSCAPE_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "db/record.h"

namespace ktune {

struct RecordedLandscape {
  int64_t configurations = 0;  // records
  int64_t failed = 0;          // not ok, or ok without a time
  // The rest only when at least one configuration ran (ok, with a time).
  std::optional<double> optimum_ms, median_ms;
  // Uniform random draws without replacement among the configurations that ran, expected until
  // one comes within 5% of the way from the optimum to the median: (ran + 1) / (within + 1).
  std::optional<double> random_draws_to_cutoff;
  int64_t within_2pct = 0;  // configurations at most 2% slower than the optimum
};

RecordedLandscape DescribeLandscape(const std::vector<Record>& records);

}  // namespace ktune

#endif  // KTUNE_DB_INTERCHANGE_RECORDED_LANDSCAPE_H_
