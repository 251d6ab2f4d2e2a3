#include "db/record.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/hash.h"
#include "common/median.h"
#include "common/status_macros.h"
#include "db/device_family.h"
#include "db/record_checks.h"

namespace ktune {
namespace {

constexpr absl::string_view kStatusNames[kMeasurementStatusCount] = {
    "ok",           "compile_error", "runtime_error", "timeout", "wrong_result",
    "invalid_config", "lost",        "too_inaccurate"};

// nlohmann::ordered_json keeps insertion order, so every line has the same key order.
using Json = nlohmann::ordered_json;

// Compact JSON; a string that is not UTF-8 dumps with U+FFFD instead of throwing (a record's
// id must never throw: it runs inside the database's commit).
std::string DumpJson(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Json ParamMapToJson(const ParamMap& m) {
  Json j = Json::object();
  for (const auto& [k, v] : m) std::visit([&](const auto& x) { j[k] = x; }, v);
  return j;
}

// The record without its id: what the id hashes.
Json RecordContentJson(const Record& r) {
  Json j;
  j["kernel"] = r.kernel;
  j["kernel_version"] = r.kernel_version;
  j["problem"] = ParamMapToJson(r.problem);
  Json fp = Json::parse(r.device.fingerprint_json.empty() ? "{}" : r.device.fingerprint_json,
                        nullptr, false);
  j["device"] = {{"fingerprint", fp.is_discarded() ? Json(r.device.fingerprint_json) : fp},
                 {"class", r.device.device_class},
                 {"family", r.device.family}};
  j["config"] = ParamMapToJson(r.config);
  j["status"] = std::string(StatusName(r.status));
  j["message"] = r.message;
  j["time_ms"] = r.time_ms ? Json(*r.time_ms) : Json(nullptr);
  j["repeat_times_ms"] = r.repeat_times_ms;
  j["median_ms"] = r.median_ms ? Json(*r.median_ms) : Json(nullptr);
  j["min_ms"] = r.min_ms ? Json(*r.min_ms) : Json(nullptr);
  j["stddev_ms"] = r.stddev_ms ? Json(*r.stddev_ms) : Json(nullptr);
  j["worker"] = r.worker;
  j["measured_at"] = r.measured_at_us ? Json(FormatTimestampUs(*r.measured_at_us)) : Json(nullptr);
  j["source"] = r.source;
  if (!r.payload.empty()) j["payload"] = r.payload;
  if (r.max_rel_error) j["max_rel_error"] = *r.max_rel_error;
  return j;
}

absl::StatusOr<ParamMap> ParamMapFromJson(const Json& j, const char* field) {
  if (!j.is_object())
    return absl::InvalidArgumentError(absl::StrCat("'", field, "' is not an object"));
  return ParseParamMapJson(j.dump());
}

absl::StatusOr<std::optional<double>> OptionalNumber(const Json& j, const char* field) {
  if (!j.contains(field) || j[field].is_null()) return std::optional<double>();
  if (!j[field].is_number()) {
    return absl::InvalidArgumentError(absl::StrCat("'", field, "' is not a number"));
  }
  return std::optional<double>(j[field].get<double>());
}

absl::StatusOr<std::string> RequiredString(const Json& j, const char* field) {
  if (!j.contains(field) || !j[field].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("'", field, "' is missing or not a string"));
  }
  return j[field].get<std::string>();
}

}  // namespace

absl::string_view StatusName(MeasurementStatus s) { return kStatusNames[static_cast<int>(s)]; }

absl::StatusOr<MeasurementStatus> ParseStatusName(absl::string_view name) {
  for (int i = 0; i < kMeasurementStatusCount; ++i) {
    if (kStatusNames[i] == name) return static_cast<MeasurementStatus>(i);
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown measurement status '", name,
                                                 "' (expected ok, compile_error, runtime_error, "
                                                 "timeout, wrong_result, invalid_config, lost, "
                                                 "too_inaccurate)"));
}

int64_t DeviceInfo::Cores() const {
  const Json facts = Json::parse(fingerprint_json, nullptr, false);
  if (facts.is_object() && facts.contains("cores") && facts["cores"].is_number_integer()) {
    return facts["cores"].get<int64_t>();
  }
  return int64_t{1} << 20;
}

std::string DeviceInfo::FingerprintHash() const { return StableHashHex(fingerprint_json); }

