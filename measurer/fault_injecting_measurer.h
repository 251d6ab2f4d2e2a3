// A Measurer for tests: passes configurations to another Measurer, except that chosen ones come
// back as a chosen failure (or the whole call fails), so that strategies, tuning loops and
// workers can be tested against every outcome without kernels that really crash.
#ifndef KTUNE_MEASURER_FAULT_INJECTING_MEASURER_H_
#define KTUNE_MEASURER_FAULT_INJECTING_MEASURER_H_

#include <functional>
#include <optional>
#include <utility>

#include "measurer/measurer.h"

namespace ktune {

class FaultInjectingMeasurer : public Measurer {
 public:
  // Decides the fate of one configuration: nullopt measures it normally.
  using Rule = std::function<std::optional<MeasureResult>(const Configuration&)>;

  FaultInjectingMeasurer(Measurer* inner, Rule rule) : inner_(inner), rule_(std::move(rule)) {}

  // The next `calls` calls to Measure fail with `error` (the measurer itself broke).
  void FailNextCalls(int calls, absl::Status error) {
    failing_calls_ = calls;
    error_ = std::move(error);
  }

  DeviceInfo device() const override { return inner_->device(); }

  absl::StatusOr<std::vector<MeasureResult>> Measure(
      const TaskKey& task, const std::vector<Configuration>& configs) override {
    if (failing_calls_ > 0) {
      --failing_calls_;
      return error_;
    }
    std::vector<MeasureResult> results(configs.size());
    std::vector<Configuration> passed;
    std::vector<size_t> where;
    for (size_t i = 0; i < configs.size(); ++i) {
      if (std::optional<MeasureResult> injected = rule_(configs[i])) {
        results[i] = *std::move(injected);
      } else {
        passed.push_back(configs[i]);
        where.push_back(i);
      }
    }
    if (!passed.empty()) {
      inner_->set_stop_check([this] { return StopRequested(); });  // this one's, passed on
      absl::StatusOr<std::vector<MeasureResult>> measured = inner_->Measure(task, passed);
      inner_->set_stop_check(nullptr);  // it may outlive this one
      if (!measured.ok()) return measured.status();
      for (size_t k = 0; k < where.size(); ++k) results[where[k]] = std::move((*measured)[k]);
    }
    return results;
  }

  // A failure with `status` and `message`, for rules.
  static MeasureResult Failure(MeasurementStatus status, std::string message) {
    MeasureResult r;
    r.status = status;
    r.message = std::move(message);
    return r;
  }

 private:
  Measurer* inner_;
  Rule rule_;
  int failing_calls_ = 0;
  absl::Status error_;
};

}  // namespace ktune

#endif  // KTUNE_MEASURER_FAULT_INJECTING_MEASURER_H_
