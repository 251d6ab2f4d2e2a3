#include "db/pareto_front.h"

#include <algorithm>
#include <map>
#include <tuple>

namespace ktune {

std::vector<TradeOff> TimeErrorTradeOffs(const std::vector<Record>& records) {
  // Per configuration, its ok records and its too_inaccurate ones apart: a configuration with an
  // ok record sits where `best` serves it, at the ok records' time and error. (A refused record's
  // faster time put it on the front ahead of what `best --max-rel-error` answered.)
  struct Seen {
    TradeOff ok, refused;
  };
  std::map<std::string, Seen> by_config;  // canonical JSON -> what was seen
  for (const Record& r : records) {
    if (r.status != MeasurementStatus::kOk && r.status != MeasurementStatus::kTooInaccurate) {
      continue;
    }
    const std::optional<double> time = TradeOffTimeMs(r);
    if (!time || !r.max_rel_error) continue;
    Seen& seen = by_config[CanonicalJson(r.config)];
    TradeOff& t = r.status == MeasurementStatus::kOk ? seen.ok : seen.refused;
    if (t.measurements == 0) {
      t.config = r.config;
      t.time_ms = *time;
      t.max_rel_error = *r.max_rel_error;
    } else {
      t.time_ms = std::min(t.time_ms, *time);
      t.max_rel_error = std::max(t.max_rel_error, *r.max_rel_error);
    }
    ++t.measurements;
  }
  std::vector<std::pair<std::string, TradeOff>> sorted;
  for (auto& [key, seen] : by_config) {
    TradeOff t = seen.ok.measurements > 0 ? seen.ok : seen.refused;
    t.served = seen.ok.measurements > 0;
    t.measurements = seen.ok.measurements + seen.refused.measurements;
    sorted.emplace_back(key, std::move(t));
  }
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return std::tie(a.second.time_ms, a.second.max_rel_error, a.first) <
           std::tie(b.second.time_ms, b.second.max_rel_error, b.first);
  });
  std::vector<TradeOff> out;
  double best_error = 0;
  bool any_served = false;
  for (auto& [key, t] : sorted) {
    // The front is of what `best` can serve: a point measured only as too_inaccurate neither
    // joins it nor hides the served points it is faster than.
    t.on_front = t.served && (!any_served || t.max_rel_error < best_error);
    if (t.on_front) best_error = t.max_rel_error, any_served = true;
    out.push_back(std::move(t));
  }
  return out;
}

std::vector<TradeOff> ParetoFront(const std::vector<TradeOff>& trade_offs) {
  std::vector<TradeOff> front;
  for (const TradeOff& t : trade_offs) {
    if (t.on_front) front.push_back(t);
  }
  return front;
}

std::optional<TradeOff> FastestWithin(const std::vector<TradeOff>& trade_offs,
                                      double max_rel_error) {
  for (const TradeOff& t : trade_offs) {
    if (t.served && t.max_rel_error <= max_rel_error) return t;
  }
  return std::nullopt;
}

}  // namespace ktune
