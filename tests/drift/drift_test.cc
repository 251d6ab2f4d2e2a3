// Drift detection: the slowdown test's false alarms and delay on simulated streams, and the
// monitor's three flags.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "drift/drift_monitor.h"
#include "drift/slowdown_detector.h"

namespace ktune {
namespace {

// Report means of `calls` calls with 3% call-to-call noise (lognormal) around `ms`.
double ReportMean(std::mt19937& rng, double ms, int calls = 100) {
  std::normal_distribution<double> noise(0, 0.03);
  double sum = 0;
  for (int i = 0; i < calls; ++i) sum += ms * std::exp(noise(rng));
  return sum / calls;
}

TEST(SlowdownDetectorTest, StableStreamsRaiseNoAlarmOverTenThousandReports) {
  for (int seed = 1; seed <= 5; ++seed) {
    std::mt19937 rng(seed);
    SlowdownDetector d;
    for (int i = 0; i < 10'000; ++i) {
      ASSERT_FALSE(d.Observe(ReportMean(rng, 2.0))) << "seed " << seed << ", report " << i;
    }
    EXPECT_FALSE(d.alarmed());
    EXPECT_NEAR(d.reference_ms(), 2.0, 0.01);
  }
}

TEST(SlowdownDetectorTest, ASlowdownIsFlaggedWithinAFewReportsAndOnlyOnce) {
  for (double factor : {1.1, 1.2, 2.0}) {
    std::mt19937 rng(7);
    SlowdownDetector d;
    for (int i = 0; i < 200; ++i) ASSERT_FALSE(d.Observe(ReportMean(rng, 2.0)));
    int delay = 0, alarms = 0;
    for (int i = 1; i <= 100; ++i) {
      if (d.Observe(ReportMean(rng, 2.0 * factor))) {
        ++alarms;
        if (delay == 0) delay = i;
      }
    }
    EXPECT_EQ(alarms, 1) << factor;
    EXPECT_GE(delay, 1) << factor;
    EXPECT_LE(delay, 50) << factor;
    EXPECT_NEAR(d.recent_ms() / d.reference_ms(), factor, 0.02) << factor;
  }
}

// The test is of "more than 5% slower": a smaller slowdown is not worth a retuning job, and a
// stream whose reference reports were quieter than its later ones (a service started at night)
// is not slower for it (both were flagged, as 1.02x regressions: a telemetry trial).
TEST(SlowdownDetectorTest, NoFlagForAtMostFivePercentOrForNoiseThatGrowsWithTheSameMean) {
  for (int seed = 1; seed <= 5; ++seed) {
    std::mt19937 rng(seed);
    SlowdownDetector slightly_slower;
    for (int i = 0; i < 100; ++i) slightly_slower.Observe(ReportMean(rng, 2.0));
    for (int i = 0; i < 10'000; ++i) {
      ASSERT_FALSE(slightly_slower.Observe(ReportMean(rng, 2.0 * 1.03))) << seed << ", " << i;
    }
    // 30 reference reports with 0.3% report-to-report noise, then 3%: the same mean.
    SlowdownDetector noisier;
    std::normal_distribution<double> quiet(0, 0.003), loud(0, 0.03);
    for (int i = 0; i < 30; ++i) noisier.Observe(2.0 * std::exp(quiet(rng)));
    for (int i = 0; i < 10'000; ++i) {
      ASSERT_FALSE(noisier.Observe(2.0 * std::exp(loud(rng)))) << seed << ", " << i;
    }
  }
}

TEST(SlowdownDetectorTest, OneWildReportIsNotASlowdown) {
  std::mt19937 rng(3);
  SlowdownDetector d;
  for (int i = 0; i < 100; ++i) d.Observe(ReportMean(rng, 1.0));
  EXPECT_FALSE(d.Observe(1000.0));
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(d.Observe(ReportMean(rng, 1.0)));
  // A faster stream is not a regression either.
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(d.Observe(ReportMean(rng, 0.5)));
}

class FakeKnowledge : public TuningKnowledge {
 public:
  std::optional<double> lab;
  Configuration lab_config = {{"NR", int64_t{16}}};  // Report's
  std::string tuned_fingerprint;
  std::optional<Best> LabBest(const TaskKey&) override {
    return lab ? std::optional<Best>(Best{*lab, lab_config}) : std::nullopt;
  }
  bool FingerprintTuned(const TaskKey&, const std::string& hash) override {
    return hash == tuned_fingerprint;
  }
};

TelemetryReport Report(double mean_ms, const std::string& fingerprint_json, int64_t count = 100) {
  TelemetryReport r;
  r.kernel = "gemm";
  r.problem = {{"M", int64_t{64}}};
  r.device = {fingerprint_json, "cpu:x", "x86-64-v3"};
  r.config = {{"NR", int64_t{16}}};
  r.count = count;
  r.mean_ms = mean_ms;
  return r;
}

// Reports of `mean_ms` (driver 1) until the monitor raises flags, at most 100; the flags, and
// each report sent into `sent` when given.
std::vector<DriftFlag> ObserveUntilFlagged(DriftMonitor& monitor, double mean_ms, std::mt19937& rng,
                                           TuningKnowledge& k,
                                           std::vector<TelemetryReport>* sent = nullptr) {
  std::vector<DriftFlag> flags;
  for (int i = 0; i < 100 && flags.empty(); ++i) {
    const TelemetryReport report = Report(ReportMean(rng, mean_ms), R"({"driver":"1"})");
    if (sent != nullptr) sent->push_back(report);
    flags = monitor.Observe(report, k);
  }
  return flags;
}

// A task tuned at 1 ms (Report's configuration) on the device of driver 1.
FakeKnowledge TunedOnDriver1() {
  FakeKnowledge k;
  k.lab = 1.0;
  k.tuned_fingerprint = DeviceInfo({R"({"driver":"1"})", "", ""}).FingerprintHash();
  return k;
}

// 300 reports of 1.1 ms from driver 1: none raises a flag.
void SendStableReports(DriftMonitor& monitor, std::mt19937& rng, FakeKnowledge& k) {
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(monitor.Observe(Report(ReportMean(rng, 1.1), R"({"driver":"1"})"), k).empty());
  }
}

TEST(DriftMonitorTest, FlagsARegressionOfTheServedConfigurationOnce) {
  FakeKnowledge k = TunedOnDriver1();
  DriftMonitor monitor;
  std::mt19937 rng(11);
  SendStableReports(monitor, rng, k);
  std::vector<DriftFlag> flags = ObserveUntilFlagged(monitor, 1.5, rng, k);
  ASSERT_EQ(flags.size(), 1u);
  EXPECT_EQ(flags[0].kind, DriftKind::kRegression);
  EXPECT_NEAR(flags[0].reference_ms, 1.1, 0.02);
  EXPECT_NEAR(flags[0].recent_ms, 1.5, 0.03);
  EXPECT_EQ(flags[0].lab_ms, 1.0);
  EXPECT_THAT(flags[0].message, ::testing::HasSubstr("NR=16 slowed down"));
  EXPECT_THAT(flags[0].message, ::testing::HasSubstr("; tuned at 1 ms"));
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(monitor.Observe(Report(ReportMean(rng, 1.5), R"({"driver":"1"})"), k).empty());
  }
  // After a retune the stream is judged against a new normal.
  monitor.Restart({"gemm", "", {{"M", int64_t{64}}}, "cpu:x"});
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(monitor.Observe(Report(ReportMean(rng, 1.5), R"({"driver":"1"})"), k).empty());
  }
  EXPECT_EQ(monitor.Flags().size(), 1u);
}

