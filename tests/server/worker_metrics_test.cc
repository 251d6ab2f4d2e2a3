// A worker's own metrics (`ktune worker --metrics-listen`, measurer/worker_metrics.h): what the
// worker loop counts against a real server, through outages, refusals and an absent server.
#include "measurer/worker_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "db/interchange/record_files.h"
#include "grpcpp/create_channel.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "measurer/replay_measurer.h"
#include "measurer/worker_loop.h"
#include "proto/convert.h"
#include "server/tuning_server.h"
#include "tests/server/metric_value.h"
#include "tests/server/worker_doubles.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

constexpr char kSpace[] = "convolution_A100_T4.json.gz";

// The value of a series: a counter's or gauge's value, a histogram's sample count; -1 when the
// family or the series (with all of `labels`) is not there.
class WorkerMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server =
        TuningServer::Start(QuickLeaseServer(dir_.File("server.db"), testing::SpaceFile(kSpace)));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                       grpc::InsecureChannelCredentials());
    tuning_ = v1::TuningService::NewStub(channel);
    workers_ = v1::WorkerService::NewStub(channel);
    auto recorded = LoadRecordedSpace(testing::SpaceFile(kSpace));
    ASSERT_TRUE(recorded.ok()) << recorded.status();
    records_ = recorded->records;
  }

  // A job of `budget` random candidates for the space's task.
  void Submit(int64_t budget) {
    v1::Job job;
    SubmitRandomJob(tuning_.get(), records_.front(), budget, "metrics", &job);
  }

  testing::TempDir dir_;
  std::unique_ptr<TuningServer> server_;
  std::unique_ptr<v1::TuningService::Stub> tuning_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
  std::vector<Record> records_;
};

TEST_F(WorkerMetricsTest, CountWhatTheWorkerMeasuredAndTheReportsItSentAgain) {
  Submit(4);
  ReplayMeasurer measurer(records_);
  FlakyReports flaky(workers_.get(), /*outages=*/2);
  WorkerMetrics metrics;
  WorkerLoopOptions options;
  options.max_candidates = 4;
  options.idle_exit = absl::Milliseconds(300);
  options.metrics = &metrics;
  WorkerLoop loop(&flaky, &measurer, options);
  ASSERT_TRUE(loop.Run().ok());
  ASSERT_EQ(loop.reported(), 4);

  const auto m = metrics.Collect();
  double measured = 0;
  for (int i = 0; i < kMeasurementStatusCount; ++i) {
    const double n =
        MetricValue(m, "ktune_worker_measurements_total",
                    {{"status", std::string(StatusName(static_cast<MeasurementStatus>(i)))}});
    ASSERT_GE(n, 0) << "no series of status " << i;  // every status is there, 0 or more
    measured += n;
  }
  EXPECT_EQ(measured, 4);
  EXPECT_EQ(MetricValue(m, "ktune_worker_leases_total", {{"result", "batch"}}), 1);
  EXPECT_GE(MetricValue(m, "ktune_worker_leases_total", {{"result", "empty"}}), 1);  // then idle
  EXPECT_EQ(MetricValue(m, "ktune_worker_batch_duration_seconds"), 1);               // one batch
  EXPECT_EQ(MetricValue(m, "ktune_worker_report_retries_total"), 2);
  EXPECT_EQ(MetricValue(m, "ktune_worker_reports_total", {{"result", "stored"}}), 1);
  EXPECT_EQ(MetricValue(m, "ktune_worker_reports_total", {{"result", "not_stored"}}), 0);
  EXPECT_EQ(MetricValue(m, "ktune_worker_measurements_dropped_total"), 0);
  EXPECT_EQ(MetricValue(m, "ktune_worker_registrations_total"), 1);
  EXPECT_EQ(MetricValue(m, "ktune_worker_server_reachable"),
            1);  // it answered again after the outage
  EXPECT_EQ(MetricValue(m, "ktune_worker_leases_revoked_total"), 0);
  EXPECT_EQ(
      MetricValue(m, "ktune_worker_info", {{"device_class", records_.front().device.device_class}}),
      1);
}

TEST_F(WorkerMetricsTest, CountTheResultsTheServerDidNotStore) {
  Submit(4);
  ReplayMeasurer measurer(records_);
  FlakyReports full_disk(workers_.get(), /*outages=*/0);
  full_disk.refuse_reports = true;
  WorkerMetrics metrics;
  WorkerLoopOptions options;
  options.max_candidates = 4;
  options.idle_exit = absl::Seconds(5);
  options.stop_when_not_stored = true;
  options.metrics = &metrics;
  WorkerLoop loop(&full_disk, &measurer, options);
  EXPECT_FALSE(loop.Run().ok());

  const auto m = metrics.Collect();
  EXPECT_EQ(MetricValue(m, "ktune_worker_reports_total", {{"result", "not_stored"}}), 1);
  EXPECT_EQ(MetricValue(m, "ktune_worker_reports_total", {{"result", "stored"}}), 0);
  EXPECT_EQ(MetricValue(m, "ktune_worker_measurements_dropped_total"), 4);
  EXPECT_EQ(MetricValue(m, "ktune_worker_server_reachable"), 1);  // it answered: with a refusal
}

