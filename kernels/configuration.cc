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

namespace {

// Builds a ParamMap straight from the parser's events (nlohmann's SAX interface), without the
// document tree: configurations are parsed once per record read, so this is on the path of every
// query that reads records. Accepts exactly what a flat object of numbers, strings and booleans
// is; `error` says why anything else is refused.
class ParamMapSax : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit ParamMapSax(ParamMap* out) : out_(out) {}
  std::string error;

  bool start_object(std::size_t) override {
    if (depth_ != 0) return Refuse();  // a value that is an object
    depth_ = 1;
    return true;
  }
  bool end_object() override { return --depth_ >= 0; }
  bool key(string_t& name) override {
    key_ = std::move(name);
    return true;
  }
  bool number_integer(number_integer_t v) override { return Put(static_cast<int64_t>(v)); }
  bool number_unsigned(number_unsigned_t v) override { return Put(static_cast<int64_t>(v)); }
  bool number_float(number_float_t v, const string_t&) override { return Put(v); }
  bool string(string_t& v) override { return Put(std::move(v)); }
  bool boolean(bool v) override { return Put(static_cast<int64_t>(v)); }
  bool null() override { return Refuse(); }
  bool binary(binary_t&) override { return Refuse(); }
  bool start_array(std::size_t) override { return Refuse(); }
  bool end_array() override { return false; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    if (error.empty()) error = "not a JSON object";
    return false;
  }

 private:
  bool Put(ParamValue v) {
    if (depth_ != 1) {  // a bare value, not an object
      error = "not a JSON object";
      return false;
    }
    (*out_)[key_] = std::move(v);
    return true;
  }
  bool Refuse() {
    error = depth_ <= 1 && !key_.empty()
                ? absl::StrCat("parameter '", key_, "' is not a number or string")
                : "not a JSON object";
    return false;
  }

  ParamMap* out_;
  int depth_ = 0;
  std::string key_;
};

}  // namespace

absl::StatusOr<ParamMap> ParseParamMapJson(absl::string_view json) {
  ParamMap out;
  ParamMapSax sax(&out);
  if (!nlohmann::json::sax_parse(json.begin(), json.end(), &sax)) {
    if (sax.error == "not a JSON object") {
      return absl::InvalidArgumentError(absl::StrCat("not a JSON object: ", json.substr(0, 200)));
    }
    return absl::InvalidArgumentError(sax.error);
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