DeviceInfo DeviceInfo::FromName(const std::string& name) {
  DeviceInfo d;
  d.fingerprint_json = nlohmann::json({{"name", name}}).dump();
  d.device_class = name;
  d.family = InferDeviceFamily(name);
  return d;
}

std::string Record::RecordId() const { return StableHashHex(DumpJson(RecordContentJson(*this))); }

void FillRepeatStatistics(Record& r) {
  const auto& t = r.repeat_times_ms;
  if (t.empty()) {
    r.median_ms.reset();
    r.min_ms.reset();
    r.stddev_ms.reset();
    return;
  }
  const size_t n = t.size();
  r.median_ms = Median(t);
  r.min_ms = *std::min_element(t.begin(), t.end());
  double mean = 0;
  for (double x : t) mean += x;
  mean /= static_cast<double>(n);
  double ss = 0;
  for (double x : t) ss += (x - mean) * (x - mean);
  r.stddev_ms = n > 1 ? std::sqrt(ss / static_cast<double>(n - 1)) : 0.0;
}

std::string RecordToJsonLine(const Record& r, std::optional<int64_t> stale_before_us) {
  Json j = RecordContentJson(r);
  std::string id = StableHashHex(DumpJson(j));
  Json out;
  out["record_id"] = id;
  for (auto it = j.begin(); it != j.end(); ++it) out[it.key()] = it.value();
  if (stale_before_us) out["stale_before_us"] = *stale_before_us;
  return DumpJson(out);
}

absl::StatusOr<Record> RecordFromJsonLine(absl::string_view line,
                                          std::optional<int64_t>* stale_before_us) {
  Json j = Json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded()) return absl::InvalidArgumentError("not valid JSON");
  if (!j.is_object()) return absl::InvalidArgumentError("not a JSON object");
  if (stale_before_us != nullptr) {
    stale_before_us->reset();
    if (j.contains("stale_before_us")) {
      if (!j["stale_before_us"].is_number_integer() ||
          (j["stale_before_us"].is_number_unsigned() &&
           j["stale_before_us"].get<uint64_t>() >
               static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))) {
        return absl::InvalidArgumentError("'stale_before_us' is not an integer");
      }
      *stale_before_us = j["stale_before_us"].get<int64_t>();
      if (**stale_before_us <= 0) {  // as ImportRecords refuses it
        return absl::InvalidArgumentError(
            "'stale_before_us' must be a time after 1970 (Unix microseconds)");
      }
    }
  }
  Record r;
  KTUNE_ASSIGN_OR_RETURN(r.kernel, RequiredString(j, "kernel"));
  if (j.contains("kernel_version")) {
    KTUNE_ASSIGN_OR_RETURN(r.kernel_version, RequiredString(j, "kernel_version"));
  }
  if (j.contains("problem")) {
    KTUNE_ASSIGN_OR_RETURN(r.problem, ParamMapFromJson(j["problem"], "problem"));
  }
  if (!j.contains("device") || !j["device"].is_object()) {
    return absl::InvalidArgumentError("'device' is missing or not an object");
  }
  const Json& d = j["device"];
  KTUNE_ASSIGN_OR_RETURN(r.device.device_class, RequiredString(d, "class"));
  if (d.contains("family")) {
    KTUNE_ASSIGN_OR_RETURN(r.device.family, RequiredString(d, "family"));
  }
  if (!d.contains("fingerprint"))
    return absl::InvalidArgumentError("'device.fingerprint' is missing");
  // Canonical form: nlohmann::json objects dump with sorted keys.
  r.device.fingerprint_json = d["fingerprint"].is_string()
                                  ? d["fingerprint"].get<std::string>()
                                  : nlohmann::json::parse(d["fingerprint"].dump()).dump();
  if (!j.contains("config")) return absl::InvalidArgumentError("'config' is missing");
  KTUNE_ASSIGN_OR_RETURN(r.config, ParamMapFromJson(j["config"], "config"));
  KTUNE_ASSIGN_OR_RETURN(std::string status, RequiredString(j, "status"));
  KTUNE_ASSIGN_OR_RETURN(r.status, ParseStatusName(status));
  if (j.contains("message")) {
    KTUNE_ASSIGN_OR_RETURN(r.message, RequiredString(j, "message"));
  }
  KTUNE_ASSIGN_OR_RETURN(r.time_ms, OptionalNumber(j, "time_ms"));
  if ((r.status == MeasurementStatus::kOk) != r.time_ms.has_value()) {
    return absl::InvalidArgumentError("'time_ms' must be set exactly when status is ok");
  }
  if (j.contains("repeat_times_ms")) {
    if (!j["repeat_times_ms"].is_array()) {
      return absl::InvalidArgumentError("'repeat_times_ms' is not an array");
    }
    for (const auto& t : j["repeat_times_ms"]) {
      if (!t.is_number()) return absl::InvalidArgumentError("'repeat_times_ms' holds a non-number");
      r.repeat_times_ms.push_back(t.get<double>());
    }
  }
  KTUNE_ASSIGN_OR_RETURN(r.median_ms, OptionalNumber(j, "median_ms"));
  KTUNE_ASSIGN_OR_RETURN(r.min_ms, OptionalNumber(j, "min_ms"));
  KTUNE_ASSIGN_OR_RETURN(r.stddev_ms, OptionalNumber(j, "stddev_ms"));
  if (j.contains("worker")) {
    KTUNE_ASSIGN_OR_RETURN(r.worker, RequiredString(j, "worker"));
  }
  // null or "" (as a T4 file's empty timestamp): not known.
  if (j.contains("measured_at") && !j["measured_at"].is_null() &&
      !(j["measured_at"].is_string() && j["measured_at"].get<std::string>().empty())) {
    KTUNE_ASSIGN_OR_RETURN(std::string ts, RequiredString(j, "measured_at"));
    KTUNE_ASSIGN_OR_RETURN(r.measured_at_us, ParseTimestampUs(ts));
  }
  if (j.contains("source")) {
    KTUNE_ASSIGN_OR_RETURN(r.source, RequiredString(j, "source"));
  }
  if (j.contains("payload")) {
    KTUNE_ASSIGN_OR_RETURN(r.payload, RequiredString(j, "payload"));
  }
  KTUNE_ASSIGN_OR_RETURN(r.max_rel_error, OptionalNumber(j, "max_rel_error"));
  KTUNE_RETURN_IF_ERROR(CheckImportedNumbers(r));
  if (j.contains("record_id")) {
    KTUNE_ASSIGN_OR_RETURN(std::string id, RequiredString(j, "record_id"));
    if (id != r.RecordId()) {
      return absl::InvalidArgumentError(
          absl::StrCat("'record_id' ", id, " does not match the record's content (", r.RecordId(),
                       "): the line was edited; remove record_id to import it as a new record"));
    }
  }
  return r;
}

