// ktune kernels [NAME] [--problem P] [--json]: the kernel registry: each kernel's version,
// tunable parameters (with their values), constraints, problem parameters and default
// configuration; with --problem, the size of its search space for that problem on this machine.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/command.h"
#include "cli/task_query.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "kernels/kernel_registry.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "measurer/cuda_measurer.h"
#include "measurer/cuda_programs.h"
#include "proto/channel.h"
#include "proto/convert.h"
#include "proto/plain_json.h"

namespace ktune::cli {
namespace {

struct KernelsArgs {
  std::string name, problem, compile_arch;
  int samples = 8;
  bool samples_given = false;  // --samples appeared (it applies to --compile only)
  bool json = false;
  std::string server, token;  // --server: the kernels a server knows, client kernels included
  std::string db;             // --db: this build's registry and the file's client kernels
  ClientTls tls;
};

// A server's KernelInfo as `kernels --json` writes a kernel of this build: "name" and "version" at
// the top, the rest in the CLI's plain JSON (PlainJson).
nlohmann::ordered_json KernelInfoJson(const v1::KernelInfo& info) {
  nlohmann::ordered_json out = {{"name", info.kernel().name()},
                                {"version", info.kernel().version()}};
  nlohmann::ordered_json fields = PlainJson(info);
  for (auto it = fields.begin(); it != fields.end(); ++it) {
    if (it.key() != "kernel") out[it.key()] = std::move(it.value());
  }
  return out;
}

// --compile ARCH: the default and `samples` random configurations of a CUDA kernel compiled by
// the CUDA runner (NVRTC; no GPU needed), with ptxas's resource use and the compile time.
absl::StatusOr<nlohmann::json> CompileSamples(const KernelDefinition& k, const Problem& problem,
                                              const SearchSpace& space,
                                              const Configuration& default_config,
                                              const std::string& arch, int samples) {
  if (k.language != "cuda" || !k.vendor_library.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--compile needs a CUDA template; ", k.name, " is not one"));
  }
  std::vector<Configuration> configs = {default_config};
  std::mt19937_64 rng(1);
  for (int i = 0; i < samples && space.size() > 0; ++i) {
    configs.push_back(space.ToConfiguration(
        space.PointAt(static_cast<int64_t>(rng() % static_cast<uint64_t>(space.size())))));
  }
  std::vector<cuda_runner::Program> programs;
  for (const Configuration& c : configs) {
    KTUNE_ASSIGN_OR_RETURN(cuda_runner::Program p, CudaKernelProgram(k, problem, c, arch));
    programs.push_back(std::move(p));
  }
  CudaRunnerClient runner;
  // A cache of its own: the compile times are real ones.
  const std::string cache = absl::StrCat(DefaultCudaCacheDir(), "-compile-check-", ::getpid());
  KTUNE_ASSIGN_OR_RETURN(std::vector<cuda_runner::CompileResult> results,
                         runner.Compile(programs, cache, 0, 900'000));
  std::error_code ec;
  std::filesystem::remove_all(cache, ec);
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < configs.size(); ++i) {
    const cuda_runner::CompileResult& r = results[i];
    nlohmann::json j{{"config", nlohmann::json::parse(CanonicalJson(configs[i]))},
                     {"default", i == 0},
                     {"ok", r.ok()},
                     {"compile_ms", r.compile_ms()}};
    if (r.ok()) {
      j["registers"] = r.registers();
      j["shared_bytes"] = r.shared_bytes();
      j["spill_bytes"] = r.spill_bytes();
      if (auto launch = CudaLaunchFor(k, problem, configs[i]); launch.ok()) {
        j["threads"] = launch->threads();
      }
    } else {
      j["log"] = r.log();
    }
    out.push_back(std::move(j));
  }
  return out;
}

int64_t Cores() { return std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)); }

// A kernel's definition as `kernels --json` writes it; with --problem, that problem's space size
// and default, and with --compile the compiled samples. `version` is the one to show (a client
// kernel a server lists comes without its source, which the version hashes). Returns an exit
// code: kExitOk, or the error's (printed).
int DescribeKernel(const std::string& cmd, const KernelDefinition& k, const std::string& version,
                   const KernelsArgs& a, const MachineVariables& machine, nlohmann::json* out) {
  nlohmann::json j{{"name", k.name},
                   {"version", version},
                   {"language", k.language},
                   {"description", k.description},
                   {"constraints", k.constraints},
                   {"dtypes", k.dtypes},
                   {"flops", k.flops},
                   {"bytes", k.bytes},
                   // Present when empty too: a client kernel without problem parameters (the
                   // Kernel Tuner bridge registers such) was read past a missing key.
                   {"parameters", nlohmann::json::array()},
                   {"problem_parameters", nlohmann::json::array()},
                   {"default_config", nlohmann::json::object()}};
  for (const KernelParameter& p : k.parameters) {
    j["parameters"].push_back({{"name", p.name},
                               {"values", p.values},
                               {"compile_time", p.compile_time},
                               {"adds_cores", p.add_cores},
                               {"description", p.description}});
  }
  for (const ProblemParameter& p : k.problem) {
    j["problem_parameters"].push_back(
        {{"name", p.name}, {"min", p.min}, {"max", p.max}, {"description", p.description}});
  }
  for (const auto& [name, expr] : k.default_config) j["default_config"][name] = expr;
  if (!a.problem.empty()) {
    auto given = ParseParamMapAssignments(a.problem);
    if (!given.ok()) return UsageError(cmd, std::string(given.status().message()));
    auto problem = k.ValidateProblem(*given);
    if (!problem.ok()) return UsageError(cmd, std::string(problem.status().message()));
    auto space = k.Space(*problem, machine);
    if (!space.ok()) return Fail(cmd, space.status());
    auto defaults = k.DefaultConfiguration(*problem, machine);
    if (!defaults.ok()) return Fail(cmd, defaults.status());
    j["problem"] = nlohmann::json::parse(CanonicalJson(*problem));
    j["space_size"] = space->size();
    j["default_config"] = nlohmann::json::parse(CanonicalJson(*defaults));
    if (!a.compile_arch.empty()) {
      auto compiled = CompileSamples(k, *problem, *space, *defaults, a.compile_arch, a.samples);
      if (!compiled.ok()) return UsageOrFail(cmd, compiled.status());
      // Some samples may fail (a configuration past the device's limits); none compiling
      // means the architecture or the toolchain is wrong, and that is a failure.
      const bool any = std::any_of(compiled->begin(), compiled->end(),
                                   [](const nlohmann::json& c) { return c["ok"].get<bool>(); });
      if (!compiled->empty() && !any) {
        return Fail(cmd, absl::InvalidArgumentError(
                             absl::StrCat("no sample compiled for ", a.compile_arch, ": ",
                                          (*compiled)[0]["log"].get<std::string>())));
      }
      j["compiled"] = *std::move(compiled);
    }
  }
  *out = std::move(j);
  return kExitOk;
}

// DescribeKernel's JSON for people.
void PrintKernel(const nlohmann::json& j, const KernelsArgs& a, const MachineVariables& machine) {
  std::cout << j["name"].get<std::string>() << "  (version " << j["version"].get<std::string>()
            << ", " << j["language"].get<std::string>() << ")  "
            << j["description"].get<std::string>() << "\n  problem:     ";
  std::vector<std::string> problem;
  for (const auto& p : j["problem_parameters"]) {
    problem.push_back(
        absl::StrCat(p["name"].get<std::string>(), " (", p["description"].get<std::string>(), ")"));
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
    std::cout << "  space:       " << j["space_size"].get<int64_t>() << " valid configurations for "
              << a.problem << " on " << machine.cores << " cores\n  default:     "
              << j["default_config"].dump(-1, ' ', false, kReplaceInvalidUtf8) << "\n";
  } else {
    std::cout << "  default:     " << j["default_config"].dump(-1, ' ', false, kReplaceInvalidUtf8)
              << "\n";
  }
  if (j.contains("compiled")) {
    std::cout << "  compiled for " << a.compile_arch << ":\n";
    for (const auto& c : j["compiled"]) {
      std::cout << "    " << (c["default"].get<bool>() ? "default " : "");
      if (c["ok"].get<bool>()) {
        std::cout << absl::StrFormat(
            "%d registers x %d threads, %d B shared, %d B spilled, %.0f ms: ",
            c["registers"].get<int>(), c.value("threads", 0), c["shared_bytes"].get<int>(),
            c["spill_bytes"].get<int>(), c["compile_ms"].get<double>());
      } else {
        std::cout << "FAILED " << c["log"].get<std::string>() << ": ";
      }
      std::cout << c["config"].dump(-1, ' ', false, kReplaceInvalidUtf8) << "\n";
    }
  }
}

// This build's definition of a kernel a server lists: a client kernel's spec as the server sent
// it, or a built-in of the same version; null for a replayed space or another build's built-in.
std::optional<KernelDefinition> DefinitionOf(const v1::KernelInfo& info,
                                             const KernelRegistry& builtins) {
  if (info.has_spec()) {
    absl::StatusOr<KernelDefinition> k = FromProto(info.spec());
    if (k.ok()) return *std::move(k);
    return std::nullopt;
  }
  absl::StatusOr<const KernelDefinition*> k = builtins.Get(info.kernel().name());
  if (k.ok() && (*k)->Version() == info.kernel().version()) return **k;
  return std::nullopt;
}

// `ktune kernels --server ADDR [NAME] [--problem P [--compile ARCH]]`: the server's kernels (its
// registry and the client kernels registered with it), described as the local registry's are
// (DescribeKernel); a kernel without a definition here (a replayed space, a built-in of another
// build) as its KernelInfo says: one line, or KernelInfoJson.
int RunServerKernels(const KernelsArgs& a) {
  const std::string cmd = "kernels";
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(a.server, a.tls);
  if (!channel.ok()) return ChannelFailure(cmd, channel.status());
  v1::ListKernelsResponse listed;
  absl::Status s = FromGrpc(v1::TuningService::NewStub(*channel)->ListKernels(
      ClientContextFor(a.token).get(), v1::ListKernelsRequest(), &listed));
  if (!s.ok()) return Fail(cmd, s);
  std::vector<const v1::KernelInfo*> chosen;
  std::vector<std::string> names;
  for (const v1::KernelInfo& k : listed.kernels()) {
    names.push_back(k.kernel().name());
    if (a.name.empty() || k.kernel().name() == a.name) chosen.push_back(&k);
  }
  if (chosen.empty() && !a.name.empty()) {
    return UsageError(cmd, absl::StrCat("no kernel '", a.name, "' on ", a.server, " (it has ",
                                        absl::StrJoin(names, ", "), ")"));
  }
  const KernelRegistry builtins = KernelRegistry::WithBuiltins();
  const MachineVariables machine{Cores()};  // --problem: a space on this machine's cores
  nlohmann::json all = nlohmann::json::array();
  std::vector<const v1::KernelInfo*> brief;  // per entry of `all`: null when described in full
  for (const v1::KernelInfo* info : chosen) {
    std::optional<KernelDefinition> k = DefinitionOf(*info, builtins);
    if (k.has_value() && info->has_spec() && !a.compile_arch.empty()) {
      return UsageError(cmd, absl::StrCat("--compile needs the kernel's source, which a server "
                                          "does not give for a client kernel: compile ",
                                          info->kernel().name(),
                                          " with kernels --db FILE on the server's database"));
    }
    if (!k.has_value()) {
      if (!a.problem.empty()) {
        return UsageError(cmd, absl::StrCat("--problem needs the kernel's definition, and ",
                                            info->kernel().name(), " on ", a.server, " is ",
                                            info->language() == "replay"
                                                ? "a recorded space (its one problem is above)"
                                                : "a built-in of another ktune build",
                                            ": drop --problem"));
      }
      all.push_back(nlohmann::json::parse(KernelInfoJson(*info).dump()));
      brief.push_back(info);
      continue;
    }
    nlohmann::json j;
    if (int rc = DescribeKernel(cmd, *k, info->kernel().version(), a, machine, &j); rc != 0) {
      return rc;
    }
    all.push_back(std::move(j));
    brief.push_back(nullptr);
  }
  if (a.json) {
    std::cout << all.dump(-1, ' ', false, kReplaceInvalidUtf8) << "\n";
    return kExitOk;
  }
  for (size_t i = 0; i < all.size(); ++i) {
    if (brief[i] == nullptr) {
      PrintKernel(all[i], a, machine);
      continue;
    }
    const v1::KernelInfo* k = brief[i];
    std::vector<std::string> parameters;
    for (const v1::ParameterInfo& p : k->parameters()) {
      parameters.push_back(absl::StrCat(p.name(), " (", p.values_size(), " values)"));
    }
    std::cout << k->kernel().name() << "  (version " << k->kernel().version() << ", "
              << k->language() << ")  " << k->description()
              << "\n  problem:     " << absl::StrJoin(k->problem_parameters(), ", ")
              << "\n  parameters:  " << absl::StrJoin(parameters, ", ") << "\n";
  }
  return kExitOk;
}

int RunKernels(const KernelsArgs& a) {
  const std::string cmd = "kernels";
  if (a.samples_given && a.compile_arch.empty()) {
    return UsageError(cmd, "--samples is the number of configurations --compile builds: add it");
  }
  // An architecture NVRTC would refuse is the command line's mistake (it exited 1, after a
  // compile), e.g. sm_90, sm_90a, compute_80.
  if (!a.compile_arch.empty() &&
      !std::regex_match(a.compile_arch, std::regex(R"((sm|compute)_\d{2,3}[a-z]?)"))) {
    return UsageError(cmd, absl::StrCat("--compile ", a.compile_arch,
                                        ": not a GPU architecture such as sm_90 or compute_80"));
  }
  if (a.server.empty() && (!a.tls.ca_file.empty() || !a.tls.cert_file.empty() ||
                           !a.tls.key_file.empty() || !a.token.empty())) {
    return UsageError(cmd,
                      "--token, --tls-ca, --tls-cert and --tls-key are for --server; without "
                      "it the command lists this build's registry");
  }
  if (!a.server.empty() && !a.db.empty()) {
    return UsageError(cmd, "--server lists a server's kernels, --db a file's: give one");
  }
  if (!a.problem.empty() && a.name.empty()) {
    return UsageError(cmd, "--problem needs a kernel name: ktune kernels NAME --problem ...");
  }
  if (!a.compile_arch.empty() && a.problem.empty()) {
    return UsageError(cmd,
                      "--compile needs a kernel and a problem: ktune kernels NAME --problem P "
                      "--compile sm_90");
  }
  if (!a.server.empty()) return RunServerKernels(a);
  KernelRegistry registry = KernelRegistry::WithBuiltins();
  if (!a.db.empty()) {  // the kernels registered in a database file, as tune --db knows them
    absl::StatusOr<std::unique_ptr<SqliteTuningDatabase>> db = OpenExistingDatabase(a.db);
    if (!db.ok()) return Fail(cmd, db.status());
    AddClientKernels(**db, &registry);
  }
  std::vector<const KernelDefinition*> chosen;
  if (!a.name.empty()) {
    auto k = registry.Get(a.name);
    if (!k.ok()) return UsageError(cmd, std::string(k.status().message()));
    chosen.push_back(*k);
  } else {
    chosen = registry.List();
  }
  const MachineVariables machine{Cores()};
  nlohmann::json all = nlohmann::json::array();
  for (const KernelDefinition* k : chosen) {
    nlohmann::json j;
    if (int rc = DescribeKernel(cmd, *k, k->Version(), a, machine, &j); rc != kExitOk) return rc;
    all.push_back(std::move(j));
  }
  if (a.json) {
    std::cout << all.dump(-1, ' ', false, kReplaceInvalidUtf8) << "\n";
    return kExitOk;
  }
  for (const nlohmann::json& j : all) PrintKernel(j, a, machine);
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
  if (!text.ok()) return Fail(cmd, text.status());
  v1::RegisterKernelRequest request;
  const google::protobuf::util::Status parsed =
      google::protobuf::util::JsonStringToMessage(*text, request.mutable_kernel());
  if (!parsed.ok()) {
    return Fail(cmd, absl::InvalidArgumentError(absl::StrCat(
                         a.file, " is not a KernelSpec in JSON: ", parsed.message().ToString())));
  }
  if (!a.source.empty()) {
    absl::StatusOr<std::string> source = ReadFileMaybeGzip(a.source);
    if (!source.ok()) return Fail(cmd, source.status());
    request.mutable_kernel()->set_source(*source);
  } else if (request.kernel().source().empty()) {
    // A kernel without a source fails every measurement, and its name stays taken: the server
    // keeps a registered kernel for good.
    return UsageError(cmd, absl::StrCat(a.file,
                                        " has no \"source\": give --source FILE (the "
                                        "kernel's C++ or CUDA source)"));
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(a.server, a.tls);
  if (!channel.ok()) return ChannelFailure(cmd, channel.status());
  v1::KernelInfo info;
  grpc::Status s = v1::TuningService::NewStub(*channel)->RegisterKernel(
      ClientContextFor(a.token, 30).get(), request, &info);
  if (!s.ok()) {
    // A refusal of the spec (bad, too large a space, a name taken) names the file, as submit's
    // do; a transport or access error does not.
    const bool refused = s.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
                         s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ||
                         s.error_code() == grpc::StatusCode::ALREADY_EXISTS ||
                         s.error_code() == grpc::StatusCode::FAILED_PRECONDITION;
    return Fail(cmd, absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                                  refused ? absl::StrCat(a.file, ": ", s.error_message())
                                          : s.error_message()));
  }
  if (a.json) {
    std::cout << KernelInfoJson(info).dump(-1, ' ', false, kReplaceInvalidUtf8) << "\n";
  } else {
    std::cout << "registered " << info.kernel().name() << " (version " << info.kernel().version()
              << ", " << info.language() << ")\n";
  }
  // The same kernel again is a no-op, and only the description may differ then: the registered
  // one is kept (a user trial read "registered" as its new description taken).
  if (info.description() != request.kernel().description()) {
    std::cerr << "ktune kernels register: " << info.kernel().name()
              << " was registered before, with the same spec; its description stays \""
              << info.description() << "\" (a registered kernel is kept as it was first "
              << "registered)\n";
  }
  return kExitOk;
}

}  // namespace

