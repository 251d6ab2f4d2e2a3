// The drift benchmark (issue 22's goals): on recorded spaces served by replay workers, a
// simulated driver regression in production telemetry must be flagged within 50 reports, with no
// false flag in 10,000 stable reports, and the retuned best must come within 2% of the new
// optimum within 100 measurements.
//
//   ktune-drift-bench [--seeds N] [--stable N] [--strategy S] [--reverify K] [--agent-share X]
//                     [--budget N] [--json] SPACE_FILE...
//
// It ends with the goals' figures over every run (retuned within 2% of the new optimum, false
// flags, the longest delay); --json writes one object per run and then one with the summary.
// Bad options exit 2; a run that cannot be done is reported on stderr and makes the exit 1.
//
// --budget (default 100, the goal's) sets the retuning job's measurements and the fresh
// baseline's alike: how the share of runs within 2% grows with the budget.
//
// Replayed measurements take no time, so the retuning job's agent, whose time is a share of the
// measurement time (agent/time_budget.h), would never afford a learning step, as it would on a
// device where compiling and timing a kernel takes far longer than the agent's step. The
// retuning job and the baseline from nothing (step 5) therefore run with --agent-share (default
// 0: no limit), the same share; the first tuning (the model strategy) does not use the allowance.
//
// Per space and seed, in one in-process server (retune policy: act, budget 100):
//   1. a first tuning job (model strategy, 100 measurements) gives the served configuration B;
//   2. `stable` production reports of B: lab time x 1.1, 2% report-to-report noise (lognormal),
//      0.5% of reports a contention spike (2x to 5x): every flag here is a false alarm;
//   3. the replay device slows every configuration sharing B's values of its two most important
//      parameters (by the records' spread) 2x, and production reports B at 2x: the delay is the
//      reports until the flag;
//   4. the retuning job runs (100 measurements); the ratio is its best time over the regressed
//      space's optimum, printed beside the first tuning's best over the space's optimum (what
//      100 measurements found before the regression), and beside them the best of the first
//      tuning's configurations under the regression (how far re-measuring its records alone gets);
//   5. the baseline, in a second server with an empty database: the same strategy and budget
//      tuning the regressed device from nothing. The retuning is worth its records where it ends
//      nearer the new optimum than this does.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "db/interchange/record_files.h"
#include "grpcpp/create_channel.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "measurer/replay_measurer.h"
#include "measurer/worker_loop.h"
#include "proto/convert.h"
#include "server/explanation.h"
#include "server/job_spec.h"
#include "server/tuning_server.h"

namespace ktune {
namespace {

struct Row {
  std::string space;
  int seed = 0;
  int false_flags = 0;
  int delay = -1;  // reports until the regression was flagged; -1: never (within 200)
  double first_over_optimum = 0;  // the first tuning's best over the space's optimum
  double retuned_over_optimum = 0;
  // The best, under the regression, of the configurations measured before it (the first
  // tuning's records) over the new optimum: what re-measuring those records alone would reach.
  double earlier_over_optimum = 0;
  // The baseline: the same strategy and budget tuning the regressed device with no record of
  // the first tuning, its best over the new optimum.
  double fresh_over_optimum = 0;
  int64_t retune_measurements = 0;
};

std::unique_ptr<grpc::ClientContext> Context() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  return ctx;
}

// An in-process server with one replay worker answering from `measurer` (which must outlive it).
class ReplayService {
 public:
  static absl::StatusOr<std::unique_ptr<ReplayService>> Start(const TuningServerOptions& options,
                                                              ReplayMeasurer* measurer) {
    auto service = std::unique_ptr<ReplayService>(new ReplayService());
    KTUNE_ASSIGN_OR_RETURN(service->server_, TuningServer::Start(options));
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", service->server_->port()),
                                       grpc::InsecureChannelCredentials());
    service->tuning_ = v1::TuningService::NewStub(channel);
    service->worker_ = std::thread([channel, measurer, stop = &service->stop_] {
      auto stub = v1::WorkerService::NewStub(channel);
      WorkerLoopOptions o;
      o.max_candidates = 8;
      WorkerLoop loop(stub.get(), measurer, o, stop);
      (void)loop.Run();
    });
    return service;
  }
  ~ReplayService() {
    stop_ = true;
    if (worker_.joinable()) worker_.join();
    if (server_) server_->Shutdown();
  }
  v1::TuningService::Stub* tuning() { return tuning_.get(); }
  // Follows the job's events (WatchJob) until it ends; true when it ended done.
  bool WaitDone(const std::string& job_id) {
    v1::WatchJobRequest watch;
    watch.set_job_id(job_id);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(600));
    auto events = tuning_->WatchJob(&ctx, watch);
    v1::JobEvent event;
    v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
    while (events->Read(&event)) state = event.job().state();
    return events->Finish().ok() && state == v1::JOB_STATE_DONE;
  }

 private:
  ReplayService() = default;
  std::unique_ptr<TuningServer> server_;
  std::unique_ptr<v1::TuningService::Stub> tuning_;
  std::atomic<bool> stop_{false};
  std::thread worker_;
};

