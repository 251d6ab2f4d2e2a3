#include "kernels/t1_definition.h"

#include <cstdint>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/json_error.h"
#include "common/status_macros.h"
#include "kernels/expression.h"

namespace ktune {
namespace {

absl::StatusOr<ParamValue> Convert(const ExprValue& v, const std::string& type,
                                   const ExprSymbols& symbols) {
  if (v.kind == ExprValue::Kind::kString) return ParamValue(symbols.StringOf(v.i));
  if (type == "float") return ParamValue(v.AsDouble());
  if (type == "string") {
    return absl::InvalidArgumentError("a string parameter lists a number");
  }
  if (v.kind == ExprValue::Kind::kFloat) {
    if (type == "int") return absl::InvalidArgumentError("an int parameter lists a float");
    return ParamValue(v.f);
  }
  return ParamValue(v.i);
}

}  // namespace

namespace {

absl::StatusOr<T1Definition> ParseT1Definition(const std::string& path, const nlohmann::json& doc) {
  auto fail = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  if (!doc.is_object() || !doc.contains("ConfigurationSpace") ||
      !doc["ConfigurationSpace"].contains("TuningParameters")) {
    return fail("no ConfigurationSpace.TuningParameters: not a T1 definition");
  }
  const nlohmann::json& cs = doc["ConfigurationSpace"];
  std::vector<Parameter> params;
  for (const auto& p : cs["TuningParameters"]) {
    if (!p.contains("Name") || !p["Name"].is_string() || !p.contains("Values")) {
      return fail("a tuning parameter lacks Name or Values");
    }
    Parameter param;
    param.name = p["Name"].get<std::string>();
    if (param.name.empty()) return fail("a tuning parameter has an empty Name");
    std::string type = p.value("Type", "int");
    // T1's parameter types; another (a typo, "complex") would be read as int without a word.
    if (type != "int" && type != "uint" && type != "float" && type != "bool" && type != "string") {
      return fail(absl::StrCat("parameter ", param.name, ": unknown Type '", type,
                               "' (int, uint, float, bool or string)"));
    }
    ExprSymbols symbols;
    std::vector<ExprValue> values;
    if (p["Values"].is_string()) {
      auto parsed = EvaluateValueList(p["Values"].get<std::string>(), symbols);
      if (!parsed.ok()) {
        return fail(absl::StrCat("parameter ", param.name, ": ", parsed.status().message()));
      }
      values = *std::move(parsed);
    } else if (p["Values"].is_array()) {
      for (const auto& v : p["Values"]) {
        if (v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX) {
          return fail(absl::StrCat("parameter ", param.name, ": ", v.dump(),
                                   " is above the largest 64-bit integer"));
        } else if (v.is_number_integer())
          values.push_back(ExprValue::Int(v.get<int64_t>()));
        else if (v.is_number())
          values.push_back(ExprValue::Float(v.get<double>()));
        else if (v.is_string())
          values.push_back(ExprValue::String(symbols.Intern(v.get<std::string>())));
        else
          return fail(
              absl::StrCat("parameter ", param.name, ": a value is not a number or string"));
      }
    } else {
      return fail(
          absl::StrCat("parameter ", param.name, ": Values is neither a list nor a string"));
    }
    for (const ExprValue& v : values) {
      auto converted = Convert(v, type, symbols);
      if (!converted.ok()) {
        return fail(absl::StrCat("parameter ", param.name, ": ", converted.status().message()));
      }
      param.values.push_back(*std::move(converted));
    }
    params.push_back(std::move(param));
  }
  std::vector<std::string> constraints;
  if (cs.contains("Conditions")) {
    for (const auto& c : cs["Conditions"]) {
      if (!c.contains("Expression") || !c["Expression"].is_string()) {
        return fail("a condition lacks its Expression");
      }
      constraints.push_back(c["Expression"].get<std::string>());
    }
  }
  auto space = SearchSpace::Create(std::move(params), std::move(constraints));
  if (!space.ok()) {
    return absl::Status(space.status().code(), absl::StrCat(path, ": ", space.status().message()));
  }
  T1Definition def{"", "", *std::move(space)};
  if (doc.contains("General")) def.benchmark_name = doc["General"].value("BenchmarkName", "");
  if (doc.contains("KernelSpecification")) {
    def.kernel_name = doc["KernelSpecification"].value("KernelName", "");
  }
  return def;
}

}  // namespace

absl::StatusOr<T1Definition> LoadT1Definition(const std::string& path) {
  KTUNE_ASSIGN_OR_RETURN(std::string text, ReadFileMaybeGzip(path));
  // Every nlohmann exception becomes an error naming the file: a malformed document (a number
  // out of double's range, a field of the wrong type) must never abort the program.
  try {
    return ParseT1Definition(path, nlohmann::json::parse(text));
  } catch (const nlohmann::json::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON: ", e.what()));
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", WithoutJsonExceptionPrefix(e.what())));
  }
}

}  // namespace ktune
