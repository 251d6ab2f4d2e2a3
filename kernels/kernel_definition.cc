#include "kernels/kernel_definition.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/hash.h"
#include "common/status_macros.h"
#include "kernels/expression.h"

namespace ktune {
namespace {

bool IsValidName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// The problem's values plus the machine variables, as expression inputs.
Problem ExpressionInputs(const Problem& problem, const MachineVariables& machine) {
  Problem inputs = problem;
  inputs["cores"] = machine.cores;
  return inputs;
}

absl::StatusOr<double> Evaluate(const std::string& text, const Problem& inputs) {
  ExprSymbols symbols;
  std::vector<ExprValue> slots;
  for (const auto& [name, value] : inputs) {
    symbols.Bind(name, static_cast<int>(slots.size()));
    if (const auto* i = std::get_if<int64_t>(&value)) {
      slots.push_back(ExprValue::Int(*i));
    } else if (const auto* d = std::get_if<double>(&value)) {
      slots.push_back(ExprValue::Float(*d));
    } else {
      slots.push_back(ExprValue::String(symbols.Intern(std::get<std::string>(value))));
    }
  }
  KTUNE_ASSIGN_OR_RETURN(Expression expr, Expression::Compile(text, symbols));
  KTUNE_ASSIGN_OR_RETURN(ExprValue v, expr.Evaluate(slots.data()));
  if (!v.is_number()) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not a number"));
  }
  return v.AsDouble();
}

}  // namespace

std::string KernelDefinition::Version() const {
  std::string text = absl::StrCat(name, "\n", language, "\n", source, "\n");
  for (const KernelParameter& p : parameters) {
    absl::StrAppend(&text, p.name, p.compile_time ? "!" : "", "=", absl::StrJoin(p.values, ","),
                    "\n");
  }
  absl::StrAppend(&text, absl::StrJoin(constraints, "\n"), "\n");
  for (const ProblemParameter& p : problem) absl::StrAppend(&text, p.name, ";");
  if (language == "cuda") {  // how it is launched and checked is part of a CUDA kernel
    absl::StrAppend(&text, "\n", absl::StrJoin(launch.grid, ","), "|",
                    absl::StrJoin(launch.block, ","), "|", launch.reference_items, "|",
                    launch.zero_outputs, "|", vendor_library, "\n", reference_source);
  }
  for (const BufferSpec& b : buffers) {
    absl::StrAppend(&text, b.name, ":", b.elements, b.output ? ":out;" : ":in;");
  }
  // Stored errors of the two measures do not compare; other kernels keep their versions.
  if (componentwise_error) absl::StrAppend(&text, "\ncomponentwise_error");
  return StableHashHex(text);
}

