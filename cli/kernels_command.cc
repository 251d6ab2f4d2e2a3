// ktune kernels [NAME] [--problem P] [--json]: the kernel registry: each kernel's version,
// tunable parameters (with their values), constraints, problem parameters and default
// configuration; with --problem, the size of its search space for that problem on this machine.
#include <unistd.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/command.h"
#include "common/file_util.h"
#include "google/protobuf/util/json_util.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "proto/channel.h"
#include "kernels/kernel_registry.h"

namespace ktune::cli {
namespace {

struct KernelsArgs {
  std::string name, problem;
  bool json = false;
};

int64_t Cores() { return std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)); }

int RunKernels(const KernelsArgs& a) {
  const std::string cmd = "kernels";
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  std::vector<const KernelDefinition*> chosen;
  if (!a.name.empty()) {
    auto k = registry.Get(a.name);
    if (!k.ok()) return UsageError(cmd, std::string(k.status().message()));
    chosen.push_back(*k);
  } else {
    chosen = registry.List();
  }
  if (!a.problem.empty() && chosen.size() != 1) {
    return UsageError(cmd, "--problem needs a kernel name: ktune kernels NAME --problem ...");
  }
  const MachineVariables machine{Cores()};
  nlohmann::json all = nlohmann::json::array();
  for (const KernelDefinition* k : chosen) {
    nlohmann::json j{{"name", k->name},
                     {"version", k->Version()},
                     {"language", k->language},
                     {"description", k->description},
                     {"constraints", k->constraints},
                     {"dtypes", k->dtypes},
                     {"flops", k->flops},
                     {"bytes", k->bytes}};
    for (const KernelParameter& p : k->parameters) {
      j["parameters"].push_back({{"name", p.name},
                                 {"values", p.values},
                                 {"compile_time", p.compile_time},
                                 {"adds_cores", p.add_cores},
                                 {"description", p.description}});
    }
    for (const ProblemParameter& p : k->problem) {
      j["problem_parameters"].push_back(
          {{"name", p.name}, {"min", p.min}, {"max", p.max}, {"description", p.description}});
    }
    for (const auto& [name, expr] : k->default_config) j["default_config"][name] = expr;
    if (!a.problem.empty()) {
      auto given = ParseParamMapAssignments(a.problem);
      if (!given.ok()) return UsageError(cmd, std::string(given.status().message()));
      auto problem = k->ValidateProblem(*given);
      if (!problem.ok()) return UsageError(cmd, std::string(problem.status().message()));
      auto space = k->Space(*problem, machine);
      if (!space.ok()) return Fail(cmd, space.status());
      auto defaults = k->DefaultConfiguration(*problem, machine);
      if (!defaults.ok()) return Fail(cmd, defaults.status());
      j["problem"] = nlohmann::json::parse(CanonicalJson(*problem));
      j["space_size"] = space->size();
      j["default_config"] = nlohmann::json::parse(CanonicalJson(*defaults));
    }
    all.push_back(std::move(j));
  }
  if (a.json) {
    std::cout << all.dump() << "\n";
    return kExitOk;
  }
  for (const nlohmann::json& j : all) {
    std::cout << j["name"].get<std::string>() << "  (version " << j["version"].get<std::string>()
              << ", " << j["language"].get<std::string>() << ")  "
              << j["description"].get<std::string>() << "\n  problem:     ";
    std::vector<std::string> problem;
    for (const auto& p : j["problem_parameters"]) {
      problem.push_back(absl::StrCat(p["name"].get<std::string>(), " (",
                                     p["description"].get<std::string>(), ")"));
    }
    std::cout << absl::StrJoin(problem, ", ") << "; dtype "
              << absl::StrJoin(j["dtypes"].get<std::vector<std::string>>(), "|") << "\n";
    std::cout << "  parameters:\n";
    for (const auto& p : j["parameters"]) {
      std::cout << "    " << p["name"].get<std::string>() << " in {"
                << absl::StrJoin(p["values"].get<std::vector<int64_t>>(), ", ")
                << (p["adds_cores"].get<bool>() ? ", <cores>" : "") << "}"
                << (p["compile_time"].get<bool>() ? " [compile-time]" : "") << "  "
                << p["description"].get<std::string>() << "\n";
    }
    std::cout << "  constraints: "
              << absl::StrJoin(j["constraints"].get<std::vector<std::string>>(), "; ") << "\n";
    if (j.contains("space_size")) {
      std::cout << "  space:       " << j["space_size"].get<int64_t>()
                << " valid configurations for " << a.problem << " on " << machine.cores
                << " cores\n  default:     " << j["default_config"].dump() << "\n";
    } else {
      std::cout << "  default:     " << j["default_config"].dump() << "\n";
    }
  }
  return kExitOk;
}

