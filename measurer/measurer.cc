#include "measurer/measurer.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace ktune {

MeasureResult FailedResult(MeasurementStatus status, std::string message) {
  MeasureResult r;
  r.status = status;
  r.message = std::move(message);
  return r;
}

bool IsValidTimeMs(double t) { return t >= kMinTimeMs && t <= kMaxTimeMs; }

MeasureResult ResultFromSamples(std::vector<double> times_ms) {
  if (times_ms.empty()) {
    return FailedResult(MeasurementStatus::kRuntimeError, "the runner returned no samples");
  }
  MeasureResult r;
  r.repeat_times_ms = times_ms;
  std::sort(times_ms.begin(), times_ms.end());
  const size_t n = times_ms.size();
  r.time_ms = n % 2 ? times_ms[n / 2] : (times_ms[n / 2 - 1] + times_ms[n / 2]) / 2;
  return r;
}

int64_t CandidateTimeoutMs(int64_t absolute_ms, double best_ms, double relative, int warmup_runs,
                           int min_repeats, double max_seconds) {
  if (best_ms <= 0) return absolute_ms;
  const double runs = warmup_runs + min_repeats;
  const double relative_ms = relative * best_ms * runs + max_seconds * 1e3 + 1000;
  return std::min<int64_t>(absolute_ms, static_cast<int64_t>(relative_ms));
}

MeasureResult ApplyAccuracyBudget(MeasureResult result, double max_rel_error) {
  if (result.status != MeasurementStatus::kOk) return result;
  if (WithinAccuracyBudget(result.max_rel_error, max_rel_error)) return result;
  result.status = MeasurementStatus::kTooInaccurate;
  result.message = result.max_rel_error
                       ? absl::StrFormat("max relative error %.3g is above the budget %.3g",
                                         *result.max_rel_error, max_rel_error)
                       : absl::StrFormat(
                             "no error was measured (this worker does not check outputs), so "
                             "the accuracy budget %.3g cannot be met",
                             max_rel_error);
  result.time_ms.reset();
  return result;
}

Record ToRecord(const TaskKey& task, const DeviceInfo& device, const Configuration& config,
                const MeasureResult& result, const std::string& worker) {
  Record r;
  r.kernel = task.kernel;
  r.kernel_version = task.kernel_version;
  r.problem = task.problem;
  r.device = device;
  r.config = config;
  r.status = result.status;
  r.message = result.message;
  r.time_ms = result.time_ms;
  r.repeat_times_ms = result.repeat_times_ms;
  FillRepeatStatistics(r);
  r.max_rel_error = result.max_rel_error;
  r.worker = worker;
  r.source = "worker";
  return r;
}

}  // namespace ktune