absl::StatusOr<Problem> KernelDefinition::ValidateProblem(const Problem& given) const {
  Problem out;
  absl::flat_hash_set<std::string> known;
  for (const ProblemParameter& p : problem) {
    known.insert(p.name);
    auto it = given.find(p.name);
    if (it == given.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("kernel '", name, "' needs problem parameter ", p.name,
                       p.description.empty() ? "" : absl::StrCat(" (", p.description, ")"),
                       ", e.g. --problem ", p.name, "=", std::min<int64_t>(p.max, 512)));
    }
    const auto* v = std::get_if<int64_t>(&it->second);
    // A whole number written as a float (M=1e2, or 512.0 from JSON) is that integer; it was
    // refused as "got '100.0'", a value the user had not typed.
    const auto* d = std::get_if<double>(&it->second);
    int64_t whole = 0;
    if (v == nullptr && d != nullptr && std::isfinite(*d) && std::trunc(*d) == *d &&
        std::abs(*d) <= 9.0e15) {
      whole = static_cast<int64_t>(*d);
      v = &whole;
    }
    if (v == nullptr && d != nullptr && std::isfinite(*d) && std::trunc(*d) == *d) {
      // A whole number too large for exactness (M=99999999999999999999 read as 1e+20): out of
      // range, not "must be an integer, got '1e+20'", a value the user had not typed.
      return absl::InvalidArgumentError(absl::StrCat(
          "problem parameter ", p.name, " is out of range [", p.min, ", ", p.max, "]"));
    }
    if (v == nullptr) {
      // A string that reads as an integer is said to be a string ("got '64'" read as a
      // contradiction: shapes often come from a config file or the environment as text).
      const bool text = std::holds_alternative<std::string>(it->second);
      return absl::InvalidArgumentError(absl::StrCat(
          "problem parameter ", p.name, " must be an integer, got ", text ? "the string '" : "'",
          FormatParamValue(it->second), "'", text ? " (give it as a number)" : ""));
    }
    if (*v < p.min || *v > p.max) {
      return absl::InvalidArgumentError(absl::StrCat(
          "problem parameter ", p.name, "=", *v, " is out of range [", p.min, ", ", p.max, "]"));
    }
    out[p.name] = *v;
  }
  for (const auto& [key, value] : given) {
    if (key == "dtype" || key == "data") continue;
    if (!known.contains(key)) {
      std::vector<std::string> names;
      for (const ProblemParameter& p : problem) names.push_back(p.name);
      return absl::InvalidArgumentError(
          absl::StrCat("kernel '", name, "' has no problem parameter '", key,
                       "'; its parameters are ", absl::StrJoin(names, ", "), ", dtype"));
    }
  }
  std::string dtype = dtypes.empty() ? "f32" : dtypes.front();
  if (auto it = given.find("dtype"); it != given.end()) {
    const auto* s = std::get_if<std::string>(&it->second);
    if (s == nullptr || std::find(dtypes.begin(), dtypes.end(), *s) == dtypes.end()) {
      return absl::InvalidArgumentError(absl::StrCat("kernel '", name, "' supports dtype ",
                                                     absl::StrJoin(dtypes, ", "), "; got '",
                                                     FormatParamValue(it->second), "'"));
    }
    dtype = *s;
  }
  out["dtype"] = dtype;
  if (auto it = given.find("data"); it != given.end()) {
    const auto* s = std::get_if<std::string>(&it->second);
    const auto* known_data = std::find_if(
        std::begin(kInputDistributions), std::end(kInputDistributions),
        [&](const char* d) { return s != nullptr && *s == d; });
    const bool input_file = s != nullptr && s->size() == 21 && s->rfind("file:", 0) == 0 &&
                            s->find_first_not_of("0123456789abcdef", 5) == std::string::npos;
    if (known_data == std::end(kInputDistributions) && !input_file) {
      return absl::InvalidArgumentError(absl::StrCat(
          "problem value data='", FormatParamValue(it->second),
          "' is not an input distribution; use ", absl::StrJoin(kInputDistributions, ", "),
          ", or file:<hash> (16 lowercase hex digits, which ktune tune --inputs "
          "FILE gives the file it stores)"));
    }
    if (language != "cpp") {
      return absl::InvalidArgumentError(absl::StrCat(
          "kernel '", name, "' is ", language, " code; input distributions (data=", *s,
          ") are supported for CPU kernels"));
    }
    if (*s != kInputDistributions[0]) out["data"] = *s;
  }
  return out;
}

