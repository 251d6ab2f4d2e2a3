// Production telemetry over the API: hostile input is refused and stores nothing; a simulated
// driver regression on a replay device is detected, retuned, and changes the best answer.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "db/interchange/record_files.h"
#include "db/sqlite_tuning_database.h"
#include "grpcpp/create_channel.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "measurer/replay_measurer.h"
#include "measurer/worker_loop.h"
#include "proto/convert.h"
#include "server/explanation.h"
#include "server/tuning_server.h"
#include "tests/server/local_stub.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

using ::testing::HasSubstr;

constexpr char kSpace[] = "pnpoly_RTX_3090_T4.json.gz";

std::unique_ptr<grpc::ClientContext> Context(const std::string& token = "") {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  return ctx;
}

v1::TelemetrySample Sample(const Record& task, const Configuration& config, double mean_ms,
                           int64_t count = 1000) {
  v1::TelemetrySample s;
  s.mutable_kernel()->set_name(task.kernel);
  ToProto(task.problem, s.mutable_problem()->mutable_params());
  s.mutable_device()->set_device_class(task.device.device_class);
  ToProto(config, s.mutable_config()->mutable_params());
  s.set_count(count);
  s.set_mean_ms(mean_ms);
  s.set_stddev_ms(mean_ms * 0.02);
  return s;
}

// QueryBest of the task of `any` on its device class.
v1::QueryBestRequest QueryFor(const Record& any) {
  v1::QueryBestRequest query;
  query.mutable_kernel()->set_name(any.kernel);
  ToProto(any.problem, query.mutable_problem()->mutable_params());
  query.mutable_device()->set_device_class(any.device.device_class);
  return query;
}

int64_t StoredTelemetry(const std::string& db_path) {
  auto db = SqliteTuningDatabase::Open(db_path);
  int64_t n = 0;
  EXPECT_TRUE(db.ok());
  EXPECT_TRUE((*db)->ForEachTelemetry([&](const TelemetryReport&) {
                     ++n;
                     return absl::OkStatus();
                   })
                  .ok());
  return n;
}

