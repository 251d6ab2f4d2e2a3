#include "measurer/measurer.h"

namespace ktune {

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
  r.worker = worker;
  r.source = "worker";
  return r;
}

}  // namespace ktune
