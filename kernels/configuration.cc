#include "kernels/configuration.h"

#include <simdjson.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/hash.h"

namespace ktune {

std::string FormatParamValue(const ParamValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return absl::StrCat(*i);
  if (const auto* d = std::get_if<double>(&v)) return nlohmann::json(*d).dump();
  return std::get<std::string>(v);
}

bool ParamValueLess(const ParamValue& a, const ParamValue& b) {
  bool a_str = std::holds_alternative<std::string>(a);
  bool b_str = std::holds_alternative<std::string>(b);
  if (a_str || b_str) {
    if (a_str && b_str) return std::get<std::string>(a) < std::get<std::string>(b);
    return b_str;  // numbers first
  }
  auto as_double = [](const ParamValue& v) {
    if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
    return std::get<double>(v);
  };
  if (std::holds_alternative<int64_t>(a) && std::holds_alternative<int64_t>(b)) {
    return std::get<int64_t>(a) < std::get<int64_t>(b);
  }
  return as_double(a) < as_double(b);
}

absl::Status CheckFiniteValues(const ParamMap& params, absl::string_view what) {
  for (const auto& [name, value] : params) {
    const double* d = std::get_if<double>(&value);
    if (d && !std::isfinite(*d)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ".", name, " is ", *d, "; a parameter value must be a finite number"));
    }
  }
  return absl::OkStatus();
}

std::string CanonicalJson(const ParamMap& params) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, value] : params) {
    std::visit([&](const auto& v) { j[name] = v; }, value);
  }
  // std::map-backed objects dump in key order. A string that is not UTF-8 (none comes through
  // the API or a file, whose parsers refuse them) dumps with U+FFFD instead of throwing.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string ParamMapHash(const ParamMap& params) { return StableHashHex(CanonicalJson(params)); }

absl::StatusOr<ParamMap> ParseParamMapJson(absl::string_view json) {
  // simdjson's DOM parser: configurations are parsed once per record read, so this is on the path
  // of every query that reads records, and simdjson parses them faster than nlohmann did (on an
  // 11,000-record task, parsing took 23% of `ktune explain`'s instructions with nlohmann's SAX
  // parser, 13% with this). One parser per thread keeps its buffers between calls. Accepts
  // exactly a flat object of numbers, strings and booleans (as 0/1); a repeated key: the last one
  // counts.
  thread_local simdjson::dom::parser parser;
  auto not_an_object = [&] {
    return absl::InvalidArgumentError(absl::StrCat("not a JSON object: ", json.substr(0, 200)));
  };
  simdjson::dom::object object;
  if (parser.parse(json.data(), json.size()).get_object().get(object) != simdjson::SUCCESS) {
    return not_an_object();
  }
  ParamMap out;
  for (simdjson::dom::key_value_pair field : object) {
    std::string key(field.key);
    const simdjson::dom::element& v = field.value;
    switch (v.type()) {
      case simdjson::dom::element_type::INT64:
        out[std::move(key)] = v.get_int64().value_unsafe();
        break;
      case simdjson::dom::element_type::UINT64:  // only above INT64_MAX: never wrapped
        return absl::InvalidArgumentError(absl::StrCat("parameter '", key,
                                                       "': ", v.get_uint64().value_unsafe(),
                                                       " is above the largest 64-bit integer"));
      case simdjson::dom::element_type::DOUBLE:
        out[std::move(key)] = v.get_double().value_unsafe();
        break;
      case simdjson::dom::element_type::STRING:
        out[std::move(key)] = std::string(v.get_string().value_unsafe());
        break;
      case simdjson::dom::element_type::BOOL:
        out[std::move(key)] = static_cast<int64_t>(v.get_bool().value_unsafe());
        break;
      default:  // null, an array or an object
        return absl::InvalidArgumentError(
            absl::StrCat("parameter '", key, "' is not a number or string"));
    }
  }
  return out;
}

absl::StatusOr<ParamMap> ParseParamMapAssignments(absl::string_view text) {
  ParamMap out;
  if (absl::StripAsciiWhitespace(text).empty()) return out;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    size_t eq = item.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", item, "' is not NAME=VALUE (expected e.g. M=1024,N=1024)"));
    }
    std::string name(absl::StripAsciiWhitespace(item.substr(0, eq)));
    absl::string_view value = absl::StripAsciiWhitespace(item.substr(eq + 1));
    if (name.empty()) return absl::InvalidArgumentError(absl::StrCat("'", item, "' has no name"));
    if (value.empty()) return absl::InvalidArgumentError(absl::StrCat("'", item, "' has no value"));
    if (out.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat("'", name, "' is given twice"));
    }
    int64_t i;
    double d;
    if (absl::SimpleAtoi(value, &i)) {
      out[name] = i;
    } else if (absl::SimpleAtod(value, &d)) {
      // inf and nan would be stored, and JSON (the database's form) cannot hold them.
      if (!std::isfinite(d)) {
        return absl::InvalidArgumentError(
            absl::StrCat("'", item, "': the value must be a finite number or a name"));
      }
      out[name] = d;
    } else {
      out[name] = std::string(value);
    }
  }
  return out;
}

std::string FormatParamMapAssignments(const ParamMap& params) {
  return absl::StrJoin(params, ",", [](std::string* out, const auto& kv) {
    absl::StrAppend(out, kv.first, "=", FormatParamValue(kv.second));
  });
}

std::string FormatTask(const std::string& kernel, const ParamMap& problem,
                       const std::string& device) {
  return absl::StrCat(kernel, problem.empty() ? "" : " ", FormatParamMapAssignments(problem),
                      " on ", device);
}

}  // namespace ktune
