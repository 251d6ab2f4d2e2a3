// One contract, every implementation: each test runs against MemoryTuningDatabase and
// SqliteTuningDatabase (a fresh file; with read connections, and with reads through the writer's
// connection) through the TuningDatabase interface only.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <thread>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "db/memory_tuning_database.h"
#include "db/sqlite_tuning_database.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

using ::testing::HasSubstr;

struct Backend {
  std::string name;
  std::function<std::unique_ptr<TuningDatabase>(const std::string& dir)> make;
};

Record MakeRecord(const std::string& device_class, int64_t tile, std::optional<double> time_ms,
                  const std::string& family = "ampere", const std::string& driver = "550") {
  Record r;
  r.kernel = "gemm";
  r.kernel_version = "v1";
  r.problem = {{"M", int64_t{1024}}, {"N", int64_t{1024}}};
  r.device.fingerprint_json = "{\"driver\":\"" + driver + "\",\"name\":\"" + device_class + "\"}";
  r.device.device_class = device_class;
  r.device.family = family;
  r.config = {{"tile", tile}, {"unroll", int64_t{4}}};
  r.status = time_ms ? MeasurementStatus::kOk : MeasurementStatus::kRuntimeError;
  r.time_ms = time_ms;
  if (!time_ms) r.message = "signal 11 (SIGSEGV)";
  if (time_ms) {
    r.repeat_times_ms = {*time_ms * 1.01, *time_ms, *time_ms * 0.99};
    FillRepeatStatistics(r);
  }
  r.worker = "worker-1";
  r.measured_at_us = 1'700'000'000'000'000 + tile;
  r.source = "worker";
  return r;
}

BestQuery QueryFor(const std::string& device_class, const std::string& fingerprint = "") {
  BestQuery q;
  q.kernel = "gemm";
  q.problem = {{"M", int64_t{1024}}, {"N", int64_t{1024}}};
  q.device_class = device_class;
  q.fingerprint_hash = fingerprint;
  return q;
}

class TuningDatabaseConformanceTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override { db_ = GetParam().make(dir_.path()); }
  testing::TempDir dir_;
  std::unique_ptr<TuningDatabase> db_;
};

TEST_P(TuningDatabaseConformanceTest, StoresRecordsFieldForField) {
  Record r = MakeRecord("A100", 32, 1.5);
  ASSERT_EQ(*db_->AddRecords({r}), 1);
  auto task = db_->TaskRecords({"gemm", "v1", r.problem, "A100"});
  ASSERT_TRUE(task.ok()) << task.status();
  ASSERT_EQ(task->size(), 1u);
  const Record& got = task->front();
  EXPECT_EQ(RecordToJsonLine(got), RecordToJsonLine(r));
  EXPECT_EQ(got.RecordId(), r.RecordId());
  EXPECT_EQ(got.repeat_times_ms, r.repeat_times_ms);
  EXPECT_EQ(got.measured_at_us, r.measured_at_us);
}

TEST_P(TuningDatabaseConformanceTest, AddingTheSameRecordsAgainAddsNothing) {
  std::vector<Record> batch = {MakeRecord("A100", 16, 2.0), MakeRecord("A100", 32, 1.0)};
  EXPECT_EQ(*db_->AddRecords(batch), 2);
  EXPECT_EQ(*db_->AddRecords(batch), 0);
  batch.push_back(MakeRecord("A100", 64, 3.0));
  EXPECT_EQ(*db_->AddRecords(batch), 1);
  EXPECT_EQ(db_->Stats()->records, 3);
}

// An import never claims this database's jobs: a record "of job 1" from elsewhere (another
// server's export) is stored as "import:job:1" (this database's job 1 counted it, and an import
// could finish a job), while a record stored already is skipped, as an export of this database
// imported back, and a second import of the same file adds nothing.
TEST_P(TuningDatabaseConformanceTest, ImportedRecordsDoNotClaimThisDatabasesJobs) {
  Record own = MakeRecord("A100", 16, 2.0);
  own.source = "job:1";
  ASSERT_EQ(*db_->AddRecords({own}), 1);
  EXPECT_TRUE(*db_->HasRecord(own.RecordId()));
  Record other = MakeRecord("A100", 32, 1.0);
  other.source = "job:1";
  EXPECT_FALSE(*db_->HasRecord(other.RecordId()));
  Record plain = MakeRecord("A100", 64, 3.0);  // a source of its own, kept
  plain.source = "tvm";
  EXPECT_EQ(*AddImportedRecords(*db_, {own, other, plain}), 2);
  EXPECT_EQ(*AddImportedRecords(*db_, {own, other, plain}), 0);
  // Its own record back from another database's copy (A to B to A) adds nothing either.
  Record copied = own;
  copied.source = "import:job:1";
  EXPECT_EQ(*AddImportedRecords(*db_, {copied}), 0);
  std::map<double, std::string> sources;  // time -> source
  const TaskKey task{own.kernel, own.kernel_version, own.problem, own.device.device_class};
  for (const Record& r : *db_->TaskRecords(task)) {
    sources[r.time_ms.value_or(0)] = r.source;
  }
  EXPECT_EQ(sources,
            (std::map<double, std::string>{{2.0, "job:1"}, {1.0, "import:job:1"}, {3.0, "tvm"}}));
}