TEST(TelemetryTest, MalformedOrHostileTelemetryIsRefusedClearlyAndStoresNothing) {
  testing::TempDir dir;
  {
    std::ofstream tokens(dir.File("tokens"));
    tokens << "telemetry-token-0123456789 telemetry\nquery-token-0123456789 query\n";
  }
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpace));
  ASSERT_TRUE(recorded.ok());
  const Record& any = recorded->records.front();
  TuningServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir.File("t.db");
  options.auth_file = dir.File("tokens");
  options.replay_files = {testing::SpaceFile(kSpace)};
  auto server = TuningServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = testing::LocalStub<v1::TuningService>((*server)->port());
  // The kernel is known to the server through its records.
  // So is a kernel known only from records (an import), which no space the server has describes.
  Record imported = any;
  imported.kernel = "imported_kernel";
  {
    auto db = SqliteTuningDatabase::Open(dir.File("t.db"));
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->AddRecords({any, imported}).ok());
  }
  const std::string token = "telemetry-token-0123456789";
  auto refused = [&](v1::ReportTelemetryRequest request, const std::string& as) {
    v1::ReportTelemetryResponse response;
    return stub->ReportTelemetry(Context(as).get(), request, &response);
  };
  auto one = [&](v1::TelemetrySample s) {
    v1::ReportTelemetryRequest r;
    *r.add_samples() = Sample(any, any.config, 1.0);  // a good one first: refused with the rest
    *r.add_samples() = std::move(s);
    return r;
  };

  v1::TelemetrySample nan = Sample(any, any.config, std::nan(""));
  grpc::Status st = refused(one(nan), token);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("samples[1]: telemetry: mean_ms is nan"));

  v1::TelemetrySample negative = Sample(any, any.config, 0);
  negative.set_count(0);
  negative.add_times_ms(1.0);
  negative.add_times_ms(-2.0);
  negative.set_mean_ms(0);
  st = refused(one(negative), token);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("every time must be a positive number"));

  // A spread given beside times of its own was dropped without a word.
  v1::TelemetrySample spread = Sample(any, any.config, 0);
  spread.set_count(0);
  spread.set_mean_ms(0);
  spread.add_times_ms(1.0);
  spread.set_stddev_ms(-5);
  st = refused(one(spread), token);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("stddev_ms goes with count and mean_ms"));

  v1::TelemetrySample unknown = Sample(any, any.config, 1.0);
  unknown.mutable_kernel()->set_name("no_such_kernel");
  st = refused(one(unknown), token);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("unknown kernel 'no_such_kernel'"));

  // A window in the future (9999-12-31 was stored), and one before 1970 (it said "not a valid
  // timestamp").
  for (const auto& [seconds, says] : std::vector<std::pair<int64_t, std::string>>{
           {253'402'300'000, "window_end is 9999-12-31T23:46:40Z, more than a day after now"},
           {-2'208'988'800, "window_start is out of range (from 1970-01-01 to 9999-12-31"}}) {
    v1::TelemetrySample windowed = Sample(any, any.config, 1.0);
    windowed.mutable_window_start()->set_seconds(std::min<int64_t>(seconds, 1'700'000'000));
    windowed.mutable_window_end()->set_seconds(seconds < 0 ? 1'700'000'000 : seconds);
    st = refused(one(windowed), token);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << says;
    EXPECT_THAT(st.error_message(), HasSubstr(says));
  }

  // The kernel is known from the recorded space the server replays: a configuration must be one
  // of that space's (a made-up parameter, and a tile size of 18.5, were stored).
  Configuration made_up = any.config;
  made_up["nosuch"] = int64_t{1};
  Configuration fractional = any.config;
  fractional["tile_size"] = 18.5;
  for (const auto& [config, says] : std::vector<std::pair<Configuration, std::string>>{
           {made_up, "config: unknown parameter 'nosuch' (in the recorded space of pnpoly"},
           {fractional,
            "config: parameter 'tile_size' has value 18.5, which is not in its value "
            "list"}}) {
    st = refused(one(Sample(any, config, 1.0)), token);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << says;
    EXPECT_THAT(st.error_message(), HasSubstr(says));
  }

  // A kernel known only from records: a configuration names the parameters its records name.
  {  // (a good one is stored below)
    v1::ReportTelemetryRequest misspelt;
    Configuration renamed = imported.config;
    renamed["tile_sise"] = renamed.at("tile_size");
    renamed.erase("tile_size");
    *misspelt.add_samples() = Sample(imported, renamed, 1.0);
    st = refused(misspelt, token);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(
        st.error_message(),
        HasSubstr("config: the records of imported_kernel on " + imported.device.device_class +
                  " name the parameters between_method, block_size_x, tile_size, "
                  "use_method, not tile_sise"));
  }

  v1::TelemetrySample no_class = Sample(any, any.config, 1.0);
  no_class.mutable_device()->clear_device_class();
  st = refused(one(no_class), token);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("device_class is required"));

  v1::ReportTelemetryRequest huge;
  for (int i = 0; i < 1001; ++i) *huge.add_samples() = Sample(any, any.config, 1.0);
  st = refused(huge, token);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(st.error_message(), HasSubstr("at most 1000"));

  // A token without the telemetry role, and none at all.
  v1::ReportTelemetryRequest fine;
  *fine.add_samples() = Sample(any, any.config, 1.0);
  EXPECT_EQ(refused(fine, "query-token-0123456789").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(refused(fine, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);

  v1::TelemetrySample bad_histogram = Sample(any, any.config, 0);
  bad_histogram.set_count(0);
  bad_histogram.set_mean_ms(0);
  for (double bound : {2.0, 1.0}) bad_histogram.mutable_histogram()->add_upper_bounds_ms(bound);
  for (int64_t n : {5, 5}) bad_histogram.mutable_histogram()->add_counts(n);
  st = refused(one(bad_histogram), token);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("bounds must be positive, finite and increasing"));

  // A fingerprint that names no device (each raised a new_environment flag), and for a registry
  // kernel a problem it cannot tune or a parameter it does not have (flags nobody could retune;
  // "act" queued jobs for them all the same).
  for (const std::string garbage : {"garbage", "42", "null", "[1]"}) {
    v1::TelemetrySample bad_fingerprint = Sample(any, any.config, 1.0);
    (*bad_fingerprint.mutable_device()->mutable_extra())["fingerprint_json"] = garbage;
    st = refused(one(bad_fingerprint), token);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << garbage;
    EXPECT_THAT(st.error_message(), HasSubstr("fingerprint_json must be a JSON object")) << garbage;
  }
  Record gemm;
  gemm.kernel = "gemm";
  gemm.problem = {{"M", int64_t{64}}, {"N", int64_t{64}}, {"K", int64_t{64}}};
  gemm.device.device_class = "cpu:x";
  v1::TelemetrySample no_m = Sample(gemm, {{"MR", int64_t{4}}}, 1.0);
  no_m.mutable_problem()->mutable_params()->erase("M");
  st = refused(one(no_m), token);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("needs problem parameter M"));
  v1::TelemetrySample no_problem = Sample(gemm, {{"MR", int64_t{4}}}, 1.0);
  no_problem.clear_problem();
  st = refused(one(no_problem), token);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("needs problem parameter"));
  st = refused(one(Sample(gemm, {{"bogus", int64_t{1}}}, 1.0)), token);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("config: kernel 'gemm' has no parameter 'bogus'"));
  // A value the parameter does not have (it was stored, and no record could ever match it).
  st = refused(one(Sample(gemm, {{"MR", int64_t{999}}}, 1.0)), token);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(),
              HasSubstr("config: parameter 'MR' of kernel 'gemm' has no value 999; its values are "
                        "the integers 1, 2, 4, 6"));
  // A string of a listed value is said to be a string (it read "has no value 6; its values: 1,
  // 2, 4, 6").
  v1::TelemetrySample as_text = Sample(gemm, {{"MR", int64_t{6}}}, 1.0);
  (*as_text.mutable_config()->mutable_params())["MR"].set_string_value("6");
  st = refused(one(as_text), token);
  EXPECT_THAT(st.error_message(), HasSubstr("has no value \"6\" (a string); its values are"));
  EXPECT_EQ(StoredTelemetry(dir.File("t.db")), 0);  // nothing of the refused calls

  // A histogram is stored as its count, mean and spread (each bucket at its midpoint).
  v1::TelemetrySample histogram = bad_histogram;
  histogram.mutable_histogram()->set_upper_bounds_ms(0, 1.0);
  histogram.mutable_histogram()->set_upper_bounds_ms(1, 2.0);
  histogram.mutable_histogram()->add_upper_bounds_ms(4.0);
  histogram.mutable_histogram()->set_counts(0, 0);
  histogram.mutable_histogram()->set_counts(1, 10);
  histogram.mutable_histogram()->add_counts(10);
  v1::ReportTelemetryRequest accepted;
  *accepted.add_samples() = histogram;
  *accepted.add_samples() = Sample(imported, imported.config, 1.0);
  EXPECT_TRUE(refused(accepted, token).ok());
  (*server)->Shutdown();
  server->reset();
  auto db = SqliteTuningDatabase::Open(dir.File("t.db"));
  ASSERT_TRUE(db.ok());
  std::vector<TelemetryReport> stored;
  ASSERT_TRUE((*db)->ForEachTelemetry([&](const TelemetryReport& r) {
                     stored.push_back(r);
                     return absl::OkStatus();
                   })
                  .ok());
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[1].kernel, "imported_kernel");
  EXPECT_EQ(stored[0].count, 20);
  EXPECT_DOUBLE_EQ(stored[0].mean_ms, 2.25);  // 10 calls at 1.5 ms, 10 at 3 ms
}

