// Precision under an accuracy budget, through the Scheduler as a worker drives it (lease, measure
// with a fake that reports times and errors, report), on an in-memory database: a job's budget
// turns too-inaccurate results into stored too_inaccurate records that are never served, however
// fast; the budget survives a restart; QueryBest and Explain honour a query's budget; a report
// with a bad error is refused whole.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <set>
#include <string>

#include "agent/search_strategy.h"
#include "db/memory_tuning_database.h"
#include "db/pareto_front.h"
#include "kernels/kernel_registry.h"
#include "proto/convert.h"
#include "server/explanation.h"
#include "server/scheduler.h"
#include "server/task_spaces.h"
#include "tests/server/one_task_scheduler.h"

namespace ktune {
namespace {

using ::testing::HasSubstr;

constexpr double kSloppyError = 0.05;  // the fast configurations' error
constexpr double kExactError = 1e-6;   // everyone else's

class AccuracyBudgetTest : public OneTaskScheduler {
 protected:
  // A record of `kernel` (problem n=64, kDevice) of configuration tile=`tile`, measured once in
  // `time_ms` with the error `error`.
  static Record TileRecord(const std::string& kernel, int64_t tile, double time_ms, double error) {
    Record r;
    r.kernel = kernel;
    r.problem = {{"n", int64_t{64}}};
    r.device = kDevice;
    r.config = {{"tile", tile}};
    r.time_ms = time_ms;
    r.repeat_times_ms = {time_ms};
    FillRepeatStatistics(r);
    r.max_rel_error = error;
    return r;
  }
  // A query for the task of TileRecord(kernel, ...).
  static BestQuery TileQuery(const std::string& kernel) {
    BestQuery q;
    q.kernel = kernel;
    q.problem = {{"n", int64_t{64}}};
    q.device_class = kDevice.device_class;
    return q;
  }

  int64_t Submit(int64_t budget, std::optional<double> max_rel_error) {
    JobRequest r;
    r.name = "budget";
    r.tasks = {Task()};
    r.budget = budget;
    r.strategy = "random";
    r.batch_size = 8;
    r.max_rel_error = max_rel_error;
    r.spec_json = R"({"name":"budget"})";
    absl::StatusOr<int64_t> id = scheduler_->Submit(r);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.value_or(0);
  }

  // The fake measurement: a time from the configuration's hash, 1..11 ms; configurations faster
  // than 4 ms are "low precision": fast, with kSloppyError.
  static double TimeOf(const Configuration& c) {
    return 1.0 + std::hash<std::string>()(CanonicalJson(c)) % 1000 / 100.0;
  }
  static double ErrorOf(const Configuration& c) {
    return TimeOf(c) < 4.0 ? kSloppyError : kExactError;
  }

  // Leases and reports until the scheduler has nothing more to lease; the configurations seen.
  std::vector<Configuration> RunToEnd() {
    std::vector<Configuration> seen;
    for (int round = 0; round < 100; ++round) {
      absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 256);
      EXPECT_TRUE(grant.ok()) << grant.status();
      if (!grant.ok() || grant->lease_id.empty()) break;
      std::vector<v1::CandidateResult> results;
      for (const v1::Candidate& c : grant->candidates) {
        Configuration config = *FromProto(c.config().params(), "config");
        v1::CandidateResult r;
        r.set_candidate_id(c.candidate_id());
        r.set_status(v1::MEASUREMENT_STATUS_OK);
        r.add_repeat_times_ms(TimeOf(config));
        r.set_max_rel_error(ErrorOf(config));
        results.push_back(r);
        seen.push_back(std::move(config));
      }
      EXPECT_TRUE(scheduler_->Report(worker_, grant->lease_id, results).ok());
    }
    return seen;
  }

