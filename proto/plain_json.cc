#include "proto/plain_json.h"

#include <cctype>
#include <map>
#include <optional>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/timestamp.pb.h"
#include "ktune/v1/types.pb.h"
#include "proto/convert.h"

namespace ktune {
namespace {

using Json = nlohmann::ordered_json;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

Json ParamValueJson(const v1::ParamValue& v) {
  switch (v.kind_case()) {
    case v1::ParamValue::kIntValue:
      return v.int_value();
    case v1::ParamValue::kFloatValue:
      return v.float_value();
    case v1::ParamValue::kStringValue:
      return v.string_value();
    default:
      return nullptr;
  }
}

Json ParamsJson(const google::protobuf::Map<std::string, v1::ParamValue>& params) {
  // Sorted by name, as the interchange writes a configuration (the proto map has no order).
  std::map<std::string, Json> sorted;
  for (const auto& [name, value] : params) sorted[name] = ParamValueJson(value);
  Json out = Json::object();
  for (auto& [name, value] : sorted) out[name] = std::move(value);
  return out;
}

// MatchLevel -> "MATCH_LEVEL_": the prefix protobuf's style guide puts on every value.
std::string EnumPrefix(const std::string& type_name) {
  std::string prefix;
  for (size_t i = 0; i < type_name.size(); ++i) {
    const char c = type_name[i];
    if (i > 0 && std::isupper(static_cast<unsigned char>(c))) prefix += '_';
    prefix += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return prefix + "_";
}

Json EnumJson(const EnumValueDescriptor* value) {
  std::string name = value->name();
  const std::string prefix = EnumPrefix(value->type()->name());
  if (absl::StartsWith(name, prefix)) name = name.substr(prefix.size());
  return absl::AsciiStrToLower(name);
}

Json MessageJson(const Message& m);

Json ScalarJson(const Message& m, const FieldDescriptor* f, int index) {
  const Reflection* r = m.GetReflection();
  const bool repeated = f->is_repeated();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return repeated ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f);
    case FieldDescriptor::CPPTYPE_INT64:
      return repeated ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f);
    case FieldDescriptor::CPPTYPE_UINT32:
      return repeated ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f);
    case FieldDescriptor::CPPTYPE_UINT64:
      return repeated ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f);
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return repeated ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f);
    case FieldDescriptor::CPPTYPE_FLOAT:
      return repeated ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f);
    case FieldDescriptor::CPPTYPE_BOOL:
      return repeated ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f);
    case FieldDescriptor::CPPTYPE_STRING:
      // bytes fields too: the API's carry text (payloads are JSON); nlohmann replaces bytes that
      // are not UTF-8 when it dumps.
      return repeated ? r->GetRepeatedString(m, f, index) : r->GetString(m, f);
    case FieldDescriptor::CPPTYPE_ENUM: {
      // A value this build does not know (a newer server's) as its number.
      const int number = repeated ? r->GetRepeatedEnumValue(m, f, index) : r->GetEnumValue(m, f);
      const EnumValueDescriptor* value = f->enum_type()->FindValueByNumber(number);
      return value != nullptr ? EnumJson(value) : Json(number);
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return MessageJson(repeated ? r->GetRepeatedMessage(m, f, index) : r->GetMessage(m, f));
  }
  return nullptr;
}

Json FieldJson(const Message& m, const FieldDescriptor* f) {
  const Reflection* r = m.GetReflection();
  if (f->is_map()) {
    const FieldDescriptor* key = f->message_type()->map_key();
    const FieldDescriptor* value = f->message_type()->map_value();
    Json out = Json::object();
    for (int i = 0; i < r->FieldSize(m, f); ++i) {
      const Message& entry = r->GetRepeatedMessage(m, f, i);
      const Json k = ScalarJson(entry, key, 0);
      out[k.is_string() ? k.get<std::string>() : k.dump()] = ScalarJson(entry, value, 0);
    }
    return out;
  }
  if (f->is_repeated()) {
    Json out = Json::array();
    for (int i = 0; i < r->FieldSize(m, f); ++i) out.push_back(ScalarJson(m, f, i));
    return out;
  }
  // Unset: null for a message and for an `optional` scalar, the default for a plain scalar.
  if (f->has_presence() && !r->HasField(m, f)) return nullptr;
  return ScalarJson(m, f, 0);
}

Json MessageJson(const Message& m) {
  if (const auto* v = dynamic_cast<const v1::ParamValue*>(&m)) return ParamValueJson(*v);
  if (const auto* c = dynamic_cast<const v1::Configuration*>(&m)) return ParamsJson(c->params());
  if (const auto* p = dynamic_cast<const v1::Problem*>(&m)) return ParamsJson(p->params());
  if (const auto* t = dynamic_cast<const google::protobuf::Timestamp*>(&m)) {
    absl::StatusOr<int64_t> us = MicrosFromProto(*t, "timestamp");
    if (us.ok()) return FormatTimestampUs(*us);
  }
  if (const auto* record = dynamic_cast<const v1::Record*>(&m)) {
    // The interchange's line; a record the core would refuse (none the server sends) falls
    // through to the fields as they are.
    absl::StatusOr<Record> core = FromProto(*record);
    if (core.ok()) {
      return Json::parse(RecordToJsonLine(
          *core, record->has_stale_before_us() ? std::optional<int64_t>(record->stale_before_us())
                                               : std::nullopt));
    }
  }
  Json out = Json::object();
  const google::protobuf::Descriptor* d = m.GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    // A oneof's members other than the one set are not there at all.
    if (f->real_containing_oneof() != nullptr && !m.GetReflection()->HasField(m, f)) continue;
    out[f->name()] = FieldJson(m, f);
  }
  return out;
}

}  // namespace

nlohmann::ordered_json PlainJson(const google::protobuf::Message& message) {
  return MessageJson(message);
}

std::string PlainJsonText(const google::protobuf::Message& message) {
  return MessageJson(message).dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace ktune