// The QueryBest request for the recorded task of `any`.
v1::QueryBestRequest BestQuery(const Record& any) {
  v1::QueryBestRequest query;
  query.mutable_kernel()->set_name(any.kernel);
  ToProto(any.problem, query.mutable_problem()->mutable_params());
  query.mutable_device()->set_device_class(any.device.device_class);
  return query;
}

// Submits a job of `budget` measurements for the recorded task of `any` and waits for it;
// returns the best time it found.
absl::StatusOr<double> TuneAndQueryBest(ReplayService& service, const Record& any,
                                        const std::string& name, v1::Strategy strategy,
                                        int budget, int seed, double agent_share,
                                        Configuration* best_config = nullptr) {
  v1::SubmitJobRequest submit;
  submit.mutable_spec()->set_name(name);
  submit.mutable_spec()->add_kernels()->set_name(any.kernel);
  ToProto(any.problem, submit.mutable_spec()->add_problems()->mutable_params());
  submit.mutable_spec()->add_device_classes(any.device.device_class);
  submit.mutable_spec()->set_budget_measurements(budget);
  submit.mutable_spec()->set_strategy(strategy);
  submit.mutable_spec()->set_seed(seed);
  // Always set: unset, the job would take the server's default share (0.05), under which PPO on
  // replayed measurements never affords its full step.
  submit.mutable_spec()->set_agent_share(agent_share);
  v1::Job job;
  if (!service.tuning()->SubmitJob(Context().get(), submit, &job).ok() ||
      !service.WaitDone(job.job_id())) {
    return absl::InternalError(absl::StrCat("the ", name, " tuning did not finish"));
  }
  const v1::QueryBestRequest query = BestQuery(any);
  v1::QueryBestResponse best;
  if (!service.tuning()->QueryBest(Context().get(), query, &best).ok() || best.best_size() == 0) {
    return absl::InternalError(absl::StrCat("no best after the ", name, " tuning"));
  }
  if (best_config != nullptr) {
    KTUNE_ASSIGN_OR_RETURN(*best_config, FromProto(best.best(0).config().params(), "config"));
  }
  return best.best(0).time_ms();
}

TuningServerOptions ReplayServerOptions(const std::string& path, const std::string& db_path) {
  TuningServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = db_path;
  std::remove(options.db_path.c_str());
  options.replay_files = {path};
  return options;
}