  BestQuery Query(std::optional<double> max_rel_error = std::nullopt) const {
    BestQuery q;
    q.kernel = "gemm";
    q.problem = Task().problem;
    q.device_class = kDevice.device_class;
    q.max_rel_error = max_rel_error;
    return q;
  }
};

TEST_F(AccuracyBudgetTest, AFastButInaccurateCandidateIsStoredTooInaccurateAndNeverServed) {
  const int64_t id = Submit(48, 1e-3);
  const std::vector<Configuration> seen = RunToEnd();
  double fastest_sloppy = std::numeric_limits<double>::infinity();
  for (const Configuration& c : seen) {
    if (ErrorOf(c) > 1e-3) fastest_sloppy = std::min(fastest_sloppy, TimeOf(c));
  }
  ASSERT_TRUE(std::isfinite(fastest_sloppy)) << "the search met no sloppy configuration";

  absl::StatusOr<std::vector<Record>> records = db_.TaskRecords(Task());
  ASSERT_TRUE(records.ok());
  int too_inaccurate = 0;
  for (const Record& r : *records) {
    if (r.status != MeasurementStatus::kTooInaccurate) continue;
    ++too_inaccurate;
    EXPECT_FALSE(r.time_ms.has_value()) << "a too_inaccurate record has no objective";
    EXPECT_FALSE(r.repeat_times_ms.empty()) << "its times are kept";
    ASSERT_TRUE(r.max_rel_error.has_value());
    EXPECT_EQ(*r.max_rel_error, kSloppyError);
    EXPECT_THAT(r.message, HasSubstr("above the budget"));
  }
  EXPECT_GT(too_inaccurate, 0);

  absl::StatusOr<BestResult> best = db_.QueryBest(Query());
  ASSERT_TRUE(best.ok());
  ASSERT_EQ(best->records.size(), 1u);
  const Record& served = best->records.front();
  EXPECT_LE(*served.max_rel_error, 1e-3);
  EXPECT_GT(*served.time_ms, fastest_sloppy) << "the faster sloppy configuration must lose";

  // The job's own view of its best agrees.
  absl::StatusOr<JobStatus> job = scheduler_->GetJob(id);
  ASSERT_TRUE(job.ok());
  ASSERT_TRUE(job->tasks.front().best_ms.has_value());
  EXPECT_EQ(*job->tasks.front().best_ms, *served.time_ms);

  // The front has both kinds, and the budget's answer is the served one.
  const std::vector<TradeOff> trade_offs = TimeErrorTradeOffs(*records);
  ASSERT_TRUE(FastestWithin(trade_offs, 1e-3).has_value());
  EXPECT_EQ(FastestWithin(trade_offs, 1e-3)->time_ms, *served.time_ms);
  EXPECT_EQ(trade_offs.front().max_rel_error, kSloppyError);
}

TEST_F(AccuracyBudgetTest, WithoutABudgetTheSloppyOneWinsAndAQueryBudgetStillExcludesIt) {
  Submit(48, std::nullopt);
  RunToEnd();
  absl::StatusOr<BestResult> any = db_.QueryBest(Query());
  ASSERT_TRUE(any.ok());
  ASSERT_FALSE(any->records.empty());
  EXPECT_EQ(*any->records.front().max_rel_error, kSloppyError)
      << "with no budget the fastest (sloppy) configuration is the answer";
  absl::StatusOr<BestResult> within = db_.QueryBest(Query(1e-3));
  ASSERT_TRUE(within.ok());
  ASSERT_FALSE(within->records.empty());
  EXPECT_EQ(*within->records.front().max_rel_error, kExactError);
  EXPECT_GT(*within->records.front().time_ms, *any->records.front().time_ms);
  absl::StatusOr<BestResult> impossible = db_.QueryBest(Query(1e-9));
  ASSERT_TRUE(impossible.ok());
  EXPECT_TRUE(impossible->records.empty()) << "nothing is within 1e-9: nothing is served";

  // Explain within the budget says what it costs.
  absl::StatusOr<v1::ExplainResponse> e = Explain(db_, registry_, Query(1e-3));
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_TRUE(e->has_precision());
  EXPECT_EQ(e->precision().budget(), 1e-3);
  EXPECT_EQ(e->precision().served_error(), kExactError);
  ASSERT_TRUE(e->precision().has_fastest_outside_budget());
  EXPECT_EQ(e->precision().fastest_outside_budget().max_rel_error(), kSloppyError);
  EXPECT_LE(e->runner_up().max_rel_error(), 1e-3) << "the runner-up is within the budget too";
  EXPECT_THAT(ExplanationText(*e, Query(1e-3)), HasSubstr("the budget costs"));
}

TEST_F(AccuracyBudgetTest, AResultWithoutAMeasuredErrorFailsABudgetAndTheBudgetSurvivesARestart) {
  Submit(16, 1e-3);
  Restart();  // the budget comes back from the stored spec
  absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 256);
  ASSERT_TRUE(grant.ok() && !grant->lease_id.empty());
  std::vector<v1::CandidateResult> results;
  for (const v1::Candidate& c : grant->candidates) {
    v1::CandidateResult r;
    r.set_candidate_id(c.candidate_id());
    r.set_status(v1::MEASUREMENT_STATUS_OK);
    r.add_repeat_times_ms(1.0);  // no max_rel_error: the worker does not check outputs
    results.push_back(r);
  }
  ASSERT_TRUE(scheduler_->Report(worker_, grant->lease_id, results).ok());
  absl::StatusOr<std::vector<Record>> records = db_.TaskRecords(Task());
  ASSERT_TRUE(records.ok());
  ASSERT_FALSE(records->empty());
  for (const Record& r : *records) {
    EXPECT_EQ(r.status, MeasurementStatus::kTooInaccurate);
    EXPECT_THAT(r.message, HasSubstr("no error was measured"));
  }
}

