#include "server/explanation.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <numeric>
#include <set>

#include "common/error_format.h"
#include "common/median.h"
#include "common/status_macros.h"
#include "db/pareto_front.h"
#include "proto/convert.h"
#include "proto/plain_json.h"
#include "server/prediction.h"

namespace ktune {
namespace {

// A value's median counts towards a parameter's spread only with this many ok measurements.
constexpr int kMinValueMeasurements = 3;
constexpr double kMattersSpread = 1.05;
// |Spearman rho| between a numeric parameter and the time at or above which it has a direction.
constexpr double kTrendRho = 0.3;

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
std::vector<double> Samples(const std::vector<Record>& records) {
  std::vector<double> out;
  for (const Record& r : records) {
    if (!r.repeat_times_ms.empty()) {
      out.insert(out.end(), r.repeat_times_ms.begin(), r.repeat_times_ms.end());
    } else if (r.time_ms) {
      out.push_back(*r.time_ms);
    }
  }
  return out;
}

// The variance of the samples' median, robustly: the spread is 1.4826 x the median absolute
// deviation (the standard deviation for normal samples, untouched by a few wild repeats), and a
// median's variance is pi/2 x spread^2 / n. Times are medians: their noise is a median's. (The
// mean's variance let one repeat preempted to 15x its peers call every gap noise.) 0 where more
// than half the samples are equal (a coarse timer, a replay).
double VarianceOfMedian(const std::vector<double>& v) {
  const double median = Median(v);
  std::vector<double> deviations;
  deviations.reserve(v.size());
  for (double x : v) deviations.push_back(std::abs(x - median));
  const double spread = 1.4826 * Median(std::move(deviations));
  return M_PI / 2 * spread * spread / static_cast<double>(v.size());
}

// `time_ranks`: the ranks of the ok records' times, in record order (Ranks of them), shared by
// every parameter that all ok records have. `p` indexes c.params.
v1::ParameterEffect EffectOf(const TaskColumns& c, size_t p, const ParamValue& served,
                             const std::vector<double>& time_ranks) {
  struct Values {
    std::vector<double> times;
    int64_t failures = 0;
  };
  std::vector<Values> by_value(c.values[p].size());
  std::vector<double> xs, ys;  // numeric value and time of each ok record
  bool numeric = true;
  const size_t stride = c.params.size();
  for (size_t i = 0; i < c.size(); ++i) {
    const int32_t v = c.value_index[i * stride + p];
    if (v < 0) continue;
    Values& values = by_value[v];
    if (c.status[i] != MeasurementStatus::kOk) {
      ++values.failures;
      continue;
    }
    values.times.push_back(c.time_ms[i]);
    std::optional<double> x = AsNumber(c.values[p][v]);
    numeric = numeric && x.has_value();
    if (x) {
      xs.push_back(*x);
      ys.push_back(c.time_ms[i]);
    }
  }
  // The values in ParamValue's order.
  std::vector<size_t> order(by_value.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return c.values[p][a] < c.values[p][b]; });
  v1::ParameterEffect e;
  e.set_name(c.params[p]);
  *e.mutable_served_value() = ToProto(served);
  double fastest = 0, slowest = 0;
  // Among the values with enough measurements, in value order: where the fastest median lies.
  int eligible = 0, fastest_at = -1;
  for (size_t k : order) {
    const Values& v = by_value[k];
    if (v.times.empty() && v.failures == 0) continue;  // a value only stale records had
    v1::ParameterValueEffect* out = e.add_values();
    *out->mutable_value() = ToProto(c.values[p][k]);
    out->set_measurements(static_cast<int64_t>(v.times.size()));
    out->set_failures(v.failures);
    if (v.times.empty()) continue;
    const double median = Median(v.times);
    out->set_median_ms(median);
    out->set_best_ms(*std::min_element(v.times.begin(), v.times.end()));
    if (static_cast<int>(v.times.size()) < kMinValueMeasurements) continue;
    if (fastest == 0 || median < fastest) fastest_at = eligible;
    ++eligible;
    fastest = fastest == 0 ? median : std::min(fastest, median);
    slowest = std::max(slowest, median);
  }
  e.set_spread(fastest > 0 ? slowest / fastest : 1);
  e.set_matters(e.spread() >= kMattersSpread);
  if (numeric && xs.size() >= 2 * kMinValueMeasurements) {
    const double rho = RankCorrelation(RanksOfFewValues(xs),
                                       ys.size() == time_ranks.size() ? time_ranks : Ranks(ys));
    // A direction only where the fastest value is at that end: with the fastest in the middle
    // (block_rows 1, 2, 4, 8, 16 at 5.8, 5.3, 4.9, 5.0, 5.1 us) "larger is faster" was said of
    // values past the best, which are slower.
    const bool larger_slower = rho >= kTrendRho && fastest_at == 0;
    const bool larger_faster = rho <= -kTrendRho && fastest_at == eligible - 1;
    e.set_direction(larger_slower ? 1 : larger_faster ? -1 : 0);
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

// The records a trade-off is made of (ok or too_inaccurate, error known), holding only what
// TimeErrorTradeOffs reads, and the handles of the records they stand for.
struct ErrorRecords {
  std::vector<Record> records;
  std::vector<int64_t> handles;
};

ErrorRecords RecordsWithError(const TaskColumns& c) {
  ErrorRecords out;
  for (size_t i = 0; i < c.size(); ++i) {
    const bool ran = c.status[i] == MeasurementStatus::kOk ||
                     c.status[i] == MeasurementStatus::kTooInaccurate;
    if (!ran || std::isnan(c.max_rel_error[i]) || std::isnan(c.trade_off_ms[i])) continue;
    Record& r = out.records.emplace_back();
    r.config = c.ConfigOf(i);
    r.status = c.status[i];
    if (r.status == MeasurementStatus::kOk) r.time_ms = c.time_ms[i];
    r.median_ms = c.trade_off_ms[i];
    r.max_rel_error = c.max_rel_error[i];
    out.handles.push_back(c.handles[i]);
  }
  return out;
}

// The handle of the fastest record (error known) of `config`: of its ok records when it has any,
// as TimeErrorTradeOffs places it, else of its too_inaccurate ones.
std::optional<int64_t> FastestWithError(const ErrorRecords& e, const Configuration& config) {
  const bool served = std::any_of(e.records.begin(), e.records.end(), [&](const Record& r) {
    return r.config == config && r.status == MeasurementStatus::kOk;
  });
  std::optional<size_t> best;
  for (size_t i = 0; i < e.records.size(); ++i) {
    const Record& r = e.records[i];
    if (r.config != config || TradeOffTime(r) <= 0) continue;
    if (served && r.status != MeasurementStatus::kOk) continue;
    if (!best || TradeOffTime(r) < TradeOffTime(e.records[*best])) best = i;
  }
  if (!best) return std::nullopt;
  return e.handles[*best];
}

// Below kTradedPrecisionError (common/error_format.h), configurations of a task differ only by
// rounding in a different order (fp32 accumulations err by about 1e-7..1e-5): no precision was
// traded, nothing to explain, and errors that low count as equal.

// The precision part: what the served configuration's error buys against the most accurate one,
// and what the budget costs. False (nothing to say) when no record has a measured error, and when
// no budget was asked, no record was too inaccurate and every error is below
// kTradedPrecisionError.
absl::StatusOr<bool> ExplainPrecision(TuningDatabase& db, const TaskColumns& c,
                                      const Record& served, std::optional<double> budget,
                                      v1::PrecisionChoice* out) {
  const ErrorRecords with_error = RecordsWithError(c);
  const std::vector<TradeOff> trade_offs = TimeErrorTradeOffs(with_error.records);
  if (trade_offs.empty()) return false;
  const int64_t refused =
      std::count(c.status.begin(), c.status.end(), MeasurementStatus::kTooInaccurate);
  double largest = 0;
  for (const TradeOff& t : trade_offs) largest = std::max(largest, t.max_rel_error);
  if (!budget && refused == 0 && largest < kTradedPrecisionError) return false;
  if (budget) out->set_budget(*budget);
  if (served.max_rel_error) out->set_served_error(*served.max_rel_error);
  out->set_too_inaccurate_records(refused);
  const std::vector<TradeOff> front = ParetoFront(trade_offs);  // served configurations only
  out->set_front_size(static_cast<int64_t>(front.size()));
  if (front.empty()) return true;
  // The most accurate: the front's fastest point of the least error, where errors up to
  // kTradedPrecisionError tie (a 1-ulp fp32 difference is no precision bought: comparing with
  // the slowest fp32 configuration credited an int8 one with 1.95x where precision bought 1.03x).
  // (A budget below the tie keeps the comparison within it: no speed-up below 1 over a faster
  // configuration the budget refuses.)
  const double tie = budget ? std::min(kTradedPrecisionError, *budget) : kTradedPrecisionError;
  const double full_precision = std::max(front.back().max_rel_error, tie);
  const TradeOff& most_accurate = *std::find_if(front.begin(), front.end(), [&](const TradeOff& t) {
    return t.max_rel_error <= full_precision;
  });
  if (auto accurate = FastestWithError(with_error, most_accurate.config)) {
    KTUNE_ASSIGN_OR_RETURN(std::vector<Record> r, db.RecordsByHandle({*accurate}));
    *out->mutable_most_accurate() = ToProto(r[0]);
    out->set_speedup_over_most_accurate(TradeOffTime(r[0]) / *served.time_ms);
  }
  if (budget && trade_offs.front().max_rel_error > *budget &&
      trade_offs.front().time_ms < *served.time_ms) {
    if (auto fastest = FastestWithError(with_error, trade_offs.front().config)) {
      KTUNE_ASSIGN_OR_RETURN(std::vector<Record> r, db.RecordsByHandle({*fastest}));
      *out->mutable_fastest_outside_budget() = ToProto(r[0]);
    }
  }
  return true;
}

// Whether record i repeats a measurement already seen: the same configuration's record with the
// same time taken at the same moment is one measurement stored twice (a file imported again under
// another name, or both formats of one run), not a re-verification. Records without a time of
// measurement cannot be told apart and count each.
bool RepeatsAMeasurement(const TaskColumns& c, size_t i,
                         std::set<std::pair<int64_t, double>>& seen) {
  return c.measured_at_us[i] != TaskColumns::kUnknownTime &&
         !seen.insert({c.measured_at_us[i], c.time_ms[i]}).second;
}

// The handles of the ok records of record i's configuration (each measurement once); with a
// budget, only those within it.
std::vector<int64_t> OkRecordsOfConfigOf(const TaskColumns& c, size_t i,
                                         std::optional<double> budget) {
  const size_t n = c.params.size();
  const std::vector<int32_t> row(c.value_index.begin() + i * n, c.value_index.begin() + (i + 1) * n);
  std::vector<int64_t> out;
  std::set<std::pair<int64_t, double>> seen;
  for (size_t j = 0; j < c.size(); ++j) {
    if (c.status[j] != MeasurementStatus::kOk || !c.HasConfig(j, row)) continue;
    const double e = c.max_rel_error[j];
    // The budget first: a copy outside it must not hide the one within it.
    if (WithinAccuracyBudget(std::isnan(e) ? std::nullopt : std::optional(e), budget) &&
        !RepeatsAMeasurement(c, j, seen)) {
      out.push_back(c.handles[j]);
    }
  }
  return out;
}

// Fills everything but the level from the records of the task `served` belongs to, read as
// columns (TuningDatabase::TaskRecordColumns); only the records quoted whole are read whole.
// With a budget, the runner-up is the fastest other configuration within it; with `usable`, one
// it accepts (a prediction's: valid for the problem asked, not only for the neighbour's).
absl::Status ExplainFromTask(TuningDatabase& db, const Record& served, std::optional<double> budget,
                             bool stale, v1::ExplainResponse* out,
                             const std::function<bool(const Configuration&)>& usable = nullptr) {
  const TaskKey task{served.kernel, served.kernel_version, served.problem,
                     served.device.device_class};
  KTUNE_ASSIGN_OR_RETURN(TaskColumns c,
                         stale ? db.StaleTaskRecordColumns(task) : db.TaskRecordColumns(task));
  out->set_stale(stale);
  *out->mutable_served() = ToProto(served);
  out->set_records(static_cast<int64_t>(c.size()));
  const std::optional<std::vector<int32_t>> served_row = c.IndicesOf(served.config);
  // Progress; the served configuration's ok records; the runner-up: the fastest ok record of any
  // other configuration (within the budget).
  double best = 0;
  int64_t failed = 0;
  std::vector<int64_t> served_records;
  std::set<std::pair<int64_t, double>> served_seen;
  std::optional<size_t> runner_up;
  for (size_t i = 0; i < c.size(); ++i) {
    if (c.status[i] == MeasurementStatus::kOk) {
      best = best == 0 ? c.time_ms[i] : std::min(best, c.time_ms[i]);
      const double e = c.max_rel_error[i];
      if (served_row && c.HasConfig(i, *served_row)) {
        if (!RepeatsAMeasurement(c, i, served_seen)) served_records.push_back(c.handles[i]);
      } else if (WithinAccuracyBudget(std::isnan(e) ? std::nullopt : std::optional(e), budget) &&
                 (!runner_up || c.time_ms[i] < c.time_ms[*runner_up]) &&
                 (!usable || usable(c.ConfigOf(i)))) {
        runner_up = i;
      }
    } else {
      ++failed;
    }
    out->add_best_so_far_ms(best);
  }
  out->set_failed_records(failed);
  out->set_served_measurements(static_cast<int64_t>(served_records.size()));
  if (runner_up) {
    std::vector<int64_t> runner_up_records = OkRecordsOfConfigOf(c, *runner_up, budget);
    KTUNE_ASSIGN_OR_RETURN(std::vector<Record> a, db.RecordsByHandle(served_records));
    KTUNE_ASSIGN_OR_RETURN(std::vector<Record> b, db.RecordsByHandle(runner_up_records));
    // The runner-up is one of its configuration's ok records within the budget: read once, in b.
    // b holds the runner-up unless it repeats an earlier copy of its measurement: then that copy.
    size_t quoted =
        std::find(runner_up_records.begin(), runner_up_records.end(), c.handles[*runner_up]) -
        runner_up_records.begin();
    if (quoted >= b.size()) quoted = 0;
    *out->mutable_runner_up() = ToProto(b[quoted]);
    out->set_gap(c.time_ms[*runner_up] / *served.time_ms - 1);
    const std::vector<double> sa = Samples(a);
    const std::vector<double> sb = Samples(b);
    // A noise of 0 (more than half of each side's samples equal) cannot tell a gap from noise:
    // it is unknown then, as with one sample (it called a gap of 0.05% "a real difference").
    const double variance =
        sa.size() >= 2 && sb.size() >= 2 ? VarianceOfMedian(sa) + VarianceOfMedian(sb) : 0;
    if (variance > 0) {
      out->set_noise(std::sqrt(variance) / *served.time_ms);
      out->set_gap_exceeds_noise(out->gap() > 2 * out->noise());
    }
  }
  std::vector<double> ok_times;
  for (size_t i = 0; i < c.size(); ++i) {
    if (c.status[i] == MeasurementStatus::kOk) ok_times.push_back(c.time_ms[i]);
  }
  const std::vector<double> time_ranks = Ranks(ok_times);
  for (const auto& [name, value] : served.config) {
    auto p = std::find(c.params.begin(), c.params.end(), name);
    if (p == c.params.end()) continue;  // only with no record of the served one: cannot happen
    *out->add_parameters() = EffectOf(c, p - c.params.begin(), value, time_ranks);
  }
  std::stable_sort(out->mutable_parameters()->begin(), out->mutable_parameters()->end(),
                   [](const v1::ParameterEffect& a, const v1::ParameterEffect& b) {
                     return a.spread() > b.spread();
                   });
  v1::PrecisionChoice precision;
  KTUNE_ASSIGN_OR_RETURN(bool has_precision, ExplainPrecision(db, c, served, budget, &precision));
  if (has_precision) *out->mutable_precision() = std::move(precision);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::ExplainResponse> Explain(TuningDatabase& db, const KernelRegistry& registry,
                                            const BestQuery& query) {
  v1::ExplainResponse out;
  BestQuery q = query;
  q.top_k = 1;
  PinBudgetToErrorMeasure(registry, &q);
  KTUNE_ASSIGN_OR_RETURN(BestResult best, db.QueryBest(q));
  if (!best.records.empty()) {
    out.set_level(LevelOf(best.level));
    KTUNE_RETURN_IF_ERROR(
        ExplainFromTask(db, best.records.front(), q.max_rel_error, best.stale, &out));
    return out;
  }
  KTUNE_ASSIGN_OR_RETURN(std::optional<Record> predicted, PredictBest(db, registry, q));
  if (!predicted) {
    out.set_level(v1::MATCH_LEVEL_NONE);
    // Nothing to serve is not nothing known: the task's records may all have failed.
    if (!q.device_class.empty()) {
      KTUNE_ASSIGN_OR_RETURN(TaskColumns c, db.TaskRecordColumns({q.kernel, q.kernel_version,
                                                                  q.problem, q.device_class}));
      out.set_records(static_cast<int64_t>(c.size()));
      out.set_failed_records(static_cast<int64_t>(
          std::count_if(c.status.begin(), c.status.end(),
                        [](MeasurementStatus s) { return s != MeasurementStatus::kOk; })));
    }
    return out;
  }
  out.set_level(v1::MATCH_LEVEL_PREDICTED);
  *out.mutable_predicted_from() = ToProto(TaskKey{predicted->kernel, predicted->kernel_version,
                                                  predicted->problem,
                                                  predicted->device.device_class});
  out.set_neighbour_distance(ProblemDistance(predicted->problem, query.problem));
  // The runner-up is served for the asked problem too: valid in its space, as PredictBest chose
  // the served one (the neighbour's best, invalid here, came out 30% faster than the served).
  const KernelDefinition* kernel = registry.Find(q.kernel);
  std::optional<SearchSpace> asked;
  if (kernel != nullptr) {
    absl::StatusOr<SearchSpace> space =
        kernel->Space(query.problem, MachineVariables{predicted->device.Cores()});
    if (space.ok()) asked = *std::move(space);
  }
  const auto valid_here = [&asked](const Configuration& config) {
    if (!asked) return true;
    absl::StatusOr<Point> point = asked->ToPoint(config);
    return point.ok() && asked->IsValid(*point);
  };
  KTUNE_RETURN_IF_ERROR(
      ExplainFromTask(db, *predicted, q.max_rel_error, /*stale=*/false, &out, valid_here));
  return out;
}

std::string ExplanationJson(const v1::ExplainResponse& explanation) {
  return PlainJsonText(explanation);
}

}  // namespace ktune
