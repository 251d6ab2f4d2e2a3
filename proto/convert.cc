#include "proto/convert.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace ktune {

void ToProto(const ParamMap& params, google::protobuf::Map<std::string, v1::ParamValue>* out) {
  for (const auto& [name, value] : params) {
    v1::ParamValue& v = (*out)[name];
    if (const auto* i = std::get_if<int64_t>(&value)) {
      v.set_int_value(*i);
    } else if (const auto* d = std::get_if<double>(&value)) {
      v.set_float_value(*d);
    } else {
      v.set_string_value(std::get<std::string>(value));
    }
  }
}

absl::StatusOr<ParamMap> FromProto(const google::protobuf::Map<std::string, v1::ParamValue>& in,
                                   const char* field) {
  if (in.size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat(field, " has more than 64 entries"));
  }
  ParamMap out;
  for (const auto& [name, value] : in) {
    if (name.empty() || name.size() > 64) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": bad parameter name '", name, "'"));
    }
    switch (value.kind_case()) {
      case v1::ParamValue::kIntValue:
        out[name] = value.int_value();
        break;
      case v1::ParamValue::kFloatValue:
        out[name] = value.float_value();
        break;
      case v1::ParamValue::kStringValue:
        if (value.string_value().size() > 256) {
          return absl::InvalidArgumentError(absl::StrCat(field, ".", name, " is too long"));
        }
        out[name] = value.string_value();
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat(field, ".", name, " has no value"));
    }
  }
  return out;
}

v1::TaskKey ToProto(const TaskKey& task) {
  v1::TaskKey out;
  out.mutable_kernel()->set_name(task.kernel);
  out.mutable_kernel()->set_version(task.kernel_version);
  ToProto(task.problem, out.mutable_problem()->mutable_params());
  out.set_device_class(task.device_class);
  return out;
}

absl::StatusOr<TaskKey> FromProto(const v1::TaskKey& task) {
  TaskKey out;
  out.kernel = task.kernel().name();
  out.kernel_version = task.kernel().version();
  if (out.kernel.empty() || out.kernel.size() > 64) {
    return absl::InvalidArgumentError("task.kernel.name must be 1 to 64 bytes");
  }
  KTUNE_ASSIGN_OR_RETURN(out.problem, FromProto(task.problem().params(), "task.problem"));
  out.device_class = task.device_class();
  return out;
}

v1::DeviceFingerprint ToProto(const DeviceInfo& device) {
  v1::DeviceFingerprint out;
  out.set_device_class(device.device_class);
  out.set_family(device.family);
  (*out.mutable_extra())["fingerprint_json"] = device.fingerprint_json;
  return out;
}

absl::StatusOr<DeviceInfo> FromProto(const v1::DeviceFingerprint& device) {
  if (device.device_class().empty() || device.device_class().size() > 256) {
    return absl::InvalidArgumentError("device.device_class must be 1 to 256 bytes");
  }
  DeviceInfo out;
  out.device_class = device.device_class();
  out.family = device.family();
  auto it = device.extra().find("fingerprint_json");
  out.fingerprint_json =
      it != device.extra().end() ? it->second : CanonicalJson({{"name", device.device_class()}});
  if (out.fingerprint_json.size() > 16384) {
    return absl::InvalidArgumentError("device fingerprint is larger than 16 KiB");
  }
  return out;
}

v1::MeasurementStatus ToProto(MeasurementStatus status) {
  return static_cast<v1::MeasurementStatus>(static_cast<int>(status) + 1);
}

v1::Record ToProto(const Record& r) {
  v1::Record out;
  out.set_record_id(r.RecordId());
  *out.mutable_task() =
      ToProto(TaskKey{r.kernel, r.kernel_version, r.problem, r.device.device_class});
  *out.mutable_device() = ToProto(r.device);
  ToProto(r.config, out.mutable_config()->mutable_params());
  out.set_config_hash(r.ConfigHash());
  out.set_status(ToProto(r.status));
  out.set_message(r.message);
  if (r.time_ms) out.set_time_ms(*r.time_ms);
  for (double t : r.repeat_times_ms) out.add_repeat_times_ms(t);
  if (r.median_ms) out.set_median_ms(*r.median_ms);
  if (r.min_ms) out.set_min_ms(*r.min_ms);
  if (r.stddev_ms) out.set_stddev_ms(*r.stddev_ms);
  out.set_worker_id(r.worker);
  if (r.measured_at_us) {
    out.mutable_measured_at()->set_seconds(*r.measured_at_us / 1'000'000);
    out.mutable_measured_at()->set_nanos(static_cast<int32_t>(*r.measured_at_us % 1'000'000) *
                                         1000);
  }
  out.set_source(r.source);
  return out;
}

absl::StatusOr<MeasurementStatus> FromProto(v1::MeasurementStatus status) {
  const int s = static_cast<int>(status);
  if (s < 1 || s > 7) {
    return absl::InvalidArgumentError(absl::StrCat("unknown measurement status ", s));
  }
  return static_cast<MeasurementStatus>(s - 1);
}

}  // namespace ktune