// Errors that only reflect rounding in another order (all below 1e-4) are no precision choice:
// explain says nothing about precision unless asked with a budget.
TEST_F(AccuracyBudgetTest, ExplainSaysNothingOfPrecisionWhenNoneWasTraded) {
  std::vector<Record> records;
  for (int64_t tile : {8, 16, 32}) {
    records.push_back(TileRecord("fp32_only", tile, 1.0 + tile / 8.0, 1e-7 * tile));
  }
  ASSERT_TRUE(db_.AddRecords(records).ok());
  BestQuery q = TileQuery("fp32_only");
  absl::StatusOr<v1::ExplainResponse> plain = Explain(db_, registry_, q);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->has_precision());
  EXPECT_THAT(ExplanationText(*plain, q), ::testing::Not(HasSubstr("precision:")));
  q.max_rel_error = 1e-5;
  absl::StatusOr<v1::ExplainResponse> budgeted = Explain(db_, registry_, q);
  ASSERT_TRUE(budgeted.ok());
  ASSERT_TRUE(budgeted->has_precision());
  EXPECT_EQ(budgeted->precision().front_size(), 1);
  EXPECT_THAT(ExplanationText(*budgeted, q), HasSubstr("it is also the most accurate"));
}

// What precision buys is measured against the fastest configuration of full precision: errors up
// to 1e-4 tie (two fp32 configurations differ by rounding order). Against the slowest fp32
// configuration, which has the least error by 1 ulp, an int8 one was credited with 4x.
TEST_F(AccuracyBudgetTest, PrecisionIsComparedWithTheFastestFullPrecisionConfiguration) {
  // tile 8 has the least error, by an ulp, and is the slowest; tile 32 is int8-like
  ASSERT_TRUE(db_.AddRecords({TileRecord("mixed", 8, 4.0, 1e-7), TileRecord("mixed", 16, 1.0, 2e-7),
                              TileRecord("mixed", 32, 0.9, 1e-2)})
                  .ok());
  const BestQuery q = TileQuery("mixed");
  absl::StatusOr<v1::ExplainResponse> e = Explain(db_, registry_, q);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_TRUE(e->has_precision());
  EXPECT_EQ(e->precision().most_accurate().time_ms(), 1.0);
  EXPECT_NEAR(e->precision().speedup_over_most_accurate(), 1.0 / 0.9, 1e-9);
  EXPECT_THAT(ExplanationText(*e, q), HasSubstr("served max relative error 0.01"));
}

// The random strategy, keeping the earlier results the search gives it.
class PriorRecordingStrategy : public SearchStrategy {
 public:
  explicit PriorRecordingStrategy(std::vector<Observation>* prior)
      : prior_(prior), inner_(*MakeStrategy("random")) {}
  absl::Status Initialize(const SearchSpace& space, uint64_t seed) override {
    return inner_->Initialize(space, seed);
  }
  absl::Status AddPriorResults(const std::vector<Observation>& r) override {
    prior_->insert(prior_->end(), r.begin(), r.end());
    return inner_->AddPriorResults(r);
  }
  absl::Status PreTuning(int64_t budget, int batch_size) override {
    return inner_->PreTuning(budget, batch_size);
  }
  absl::StatusOr<std::vector<Point>> ProposeBatch() override { return inner_->ProposeBatch(); }
  absl::Status NotifyResults(const std::vector<Observation>& r) override {
    return inner_->NotifyResults(r);
  }
  std::string name() const override { return "prior-recording"; }

 private:
  std::vector<Observation>* prior_;
  std::unique_ptr<SearchStrategy> inner_;
};