// Stored flags that cannot be read (another version's format, a damaged blob) must not keep the
// server from starting: it logs them and goes on (a policy blob once blocked its kernel so).
TEST(TelemetryTest, UnreadableStoredFlagsDoNotStopTheServer) {
  testing::TempDir dir;
  {
    auto db = SqliteTuningDatabase::Open(dir.File("f.db"));
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->SaveCheckpoint("drift/flags", R"({"version":99,"flags":"?"})").ok());
  }
  TuningServerOptions options;
  options.listen = "";
  options.db_path = dir.File("f.db");
  auto server = TuningServer::Start(options);
  EXPECT_TRUE(server.ok()) << server.status();
}

// The whole loop on a replay device: tune; production reports the served configuration; a
// simulated driver update slows it (and its neighbours) 3x; the drift is flagged within 50
// reports; the server (--retune act) marks the old records stale and runs a retuning job that
// re-measures the old best first; the best answer changes to a configuration the regression
// did not touch.
TEST(TelemetryTest, ARegressionInProductionIsFlaggedRetunedAndChangesTheBestAnswer) {
  testing::TempDir dir;
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpace));
  ASSERT_TRUE(recorded.ok());
  const Record& any = recorded->records.front();
  TuningServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir.File("r.db");
  options.replay_files = {testing::SpaceFile(kSpace)};
  options.scheduler.agent_threads = 0;
  options.retune.mode = RetuneMode::kAct;
  options.retune.budget = 100;
  options.retune.strategy = "model";
  options.retune.agent_share = 0.25;
  auto server = TuningServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->port()),
                                     grpc::InsecureChannelCredentials());
  auto tuning = v1::TuningService::NewStub(channel);

  constexpr int64_t kFirstTuning = 100;
  ReplayMeasurer measurer(recorded->records);
  std::atomic<bool> stop{false};
  std::thread worker([&] {
    auto stub = v1::WorkerService::NewStub(channel);
    WorkerLoopOptions o;
    o.max_candidates = 8;
    WorkerLoop loop(stub.get(), &measurer, o, &stop);
    EXPECT_TRUE(loop.Run().ok());
  });
  // Follows the job's events (WatchJob) until it ends; true when it ended done.
  auto wait_done = [&](const std::string& job_id) {
    v1::WatchJobRequest watch;
    watch.set_job_id(job_id);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(300));
    auto events = tuning->WatchJob(&ctx, watch);
    v1::JobEvent event;
    v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
    while (events->Read(&event)) state = event.job().state();
    return events->Finish().ok() && state == v1::JOB_STATE_DONE;
  };
  // 1. Tune.
  v1::SubmitJobRequest submit;
  submit.mutable_spec()->set_name("first");
  submit.mutable_spec()->add_kernels()->set_name(any.kernel);
  ToProto(any.problem, submit.mutable_spec()->add_problems()->mutable_params());
  submit.mutable_spec()->add_device_classes(any.device.device_class);
  submit.mutable_spec()->set_budget_measurements(kFirstTuning);
  submit.mutable_spec()->set_strategy(v1::STRATEGY_MODEL_BASED);
  v1::Job first;
  ASSERT_TRUE(tuning->SubmitJob(Context().get(), submit, &first).ok());
  ASSERT_TRUE(wait_done(first.job_id()));
  const v1::QueryBestRequest query = QueryFor(any);
  v1::QueryBestResponse before;
  ASSERT_TRUE(tuning->QueryBest(Context().get(), query, &before).ok());
  ASSERT_EQ(before.best_size(), 1);
  absl::StatusOr<Configuration> served = FromProto(before.best(0).config().params(), "config");
  ASSERT_TRUE(served.ok());
  const double lab_ms = before.best(0).time_ms();

  // 2. Production runs the served configuration, 10% slower than in the lab, steadily.
  std::mt19937 rng(5);
  std::normal_distribution<double> noise(1.0, 0.01);
  auto report = [&](double factor) {
    v1::ReportTelemetryRequest r;
    *r.add_samples() = Sample(any, *served, lab_ms * 1.1 * factor * noise(rng));
    v1::ReportTelemetryResponse response;
    EXPECT_TRUE(tuning->ReportTelemetry(Context().get(), r, &response).ok());
    EXPECT_EQ(response.accepted(), 1);  // every report stored: the delay counts stored reports
    return response;
  };
  for (int i = 0; i < 100; ++i) ASSERT_EQ(report(1.0).raised_size(), 0) << "report " << i;

  // 3. A driver update: everything with the served tile_size and use_method is 3x slower.
  Configuration where{{"tile_size", served->at("tile_size")}, {"use_method", served->at("use_method")}};
  measurer.set_regression({measurer.measurements(), 3.0, where});
  v1::DriftFlag flag;
  int delay = 0;
  for (int i = 1; i <= 50 && flag.id() == 0; ++i) {
    v1::ReportTelemetryResponse r = report(3.0);
    if (r.raised_size() > 0) {
      flag = r.raised(0);
      delay = i;
    }
  }
  ASSERT_NE(flag.id(), 0) << "no flag within 50 reports of the regression";  // the goal's bound
  EXPECT_GE(delay, 1);
  EXPECT_EQ(flag.kind(), v1::DRIFT_KIND_REGRESSION);
  EXPECT_NEAR(flag.recent_ms() / flag.reference_ms(), 3.0, 0.1);
  ASSERT_FALSE(flag.retune_job_id().empty()) << flag.action();
  EXPECT_THAT(flag.action(), HasSubstr("retuning: job " + flag.retune_job_id()));
  v1::ListDriftResponse listed;
  ASSERT_TRUE(tuning->ListDrift(Context().get(), {}, &listed).ok());
  ASSERT_EQ(listed.flags_size(), 1);
  EXPECT_EQ(listed.flags(0).id(), flag.id());

  // 4. The retuning job runs; the best answer changes to an untouched configuration.
  ASSERT_TRUE(wait_done(flag.retune_job_id()));
  v1::QueryBestResponse after;
  ASSERT_TRUE(tuning->QueryBest(Context().get(), query, &after).ok());
  ASSERT_EQ(after.best_size(), 1);
  absl::StatusOr<Configuration> now = FromProto(after.best(0).config().params(), "config");
  ASSERT_TRUE(now.ok());
  EXPECT_NE(*now, *served);
  EXPECT_FALSE(now->at("tile_size") == where.at("tile_size") &&
               now->at("use_method") == where.at("use_method"));
  stop = true;
  worker.join();
  (*server)->Shutdown();
  server->reset();

  // A restart on the same database replays the stored telemetry into the drift monitor (it once
  // hung there, the replay holding the database that the monitor queries) and serves as before.
  // The flag is listed as it was, with its retuning job, and the retuned stream is judged anew:
  // a further slowdown of it is flagged (a restart once lost the action and, replaying the
  // regression without the retune's restart, never flagged that stream again).
  options.replay_files.clear();
  options.retune.mode = RetuneMode::kSuggest;
  auto restarted = TuningServer::Start(options);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  {
    auto again = testing::LocalStub<v1::TuningService>((*restarted)->port());
    v1::QueryBestResponse served_again;
    ASSERT_TRUE(again->QueryBest(Context().get(), query, &served_again).ok());
    ASSERT_EQ(served_again.best_size(), 1);
    EXPECT_EQ(FromProto(served_again.best(0).config().params(), "config").value(), *now);
    v1::ListDriftResponse relisted;
    ASSERT_TRUE(again->ListDrift(Context().get(), {}, &relisted).ok());
    // The first tuning's records are stale now; the job still measured them (it read 0/100).
    v1::GetJobRequest get_first;
    get_first.set_job_id(first.job_id());
    v1::Job first_again;
    ASSERT_TRUE(again->GetJob(Context().get(), get_first, &first_again).ok());
    EXPECT_EQ(first_again.measurements_done(), kFirstTuning);
    ASSERT_EQ(relisted.flags_size(), 1);
    EXPECT_EQ(relisted.flags(0).id(), flag.id());
    EXPECT_EQ(relisted.flags(0).action(), flag.action());
    EXPECT_EQ(relisted.flags(0).retune_job_id(), flag.retune_job_id());
    auto report_again = [&](double factor) {
      v1::ReportTelemetryRequest r;
      *r.add_samples() = Sample(any, *served, lab_ms * 1.1 * factor * noise(rng));
      v1::ReportTelemetryResponse response;
      EXPECT_TRUE(again->ReportTelemetry(Context().get(), r, &response).ok());
      EXPECT_EQ(response.accepted(), 1);
      return response;
    };
    for (int i = 0; i < 40; ++i) ASSERT_EQ(report_again(3.0).raised_size(), 0) << "report " << i;
    v1::DriftFlag second;
    for (int i = 1; i <= 50 && second.id() == 0; ++i) {
      v1::ReportTelemetryResponse r = report_again(6.0);
      if (r.raised_size() > 0) second = r.raised(0);
    }
    EXPECT_EQ(second.kind(), v1::DRIFT_KIND_REGRESSION);
    EXPECT_GT(second.id(), flag.id());
    EXPECT_THAT(second.action(), HasSubstr("suggested"));
  }
  (*restarted)->Shutdown();
  restarted->reset();

  // The old best was measured again in the retuning job (3x its lab time); the stale records
  // are still stored.
  auto db = SqliteTuningDatabase::Open(dir.File("r.db"));
  ASSERT_TRUE(db.ok());
  auto fresh = (*db)->TaskRecords({any.kernel, "", any.problem, any.device.device_class});
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(static_cast<int64_t>(fresh->size()), options.retune.budget);
  bool reverified = false;
  for (const Record& r : *fresh) {
    if (r.config == *served && r.time_ms) {
      reverified = true;
      EXPECT_NEAR(*r.time_ms / lab_ms, 3.0, 0.01);
    }
  }
  EXPECT_TRUE(reverified);
  EXPECT_EQ((*db)->Stats()->records, kFirstTuning + options.retune.budget);
  // The retuning job ran with the policy's agent share (kept in its stored run options).
  int64_t retune_id = 0;
  ASSERT_TRUE(absl::SimpleAtoi(flag.retune_job_id(), &retune_id)) << flag.retune_job_id();
  absl::StatusOr<Job> retune = (*db)->GetJob(retune_id);
  ASSERT_TRUE(retune.ok()) << retune.status();
  const nlohmann::json spec = nlohmann::json::parse(retune->spec_json);
  ASSERT_TRUE(spec.contains("agent_share")) << retune->spec_json;
  EXPECT_DOUBLE_EQ(spec["agent_share"].get<double>(), 0.25);
}