void RegisterKernelsCommand(CLI::App& app, Action* action) {
  auto a = std::make_shared<KernelsArgs>();
  CLI::App* kernels =
      app.add_subcommand("kernels", "List the kernel registry, or register a kernel");
  auto r = std::make_shared<RegisterArgs>();
  CLI::App* reg = kernels->add_subcommand(
      "register", "Register a client kernel with a server (admin role): a KernelSpec in JSON");
  reg->add_option("FILE", r->file, "The kernel: a ktune.v1.KernelSpec as JSON")->required();
  reg->add_option("--source", r->source, "Read the kernel's source from this file instead");
  reg->add_option("--server", r->server, "Server address")
      ->check(ServerAddress())
      ->capture_default_str();
  reg->add_option("--token", r->token, "Bearer token (admin role); default $KTUNE_TOKEN");
  AddClientTlsOptions(reg, &r->tls);
  reg->add_flag("--json", r->json, "Print the registered kernel as JSON");
  reg->callback([=] {
    *action = [=] {
      // `kernels`' own options before `register` were dropped without a word (`ktune kernels
      // --json register F` printed text).
      const bool parents = !a->name.empty() || a->json || !a->problem.empty() ||
                           !a->compile_arch.empty() || !a->server.empty() || !a->token.empty() ||
                           !a->db.empty() || !a->tls.ca_file.empty() || !a->tls.cert_file.empty() ||
                           !a->tls.key_file.empty();
      return parents ? UsageError("kernels register",
                                  "options go after `register` (ktune kernels register FILE "
                                  "[--source F] [--server ADDR] [--json]), no NAME before it")
                     : RunRegister(*r);
    };
  });
  kernels->add_option("NAME", a->name, "Show one kernel");
  kernels->add_option("--problem", a->problem,
                      "With NAME: the space size and default configuration for this problem");
  kernels->add_option("--compile", a->compile_arch,
                      "With NAME and --problem, a CUDA kernel: compile the default and --samples "
                      "random configurations for this architecture (e.g. sm_90; no GPU needed) "
                      "and show registers, shared memory, spills and compile time");
  CLI::Option* samples =
      kernels->add_option("--samples", a->samples, "Random configurations for --compile")
          ->check(CLI::Range(0, 1000))
          ->capture_default_str();
  kernels->add_flag("--json", a->json, "Print as JSON");
  kernels
      ->add_option("--server", a->server,
                   "List the kernels this server knows (client kernels registered with it "
                   "included) instead of this build's registry")
      ->check(ServerAddress());
  kernels->add_option("--db", a->db,
                      "Also list the client kernels registered in this database file (ktune "
                      "kernels register with the embedded default, or a server's file)");
  kernels->add_option("--token", a->token, "Bearer token, with --server; default $KTUNE_TOKEN");
  AddClientTlsOptions(kernels, &a->tls);
  kernels->callback([=] {
    a->samples_given = samples->count() > 0;
    if (!*action) *action = [=] { return RunKernels(*a); };
  });
}

}  // namespace ktune::cli