absl::StatusOr<Row> RunOne(const std::string& path, int seed, int stable,
                           const std::string& strategy, int reverify, double agent_share,
                           int budget, const std::string& dir) {
  KTUNE_ASSIGN_OR_RETURN(RecordedSpace recorded, LoadRecordedSpace(path));
  KTUNE_ASSIGN_OR_RETURN(v1::Strategy retune_strategy, ParseStrategy(strategy));
  const Record& any = recorded.records.front();
  TuningServerOptions options =
      ReplayServerOptions(path, absl::StrCat(dir, "/drift-", seed, ".db"));
  options.retune.mode = RetuneMode::kAct;
  options.retune.budget = budget;
  options.retune.strategy = strategy;
  options.retune.reverify_top = reverify;
  options.retune.agent_share = agent_share;
  ReplayMeasurer measurer(recorded.records);
  KTUNE_ASSIGN_OR_RETURN(std::unique_ptr<ReplayService> service,
                         ReplayService::Start(options, &measurer));
  v1::TuningService::Stub* tuning = service->tuning();
  Row row;
  row.space = path.substr(path.rfind('/') + 1);
  row.seed = seed;
  // 1. The first tuning.
  Configuration served;
  KTUNE_ASSIGN_OR_RETURN(const double lab_ms,
                         TuneAndQueryBest(*service, any, "first", v1::STRATEGY_MODEL_BASED, 100,
                                          seed, 0, &served));
  const v1::QueryBestRequest query = BestQuery(any);
  row.first_over_optimum = lab_ms / measurer.optimum_ms();

  // 2. Stable production, with spikes.
  std::mt19937 rng(seed);
  std::normal_distribution<double> noise(0, 0.02);
  std::uniform_real_distribution<double> unit(0, 1);
  auto sample = [&](double factor) {
    v1::TelemetrySample s;
    s.mutable_kernel()->set_name(any.kernel);
    ToProto(any.problem, s.mutable_problem()->mutable_params());
    s.mutable_device()->set_device_class(any.device.device_class);
    ToProto(served, s.mutable_config()->mutable_params());
    double t = lab_ms * 1.1 * factor * std::exp(noise(rng));
    if (unit(rng) < 0.005) t *= 2 + 3 * unit(rng);
    s.set_count(1000);
    s.set_mean_ms(t);
    return s;
  };
  for (int sent = 0; sent < stable; sent += 100) {
    v1::ReportTelemetryRequest r;
    for (int i = 0; i < 100; ++i) *r.add_samples() = sample(1.0);
    v1::ReportTelemetryResponse response;
    if (!tuning->ReportTelemetry(Context().get(), r, &response).ok()) {
      return absl::InternalError("ReportTelemetry failed");
    }
    row.false_flags += response.raised_size();
  }
  // 3. The regression: B's values of its two most important parameters, 2x slower.
  v1::ExplainRequest explain_request;
  *explain_request.mutable_kernel() = query.kernel();
  *explain_request.mutable_problem() = query.problem();
  *explain_request.mutable_device() = query.device();
  v1::ExplainResponse explained;
  Configuration where;
  if (tuning->Explain(Context().get(), explain_request, &explained).ok()) {
    for (int i = 0; i < explained.parameters_size() && where.size() < 2; ++i) {
      where[explained.parameters(i).name()] = served.at(explained.parameters(i).name());
    }
  }
  if (where.empty()) where = served;
  measurer.set_regression({measurer.measurements(), 2.0, where});
  std::string retune_job;
  for (int i = 1; i <= 200 && retune_job.empty(); ++i) {
    v1::ReportTelemetryRequest r;
    *r.add_samples() = sample(2.0);
    v1::ReportTelemetryResponse response;
    if (!tuning->ReportTelemetry(Context().get(), r, &response).ok()) break;
    for (const v1::DriftFlag& f : response.raised()) {
      if (f.kind() == v1::DRIFT_KIND_REGRESSION) {
        row.delay = i;
        retune_job = f.retune_job_id();
      }
    }
  }
  // 4. The retuning job.
  if (!retune_job.empty() && service->WaitDone(retune_job)) {
    v1::QueryBestResponse after;
    if (tuning->QueryBest(Context().get(), query, &after).ok() && after.best_size() > 0) {
      row.retuned_over_optimum = after.best(0).time_ms() / measurer.RegressedOptimumMs();
      row.earlier_over_optimum =
          measurer.RegressedBestOfEarlierMs() / measurer.RegressedOptimumMs();
      row.retune_measurements = options.retune.budget;
    }
  }
  service.reset();
  // 5. The baseline: the same strategy and budget tuning the regressed device from nothing (a
  // server of its own with an empty database), as if no record of the first tuning were kept.
  KTUNE_ASSIGN_OR_RETURN(
      service, ReplayService::Start(
                   ReplayServerOptions(path, absl::StrCat(dir, "/drift-fresh-", seed, ".db")),
                   &measurer));
  KTUNE_ASSIGN_OR_RETURN(
      const double fresh_ms,
      TuneAndQueryBest(*service, any, "fresh", retune_strategy, budget, seed, agent_share));
  row.fresh_over_optimum = fresh_ms / measurer.RegressedOptimumMs();
  return row;
}