// A server that acts on drift flags (retune act), replaying kSpace, on the database `db_path`
// holding the space's first `records` records, measured on a device whose fingerprint is
// `fingerprint_json` when given (the file's names only its model, as a class-only report does).
TuningServerOptions ActingOnRecords(const std::string& db_path, const RecordedSpace& recorded,
                                    size_t records, const std::string& fingerprint_json = "") {
  auto db = SqliteTuningDatabase::Open(db_path);
  EXPECT_TRUE(db.ok());
  if (db.ok()) {
    std::vector<Record> first(recorded.records.begin(), recorded.records.begin() + records);
    if (!fingerprint_json.empty()) {
      for (Record& r : first) r.device.fingerprint_json = fingerprint_json;
    }
    EXPECT_TRUE((*db)->AddRecords(first).ok());
  }
  TuningServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = db_path;
  options.replay_files = {testing::SpaceFile(kSpace)};
  options.scheduler.agent_threads = 0;
  options.retune.mode = RetuneMode::kAct;
  return options;
}

// A regression's retuning job that measures nothing (no worker; then cancelled) leaves the old
// answer served, marked stale, and the task counts as tuned: the flag hid every answer ("nothing
// known") for good, and the hidden history raised a second flag, "called N times but never
// tuned", which queued another retuning job.
TEST(TelemetryTest, AnUnmeasuredRetuneLeavesTheOldAnswerServedAsStale) {
  testing::TempDir dir;
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpace));
  ASSERT_TRUE(recorded.ok());
  const Record& any = recorded->records.front();
  const std::string fingerprint = R"({"driver":"550.54","name":"NVIDIA GeForce RTX 3090"})";
  TuningServerOptions options = ActingOnRecords(dir.File("s.db"), *recorded, 64, fingerprint);
  options.drift.hot_calls = 1000;
  auto server = TuningServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto tuning = testing::LocalStub<v1::TuningService>((*server)->port());
  const v1::QueryBestRequest query = QueryFor(any);
  v1::QueryBestResponse before;
  ASSERT_TRUE(tuning->QueryBest(Context().get(), query, &before).ok());
  ASSERT_EQ(before.best_size(), 1);
  EXPECT_FALSE(before.stale());
  const Configuration served = FromProto(before.best(0).config().params(), "config").value();
  const double lab_ms = before.best(0).time_ms();
  std::mt19937 rng(7);
  std::normal_distribution<double> noise(1.0, 0.01);
  // Reports name the device the records were measured on: once they were stale, that one read
  // as never tuned (a new_environment flag, and under act a second retuning job).
  auto report = [&](double factor) {
    v1::ReportTelemetryRequest r;
    v1::TelemetrySample* sample = r.add_samples();
    *sample = Sample(any, served, lab_ms * factor * noise(rng));
    (*sample->mutable_device()->mutable_extra())["fingerprint_json"] = fingerprint;
    v1::ReportTelemetryResponse response;
    EXPECT_TRUE(tuning->ReportTelemetry(Context().get(), r, &response).ok());
    return response;
  };
  for (int i = 0; i < 40; ++i) ASSERT_EQ(report(1.0).raised_size(), 0) << "report " << i;
  // A worker of the class is connected (act queues no job nobody could measure), and leases
  // nothing: the job stays unmeasured.
  auto workers = testing::LocalStub<v1::WorkerService>((*server)->port());
  v1::RegisterRequest reg;
  *reg.mutable_device() = ToProto(DeviceInfo::FromName(any.device.device_class));
  v1::RegisterResponse registered;
  ASSERT_TRUE(workers->Register(Context().get(), reg, &registered).ok());
  v1::DriftFlag flag;
  for (int i = 0; i < 50 && flag.id() == 0; ++i) {
    v1::ReportTelemetryResponse r = report(2.0);
    if (r.raised_size() > 0) flag = r.raised(0);
  }
  ASSERT_EQ(flag.kind(), v1::DRIFT_KIND_REGRESSION);
  ASSERT_FALSE(flag.retune_job_id().empty()) << flag.action();
  const auto expect_stale_answer = [&](const char* when) {
    SCOPED_TRACE(when);
    v1::QueryBestResponse now;
    ASSERT_TRUE(tuning->QueryBest(Context().get(), query, &now).ok());
    EXPECT_EQ(now.level(), v1::MATCH_LEVEL_DEVICE_CLASS);
    ASSERT_EQ(now.best_size(), 1);
    EXPECT_TRUE(now.stale());
    EXPECT_EQ(FromProto(now.best(0).config().params(), "config").value(), served);
    v1::ExplainRequest explain;
    *explain.mutable_kernel() = query.kernel();
    *explain.mutable_problem() = query.problem();
    *explain.mutable_device() = query.device();
    v1::ExplainResponse why;
    ASSERT_TRUE(tuning->Explain(Context().get(), explain, &why).ok());
    EXPECT_TRUE(why.stale());
    EXPECT_EQ(why.records(), 64);  // the stale records it describes
    // And what production said (explain justified the flagged configuration without a word).
    ASSERT_EQ(why.drift_flags_size(), 1);
    EXPECT_EQ(why.drift_flags(0).id(), flag.id());
    BestQuery asked;
    asked.kernel = any.kernel;
    asked.device_class = any.device.device_class;
    const std::string text = ExplanationText(why, asked);
    EXPECT_THAT(text, HasSubstr("production: drift flag #1, regression: "));
    EXPECT_THAT(text, HasSubstr("slowed down: recent reports take "));
    EXPECT_THAT(text, HasSubstr("\n            action: retuning: job " + flag.retune_job_id()));
  };
  expect_stale_answer("retuning job queued, nothing measured");
  // Production goes on, hot (1,000 calls a report): the task is tuned, only stale.
  for (int i = 0; i < 20; ++i) EXPECT_EQ(report(2.0).raised_size(), 0) << "report " << i;
  v1::CancelJobRequest cancel;
  cancel.set_job_id(flag.retune_job_id());
  v1::Job cancelled;
  ASSERT_TRUE(tuning->CancelJob(Context().get(), cancel, &cancelled).ok());
  expect_stale_answer("retuning job cancelled");
  v1::ListDriftResponse listed;
  ASSERT_TRUE(tuning->ListDrift(Context().get(), {}, &listed).ok());
  EXPECT_EQ(listed.flags_size(), 1);
  // A hot problem on a class this server replays no space of: the kernel is known from records
  // only, which is why no job can tune it (it said "unknown kernel" of a kernel just accepted).
  v1::TelemetrySample elsewhere = Sample(any, served, lab_ms, /*count=*/2000);
  elsewhere.mutable_device()->set_device_class("RTX_4090");
  v1::ReportTelemetryRequest hot;
  *hot.add_samples() = elsewhere;
  v1::ReportTelemetryResponse raised;
  ASSERT_TRUE(tuning->ReportTelemetry(Context().get(), hot, &raised).ok());
  ASSERT_EQ(raised.raised_size(), 1);
  EXPECT_EQ(raised.raised(0).kind(), v1::DRIFT_KIND_UNTUNED_HOT_PROBLEM);
  EXPECT_THAT(raised.raised(0).action(),
              HasSubstr("cannot retune: pnpoly is known here from records only, and this server "
                        "replays no recorded space of it on RTX_4090"));
}

