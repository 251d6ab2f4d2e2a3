// Production telemetry: how a configuration actually ran in a deployed program. Stored apart from
// tuning records (production times are not lab times), each report with its provenance.
#ifndef KTUNE_DB_TELEMETRY_H_
#define KTUNE_DB_TELEMETRY_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "db/record.h"

namespace ktune {

// One report: `count` calls of `config` for one task on one device, summarised.
struct TelemetryReport {
  std::string kernel;
  std::string kernel_version;  // empty: unversioned
  Problem problem;
  DeviceInfo device;  // class required; a fingerprint when the program knows it
  Configuration config;
  int64_t count = 0;       // calls summarised, 1..1e12
  double mean_ms = 0;      // their mean time, > 0 and finite
  double stddev_ms = 0;    // their spread, >= 0 and finite (0 for one call)
  int64_t window_start_us = 0, window_end_us = 0;  // Unix microseconds; start <= end
  int64_t received_at_us = 0;                      // set by the server
  std::string reporter;                            // who sent it (the token's role, or "local")
};

// The rules a stored report meets: InvalidArgument naming the field.
absl::Status ValidateTelemetry(const TelemetryReport& r);

}  // namespace ktune

#endif  // KTUNE_DB_TELEMETRY_H_