// What the runs add up to: the figures of the goals.
struct Summary {
  int runs = 0, flagged = 0, retuned_within = 0, fresh_within = 0, earlier_within = 0;
  int false_flags = 0, max_delay = 0;
  int64_t stable_reports = 0;
  double log_retuned = 0;  // sum over flagged runs of log(retuned / new optimum)

  void Add(const Row& row, int stable) {
    ++runs;
    false_flags += row.false_flags;
    stable_reports += stable;
    fresh_within += row.fresh_over_optimum <= kWithin;
    if (row.retuned_over_optimum <= 0) return;  // never flagged, or the retuning did not finish
    ++flagged;
    max_delay = std::max(max_delay, row.delay);
    retuned_within += row.retuned_over_optimum <= kWithin;
    earlier_within += row.earlier_over_optimum <= kWithin;
    log_retuned += std::log(row.retuned_over_optimum);
  }
  double GeometricMean() const { return flagged > 0 ? std::exp(log_retuned / flagged) : NAN; }
  static constexpr double kWithin = 1.02;  // the goal: within 2% of the new optimum
};

constexpr char kUsage[] =
    "usage: ktune-drift-bench [--seeds N] [--stable N] [--strategy S] [--reverify K]\n"
    "                         [--agent-share X] [--budget N] [--json] SPACE_FILE...\n"
    "  --seeds N        runs per space, seeds 1..N (default 3)\n"
    "  --stable N       stable production reports before the regression, sent in hundreds\n"
    "                   (default 10000)\n"
    "  --strategy S     the retuning job's and the fresh baseline's strategy (default ppo)\n"
    "  --reverify K     old best configurations the retuning measures again (default: the\n"
    "                   server's)\n"
    "  --agent-share X  the agent's time as a share of measurement time, 0: no limit (default 0)\n"
    "  --budget N       measurements of the retuning job and of the fresh baseline (default 100)\n"
    "  --json           one JSON object per run, then one with the summary, instead of the table\n";

int Usage(const std::string& message) {
  std::fprintf(stderr, "ktune-drift-bench: %s\n%s", message.c_str(), kUsage);
  return 2;
}