// A job's progress after a restart, for the whole job at once: its own records per task (not
// another job's, not an import's copy), failures counted, stale records included.
TEST_P(TuningDatabaseConformanceTest, SummarizeSourceCountsOneSourcesRecordsPerTask) {
  std::vector<Record> records;
  for (const auto& [device, tile, time, source] :
       std::vector<std::tuple<std::string, int64_t, std::optional<double>, std::string>>{
           {"A100", 8, 3.0, "job:7"},
           {"A100", 16, 2.0, "job:7"},
           {"A100", 32, std::nullopt, "job:7"},
           {"A100", 64, 1.0, "job:8"},          // another job's
           {"A100", 128, 0.5, "import:job:7"},  // another database's job 7
           {"H100", 8, 4.0, "job:7"}}) {
    Record r = MakeRecord(device, tile, time);
    r.source = source;
    records.push_back(std::move(r));
  }
  // Another device of the class (another driver): the same task. Another problem: another task.
  Record other_driver = MakeRecord("A100", 256, 1.5, "ampere", "560");
  other_driver.source = "job:7";
  records.push_back(other_driver);
  Record other_problem = MakeRecord("A100", 512, 0.25);
  other_problem.problem = {{"M", int64_t{2048}}, {"N", int64_t{2048}}};
  other_problem.source = "job:7";
  records.push_back(other_problem);
  ASSERT_TRUE(db_->AddRecords(records).ok());
  const TaskKey h100{"gemm", "v1", records[0].problem, "H100"};
  ASSERT_TRUE(db_->MarkStale(h100, *records[5].measured_at_us + 1).ok());  // counted still
  absl::StatusOr<std::vector<TuningDatabase::SourceTaskSummary>> summary =
      db_->SummarizeSource("job:7");
  ASSERT_TRUE(summary.ok()) << summary.status();
  ASSERT_EQ(summary->size(), 3u);
  std::map<std::string, TuningDatabase::SourceTaskSummary> by_task;  // class and problem
  for (const auto& s : *summary) {
    by_task[s.task.device_class + " " + CanonicalJson(s.task.problem)] = s;
  }
  const TuningDatabase::SourceTaskSummary& a100 =
      by_task["A100 " + CanonicalJson(records[0].problem)];
  EXPECT_EQ(a100.task.kernel, "gemm");
  EXPECT_EQ(a100.task.problem, records[0].problem);
  EXPECT_EQ(a100.records, 4);  // both devices of the class
  EXPECT_EQ(a100.failed, 1);
  EXPECT_EQ(a100.best_ms, 1.5);
  EXPECT_EQ(a100.best_config, other_driver.config);
  const TuningDatabase::SourceTaskSummary& bigger =
      by_task["A100 " + CanonicalJson(other_problem.problem)];
  EXPECT_EQ(bigger.records, 1);
  EXPECT_EQ(bigger.best_ms, 0.25);
  const TuningDatabase::SourceTaskSummary& h100_summary =
      by_task["H100 " + CanonicalJson(records[0].problem)];
  EXPECT_EQ(h100_summary.records, 1);
  EXPECT_EQ(h100_summary.best_ms, 4.0);
  EXPECT_TRUE(db_->SummarizeSource("job:9")->empty());
}

TEST_P(TuningDatabaseConformanceTest, ABatchWithOneBadRecordStoresNothing) {
  Record bad = MakeRecord("A100", 8, 1.0);
  bad.time_ms.reset();  // status ok without a time
  auto added = db_->AddRecords({MakeRecord("A100", 16, 2.0), bad});
  ASSERT_FALSE(added.ok());
  EXPECT_EQ(added.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(added.status().message(), HasSubstr("time_ms"));
  EXPECT_EQ(db_->Stats()->records, 0);
}

TEST_P(TuningDatabaseConformanceTest, BestIsTheFastestOkRecordOfTheTask) {
  ASSERT_TRUE(db_->AddRecords({MakeRecord("A100", 16, 2.0), MakeRecord("A100", 32, 1.2),
                               MakeRecord("A100", 64, std::nullopt), MakeRecord("A100", 128, 1.7)})
                  .ok());
  auto best = db_->QueryBest(QueryFor("A100"));
  ASSERT_TRUE(best.ok()) << best.status();
  EXPECT_EQ(best->level, MatchLevel::kDeviceClass);
  ASSERT_EQ(best->records.size(), 1u);
  EXPECT_EQ(std::get<int64_t>(best->records[0].config.at("tile")), 32);
  EXPECT_DOUBLE_EQ(*best->records[0].time_ms, 1.2);

  BestQuery top = QueryFor("A100");
  top.top_k = 10;
  auto all = db_->QueryBest(top);
  ASSERT_EQ(all->records.size(), 3u);  // the failed record never ranks
  EXPECT_DOUBLE_EQ(*all->records[1].time_ms, 1.7);
  EXPECT_DOUBLE_EQ(*all->records[2].time_ms, 2.0);
}

TEST_P(TuningDatabaseConformanceTest, TopKListsDistinctConfigurations) {
  Record again = MakeRecord("A100", 32, 1.3);
  again.measured_at_us = 5;  // a second measurement of the same configuration
  ASSERT_TRUE(
      db_->AddRecords({MakeRecord("A100", 32, 1.2), again, MakeRecord("A100", 16, 1.4)}).ok());
  BestQuery q = QueryFor("A100");
  q.top_k = 2;
  auto best = db_->QueryBest(q);
  ASSERT_EQ(best->records.size(), 2u);
  EXPECT_DOUBLE_EQ(*best->records[0].time_ms, 1.2);
  EXPECT_DOUBLE_EQ(*best->records[1].time_ms, 1.4);
}

// A configuration measured many times, each faster than every other configuration: the next
// configurations are still found, however many records of the first come before them (a store
// may read a bounded number of ranked rows first, and must then read on).
TEST_P(TuningDatabaseConformanceTest, TopKLooksPastManyRecordsOfOneConfiguration) {
  std::vector<Record> records;
  for (int i = 0; i < 300; ++i) {
    Record r = MakeRecord("A100", 32, 1.0 + i * 1e-4);
    r.measured_at_us = i + 1;  // distinct records of the same configuration
    records.push_back(r);
  }
  records.push_back(MakeRecord("A100", 16, 2.0));
  records.push_back(MakeRecord("A100", 8, 3.0));
  ASSERT_TRUE(db_->AddRecords(records).ok());
  BestQuery q = QueryFor("A100");
  q.top_k = 3;
  auto best = db_->QueryBest(q);
  ASSERT_TRUE(best.ok()) << best.status();
  ASSERT_EQ(best->records.size(), 3u);
  EXPECT_DOUBLE_EQ(*best->records[0].time_ms, 1.0);
  EXPECT_DOUBLE_EQ(*best->records[1].time_ms, 2.0);
  EXPECT_DOUBLE_EQ(*best->records[2].time_ms, 3.0);
  q.top_k = 1;
  best = db_->QueryBest(q);
  ASSERT_EQ(best->records.size(), 1u);
  EXPECT_DOUBLE_EQ(*best->records[0].time_ms, 1.0);
}

// Two devices of one class, each with more records of one configuration than a first look reads:
// the second-fastest configuration is behind the first device's many records, not on the second
// device.
TEST_P(TuningDatabaseConformanceTest, TopKLooksPastADeviceWithManyRecords) {
  std::vector<Record> records;
  for (int i = 0; i < 200; ++i) {
    Record x = MakeRecord("A100", 32, 1.0, "ampere", "550");
    x.measured_at_us = i + 1;
    records.push_back(x);
    Record z = MakeRecord("A100", 64, 2.0, "ampere", "535");
    z.measured_at_us = i + 1;
    records.push_back(z);
  }
  records.push_back(MakeRecord("A100", 16, 1.5, "ampere", "550"));
  ASSERT_TRUE(db_->AddRecords(records).ok());
  BestQuery q = QueryFor("A100");
  q.top_k = 2;
  auto best = db_->QueryBest(q);
  ASSERT_TRUE(best.ok()) << best.status();
  ASSERT_EQ(best->records.size(), 2u);
  EXPECT_DOUBLE_EQ(*best->records[0].time_ms, 1.0);
  EXPECT_DOUBLE_EQ(*best->records[1].time_ms, 1.5);
}

// Every TuningDatabase is thread-safe (the interface says so; the server calls it from its RPC
// and agent threads at once): writers and readers on one object lose nothing and fail nothing.
TEST_P(TuningDatabaseConformanceTest, ConcurrentWritersAndReadersLoseNothing) {
  constexpr int kWriters = 4, kBatches = 25;
  std::atomic<int> failures{0};
  std::atomic<bool> writing{true};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int b = 0; b < kBatches; ++b) {
        Record r = MakeRecord("A100", 1000 * (w + 1) + b, 1.0 + b);
        if (!db_->AddRecords({r}).ok()) ++failures;
      }
    });
  }
  for (int reader = 0; reader < 2; ++reader) {
    threads.emplace_back([&] {
      while (writing) {
        if (!db_->QueryBest(QueryFor("A100")).ok()) ++failures;
        if (!db_->TaskRecords({"gemm", "v1", QueryFor("A100").problem, "A100"}).ok()) ++failures;
      }
    });
  }
  for (int w = 0; w < kWriters; ++w) threads[w].join();
  writing = false;
  for (size_t t = kWriters; t < threads.size(); ++t) threads[t].join();
  EXPECT_EQ(failures, 0);
  auto records = db_->TaskRecords({"gemm", "v1", QueryFor("A100").problem, "A100"});
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(static_cast<int>(records->size()), kWriters * kBatches);
}