// A lease the server took back while its batch was measured (heartbeats failing past the lease
// timeout, another worker taking its candidates): counted, its results dropped, its time busy.
TEST_F(WorkerMetricsTest, CountALeaseTakenBackAndTheTimeSpentOnIt) {
  Submit(4);
  ReplayMeasurer replay(records_);
  SlowFirstCall slow(&replay, absl::Seconds(3));  // the other worker's takeover well inside it
  FlakyReports flaky(workers_.get(), /*outages=*/0, /*heartbeat_outages=*/4);
  flaky.before_heartbeats_return = [&] {
    AnotherWorkerTakesThem(workers_.get(), replay.device(), 4);
  };
  WorkerMetrics metrics;
  WorkerLoopOptions options;
  options.max_candidates = 4;
  options.idle_exit = absl::Milliseconds(300);
  options.metrics = &metrics;
  WorkerLoop loop(&flaky, &slow, options);
  ASSERT_TRUE(loop.Run().ok());

  const auto m = metrics.Collect();
  EXPECT_EQ(MetricValue(m, "ktune_worker_leases_revoked_total"), 1);
  EXPECT_EQ(MetricValue(m, "ktune_worker_measurements_dropped_total"), 4);  // the revoked batch
  EXPECT_EQ(MetricValue(m, "ktune_worker_leases_total", {{"result", "batch"}}), 1);
  EXPECT_EQ(MetricValue(m, "ktune_worker_reports_total", {{"result", "stored"}}), 0);
  EXPECT_EQ(MetricValue(m, "ktune_worker_batch_duration_seconds"), 1);
  EXPECT_GE(MetricValue(m, "ktune_worker_busy_seconds_total"), 3);
}

// The same cut-off with nobody to take the candidates: the server gives the lease back
// (Scheduler::Revive), and the batch is reported once, not measured again.
TEST_F(WorkerMetricsTest, ALeaseGivenBackIsReportedNotMeasuredAgain) {
  Submit(4);
  ReplayMeasurer replay(records_);
  SlowFirstCall slow(&replay, absl::Milliseconds(1500));
  // 900 ms of heartbeats lost: the 500 ms lease has expired on the server by the next one.
  FlakyReports flaky(workers_.get(), /*outages=*/0, /*heartbeat_outages=*/6);
  WorkerMetrics metrics;
  WorkerLoopOptions options;
  options.max_candidates = 4;
  options.idle_exit = absl::Milliseconds(300);
  options.metrics = &metrics;
  WorkerLoop loop(&flaky, &slow, options);
  ::testing::internal::CaptureStderr();
  const absl::Status ran = loop.Run();
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(ran.ok()) << ran;
  EXPECT_THAT(log, ::testing::HasSubstr("lease_expired"));
  EXPECT_THAT(log, ::testing::HasSubstr("lease_revived"));  // given back, not merely extended
  EXPECT_EQ(loop.reported(), 4);
  EXPECT_EQ(flaky.filled_leases, 1);
  const auto m = metrics.Collect();
  EXPECT_EQ(MetricValue(m, "ktune_worker_leases_revoked_total"), 0);
  EXPECT_EQ(MetricValue(m, "ktune_worker_reports_total", {{"result", "stored"}}), 1);
  EXPECT_EQ(MetricValue(m, "ktune_worker_measurements_dropped_total"), 0);
}

// A report that gets no answer past its lease's end is sent again for as long as the server would
// give the lease back: it gets through, and the batch is stored, not measured again. (It was given
// up at the lease's end: 1.1 s of outage against a 0.5 s lease.)
TEST_F(WorkerMetricsTest, AReportThatGetsThroughAfterItsLeaseLapsedIsStored) {
  Submit(4);
  ReplayMeasurer measurer(records_);
  FlakyReports flaky(workers_.get(), /*outages=*/6);
  WorkerMetrics metrics;
  WorkerLoopOptions options;
  options.max_candidates = 4;
  options.max_backoff = absl::Milliseconds(200);  // 100 + 5 x 200 ms of retries
  options.idle_exit = absl::Milliseconds(300);
  options.metrics = &metrics;
  WorkerLoop loop(&flaky, &measurer, options);
  ASSERT_TRUE(loop.Run().ok());
  EXPECT_EQ(loop.reported(), 4);
  EXPECT_EQ(flaky.filled_leases, 1);
  const auto m = metrics.Collect();
  EXPECT_EQ(MetricValue(m, "ktune_worker_report_retries_total"), 6);
  EXPECT_EQ(MetricValue(m, "ktune_worker_reports_total", {{"result", "stored"}}), 1);
  EXPECT_EQ(MetricValue(m, "ktune_worker_measurements_dropped_total"), 0);
}

