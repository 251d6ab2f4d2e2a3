// A test helper: one series' value among collected Prometheus metric families.
#ifndef KTUNE_TESTS_SERVER_METRIC_VALUE_H_
#define KTUNE_TESTS_SERVER_METRIC_VALUE_H_

#include <prometheus/metric_family.h>

#include <map>
#include <string>
#include <vector>

namespace ktune {

// The value of the series `name` whose labels include `labels` (a histogram's sample count);
// -1 when there is none.
inline double MetricValue(const std::vector<prometheus::MetricFamily>& families,
                          const std::string& name,
                          const std::map<std::string, std::string>& labels = {}) {
  for (const prometheus::MetricFamily& family : families) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& m : family.metric) {
      size_t matched = 0;
      for (const auto& label : m.label) {
        auto it = labels.find(label.name);
        if (it != labels.end() && it->second == label.value) ++matched;
      }
      if (matched != labels.size()) continue;
      switch (family.type) {
        case prometheus::MetricType::Counter:
          return m.counter.value;
        case prometheus::MetricType::Gauge:
          return m.gauge.value;
        case prometheus::MetricType::Histogram:
          return static_cast<double>(m.histogram.sample_count);
        default:
          return -1;
      }
    }
  }
  return -1;
}

}  // namespace ktune

#endif  // KTUNE_TESTS_SERVER_METRIC_VALUE_H_
