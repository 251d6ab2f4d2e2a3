#include "server/explanation.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "absl/container/flat_hash_map.h"
#include "common/status_macros.h"
#include "db/pareto_front.h"
#include "proto/convert.h"
#include "server/prediction.h"

namespace ktune {
namespace {

// A value's median counts towards a parameter's spread only with this many ok measurements.
constexpr int kMinValueMeasurements = 3;
constexpr double kMattersSpread = 1.05;
// |Spearman rho| between a numeric parameter and the time at or above which it has a direction.
constexpr double kTrendRho = 0.3;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Ranks from 1, ties sharing their average rank.
std::vector<double> Ranks(const std::vector<double>& v) {
  std::vector<size_t> order(v.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> ranks(v.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
    for (size_t k = i; k <= j; ++k) ranks[order[k]] = (i + j) / 2.0 + 1;
    i = j + 1;
  }
  return ranks;
}

// Pearson's correlation of two rank vectors: Spearman's rho when they are ranks. 0 when either
// side is constant.
double RankCorrelation(const std::vector<double>& rx, const std::vector<double>& ry) {
  const double n = static_cast<double>(rx.size());
  const double mx = std::accumulate(rx.begin(), rx.end(), 0.0) / n;
  const double my = std::accumulate(ry.begin(), ry.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < rx.size(); ++i) {
    sxy += (rx[i] - mx) * (ry[i] - my);
    sxx += (rx[i] - mx) * (rx[i] - mx);
    syy += (ry[i] - my) * (ry[i] - my);
  }
  return sxx > 0 && syy > 0 ? sxy / std::sqrt(sxx * syy) : 0;
}

// Ranks from 1, ties sharing their average rank, of values that take few distinct values (a
// parameter's): counted per value instead of sorted.
std::vector<double> RanksOfFewValues(const std::vector<double>& v) {
  std::map<double, double> rank;  // value -> its count, then its average rank
  for (double x : v) ++rank[x];
  double below = 0;
  for (auto& [x, r] : rank) {
    const double count = r;
    r = below + (count + 1) / 2;
    below += count;
  }
  std::vector<double> out;
  out.reserve(v.size());
  for (double x : v) out.push_back(rank[x]);
  return out;
}

std::optional<double> AsNumber(const ParamValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  if (const auto* d = std::get_if<double>(&v)) return *d;
  return std::nullopt;
}

// The timing samples of one configuration: its records' repeats, or the records' times for
// records without repeats (imported ones).
std::vector<double> Samples(const std::vector<const Record*>& records) {
  std::vector<double> out;
  for (const Record* r : records) {
    if (!r->repeat_times_ms.empty()) {
      out.insert(out.end(), r->repeat_times_ms.begin(), r->repeat_times_ms.end());
    } else if (r->time_ms) {
      out.push_back(*r->time_ms);
    }
  }
  return out;
}

// Mean and the variance of the mean (sample variance / n).
std::pair<double, double> MeanAndVarianceOfMean(const std::vector<double>& v) {
  const double n = static_cast<double>(v.size());
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / n;
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  return {mean, ss / (n - 1) / n};
}

// `time_ranks`: the ranks of the ok records' times, in record order (Ranks of them), shared by
// every parameter that all ok records have.
v1::ParameterEffect EffectOf(const std::string& name, const ParamValue& served,
                             const std::vector<Record>& records,
                             const std::vector<double>& time_ranks) {
  struct Values {
    std::vector<double> times;
    int64_t failures = 0;
  };
  std::map<ParamValue, Values> by_value;
  std::vector<double> xs, ys;  // numeric value and time of each ok record
  bool numeric = true;
  for (const Record& r : records) {
    auto it = r.config.find(name);
    if (it == r.config.end()) continue;
    Values& v = by_value[it->second];
    if (r.status != MeasurementStatus::kOk) {
      ++v.failures;
      continue;
    }
    v.times.push_back(*r.time_ms);
    std::optional<double> x = AsNumber(it->second);
    numeric = numeric && x.has_value();
    if (x) {
      xs.push_back(*x);
      ys.push_back(*r.time_ms);
    }
  }
  v1::ParameterEffect e;
  e.set_name(name);
  *e.mutable_served_value() = ToProto(served);
  double fastest = 0, slowest = 0;
  for (const auto& [value, v] : by_value) {
    v1::ParameterValueEffect* out = e.add_values();
    *out->mutable_value() = ToProto(value);
    out->set_measurements(static_cast<int64_t>(v.times.size()));
    out->set_failures(v.failures);
    if (v.times.empty()) continue;
    const double median = Median(v.times);
    out->set_median_ms(median);
    out->set_best_ms(*std::min_element(v.times.begin(), v.times.end()));
    if (static_cast<int>(v.times.size()) < kMinValueMeasurements) continue;
    fastest = fastest == 0 ? median : std::min(fastest, median);
    slowest = std::max(slowest, median);
  }
  e.set_spread(fastest > 0 ? slowest / fastest : 1);
  e.set_matters(e.spread() >= kMattersSpread);
  if (numeric && xs.size() >= 2 * kMinValueMeasurements) {
    const double rho = RankCorrelation(RanksOfFewValues(xs),
                                       ys.size() == time_ranks.size() ? time_ranks : Ranks(ys));
    e.set_direction(rho >= kTrendRho ? 1 : rho <= -kTrendRho ? -1 : 0);
  }
  return e;
}

v1::MatchLevel LevelOf(MatchLevel level) {
  switch (level) {
    case MatchLevel::kExact:
      return v1::MATCH_LEVEL_EXACT;
    case MatchLevel::kDeviceClass:
      return v1::MATCH_LEVEL_DEVICE_CLASS;
    case MatchLevel::kFamily:
      return v1::MATCH_LEVEL_FAMILY;
    case MatchLevel::kNone:
      break;
  }
  return v1::MATCH_LEVEL_NONE;
}

// TradeOffTimeMs, 0 when unknown.
double TradeOffTime(const Record& r) { return TradeOffTimeMs(r).value_or(0); }

// The fastest record (ok or too_inaccurate, error known) of `config`.
const Record* FastestWithError(const std::vector<Record>& records, const Configuration& config) {
  const Record* best = nullptr;
  for (const Record& r : records) {
    if (r.config != config || !r.max_rel_error || TradeOffTime(r) <= 0) continue;
    if (best == nullptr || TradeOffTime(r) < TradeOffTime(*best)) best = &r;
  }
  return best;
}

// Below this largest error, configurations of a task differ only by rounding in a different order
// (fp32 accumulations err by about 1e-7..1e-5): no precision was traded, nothing to explain.
constexpr double kPrecisionTradedAbove = 1e-4;

// The precision part: what the served configuration's error buys against the most accurate one,
// and what the budget costs. False (nothing to say) when no record has a measured error, and when
// no budget was asked, no record was too inaccurate and every error is below
// kPrecisionTradedAbove.
bool ExplainPrecision(const std::vector<Record>& records, const Record& served,
                      std::optional<double> budget, v1::PrecisionChoice* out) {
  const std::vector<TradeOff> trade_offs = TimeErrorTradeOffs(records);
  if (trade_offs.empty()) return false;
  int64_t refused = 0;
  double largest = 0;
  for (const Record& r : records) refused += r.status == MeasurementStatus::kTooInaccurate;
  for (const TradeOff& t : trade_offs) largest = std::max(largest, t.max_rel_error);
  if (!budget && refused == 0 && largest < kPrecisionTradedAbove) return false;
  if (budget) out->set_budget(*budget);
  if (served.max_rel_error) out->set_served_error(*served.max_rel_error);
  out->set_too_inaccurate_records(refused);
  const std::vector<TradeOff> front = ParetoFront(trade_offs);
  out->set_front_size(static_cast<int64_t>(front.size()));
  if (const Record* accurate = FastestWithError(records, front.back().config)) {
    *out->mutable_most_accurate() = ToProto(*accurate);
    out->set_speedup_over_most_accurate(TradeOffTime(*accurate) / *served.time_ms);
  }
  if (budget && trade_offs.front().max_rel_error > *budget &&
      trade_offs.front().time_ms < *served.time_ms) {
    if (const Record* fastest = FastestWithError(records, trade_offs.front().config)) {
      *out->mutable_fastest_outside_budget() = ToProto(*fastest);
    }
  }
  return true;
}

// Fills everything but the level from the records of the task `served` belongs to. With a
// budget, the runner-up is the fastest other configuration within it.
absl::Status ExplainFromTask(TuningDatabase& db, const Record& served,
                             std::optional<double> budget, v1::ExplainResponse* out) {
  KTUNE_ASSIGN_OR_RETURN(
      std::vector<Record> records,
      db.TaskRecords({served.kernel, served.kernel_version, served.problem,
                      served.device.device_class}));
  *out->mutable_served() = ToProto(served);
  out->set_records(static_cast<int64_t>(records.size()));
  // Progress, and the ok records grouped by configuration.
  absl::flat_hash_map<Configuration, std::vector<const Record*>> by_config;
  double best = 0;
  int64_t failed = 0;
  for (const Record& r : records) {
    if (r.status == MeasurementStatus::kOk) {
      best = best == 0 ? *r.time_ms : std::min(best, *r.time_ms);
      if (WithinAccuracyBudget(r.max_rel_error, budget) || r.config == served.config) {
        by_config[r.config].push_back(&r);
      }
    } else {
      ++failed;
    }
    out->add_best_so_far_ms(best);
  }
  out->set_failed_records(failed);
  static const std::vector<const Record*> kNone;
  auto served_it = by_config.find(served.config);
  const std::vector<const Record*>& served_records =
      served_it == by_config.end() ? kNone : served_it->second;
  out->set_served_measurements(static_cast<int64_t>(served_records.size()));
  // The runner-up: the fastest record of any other configuration.
  const Record* runner_up = nullptr;
  for (const auto& [config, rs] : by_config) {
    if (config == served.config) continue;
    for (const Record* r : rs) {
      if (runner_up == nullptr || *r->time_ms < *runner_up->time_ms) runner_up = r;
    }
  }
  if (runner_up != nullptr) {
    *out->mutable_runner_up() = ToProto(*runner_up);
    out->set_gap(*runner_up->time_ms / *served.time_ms - 1);
    const std::vector<double> a = Samples(served_records);
    const std::vector<double> b = Samples(by_config.find(runner_up->config)->second);
    if (a.size() >= 2 && b.size() >= 2) {
      const auto [mean_a, var_a] = MeanAndVarianceOfMean(a);
      const auto [mean_b, var_b] = MeanAndVarianceOfMean(b);
      out->set_noise(std::sqrt(var_a + var_b) / *served.time_ms);
      out->set_gap_exceeds_noise(out->gap() > 2 * out->noise());
    }
  }
  std::vector<double> ok_times;
  for (const Record& r : records) {
    if (r.status == MeasurementStatus::kOk) ok_times.push_back(*r.time_ms);
  }
  const std::vector<double> time_ranks = Ranks(ok_times);
  for (const auto& [name, value] : served.config) {
    *out->add_parameters() = EffectOf(name, value, records, time_ranks);
  }
  std::stable_sort(out->mutable_parameters()->begin(), out->mutable_parameters()->end(),
                   [](const v1::ParameterEffect& a, const v1::ParameterEffect& b) {
                     return a.spread() > b.spread();
                   });
  if (v1::PrecisionChoice precision; ExplainPrecision(records, served, budget, &precision)) {
    *out->mutable_precision() = std::move(precision);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::ExplainResponse> Explain(TuningDatabase& db, const KernelRegistry& registry,
                                            const BestQuery& query) {
  v1::ExplainResponse out;
  BestQuery q = query;
  q.top_k = 1;
  KTUNE_ASSIGN_OR_RETURN(BestResult best, db.QueryBest(q));
  if (!best.records.empty()) {
    out.set_level(LevelOf(best.level));
    KTUNE_RETURN_IF_ERROR(ExplainFromTask(db, best.records.front(), q.max_rel_error, &out));
    return out;
  }
  KTUNE_ASSIGN_OR_RETURN(std::optional<Record> predicted, PredictBest(db, registry, q));
  if (!predicted) {
    out.set_level(v1::MATCH_LEVEL_NONE);
    return out;
  }
  out.set_level(v1::MATCH_LEVEL_PREDICTED);
  *out.mutable_predicted_from() = ToProto(TaskKey{predicted->kernel, predicted->kernel_version,
                                                  predicted->problem,
                                                  predicted->device.device_class});
  out.set_neighbour_distance(ProblemDistance(predicted->problem, query.problem));
  KTUNE_RETURN_IF_ERROR(ExplainFromTask(db, *predicted, q.max_rel_error, &out));
  return out;
}

std::string ExplanationJson(const v1::ExplainResponse& explanation) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  // Only a message with unknown types fails to print; an ExplainResponse has none.
  (void)google::protobuf::util::MessageToJsonString(explanation, &json, options);
  return json;
}

}  // namespace ktune
