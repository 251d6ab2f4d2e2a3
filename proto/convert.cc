#include "proto/convert.h"

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/utf8.h"

namespace ktune {

v1::ParamValue ToProto(const ParamValue& value) {
  v1::ParamValue v;
  if (const auto* i = std::get_if<int64_t>(&value)) {
    v.set_int_value(*i);
  } else if (const auto* d = std::get_if<double>(&value)) {
    v.set_float_value(*d);
  } else {
    v.set_string_value(std::get<std::string>(value));
  }
  return v;
}

std::string FormatProtoValue(const v1::ParamValue& v) {
  switch (v.kind_case()) {
    case v1::ParamValue::kIntValue:
      return FormatParamValue(v.int_value());
    case v1::ParamValue::kFloatValue:
      return FormatParamValue(v.float_value());
    case v1::ParamValue::kStringValue:
      return FormatParamValue(v.string_value());
    default:
      return "";
  }
}

void ToProto(const ParamMap& params, google::protobuf::Map<std::string, v1::ParamValue>* out) {
  for (const auto& [name, value] : params) (*out)[name] = ToProto(value);
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
        if (!std::isfinite(value.float_value())) {
          return absl::InvalidArgumentError(
              absl::StrCat(field, ".", name, " is ", value.float_value(),
                           "; a parameter value must be a finite number"));
        }
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
  if (device.family().size() > 256) {
    return absl::InvalidArgumentError("device.family is longer than 256 bytes");
  }
  if (HasControlCharacter(device.device_class()) || HasControlCharacter(device.family())) {
    return absl::InvalidArgumentError(
        "device.device_class and family must not hold control "
        "characters");
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
  // A JSON object, as every reader of the stored fingerprint expects (explain, the Python
  // client's Device.fingerprint): a text that is not one was stored and broke them.
  if (!nlohmann::json::parse(out.fingerprint_json, nullptr, /*allow_exceptions=*/false)
           .is_object()) {
    return absl::InvalidArgumentError("device fingerprint_json must be a JSON object");
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
  out.set_payload(r.payload);
  if (r.max_rel_error) out.set_max_rel_error(*r.max_rel_error);
  return out;
}

absl::StatusOr<int64_t> MicrosFromProto(const google::protobuf::Timestamp& t, const char* field) {
  if (t.seconds() < 0 || t.seconds() > 253'402'300'799 || t.nanos() < 0 ||
      t.nanos() > 999'999'999) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " is out of range (from 1970-01-01 to 9999-12-31, with nanos 0 to 999,999,999)"));
  }
  return t.seconds() * 1'000'000 + t.nanos() / 1000;
}

absl::StatusOr<Record> FromProto(const v1::Record& in) {
  Record r;
  KTUNE_ASSIGN_OR_RETURN(TaskKey task, FromProto(in.task()));
  r.kernel = task.kernel;
  r.kernel_version = task.kernel_version;
  r.problem = task.problem;
  KTUNE_ASSIGN_OR_RETURN(r.device, FromProto(in.device()));
  if (!task.device_class.empty() && task.device_class != r.device.device_class) {
    return absl::InvalidArgumentError(absl::StrCat(
        "record.task.device_class '", task.device_class.substr(0, 64),
        "' is not record.device.device_class '", r.device.device_class.substr(0, 64), "'"));
  }
  KTUNE_ASSIGN_OR_RETURN(r.config, FromProto(in.config().params(), "record.config"));
  KTUNE_ASSIGN_OR_RETURN(r.status, FromProto(in.status()));
  if (in.message().size() > 4096) {
    return absl::InvalidArgumentError("record.message is longer than 4096 bytes");
  }
  r.message = in.message();
  if (in.has_time_ms()) r.time_ms = in.time_ms();
  if ((r.status == MeasurementStatus::kOk) != r.time_ms.has_value() ||
      (r.time_ms && !(*r.time_ms > 0))) {
    return absl::InvalidArgumentError(
        "record.time_ms must be set (and positive) exactly when status is OK");
  }
  if (in.repeat_times_ms_size() > 1024) {
    return absl::InvalidArgumentError("record.repeat_times_ms has more than 1024 values");
  }
  r.repeat_times_ms.assign(in.repeat_times_ms().begin(), in.repeat_times_ms().end());
  if (in.has_median_ms()) r.median_ms = in.median_ms();
  if (in.has_min_ms()) r.min_ms = in.min_ms();
  if (in.has_stddev_ms()) r.stddev_ms = in.stddev_ms();
  r.worker = in.worker_id();
  if (in.has_measured_at()) {
    KTUNE_ASSIGN_OR_RETURN(r.measured_at_us,
                           MicrosFromProto(in.measured_at(), "record.measured_at"));
  }
  r.source = in.source();
  if (in.payload().size() > kMaxRecordPayloadBytes) {
    return absl::InvalidArgumentError(absl::StrCat("record.payload is ", in.payload().size(),
                                                   " bytes; at most ", kMaxRecordPayloadBytes,
                                                   " (1 MiB)"));
  }
  r.payload = in.payload();
  if (in.has_max_rel_error()) {
    if (!(in.max_rel_error() >= 0 && std::isfinite(in.max_rel_error()))) {
      return absl::InvalidArgumentError("record.max_rel_error must be a finite number >= 0");
    }
    r.max_rel_error = in.max_rel_error();
  }
  if (!in.record_id().empty() && in.record_id() != r.RecordId()) {
    return absl::InvalidArgumentError(absl::StrCat("record.record_id ", in.record_id(),
                                                   " does not match its content (",
                                                   r.RecordId(), ")"));
  }
  return r;
}

