// The one JSON style of the CLI's --json output, for API messages as for everything else.
//
// protobuf's JSON mapping writes int64 as strings, enums by their full names and a configuration
// as {"params":{"M":{"int_value":"64"}}}; `ktune best`, `jobs`, `db export` and the JSONL
// interchange write plain JSON. PlainJson writes a message in the plain style:
//   - field names as in the .proto (snake_case), every field, defaults included;
//   - integers, int64 too, as numbers; enums by their value's name in lower case without the
//     enum's prefix (MATCH_LEVEL_DEVICE_CLASS -> "device_class"), a value this build does not
//     know as its number; a double that is not finite as null (JSON has no NaN);
//   - Configuration and Problem as {"M": 64, "dtype": "f32"}, a ParamValue as its value;
//   - a Record as a line of the JSONL interchange (RecordToJsonLine: what `best --json` prints;
//     not its config_hash), or field by field when the core refuses it;
//   - a Timestamp as RFC 3339 text ("2026-12-07T05:17:06+00:00"), whole microseconds; outside
//     1970-9999 as {"seconds": S, "nanos": N};
//   - an unset message field as null.
#ifndef KTUNE_PROTO_PLAIN_JSON_H_
#define KTUNE_PROTO_PLAIN_JSON_H_

#include <nlohmann/json.hpp>
#include <string>

#include "google/protobuf/message.h"

namespace ktune {

nlohmann::ordered_json PlainJson(const google::protobuf::Message& message);
// PlainJson as one line; text that is not UTF-8 is written with U+FFFD (it never throws).
std::string PlainJsonText(const google::protobuf::Message& message);

}  // namespace ktune

#endif  // KTUNE_PROTO_PLAIN_JSON_H_