// --- kernels register ---

struct RegisterArgs {
  std::string file, source, server = kDefaultServer, token;
  ClientTls tls;
  bool json = false;
};

int RunRegister(const RegisterArgs& a) {
  const std::string cmd = "kernels register";
  absl::StatusOr<std::string> text = ReadFileMaybeGzip(a.file);
  if (!text.ok()) return UsageError(cmd, std::string(text.status().message()));
  v1::RegisterKernelRequest request;
  const google::protobuf::util::Status parsed =
      google::protobuf::util::JsonStringToMessage(*text, request.mutable_kernel());
  if (!parsed.ok()) {
    return UsageError(cmd, absl::StrCat(a.file, " is not a KernelSpec in JSON: ",
                                        parsed.message().ToString()));
  }
  if (!a.source.empty()) {
    absl::StatusOr<std::string> source = ReadFileMaybeGzip(a.source);
    if (!source.ok()) return UsageError(cmd, std::string(source.status().message()));
    request.mutable_kernel()->set_source(*source);
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(a.server, a.tls);
  if (!channel.ok()) return UsageError(cmd, std::string(channel.status().message()));
  v1::KernelInfo info;
  grpc::Status s = v1::TuningService::NewStub(*channel)->RegisterKernel(
      ClientContextFor(a.token, 30).get(), request, &info);
  if (!s.ok()) {
    return UsageOrFail(cmd,
                       absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message()));
  }
  if (a.json) {
    std::string out;
    google::protobuf::util::MessageToJsonString(info, &out);
    std::cout << out << "\n";
  } else {
    std::cout << "registered " << info.kernel().name() << " (version " << info.kernel().version()
              << ", " << info.language() << ")\n";
  }
  return kExitOk;
}

}  // namespace

void RegisterKernelsCommand(CLI::App& app, Action* action) {
  auto a = std::make_shared<KernelsArgs>();
  CLI::App* kernels = app.add_subcommand("kernels", "List the kernel registry, or register a kernel");
  auto r = std::make_shared<RegisterArgs>();
  CLI::App* reg = kernels->add_subcommand(
      "register", "Register a client kernel with a server (admin role): a KernelSpec in JSON");
  reg->add_option("FILE", r->file, "The kernel: a ktune.v1.KernelSpec as JSON")->required();
  reg->add_option("--source", r->source, "Read the kernel's source from this file instead");
  reg->add_option("--server", r->server, "Server address")->capture_default_str();
  reg->add_option("--token", r->token, "Bearer token (admin role); default $KTUNE_TOKEN");
  AddClientTlsOptions(reg, &r->tls);
  reg->add_flag("--json", r->json, "Print the registered kernel as JSON");
  reg->callback([=] { *action = [=] { return RunRegister(*r); }; });
  kernels->add_option("NAME", a->name, "Show one kernel");
  kernels->add_option("--problem", a->problem,
                      "With NAME: the space size and default configuration for this problem");
  kernels->add_flag("--json", a->json, "Print as JSON");
  kernels->callback([=] {
    if (!*action) *action = [=] { return RunKernels(*a); };
  });
}

}  // namespace ktune::cli
