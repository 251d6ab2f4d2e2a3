// ExplanationText: the explanation as a person reads it, the answer first.
#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/error_format.h"
#include "proto/convert.h"
#include "server/explanation.h"

namespace ktune {
namespace {

// Values whose median is this many times the fastest value's, or that fail more often than they
// run, are listed as bad.
constexpr double kBadValueRatio = 1.5;

std::string ConfigText(const v1::Record& r) {
  std::vector<std::string> parts;
  std::vector<std::pair<std::string, v1::ParamValue>> sorted(r.config().params().begin(),
                                                             r.config().params().end());
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [name, value] : sorted) parts.push_back(absl::StrCat(name, "=", FormatProtoValue(value)));
  return absl::StrJoin(parts, ",");
}

std::string ProblemText(const google::protobuf::Map<std::string, v1::ParamValue>& params) {
  std::map<std::string, std::string> sorted;
  for (const auto& [name, value] : params) sorted[name] = FormatProtoValue(value);
  return absl::StrJoin(sorted, ",", absl::PairFormatter("="));
}

std::string LevelText(v1::MatchLevel level) {
  switch (level) {
    case v1::MATCH_LEVEL_EXACT:
      return "exact device";
    case v1::MATCH_LEVEL_DEVICE_CLASS:
      return "device class";
    case v1::MATCH_LEVEL_FAMILY:
      return "family";
    case v1::MATCH_LEVEL_PREDICTED:
      return "predicted";
    default:
      return "none";
  }
}

// Where a record comes from: when, which worker or file, how many repeats and their spread.
std::string Provenance(const v1::Record& r) {
  std::vector<std::string> parts;
  if (r.repeat_times_ms_size() > 0 && r.has_median_ms() &&
      std::abs(r.median_ms() - r.time_ms()) > 1e-3 * r.time_ms()) {
    // An imported record's time is its file's (a T4 file's may be a mean, or another run's), not
    // the median of the repeats it lists: say both.
    parts.push_back(
        absl::StrFormat("the time its source gave; %d repeats with median %.4g ms, "
                        "sd %.4g ms",
                        r.repeat_times_ms_size(), r.median_ms(), r.stddev_ms()));
  } else if (r.repeat_times_ms_size() > 0) {
    parts.push_back(absl::StrFormat("median of %d repeats, sd %.4g ms", r.repeat_times_ms_size(),
                                    r.stddev_ms()));
  } else {
    parts.push_back("no repeats recorded");
  }
  if (r.has_measured_at()) {
    parts.push_back(absl::StrCat(
        "measured ", absl::FormatTime("%Y-%m-%d %H:%M:%S UTC",
                                      absl::FromUnixSeconds(r.measured_at().seconds()),
                                      absl::UTCTimeZone())));
  }
  parts.push_back(r.worker_id().empty() ? absl::StrCat("from ", r.source())
                                        : absl::StrCat("by worker ", r.worker_id()));
  return absl::StrJoin(parts, ", ");
}

// One line on a parameter that matters: the served value against the slowest one, its trend and
// its bad values.
std::string ParameterLine(const v1::ParameterEffect& p) {
  const v1::ParameterValueEffect* served = nullptr;
  const v1::ParameterValueEffect* slowest = nullptr;
  const v1::ParameterValueEffect* fastest = nullptr;
  for (const v1::ParameterValueEffect& v : p.values()) {
    if (v.value().SerializeAsString() == p.served_value().SerializeAsString()) served = &v;
    if (v.measurements() < 3) continue;
    if (slowest == nullptr || v.median_ms() > slowest->median_ms()) slowest = &v;
    if (fastest == nullptr || v.median_ms() < fastest->median_ms()) fastest = &v;
  }
  const std::string& name = p.name();
  std::string line;
  if (served != nullptr && served->measurements() >= 3 && served == slowest && fastest == served) {
    line = absl::StrFormat("%s=%s (served) is its only value with 3 or more measurements", name,
                           FormatProtoValue(served->value()));
  } else if (served != nullptr && served->measurements() >= 3 && served == slowest) {
    // The served configuration is fastest overall although its value of this parameter has the
    // slowest median (it compared the value with itself: "1.00x faster than" itself).
    line = absl::StrFormat(
        "%s=%s (served) has the slowest median of its values (%d measurements); "
        "%s=%s has a %.2fx faster median (%d measurements)",
        name, FormatProtoValue(served->value()), served->measurements(), name,
        FormatProtoValue(fastest->value()), served->median_ms() / fastest->median_ms(),
        fastest->measurements());
  } else if (served != nullptr && served->measurements() >= 3 && slowest != nullptr) {
    line = absl::StrFormat("%s=%s (served) is %.2fx faster than %s=%s (median of %d and %d "
                           "measurements)",
                           name, FormatProtoValue(served->value()),
                           slowest->median_ms() / served->median_ms(), name,
                           FormatProtoValue(slowest->value()), served->measurements(),
                           slowest->measurements());
    if (fastest != served) {
      absl::StrAppend(&line, absl::StrFormat("; %s=%s has a %.2fx faster median", name,
                                             FormatProtoValue(fastest->value()),
                                             served->median_ms() / fastest->median_ms()));
    }
  } else {
    line = absl::StrFormat("%s: medians differ %.2fx across its values (the served %s=%s has "
                           "fewer than 3 measurements)",
                           name, p.spread(), name, FormatProtoValue(p.served_value()));
  }
  if (p.direction() != 0) {
    absl::StrAppend(&line, p.direction() > 0 ? "; larger is slower" : "; larger is faster");
  }
  std::vector<std::string> bad;
  for (const v1::ParameterValueEffect& v : p.values()) {
    if (&v == served) continue;  // the served value is judged by the line itself
    // One failure is not a pattern: the optimum's value was called bad for "1 of 1 failed".
    if (v.failures() >= 2 && v.failures() > v.measurements()) {
      bad.push_back(absl::StrFormat("%s=%s (%d of %d failed)", name, FormatProtoValue(v.value()),
                                    v.failures(), v.failures() + v.measurements()));
    } else if (fastest != nullptr && v.measurements() >= 3 &&
               v.median_ms() >= kBadValueRatio * fastest->median_ms()) {
      bad.push_back(absl::StrFormat("%s=%s (%.1fx)", name, FormatProtoValue(v.value()),
                                    v.median_ms() / fastest->median_ms()));
    }
  }
  if (!bad.empty()) {
    if (bad.size() > 4) bad.resize(4), bad.push_back("...");
    absl::StrAppend(&line, "; bad: ", absl::StrJoin(bad, ", "));
  }
  return line;
}

// The precision lines: the served error, what it buys over the most accurate configuration, and
// what the budget costs.
std::string PrecisionText(const v1::PrecisionChoice& p, const v1::Record& served) {
  std::string out = "precision: ";
  if (p.has_served_error()) {
    absl::StrAppend(&out,
                    absl::StrCat("served max relative error ", FormatErrorBound(p.served_error())));
  } else {
    absl::StrAppend(&out, "the served record has no measured error");
  }
  absl::StrAppend(
      &out, p.has_budget() ? absl::StrFormat(" (budget %g)", p.budget()) : " (no budget asked)");
  if (p.has_most_accurate() && p.most_accurate().config_hash() != served.config_hash()) {
    absl::StrAppend(
        &out,
        absl::StrFormat("\n           %.2fx the speed of the fastest most accurate configuration "
                        "measured (error %s, %.4g ms; errors up to 1e-4 tie): ",
                        p.speedup_over_most_accurate(),
                        FormatErrorBound(p.most_accurate().max_rel_error()),
                        p.most_accurate().has_time_ms() ? p.most_accurate().time_ms()
                                                        : p.most_accurate().median_ms()),
        ConfigText(p.most_accurate()));
  } else if (p.has_most_accurate()) {
    absl::StrAppend(&out, "; it is also the most accurate configuration measured");
  }
  if (p.has_fastest_outside_budget()) {
    const v1::Record& f = p.fastest_outside_budget();
    const double t = f.has_time_ms() ? f.time_ms() : f.median_ms();
    absl::StrAppend(&out,
                    absl::StrFormat("\n           the budget costs %.2fx: %s runs %.4g ms with "
                                    "error %s",
                                    served.time_ms() / t, ConfigText(f), t,
                                    FormatErrorBound(f.max_rel_error())));
  }
  absl::StrAppend(&out, "\n           ", p.front_size(),
                  p.front_size() == 1 ? " configuration" : " configurations",
                  " on the time/error front (ktune best --pareto)");
  if (p.too_inaccurate_records() > 0) {
    absl::StrAppend(&out, "; ", p.too_inaccurate_records(),
                    " records were too inaccurate for their job's budget");
  }
  absl::StrAppend(&out, "\n");
  return out;
}

// The drift flags of the task, one or two lines each: what production says of what is served.
std::string DriftLines(const v1::ExplainResponse& e) {
  std::string out;
  for (const v1::DriftFlag& f : e.drift_flags()) {
    const char* kind = f.kind() == v1::DRIFT_KIND_REGRESSION        ? "regression"
                       : f.kind() == v1::DRIFT_KIND_NEW_ENVIRONMENT ? "new environment"
                                                                    : "untuned hot problem";
    absl::StrAppend(&out, "production: drift flag #", f.id(), ", ", kind, ": ", f.message(),
                    "\n            action: ", f.action(), "\n");
  }
  return out;
}

std::string ExplanationBody(const v1::ExplainResponse& e, const BestQuery& asked);

}  // namespace

