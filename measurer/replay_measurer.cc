#include "measurer/replay_measurer.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/median.h"

namespace ktune {

ReplayMeasurer::ReplayMeasurer(const std::vector<Record>& records) {
  double best = std::numeric_limits<double>::infinity();
  for (const Record& r : records) {
    if (device_.device_class.empty()) device_ = r.device;
    MeasureResult m;
    m.status = r.status;
    m.message = r.message;
    // The server's own statuses (a lease that ended unreported, an error past a job's budget)
    // are no outcome a worker reports: replayed as the failure they were.
    if (m.status == MeasurementStatus::kLost || m.status == MeasurementStatus::kTooInaccurate) {
      m.status = MeasurementStatus::kRuntimeError;
      m.message = absl::StrCat("recorded as ", StatusName(r.status), ": ", r.message);
    }
    m.time_ms = r.time_ms;
    m.repeat_times_ms = r.repeat_times_ms;
    // A worker reports repeats and the server takes their median as the time: scaled so that
    // their median is the file's objective. Otherwise a search served through a replay worker
    // optimises the median of the raw runtimes, which a file may record apart from its
    // objective (on pnpoly_RTX_3090_T4, 10.51 ms against 7.22 ms for the optimum).
    if (r.time_ms && !m.repeat_times_ms.empty()) {
      const double median = Median(m.repeat_times_ms);
      if (median > 0) {
        for (double& t : m.repeat_times_ms) t *= *r.time_ms / median;
      }
    } else if (r.time_ms) {
      m.repeat_times_ms = {*r.time_ms};  // no runtimes recorded: the objective is the one repeat
    }
    if (r.time_ms && *r.time_ms < best) best = *r.time_ms;
    by_config_[CanonicalJson(r.config)] = std::move(m);
  }
  optimum_ms_ = best;
}

absl::StatusOr<std::vector<MeasureResult>> ReplayMeasurer::Measure(
    const TaskKey& task, const std::vector<Configuration>& configs) {
  if (simulated_cost_ms_ > 0) {
    absl::SleepFor(absl::Milliseconds(simulated_cost_ms_ * static_cast<double>(configs.size())));
  }
  std::vector<MeasureResult> out;
  out.reserve(configs.size());
  for (const Configuration& c : configs) {
    const std::string key = CanonicalJson(c);
    auto it = by_config_.find(key);
    if (it == by_config_.end()) {
      MeasureResult m;
      m.status = MeasurementStatus::kInvalidConfig;
      m.message = absl::StrCat("not in the recorded space: ", CanonicalJson(c));
      out.push_back(std::move(m));
    } else {
      first_measured_.try_emplace(key, measurements_);
      out.push_back(it->second);
      if (measurements_ >= regression_.after_measurements && Regressed(c)) {
        MeasureResult& m = out.back();
        if (m.time_ms) *m.time_ms *= regression_.factor;
        for (double& t : m.repeat_times_ms) t *= regression_.factor;
      }
    }
  }
  measurements_ += static_cast<int64_t>(configs.size());
  return out;
}

bool ReplayMeasurer::Regressed(const Configuration& c) const {
  if (regression_.factor == 1) return false;
  for (const auto& [name, value] : regression_.where) {
    auto it = c.find(name);
    if (it == c.end() || it->second != value) return false;
  }
  return true;
}

double ReplayMeasurer::RegressedBestOfEarlierMs() const {
  double best = 0;
  for (const auto& [json, index] : first_measured_) {
    if (index >= regression_.after_measurements) continue;
    auto it = by_config_.find(json);
    if (it == by_config_.end() || !it->second.time_ms) continue;
    absl::StatusOr<Configuration> c = ParseParamMapJson(json);
    const double t = *it->second.time_ms * (c.ok() && Regressed(*c) ? regression_.factor : 1);
    best = best == 0 ? t : std::min(best, t);
  }
  return best;
}

double ReplayMeasurer::RegressedOptimumMs() const {
  double best = 0;
  for (const auto& [json, m] : by_config_) {
    if (!m.time_ms) continue;
    absl::StatusOr<Configuration> c = ParseParamMapJson(json);
    const double t = *m.time_ms * (c.ok() && Regressed(*c) ? regression_.factor : 1);
    best = best == 0 ? t : std::min(best, t);
  }
  return best;
}

}  // namespace ktune