// A new environment is retuned only while a worker with its fingerprint is connected: the job
// goes to the class's workers, and with only the old device's it measured that one and read as
// done (a helper's review).
TEST(TelemetryTest, ANewEnvironmentIsRetunedOnlyWhereAWorkerHasIt) {
  testing::TempDir dir;
  auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpace));
  ASSERT_TRUE(recorded.ok());
  const Record& any = recorded->records.front();
  auto server = TuningServer::Start(ActingOnRecords(dir.File("e.db"), *recorded, 16));
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->port()),
                                     grpc::InsecureChannelCredentials());
  auto tuning = v1::TuningService::NewStub(channel);
  auto workers = v1::WorkerService::NewStub(channel);
  const v1::DeviceFingerprint old_device = ToProto(ReplayMeasurer(recorded->records).device());
  auto register_worker = [&](const v1::DeviceFingerprint& device) {
    v1::RegisterRequest reg;
    *reg.mutable_device() = device;
    v1::RegisterResponse worker;
    EXPECT_TRUE(workers->Register(Context().get(), reg, &worker).ok());
    return worker.worker_id();
  };
  const std::string old_worker = register_worker(old_device);
  // The old device with another driver (a fingerprint is its JSON, extra["fingerprint_json"]).
  auto with_driver = [&](const std::string& driver) {
    v1::DeviceFingerprint device = old_device;
    (*device.mutable_extra())["fingerprint_json"] =
        nlohmann::json{{"name", any.device.device_class}, {"driver", driver}}.dump();
    return device;
  };
  auto report_on = [&](const std::string& driver) {
    v1::ReportTelemetryRequest r;
    v1::TelemetrySample* sample = r.add_samples();
    *sample = Sample(any, any.config, *any.time_ms);
    *sample->mutable_device() = with_driver(driver);
    v1::ReportTelemetryResponse response;
    EXPECT_TRUE(tuning->ReportTelemetry(Context().get(), r, &response).ok());
    EXPECT_EQ(response.raised_size(), 1);
    return response.raised_size() > 0 ? response.raised(0) : v1::DriftFlag();
  };
  // A fingerprint of no facts names only the class, and null facts are none: neither is a new
  // environment (each raised one).
  for (const std::string facts :
       {std::string("{}"),
        nlohmann::json{{"name", any.device.device_class}, {"driver", nullptr}}.dump()}) {
    v1::ReportTelemetryRequest r;
    v1::TelemetrySample* sample = r.add_samples();
    *sample = Sample(any, any.config, *any.time_ms);
    *sample->mutable_device() = old_device;
    (*sample->mutable_device()->mutable_extra())["fingerprint_json"] = facts;
    v1::ReportTelemetryResponse response;
    ASSERT_TRUE(tuning->ReportTelemetry(Context().get(), r, &response).ok());
    EXPECT_EQ(response.raised_size(), 0) << facts;
  }
  const v1::DriftFlag unserved = report_on("999.1");
  EXPECT_EQ(unserved.kind(), v1::DRIFT_KIND_NEW_ENVIRONMENT);
  EXPECT_EQ(unserved.retune_job_id(), "");
  EXPECT_THAT(unserved.action(), HasSubstr("not retuned: no connected worker of " +
                                           any.device.device_class + " has the new fingerprint"));
  const std::string new_worker = register_worker(with_driver("999.2"));
  const v1::DriftFlag served = report_on("999.2");
  EXPECT_EQ(served.kind(), v1::DRIFT_KIND_NEW_ENVIRONMENT);
  EXPECT_FALSE(served.retune_job_id().empty()) << served.action();
  // The job is measured by the worker of the new fingerprint, never by the old device's (with
  // both connected, either took its candidates).
  auto lease = [&](const std::string& worker) {
    v1::LeaseBatchRequest request;
    request.set_worker_id(worker);
    request.set_max_candidates(4);
    v1::LeaseBatchResponse granted;
    EXPECT_TRUE(workers->LeaseBatch(Context().get(), request, &granted).ok());
    return granted;
  };
  v1::LeaseBatchResponse fresh;
  for (int i = 0; i < 600 && fresh.candidates_size() == 0; ++i) {  // a poll: the first batch is
    fresh = lease(new_worker);                                     // prepared in the background
    if (fresh.candidates_size() == 0) absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_GT(fresh.candidates_size(), 0);
  EXPECT_EQ(lease(old_worker).candidates_size(), 0);
}

}  // namespace
}  // namespace ktune