std::string ExplanationText(const v1::ExplainResponse& e, const BestQuery& asked) {
  return ExplanationBody(e, asked) + DriftLines(e);
}

namespace {

std::string ExplanationBody(const v1::ExplainResponse& e, const BestQuery& asked) {
  std::string out = FormatTask(asked.kernel, asked.problem,
                               asked.device_class.empty() ? asked.family : asked.device_class);
  if (e.level() == v1::MATCH_LEVEL_NONE && e.records() > 0 && asked.max_rel_error) {
    // The budget is what nothing met: say it, and where the errors measured are.
    return absl::StrCat(out, ": nothing to serve within a max relative error of ",
                        absl::StrFormat("%g", *asked.max_rel_error), ": ", e.records(),
                        " records, ", e.failed_records(),
                        " of them failed measurements (ktune best --pareto shows the errors "
                        "measured)\n");
  }
  if (e.level() == v1::MATCH_LEVEL_NONE && e.records() > 0) {
    return absl::StrCat(out, ": nothing to serve: ", e.records(), " records, ", e.failed_records(),
                        " of them failed measurements and none within the asked limits (ktune "
                        "explain --json lists the counts; ktune db export the records)\n");
  }
  if (e.level() == v1::MATCH_LEVEL_NONE) {
    return absl::StrCat(out, ": nothing known (no records of this kernel on the device, its "
                             "class or family, and no tuned problem to predict from)\n");
  }
  absl::StrAppend(&out, " (match: ", LevelText(e.level()), ")\n");
  const v1::Record& s = e.served();
  absl::StrAppend(&out, "served:    ", ConfigText(s), "\n           ",
                  absl::StrFormat("%.4g ms", s.time_ms()), ", ", Provenance(s), "\n");
  if (e.served_measurements() >= 2) {
    absl::StrAppend(&out, "           re-verified: measured ", e.served_measurements(),
                    " times\n");
  }
  if (e.level() == v1::MATCH_LEVEL_PREDICTED) {
    absl::StrAppend(
        &out, "           predicted from ", ProblemText(e.predicted_from().problem().params()),
        " on ", e.predicted_from().device_class(),
        absl::StrFormat(" (distance %.2f: the sum of |log2| steps over the problem's sizes); "
                        "never measured for the asked problem\n",
                        e.neighbour_distance()));
  } else if (e.level() == v1::MATCH_LEVEL_FAMILY) {
    absl::StrAppend(&out, "           measured on ", s.device().device_class(),
                    ", another device of the family\n");
  }
  if (e.stale()) {
    absl::StrAppend(&out,
                    "           stale: measured before a regression was flagged (ktune "
                    "drift); served until a newer measurement of the task exists\n");
  }
  if (e.has_runner_up()) {
    absl::StrAppend(&out, "runner-up: ", ConfigText(e.runner_up()), "\n           ",
                    absl::StrFormat("%.4g ms, %.1f%% slower; ", e.runner_up().time_ms(),
                                    100 * e.gap()));
    if (!e.has_noise()) {
      absl::StrAppend(&out,
                      "the noise is unknown (fewer than 2 samples of one of them, or most "
                      "samples of each equal)\n");
    } else {
      absl::StrAppend(&out, absl::StrFormat("%s the noise (standard error %.2f%%)\n",
                                            e.gap_exceeds_noise()
                                                ? "a real difference: more than twice"
                                                : "within twice",
                                            100 * e.noise()));
    }
  } else {
    absl::StrAppend(&out, "runner-up: none (one configuration measured)\n");
  }
  if (e.has_precision()) absl::StrAppend(&out, PrecisionText(e.precision(), s));
  const std::string problem = ProblemText(s.task().problem().params());
  absl::StrAppend(&out, "records:   ", e.records(), " of ", s.task().kernel().name(),
                  problem.empty() ? "" : " ", problem, " on ", s.device().device_class(), " (",
                  e.failed_records(), " failed)\n");
  // Values most of whose records failed, where another value of the parameter ran ok: the
  // times alone said "TC does not matter" of a parameter whose TC=64 and 128 always gave wrong
  // results.
  std::vector<std::string> failing;
  std::set<std::string> failing_parameters;
  for (const v1::ParameterEffect& p : e.parameters()) {
    const bool some_ok = std::any_of(
        p.values().begin(), p.values().end(),
        [](const v1::ParameterValueEffect& v) { return v.measurements() > v.failures(); });
    for (const v1::ParameterValueEffect& v : p.values()) {
      if (!some_ok || v.failures() < 2 || v.failures() <= v.measurements()) continue;
      failing.push_back(absl::StrCat(p.name(), "=", FormatProtoValue(v.value()), " (", v.failures(),
                                     " of ", v.failures() + v.measurements(), " failed)"));
      failing_parameters.insert(p.name());
    }
  }
  if (!failing.empty()) {
    absl::StrAppend(&out, "fails (most of its records failed; ktune db export shows why): ",
                    absl::StrJoin(failing, ", "), "\n");
  }
  std::vector<std::string> idle, unknown, fixed;
  bool header = false;
  for (const v1::ParameterEffect& p : e.parameters()) {
    if (p.values_size() == 1) {  // nothing to compare: not "too few measurements"
      fixed.push_back(p.name());
      continue;
    }
    const auto count = [&](int64_t at_least) {
      return std::count_if(
          p.values().begin(), p.values().end(),
          [&](const v1::ParameterValueEffect& v) { return v.measurements() >= at_least; });
    };
    const int64_t compared = count(3), measured = count(1);
    // "Does not matter" from two of many values (the rest measured once or twice) was said of a
    // parameter whose other values were 5x slower.
    if (compared < 2 || (!p.matters() && compared < 3 && compared < measured)) {
      if (!failing_parameters.count(p.name())) unknown.push_back(p.name());
      continue;
    }
    if (!p.matters()) {
      // Not "does not matter" where some of its values fail (said above).
      if (!failing_parameters.count(p.name())) idle.push_back(p.name());
      continue;
    }
    if (!header) absl::StrAppend(&out, "what matters (median time by value, largest effect first):\n");
    header = true;
    absl::StrAppend(&out, "  ", ParameterLine(p), "\n");
  }
  if (!idle.empty()) {
    absl::StrAppend(&out, "does not matter (medians within 5%): ", absl::StrJoin(idle, ", "),
                    "\n");
  }
  if (!unknown.empty()) {
    absl::StrAppend(&out,
                    "too few measurements to tell (fewer than two values measured 3 times, or "
                    "two alike and the others measured less): ",
                    absl::StrJoin(unknown, ", "), "\n");
  }
  if (!fixed.empty()) {
    absl::StrAppend(&out, "the same in every record: ", absl::StrJoin(fixed, ", "), "\n");
  }
  return out;
}

}  // namespace

}  // namespace ktune
