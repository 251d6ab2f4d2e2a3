// The median of a sample, as every part of ktune takes it.
#ifndef KTUNE_COMMON_MEDIAN_H_
#define KTUNE_COMMON_MEDIAN_H_

#include <algorithm>
#include <cmath>
#include <vector>

namespace ktune {

// The middle value of `v`, or the mean of the middle two for an even count; NaN when empty.
inline double Median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace ktune

#endif  // KTUNE_COMMON_MEDIAN_H_