namespace ktune {
namespace {

// The newest job of a task decides what its drift flags do when its spec says (JobSpec.retune);
// other tasks, and a task whose newest job says nothing, follow the server (act here). An
// operator's go-ahead (RetuneDriftFlag) retunes a suggested flag; act queues no job that no
// connected worker could measure.
TEST(TelemetryTest, AJobSpecsRetunePolicyOverridesTheServers) {
  testing::TempDir dir;
  TuningServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir.File("p.db");
  options.retune.mode = RetuneMode::kAct;
  options.retune.max_jobs = 8;
  options.drift.hot_calls = 1000;
  auto server = TuningServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto tuning = testing::LocalStub<v1::TuningService>((*server)->port());
  v1::SubmitJobRequest submit;
  submit.set_spec_text(
      "kernels: [gemm]\nproblems: [{M: 64, N: 64, K: 64}]\ndevice_classes: [cpu:x]\n"
      "budget: 4\nretune: suggest\n");
  v1::Job job;
  ASSERT_TRUE(tuning->SubmitJob(Context().get(), submit, &job).ok());
  v1::SubmitJobRequest bad = submit;
  bad.set_spec_text(submit.spec_text() + "retune: always\n");
  grpc::Status refused = tuning->SubmitJob(Context().get(), bad, &job);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // A worker of cpu:x: a retuning job of that class can be measured.
  auto workers = testing::LocalStub<v1::WorkerService>((*server)->port());
  v1::RegisterRequest reg;
  *reg.mutable_device() = ToProto(DeviceInfo::FromName("cpu:x"));
  v1::RegisterResponse registered;
  ASSERT_TRUE(workers->Register(Context().get(), reg, &registered).ok());

  auto hot = [&](int64_t n, const std::string& device_class = "cpu:x") {
    v1::TelemetrySample s;
    s.mutable_kernel()->set_name("gemm");
    ToProto(Problem{{"M", n}, {"N", n}, {"K", n}}, s.mutable_problem()->mutable_params());
    s.mutable_device()->set_device_class(device_class);
    ToProto(Configuration{{"MR", int64_t{4}}}, s.mutable_config()->mutable_params());
    s.set_count(1000);
    s.set_mean_ms(1.0);
    v1::ReportTelemetryRequest r;
    *r.add_samples() = s;
    v1::ReportTelemetryResponse response;
    EXPECT_TRUE(tuning->ReportTelemetry(Context().get(), r, &response).ok());
    return response;
  };
  v1::ReportTelemetryResponse with_job = hot(64);
  ASSERT_EQ(with_job.raised_size(), 1);
  EXPECT_EQ(with_job.raised(0).kind(), v1::DRIFT_KIND_UNTUNED_HOT_PROBLEM);
  EXPECT_THAT(with_job.raised(0).action(), HasSubstr("suggested"));
  EXPECT_TRUE(with_job.raised(0).retune_job_id().empty());
  v1::ReportTelemetryResponse without = hot(128);
  ASSERT_EQ(without.raised_size(), 1);
  EXPECT_THAT(without.raised(0).action(), HasSubstr("retuning: job"));
  EXPECT_FALSE(without.raised(0).retune_job_id().empty());

  // The suggestion names the command that retunes as act would (a plain `ktune tune` measured
  // none of the stored configurations again); RetuneDriftFlag is that command's call.
  const v1::DriftFlag& suggested = with_job.raised(0);
  EXPECT_THAT(suggested.action(),
              HasSubstr("suggested: ktune drift retune " + std::to_string(suggested.id())));
  v1::RetuneDriftFlagRequest go;
  go.set_flag_id(suggested.id());
  v1::DriftFlag retuned;
  ASSERT_TRUE(tuning->RetuneDriftFlag(Context().get(), go, &retuned).ok());
  EXPECT_THAT(retuned.action(), HasSubstr("retuning: job"));
  ASSERT_FALSE(retuned.retune_job_id().empty());
  v1::ListDriftResponse listed;
  ASSERT_TRUE(tuning->ListDrift(Context().get(), v1::ListDriftRequest(), &listed).ok());
  EXPECT_EQ(listed.flags(suggested.id() - 1).retune_job_id(), retuned.retune_job_id());
  grpc::Status twice = tuning->RetuneDriftFlag(Context().get(), go, &retuned);
  EXPECT_EQ(twice.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(twice.error_message(), HasSubstr("is being retuned by job"));
  go.set_flag_id(99);
  EXPECT_EQ(tuning->RetuneDriftFlag(Context().get(), go, &retuned).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // A newer job of the task whose spec says nothing gives it back to the server's policy (one
  // experiment with `retune: suggest` kept it off for good).
  submit.set_spec_text(
      "kernels: [gemm]\nproblems: [{M: 32, N: 32, K: 32}]\ndevice_classes: [cpu:x]\n"
      "budget: 4\nretune: off\n");
  ASSERT_TRUE(tuning->SubmitJob(Context().get(), submit, &job).ok());
  submit.set_spec_text(
      "kernels: [gemm]\nproblems: [{M: 32, N: 32, K: 32}]\ndevice_classes: [cpu:x]\n"
      "budget: 4\n");
  ASSERT_TRUE(tuning->SubmitJob(Context().get(), submit, &job).ok());
  v1::ReportTelemetryResponse newer = hot(32);
  ASSERT_EQ(newer.raised_size(), 1);
  EXPECT_THAT(newer.raised(0).action(), HasSubstr("retuning: job"));

  // No worker of the class: no job that would wait, holding a retuning slot (one for a
  // misspelt class kept every later flag from being retuned).
  v1::ReportTelemetryResponse nobody = hot(128, "cpu:nobody");
  ASSERT_EQ(nobody.raised_size(), 1);
  EXPECT_TRUE(nobody.raised(0).retune_job_id().empty());
  EXPECT_THAT(nobody.raised(0).action(),
              HasSubstr("not retuned: no worker of device class cpu:nobody is connected; start "
                        "one, then ktune drift retune " +
                        std::to_string(nobody.raised(0).id())));
}

// A client's retry sends the same samples again: accepted, but neither stored nor counted again;
// a sample older than its configuration's newest window is stored and said to be late.
TEST(TelemetryTest, ARetriedReportIsAcceptedButNotStoredTwiceAndOldWindowsAreLate) {
  testing::TempDir dir;
  TuningServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir.File("d.db");
  auto server = TuningServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto tuning = testing::LocalStub<v1::TuningService>((*server)->port());
  auto sample = [](int64_t hour) {
    v1::TelemetrySample s;
    s.mutable_kernel()->set_name("gemm");
    ToProto(Problem{{"M", int64_t{64}}, {"N", int64_t{64}}, {"K", int64_t{64}}},
            s.mutable_problem()->mutable_params());
    s.mutable_device()->set_device_class("cpu:x");
    ToProto(Configuration{{"MR", int64_t{4}}}, s.mutable_config()->mutable_params());
    s.set_count(1000);
    s.set_mean_ms(1.0);
    const int64_t start = 1'780'000'000 + hour * 3600;  // 2026
    s.mutable_window_start()->set_seconds(start);
    s.mutable_window_end()->set_seconds(start + 3600);
    return s;
  };
  v1::ReportTelemetryRequest request;
  *request.add_samples() = sample(10);
  *request.add_samples() = sample(11);
  *request.add_samples() = sample(11);  // twice in one call
  v1::ReportTelemetryResponse response;
  ASSERT_TRUE(tuning->ReportTelemetry(Context().get(), request, &response).ok());
  EXPECT_EQ(response.accepted(), 3);
  EXPECT_EQ(response.duplicates(), 1);
  EXPECT_EQ(response.late(), 0);
  ASSERT_TRUE(tuning->ReportTelemetry(Context().get(), request, &response).ok());  // the retry
  EXPECT_EQ(response.accepted(), 3);
  EXPECT_EQ(response.duplicates(), 3);
  v1::ReportTelemetryRequest old;
  *old.add_samples() = sample(-72);  // three days before: late (a day before is not)
  ASSERT_TRUE(tuning->ReportTelemetry(Context().get(), old, &response).ok());
  EXPECT_EQ(response.duplicates(), 0);
  EXPECT_EQ(response.late(), 1);
  server->reset();
  EXPECT_EQ(StoredTelemetry(dir.File("d.db")), 3);  // hours 10, 11 and -72, once each
}

}  // namespace
}  // namespace ktune
