#include "kernels/configuration.h"

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

std::string CanonicalJson(const ParamMap& params) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, value] : params) {
    std::visit([&](const auto& v) { j[name] = v; }, value);
  }
  return j.dump();  // std::map-backed objects dump in key order
}

std::string ParamMapHash(const ParamMap& params) { return StableHashHex(CanonicalJson(params)); }

absl::StatusOr<ParamMap> ParseParamMapJson(absl::string_view json) {
  nlohmann::json j = nlohmann::json::parse(json.begin(), json.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("not a JSON object: ", json.substr(0, 200)));
  }
  ParamMap out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const auto& v = it.value();
    if (v.is_number_integer()) {
      out[it.key()] = v.get<int64_t>();
    } else if (v.is_number_float()) {
      out[it.key()] = v.get<double>();
    } else if (v.is_string()) {
      out[it.key()] = v.get<std::string>();
    } else if (v.is_boolean()) {
      out[it.key()] = static_cast<int64_t>(v.get<bool>());
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter '", it.key(), "' is not a number or string"));
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

}  // namespace ktune
