// The task and device a lookup command asks about (`ktune best`, `ktune explain`): the same flags,
// resolved the same way into a BestQuery.
#ifndef KTUNE_CLI_TASK_QUERY_H_
#define KTUNE_CLI_TASK_QUERY_H_

#include <CLI/CLI.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "db/tuning_database.h"
#include "kernels/kernel_registry.h"
#include "ktune/v1/tuning_service.pb.h"

namespace ktune::cli {

struct TaskQueryArgs {
  std::string kernel, kernel_version, problem, dtype, device, family, fingerprint;
};

// --kernel, --kernel-version, --problem, --dtype, --device, --family, --fingerprint.
void AddTaskQueryOptions(CLI::App* sub, TaskQueryArgs* args);

struct ResolvedTaskQuery {
  BestQuery query;  // top_k 1
  // This machine's device fingerprint (canonical JSON) when --device named it (cpu, cuda[:N]),
  // for the exact level of a server's answer; empty otherwise.
  std::string fingerprint_json;
};

// The flags as a query. For a registry kernel the problem is validated and made canonical (dtype
// filled in). `cpu` is this machine's CPU and `cuda[:N]` that GPU: their fingerprint, class and
// family. InvalidArgument or NotFound for bad flags (a usage error); other errors when the named
// device cannot be described (no GPU).
absl::StatusOr<ResolvedTaskQuery> ResolveTaskQuery(const TaskQueryArgs& args);

// Adds the client kernels registered in `db` (`ktune kernels register` stores them there) to
// `registry`: what a server on that database knows. A stored list that cannot be read is said on
// stderr, and the built-ins stay.
void AddClientKernels(TuningDatabase& db, KernelRegistry* registry);

// `query`'s problem as the tasks of its kernel store it (validated, dtype filled in) when
// `registry` has the kernel and a problem is given; InvalidArgument when the kernel refuses it.
absl::Status MakeProblemCanonical(const KernelRegistry& registry, BestQuery* query);

// The device part of a request to a server.
void ToRequest(const ResolvedTaskQuery& resolved, v1::KernelRef* kernel, v1::Problem* problem,
               v1::DeviceFingerprint* device);

// For an answer from `db` (the file `db_path`) that found nothing: a hint when `kernel` is
// neither in `registry` (the built-ins and `db`'s client kernels: AddClientKernels) nor in the
// database's records (a mistyped name, most often), to append to the "nothing known" line; empty
// otherwise. Nothing known stays an answer (exit 0), not a failure.
std::string UnknownKernelHint(TuningDatabase& db, const KernelRegistry& registry,
                              const std::string& db_path, const std::string& kernel);

// For an answer that found nothing: "no --problem was given, and gemm's problems have M, N, K"
// when `query` has no problem and its kernel is a built-in with problem parameters (a recorded
// space's records have none, so an empty problem is not refused); empty otherwise.
std::string NoProblemHint(const BestQuery& query);

}  // namespace ktune::cli

#endif  // KTUNE_CLI_TASK_QUERY_H_