TEST_P(TuningDatabaseConformanceTest, BestFallsBackFromFingerprintToClassToFamily) {
  Record exact = MakeRecord("A100", 16, 2.0, "ampere", "550");
  Record same_class = MakeRecord("A100", 32, 1.0, "ampere", "535");  // other driver
  Record same_family = MakeRecord("A4000", 64, 0.5, "ampere");
  ASSERT_TRUE(db_->AddRecords({exact, same_class, same_family}).ok());

  auto by_fingerprint = db_->QueryBest(QueryFor("A100", exact.device.FingerprintHash()));
  EXPECT_EQ(by_fingerprint->level, MatchLevel::kExact);
  EXPECT_EQ(std::get<int64_t>(by_fingerprint->records[0].config.at("tile")), 16);

  auto by_class = db_->QueryBest(QueryFor("A100", "0000000000000000"));
  EXPECT_EQ(by_class->level, MatchLevel::kDeviceClass);
  EXPECT_EQ(std::get<int64_t>(by_class->records[0].config.at("tile")), 32);

  // An A10 has never been tuned: the family (inferred from the name) answers.
  auto by_family = db_->QueryBest(QueryFor("A10"));
  EXPECT_EQ(by_family->level, MatchLevel::kFamily);
  EXPECT_EQ(std::get<int64_t>(by_family->records[0].config.at("tile")), 64);

  auto nothing = db_->QueryBest(QueryFor("MI250X"));
  EXPECT_EQ(nothing->level, MatchLevel::kNone);
  EXPECT_TRUE(nothing->records.empty());

  BestQuery other_problem = QueryFor("A100");
  other_problem.problem = {{"M", int64_t{2048}}};
  EXPECT_EQ(db_->QueryBest(other_problem)->level, MatchLevel::kNone);
}

TEST_P(TuningDatabaseConformanceTest, KernelVersionFiltersWhenGiven) {
  Record v2 = MakeRecord("A100", 16, 0.1);
  v2.kernel_version = "v2";
  ASSERT_TRUE(db_->AddRecords({MakeRecord("A100", 32, 1.0), v2}).ok());
  BestQuery q = QueryFor("A100");
  EXPECT_EQ(db_->QueryBest(q)->records[0].kernel_version, "v2");  // any version
  q.kernel_version = "v1";
  EXPECT_EQ(db_->QueryBest(q)->records[0].kernel_version, "v1");
}

TEST_P(TuningDatabaseConformanceTest, TaskRecordsAreOrderedAndCountsAddUp) {
  Record undated = MakeRecord("A100", 8, std::nullopt);
  undated.measured_at_us.reset();
  ASSERT_TRUE(db_->AddRecords({MakeRecord("A100", 64, 1.0), MakeRecord("A100", 16, 2.0), undated,
                               MakeRecord("H100", 16, 0.5, "hopper")})
                  .ok());
  auto records = db_->TaskRecords({"gemm", "", QueryFor("A100").problem, "A100"});
  ASSERT_EQ(records->size(), 3u);
  EXPECT_FALSE((*records)[0].measured_at_us.has_value());  // unknown time first
  EXPECT_LT(*(*records)[1].measured_at_us, *(*records)[2].measured_at_us);

  // A task whose only record failed is a task too.
  ASSERT_TRUE(db_->AddRecords({MakeRecord("V100", 8, std::nullopt, "volta")}).ok());
  auto tasks = db_->ListTasks();
  ASSERT_EQ(tasks->size(), 3u);
  EXPECT_EQ((*tasks)[0].device_class, "A100");
  EXPECT_EQ((*tasks)[1].device_class, "H100");
  EXPECT_EQ((*tasks)[2].device_class, "V100");

  auto stats = db_->Stats();
  EXPECT_EQ(stats->records, 5);
  EXPECT_EQ(stats->records_by_status.at("ok"), 3);
  EXPECT_EQ(stats->records_by_status.at("runtime_error"), 2);
  EXPECT_EQ(stats->kernels, 1);
  EXPECT_EQ(stats->workloads, 1);
  EXPECT_EQ(stats->devices, 3);
}

