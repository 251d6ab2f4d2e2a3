// What a runner's answer to one candidate means, for both runners (ktune-runner and
// ktune-cuda-runner): their RunResponse messages share the status names OK, INVALID_CONFIG,
// WRONG_RESULT and RUNTIME_ERROR, a message, the samples' per-run times and the checked run's
// max_rel_error.
#ifndef KTUNE_MEASURER_RUNNER_RESULT_H_
#define KTUNE_MEASURER_RUNNER_RESULT_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "measurer/measurer.h"
#include "measurer/runner_process.h"

namespace ktune {

// The result of a call the runner did not answer (timed out or died); nullopt when it answered.
inline std::optional<MeasureResult> UnansweredResult(RunnerProcess::Outcome outcome,
                                                     int64_t timeout_ms, const std::string& death) {
  switch (outcome) {
    case RunnerProcess::Outcome::kTimedOut:
      return FailedResult(MeasurementStatus::kTimeout,
                          absl::StrCat("no result within ", timeout_ms / 1000.0, " s; stopped"));
    case RunnerProcess::Outcome::kDied:
      return FailedResult(MeasurementStatus::kRuntimeError,
                          absl::StrCat("the kernel's process ", death));
    case RunnerProcess::Outcome::kAnswered:
      break;
  }
  return std::nullopt;
}

// The result an answered RunResponse means; an ok one carries the checked run's error.
template <typename RunResponse>
MeasureResult ResultFromRunner(const RunResponse& r) {
  switch (r.status()) {
    case RunResponse::OK: {
      MeasureResult ok = ResultFromSamples({r.times_ms().begin(), r.times_ms().end()});
      if (ok.status == MeasurementStatus::kOk && r.has_max_rel_error()) {
        ok.max_rel_error = r.max_rel_error();
      }
      return ok;
    }
    case RunResponse::INVALID_CONFIG:
      return FailedResult(MeasurementStatus::kInvalidConfig, r.message());
    case RunResponse::WRONG_RESULT:
      return FailedResult(MeasurementStatus::kWrongResult, r.message());
    default:
      return FailedResult(MeasurementStatus::kRuntimeError, r.message());
  }
}

}  // namespace ktune

#endif  // KTUNE_MEASURER_RUNNER_RESULT_H_
