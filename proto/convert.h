// Conversions between the ktune.v1 API messages and the C++ types of the core (kernels/, db/).
// Every conversion from a message validates what the core relies on and fails with
// InvalidArgument naming the field.
#ifndef KTUNE_PROTO_CONVERT_H_
#define KTUNE_PROTO_CONVERT_H_

#include "absl/status/statusor.h"
#include "db/record.h"
#include "kernels/configuration.h"
#include "kernels/kernel_definition.h"
#include "ktune/v1/types.pb.h"

namespace ktune {

v1::ParamValue ToProto(const ParamValue& value);
// A value as FormatParamValue writes it ("32", "0.5", "f16"); "" when it has no value.
std::string FormatProtoValue(const v1::ParamValue& value);
void ToProto(const ParamMap& params, google::protobuf::Map<std::string, v1::ParamValue>* out);
absl::StatusOr<ParamMap> FromProto(const google::protobuf::Map<std::string, v1::ParamValue>& in,
                                   const char* field);

v1::TaskKey ToProto(const TaskKey& task);
absl::StatusOr<TaskKey> FromProto(const v1::TaskKey& task);

// The fingerprint travels whole in extra["fingerprint_json"]; class and family in their fields.
v1::DeviceFingerprint ToProto(const DeviceInfo& device);
absl::StatusOr<DeviceInfo> FromProto(const v1::DeviceFingerprint& device);

// A kernel on the wire (RegisterKernel, candidates of client kernels). FromProto enforces the
// API's size limits and KernelDefinition::Validate: InvalidArgument saying what is wrong. The
// result is not `builtin`.
v1::KernelSpec ToProto(const KernelDefinition& kernel);
absl::StatusOr<KernelDefinition> FromProto(const v1::KernelSpec& spec);

v1::MeasurementStatus ToProto(MeasurementStatus status);
v1::Record ToProto(const Record& record);
// A record from the wire (ImportRecords): status, time and sizes (payload: at most
// kMaxRecordPayloadBytes) checked; its record_id must match its content when given
// (InvalidArgument otherwise).
absl::StatusOr<Record> FromProto(const v1::Record& record);
// Unix microseconds; InvalidArgument ("<field> is out of range ...") before 1970 (no
// measurement is; the database takes such times for unset and hid the record) or after 9999.
absl::StatusOr<int64_t> MicrosFromProto(const google::protobuf::Timestamp& t, const char* field);
absl::StatusOr<MeasurementStatus> FromProto(v1::MeasurementStatus status);

}  // namespace ktune

#endif  // KTUNE_PROTO_CONVERT_H_