absl::Status KernelDefinition::CheckBuffersFit(const Problem& problem) const {
  for (const BufferSpec& b : buffers) {
    absl::StatusOr<double> n = EvaluateForProblem(b.elements, problem);
    if (n.ok() && *n > kMaxBufferElements) {
      return absl::InvalidArgumentError(
          absl::StrCat("the problem is too large: buffer ", b.name, " would hold ",
                       absl::StrFormat("%.4g", *n), " elements, and a worker allocates at most ",
                       absl::StrFormat("%.4g", kMaxBufferElements), " a buffer"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<SearchSpace> KernelDefinition::Space(const Problem& problem,
                                                    const MachineVariables& machine) const {
  std::vector<Parameter> params;
  for (const KernelParameter& p : parameters) {
    Parameter param{p.name, {}};
    std::vector<int64_t> values = p.values;
    if (p.add_cores && std::find(values.begin(), values.end(), machine.cores) == values.end()) {
      values.insert(std::upper_bound(values.begin(), values.end(), machine.cores), machine.cores);
    }
    for (int64_t v : values) param.values.emplace_back(v);
    params.push_back(std::move(param));
  }
  return SearchSpace::Create(std::move(params), constraints, ExpressionInputs(problem, machine));
}

absl::StatusOr<Configuration> KernelDefinition::DefaultConfiguration(
    const Problem& problem, const MachineVariables& machine) const {
  Configuration config;
  const Problem inputs = ExpressionInputs(problem, machine);
  for (const auto& [param, expression] : default_config) {
    KTUNE_ASSIGN_OR_RETURN(double v, Evaluate(expression, inputs));
    config[param] = static_cast<int64_t>(std::llround(v));
  }
  return config;
}

absl::StatusOr<KernelDefinition> KernelDefinition::WithFixedThreads(int threads) const {
  KernelDefinition fixed = *this;
  bool has_threads = false;
  for (auto& [param, expression] : fixed.default_config) {
    if (param == "threads") expression = std::to_string(threads), has_threads = true;
  }
  if (!has_threads) {
    return absl::InvalidArgumentError(
        absl::StrCat("kernel '", name, "' has no threads parameter to fix"));
  }
  fixed.constraints.push_back(absl::StrCat("threads == ", threads));
  return fixed;
}

absl::StatusOr<double> KernelDefinition::EvaluateForProblem(const std::string& expression,
                                                            const Problem& problem,
                                                            const MachineVariables& machine) const {
  return Evaluate(expression, ExpressionInputs(problem, machine));
}

std::pair<double, double> KernelDefinition::ToleranceFor(const std::string& dtype) const {
  for (const auto& [name, tolerance] : dtype_tolerance) {
    if (name == dtype) return tolerance;
  }
  return {rtol, atol};
}

absl::StatusOr<double> KernelDefinition::EvaluateForConfig(const std::string& expression,
                                                           const Problem& problem,
                                                           const Configuration& config) const {
  Problem inputs = problem;
  for (const auto& [name, value] : config) inputs[name] = value;
  return Evaluate(expression, inputs);
}

absl::StatusOr<std::vector<int64_t>> KernelDefinition::ProblemValues(const Problem& p) const {
  std::vector<int64_t> values;
  for (const ProblemParameter& param : problem) {
    auto it = p.find(param.name);
    if (it == p.end() || !std::holds_alternative<int64_t>(it->second)) {
      return absl::InvalidArgumentError(absl::StrCat("problem has no integer ", param.name));
    }
    values.push_back(std::get<int64_t>(it->second));
  }
  return values;
}

absl::StatusOr<std::vector<int64_t>> KernelDefinition::ConfigValues(
    const Configuration& config) const {
  std::vector<int64_t> values;
  for (const KernelParameter& param : parameters) {
    auto it = config.find(param.name);
    if (it == config.end() || !std::holds_alternative<int64_t>(it->second)) {
      return absl::InvalidArgumentError(
          absl::StrCat("configuration has no integer value for ", param.name));
    }
    values.push_back(std::get<int64_t>(it->second));
  }
  if (config.size() != parameters.size()) {
    return absl::InvalidArgumentError(absl::StrCat("configuration ", CanonicalJson(config),
                                                   " names parameters kernel '", name,
                                                   "' does not have"));
  }
  return values;
}

absl::Status KernelDefinition::Validate() const {
  if (!IsValidName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("kernel name '", name, "' must be 1-64 characters of [A-Za-z0-9_]"));
  }
  if (language != "cpp" && language != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("kernel language must be \"cpp\" or \"cuda\", got '", language, "'"));
  }
  if (componentwise_error && language != "cpp") {
    return absl::InvalidArgumentError(
        "componentwise_error is measured by the CPU runner only: a cuda kernel's error is max "
        "|out - ref| / max |ref| per output");
  }
  if (parameters.empty()) return absl::InvalidArgumentError("a kernel needs tunable parameters");
  absl::flat_hash_set<std::string> names = {"cores", "dtype"};
  for (const KernelParameter& p : parameters) {
    if (!IsValidName(p.name) || !names.insert(p.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad or repeated parameter name '", p.name, "'"));
    }
    if (p.values.empty() || p.values.size() > 4096) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter ", p.name, " needs 1 to 4096 values"));
    }
  }
  Problem sample;
  for (const ProblemParameter& p : problem) {
    if (!IsValidName(p.name) || !names.insert(p.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad or repeated problem parameter name '", p.name, "'"));
    }
    if (p.min > p.max) {
      return absl::InvalidArgumentError(
          absl::StrCat("problem parameter ", p.name, " has min > max"));
    }
    sample[p.name] = p.min;
  }
  sample["dtype"] = dtypes.empty() ? std::string("f32") : dtypes.front();
  if (buffers.empty() || !buffers.back().output) {
    return absl::InvalidArgumentError("a kernel needs at least one output buffer, listed last");
  }
  bool seen_output = false;
  for (const BufferSpec& b : buffers) {
    if (seen_output && !b.output) {
      return absl::InvalidArgumentError("input buffers must come before output buffers");
    }
    seen_output |= b.output;
    auto n = EvaluateForProblem(b.elements, sample);
    if (!n.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("buffer ", b.name, " size: ", n.status().message()));
    }
    // At the sample problem: at least one element, and at most 2^34 (64 GiB of floats), which no
    // worker could allocate (a negative or 10^15-element size was registered, and every
    // measurement then failed).
    if (!(*n >= 1 && *n <= 17179869184.0)) {
      return absl::InvalidArgumentError(absl::StrCat("buffer ", b.name, " has ", *n,
                                                     " elements at the sample problem; 1 to 2^34"));
    }
  }
  for (const auto& [field, text] :
       {std::pair<const char*, const std::string*>{"flops", &flops}, {"bytes", &bytes}}) {
    auto v = EvaluateForProblem(*text, sample);
    if (!v.ok()) {  // the message quotes the expression (the start of a long one)
      return absl::InvalidArgumentError(absl::StrCat(field, ": ", v.status().message()));
    }
  }
  auto space = Space(sample, MachineVariables{});
  if (!space.ok()) return space.status();
  if (space->size() == 0) {
    // Not the default's fault: name the constraint that rules out everything by itself, if one
    // does (the message blamed the default configuration).
    Problem shown = sample;
    shown.erase("dtype");
    std::string culprit = "together they rule out every one";
    for (const std::string& c : constraints) {
      KernelDefinition alone = *this;
      alone.constraints = {c};
      absl::StatusOr<SearchSpace> s = alone.Space(sample, MachineVariables{});
      if (s.ok() && s->size() == 0) {
        culprit = absl::StrCat("'", c, "' alone rules out every one");
        break;
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "no configuration satisfies the constraints at the sample problem ",
        FormatParamMapAssignments(shown), " (each problem parameter at its min): ", culprit,
        "; relax the constraints, or raise the min"));
  }
  auto defaults = DefaultConfiguration(sample, MachineVariables{});
  if (!defaults.ok()) return defaults.status();
  if (defaults->size() != parameters.size()) {
    return absl::InvalidArgumentError("the default configuration must give every parameter");
  }
  // The default is where a tuning starts and what a speedup is measured against: it must be a
  // configuration of the space (a value outside a parameter's list was registered).
  if (absl::StatusOr<Point> p = space->ToPoint(*defaults); !p.ok() || !space->IsValid(*p)) {
    // Say where and why: the sample problem is each parameter at its min, which the spec never
    // names (the message sent users to the source).
    Problem shown = sample;
    shown.erase("dtype");
    std::string why;
    if (!p.ok()) {
      why = std::string(p.status().message());
    } else {
      for (const std::string& c : constraints) {
        absl::StatusOr<double> holds = EvaluateForConfig(c, sample, *defaults);
        if (holds.ok() && *holds == 0) {
          why = absl::StrCat("it breaks the constraint '", c, "'");
          break;
        }
      }
      if (why.empty()) why = "it breaks a constraint";
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "the default configuration ", CanonicalJson(*defaults),
        " is not a valid configuration at the sample problem ", FormatParamMapAssignments(shown),
        " (each problem parameter at its min): ", why,
        "; make the default an expression of the problem, or raise the min"));
  }
  if (language == "cuda") {
    for (const std::string* e :
         {&launch.grid[0], &launch.grid[1], &launch.grid[2], &launch.block[0], &launch.block[1],
          &launch.block[2], &launch.zero_outputs}) {
      auto v = EvaluateForConfig(*e, sample, *defaults);
      if (!v.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("launch size '", *e, "': ", v.status().message()));
      }
    }
    auto items = EvaluateForProblem(launch.reference_items, sample);
    if (!items.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("launch.reference_items: ", items.status().message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace ktune