// A busy database answers (ABORTED), report after report, until the worker told to stop when its
// measurements cannot be stored stops at the third lease so: the server was reachable all along,
// and the reports were refused (not_stored), not lapsed.
TEST_F(WorkerMetricsTest, ABusyServerIsReachableAndItsRefusalsAreNotStored) {
  Submit(4);
  ReplayMeasurer measurer(records_);
  FlakyReports busy(workers_.get(), /*outages=*/1'000'000);
  busy.outage_code = grpc::StatusCode::ABORTED;
  WorkerMetrics metrics;
  WorkerLoopOptions options;
  options.max_candidates = 4;
  options.idle_exit = absl::Seconds(30);
  options.stop_when_not_stored = true;
  options.metrics = &metrics;
  WorkerLoop loop(&busy, &measurer, options);
  EXPECT_TRUE(absl::IsAborted(loop.Run()));
  const auto m = metrics.Collect();
  EXPECT_EQ(MetricValue(m, "ktune_worker_server_reachable"), 1);
  EXPECT_EQ(MetricValue(m, "ktune_worker_reports_total", {{"result", "not_stored"}}), 3);
  EXPECT_EQ(MetricValue(m, "ktune_worker_reports_total", {{"result", "expired"}}), 0);
  EXPECT_GE(MetricValue(m, "ktune_worker_report_retries_total"), 3);
}

// A measurer whose first batch waits (5 s at most) until the worker's reachable gauge reads 0.
class WaitsForCutOff : public Measurer {
 public:
  WaitsForCutOff(Measurer* real, const WorkerMetrics* metrics) : real_(real), metrics_(metrics) {}
  DeviceInfo device() const override { return real_->device(); }
  absl::StatusOr<std::vector<MeasureResult>> Measure(
      const TaskKey& task, const std::vector<Configuration>& configs) override {
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (!seen_cut_off && calls_ == 0 && absl::Now() < deadline) {
      seen_cut_off = MetricValue(metrics_->Collect(), "ktune_worker_server_reachable") == 0;
      absl::SleepFor(absl::Milliseconds(10));
    }
    ++calls_;
    return real_->Measure(task, configs);
  }
  bool seen_cut_off = false;

 private:
  Measurer* real_;
  const WorkerMetrics* metrics_;
  int calls_ = 0;
};

// The gauge follows the heartbeats during a batch: a server cut off mid-batch read reachable until
// the batch ended (minutes for a GPU batch).
TEST_F(WorkerMetricsTest, TheGaugeFollowsTheHeartbeatsDuringABatch) {
  Submit(4);
  ReplayMeasurer replay(records_);
  WorkerMetrics metrics;
  WaitsForCutOff waits(&replay, &metrics);
  FlakyReports flaky(workers_.get(), /*outages=*/0, /*heartbeat_outages=*/2);
  WorkerLoopOptions options;
  options.max_candidates = 4;
  options.idle_exit = absl::Milliseconds(300);
  options.metrics = &metrics;
  WorkerLoop loop(&flaky, &waits, options);
  ASSERT_TRUE(loop.Run().ok());
  EXPECT_TRUE(waits.seen_cut_off);
  EXPECT_EQ(loop.reported(), 4);
  EXPECT_EQ(MetricValue(metrics.Collect(), "ktune_worker_server_reachable"), 1);  // answered since
}

// A server reached, then lost: every report meets UNAVAILABLE until the worker, told to stop
// when its measurements cannot be stored, stops at the third lease so.
TEST_F(WorkerMetricsTest, SayTheServerCannotBeReachedAnyMore) {
  Submit(4);
  ReplayMeasurer measurer(records_);
  FlakyReports gone(workers_.get(), /*outages=*/1'000'000);
  WorkerMetrics metrics;
  WorkerLoopOptions options;
  options.max_candidates = 4;
  options.idle_exit = absl::Seconds(30);
  options.stop_when_not_stored = true;
  options.metrics = &metrics;
  WorkerLoop loop(&gone, &measurer, options);
  EXPECT_TRUE(absl::IsUnavailable(loop.Run()));

  const auto m = metrics.Collect();
  // Set by the last report, after the leases (which the server answered).
  EXPECT_EQ(MetricValue(m, "ktune_worker_server_reachable"), 0);
  EXPECT_EQ(MetricValue(m, "ktune_worker_registrations_total"), 1);
  EXPECT_EQ(MetricValue(m, "ktune_worker_leases_total", {{"result", "batch"}}), 3);
  // Lapsed while no answer came: the server takes the leases back (not a refusal).
  EXPECT_EQ(MetricValue(m, "ktune_worker_reports_total", {{"result", "expired"}}), 3);
  EXPECT_EQ(MetricValue(m, "ktune_worker_reports_total", {{"result", "not_stored"}}), 0);
  EXPECT_GE(MetricValue(m, "ktune_worker_report_retries_total"), 3);
  // (4 candidates a lease, or 1: candidates whose lease expired twice are leased alone.)
  EXPECT_GE(MetricValue(m, "ktune_worker_measurements_dropped_total"), 3);
  EXPECT_EQ(MetricValue(m, "ktune_worker_batch_duration_seconds"), 3);
}

}  // namespace
}  // namespace ktune
