// The tuning database's domain types: measurement statuses, devices, tasks and records.
#ifndef KTUNE_DB_RECORD_H_
#define KTUNE_DB_RECORD_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/configuration.h"

namespace ktune {

// The outcome of one measurement. A failure is a record with one of these, never a sentinel time.
enum class MeasurementStatus {
  kOk,
  kCompileError,
  kRuntimeError,   // crash, signal, launch failure
  kTimeout,        // build or run exceeded its limit
  kWrongResult,    // output differs from the reference
  kInvalidConfig,  // breaks the constraints or the device's limits
  kLost,           // the worker vanished with the lease
  // Ran and was timed, but its measured error (Record::max_rel_error) broke the task's accuracy
  // budget: a measured outcome, never served (its times stay in repeat_times_ms, time_ms is unset).
  kTooInaccurate,
};

// "ok", "compile_error", "runtime_error", "timeout", "wrong_result", "invalid_config", "lost",
// "too_inaccurate".
absl::string_view StatusName(MeasurementStatus s);
absl::StatusOr<MeasurementStatus> ParseStatusName(absl::string_view name);
inline constexpr int kMeasurementStatusCount = 8;

// A device as results depend on it, at the three levels lookups fall back through.
struct DeviceInfo {
  std::string fingerprint_json;  // canonical JSON of every fact (exact level)
  std::string device_class;      // the model, e.g. "A100" (class level)
  std::string family;            // the architecture, e.g. "ampere"; may be empty (family level)

  // StableHashHex(fingerprint_json).
  std::string FingerprintHash() const;
  // The fingerprint's "cores" (CPU devices say how many), else 1 << 20: no bound on a kernel's
  // threads.
  int64_t Cores() const;
  // A device known only by its model name (as in recorded spaces): fingerprint {"name": name},
  // class = name, family inferred from the name (InferDeviceFamily), or empty.
  static DeviceInfo FromName(const std::string& name);
};

// What is tuned: kernel + kernel version + problem + device class.
struct TaskKey {
  std::string kernel;
  std::string kernel_version;  // empty: any version (queries) / unversioned (records)
  Problem problem;
  std::string device_class;
};

// The largest Record::payload accepted (1 MiB): AddRecords and the API refuse larger ones.
inline constexpr size_t kMaxRecordPayloadBytes = 1 << 20;

// One measurement of one configuration for one task.
// The times a record may hold, in ms (its time, repeats, median and minimum): a kernel faster
// than a picosecond or slower than 11 days is a broken timer or a corrupt file.
inline constexpr double kMinTimeMs = 1e-9;
inline constexpr double kMaxTimeMs = 1e9;

struct Record {
  std::string kernel;
  std::string kernel_version;
  Problem problem;
  DeviceInfo device;
  Configuration config;
  MeasurementStatus status = MeasurementStatus::kOk;
  std::string message;  // why it failed; empty when OK
  // The objective: the median of the repeats for ktune's own measurements, the file's recorded
  // objective for imported ones. Set exactly when status is kOk.
  std::optional<double> time_ms;
  std::vector<double> repeat_times_ms;                 // every repeat, in order
  std::optional<double> median_ms, min_ms, stddev_ms;  // of the repeats; unset without repeats
  std::string worker;
  std::optional<int64_t> measured_at_us;  // Unix microseconds, UTC; unset if the source did not say
  std::string source;                     // "worker", "import:<file name>", or a client's name
  // A client's opaque payload (UTF-8 text, at most kMaxRecordPayloadBytes), kept verbatim; empty
  // for ktune's own measurements.
  std::string payload;
  // The output's measured error against the trusted reference on the task's inputs:
  // max |out - ref| / max |ref| over every output (the same normalisation as a kernel's
  // tolerance). Unset when the measurement did not report one (recorded spaces, old records,
  // failures before the check); an unset error is never within an accuracy budget.
  std::optional<double> max_rel_error;

  std::string ConfigHash() const { return ParamMapHash(config); }
  // Content hash of everything above (16 hex digits): equal records have equal ids, so importing
  // the same data twice adds nothing, and an export re-imports to the same ids. An empty payload
  // is left out of the hash, and so is an unset max_rel_error, so records without them keep the
  // ids they had before those fields existed.
  std::string RecordId() const;
};

// Whether a measured error (Record::max_rel_error) is within an accuracy budget: always without a
// budget, never when the error is unknown, else error <= budget.
inline bool WithinAccuracyBudget(std::optional<double> error, std::optional<double> budget) {
  return !budget || (error && *error <= *budget);
}

// Sets median_ms, min_ms and stddev_ms (sample standard deviation; 0 for one repeat) from
// repeat_times_ms; clears them when there are no repeats.
void FillRepeatStatistics(Record& r);

// One JSON object on one line, keys in a fixed order, including "record_id" ("payload" only when
// not empty). The JSONL interchange format: RecordFromJsonLine(RecordToJsonLine(r)) == r, field
// for field.
// `stale_before_us`, when given, is written as "stale_before_us": the record's task was marked
// stale at that boundary (TuningDatabase::MarkStale) in the database it comes from, and this
// record is one that boundary hides. It is not part of the record's content (nor of its id).
std::string RecordToJsonLine(const Record& r,
                             std::optional<int64_t> stale_before_us = std::nullopt);
// InvalidArgument naming the missing or mistyped field. A "record_id" present in the line must
// match the content (a hand-edited record is refused rather than stored under a wrong id).
// `stale_before_us` (may be null) gets the line's "stale_before_us", or nullopt.
absl::StatusOr<Record> RecordFromJsonLine(absl::string_view line,
                                          std::optional<int64_t>* stale_before_us = nullptr);

// RFC 3339 with microseconds in UTC ("2023-12-22T09:54:05.502007+00:00") and back.
std::string FormatTimestampUs(int64_t unix_us);
absl::StatusOr<int64_t> ParseTimestampUs(absl::string_view text);

}  // namespace ktune

#endif  // KTUNE_DB_RECORD_H_
