// ktune best | jobs
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/best_pareto.h"
#include "cli/command.h"
#include "cli/task_query.h"
#include "common/error_format.h"
#include "common/status_macros.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "proto/channel.h"
#include "proto/convert.h"

namespace ktune::cli {
namespace {

struct BestArgs {
  std::string db;
  TaskQueryArgs task;
  int top = 1;
  bool json = false;
  // --server: ask a running server (its cache, with predictions for problems never tuned).
  std::string server, token;
  ClientTls tls;
  bool tune_if_missing = false;
  std::optional<double> max_rel_error;  // unset: no accuracy budget
  bool pareto = false;
  std::string plot;  // --pareto --plot FILE.svg
};

// An answer, from the database or from a server.
struct BestAnswerOf {
  std::string level;  // exact, device_class, family, predicted, none
  std::vector<Record> records;
  std::string queued_job_id;
  bool stale = false;  // BestResult::stale
  bool kernel_unknown = false;  // QueryBestResponse::kernel_unknown
  std::string not_queued;       // QueryBestResponse::not_queued
};

std::string LevelName(v1::MatchLevel level) {
  switch (level) {
    case v1::MATCH_LEVEL_EXACT:
      return "exact";
    case v1::MATCH_LEVEL_DEVICE_CLASS:
      return "device_class";
    case v1::MATCH_LEVEL_FAMILY:
      return "family";
    case v1::MATCH_LEVEL_PREDICTED:
      return "predicted";
    default:
      return "none";
  }
}

// QueryBest on the server behind `channel`.
absl::StatusOr<BestAnswerOf> AskServer(const BestArgs& a,
                                       const std::shared_ptr<grpc::Channel>& channel,
                                       const ResolvedTaskQuery& resolved) {
  v1::QueryBestRequest request;
  ToRequest(resolved, request.mutable_kernel(), request.mutable_problem(),
            request.mutable_device());
  const BestQuery& q = resolved.query;
  request.set_top_k(q.top_k);
  request.set_tune_if_missing(a.tune_if_missing);
  if (q.max_rel_error) request.set_max_rel_error(*q.max_rel_error);
  v1::QueryBestResponse response;
  KTUNE_RETURN_IF_ERROR(FromGrpc(v1::TuningService::NewStub(channel)->QueryBest(
      ClientContextFor(a.token).get(), request, &response)));
  BestAnswerOf answer{LevelName(response.level()), {},
                      response.queued_job_id(),    response.stale(),
                      response.kernel_unknown(),   response.not_queued()};
  for (v1::Record r : response.best()) {
    r.clear_record_id();  // a predicted record is not a measurement of its own
    KTUNE_ASSIGN_OR_RETURN(Record record, FromProto(r));
    answer.records.push_back(std::move(record));
  }
  return answer;
}

// Every record of the task, from the server's ListRecords (`channel` set) or the local database.
absl::StatusOr<std::vector<Record>> TaskRecordsOf(const BestArgs& a,
                                                  const std::shared_ptr<grpc::Channel>& channel,
                                                  const ResolvedTaskQuery& resolved) {
  BestQuery q = resolved.query;
  if (channel == nullptr) {
    KTUNE_ASSIGN_OR_RETURN(std::unique_ptr<SqliteTuningDatabase> db, OpenExistingDatabase(a.db));
    KernelRegistry registry = KernelRegistry::WithBuiltins();
    AddClientKernels(*db, &registry);  // a kernel registered there: its problem as stored
    KTUNE_RETURN_IF_ERROR(MakeProblemCanonical(registry, &q));
    return db->TaskRecords({q.kernel, q.kernel_version, q.problem, q.device_class});
  }
  const TaskKey task{q.kernel, q.kernel_version, q.problem, q.device_class};
  auto stub = v1::TuningService::NewStub(channel);
  std::vector<Record> records;
  v1::ListRecordsRequest request;
  *request.mutable_task() = ToProto(task);
  request.set_page_size(10'000);
  do {
    v1::ListRecordsResponse page;
    KTUNE_RETURN_IF_ERROR(
        FromGrpc(stub->ListRecords(ClientContextFor(a.token).get(), request, &page)));
    for (const v1::Record& r : page.records()) {
      KTUNE_ASSIGN_OR_RETURN(Record record, FromProto(r));
      records.push_back(std::move(record));
    }
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
  return records;
}

// `best --pareto`: the task's time/error front.
int RunPareto(const BestArgs& a, const std::shared_ptr<grpc::Channel>& channel,
              const ResolvedTaskQuery& resolved) {
  const std::string cmd = "best";
  absl::StatusOr<std::vector<Record>> records = TaskRecordsOf(a, channel, resolved);
  if (!records.ok()) {
    // From the local database every error is a failure (a missing --db included); from a
    // server, a task it does not know is the command line's.
    return channel == nullptr ? Fail(cmd, records.status()) : UsageOrFail(cmd, records.status());
  }
  const std::vector<TradeOff> trade_offs = TimeErrorTradeOffs(*records);
  const BestQuery& q = resolved.query;
  const std::string title = FormatTask(q.kernel, q.problem, q.device_class);
  if (records->empty() && !a.json) {
    // Not "no measurement with a measured error": the task has no record at all.
    std::cout << "nothing known for " << title << " (the front is the exact task's: no record of it"
              << (a.plot.empty() ? "" : ", so no plot is written") << ")\n";
    return kExitOk;
  }
  if (!a.plot.empty() && !records->empty()) {
    if (absl::Status s = WriteParetoPlot(trade_offs, title, a.plot); !s.ok()) return Fail(cmd, s);
  }
  if (a.json) {
    nlohmann::json out = ParetoJson(trade_offs);
    out["kernel"] = q.kernel;
    out["problem"] = nlohmann::json::parse(CanonicalJson(q.problem));
    out["device"] = q.device_class;
    if (!a.plot.empty() && !records->empty()) out["plot"] = a.plot;
    std::cout << out.dump(-1, ' ', false, kReplaceInvalidUtf8) << "\n";
  } else {
    std::cout << ParetoText(trade_offs, absl::StrCat(title, ": time against error"));
    if (!a.plot.empty()) std::cout << "wrote " << a.plot << "\n";
  }
  return kExitOk;
}

int RunBest(const BestArgs& a) {
  const std::string cmd = "best";
  if (a.top < 1 || a.top > 100) return UsageError(cmd, "--top must be between 1 and 100");
  if (a.server.empty() && a.tune_if_missing) {
    return UsageError(cmd, "--tune-if-missing needs --server (a server queues the job)");
  }
  if (!a.server.empty() && !a.task.fingerprint.empty()) {
    return UsageError(cmd,
                      "--fingerprint reads the local database; with --server, --device cpu or "
                      "cuda[:N] sends this machine's fingerprint");
  }
  if (!a.plot.empty() && !a.pareto) return UsageError(cmd, "--plot draws the front: add --pareto");
  if (a.pareto && (a.max_rel_error || a.tune_if_missing || a.top != 1)) {
    return UsageError(cmd, "--pareto shows every budget's answer: leave out --max-rel-error, "
                           "--top and --tune-if-missing");
  }
  absl::StatusOr<ResolvedTaskQuery> resolved = ResolveTaskQuery(a.task);
  if (!resolved.ok()) return UsageOrFail(cmd, resolved.status());
  std::shared_ptr<grpc::Channel> channel;
  if (int rc = ConnectIfServer(cmd, a.server, a.tls, &channel); rc != kExitOk) return rc;
  BestQuery& q = resolved->query;
  q.top_k = a.top;
  q.max_rel_error = a.max_rel_error;
  if (a.pareto) return RunPareto(a, channel, *resolved);
  absl::StatusOr<BestAnswerOf> best;
  std::string hint;  // why nothing is known, when the kernel's name is nowhere
  if (channel != nullptr) {
    best = AskServer(a, channel, *resolved);
    if (!best.ok()) {
      return absl::IsInvalidArgument(best.status()) || absl::IsNotFound(best.status())
                 ? UsageError(cmd, std::string(best.status().message()))
                 : Fail(cmd, best.status());
    }
    if (best->kernel_unknown) {
      hint = absl::StrCat("the server knows no kernel named '", q.kernel,
                          "' (no registered kernel, no record; ktune kernels --server ", a.server,
                          " lists the registered ones)");
    }
  } else {
    auto db = OpenExistingDatabase(a.db);
    if (!db.ok()) return Fail(cmd, db.status());
    // A kernel registered in the database takes its problem as its tasks store it, as a
    // built-in does (m=512,n=512 found nothing where the records say dtype=f32 too).
    KernelRegistry registry = KernelRegistry::WithBuiltins();
    AddClientKernels(**db, &registry);
    if (absl::Status s = MakeProblemCanonical(registry, &q); !s.ok()) {
      return UsageError(cmd, std::string(s.message()));
    }
    PinBudgetToErrorMeasure(registry, &q);
    absl::StatusOr<BestResult> found = (*db)->QueryBest(q);
    if (!found.ok()) return Fail(cmd, found.status());
    best = BestAnswerOf{std::string(MatchLevelName(found->level)), std::move(found->records), "",
                        found->stale};
    if (best->records.empty()) hint = UnknownKernelHint(**db, registry, a.db, q.kernel);
  }
  // A forgotten --problem read as "nothing was tuned" (a recorded space's records have none, so
  // it is not refused).
  const std::string no_problem =
      best->records.empty() && hint.empty() ? NoProblemHint(q) : std::string();
  if (a.json) {
    nlohmann::json records = nlohmann::json::array();
    for (const Record& r : best->records)
      records.push_back(nlohmann::json::parse(RecordToJsonLine(r)));
    nlohmann::json out = {{"kernel", q.kernel},
                          {"problem", nlohmann::json::parse(CanonicalJson(q.problem))},
                          {"device", q.device_class},
                          {"level", best->level},
                          {"best", records}};
    if (!best->queued_job_id.empty()) out["queued_job_id"] = best->queued_job_id;
    if (!best->not_queued.empty()) out["not_queued"] = best->not_queued;
    out["stale"] = best->stale;
    // No kernel of that name anywhere (the server's registry and records, or the local ones).
    out["kernel_unknown"] = best->kernel_unknown || !hint.empty();
    std::cout << out.dump(-1, ' ', false, kReplaceInvalidUtf8) << "\n";
  } else if (best->records.empty()) {
    std::cout << "nothing known for " << FormatTask(q.kernel, q.problem, q.device_class)
              << (q.max_rel_error
                      ? absl::StrFormat(" within a max relative error of %g (ktune best --pareto "
                                        "shows what was measured)",
                                        *q.max_rel_error)
                      : "")
              << (hint.empty() ? "" : ": " + hint)
              << (no_problem.empty() ? "" : " (" + no_problem + ")") << "\n";
  } else {
    std::cout << FormatTask(q.kernel, q.problem, q.device_class) << " (match: " << best->level
              << ")\n";
    if (best->stale) {
      std::cout << "stale: measured before a regression was flagged on " << q.device_class
                << " (ktune drift); served until a newer measurement of the task exists\n";
    }
    int rank = 1;
    for (const Record& r : best->records) {
      std::cout << absl::StrFormat("%3d. %.4f ms", rank++, *r.time_ms);
      if (r.median_ms) {
        std::cout << absl::StrFormat("  (median %.4f ms, sd %.4f ms, %d repeats)", *r.median_ms,
                                     r.stddev_ms.value_or(0), r.repeat_times_ms.size());
      }
      if (r.max_rel_error) {
        // A prediction's error is its neighbour's (int8 errors grow with K, say).
        std::cout << "  max rel error " << FormatErrorBound(*r.max_rel_error)
                  << (best->level == "predicted" ? " (measured on the tuned problem)" : "");
      }
      if (best->level == "predicted") {
        std::cout << "  predicted from a tuned problem (" << FormatParamMapAssignments(r.problem)
                  << "), not measured for this one";
        if (r.device.device_class != q.device_class) {
          std::cout << "; measured on " << r.device.device_class << ", another device class";
        }
      } else if (best->level != "device_class" && best->level != "exact") {
        std::cout << "  measured on " << r.device.device_class;
      }
      std::cout << "\n     " << FormatParamMapAssignments(r.config) << "\n";
      if (!r.payload.empty()) {
        std::cout << "     payload: " << r.payload.size() << " bytes (--json shows it)\n";
      }
    }
  }
  if (!a.json && !q.max_rel_error && !best->records.empty() &&
      best->records.front().max_rel_error.value_or(0) > kTradedPrecisionError) {
    std::cout << "note: the served configuration trades precision (no accuracy budget was asked; "
                 "the kernel's own tolerance only catches broken code): --max-rel-error E serves "
                 "the fastest within E (docs/precision.md)\n";
  }
  if (!a.json && !best->queued_job_id.empty()) {
    std::cout << "queued job " << best->queued_job_id << " to tune it (ktune watch "
              << best->queued_job_id << ")\n";
  }
  if (!a.json && !best->not_queued.empty()) {
    std::cout << "no job queued to tune it: " << best->not_queued << "\n";
  }
  // Nothing known is an answer, not a failure of the command.
  return kExitOk;
}

struct JobsArgs {
  std::string db;
  bool json = false;
  // --server: list a running server's jobs (ListJobs) instead of reading --db.
  std::string server, token;
  ClientTls tls;
};

// One line of `ktune jobs`, from the database or from a server (which does not send the task
// count: tasks is then -1).
struct JobRow {
  int64_t id = 0;
  std::string name, state, message;
  int64_t tasks = -1, done = 0, total = 0;
  std::string waiting;  // a server's Job.waiting (the database does not know the workers)
  double seconds_left = 0;  // a server's Job.estimated_seconds_left (0: unknown)
};

absl::StatusOr<std::vector<JobRow>> JobsFromDatabase(const std::string& path) {
  KTUNE_ASSIGN_OR_RETURN(auto db, OpenExistingDatabase(path));
  KTUNE_ASSIGN_OR_RETURN(std::vector<TuningDatabase::JobSummary> jobs, db->ListJobSummaries());
  std::vector<JobRow> rows;
  for (const auto& [j, tasks, done, total] : jobs) {
    rows.push_back(
        {j.id, j.name, std::string(JobStateName(j.state)), j.message, tasks, done, total});
  }
  return rows;
}

absl::StatusOr<std::vector<JobRow>> JobsFromServer(const JobsArgs& a,
                                                   const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = v1::TuningService::NewStub(channel);
  std::vector<JobRow> rows;
  v1::ListJobsRequest request;
  request.set_page_size(1000);
  do {
    v1::ListJobsResponse page;
    KTUNE_RETURN_IF_ERROR(
        FromGrpc(stub->ListJobs(ClientContextFor(a.token).get(), request, &page)));
    for (const v1::Job& j : page.jobs()) {
      int64_t id = 0;
      if (!absl::SimpleAtoi(j.job_id(), &id)) {
        return absl::InternalError(absl::StrCat("the server sent the job id '", j.job_id(), "'"));
      }
      // task_count 0: a server from before it was sent (every job has a task).
      rows.push_back({id, j.spec().name(), StateName(j.state()), j.message(),
                      j.task_count() > 0 ? j.task_count() : -1, j.measurements_done(),
                      j.measurements_total(), j.waiting(), j.estimated_seconds_left()});
    }
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
  return rows;
}

int RunJobs(const JobsArgs& a) {
  std::shared_ptr<grpc::Channel> channel;
  if (int rc = ConnectIfServer("jobs", a.server, a.tls, &channel); rc != kExitOk) return rc;
  absl::StatusOr<std::vector<JobRow>> jobs =
      channel == nullptr ? JobsFromDatabase(a.db) : JobsFromServer(a, channel);
  if (!jobs.ok()) return Fail("jobs", jobs.status());
  if (a.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const JobRow& j : *jobs) {
      // The names `watch`, `submit` and `tune --server` use: job_id a string, as the API's.
      nlohmann::json row{{"job_id", std::to_string(j.id)},
                         {"name", j.name},
                         {"state", j.state},
                         {"measurements_done", j.done},
                         {"measurements_total", j.total},
                         {"message", j.message}};
      // What only the server knows, named as watch names it; null where unknown (a database
      // file; no estimate; nothing waits), so that a row has the same keys and meanings either
      // way (scripts switching between them broke, and 0 read as "about to finish").
      row["waiting"] = j.waiting.empty() ? nlohmann::json(nullptr) : nlohmann::json(j.waiting);
      row["estimated_seconds_left"] =
          j.seconds_left > 0 ? nlohmann::json(j.seconds_left) : nlohmann::json(nullptr);
      if (j.tasks >= 0) row["task_count"] = j.tasks;  // `watch`'s "tasks" is the list
      out.push_back(std::move(row));
    }
    std::cout << out.dump(-1, ' ', false, kReplaceInvalidUtf8) << "\n";
    return kExitOk;
  }
  if (jobs->empty()) {
    std::cout << "no jobs in " << (a.server.empty() ? a.db : a.server) << "\n";
    return kExitOk;
  }
  std::cout << absl::StrFormat("%-6s %-24s %-10s %6s %s\n", "ID", "NAME", "STATE", "TASKS",
                               "PROGRESS");
  for (const JobRow& j : *jobs) {
    std::cout << absl::StrFormat("%-6d %-24s %-10s %6s %d/%d\n", j.id, j.name, j.state,
                                 j.tasks >= 0 ? std::to_string(j.tasks) : "-", j.done, j.total);
    // A job that waits for a worker said nothing of it: `running 0/400` for as long as it took.
    if (!j.waiting.empty()) std::cout << "       waiting: " << j.waiting << "\n";
    // Why it failed, or ended before its budget (only --json and watch said it).
    if (!j.message.empty() && (j.state == "failed" || j.state == "done")) {
      std::cout << "       why: " << j.message << "\n";
    }
  }
  return kExitOk;
}

}  // namespace

void RegisterQueryCommands(CLI::App& app, Action* action) {
  auto best_args = std::make_shared<BestArgs>();
  CLI::App* best = app.add_subcommand(
      "best", "Best known configuration of a task (exact device, then class, then family)");
  AddDbOption(best, &best_args->db);
  AddTaskQueryOptions(best, &best_args->task);
  best->add_option("--top", best_args->top, "How many distinct configurations")
      ->capture_default_str();
  best->add_flag("--json", best_args->json, "Print as JSON");
  best->add_option("--server", best_args->server,
                   "Ask this server (HOST:PORT) instead of --db: its cache, and a prediction for "
                   "a problem never tuned")
      ->check(ServerAddress());
  best->add_option("--token", best_args->token, "Bearer token (or $KTUNE_TOKEN)");
  AddClientTlsOptions(best, &best_args->tls);
  best->add_flag("--tune-if-missing", best_args->tune_if_missing,
                 "With --server: queue a background job when nothing was measured for it");
  best->add_option("--max-rel-error", best_args->max_rel_error,
                   "Accuracy budget: the fastest configuration whose measured error against the "
                   "reference is at most this (records without a measured error never qualify)")
      ->check(AboveZero());
  best->add_flag("--pareto", best_args->pareto,
                 "Show the time/error front instead: which configuration each budget gets");
  best->add_option("--plot", best_args->plot, "With --pareto: draw the front as an SVG file")
      ->check(SvgPath());
  best->callback([=] { *action = [=] { return RunBest(*best_args); }; });

  auto jobs_args = std::make_shared<JobsArgs>();
  CLI::App* jobs =
      app.add_subcommand("jobs", "List fleet jobs (stored in the database, or of a server)");
  AddDbOption(jobs, &jobs_args->db);
  jobs->add_flag("--json", jobs_args->json, "Print as JSON");
  jobs->add_option("--server", jobs_args->server,
                   "List the jobs of this server (HOST:PORT) instead of reading --db")
      ->check(ServerAddress());
  jobs->add_option("--token", jobs_args->token, "Bearer token (or $KTUNE_TOKEN)");
  AddClientTlsOptions(jobs, &jobs_args->tls);
  jobs->callback([=] { *action = [=] { return RunJobs(*jobs_args); }; });
}

}  // namespace ktune::cli