int Main(int argc, char** argv) {
  int seeds = 3, stable = 10'000, reverify = RetunePolicy().reverify_top, budget = 100;
  double agent_share = 0;
  bool json = false;
  std::string strategy = "ppo";
  std::vector<std::string> spaces;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    // The value of option `a`, as an integer of at least `min`; false (with a message) if absent
    // or not one.
    auto int_value = [&](int min, int* out) {
      if (i + 1 >= argc || !absl::SimpleAtoi(argv[i + 1], out) || *out < min) {
        Usage(absl::StrCat(a, " takes an integer of at least ", min));
        return false;
      }
      ++i;
      return true;
    };
    if (a == "--seeds") {
      if (!int_value(1, &seeds)) return 2;
    } else if (a == "--stable") {
      if (!int_value(0, &stable)) return 2;
    } else if (a == "--budget") {
      if (!int_value(1, &budget)) return 2;
    } else if (a == "--reverify") {
      if (!int_value(0, &reverify)) return 2;
    } else if (a == "--strategy") {
      if (i + 1 >= argc) return Usage("--strategy takes a strategy name");
      strategy = argv[++i];
      if (!ParseStrategy(strategy).ok()) {
        return Usage(absl::StrCat("unknown strategy '", strategy, "'"));
      }
    } else if (a == "--agent-share") {
      if (i + 1 >= argc || !absl::SimpleAtod(argv[i + 1], &agent_share) || !(agent_share >= 0)) {
        return Usage("--agent-share takes a number of at least 0");
      }
      ++i;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--help" || a == "-h") {
      std::printf("%s", kUsage);
      return 0;
    } else if (a.size() > 1 && a[0] == '-') {
      return Usage(absl::StrCat("unknown option ", a));
    } else {
      spaces.push_back(a);
    }
  }
  if (spaces.empty()) return Usage("name at least one recorded space file");
  // Each run's databases in a folder of its own, so that two runs at once do not share them.
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp",
                                     "/ktune-drift-bench-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    std::fprintf(stderr, "ktune-drift-bench: cannot make a folder from %s\n", pattern.c_str());
    return 1;
  }
  const std::string dir = pattern;
  if (!json) {
    std::printf("%-32s %4s %14s %8s %16s %16s %16s %16s\n", "space", "seed", "false flags", "delay",
                "first/optimum", "retuned/new opt", "earlier/new opt", "fresh/new opt");
  }
  // Reports go in hundreds (step 2), so `stable` is rounded up to them.
  const int stable_sent = (stable + 99) / 100 * 100;
  Summary summary;
  int failures = 0;
  for (const std::string& space : spaces) {
    for (int seed = 1; seed <= seeds; ++seed) {
      absl::StatusOr<Row> row =
          RunOne(space, seed, stable, strategy, reverify, agent_share, budget, dir);
      if (!row.ok()) {
        std::fprintf(stderr, "%s seed %d: %s\n", space.c_str(), seed,
                     std::string(row.status().message()).c_str());
        ++failures;
        continue;
      }
      summary.Add(*row, stable_sent);
      if (json) {
        nlohmann::ordered_json j;
        j["space"] = row->space;
        j["seed"] = row->seed;
        j["false_flags"] = row->false_flags;
        j["stable_reports"] = stable_sent;
        j["delay"] = row->delay;  // -1: never flagged within 200 reports
        j["first_over_optimum"] = row->first_over_optimum;
        j["retuned_over_new_optimum"] = row->retuned_over_optimum;
        j["earlier_over_new_optimum"] = row->earlier_over_optimum;
        j["fresh_over_new_optimum"] = row->fresh_over_optimum;
        std::printf("%s\n", j.dump().c_str());
      } else {
        std::printf("%-32s %4d %5d in %6d %8d %16.4f %16.4f %16.4f %16.4f\n", row->space.c_str(),
                    seed, row->false_flags, stable_sent, row->delay, row->first_over_optimum,
                    row->retuned_over_optimum, row->earlier_over_optimum, row->fresh_over_optimum);
      }
      std::fflush(stdout);
    }
  }
  for (int seed = 1; seed <= seeds; ++seed) {
    for (const char* name : {"/drift-", "/drift-fresh-"}) {
      for (const char* suffix : {"", "-wal", "-shm"}) {
        std::remove(absl::StrCat(dir, name, seed, ".db", suffix).c_str());
      }
    }
  }
  std::remove(dir.c_str());
  const double geo = summary.GeometricMean();
  if (json) {
    nlohmann::ordered_json j;
    nlohmann::ordered_json& s = j["summary"];
    s["runs"] = summary.runs;
    s["failed_runs"] = failures;
    s["flagged"] = summary.flagged;
    s["retuned_within_2pct"] = summary.retuned_within;
    s["fresh_within_2pct"] = summary.fresh_within;
    s["earlier_within_2pct"] = summary.earlier_within;
    s["retuned_over_new_optimum_geomean"] =
        std::isfinite(geo) ? nlohmann::ordered_json(geo) : nlohmann::ordered_json(nullptr);
    s["false_flags"] = summary.false_flags;
    s["stable_reports"] = summary.stable_reports;
    s["max_delay"] = summary.max_delay;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf(
        "\n%d runs (%d failed to run), the regression flagged in %d, within %d reports at most\n"
        "retuned within 2%% of the new optimum: %d of %d; a fresh tuning: %d; the earlier records "
        "alone: %d\ngeometric mean of retuned / new optimum: %.4f\nfalse flags: %d in %lld "
        "stable reports\n",
        summary.runs, failures, summary.flagged, summary.max_delay, summary.retuned_within,
        summary.runs, summary.fresh_within, summary.earlier_within, geo, summary.false_flags,
        static_cast<long long>(summary.stable_reports));
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace ktune

int main(int argc, char** argv) { return ktune::Main(argc, argv); }