// Production runs another configuration than the tuned best: the flag says so, and gives the
// best's lab time as that configuration's, not as the flagged one's (it read "tuned at 1 ms"
// beside a configuration the lab never measured).
TEST(DriftMonitorTest, ARegressionOfAnotherConfigurationThanTheTunedBestSaysSo) {
  FakeKnowledge k = TunedOnDriver1();
  k.lab_config = {{"NR", int64_t{32}}};
  DriftMonitor monitor;
  std::mt19937 rng(11);
  SendStableReports(monitor, rng, k);
  std::vector<DriftFlag> flags = ObserveUntilFlagged(monitor, 1.5, rng, k);
  ASSERT_EQ(flags.size(), 1u);
  EXPECT_EQ(flags[0].lab_ms, 1.0);  // the task's best tuned time, as DriftFlag.lab_ms says
  EXPECT_THAT(flags[0].message, ::testing::Not(::testing::HasSubstr("tuned at")));
  EXPECT_THAT(flags[0].message,
              ::testing::HasSubstr("; not the tuned best, NR=32 at 1 ms in the lab: production "
                                   "runs another configuration than the one served"));
}

TEST(DriftMonitorTest, FlagsANewDeviceFingerprintOfATunedTaskOnce) {
  FakeKnowledge k;
  k.lab = 1.0;
  k.tuned_fingerprint = DeviceInfo({R"({"driver":"1"})", "", ""}).FingerprintHash();
  DriftMonitor monitor;
  EXPECT_TRUE(monitor.Observe(Report(1.0, R"({"driver":"1"})"), k).empty());
  std::vector<DriftFlag> flags = monitor.Observe(Report(1.0, R"({"driver":"2"})"), k);
  ASSERT_EQ(flags.size(), 1u);
  EXPECT_EQ(flags[0].kind, DriftKind::kNewEnvironment);
  const DeviceInfo updated{R"({"driver":"2"})", "", ""};
  EXPECT_EQ(flags[0].fingerprint_hash, updated.FingerprintHash());
  EXPECT_TRUE(monitor.Observe(Report(1.0, R"({"driver":"2"})"), k).empty());
  // A report that names only its class has no fingerprint to judge.
  EXPECT_TRUE(monitor.Observe(Report(1.0, DeviceInfo::FromName("cpu:x").fingerprint_json), k).empty());
}

