// The time/error trade-off of a task's measurements: which configurations are worth serving for
// some accuracy budget (`ktune best --pareto`, explanations of a precision choice).
#ifndef KTUNE_DB_PARETO_FRONT_H_
#define KTUNE_DB_PARETO_FRONT_H_

#include <optional>
#include <string>
#include <vector>

#include "db/record.h"

namespace ktune {

// One configuration's trade-off.
struct TradeOff {
  Configuration config;
  // Its fastest measurement's time (time_ms, else median_ms) and the largest error measured for
  // it: of its ok records when it has any (where `best` serves it), else of its too_inaccurate
  // ones.
  double time_ms = 0;
  double max_rel_error = 0;
  int measurements = 0;      // records of it that count (ok or too_inaccurate, error known)
  // It has an ok record, so `best` can serve it. A configuration measured only as too_inaccurate
  // (refused by a job's accuracy budget) is on the trade-off but is never served: a job with a
  // budget above its error measures it again.
  bool served = false;
  // Served, and no other served configuration is both faster and at least as accurate: the
  // front is what `best` answers, budget by budget.
  bool on_front = false;
};

// A record's time on the trade-off: time_ms when ok, else (too_inaccurate) its repeats' median.
inline std::optional<double> TradeOffTimeMs(const Record& r) {
  return r.time_ms ? r.time_ms : r.median_ms;
}

// Every configuration of `records` that ran and had its error measured (status ok or
// too_inaccurate, with a time and max_rel_error), fastest first (ties: smaller error first, then
// canonical configuration order). Records without a measured error are left out: where they sit
// is unknown.
std::vector<TradeOff> TimeErrorTradeOffs(const std::vector<Record>& records);

// The front alone: fastest first, each strictly more accurate than every faster one. The
// fastest configuration within a budget E is the fastest front point with error <= E.
std::vector<TradeOff> ParetoFront(const std::vector<TradeOff>& trade_offs);

// The fastest served configuration whose error is at most `max_rel_error` (what `best` answers to
// that budget); nullopt when none is.
std::optional<TradeOff> FastestWithin(const std::vector<TradeOff>& trade_offs,
                                      double max_rel_error);

}  // namespace ktune

#endif  // KTUNE_DB_PARETO_FRONT_H_