// Scheduler options whose strategies keep the earlier results they are given in `prior`.
SchedulerOptions RecordingPrior(std::vector<Observation>* prior) {
  SchedulerOptions options;
  options.make_strategy =
      [prior](const std::string&) -> absl::StatusOr<std::unique_ptr<SearchStrategy>> {
    return std::make_unique<PriorRecordingStrategy>(prior);
  };
  return options;
}

// Records of an earlier job without a budget are ok, however sloppy; a job with a budget hands
// them to its strategy as failures when their error is above it, so the search does not chase
// configurations it can never serve.
TEST_F(AccuracyBudgetTest, EarlierRecordsOutsideTheBudgetAreFailuresForTheNextJobsStrategy) {
  Submit(32, std::nullopt);
  RunToEnd();
  std::vector<Observation> prior;
  Restart(RecordingPrior(&prior));
  Submit(8, 1e-3);
  RunToEnd();
  ASSERT_GE(prior.size(), 32u);
  absl::StatusOr<std::vector<Record>> records = db_.TaskRecords(Task());
  ASSERT_TRUE(records.ok());
  // Every earlier record is ok; the strategy saw exactly the accurate ones as ok.
  int failures = 0, successes = 0, sloppy = 0;
  for (const Observation& o : prior) (o.ok ? successes : failures) += 1;
  for (const Record& r : *records) {
    if (r.source == "job:1") {
      EXPECT_EQ(r.status, MeasurementStatus::kOk);
      sloppy += *r.max_rel_error > 1e-3;
    }
  }
  EXPECT_GT(sloppy, 0);
  EXPECT_EQ(failures, sloppy) << "each sloppy earlier record is a failure for the strategy";
  EXPECT_GT(successes, 0);
}

// The other way round: records refused by an earlier job's tight budget are within a later job's
// looser one. They are neither failures nor measured for that job (a refused record is never
// served), so its strategy does not get them as prior results and may measure them again.
TEST_F(AccuracyBudgetTest, RecordsRefusedByATighterBudgetAreLeftToALooserJobToMeasure) {
  Submit(32, 1e-3);
  RunToEnd();
  absl::StatusOr<std::vector<Record>> first = db_.TaskRecords(Task());
  ASSERT_TRUE(first.ok());
  std::set<std::string> refused;
  for (const Record& r : *first) {
    if (r.status == MeasurementStatus::kTooInaccurate) refused.insert(CanonicalJson(r.config));
  }
  ASSERT_FALSE(refused.empty());
  std::vector<Observation> prior;
  Restart(RecordingPrior(&prior));
  Submit(8, 0.1);  // kSloppyError is within it
  RunToEnd();
  EXPECT_EQ(prior.size(), first->size() - refused.size());
  absl::StatusOr<std::shared_ptr<const SearchSpace>> space = spaces_.Space(Task(), kCores);
  ASSERT_TRUE(space.ok()) << space.status();
  for (const Observation& o : prior) {
    EXPECT_TRUE(o.ok) << "every earlier record left is accurate";
    EXPECT_FALSE(refused.count(CanonicalJson((*space)->ToConfiguration(o.point))));
  }
}

TEST_F(AccuracyBudgetTest, AReportWithABadErrorIsRefusedWholeAndABadBudgetIsRefused) {
  Submit(16, std::nullopt);
  absl::StatusOr<LeaseGrant> grant = scheduler_->Lease(worker_, 256);
  ASSERT_TRUE(grant.ok() && !grant->candidates.empty());
  for (double bad : {-1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    std::vector<v1::CandidateResult> results;
    for (const v1::Candidate& c : grant->candidates) {
      v1::CandidateResult r;
      r.set_candidate_id(c.candidate_id());
      r.set_status(v1::MEASUREMENT_STATUS_OK);
      r.add_repeat_times_ms(1.0);
      r.set_max_rel_error(results.empty() ? bad : 1e-6);
      results.push_back(r);
    }
    absl::Status s = scheduler_->Report(worker_, grant->lease_id, results).status();
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
    EXPECT_THAT(s.message(), HasSubstr("nothing was stored"));
  }
  EXPECT_TRUE(db_.TaskRecords(Task())->empty());

  for (double bad : {0.0, -1e-3, std::nan("")}) {
    JobRequest r;
    r.name = "bad";
    r.tasks = {Task()};
    r.budget = 4;
    r.max_rel_error = bad;
    r.spec_json = "{}";
    absl::StatusOr<int64_t> id = scheduler_->Submit(r);
    EXPECT_TRUE(absl::IsInvalidArgument(id.status())) << bad;
  }
}

}  // namespace
}  // namespace ktune
