// ktune tune: tune one task and print the best configuration, its throughput and its speedup
// over the kernel's default configuration. Without --server on the embedded default: a server
// and a worker in this process on the --db file (cli/tune_session.h); with --server ADDR on that
// server's workers. Either way the task is a one-task job (cli/tune_job.h).
// Devices: cpu (a registry kernel measured on this machine), cuda[:N] and replay:FILE (a recorded
// space; its kernel and problem come from the file).
#include <algorithm>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/search_strategy.h"
#include "cli/command.h"
#include "cli/interrupts.h"
#include "cli/task_query.h"
#include "cli/tune_job.h"
#include "cli/tune_session.h"
#include "cli/tune_target.h"
#include "common/error_format.h"
#include "common/event_log.h"
#include "db/interchange/record_files.h"
#include "grpcpp/create_channel.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "measurer/cpu_device.h"
#include "measurer/input_files.h"
#include "proto/channel.h"
#include "proto/convert.h"
#include "server/job_spec.h"
#include "server/task_search.h"

namespace ktune::cli {
namespace {

struct TuneArgs {
  std::string db, kernel, problem, device = "cpu", strategy = DefaultStrategyName(), server, dtype;
  std::string inputs;  // --inputs FILE: raw float32 inputs, stored and named data=file:<hash>
  int64_t budget = 64;
  int batch_size = 8;
  int threads = 0;
  uint64_t seed = 1;
  bool seed_given = false;  // --seed appeared: with --server, 0 (drawn by the server) otherwise
  std::optional<double> agent_share;    // --agent-share; unset: the server's
  std::optional<double> max_rel_error;  // --max-rel-error; unset: no accuracy budget
  std::vector<std::string> start_from;  // --start-from CONFIG, each NAME=VALUE,...
  bool json = false;
  bool flush_l2 = false;  // --device cuda
  ClientTls tls;          // with --server
  std::string token;      // with --server; else $KTUNE_TOKEN
};

// --start-from's configurations; InvalidArgument naming the one that is not NAME=VALUE,...
absl::StatusOr<std::vector<Configuration>> StartFrom(const TuneArgs& a) {
  std::vector<Configuration> out;
  for (const std::string& text : a.start_from) {
    absl::StatusOr<ParamMap> config = ParseParamMapAssignments(text);
    if (!config.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--start-from '", text, "': ", config.status().message()));
    }
    if (config->empty()) {  // refused later by the job's checks, under another name (exit 1)
      return absl::InvalidArgumentError("--start-from is empty: give a configuration, MR=4,NR=16");
    }
    out.push_back(*std::move(config));
  }
  return out;
}

// "; 12 x runtime_error: ...; and 3 x timeout: ...; and 2 more" for the two commonest failure
// reasons, keyed "status: message" with their counts; empty when there are none. Messages that
// differ only in the temporary file a configuration was built from count as one (a compile error
// of every configuration was listed as several reasons of 2 each).
std::string CommonestFailures(const std::map<std::string, int64_t>& failure_reasons) {
  static const std::regex kBuildFile(R"([^\s:'"]*/[0-9a-f]{16}\.(cc|cu|cpp|so|o)\b)");
  std::map<std::string, int64_t> merged;
  int64_t total = 0;
  for (const auto& [reason, count] : failure_reasons) {
    merged[std::regex_replace(reason, kBuildFile, "KERNEL.$1")] += count;
    total += count;
  }
  std::vector<std::pair<int64_t, std::string>> reasons;
  for (const auto& [reason, count] : merged) reasons.emplace_back(count, reason);
  std::sort(reasons.rbegin(), reasons.rend());
  std::string why;
  int64_t told = 0;
  for (size_t i = 0; i < reasons.size() && i < 2; ++i) {
    absl::StrAppend(&why, i == 0 ? "; " : "; and ", reasons[i].first, " x ", reasons[i].second);
    told += reasons[i].first;
  }
  if (told < total) absl::StrAppend(&why, "; and ", total - told, " more");
  return why;
}

// The failure reasons of job `job_id`'s records of `task` on the server (ListRecords), for
// telling the user why nothing measured ok; empty when they cannot be read.
std::map<std::string, int64_t> RemoteFailureReasons(v1::TuningService::Stub& stub,
                                                    const std::string& token,
                                                    const v1::TaskKey& task,
                                                    const std::string& job_id) {
  std::map<std::string, int64_t> reasons;
  v1::ListRecordsRequest request;
  *request.mutable_task() = task;
  request.set_page_size(10'000);
  const std::string source = absl::StrCat("job:", job_id);
  do {
    v1::ListRecordsResponse page;
    if (!stub.ListRecords(ClientContextFor(token).get(), request, &page).ok()) return {};
    for (const v1::Record& r : page.records()) {
      if (r.source() != source || r.status() == v1::MEASUREMENT_STATUS_OK) continue;
      // A status this client does not know (a newer server's) has no name: its number then.
      const std::string& name = v1::MeasurementStatus_Name(r.status());
      const std::string status =
          absl::StartsWith(name, "MEASUREMENT_STATUS_")
              ? absl::AsciiStrToLower(absl::string_view(name).substr(strlen("MEASUREMENT_STATUS_")))
              : absl::StrCat("status ", static_cast<int>(r.status()));
      ++reasons[absl::StrCat(status, ": ", r.message())];
    }
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
  return reasons;
}

// --server: the task becomes a one-task job on that server, measured by its workers of the
// device class (cli/tune_job.h, as the embedded default); progress comes from the WatchJob stream.
int RunRemoteTune(const TuneArgs& a) {
  const std::string cmd = "tune";
  if (a.kernel.empty()) return UsageError(cmd, "--kernel is required");
  std::string device_class = a.device;
  if (a.device == "cpu")
    device_class = DescribeThisCpu(/*measure_clock=*/false).ToDeviceInfo().device_class;
  if (absl::StartsWith(a.device, "cuda")) {
    absl::StatusOr<DeviceInfo> gpu = DescribeCudaDevice(a.device);
    if (!gpu.ok()) return UsageOrFail(cmd, gpu.status());
    device_class = gpu->device_class;
  }
  if (absl::StartsWith(a.device, "replay:")) {
    return UsageError(cmd,
                      "with --server, --device names a device class; recorded spaces are "
                      "served by the server (ktune serve --replay FILE)");
  }
  absl::StatusOr<ParamMap> problem = ParseParamMapAssignments(a.problem);
  if (!problem.ok())
    return UsageError(cmd, absl::StrCat("--problem: ", problem.status().message()));
  if (!a.dtype.empty()) (*problem)["dtype"] = a.dtype;
  if (absl::Status s = ParseStrategy(a.strategy).status(); !s.ok()) {
    return UsageError(cmd, std::string(s.message()));
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(a.server, a.tls);
  if (!channel.ok()) return ChannelFailure(cmd, channel.status());
  auto stub = v1::TuningService::NewStub(*channel);
  TuneJobRequest request;
  request.task = TaskKey{a.kernel, "", *problem, device_class};
  request.budget = a.budget;
  request.strategy = a.strategy;
  // Drawn by the server unless given: two tunes of one task at once (two developers, two CI
  // runs) with the default seed proposed the same configurations, measuring each twice.
  request.seed = a.seed_given ? a.seed : 0;
  request.batch_size = a.batch_size;
  request.threads = a.threads;
  request.agent_share = a.agent_share;
  request.max_rel_error = a.max_rel_error;
  absl::StatusOr<std::vector<Configuration>> initial = StartFrom(a);
  if (!initial.ok()) return UsageError(cmd, std::string(initial.status().message()));
  request.initial = *std::move(initial);
  request.token = a.token;
  Progress progress(a.budget);
  // A job for a device class no connected worker serves waits until one joins: say so, or the
  // progress line would sit at 0 with no reason given.
  const auto warn_without_worker = [&](const std::string& job_id) {
    if (ClassesWithoutWorker(*stub, a.token, {device_class}).empty()) return;
    std::cerr << "ktune tune: no worker of device class " << device_class << " is connected to "
              << a.server << "; job " << job_id << " waits until one joins (ktune worker --server "
              << a.server << " on such a device), or cancel it (ktune cancel " << job_id << ")\n";
  };
  // Ctrl-C, SIGTERM or SIGHUP cancels the job on the server (what was measured stays stored); the
  // stream then ends with the job cancelled. A second signal ends this process at once.
  InterruptScope interrupts;
  std::optional<InterruptWatcher> canceller;
  std::string submitted_id;
  const auto on_submitted = [&](const std::string& job_id) {
    submitted_id = job_id;
    warn_without_worker(job_id);
    canceller.emplace([&, job_id](int signal) {
      v1::CancelJobRequest cancel;
      cancel.set_job_id(job_id);
      v1::Job cancelled;
      const absl::Status s =
          FromGrpc(stub->CancelJob(ClientContextFor(a.token).get(), cancel, &cancelled));
      std::cerr << "\ninterrupted: "
                << (s.ok() ? absl::StrCat("job ", job_id, " cancelled on ", a.server,
                                          "; waiting for its measurements in flight")
                           : absl::StrCat("could not cancel job ", job_id, " (", s.message(),
                                          "); ktune cancel ", job_id, " --server ", a.server))
                << " (" << (signal == SIGINT ? "Ctrl-C" : "the signal") << " again to stop now)"
                << std::endl;
    });
  };
  absl::StatusOr<v1::Job> job =
      RunTuneJob(*stub, request, on_submitted, [&](int64_t done, double best) {
        if (!a.json) progress.Update(done, best);
      });
  if (canceller) canceller->Stop();
  // The server went away after the job was submitted: the job is stored, and a restarted server
  // resumes it. "Run it again" submitted a second job of the same task.
  if (!job.ok() && absl::IsUnavailable(job.status()) && !submitted_id.empty()) {
    return Fail(cmd, absl::UnavailableError(absl::StrCat(
                         "the connection to ", a.server, " was lost after job ", submitted_id,
                         " was submitted; the job is stored there and goes on when the server is "
                         "back: follow it with ktune watch ",
                         submitted_id, " --server ", a.server,
                         " (tune again would submit a second job of the task)")));
  }
  if (!job.ok()) return UsageOrFail(cmd, job.status());
  if (InterruptSignal() != 0 && job->state() == v1::JOB_STATE_CANCELLED) {
    return FailOrInterrupted(
        cmd, absl::CancelledError(absl::StrCat("interrupted: job ", job->job_id(),
                                               " cancelled after ", job->measurements_done(),
                                               " measurements, which are stored on the server "
                                               "(its workers store those in flight as they end; "
                                               "ktune jobs --server counts them)")));
  }
  const v1::TaskProgress& t = job->tasks(0);
  absl::StatusOr<ParamMap> best = FromProto(t.best_config().params(), "best_config");
  // The task as the server keys it (dtype filled in), as submit, watch, jobs and best print it:
  // the problem as typed did not join with theirs.
  absl::StatusOr<ParamMap> task_problem = FromProto(t.task().problem().params(), "problem");
  if (a.json) {
    nlohmann::json out{
        {"job_id", job->job_id()},
        {"state", StateName(job->state())},
        {"kernel", a.kernel},
        {"problem",
         nlohmann::json::parse(CanonicalJson(task_problem.ok() ? *task_problem : *problem))},
        {"device", device_class},
        {"measurements", t.measurements_done()},
        {"failed", t.measurements_failed()}};
    if (t.has_best_time_ms()) {
      out["best_time_ms"] = t.best_time_ms();
      out["best_config"] = nlohmann::json::parse(CanonicalJson(*best));
    }
    if (t.has_best_gflops()) out["best_gflops"] = t.best_gflops();
    if (t.has_default_config_time_ms() && t.has_best_time_ms()) {
      out["default_time_ms"] = t.default_config_time_ms();
      out["speedup_over_default"] = t.default_config_time_ms() / t.best_time_ms();
    }
    std::cout << out.dump(-1, ' ', false, kReplaceInvalidUtf8) << "\n";
  } else {
    std::cout << a.kernel << " on " << device_class << " via " << a.server << " (job "
              << job->job_id() << "): " << t.measurements_done() << " measurements, "
              << t.measurements_failed() << " failed\n";
    if (t.has_best_time_ms()) {
      std::cout << absl::StrFormat("  best      %.4f ms", t.best_time_ms());
      if (t.has_best_gflops()) std::cout << absl::StrFormat("  %.1f GFLOP/s", t.best_gflops());
      std::cout << "\n  config    " << FormatParamMapAssignments(*best) << "\n";
      // The untuned default, as the embedded default says it (through a server it was not said).
      // The best is this job's; the default may have been measured by an earlier job.
      if (t.has_default_config_time_ms() && t.default_config_time_ms() >= t.best_time_ms()) {
        std::cout << absl::StrFormat("  default   %.4f ms  -> tuned is %.2fx faster\n",
                                     t.default_config_time_ms(),
                                     t.default_config_time_ms() / t.best_time_ms());
      } else if (t.has_default_config_time_ms()) {
        std::cout << absl::StrFormat(
            "  default   %.4f ms, faster than this job's best (an earlier job measured it; ktune "
            "best serves the task's fastest)\n",
            t.default_config_time_ms());
      }
    }
  }
  if (job->state() != v1::JOB_STATE_DONE) {
    return Fail(
        cmd, absl::FailedPreconditionError(absl::StrCat(
                 "job ", job->job_id(), " ended ", StateName(job->state()), ": ", job->message())));
  }
  // A done job's message says what it left out (a --start-from the space rules out, a search
  // space that ran out): said, as the embedded default says it.
  if (!a.json && !job->message().empty()) {
    std::cerr << "ktune tune: note: " << job->message() << "\n";
  }
  if (t.has_best_time_ms()) return kExitOk;
  // Say why, as the embedded default does.
  if (t.measurements_done() == 0) {
    return Fail(cmd, absl::NotFoundError(absl::StrCat(
                         "job ", job->job_id(), " measured nothing: ",
                         job->message().empty() ? "no candidate left" : job->message())));
  }
  return Fail(
      cmd, absl::NotFoundError(absl::StrCat(
               "no configuration measured ok in ", t.measurements_done(), " measurements",
               CommonestFailures(RemoteFailureReasons(*stub, a.token, t.task(), job->job_id())))));
}

int RunTune(const TuneArgs& a) {
  const std::string cmd = "tune";
  if (!a.inputs.empty() && (!a.server.empty() || a.device != "cpu")) {
    return UsageError(cmd,
                      "--inputs stores the file for this machine's CPU worker (--device cpu, no "
                      "--server); on a fleet, run `ktune tune --inputs FILE` once on each worker "
                      "machine and pass the data=file:<hash> it prints in --problem");
  }
  if (!a.server.empty()) return RunRemoteTune(a);
  // The job spec's range (server/job_spec.cc), found here: the in-process job refused it after
  // setting up, with exit 1.
  if (a.budget < 1 || a.budget > 1'000'000) {
    return UsageError(cmd, "--budget must be between 1 and 1,000,000");
  }
  // A job's strategies (PPO's ablations are for `bench search`), checked before the database is
  // opened: the job refused them after it had been created.
  if (absl::Status s = ParseStrategy(a.strategy).status(); !s.ok()) {
    return UsageError(cmd, std::string(s.message()));
  }
  // Kernels registered in --db (`ktune kernels register` with a server on it) are tuned like the
  // built-ins: the embedded server loads them from the file too.
  KernelRegistry registry = KernelRegistry::WithBuiltins();
  if (std::error_code ec; std::filesystem::exists(a.db, ec)) {
    // OpenDatabase: tune writes the file anyway (an older one is upgraded here, as the embedded
    // server would; read-only, its kernels were missed: "unknown kernel").
    if (auto db = OpenDatabase(a.db); db.ok()) AddClientKernels(**db, &registry);
  }
  absl::StatusOr<TuneTarget> target;
  if (absl::StartsWith(a.device, "replay:")) {
    // The recorded file fixes the problem and the data type: options that would be ignored are
    // refused (the records were stored under problem {} whatever --problem said).
    for (const auto& [given, name] : {std::pair<bool, const char*>{!a.problem.empty(), "--problem"},
                                      {!a.dtype.empty(), "--dtype"}}) {
      if (given) {
        return UsageError(cmd, absl::StrCat(name,
                                            " does not apply to a replay device: the "
                                            "recorded file fixes the problem"));
      }
    }
    const std::string file = a.device.substr(strlen("replay:"));
    absl::StatusOr<RecordedSpace> recorded = LoadRecordedSpace(file);
    if (!recorded.ok()) return Fail(cmd, recorded.status());  // the file's fault: exit 1
    // An accuracy budget needs measured errors: with none in the file every measurement was
    // too_inaccurate (unknown error), stored as such, and nothing could be the answer.
    if (a.max_rel_error &&
        std::none_of(recorded->records.begin(), recorded->records.end(),
                     [](const Record& r) { return r.max_rel_error.has_value(); })) {
      return UsageError(
          cmd, absl::StrCat("--max-rel-error needs measured errors, and ", file, " records none"));
    }
    target = ReplayTarget(*std::move(recorded), file, a.kernel);
  } else if (a.device == "cpu") {
    std::string problem = a.problem;
    if (!a.inputs.empty()) {
      if (absl::StrContains(problem, "data=")) {
        return UsageError(cmd, "--inputs names the data: leave data= out of --problem");
      }
      // The kernel first: a mistyped --kernel must not leave a stored copy of the inputs behind.
      if (absl::Status s = CpuKernel(registry, a.kernel).status(); !s.ok()) {
        return UsageOrFail(cmd, s);
      }
      absl::StatusOr<std::string> data = StoreInputFile(a.inputs, DefaultInputsDir());
      if (!data.ok()) return Fail(cmd, data.status());  // the file's fault, not the command line's
      problem = absl::StrCat(problem, problem.empty() ? "" : ",", "data=", *data);
      if (!a.json) std::cerr << "inputs: " << a.inputs << " is data=" << *data << "\n";
    }
    target = CpuTarget(registry, a.kernel, problem, a.dtype, a.threads);
  } else if (absl::StartsWith(a.device, "cuda")) {
    CudaMeasurerOptions cuda;
    cuda.flush_l2 = a.flush_l2;
    target = CudaTarget(registry, a.device, a.kernel, a.problem, a.dtype, cuda);
  } else {
    return UsageError(
        cmd, absl::StrCat("unknown device '", a.device, "'; use cpu, cuda[:N] or replay:FILE"));
  }
  if (!target.ok()) return UsageOrFail(cmd, target.status());
  TuneTarget& t = *target;

  // The embedded default: the server and a worker in this process, on the --db file. Their event
  // logs would drown the progress line.
  SetLogFormat(LogFormat::kOff);
  Progress progress(std::min<int64_t>(a.budget, t.space->size()));
  // A replayed measurement takes no time, so a share of it left PPO about 0.01 s a run: it never
  // learned, and its policy was not saved for the next run. Unlimited there, unless given.
  std::optional<double> agent_share = a.agent_share;
  if (!agent_share && absl::StartsWith(a.device, "replay:")) agent_share = 0;
  TuneSessionOptions options{a.strategy, a.budget,    a.batch_size,
                             a.seed,     agent_share, a.max_rel_error};
  absl::StatusOr<std::vector<Configuration>> initial = StartFrom(a);
  if (!initial.ok()) return UsageError(cmd, std::string(initial.status().message()));
  // Here the space is known: a configuration it does not have is said, not skipped. (The task's
  // search completes each from the default as this does.)
  const auto points = TaskSearch::InitialPoints(*t.space, t.default_config, *initial);
  for (size_t i = 0; i < points.size(); ++i) {
    if (!points[i].first) {
      return UsageError(
          cmd, absl::StrCat("--start-from '", a.start_from[i], "' is not a configuration of ",
                            t.task.kernel, " here: ", points[i].second));
    }
  }
  options.initial = *std::move(initial);
  if (!a.json)
    options.on_progress = [&](int64_t done, double best) { progress.Update(done, best); };
  options.registry = &registry;
  absl::StatusOr<TuneSummary> run = RunTuneSession(t, a.db, options);
  if (!run.ok()) return FailOrInterrupted(cmd, run.status());
  const TuneSummary& s = *run;
  // --json: what was done. job_id as `tune --server` and `jobs` give it: the in-process tune is
  // a job of the database.
  nlohmann::json out{{"job_id", s.job_id},
                     {"state", "done"},
                     {"kernel", t.task.kernel},
                     {"kernel_version", t.task.kernel_version},
                     {"problem", nlohmann::json::parse(CanonicalJson(t.task.problem))},
                     {"device", t.task.device_class},
                     {"strategy", a.strategy},
                     {"measurements", s.measurements},
                     {"records_stored", s.records_stored},
                     {"failures", s.failures}};
  if (!s.best) {
    // --json still answers (a script got an empty stdout): best null; the exit stays 1.
    if (a.json) {
      out["failure_reasons"] = s.failure_reasons;
      out["best"] = nullptr;
      std::cout << out.dump(-1, ' ', false, kReplaceInvalidUtf8) << "\n";
    }
    // Say why: the commonest reasons first (a missing runner fails every measurement alike).
    // Under a budget, ok measurements that missed it are stored as too_inaccurate: say which
    // budget none met (the reasons below give the errors).
    return Fail(
        cmd,
        absl::NotFoundError(absl::StrCat(
            "no configuration measured ok",
            a.max_rel_error ? absl::StrFormat(" within --max-rel-error %g", *a.max_rel_error) : "",
            " in ", s.measurements, " measurements", CommonestFailures(s.failure_reasons))));
  }
  const Record& best = *s.best;
  const Throughput best_tp = ThroughputOf(t, best);
  const bool have_default = s.default_record && s.default_record->time_ms.has_value();
  const double speedup = have_default ? *s.default_record->time_ms / *best.time_ms : 0;
  if (a.json) {
    out["seconds"] = s.seconds;
    out["measurements_per_second"] = s.measurements / std::max(s.seconds, 1e-9);
    out["agent_seconds"] = s.agent_seconds;
    out["warm_started"] = s.warm_started;
    out["prior_records"] = s.reused;
    out["best"] = nlohmann::json::parse(RecordToJsonLine(best));
    if (t.optimum_ms > 0) {
      out["space_optimum_ms"] = t.optimum_ms;
      out["best_over_optimum"] = *best.time_ms / t.optimum_ms;
    }
    if (best_tp.gflops > 0) {
      out["best_gflops"] = best_tp.gflops;
      out["best_percent_of_peak"] = best_tp.percent_of_peak;
    }
    if (s.default_record) {
      out["default"] = nlohmann::json::parse(RecordToJsonLine(*s.default_record));
    }
    if (have_default) out["speedup_over_default"] = speedup;
    std::cout << out.dump(-1, ' ', false, kReplaceInvalidUtf8) << "\n";
    return kExitOk;
  }
  std::cout << t.task.kernel
            << (t.task.problem.empty() ? "" : " " + FormatParamMapAssignments(t.task.problem))
            << " on " << t.device_description << ": " << a.strategy << ", " << s.measurements
            << (s.measurements == 1 ? " measurement in " : " measurements in ")
            << absl::StrFormat("%.1f s (agent %.1f s)", s.seconds, s.agent_seconds)
            << (s.warm_started ? ", policy warm-started from " + s.checkpoint : "")
            << (s.reused == 0 ? "" : absl::StrCat(", ", s.reused, " earlier measurements reused"))
            << "\n";
  std::cout << absl::StrFormat("  best      %.4f ms", *best.time_ms);
  if (best_tp.gflops > 0) {
    const int threads = std::min(ThreadsOf(best.config), t.cores);
    std::cout << absl::StrFormat("  %.1f GFLOP/s  %.0f%% of peak (%d thread%s)", best_tp.gflops,
                                 best_tp.percent_of_peak, threads, threads == 1 ? "" : "s");
  }
  if (t.optimum_ms > 0) {
    std::cout << absl::StrFormat("  (%.3fx the recorded optimum %.4f ms)",
                                 *best.time_ms / t.optimum_ms, t.optimum_ms);
  }
  std::cout << "\n  config    " << FormatParamMapAssignments(best.config) << "\n";
  if (best.max_rel_error) {
    std::cout << absl::StrFormat(
        "  error     %s max relative error against the reference%s\n",
        FormatErrorBound(*best.max_rel_error),
        a.max_rel_error ? absl::StrFormat(" (budget %g)", *a.max_rel_error) : std::string());
    if (!a.max_rel_error && *best.max_rel_error > kTradedPrecisionError) {
      std::cout << "  note      precision was traded without an accuracy budget (the kernel's "
                   "own tolerance only catches broken code): give --max-rel-error to bound it "
                   "(docs/precision.md)\n";
    }
  }
  if (have_default) {
    const Throughput d = ThroughputOf(t, *s.default_record);
    std::cout << absl::StrFormat("  default   %.4f ms  %.1f GFLOP/s  -> tuned is %.2fx faster\n",
                                 *s.default_record->time_ms, d.gflops, speedup);
  } else if (s.default_record) {
    std::cout << "  default   " << StatusName(s.default_record->status) << ": "
              << s.default_record->message << "\n";
  }
  if (!s.failures.empty()) {
    std::cout << "  failed   ";
    for (const auto& [status, n] : s.failures) std::cout << " " << n << " " << status;
    std::cout << "\n";
  }
  std::cout << "  stored    " << s.records_stored << " records in " << a.db << "\n";
  return kExitOk;
}

}  // namespace

void RegisterTuneCommand(CLI::App& app, Action* action) {
  auto a = std::make_shared<TuneArgs>();
  CLI::App* tune = app.add_subcommand("tune", "Tune one task and print the best configuration");
  AddDbOption(tune, &a->db);
  tune->add_option("--kernel", a->kernel,
                   "Kernel from the registry, see ktune kernels (replay: from the file)");
  tune->add_option("--problem", a->problem, "Problem, e.g. M=1024,N=1024,K=1024");
  tune->add_option("--dtype", a->dtype, "Data type (default: the kernel's first, f32)");
  tune->add_option("--inputs", a->inputs,
                   "cpu: measure errors on these inputs (raw float32 values, filling the input "
                   "buffers in order); the problem gets data=file:<hash of the file>");
  tune->add_option("--device", a->device, "cpu, cuda[:N] or replay:FILE")->capture_default_str();
  tune->add_option("--budget", a->budget, "Measurements, failures included")->capture_default_str();
  tune->add_option("--batch-size", a->batch_size, "Measurements per batch")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  tune->add_option("--strategy", a->strategy, "ppo, random, anneal, genetic or model")
      ->capture_default_str();
  tune->add_option("--threads", a->threads,
                   "cpu: tune with exactly this many threads (default: any up to the cores)")
      ->check(CLI::Range(1, 1024));
  CLI::Option* seed = tune->add_option("--seed", a->seed,
                                       "Random seed (default 1; with --server, one the server "
                                       "draws, so that concurrent tunes of a task differ)");
  tune->add_option("--agent-share", a->agent_share,
                   "The agent's time as a share of the measuring time (default 0.05: PPO learns "
                   "less often when measurements are cheap; 0: no limit, the same seed then "
                   "gives the same proposals; the default on a replay device, whose "
                   "measurements take no time)")
      ->check(CLI::Range(0.0, 10.0));
  tune->add_option("--max-rel-error", a->max_rel_error,
                   "Accuracy budget: a configuration whose output's max relative error against "
                   "the reference is above this is too_inaccurate, never the answer (e.g. 1e-3; "
                   "kernels with a precision parameter, such as gemm_lowp, trade error for time)")
      ->check(AboveZero());
  tune->add_option("--start-from", a->start_from,
                   "A configuration to measure first, before the kernel's default, unless the "
                   "database has it (e.g. MR=4,NR=16: one known to be good; the parameters left "
                   "out take the default's values); may be repeated")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  tune->add_option("--server", a->server,
                   "Tune through a running server and its workers (token: $KTUNE_TOKEN)")
      ->check(ServerAddress());
  tune->add_option("--token", a->token, "With --server: bearer token (or $KTUNE_TOKEN)");
  AddClientTlsOptions(tune, &a->tls);
  tune->add_flag("--json", a->json, "Print the result as JSON");
  tune->add_flag("--flush-l2", a->flush_l2,
                 "--device cuda: overwrite the L2 cache before every timed run (cold-cache times)");
  tune->callback([=] {
    a->seed_given = seed->count() > 0;
    *action = [=] { return RunTune(*a); };
  });
}

}  // namespace ktune::cli
