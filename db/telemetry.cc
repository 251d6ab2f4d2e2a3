#include "db/telemetry.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace ktune {

absl::Status ValidateTelemetry(const TelemetryReport& r) {
  if (r.kernel.empty()) return absl::InvalidArgumentError("telemetry: kernel is required");
  if (r.device.device_class.empty()) {
    return absl::InvalidArgumentError("telemetry: device.device_class is required");
  }
  if (r.config.empty()) return absl::InvalidArgumentError("telemetry: config is required");
  // The fingerprint names one device (a JSON object of its properties), as a record's does: a
  // string or number named no device and still raised a new_environment flag each.
  const nlohmann::json fingerprint =
      nlohmann::json::parse(r.device.fingerprint_json, nullptr, false);
  if (!fingerprint.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "telemetry: device fingerprint_json must be a JSON object of the device's properties, "
        "not '",
        r.device.fingerprint_json.substr(0, 100), "'"));
  }
  KTUNE_RETURN_IF_ERROR(CheckFiniteValues(r.problem, "telemetry: problem"));
  KTUNE_RETURN_IF_ERROR(CheckFiniteValues(r.config, "telemetry: config"));
  if (r.count < 1 || r.count > 1'000'000'000'000) {
    return absl::InvalidArgumentError(
        absl::StrCat("telemetry: count is ", r.count, "; it must be between 1 and 1e12"));
  }
  if (!std::isfinite(r.mean_ms) || r.mean_ms <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("telemetry: mean_ms is ", r.mean_ms, "; it must be a positive number"));
  }
  if (!std::isfinite(r.stddev_ms) || r.stddev_ms < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("telemetry: stddev_ms is ", r.stddev_ms, "; it must be >= 0 and finite"));
  }
  if (r.window_end_us < r.window_start_us) {
    return absl::InvalidArgumentError("telemetry: the window ends before it starts");
  }
  return absl::OkStatus();
}

}  // namespace ktune
