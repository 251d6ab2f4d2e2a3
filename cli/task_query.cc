#include "cli/task_query.h"

#include <iostream>
#include <set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/tune_target.h"
#include "common/status_macros.h"
#include "kernels/kernel_registry.h"
#include "measurer/cpu_device.h"
#include "proto/convert.h"
#include "server/client_kernels.h"

namespace ktune::cli {

void AddTaskQueryOptions(CLI::App* sub, TaskQueryArgs* a) {
  sub->add_option("--kernel", a->kernel, "Kernel name")->required();
  sub->add_option("--kernel-version", a->kernel_version, "Kernel version (default: any)");
  sub->add_option("--problem", a->problem, "Problem, e.g. M=1024,N=1024,K=1024");
  sub->add_option("--dtype", a->dtype,
                  "The problem's element type, as `tune --dtype` takes it (f32, f16, ...): the "
                  "same as dtype=... in --problem");
  sub->add_option("--device", a->device, "Device class, e.g. A100, or cpu (this machine)")
      ->required();
  sub->add_option("--family", a->family,
                  "Architecture family to fall back to (default: the class's known family)");
  sub->add_option("--fingerprint", a->fingerprint, "Exact device fingerprint hash");
}

absl::StatusOr<ResolvedTaskQuery> ResolveTaskQuery(const TaskQueryArgs& a) {
  // An empty --device ($DEVICE unset) answered "nothing known ... on " (blank), exit 0.
  if (a.device.empty()) {
    return absl::InvalidArgumentError(
        "--device is empty: give cpu, cuda[:N], or a device class (ktune db stats lists them)");
  }
  absl::StatusOr<Problem> problem = ParseParamMapAssignments(a.problem);
  if (!problem.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--problem: ", problem.status().message()));
  }
  if (!a.dtype.empty()) {
    // As `tune --dtype` sets it: a problem value, which --problem may give too, alike.
    auto given = problem->find("dtype");
    if (given != problem->end() && given->second != ParamValue(a.dtype)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--dtype ", a.dtype, " and --problem's dtype=", FormatParamValue(given->second),
          " disagree: give one"));
    }
    (*problem)["dtype"] = a.dtype;
  }
  ResolvedTaskQuery r;
  BestQuery& q = r.query;
  q.kernel = a.kernel;
  q.kernel_version = a.kernel_version;
  q.problem = *problem;
  q.device_class = a.device;
  q.family = a.family;
  q.fingerprint_hash = a.fingerprint;
  // Registry kernels: the problem as tasks store it (validated, dtype filled in). Client kernels
  // follow once the database is open (AddClientKernels).
  KTUNE_RETURN_IF_ERROR(MakeProblemCanonical(KernelRegistry::WithBuiltins(), &q));
  std::optional<DeviceInfo> mine;  // this machine's device, when --device names it
  if (a.device == "cpu") {
    mine = DescribeThisCpu(/*measure_clock=*/false).ToDeviceInfo();
  } else if (absl::StartsWith(a.device, "cuda")) {
    absl::StatusOr<DeviceInfo> gpu = DescribeCudaDevice(a.device);
    if (!gpu.ok()) {
      return absl::Status(gpu.status().code(),
                          absl::StrCat(gpu.status().message(),
                                       " (name the GPU model with --device to query without one)"));
    }
    mine = *gpu;
  }
  if (mine) {
    r.fingerprint_json = mine->fingerprint_json;
    q.device_class = mine->device_class;
    if (q.family.empty()) q.family = mine->family;
    if (q.fingerprint_hash.empty()) q.fingerprint_hash = mine->FingerprintHash();
  }
  return r;
}

void ToRequest(const ResolvedTaskQuery& r, v1::KernelRef* kernel, v1::Problem* problem,
               v1::DeviceFingerprint* device) {
  kernel->set_name(r.query.kernel);
  kernel->set_version(r.query.kernel_version);
  ToProto(r.query.problem, problem->mutable_params());
  device->set_device_class(r.query.device_class);
  device->set_family(r.query.family);
  if (!r.fingerprint_json.empty()) {
    (*device->mutable_extra())["fingerprint_json"] = r.fingerprint_json;
  }
}

void AddClientKernels(TuningDatabase& db, KernelRegistry* registry) {
  ClientKernels stored(&db, registry);
  if (absl::Status s = stored.Load(); !s.ok()) {
    std::cerr << "ktune: note: the client kernels registered in the database are not read: "
              << s.message() << "\n";
  }
}

absl::Status MakeProblemCanonical(const KernelRegistry& registry, BestQuery* query) {
  const KernelDefinition* k = registry.Find(query->kernel);
  if (k == nullptr || query->problem.empty()) return absl::OkStatus();
  absl::StatusOr<Problem> canonical = k->ValidateProblem(query->problem);
  if (!canonical.ok()) return absl::InvalidArgumentError(canonical.status().message());
  query->problem = *std::move(canonical);
  return absl::OkStatus();
}

std::string UnknownKernelHint(TuningDatabase& db, const KernelRegistry& registry,
                              const std::string& db_path, const std::string& kernel) {
  if (registry.Find(kernel) != nullptr) return "";
  absl::StatusOr<std::vector<TaskKey>> tasks = db.ListTasks();
  if (!tasks.ok()) return "";
  std::set<std::string> held;
  for (const TaskKey& t : *tasks) {
    if (t.kernel == kernel) return "";
    held.insert(t.kernel);
  }
  std::vector<std::string> named(held.begin(), held.end());
  if (named.size() > 10) named.resize(10), named.push_back("...");
  return absl::StrCat("no kernel named '", kernel, "' in the registry or in ", db_path,
                      named.empty() ? " (it holds no records" : " (it holds ",
                      absl::StrJoin(named, ", "), "; ktune kernels lists the registry)");
}

std::string NoProblemHint(const BestQuery& query) {
  if (!query.problem.empty()) return "";
  // The registry is kept for as long as `k` is read (a temporary's pointer read freed memory:
  // std::bad_alloc, exit 134, found by the compiler-integration trial).
  const KernelRegistry builtins = KernelRegistry::WithBuiltins();
  const KernelDefinition* k = builtins.Find(query.kernel);
  if (k == nullptr || k->problem.empty()) return "";
  std::vector<std::string> names;
  for (const ProblemParameter& p : k->problem) names.push_back(p.name);
  return absl::StrCat("no --problem was given, and ", query.kernel, "'s problems have ",
                      absl::StrJoin(names, ", "));
}

}  // namespace ktune::cli
