// ktune explain: why a configuration is served (server/explanation.h), from the database or a
// server, as text, JSON, and an SVG plot.
#include <iostream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "cli/command.h"
#include "cli/explain_plot.h"
#include "cli/task_query.h"
#include "common/status_macros.h"
#include "kernels/kernel_registry.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "proto/channel.h"
#include "server/explanation.h"

namespace ktune::cli {
namespace {

struct ExplainArgs {
  std::string db;
  TaskQueryArgs task;
  bool json = false;
  std::string plot;
  std::optional<double> max_rel_error;
  std::string server, token;
  ClientTls tls;
};

absl::StatusOr<v1::ExplainResponse> AskServer(const ExplainArgs& a,
                                              const std::shared_ptr<grpc::Channel>& channel,
                                              const ResolvedTaskQuery& resolved) {
  v1::ExplainRequest request;
  ToRequest(resolved, request.mutable_kernel(), request.mutable_problem(),
            request.mutable_device());
  if (resolved.query.max_rel_error) request.set_max_rel_error(*resolved.query.max_rel_error);
  v1::ExplainResponse response;
  KTUNE_RETURN_IF_ERROR(FromGrpc(v1::TuningService::NewStub(channel)->Explain(
      ClientContextFor(a.token).get(), request, &response)));
  return response;
}

int RunExplain(const ExplainArgs& a) {
  const std::string cmd = "explain";
  if (!a.server.empty() && !a.task.fingerprint.empty()) {
    return UsageError(cmd,
                      "--fingerprint reads the local database; with --server, --device cpu or "
                      "cuda[:N] sends this machine's fingerprint");
  }
  absl::StatusOr<ResolvedTaskQuery> resolved = ResolveTaskQuery(a.task);
  if (!resolved.ok()) return UsageOrFail(cmd, resolved.status());
  std::shared_ptr<grpc::Channel> channel;
  if (int rc = ConnectIfServer(cmd, a.server, a.tls, &channel); rc != kExitOk) return rc;
  resolved->query.max_rel_error = a.max_rel_error;
  absl::StatusOr<v1::ExplainResponse> explained;
  std::string hint;  // why nothing is known, when the kernel's name is nowhere
  if (channel != nullptr) {
    explained = AskServer(a, channel, *resolved);
    if (!explained.ok()) {
      return absl::IsInvalidArgument(explained.status()) ? UsageError(cmd, std::string(explained.status().message()))
                                                        : Fail(cmd, explained.status());
    }
  } else {
    auto db = OpenExistingDatabase(a.db);
    if (!db.ok()) return Fail(cmd, db.status());
    KernelRegistry registry = KernelRegistry::WithBuiltins();
    AddClientKernels(**db, &registry);  // a kernel registered there: its problem as stored
    if (absl::Status s = MakeProblemCanonical(registry, &resolved->query); !s.ok()) {
      return UsageError(cmd, std::string(s.message()));
    }
    explained = Explain(**db, registry, resolved->query);
    if (!explained.ok()) return Fail(cmd, explained.status());
    if (explained->level() == v1::MATCH_LEVEL_NONE) {
      hint = UnknownKernelHint(**db, registry, a.db, resolved->query.kernel);
    }
  }
  // The plot first: a plot that could not be written printed the whole answer (JSON a script
  // would parse) and then exited 1; now a failing command prints nothing on stdout, as best
  // --pareto --plot.
  if (!a.plot.empty()) {
    if (explained->level() == v1::MATCH_LEVEL_NONE) {
      return Fail(cmd, absl::NotFoundError("nothing known: no plot written"));
    }
    const BestQuery& q = resolved->query;
    const std::string title =
        FormatTask(q.kernel, q.problem, explained->served().device().device_class());
    if (absl::Status s = WriteExplanationPlot(*explained, title, a.plot); !s.ok()) {
      return Fail(cmd, s);
    }
  }
  if (a.json) {
    std::cout << ExplanationJson(*explained) << "\n";
  } else {
    std::cout << ExplanationText(*explained, resolved->query);
    if (!hint.empty()) std::cout << hint << "\n";
    // A forgotten --problem (it read "no tuned problem to predict from", as if none were tuned).
    if (hint.empty() && explained->level() == v1::MATCH_LEVEL_NONE) {
      if (const std::string why = NoProblemHint(resolved->query); !why.empty()) {
        std::cout << why << "\n";
      }
    }
    if (!a.plot.empty()) std::cout << "plot: " << a.plot << "\n";
  }
  // Nothing known is an answer, not a failure of the command.
  return kExitOk;
}

}  // namespace

void RegisterExplainCommand(CLI::App& app, Action* action) {
  auto args = std::make_shared<ExplainArgs>();
  CLI::App* explain = app.add_subcommand(
      "explain",
      "Why a configuration is served: its records, the gap to the runner-up against the noise, "
      "which parameters matter");
  AddDbOption(explain, &args->db);
  AddTaskQueryOptions(explain, &args->task);
  explain->add_flag("--json", args->json, "Print as JSON (the ExplainResponse message)");
  explain
      ->add_option("--plot", args->plot,
                   "Also draw the tuning progress and parameter effects to this SVG file "
                   "(needs gnuplot)")
      ->check(SvgPath());
  explain
      ->add_option("--max-rel-error", args->max_rel_error,
                   "Explain the answer within this accuracy budget (as ktune best "
                   "--max-rel-error), and what the budget costs")
      ->check(AboveZero());
  explain
      ->add_option("--server", args->server, "Ask this server (HOST:PORT) instead of reading --db")
      ->check(ServerAddress());
  explain->add_option("--token", args->token, "Bearer token (or $KTUNE_TOKEN)");
  AddClientTlsOptions(explain, &args->tls);
  explain->callback([=] { *action = [=] { return RunExplain(*args); }; });
}

}  // namespace ktune::cli
