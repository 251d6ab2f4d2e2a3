// The seam between search and hardware: a Measurer measures configurations of a task on one
// device and reports each outcome as data.
//
// Implementations: ReplayMeasurer (answers from a recorded space); CpuMeasurer and CudaMeasurer
// come with the kernel issues. A failing candidate is a result with a status and a message,
// never an error of the call: an error means the measurer itself cannot go on.
#ifndef KTUNE_MEASURER_MEASURER_H_
#define KTUNE_MEASURER_MEASURER_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "db/record.h"

namespace ktune {

struct MeasureResult {
  MeasurementStatus status = MeasurementStatus::kOk;
  std::string message;                  // why it failed; empty when ok
  std::optional<double> time_ms;        // the objective; set exactly when ok
  std::vector<double> repeat_times_ms;  // every timed run
  // The output's measured error against the reference (Record::max_rel_error); unset when the
  // measurer does not check outputs (replay) or the candidate failed before the check.
  std::optional<double> max_rel_error;
};

class Measurer {
 public:
  virtual ~Measurer() = default;

  // The device results are measured on.
  virtual DeviceInfo device() const = 0;

  // Measures `configs` of `task`: one result per configuration, in order. Not thread-safe unless
  // an implementation says so. CancelledError when the stop check (below) turned true before the
  // last configuration was measured: what was measured is dropped with it.
  virtual absl::StatusOr<std::vector<MeasureResult>> Measure(
      const TaskKey& task, const std::vector<Configuration>& configs) = 0;

  // A check that Measure calls make between configurations (and before a batch's builds): once
  // it returns true, the call stops there, CancelledError. A worker whose lease the server took
  // back sets it, and stops measuring candidates someone else now measures. Empty: never stops.
  // Set it between Measure calls, not during one.
  void set_stop_check(std::function<bool()> stop) { stop_ = std::move(stop); }

 protected:
  // Whether the stop check says stop; the error to return when it does.
  bool StopRequested() const { return stop_ && stop_(); }
  static absl::Status Stopped(size_t measured, size_t of) {
    return absl::CancelledError(
        absl::StrCat("stopped after ", measured, " of ", of, " configurations"));
  }

 private:
  std::function<bool()> stop_;
};

// What a result's times must be for the server to store it: at most kMaxRepeatTimes, each a
// number of milliseconds from kMinTimeMs to kMaxTimeMs (a zero, negative, NaN or 1e-300 time
// would become a task's best answer; 1e308 overflowed the GFLOP/s shown).
inline constexpr int kMaxRepeatTimes = 1024;
bool IsValidTimeMs(double t);

// A failed candidate.
MeasureResult FailedResult(MeasurementStatus status, std::string message);

// An ok result from the per-run times of a candidate's samples: the time is their median.
// A runtime_error when there are none.
MeasureResult ResultFromSamples(std::vector<double> times_ms);

// How long a runner may take for one candidate: `absolute_ms`, or less once the task has a best
// time: `relative` × best × (warm-up + minimum runs) + the sampling cap + 1 s. Far slower
// candidates are timeouts.
int64_t CandidateTimeoutMs(int64_t absolute_ms, double best_ms, double relative, int warmup_runs,
                           int min_repeats, double max_seconds);

// A result judged against an accuracy budget (a maximum relative error): an ok result whose
// error is above the budget, or was not measured, becomes too_inaccurate, keeping its times and
// error and saying why. Anything else is returned unchanged.
MeasureResult ApplyAccuracyBudget(MeasureResult result, double max_rel_error);

// The record a result becomes in the tuning database.
Record ToRecord(const TaskKey& task, const DeviceInfo& device, const Configuration& config,
                const MeasureResult& result, const std::string& worker);

}  // namespace ktune

#endif  // KTUNE_MEASURER_MEASURER_H_