TEST_P(TuningDatabaseConformanceTest, ForEachRecordVisitsInInsertionOrder) {
  ASSERT_TRUE(db_->AddRecords({MakeRecord("A100", 64, 1.0)}).ok());
  ASSERT_TRUE(db_->AddRecords({MakeRecord("A100", 16, 2.0)}).ok());
  std::vector<int64_t> tiles;
  ASSERT_TRUE(db_->ForEachRecord([&](const Record& r) {
                   tiles.push_back(std::get<int64_t>(r.config.at("tile")));
                   return absl::OkStatus();
                 })
                  .ok());
  EXPECT_EQ(tiles, (std::vector<int64_t>{64, 16}));
  auto stopped = db_->ForEachRecord([](const Record&) { return absl::CancelledError("stop"); });
  EXPECT_EQ(stopped.code(), absl::StatusCode::kCancelled);
}

// Paging through every record by position: each page starts where the last ended, in insertion
// order, and the page after the last is empty.
TEST_P(TuningDatabaseConformanceTest, RecordsAfterPagesInInsertionOrder) {
  for (int64_t tile : {64, 16, 32, 8, 4}) {
    ASSERT_TRUE(db_->AddRecords({MakeRecord("A100", tile, 1.0)}).ok());
  }
  std::vector<int64_t> tiles;
  int64_t after = 0;
  for (int page = 0; page < 3; ++page) {
    absl::StatusOr<TuningDatabase::RecordPage> read = db_->RecordsAfter(after, 2);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(read->records.size(), page < 2 ? 2u : 1u);
    EXPECT_GT(read->last, after);
    for (const Record& r : read->records) tiles.push_back(std::get<int64_t>(r.config.at("tile")));
    after = read->last;
  }
  EXPECT_EQ(tiles, (std::vector<int64_t>{64, 16, 32, 8, 4}));
  absl::StatusOr<TuningDatabase::RecordPage> end = db_->RecordsAfter(after, 2);
  ASSERT_TRUE(end.ok());
  EXPECT_TRUE(end->records.empty());
  EXPECT_EQ(end->last, after);
}

