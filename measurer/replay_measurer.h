// A Measurer that answers from a recorded space (T4 or Kernel Tuner file): each configuration gets
// the status and times recorded for it. Lets strategies be compared on real landscapes without
// the hardware. A configuration the file does not hold is invalid_config. A result's repeats are
// the recorded runtimes scaled so that their median is the recorded objective (time_ms), as a
// server that takes the median of a worker's repeats needs (the objective alone when the file
// records no runtimes).
#ifndef KTUNE_MEASURER_REPLAY_MEASURER_H_
#define KTUNE_MEASURER_REPLAY_MEASURER_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "db/interchange/record_files.h"
#include "measurer/measurer.h"

namespace ktune {

class ReplayMeasurer : public Measurer {
 public:
  // `records` are the file's records (RecordedSpace::records); the last one of a configuration
  // wins. All must be of one device.
  explicit ReplayMeasurer(const std::vector<Record>& records);

  DeviceInfo device() const override { return device_; }
  absl::StatusOr<std::vector<MeasureResult>> Measure(
      const TaskKey& task, const std::vector<Configuration>& configs) override;

  // The fastest ok time in the file: what "optimum" means for this space.
  double optimum_ms() const { return optimum_ms_; }
  // Makes each measurement take `ms` of wall time (the batch sleeps), to simulate a device
  // whose measurements cost that much: what the agent's time budget is judged against.
  void set_simulated_cost_ms(double ms) { simulated_cost_ms_ = ms; }
  // Number of measurements answered so far.
  int64_t measurements() const { return measurements_; }

  // A simulated regression (a driver update that slows some kernels down): once this measurer
  // has answered `after_measurements` measurements, the configurations holding every parameter
  // value of `where` take `factor` times as long.
  struct Regression {
    int64_t after_measurements = 0;
    double factor = 1;
    Configuration where;
  };
  void set_regression(Regression r) { regression_ = std::move(r); }
  // The fastest ok time with the regression in effect: the new optimum.
  double RegressedOptimumMs() const;
  // The fastest ok time, with the regression in effect, among the configurations answered
  // before the regression began: the best that re-measuring the earlier tuning's records alone
  // could find (0 when none was). Tells a retuning search that missed the new optimum because it
  // never looked where no record was from one that misread the records it had.
  double RegressedBestOfEarlierMs() const;

 private:
  DeviceInfo device_;
  absl::flat_hash_map<std::string, MeasureResult> by_config_;  // canonical JSON -> result
  double optimum_ms_ = 0;
  int64_t measurements_ = 0;
  double simulated_cost_ms_ = 0;
  Regression regression_;
  // Canonical JSON of each configuration of the file answered -> the measurements before it.
  absl::flat_hash_map<std::string, int64_t> first_measured_;
  bool Regressed(const Configuration& c) const;
};

}  // namespace ktune

#endif  // KTUNE_MEASURER_REPLAY_MEASURER_H_