absl::StatusOr<MeasurementStatus> FromProto(v1::MeasurementStatus status) {
  const int s = static_cast<int>(status);
  if (s < 1 || s > kMeasurementStatusCount) {
    return absl::InvalidArgumentError(absl::StrCat("unknown measurement status ", s));
  }
  return static_cast<MeasurementStatus>(s - 1);
}

v1::KernelSpec ToProto(const KernelDefinition& k) {
  v1::KernelSpec spec;
  spec.set_name(k.name);
  spec.set_language(k.language);
  spec.set_description(k.description);
  spec.set_source(k.source);
  for (const KernelParameter& p : k.parameters) {
    v1::KernelParameterSpec* param = spec.add_parameters();
    param->set_name(p.name);
    for (int64_t v : p.values) param->add_values(v);
    param->set_compile_time(p.compile_time);
    param->set_description(p.description);
  }
  for (const std::string& c : k.constraints) spec.add_constraints(c);
  for (const ProblemParameter& p : k.problem) {
    v1::ProblemParameterSpec* param = spec.add_problem();
    param->set_name(p.name);
    param->set_min(p.min);
    param->set_max(p.max);
    param->set_description(p.description);
  }
  for (const std::string& d : k.dtypes) spec.add_dtypes(d);
  for (const BufferSpec& b : k.buffers) {
    v1::BufferSpec* buffer = spec.add_buffers();
    buffer->set_name(b.name);
    buffer->set_elements(b.elements);
    buffer->set_output(b.output);
  }
  spec.set_flops(k.flops);
  spec.set_bytes(k.bytes);
  for (const auto& [name, expression] : k.default_config) {
    (*spec.mutable_default_config())[name] = expression;
  }
  spec.set_rtol(k.rtol);
  spec.set_atol(k.atol);
  if (k.language == "cuda") {
    for (const std::string& g : k.launch.grid) spec.mutable_launch()->add_grid(g);
    for (const std::string& b : k.launch.block) spec.mutable_launch()->add_block(b);
    spec.mutable_launch()->set_reference_items(k.launch.reference_items);
    spec.mutable_launch()->set_zero_outputs(k.launch.zero_outputs);
  }
  spec.set_reference_source(k.reference_source);
  spec.set_componentwise_error(k.componentwise_error);
  spec.set_version(k.Version());
  return spec;
}

absl::StatusOr<KernelDefinition> FromProto(const v1::KernelSpec& spec) {
  auto too_many = [](const char* field, size_t limit) {
    return absl::InvalidArgumentError(
        absl::StrCat("kernel.", field, " is over the API's limit of ", limit));
  };
  if (spec.source().size() > (1 << 20)) return too_many("source (bytes)", 1 << 20);
  if (spec.reference_source().size() > (1 << 20)) {
    return too_many("reference_source (bytes)", 1 << 20);
  }
  if (spec.parameters_size() > 64) return too_many("parameters", 64);
  if (spec.constraints_size() > 256) return too_many("constraints", 256);
  if (spec.problem_size() > 32) return too_many("problem", 32);
  if (spec.buffers_size() > 16) return too_many("buffers", 16);
  KernelDefinition k;
  k.name = spec.name();
  k.language = spec.language();
  k.description = spec.description();
  k.source = spec.source();
  for (const v1::KernelParameterSpec& p : spec.parameters()) {
    if (p.values_size() > 4096) return too_many("parameters[].values", 4096);
    k.parameters.push_back({p.name(), {p.values().begin(), p.values().end()}, p.compile_time(),
                            p.description()});
  }
  k.constraints.assign(spec.constraints().begin(), spec.constraints().end());
  for (const v1::ProblemParameterSpec& p : spec.problem()) {
    k.problem.push_back({p.name(), p.min(), p.max(), p.description()});
  }
  if (spec.dtypes_size() > 0) k.dtypes.assign(spec.dtypes().begin(), spec.dtypes().end());
  for (const v1::BufferSpec& b : spec.buffers()) {
    k.buffers.push_back({b.name(), b.elements(), b.output()});
  }
  k.flops = spec.flops();
  k.bytes = spec.bytes();
  // Sorted by name: the map's order on the wire is unspecified, the version must not be.
  std::map<std::string, std::string> defaults(spec.default_config().begin(),
                                              spec.default_config().end());
  k.default_config.assign(defaults.begin(), defaults.end());
  if (spec.rtol() > 0) k.rtol = spec.rtol();
  if (spec.atol() > 0) k.atol = spec.atol();
  if (spec.has_launch()) {
    const v1::CudaLaunchSpec& l = spec.launch();
    if (l.grid_size() != 3 || l.block_size() != 3) {
      return absl::InvalidArgumentError("kernel.launch needs 3 grid and 3 block expressions");
    }
    for (int i = 0; i < 3; ++i) k.launch.grid[i] = l.grid(i), k.launch.block[i] = l.block(i);
    if (!l.reference_items().empty()) k.launch.reference_items = l.reference_items();
    if (!l.zero_outputs().empty()) k.launch.zero_outputs = l.zero_outputs();
  }
  k.reference_source = spec.reference_source();
  k.componentwise_error = spec.componentwise_error();
  KTUNE_RETURN_IF_ERROR(k.Validate());
  return k;
}

}  // namespace ktune