absl::Status CheckImportedNumbers(const Record& r) {
  auto finite_at_least_0 = [](double v) { return std::isfinite(v) && v >= 0; };
  if (r.time_ms && !(std::isfinite(*r.time_ms) && *r.time_ms > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("time_ms is ", *r.time_ms, "; a finite time above 0"));
  }
  for (double t : r.repeat_times_ms) {
    if (!finite_at_least_0(t)) {
      return absl::InvalidArgumentError(
          absl::StrCat("repeat_times_ms holds ", t, "; finite times, not negative"));
    }
  }
  for (const auto& [field, value] :
       {std::pair<const char*, const std::optional<double>&>{"median_ms", r.median_ms},
        {"min_ms", r.min_ms},
        {"stddev_ms", r.stddev_ms},
        {"max_rel_error", r.max_rel_error}}) {
    if (value && !finite_at_least_0(*value)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " is ", *value, "; a finite number, not negative"));
    }
  }
  if (r.worker.size() > 4096 || r.source.size() > 4096) {
    return absl::InvalidArgumentError("worker and source are at most 4096 bytes each");
  }
  return absl::OkStatus();
}

std::string FormatTimestampUs(int64_t unix_us) {
  return absl::FormatTime(absl::RFC3339_full, absl::FromUnixMicros(unix_us), absl::UTCTimeZone());
}

absl::StatusOr<int64_t> ParseTimestampUs(absl::string_view text) {
  absl::Time t;
  std::string err;
  // RFC 3339 ("2023-12-22T09:54:05.502007+00:00"), and the space-separated form of T4 files.
  if (absl::ParseTime(absl::RFC3339_full, text, &t, &err) ||
      absl::ParseTime("%Y-%m-%d %H:%M:%E*S%Ez", text, &t, &err) ||
      absl::ParseTime("%Y-%m-%d %H:%M:%E*S", text, &t, &err) ||
      absl::ParseTime("%Y-%m-%dT%H:%M:%E*S", text, &t, &err)) {  // no offset: UTC
    return absl::ToUnixMicros(t);
  }
  return absl::InvalidArgumentError(absl::StrCat("bad timestamp '", text, "': ", err));
}

}  // namespace ktune