TEST_P(TuningDatabaseConformanceTest, JobsFollowTheirStateMachine) {
  Job job;
  job.name = "llama-gemms";
  job.spec_json = "{}";
  job.strategy = "ppo";
  job.priority = 50;
  job.tasks.push_back({{"gemm", "v1", {{"M", int64_t{16}}}, "H100"}, JobState::kQueued, 200, 0});
  job.tasks.push_back({{"gemm", "v1", {{"M", int64_t{32}}}, "H100"}, JobState::kQueued, 200, 0});
  auto id = db_->CreateJob(job);
  ASSERT_TRUE(id.ok()) << id.status();
  auto second = db_->CreateJob(job);
  ASSERT_TRUE(second.ok());
  EXPECT_NE(*id, *second);

  auto stored = db_->GetJob(*id);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->state, JobState::kQueued);
  EXPECT_EQ(stored->tasks.size(), 2u);
  EXPECT_EQ(stored->tasks[1].task.problem, job.tasks[1].task.problem);

  EXPECT_TRUE(db_->SetJobState(*id, JobState::kRunning, "").ok());
  EXPECT_TRUE(db_->UpdateJobTasks(*id, {{1, JobState::kRunning, 17}}).ok());
  EXPECT_EQ(db_->GetJob(*id)->tasks[1].measurements_done, 17);
  // Many tasks in one call; a bad index refuses the whole call and stores nothing.
  EXPECT_TRUE(
      db_->UpdateJobTasks(*id, {{0, JobState::kDone, 4}, {1, JobState::kRunning, 18}}).ok());
  EXPECT_EQ(db_->GetJob(*id)->tasks[0].state, JobState::kDone);
  EXPECT_EQ(db_->GetJob(*id)->tasks[0].measurements_done, 4);
  EXPECT_EQ(db_->GetJob(*id)->tasks[1].measurements_done, 18);
  EXPECT_EQ(db_->UpdateJobTasks(*id, {{1, JobState::kRunning, 19}, {5, JobState::kRunning, 1}})
                .code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(db_->GetJob(*id)->tasks[1].measurements_done, 18);
  // A count never goes down (a report committed while the scheduler wrote an older one).
  EXPECT_TRUE(db_->UpdateJobTasks(*id, {{1, JobState::kRunning, 5}}).ok());
  EXPECT_EQ(db_->GetJob(*id)->tasks[1].measurements_done, 18);
  EXPECT_TRUE(db_->SetJobState(*id, JobState::kPaused, "").ok());
  EXPECT_TRUE(db_->SetJobState(*id, JobState::kRunning, "").ok());
  EXPECT_TRUE(db_->SetJobState(*id, JobState::kDone, "").ok());
  absl::Status again = db_->SetJobState(*id, JobState::kRunning, "");
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(again.message(), HasSubstr("from done to running"));
  EXPECT_EQ(db_->SetJobState(*second, JobState::kDone, "").code(),
            absl::StatusCode::kFailedPrecondition);  // queued cannot finish without running
  EXPECT_TRUE(db_->SetJobState(*second, JobState::kCancelled, "operator").ok());
  EXPECT_EQ(db_->GetJob(*second)->message, "operator");

  // Every job, newest first, without its tasks: their counts.
  auto summaries = db_->ListJobSummaries();
  ASSERT_TRUE(summaries.ok()) << summaries.status();
  ASSERT_EQ(summaries->size(), 2u);
  const TuningDatabase::JobSummary& first = (*summaries)[1];
  EXPECT_EQ((*summaries)[0].job.id, *second);  // newest first
  EXPECT_EQ(first.job.id, *id);
  EXPECT_EQ(first.job.state, JobState::kDone);
  EXPECT_EQ(first.job.name, db_->GetJob(*id)->name);
  EXPECT_EQ(first.job.spec_json, db_->GetJob(*id)->spec_json);
  EXPECT_TRUE(first.job.tasks.empty());
  EXPECT_EQ(first.task_count, 2);
  EXPECT_EQ(first.measurements_done, 4 + 18);
  EXPECT_EQ(first.measurements_total, 400);
  EXPECT_EQ((*summaries)[0].job.message, "operator");
  EXPECT_EQ(db_->GetJob(999).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(db_->Stats()->jobs, 2);
}

// A report's records and its tasks' progress are stored together: counts add up across reports,
// a queued task becomes running (a finished one keeps its state), and a count naming a task the
// job does not have stores neither the records nor any count.
TEST_P(TuningDatabaseConformanceTest, AReportStoresItsRecordsAndItsTasksProgressTogether) {
  Job job;
  job.name = "report";
  job.tasks.push_back({{"gemm", "v1", {{"M", int64_t{1024}}}, "A100"}, JobState::kQueued, 50, 0});
  job.tasks.push_back({{"gemm", "v1", {{"M", int64_t{2048}}}, "A100"}, JobState::kQueued, 50, 0});
  auto id = db_->CreateJob(job);
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(db_->UpdateJobTasks(*id, {{1, JobState::kDone, 2}}).ok());

  auto added = db_->AddJobRecords({MakeRecord("A100", 1, 1.0), MakeRecord("A100", 2, 2.0)},
                                  {{*id, 0, 2}, {*id, 1, 1}});
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(*added, 2);
  added = db_->AddJobRecords({MakeRecord("A100", 3, 3.0)}, {{*id, 0, 1}});
  ASSERT_TRUE(added.ok()) << added.status();
  auto stored = db_->GetJob(*id);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->tasks[0].measurements_done, 3);
  EXPECT_EQ(stored->tasks[0].state, JobState::kRunning);
  EXPECT_EQ(stored->tasks[1].measurements_done, 3);
  EXPECT_EQ(stored->tasks[1].state, JobState::kDone);

  auto refused = db_->AddJobRecords({MakeRecord("A100", 4, 4.0)}, {{*id, 0, 1}, {*id, 7, 1}});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(db_->AddJobRecords({MakeRecord("A100", 4, 4.0)}, {{*id + 100, 0, 1}}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(db_->Stats()->records, 3);
  EXPECT_EQ(db_->GetJob(*id)->tasks[0].measurements_done, 3);
}

// A regression makes a task's old records stale: they no longer answer, fresh ones do, and
// nothing is deleted.
TEST_P(TuningDatabaseConformanceTest, StaleRecordsStopAnsweringButStayStored) {
  Record old_fast = MakeRecord("A100", 16, 1.0);  // measured at 1.7e15 + 16
  Record fresh_slow = MakeRecord("A100", 32, 2.0);
  fresh_slow.measured_at_us = 1'800'000'000'000'000;
  Record other_class = MakeRecord("H100", 16, 0.5);
  ASSERT_TRUE(db_->AddRecords({old_fast, fresh_slow, other_class}).ok());
  const TaskKey task{"gemm", "", old_fast.problem, "A100"};
  ASSERT_TRUE(db_->MarkStale(task, 1'750'000'000'000'000).ok());
  ASSERT_TRUE(db_->MarkStale(task, 1'000).ok());  // an earlier boundary changes nothing

  auto best = db_->QueryBest(QueryFor("A100"));
  ASSERT_TRUE(best.ok()) << best.status();
  ASSERT_EQ(best->records.size(), 1u);
  EXPECT_EQ(std::get<int64_t>(best->records[0].config.at("tile")), 32);
  auto records = db_->TaskRecords({"gemm", "v1", old_fast.problem, "A100"});
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ(*(*records)[0].time_ms, 2.0);
  auto stale = db_->StaleTaskRecords({"gemm", "v1", old_fast.problem, "A100"});
  ASSERT_TRUE(stale.ok());
  ASSERT_EQ(stale->size(), 1u);
  EXPECT_EQ(*(*stale)[0].time_ms, 1.0);
  EXPECT_TRUE(db_->StaleTaskRecords({"gemm", "v1", old_fast.problem, "H100"})->empty());
  // Another class is not touched; everything is still stored.
  EXPECT_EQ(*db_->QueryBest(QueryFor("H100"))->records[0].time_ms, 0.5);
  int64_t stored = 0;
  ASSERT_TRUE(db_->ForEachRecord([&](const Record&) {
                   ++stored;
                   return absl::OkStatus();
                 })
                  .ok());
  EXPECT_EQ(stored, 3);
}

// Until a newer record of the task exists on its class, its stale records answer QueryBest, said
// to be stale, ahead of the family's: what the class last knew, while a retuning job measures.
TEST_P(TuningDatabaseConformanceTest, StaleRecordsAnswerUntilTheClassHasANewerOne) {
  Record old_fast = MakeRecord("A100", 16, 1.0);  // measured at 1.7e15 + 16
  Record old_slow = MakeRecord("A100", 32, 2.0);
  Record same_family = MakeRecord("A10", 8, 0.5);  // an ampere too, faster
  ASSERT_TRUE(db_->AddRecords({old_fast, old_slow, same_family}).ok());
  const TaskKey task{"gemm", "", old_fast.problem, "A100"};
  ASSERT_TRUE(db_->MarkStale(task, 1'750'000'000'000'000).ok());
  BestQuery q = QueryFor("A100");
  q.top_k = 2;
  auto best = db_->QueryBest(q);
  ASSERT_TRUE(best.ok()) << best.status();
  EXPECT_EQ(best->level, MatchLevel::kDeviceClass);
  EXPECT_TRUE(best->stale);
  ASSERT_EQ(best->records.size(), 2u);
  EXPECT_EQ(*best->records[0].time_ms, 1.0);
  EXPECT_TRUE(db_->TaskRecords({"gemm", "v1", old_fast.problem, "A100"})->empty());
  Record fresh = MakeRecord("A100", 64, 3.0);
  fresh.measured_at_us = 1'800'000'000'000'000;
  ASSERT_TRUE(db_->AddRecords({fresh}).ok());
  best = db_->QueryBest(q);
  ASSERT_TRUE(best.ok()) << best.status();
  EXPECT_FALSE(best->stale);
  ASSERT_EQ(best->records.size(), 1u);
  EXPECT_EQ(*best->records[0].time_ms, 3.0);  // slower, but measured since the regression
}

// Production telemetry of gemm 1024x1024 on the A100 of MakeRecord, tile 16.
TelemetryReport GemmTelemetry() {
  TelemetryReport t;
  t.kernel = "gemm";
  t.problem = {{"M", int64_t{1024}}, {"N", int64_t{1024}}};
  t.device = MakeRecord("A100", 16, 1.0).device;
  t.config = {{"tile", int64_t{16}}};
  t.count = 1;
  t.mean_ms = 1.0;
  return t;
}

TEST_P(TuningDatabaseConformanceTest, TelemetryIsStoredApartAndBadReportsStoreNothing) {
  TelemetryReport t = GemmTelemetry();
  t.count = 1000;
  t.mean_ms = 1.25;
  t.stddev_ms = 0.01;
  t.window_start_us = 10;
  t.window_end_us = 20;
  t.received_at_us = 30;
  t.reporter = "app";
  TelemetryReport bad = t;
  bad.mean_ms = std::nan("");
  EXPECT_TRUE(absl::IsInvalidArgument(db_->AddTelemetry({t, bad})));
  ASSERT_TRUE(db_->AddTelemetry({t, t}).ok());
  std::vector<TelemetryReport> seen;
  ASSERT_TRUE(db_->ForEachTelemetry([&](const TelemetryReport& r) {
                   seen.push_back(r);
                   return absl::OkStatus();
                 })
                  .ok());
  ASSERT_EQ(seen.size(), 2u);  // the refused batch stored nothing
  EXPECT_EQ(seen[0].config, t.config);
  EXPECT_EQ(seen[0].problem, t.problem);
  EXPECT_EQ(seen[0].device.FingerprintHash(), t.device.FingerprintHash());
  EXPECT_EQ(seen[0].count, 1000);
  EXPECT_DOUBLE_EQ(seen[0].mean_ms, 1.25);
  EXPECT_EQ(seen[0].window_end_us, 20);
  EXPECT_EQ(seen[0].reporter, "app");
  // Telemetry is not a measurement: no record, no best answer.
  EXPECT_EQ(db_->Stats()->records, 0);
  EXPECT_EQ(db_->QueryBest(QueryFor("A100"))->level, MatchLevel::kNone);
}

// The server's restart replays stored telemetry into the drift monitor, which asks the database
// for each task's lab best while it reads: the walk must not hold the database (it hung a server
// on restart), and must see every report, however many pages they take.
TEST_P(TuningDatabaseConformanceTest, ATelemetryWalkMayQueryTheDatabaseAndSeesEveryReport) {
  ASSERT_TRUE(db_->AddRecords({MakeRecord("A100", 16, 1.0)}).ok());
  TelemetryReport t = GemmTelemetry();
  t.window_start_us = t.window_end_us = t.received_at_us = 1;
  std::vector<TelemetryReport> reports;
  for (int i = 0; i < 2500; ++i) {
    t.reporter = absl::StrCat("app", i);
    reports.push_back(t);
  }
  ASSERT_TRUE(db_->AddTelemetry(reports).ok());
  std::vector<std::string> seen;
  ASSERT_TRUE(db_->ForEachTelemetry([&](const TelemetryReport& r) {
                   absl::StatusOr<BestResult> best = db_->QueryBest(QueryFor("A100"));
                   if (!best.ok()) return best.status();
                   seen.push_back(r.reporter);
                   return absl::OkStatus();
                 })
                  .ok());
  ASSERT_EQ(seen.size(), reports.size());
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], reports[i].reporter);
}

// A client's payload (TVM's own record, in ktune.tvm) comes back byte for byte, whatever it holds,
// and is part of the record's identity: the same measurement with another payload is another
// record.
TEST_P(TuningDatabaseConformanceTest, APayloadIsKeptVerbatimAndPartOfTheRecordId) {
  Record r = MakeRecord("A100", 32, 1.5);
  r.payload = std::string("{\"trace\": [\"\u00e9\", \"line\\nbreak\"]}\n\ttrailing ") +
              std::string(200'000, 'p');
  Record other = r;
  other.payload += "!";
  Record without = r;
  without.payload.clear();
  EXPECT_NE(r.RecordId(), other.RecordId());
  EXPECT_NE(r.RecordId(), without.RecordId());
  ASSERT_EQ(*db_->AddRecords({r, other, without}), 3);
  auto task = db_->TaskRecords({"gemm", "v1", r.problem, "A100"});
  ASSERT_TRUE(task.ok()) << task.status();
  std::set<std::string> payloads;
  for (const Record& got : *task) {
    payloads.insert(got.payload);
    EXPECT_EQ(RecordToJsonLine(got), RecordToJsonLine(got.payload == r.payload       ? r
                                                      : got.payload == other.payload ? other
                                                                                     : without));
  }
  EXPECT_EQ(payloads, (std::set<std::string>{r.payload, other.payload, ""}));
  auto best = db_->QueryBest(QueryFor("A100"));
  ASSERT_TRUE(best.ok()) << best.status();
  ASSERT_EQ(best->records.size(), 1u);  // one configuration
  EXPECT_TRUE(payloads.count(best->records[0].payload));
}

// The measured error: kept field for field, in the record id only when set, and an accuracy
// budget serves the fastest record whose error is known and within it.
TEST_P(TuningDatabaseConformanceTest, ABudgetServesTheFastestRecordWithinItsMeasuredError) {
  Record sloppy = MakeRecord("A100", 8, 0.5);
  sloppy.max_rel_error = 0.03;
  Record fair = MakeRecord("A100", 16, 1.0);
  fair.max_rel_error = 4e-4;
  Record exact = MakeRecord("A100", 32, 2.0);
  exact.max_rel_error = 0.0;
  Record unknown = MakeRecord("A100", 64, 0.8);  // no measured error
  Record refused = MakeRecord("A100", 128, std::nullopt);
  refused.status = MeasurementStatus::kTooInaccurate;
  refused.message = "max relative error 0.5 is above the budget 0.001";
  refused.repeat_times_ms = {0.1};
  FillRepeatStatistics(refused);
  refused.max_rel_error = 0.5;
  Record without_error = sloppy;
  without_error.max_rel_error.reset();
  EXPECT_NE(sloppy.RecordId(), without_error.RecordId());
  EXPECT_EQ(RecordFromJsonLine(RecordToJsonLine(sloppy))->max_rel_error, 0.03);
  ASSERT_EQ(*db_->AddRecords({sloppy, fair, exact, unknown, refused}), 5);

  auto best_within = [&](std::optional<double> budget) {
    BestQuery q = QueryFor("A100");
    q.max_rel_error = budget;
    q.top_k = 10;
    return *db_->QueryBest(q);
  };
  EXPECT_EQ(best_within(std::nullopt).records.front().RecordId(), sloppy.RecordId());
  EXPECT_EQ(best_within(std::nullopt).records.size(), 4u) << "too_inaccurate is never served";
  EXPECT_EQ(best_within(1e-3).records.front().RecordId(), fair.RecordId());
  EXPECT_EQ(best_within(1e-3).records.size(), 2u) << "the unknown error is never within a budget";
  EXPECT_EQ(best_within(4e-4).records.front().RecordId(), fair.RecordId()) << "inclusive";
  EXPECT_EQ(best_within(1e-9).records.front().RecordId(), exact.RecordId());
  EXPECT_EQ(best_within(1.0).records.size(), 3u);

  auto task = db_->TaskRecords({"gemm", "v1", sloppy.problem, "A100"});
  ASSERT_TRUE(task.ok());
  for (const Record& got : *task) {
    for (const Record* want : {&sloppy, &fair, &exact, &unknown, &refused}) {
      if (got.RecordId() == want->RecordId()) {
        EXPECT_EQ(RecordToJsonLine(got), RecordToJsonLine(*want));
      }
    }
  }
  Record negative = MakeRecord("A100", 256, 1.0);
  negative.max_rel_error = -1;
  EXPECT_TRUE(absl::IsInvalidArgument(db_->AddRecords({negative}).status()));
}

TEST_P(TuningDatabaseConformanceTest, AnOversizePayloadIsRefusedAndNothingStored) {
  Record largest = MakeRecord("A100", 16, 2.0);
  largest.payload.assign(kMaxRecordPayloadBytes, 'x');
  Record over = MakeRecord("A100", 32, 1.0);
  over.payload.assign(kMaxRecordPayloadBytes + 1, 'x');
  auto added = db_->AddRecords({largest, over});
  ASSERT_FALSE(added.ok());
  EXPECT_EQ(added.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(added.status().message(), HasSubstr("payload is 1048577 bytes; at most 1048576"));
  EXPECT_EQ(db_->Stats()->records, 0);
  EXPECT_EQ(*db_->AddRecords({largest}), 1);  // the limit itself is accepted
}

// Numbers that JSON cannot hold or that no time can be are refused whole: a NaN parameter value
// was stored as null and then broke every read and export of the database.
TEST_P(TuningDatabaseConformanceTest, NonFiniteValuesAndImpossibleTimesAreRefusedAndNothingStored) {
  const Record good = MakeRecord("A100", 16, 2.0);
  std::vector<Record> bad(8, MakeRecord("A100", 32, 1.0));
  bad[7].time_ms = 0.0;
  bad[0].config["alpha"] = std::nan("");
  bad[1].problem["scale"] = std::numeric_limits<double>::infinity();
  bad[2].time_ms = std::numeric_limits<double>::infinity();
  bad[3].repeat_times_ms = {1.0, std::nan("")};
  bad[4].repeat_times_ms = {1.0, -5.0};
  bad[5].stddev_ms = -1.0;
  bad[6].median_ms = std::nan("");
  for (size_t i = 0; i < bad.size(); ++i) {
    auto added = db_->AddRecords({good, bad[i]});
    EXPECT_TRUE(absl::IsInvalidArgument(added.status())) << i << ": " << added.status();
  }
  EXPECT_THAT(db_->AddRecords({bad[0]}).status().message(),
              HasSubstr("record.config.alpha is nan"));
  EXPECT_EQ(db_->Stats()->records, 0);
  TelemetryReport t = GemmTelemetry();
  t.config = {{"alpha", -std::numeric_limits<double>::infinity()}};
  EXPECT_TRUE(absl::IsInvalidArgument(db_->AddTelemetry({t})));
  ASSERT_TRUE(db_->ForEachRecord([](const Record&) { return absl::InternalError("stored"); }).ok());
  EXPECT_EQ(*db_->AddRecords({good}), 1);
}

// A name with a control character is refused: a recorded file's parameter name "p\nsystem(...)"
// once reached `explain --plot`'s gnuplot script as a command.
TEST_P(TuningDatabaseConformanceTest, NamesWithControlCharactersAreRefusedAndNothingStored) {
  std::vector<Record> bad(4, MakeRecord("A100", 32, 1.0));
  bad[0].config["p\nsystem('touch pwned')\n#"] = int64_t{1};
  bad[1].problem["N\t"] = int64_t{1};
  bad[2].kernel = "gemm\n";
  bad[3].device.device_class = "A100\r";
  for (size_t i = 0; i < bad.size(); ++i) {
    auto added = db_->AddRecords({MakeRecord("A100", 16, 2.0), bad[i]});
    EXPECT_TRUE(absl::IsInvalidArgument(added.status())) << i << ": " << added.status();
    EXPECT_THAT(added.status().message(), HasSubstr("control character")) << i;
  }
  EXPECT_EQ(db_->Stats()->records, 0);
}

// A device (its fingerprint) has one class: a record that names another class for it is refused,
// nothing stored (SQLite filed it under the first class, where its own class never found it).
TEST_P(TuningDatabaseConformanceTest, ADeviceKeepsOneClassAndAnotherIsRefused) {
  const Record first = MakeRecord("A100", 16, 2.0);
  ASSERT_EQ(*db_->AddRecords({first}), 1);
  Record relabelled = MakeRecord("A100", 32, 1.0);
  relabelled.device.device_class = "my-bench-box";  // the same fingerprint, another class
  auto added = db_->AddRecords({relabelled});
  ASSERT_TRUE(absl::IsInvalidArgument(added.status())) << added.status();
  EXPECT_THAT(added.status().message(),
              HasSubstr("is stored as device class 'A100', not 'my-bench-box'"));
  Record two_in_one = relabelled;
  two_in_one.device.fingerprint_json = R"({"name":"bench box"})";
  Record other = two_in_one;
  other.config["tile"] = int64_t{64};
  other.device.device_class = "other-box";
  EXPECT_TRUE(absl::IsInvalidArgument(db_->AddRecords({two_in_one, other}).status()));
  EXPECT_EQ(db_->Stats()->records, 1);
  // Its own fingerprint: stored, and found under its class.
  ASSERT_EQ(*db_->AddRecords({two_in_one}), 1);
  EXPECT_EQ(db_->QueryBest(QueryFor("my-bench-box"))->level, MatchLevel::kDeviceClass);
}

TEST_P(TuningDatabaseConformanceTest, CheckpointsAreReplacedAndLoaded) {
  EXPECT_EQ(db_->LoadCheckpoint("ppo/gemm").status().code(), absl::StatusCode::kNotFound);
  std::string blob("\0\1\2binary", 9);
  ASSERT_TRUE(db_->SaveCheckpoint("ppo/gemm", blob).ok());
  EXPECT_EQ(*db_->LoadCheckpoint("ppo/gemm"), blob);
  ASSERT_TRUE(db_->SaveCheckpoint("ppo/gemm", "v2").ok());
  EXPECT_EQ(*db_->LoadCheckpoint("ppo/gemm"), "v2");
}

// Checks that TaskRecordColumns(task) is TaskRecords(task) as columns: the same records in the
// same order, each field the same, and each handle reading back its record.
void ExpectColumnsMatchRecords(TuningDatabase& db, const TaskKey& task, bool stale = false) {
  auto records = stale ? db.StaleTaskRecords(task) : db.TaskRecords(task);
  auto columns = stale ? db.StaleTaskRecordColumns(task) : db.TaskRecordColumns(task);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_TRUE(columns.ok()) << columns.status();
  ASSERT_EQ(columns->size(), records->size());
  for (size_t i = 0; i < records->size(); ++i) {
    const Record& r = (*records)[i];
    EXPECT_EQ(columns->ConfigOf(i), r.config) << i;
    EXPECT_EQ(columns->status[i], r.status) << i;
    EXPECT_EQ(std::isnan(columns->time_ms[i]), !r.time_ms.has_value()) << i;
    if (r.time_ms) {
      EXPECT_EQ(columns->time_ms[i], *r.time_ms) << i;
    }
    EXPECT_EQ(std::isnan(columns->max_rel_error[i]), !r.max_rel_error.has_value()) << i;
    if (r.max_rel_error) {
      EXPECT_EQ(columns->max_rel_error[i], *r.max_rel_error) << i;
    }
  }
  auto by_handle = db.RecordsByHandle(columns->handles);
  ASSERT_TRUE(by_handle.ok()) << by_handle.status();
  ASSERT_EQ(by_handle->size(), records->size());
  for (size_t i = 0; i < records->size(); ++i) {
    EXPECT_EQ(RecordToJsonLine((*by_handle)[i]), RecordToJsonLine((*records)[i])) << i;
  }
}

TEST_P(TuningDatabaseConformanceTest, TaskColumnsAreTheTaskRecordsAsColumns) {
  // Batches of many sizes (the SQLite store merges its chunks as they come), repeats of the same
  // configuration, failures, an unknown time, a second device of the class, other tasks.
  int64_t added = 0;
  for (int batch = 0; batch < 24; ++batch) {
    std::vector<Record> records;
    for (int i = 0; i <= batch % 7; ++i) {
      const int64_t tile = 1 + (batch * 7 + i) % 37;
      Record r = MakeRecord("A100", tile,
                            (batch + i) % 6 == 0 ? std::nullopt : std::optional(1.0 + tile * 0.1),
                            "ampere", batch % 3 == 0 ? "535" : "550");
      r.measured_at_us = batch == 3 ? std::nullopt : std::optional<int64_t>(1000 + batch * 10 + i);
      if (batch % 4 == 1) r.max_rel_error = 1e-3 * i;
      if (batch % 8 == 2) r.config["split"] = std::string(i % 2 ? "yes" : "no");
      records.push_back(r);
      Record other = MakeRecord("H100", tile, 0.5, "hopper");
      other.measured_at_us = 1000 + batch * 10 + i;
      records.push_back(other);
    }
    auto n = db_->AddRecords(records);
    ASSERT_TRUE(n.ok()) << n.status();
    added += *n;
    ASSERT_EQ(*db_->AddRecords(records), 0);  // stored already: no column either
  }
  ASSERT_GT(added, 100);
  const Problem problem = MakeRecord("A100", 1, 1.0).problem;
  ExpectColumnsMatchRecords(*db_, {"gemm", "v1", problem, "A100"});
  ExpectColumnsMatchRecords(*db_, {"gemm", "", problem, "A100"});
  ExpectColumnsMatchRecords(*db_, {"gemm", "v1", problem, "H100"});
  ExpectColumnsMatchRecords(*db_, {"gemm", "v2", problem, "A100"});  // no records: none
  // Records before a stale boundary (and at an unknown time) leave the columns as they leave
  // the records.
  ASSERT_TRUE(db_->MarkStale({"gemm", "v1", problem, "A100"}, 1120).ok());
  ExpectColumnsMatchRecords(*db_, {"gemm", "v1", problem, "A100"});
  ExpectColumnsMatchRecords(*db_, {"gemm", "v1", problem, "A100"}, /*stale=*/true);
  EXPECT_GT(db_->StaleTaskRecordColumns({"gemm", "v1", problem, "A100"})->size(), 0u);
  EXPECT_LT(db_->TaskRecordColumns({"gemm", "v1", problem, "A100"})->size(),
            db_->TaskRecordColumns({"gemm", "v1", problem, "H100"})->size());
}

TEST_P(TuningDatabaseConformanceTest, AnUnknownHandleIsNotFound) {
  ASSERT_TRUE(db_->AddRecords({MakeRecord("A100", 16, 2.0)}).ok());
  auto columns = db_->TaskRecordColumns({"gemm", "v1", MakeRecord("A100", 1, 1.0).problem, "A100"});
  ASSERT_TRUE(columns.ok()) << columns.status();
  ASSERT_EQ(columns->size(), 1u);
  auto missing = db_->RecordsByHandle({columns->handles[0] + 1000});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

INSTANTIATE_TEST_SUITE_P(
    AllBackends, TuningDatabaseConformanceTest,
    ::testing::Values(Backend{"memory",
                              [](const std::string&) -> std::unique_ptr<TuningDatabase> {
                                return std::make_unique<MemoryTuningDatabase>();
                              }},
                      Backend{"sqlite",
                              [](const std::string& dir) -> std::unique_ptr<TuningDatabase> {
                                auto db = SqliteTuningDatabase::Open(dir + "/conformance.db");
                                EXPECT_TRUE(db.ok()) << db.status();
                                return std::move(db).value();
                              }},
                      // Reads through the writer's connection (":memory:", a read-only file).
                      Backend{"sqlite_one_connection",
                              [](const std::string& dir) -> std::unique_ptr<TuningDatabase> {
                                SqliteTuningDatabase::Options one;
                                one.read_connections = 0;
                                auto db = SqliteTuningDatabase::Open(dir + "/conformance.db", one);
                                EXPECT_TRUE(db.ok()) << db.status();
                                return std::move(db).value();
                              }}),
    [](const ::testing::TestParamInfo<Backend>& info) { return info.param.name; });

}  // namespace
}  // namespace ktune
