#include "server/job_spec.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "agent/search_strategy.h"
#include "common/status_macros.h"
#include "proto/convert.h"

namespace ktune {
namespace {

absl::Status Bad(const YAML::Node& node, const std::string& what) {
  const YAML::Mark mark = node.Mark();
  return absl::InvalidArgumentError(mark.line >= 0
                                        ? absl::StrCat("job spec line ", mark.line + 1, ": ", what)
                                        : absl::StrCat("job spec: ", what));
}

absl::StatusOr<v1::ParamValue> Scalar(const YAML::Node& node, const std::string& field) {
  if (!node.IsScalar()) return Bad(node, field + " must be a number or a string");
  v1::ParamValue v;
  int64_t i;
  double d;
  if (YAML::convert<int64_t>::decode(node, i)) {
    v.set_int_value(i);
  } else if (YAML::convert<double>::decode(node, d)) {
    v.set_float_value(d);
  } else {
    v.set_string_value(node.as<std::string>());
  }
  return v;
}

// YAML's aliases repeat their anchor's content wherever they appear: a 17 KB spec of aliases to
// aliases read as two million problem parameters, and one of 1 MiB as billions (the server ran
// out of memory copying them). The document is walked as the parse below would read it, and
// refused once it holds more nodes or scalar bytes than any spec within the limits can.
constexpr int64_t kMaxSpecNodes = 1 << 19;        // 1,024 problems x 64 parameters x 2, and more
constexpr int64_t kMaxSpecScalarBytes = 4 << 20;  // four times the largest spec's text

absl::Status CheckExpandedSize(const YAML::Node& root) {
  int64_t nodes = 0, bytes = 0;
  std::vector<YAML::Node> stack = {root};
  while (!stack.empty()) {
    const YAML::Node node = std::move(stack.back());
    stack.pop_back();
    if (++nodes > kMaxSpecNodes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "job spec holds more than ", kMaxSpecNodes,
          " values once its YAML aliases are expanded; no spec within the limits needs as many"));
    }
    if (node.IsScalar()) {
      bytes += static_cast<int64_t>(node.Scalar().size());
      if (bytes > kMaxSpecScalarBytes) {
        return absl::InvalidArgumentError(
            "job spec holds more than 4 MiB of text once its YAML aliases are expanded");
      }
    } else if (node.IsSequence()) {
      for (const YAML::Node& child : node) stack.push_back(child);
    } else if (node.IsMap()) {
      for (const auto& kv : node) {
        stack.push_back(kv.first);
        stack.push_back(kv.second);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string StrategyName(v1::Strategy s) {
  switch (s) {
    case v1::STRATEGY_RANDOM:
      return "random";
    case v1::STRATEGY_ANNEALING:
      return "anneal";
    case v1::STRATEGY_GENETIC:
      return "genetic";
    case v1::STRATEGY_MODEL_BASED:
      return "model";
    case v1::STRATEGY_PPO:
      return "ppo";
    default:
      return DefaultStrategyName();
  }
}

absl::StatusOr<v1::Strategy> ParseStrategy(const std::string& name) {
  for (v1::Strategy s : {v1::STRATEGY_PPO, v1::STRATEGY_RANDOM, v1::STRATEGY_ANNEALING,
                         v1::STRATEGY_GENETIC, v1::STRATEGY_MODEL_BASED}) {
    if (StrategyName(s) == name) return s;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown strategy '", name, "'; use ppo, random, anneal, genetic or model"));
}

namespace {

// The mapping `node` of names to scalars into `out`; `what` names an entry in the errors ("problem
// parameter 'M' appears twice").
absl::Status ReadParams(const YAML::Node& node, const std::string& what,
                        google::protobuf::Map<std::string, v1::ParamValue>* out) {
  std::set<std::string> names;
  for (const auto& pv : node) {
    const std::string name = pv.first.as<std::string>();
    if (!names.insert(name).second) {
      return Bad(pv.first, absl::StrCat(what, " '", name, "' appears twice"));
    }
    KTUNE_ASSIGN_OR_RETURN((*out)[name], Scalar(pv.second, absl::StrCat(what, " ", name)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::JobSpec> ParseJobSpecText(const std::string& text) {
  if (text.size() > (1 << 20)) return absl::InvalidArgumentError("job spec is larger than 1 MiB");
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("job spec is not valid YAML or JSON: line ", e.mark.line + 1, ": ", e.msg));
  }
  if (!root.IsMap()) return absl::InvalidArgumentError("job spec must be a mapping");
  KTUNE_RETURN_IF_ERROR(CheckExpandedSize(root));
  v1::JobSpec spec;
  std::string field;  // the field being read, for a conversion error's message
  YAML::Node value;   // and its value
  std::set<std::string> seen;
  try {
    for (const auto& kv : root) {
      const std::string key = kv.first.as<std::string>();
      field = key;
      value = kv.second;
      // YAML takes the last of two equal keys; a spec that says `budget` twice is a mistake.
      if (!seen.insert(key).second) return Bad(kv.first, absl::StrCat("'", key, "' appears twice"));
      const YAML::Node& v = kv.second;
      if (key == "name") {
        spec.set_name(v.as<std::string>());
      } else if (key == "kernels") {
        if (!v.IsSequence()) return Bad(v, "kernels must be a list");
        for (const YAML::Node& k : v) {
          v1::KernelRef* ref = spec.add_kernels();
          if (k.IsMap()) {
            ref->set_name(k["name"].as<std::string>(""));
            ref->set_version(k["version"].as<std::string>(""));
          } else {
            ref->set_name(k.as<std::string>());
          }
        }
      } else if (key == "problems") {
        if (!v.IsSequence()) return Bad(v, "problems must be a list of mappings");
        for (const YAML::Node& p : v) {
          if (!p.IsMap()) return Bad(p, "each problem must be a mapping such as {M: 512}");
          KTUNE_RETURN_IF_ERROR(
              ReadParams(p, "problem parameter", spec.add_problems()->mutable_params()));
        }
      } else if (key == "device_classes") {
        if (!v.IsSequence()) return Bad(v, "device_classes must be a list");
        for (const YAML::Node& d : v) spec.add_device_classes(d.as<std::string>());
      } else if (key == "budget") {
        spec.set_budget_measurements(v.as<int64_t>());
      } else if (key == "budget_wall_seconds") {
        spec.set_budget_wall_seconds(v.as<int64_t>());
      } else if (key == "strategy") {
        KTUNE_ASSIGN_OR_RETURN(v1::Strategy s, ParseStrategy(v.as<std::string>()));
        spec.set_strategy(s);
      } else if (key == "priority") {
        spec.set_priority(v.as<int32_t>());
      } else if (key == "seed") {
        spec.set_seed(v.as<uint64_t>());
      } else if (key == "batch_size") {
        spec.set_batch_size(v.as<int32_t>());
      } else if (key == "threads") {
        spec.set_threads(v.as<int32_t>());
      } else if (key == "agent_share") {
        spec.set_agent_share(v.as<double>());
      } else if (key == "retune") {
        spec.set_retune(v.as<std::string>());
      } else if (key == "max_rel_error") {
        spec.set_max_rel_error(v.as<double>());
      } else if (key == "initial_configs") {
        if (!v.IsSequence()) return Bad(v, "initial_configs must be a list of mappings");
        for (const YAML::Node& c : v) {
          if (!c.IsMap()) return Bad(c, "each initial configuration must be a mapping {MR: 4}");
          KTUNE_RETURN_IF_ERROR(ReadParams(c, "initial_configs: parameter",
                                           spec.add_initial_configs()->mutable_params()));
        }
      } else {
        return Bad(kv.first, absl::StrCat("unknown field '", key,
                                          "' (fields: name, kernels, problems, device_classes, "
                                          "budget, budget_wall_seconds, strategy, priority, seed, "
                                          "batch_size, threads, agent_share, retune, "
                                          "max_rel_error, initial_configs)"));
      }
    }
  } catch (const YAML::Exception& e) {
    // What the field takes and what it was given ("bad conversion" said neither).
    static const std::map<std::string, std::string> kTakes = {
        {"name", "text"},
        {"kernels", "kernel names, or {name, version} mappings"},
        {"device_classes", "device class names"},
        {"budget", "a whole number of measurements per task"},
        {"budget_wall_seconds", "a whole number of seconds"},
        {"strategy", "a strategy name"},
        {"priority", "a whole number from 0 to 100"},
        {"seed", "a whole number from 0 to 18446744073709551615"},
        {"batch_size", "a whole number"},
        {"threads", "a whole number"},
        {"agent_share", "a number"},
        {"retune", "off, suggest or act"},
        {"max_rel_error", "a number"},
        {"initial_configs", "a list of configurations, mappings such as {MR: 4}"}};
    const auto takes = kTakes.find(field);
    const std::string given = value.IsScalar()     ? absl::StrCat("'", value.Scalar(), "'")
                              : value.IsSequence() ? std::string("a list")
                              : value.IsMap()      ? std::string("a mapping")
                                                   : std::string("nothing (null)");
    return absl::InvalidArgumentError(
        absl::StrCat("job spec line ", e.mark.line + 1, ": '", field, "' must be ",
                     takes == kTakes.end() ? "of another type" : takes->second, ", not ", given));
  }
  return spec;
}

absl::StatusOr<JobRequest> ToJobRequest(const v1::JobSpec& spec, const TaskSpaces& spaces) {
  if (spec.name().size() > 128) return absl::InvalidArgumentError("name is longer than 128 bytes");
  if (spec.kernels().empty() || spec.kernels_size() > 64) {
    return absl::InvalidArgumentError("kernels: give 1 to 64");
  }
  if (spec.problems().empty() || spec.problems_size() > 1024) {
    return absl::InvalidArgumentError("problems: give 1 to 1024");
  }
  if (spec.device_classes().empty() || spec.device_classes_size() > 64) {
    return absl::InvalidArgumentError("device_classes: give 1 to 64");
  }
  // Names are bounded as in every other request (QueryBest's), so that neither the stored job nor
  // an error message that names them can be megabytes long.
  for (const v1::KernelRef& k : spec.kernels()) {
    if (k.name().size() > 256 || k.version().size() > 256) {
      return absl::InvalidArgumentError("kernels: a name or version is longer than 256 bytes");
    }
  }
  for (const std::string& d : spec.device_classes()) {
    if (d.size() > 256) {
      return absl::InvalidArgumentError("device_classes: a class is longer than 256 bytes");
    }
  }
  if (!v1::Strategy_IsValid(spec.strategy())) {
    return absl::InvalidArgumentError(
        absl::StrCat("strategy ", spec.strategy(), " is not a known Strategy value"));
  }
  if (spec.budget_measurements() == 0) {  // unset: a spec without one said "between 1 and ..."
    return absl::InvalidArgumentError(
        "budget is missing or 0: give the measurements per task, 1 to 1,000,000");
  }
  if (spec.budget_measurements() < 1 || spec.budget_measurements() > 1'000'000) {
    return absl::InvalidArgumentError("budget must be between 1 and 1,000,000 per task");
  }
  if (spec.priority() < 0 || spec.priority() > 100) {
    return absl::InvalidArgumentError("priority must be between 0 and 100");
  }
  if (spec.batch_size() < 0 || spec.batch_size() > 1024) {
    return absl::InvalidArgumentError("batch_size must be between 1 and 1024 (0: the default)");
  }
  if (spec.threads() < 0 || spec.threads() > 1024) {
    return absl::InvalidArgumentError("threads must be between 1 and 1024 (0: any)");
  }
  if (spec.has_agent_share() && !(spec.agent_share() >= 0 && spec.agent_share() <= 10)) {
    return absl::InvalidArgumentError("agent_share must be between 0 (no limit) and 10");
  }
  if (!spec.retune().empty() && spec.retune() != "off" && spec.retune() != "suggest" &&
      spec.retune() != "act") {
    return absl::InvalidArgumentError(
        absl::StrCat("retune is '", spec.retune(), "'; off, suggest or act (empty: the server's)"));
  }
  if (spec.has_max_rel_error() &&
      !(spec.max_rel_error() > 0 && std::isfinite(spec.max_rel_error()))) {
    return absl::InvalidArgumentError(
        "max_rel_error must be a finite number above 0 (a relative error, e.g. 1e-3)");
  }
  if (spec.initial_configs_size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat(
        "initial_configs has ", spec.initial_configs_size(), " configurations; at most 64"));
  }
  std::vector<Configuration> initial;
  size_t initial_bytes = 0;
  for (int i = 0; i < spec.initial_configs_size(); ++i) {
    const v1::Configuration& c = spec.initial_configs(i);
    if (c.params().empty() || c.params_size() > 64) {
      return absl::InvalidArgumentError(
          absl::StrCat("initial_configs[", i, "] has ", c.params_size(), " parameters; 1 to 64"));
    }
    KTUNE_ASSIGN_OR_RETURN(Configuration config, FromProto(c.params(), "initial_configs"));
    initial_bytes += CanonicalJson(config).size();
    initial.push_back(std::move(config));
  }
  if (initial_bytes > 64 * 1024) {  // stored with the job, read at every listing
    return absl::InvalidArgumentError("initial_configs take more than 64 KiB");
  }
  const int64_t tasks =
      int64_t{spec.kernels_size()} * spec.problems_size() * spec.device_classes_size();
  if (tasks > kMaxJobTasks) {
    return absl::InvalidArgumentError(absl::StrCat("kernels x problems x device_classes gives ",
                                                   tasks, " tasks; at most 65,536"));
  }
  JobRequest r;
  r.name = spec.name();
  r.wall_seconds = spec.budget_wall_seconds();  // Scheduler::Submit checks the range
  r.batch_size = spec.batch_size();
  r.threads = spec.threads();
  if (spec.has_agent_share()) r.agent_share = spec.agent_share();
  if (spec.has_max_rel_error()) r.max_rel_error = spec.max_rel_error();
  r.budget = spec.budget_measurements();
  r.strategy = StrategyName(spec.strategy());
  r.priority = spec.priority();
  r.seed = spec.seed();  // 0: the scheduler draws one
  r.worker_id = spec.worker_id();
  r.initial = std::move(initial);
  absl::flat_hash_set<std::string> seen;
  for (const v1::KernelRef& k : spec.kernels()) {
    for (const v1::Problem& p : spec.problems()) {
      for (const std::string& d : spec.device_classes()) {
        KTUNE_ASSIGN_OR_RETURN(Problem problem, FromProto(p.params(), "problem"));
        TaskKey task{k.name(), k.version(), problem, d};
        absl::StatusOr<TaskKey> canonical = spaces.CanonicalToMeasure(task);
        if (!canonical.ok()) {
          return absl::Status(canonical.status().code(),
                              absl::StrCat("task ", FormatTask(k.name(), problem, d), ": ",
                                           canonical.status().message()));
        }
        // The same task twice would count each record for both copies.
        if (!seen.insert(TaskIdentity(*canonical)).second) {
          return absl::InvalidArgumentError(
              absl::StrCat("task ", FormatTask(k.name(), canonical->problem, d),
                           " appears twice (a kernel, problem or device class is repeated)"));
        }
        r.tasks.push_back(*std::move(canonical));
      }
    }
  }
  // An initial configuration must name parameters of a kernel of the job (a typo was skipped by
  // every task, unseen); each task then completes and checks it (TaskSearch::InitialPoints).
  std::set<std::string> recorded;  // kernels served from recorded spaces (serve --replay)
  if (!r.initial.empty() || r.threads > 0) {
    for (const TaskSpaces::Recorded& s : spaces.RecordedSpaces()) recorded.insert(s.task.kernel);
  }
  // A thread count needs kernels that take one: the job was created, then failed at its first
  // lease ("has no threads parameter to fix"), where a local tune refused it up front.
  if (r.threads > 0) {
    for (const v1::KernelRef& k : spec.kernels()) {
      const KernelDefinition* def = spaces.registry().Find(k.name());
      if (recorded.count(k.name()) || def == nullptr || def->WithFixedThreads(1).ok()) continue;
      return absl::InvalidArgumentError(
          absl::StrCat("threads: kernel '", k.name(),
                       "' has no threads parameter to fix (leave threads out for it)"));
    }
  }
  for (size_t i = 0; i < r.initial.size(); ++i) {
    std::string why;
    for (const v1::KernelRef& k : spec.kernels()) {
      const KernelDefinition* def = spaces.registry().Find(k.name());
      if (def == nullptr || recorded.count(k.name())) {  // its tasks' searches say
        why.clear();
        break;
      }
      std::string unknown;
      for (const auto& [name, value] : r.initial[i]) {
        if (std::none_of(def->parameters.begin(), def->parameters.end(),
                         [&](const KernelParameter& p) { return p.name == name; })) {
          unknown = name;
        }
      }
      if (unknown.empty()) {
        why.clear();
        break;
      }
      why = absl::StrCat("'", unknown, "' is not a parameter of ", k.name(), " (ktune kernels ",
                         k.name(), " lists them)");
    }
    if (!why.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("initial_configs[", i, "]: ", why));
    }
  }
  nlohmann::json stored{{"name", r.name},         {"budget", r.budget}, {"strategy", r.strategy},
                        {"priority", r.priority}, {"seed", r.seed},     {"tasks", r.tasks.size()}};
  if (!spec.retune().empty()) stored["retune"] = spec.retune();  // read by TelemetryIntake
  // Which kernels and device classes its tasks have: TelemetryIntake finds a task's newest job
  // without reading every job's tasks.
  std::set<std::string> kernels, classes;
  for (const TaskKey& t : r.tasks) kernels.insert(t.kernel), classes.insert(t.device_class);
  stored["kernels"] = kernels;
  stored["device_classes"] = classes;
  r.spec_json = stored.dump();  // the scheduler adds the run options it needs to recover
  return r;
}

}  // namespace ktune