// A reporter sending a new fingerprint with every sample raised a flag each, with the whole
// fingerprint (up to 16 KiB) in its one-line message: 1,000 flags in one call, and a list no client
// could read. A task gets at most 16 such flags, each message short.
TEST(DriftMonitorTest, NewEnvironmentFlagsOfATaskAreBoundedAndShort) {
  FakeKnowledge k;
  k.lab = 1.0;
  k.tuned_fingerprint = DeviceInfo({R"({"driver":"1"})", "", ""}).FingerprintHash();
  DriftMonitor monitor;
  const std::string padding(10'000, 'x');
  int raised = 0;
  for (int i = 0; i < 100; ++i) {
    for (const DriftFlag& f : monitor.Observe(
             Report(1.0, absl::StrCat(R"({"driver":")", i + 2, R"(","pad":")", padding, R"("})")),
             k)) {
      EXPECT_EQ(f.kind, DriftKind::kNewEnvironment);
      EXPECT_LT(f.message.size(), 400u);
      EXPECT_THAT(f.message, ::testing::HasSubstr("...), which no record"));
      ++raised;
    }
  }
  EXPECT_EQ(raised, 16);
  EXPECT_THAT(monitor.Flags().back().message, ::testing::HasSubstr("last new-environment flag"));
}

TEST(DriftMonitorTest, FlagsAnUntunedProblemOnceItIsHot) {
  FakeKnowledge k;  // never tuned
  DriftMonitorOptions options;
  options.hot_calls = 1000;
  DriftMonitor monitor(options);
  for (int i = 0; i < 9; ++i) EXPECT_TRUE(monitor.Observe(Report(1.0, "{}", 100), k).empty());
  std::vector<DriftFlag> flags = monitor.Observe(Report(1.0, "{}", 100), k);
  ASSERT_EQ(flags.size(), 1u);
  EXPECT_EQ(flags[0].kind, DriftKind::kUntunedHotProblem);
  EXPECT_EQ(flags[0].calls, 1000);
  EXPECT_TRUE(monitor.Observe(Report(1.0, "{}", 100), k).empty());
  EXPECT_EQ(monitor.CountsByKind()[static_cast<int>(DriftKind::kUntunedHotProblem)], 1);
}

// A report sent again with its window (a client's retry after a lost reply) is not counted again:
// one window of 60,000 calls sent twice made a hot problem, and three slow windows sent three
// times a regression. Reports without a window of their own may be alike and are all counted.
TEST(DriftMonitorTest, ARetriedReportIsNotCountedAgain) {
  FakeKnowledge k;  // never tuned
  DriftMonitorOptions options;
  options.hot_calls = 100'000;
  DriftMonitor monitor(options);
  TelemetryReport r = Report(1.0, "{}", 60'000);
  r.window_start_us = 1'000'000;
  r.window_end_us = 2'000'000;
  r.received_at_us = 9'000'000;
  EXPECT_EQ(DriftMonitor::DuplicateKey(r).empty(), false);
  EXPECT_FALSE(monitor.IsDuplicate(r));
  ReportUse use;
  EXPECT_TRUE(monitor.Observe(r, k, &use).empty());
  EXPECT_EQ(use, ReportUse::kJudged);
  EXPECT_TRUE(monitor.IsDuplicate(r));
  EXPECT_TRUE(monitor.Observe(r, k, &use).empty());  // 120,000 calls if counted
  EXPECT_EQ(use, ReportUse::kDuplicate);
  r.window_start_us = 2'000'000;  // the next window: counted
  r.window_end_us = 3'000'000;
  std::vector<DriftFlag> flags = monitor.Observe(r, k, &use);
  EXPECT_EQ(use, ReportUse::kJudged);
  ASSERT_EQ(flags.size(), 1u);
  EXPECT_EQ(flags[0].calls, 120'000);
  // Without its own window (the server filled in the receipt time), alike is not a retry.
  TelemetryReport plain = Report(1.0, "{}", 10);
  plain.window_start_us = plain.window_end_us = plain.received_at_us = 5'000'000;
  EXPECT_EQ(DriftMonitor::DuplicateKey(plain), "");
  monitor.Observe(plain, k, &use);
  monitor.Observe(plain, k, &use);
  EXPECT_EQ(use, ReportUse::kJudged);
}

// A slowdown is judged in window order: slow windows of two weeks before the stable ones, sent
// late, are stored and counted but are not "recent reports" (they raised a regression).
TEST(DriftMonitorTest, WindowsOlderThanTheNewestJudgedOneAreLate) {
  std::mt19937 rng(4);
  FakeKnowledge k = TunedOnDriver1();
  DriftMonitor monitor;
  const int64_t day = 86'400'000'000, five_minutes = 300'000'000;
  int64_t t = 30 * day;
  auto at = [&](double mean_ms, int64_t start) {
    TelemetryReport r = Report(ReportMean(rng, mean_ms), R"({"driver":"1"})");
    r.window_start_us = start;
    r.window_end_us = start + five_minutes;
    r.received_at_us = 40 * day;
    return r;
  };
  for (int i = 0; i < 300; ++i, t += five_minutes) {
    ASSERT_TRUE(monitor.Observe(at(1.1, t), k).empty());
  }
  ReportUse use;
  for (int i = 0; i < 100; ++i) {  // two weeks before, twice as slow
    ASSERT_TRUE(monitor.Observe(at(2.2, 16 * day + i * five_minutes), k, &use).empty()) << i;
    ASSERT_EQ(use, ReportUse::kLate) << i;
  }
  // A day before the newest is not late (reporters a day apart, a clock a day off): judged.
  ASSERT_TRUE(monitor.Observe(at(1.1, t - 86'400'000'000), k, &use).empty());
  EXPECT_EQ(use, ReportUse::kJudged);
  std::vector<DriftFlag> flags;
  for (int i = 0; i < 50 && flags.empty(); ++i, t += five_minutes) {
    flags = monitor.Observe(at(2.2, t), k, &use);  // now, twice as slow: flagged
    EXPECT_EQ(use, ReportUse::kJudged);
  }
  ASSERT_EQ(flags.size(), 1u);
  EXPECT_EQ(flags[0].kind, DriftKind::kRegression);
}

// Any problem on any device class can be hot: a reporter naming a new class in each sample raised
// a flag each, without bound (the list, and ListDrift's answer, grew past what a client reads).
TEST(DriftMonitorTest, UntunedHotFlagsAreBoundedInAll) {
  FakeKnowledge k;  // never tuned
  DriftMonitorOptions options;
  options.hot_calls = 1;
  DriftMonitor monitor(options);
  int raised = 0;
  for (int i = 0; i < 1100; ++i) {
    TelemetryReport r = Report(1.0, "{}", 1);
    r.device.device_class = absl::StrCat("cpu:made-up-", i);
    raised += static_cast<int>(monitor.Observe(r, k).size());
  }
  EXPECT_EQ(raised, 1024);
  EXPECT_THAT(monitor.Flags().back().message, ::testing::HasSubstr("last untuned-hot flag"));

  // A restart replays the stored telemetry; the tasks of the first 50 classes were tuned since
  // (their reports raise nothing), and the hot tasks past the cap are still hot. No more than
  // the cap is listed (it listed 50 more, as flags "saved too late", after every restart).
  DriftMonitor restarted(options);
  restarted.BeginRecovery(monitor.Flags());
  for (int i = 50; i < 1100; ++i) {
    TelemetryReport r = Report(1.0, "{}", 1);
    r.device.device_class = absl::StrCat("cpu:made-up-", i);
    EXPECT_TRUE(restarted.Observe(r, k).empty()) << i;
  }
  restarted.EndRecovery();
  EXPECT_EQ(restarted.Flags().size(), 1024u);
}

TEST(DriftMonitorTest, StoredFlagsRoundTripThroughJson) {
  DriftFlag f;
  f.id = 3;
  f.kind = DriftKind::kNewEnvironment;
  f.task = {"gemm", "v2", {{"M", int64_t{64}}}, "cpu:x"};
  f.fingerprint_hash = "00ff";
  f.config = {{"NR", int64_t{16}}, {"alpha", 0.5}, {"layout", std::string("nt")}};
  f.raised_at_us = 1700000000000000;
  f.reports = 7;
  f.calls = 9000;
  f.reference_ms = 1.25;
  f.recent_ms = 2.5;
  f.lab_ms = 1.0;
  f.message = "runs on device 00ff";
  f.action = "retuning: job 4";
  f.retune_job = 4;
  DriftFlag g;  // no lab time
  g.id = 4;
  absl::StatusOr<std::vector<DriftFlag>> back = DriftFlagsFromJson(DriftFlagsToJson({f, g}));
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 2u);
  const DriftFlag& b = (*back)[0];
  EXPECT_EQ(b.id, 3);
  EXPECT_EQ(b.kind, DriftKind::kNewEnvironment);
  EXPECT_EQ(b.task.kernel, "gemm");
  EXPECT_EQ(b.task.kernel_version, "v2");
  EXPECT_EQ(b.task.problem, f.task.problem);
  EXPECT_EQ(b.task.device_class, "cpu:x");
  EXPECT_EQ(b.fingerprint_hash, "00ff");
  EXPECT_EQ(b.config, f.config);
  EXPECT_EQ(b.raised_at_us, f.raised_at_us);
  EXPECT_EQ(b.reports, 7);
  EXPECT_EQ(b.calls, 9000);
  EXPECT_EQ(b.reference_ms, 1.25);
  EXPECT_EQ(b.recent_ms, 2.5);
  EXPECT_EQ(b.lab_ms, 1.0);
  EXPECT_EQ(b.message, f.message);
  EXPECT_EQ(b.action, "retuning: job 4");
  EXPECT_EQ(b.retune_job, 4);
  EXPECT_FALSE((*back)[1].lab_ms.has_value());
  EXPECT_FALSE(DriftFlagsFromJson("{}").ok());
  EXPECT_FALSE(DriftFlagsFromJson("[]").ok());
  EXPECT_FALSE(DriftFlagsFromJson(R"({"version":2,"flags":[]})").ok());
  EXPECT_FALSE(DriftFlagsFromJson(R"({"version":1,"flags":[{"id":1,"kind":"nonsense"}]})").ok());
}

// A server restart lists the flags stored before it with their actions, and the detectors are
// where they were: a regression that was retuned can be flagged again.
TEST(DriftMonitorTest, RecoveryKeepsStoredFlagsAndTheirRestarts) {
  FakeKnowledge k;
  k.lab = 1.0;
  k.tuned_fingerprint = DeviceInfo({R"({"driver":"1"})", "", ""}).FingerprintHash();
  // Before the restart: stable reports, a slowdown (flagged, retuned: the streams restart).
  std::mt19937 rng(11);
  std::vector<TelemetryReport> stored_reports;
  DriftMonitor before;
  std::vector<DriftFlag> flags;
  for (int i = 0; i < 300; ++i) {
    stored_reports.push_back(Report(ReportMean(rng, 1.1), R"({"driver":"1"})"));
    before.Observe(stored_reports.back(), k);
  }
  flags = ObserveUntilFlagged(before, 1.5, rng, k, &stored_reports);
  ASSERT_EQ(flags.size(), 1u);
  before.SetAction(flags[0].id, "retuning: job 7", 7);
  before.Restart(flags[0].task);
  // A hot problem flagged while untuned (tuned by the time of the restart).
  DriftFlag hot;
  hot.kind = DriftKind::kUntunedHotProblem;
  hot.task = {"gemm", "", {{"M", int64_t{128}}}, "cpu:x"};
  hot.action = "suggested: ktune submit ...";
  std::vector<DriftFlag> stored = before.Flags();
  stored.push_back(hot);

  DriftMonitor after;
  after.BeginRecovery(stored);
  for (const TelemetryReport& r : stored_reports) EXPECT_TRUE(after.Observe(r, k).empty());
  after.EndRecovery();
  std::vector<DriftFlag> listed = after.Flags();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].id, 1);
  EXPECT_EQ(listed[0].action, "retuning: job 7");
  EXPECT_EQ(listed[0].retune_job, 7);
  EXPECT_EQ(listed[1].id, 2);
  EXPECT_EQ(listed[1].kind, DriftKind::kUntunedHotProblem);
  EXPECT_EQ(listed[1].action, hot.action);
  // The retuned stream was judged anew from the flag on: at its new level it is normal, and a
  // further slowdown is flagged again, after the stored flags.
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(after.Observe(Report(ReportMean(rng, 1.5), R"({"driver":"1"})"), k).empty());
  }
  const std::vector<DriftFlag> again = ObserveUntilFlagged(after, 3.0, rng, k);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id, 3);
  EXPECT_EQ(again[0].kind, DriftKind::kRegression);

  // A flag the replay raises that was never stored (saved too late) is listed after them.
  DriftMonitor unsaved;
  unsaved.BeginRecovery({hot});
  std::vector<DriftFlag> raised;
  for (const TelemetryReport& r : stored_reports) {
    for (DriftFlag& f : unsaved.Observe(r, k)) raised.push_back(f);
  }
  unsaved.EndRecovery();
  ASSERT_EQ(raised.size(), 1u);
  EXPECT_EQ(raised[0].id, 2);
  EXPECT_EQ(raised[0].action, "none");
  EXPECT_EQ(unsaved.Flags().size(), 2u);
}

}  // namespace
}  // namespace ktune
