// What only the SQLite implementation promises: the file survives the process, old schemas
// migrate, newer schemas and foreign files are refused without being touched, and the journal is
// WAL. Files are inspected with the SQLite C API directly, not through the class under test.
#include "db/sqlite_tuning_database.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "db/sqlite_schema.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::ReadOnlyQuery;
using testing::ReadWholeFile;
using testing::TempDir;

Record SimpleRecord(int64_t x, double ms) {
  Record r;
  r.kernel = "softmax";
  r.problem = {{"rows", int64_t{4096}}};
  r.device = DeviceInfo::FromName("H100");
  r.config = {{"x", x}};
  r.time_ms = ms;
  r.source = "worker";
  return r;
}

void RawExec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
}

TEST(SqliteTuningDatabaseTest, RecordsSurviveReopening) {
  TempDir dir;
  std::string path = dir.File("k.db");
  {
    auto db = SqliteTuningDatabase::Open(path);
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_EQ(*(*db)->AddRecords({SimpleRecord(1, 2.0), SimpleRecord(2, 1.0)}), 2);
  }
  auto db = SqliteTuningDatabase::Open(path);
  ASSERT_TRUE(db.ok());
  EXPECT_EQ((*db)->Stats()->records, 2);
  BestQuery q{"softmax", "", {{"rows", int64_t{4096}}}, "", "H100", "", 1};
  EXPECT_DOUBLE_EQ(*(*db)->QueryBest(q)->records[0].time_ms, 1.0);
  EXPECT_TRUE((*db)->CheckIntegrity().ok());
}

// A shared, read-only copy of the tuning results (a folder where SQLite cannot create its -wal
// and -shm files) is read read-only and immutable: answers as usual, writes nothing, creates no
// file beside it. (Reading commands failed there: "attempt to write a readonly database".)
TEST(SqliteTuningDatabaseTest, AReadOnlyImmutableOpenAnswersAndWritesNothing) {
  TempDir dir;
  std::string path = dir.File("shared%copy?.db");  // characters a URI must escape
  {
    auto db = SqliteTuningDatabase::Open(path);
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_EQ(*(*db)->AddRecords({SimpleRecord(1, 2.0), SimpleRecord(2, 1.0)}), 2);
  }
  ASSERT_FALSE(std::filesystem::exists(path + "-wal"));  // checkpointed when it closed
  const std::string before = ReadWholeFile(path);
  SqliteTuningDatabase::Options options;
  options.read_only = true;
  options.immutable = true;
  auto db = SqliteTuningDatabase::Open(path, options);
  ASSERT_TRUE(db.ok()) << db.status();
  BestQuery q{"softmax", "", {{"rows", int64_t{4096}}}, "", "H100", "", 1};
  EXPECT_DOUBLE_EQ(*(*db)->QueryBest(q)->records[0].time_ms, 1.0);
  EXPECT_EQ((*db)->Stats()->records, 2);
  EXPECT_FALSE((*db)->AddRecords({SimpleRecord(3, 0.5)}).ok());
  db->reset();
  EXPECT_EQ(ReadWholeFile(path), before);
  EXPECT_FALSE(std::filesystem::exists(path + "-wal"));
  EXPECT_FALSE(std::filesystem::exists(path + "-shm"));
}

TEST(SqliteTuningDatabaseTest, UsesWalAndStoresItsSchemaVersion) {
  TempDir dir;
  std::string path = dir.File("k.db");
  auto db = SqliteTuningDatabase::Open(path);
  ASSERT_TRUE(db.ok());
  EXPECT_EQ((*db)->schema_version(), CurrentSqliteSchemaVersion());
  EXPECT_EQ(ReadOnlyQuery(path, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(ReadOnlyQuery(path, "SELECT value FROM meta WHERE key = 'version'"),
            std::to_string(CurrentSqliteSchemaVersion()));
}

// Commands that open a new file at once (two `db import`s, a server and a cron `best`) each
// create or upgrade it, one after the other: one failed with "table meta already exists".
TEST(SqliteTuningDatabaseTest, OpeningANewFileAtOnceFromManyConnectionsSucceeds) {
  for (int round = 0; round < 10; ++round) {
    TempDir dir;
    const std::string path = dir.File("new.db");
    std::vector<absl::Status> opened(4);
    std::vector<std::thread> threads;
    for (absl::Status& status : opened) {
      threads.emplace_back(
          [&path, &status] { status = SqliteTuningDatabase::Open(path).status(); });
    }
    for (std::thread& t : threads) t.join();
    for (const absl::Status& status : opened) EXPECT_TRUE(status.ok()) << status;
    EXPECT_EQ(ReadOnlyQuery(path, "SELECT value FROM meta WHERE key = 'version'"),
              std::to_string(CurrentSqliteSchemaVersion()));
  }
}

// Writes `r` into a file of schema version 1 or 2 with the SQL an older ktune ran (the records
// table had no payload column then). The file has no other rows.
void InsertAsBeforePayloads(const std::string& path, const Record& r) {
  std::string sql = absl::StrCat(
      "INSERT INTO kernels (id, name, version) VALUES (1, '", r.kernel, "', '", r.kernel_version,
      "');",
      "INSERT INTO workloads (id, kernel_id, problem_json, problem_hash) VALUES (1, 1, '",
      CanonicalJson(r.problem), "', '", ParamMapHash(r.problem), "');",
      "INSERT INTO devices (id, fingerprint_hash, fingerprint_json, device_class, family) VALUES "
      "(1, '", r.device.FingerprintHash(), "', '", r.device.fingerprint_json, "', '",
      r.device.device_class, "', '", r.device.family, "');",
      "INSERT INTO records (record_uid, workload_id, device_id, config_json, config_hash, status, "
      "message, time_ms, repeat_times_ms, median_ms, min_ms, stddev_ms, worker, measured_at_us, "
      "source) VALUES ('", r.RecordId(), "', 1, 1, '", CanonicalJson(r.config), "', '",
      r.ConfigHash(), "', 'ok', '', ", *r.time_ms, ", X'', NULL, NULL, NULL, '', NULL, '",
      r.source, "');");
  RawExec(path, sql);
}

// Files of every older version open, migrate to the current schema and keep their records, with
// the ids they were stored under (an empty payload is not hashed).
TEST(SqliteTuningDatabaseTest, OldSchemaMigratesKeepingItsRecords) {
  for (int version = 1; version < CurrentSqliteSchemaVersion(); ++version) {
    SCOPED_TRACE(absl::StrCat("from schema version ", version));
    TempDir dir;
    std::string path = dir.File("old.db");
    {
      SqliteTuningDatabase::Options old;
      old.target_version = version;
      auto db = SqliteTuningDatabase::Open(path, old);
      ASSERT_TRUE(db.ok()) << db.status();
      ASSERT_EQ((*db)->schema_version(), version);
    }
    const Record old_record = SimpleRecord(1, 2.0);
    InsertAsBeforePayloads(path, old_record);
    EXPECT_EQ(ReadOnlyQuery(path, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'jobs'"),
              version < 2 ? "0" : "1");
    auto db = SqliteTuningDatabase::Open(path);
    ASSERT_TRUE(db.ok()) << db.status();
    EXPECT_EQ((*db)->schema_version(), CurrentSqliteSchemaVersion());
    EXPECT_EQ((*db)->Stats()->records, 1);
    BestQuery q{"softmax", "", {{"rows", int64_t{4096}}}, "", "H100", "", 1};
    auto best = (*db)->QueryBest(q);
    ASSERT_TRUE(best.ok()) << best.status();
    ASSERT_EQ(best->records.size(), 1u);
    EXPECT_EQ(best->records[0].payload, "");
    EXPECT_EQ(best->records[0].RecordId(), old_record.RecordId());
    EXPECT_EQ(*(*db)->AddRecords({old_record}), 0);  // the same id: already there
    Job job;
    job.name = "after-migration";
    EXPECT_TRUE((*db)->CreateJob(job).ok());  // the table added by migration 1 -> 2 works
    Record with_payload = SimpleRecord(2, 1.0);
    with_payload.payload = R"(["tvm", "record"])";
    EXPECT_EQ(*(*db)->AddRecords({with_payload}), 1);  // the column added by 2 -> 3 works
    EXPECT_EQ((*db)->QueryBest(q)->records[0].payload, with_payload.payload);
    // 4 -> 5 rebuilt the records table: the measured error and the too_inaccurate status work,
    // and the old record still answers (it has no measured error, so no budget admits it).
    Record inaccurate = SimpleRecord(3, 0.5);
    inaccurate.status = MeasurementStatus::kTooInaccurate;
    inaccurate.time_ms.reset();
    inaccurate.repeat_times_ms = {0.5};
    FillRepeatStatistics(inaccurate);
    inaccurate.max_rel_error = 0.02;
    Record accurate = SimpleRecord(4, 1.5);
    accurate.max_rel_error = 1e-6;
    EXPECT_EQ(*(*db)->AddRecords({inaccurate, accurate}), 2);
    BestQuery budgeted = q;
    budgeted.max_rel_error = 1e-3;
    ASSERT_EQ((*db)->QueryBest(budgeted)->records.size(), 1u);
    EXPECT_EQ((*db)->QueryBest(budgeted)->records[0].RecordId(), accurate.RecordId());
    EXPECT_EQ((*db)->Stats()->records_by_status.at("too_inaccurate"), 1);
    // 5 -> 6 stored the old records as columns, and later writes added theirs.
    auto columns = (*db)->TaskRecordColumns({"softmax", "", {{"rows", int64_t{4096}}}, "H100"});
    ASSERT_TRUE(columns.ok()) << columns.status();
    EXPECT_EQ(columns->size(), 4u);
    EXPECT_TRUE((*db)->CheckIntegrity().ok());
  }
}

// One record per write, 200 writes: the stored columns stay at most log2(200) + 1 chunks, and
// hold every record.
TEST(SqliteTuningDatabaseTest, StoredColumnsStayAFewChunksPerTask) {
  TempDir dir;
  std::string path = dir.File("k.db");
  auto db = SqliteTuningDatabase::Open(path);
  ASSERT_TRUE(db.ok()) << db.status();
  for (int64_t x = 0; x < 200; ++x) {
    ASSERT_EQ(*(*db)->AddRecords({SimpleRecord(x, 1.0 + x)}), 1);
  }
  EXPECT_LE(std::stoi(ReadOnlyQuery(path, "SELECT COUNT(*) FROM task_columns")), 8);
  EXPECT_EQ(ReadOnlyQuery(path, "SELECT SUM(records) FROM task_columns"), "200");
  auto columns = (*db)->TaskRecordColumns({"softmax", "", {{"rows", int64_t{4096}}}, "H100"});
  ASSERT_TRUE(columns.ok()) << columns.status();
  EXPECT_EQ(columns->size(), 200u);
}

TEST(SqliteTuningDatabaseTest, NewerSchemaIsRefusedAndLeftUntouched) {
  TempDir dir;
  std::string path = dir.File("future.db");
  {
    auto db = SqliteTuningDatabase::Open(path);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->AddRecords({SimpleRecord(1, 2.0)}).ok());
  }
  RawExec(path,
          "UPDATE meta SET value = '99' WHERE key = 'version'; PRAGMA wal_checkpoint(TRUNCATE);");
  std::string before = ReadWholeFile(path);
  auto db = SqliteTuningDatabase::Open(path);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(db.status().message(), HasSubstr("newer ktune"));
  EXPECT_THAT(db.status().message(), HasSubstr(path));
  EXPECT_EQ(ReadWholeFile(path), before);
}

// A version below 1 is no version: refused, whichever way the file is opened (a negative one
// crashed the migration).
TEST(SqliteTuningDatabaseTest, ANegativeSchemaVersionIsRefusedAndLeftUntouched) {
  TempDir dir;
  std::string path = dir.File("negative.db");
  {
    auto db = SqliteTuningDatabase::Open(path);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->AddRecords({SimpleRecord(1, 2.0)}).ok());
  }
  RawExec(path,
          "UPDATE meta SET value = '-1' WHERE key = 'version'; PRAGMA wal_checkpoint(TRUNCATE);");
  std::string before = ReadWholeFile(path);
  for (bool upgrade : {false, true}) {
    SqliteTuningDatabase::Options options;
    options.upgrade = upgrade;
    auto db = SqliteTuningDatabase::Open(path, options);
    ASSERT_FALSE(db.ok());
    EXPECT_EQ(db.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(db.status().message(), HasSubstr("no valid schema version"));
  }
  EXPECT_EQ(ReadWholeFile(path), before);
}

TEST(SqliteTuningDatabaseTest, AFileThatIsNotADatabaseIsRefusedAndLeftUntouched) {
  TempDir dir;
  std::string path = dir.File("notes.txt");
  std::ofstream(path) << "these are my notes, not a database\n" << std::string(4096, 'x');
  std::string before = ReadWholeFile(path);
  auto db = SqliteTuningDatabase::Open(path);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(db.status().message(), HasSubstr(path));
  // The user is told what the file is, not which statement met it.
  EXPECT_THAT(db.status().message(), HasSubstr("not a ktune database"));
  EXPECT_THAT(db.status().message(), Not(HasSubstr("SELECT")));
  EXPECT_EQ(ReadWholeFile(path), before);
}

// A damaged ktune database is named and called damaged, not reported by the statement that met it.
TEST(SqliteTuningDatabaseTest, ADamagedDatabaseSaysSo) {
  TempDir dir;
  std::string path = dir.File("k.db");
  ASSERT_TRUE(SqliteTuningDatabase::Open(path).ok());
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);  // past SQLite's header: the schema's page
    f << std::string(8000, '\xff');
  }
  auto db = SqliteTuningDatabase::Open(path);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(db.status().message(), HasSubstr("is damaged"));
  EXPECT_THAT(db.status().message(), HasSubstr(path));
  EXPECT_THAT(db.status().message(), Not(HasSubstr("SELECT")));
}

// Another program's SQLite database is not taken over: ktune's tables are not added to it.
TEST(SqliteTuningDatabaseTest, AnotherProgramsDatabaseIsRefusedAndLeftUntouched) {
  TempDir dir;
  // A SQLite file another program made with `sql`.
  auto made_by_sqlite = [&](const std::string& name, const char* sql) {
    const std::string file = dir.File(name);
    sqlite3* raw = nullptr;
    EXPECT_EQ(sqlite3_open(file.c_str(), &raw), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(raw, sql, nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(raw);
    return file;
  };
  const std::string path = made_by_sqlite(
      "app.db", "CREATE TABLE customers (name TEXT); INSERT INTO customers VALUES ('ada')");
  std::string before = ReadWholeFile(path);
  auto db = SqliteTuningDatabase::Open(path);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(db.status().message(), HasSubstr("another program (tables customers)"));
  EXPECT_THAT(db.status().message(), HasSubstr("not modified"));
  EXPECT_EQ(ReadWholeFile(path), before);
  // So is one with a table named meta (a common name), even with a version in it.
  const std::string with_meta = made_by_sqlite(
      "meta.db",
      "CREATE TABLE meta (key TEXT, value TEXT); INSERT INTO meta VALUES ('version', '1')");
  const std::string meta_before = ReadWholeFile(with_meta);
  auto meta = SqliteTuningDatabase::Open(with_meta);
  ASSERT_FALSE(meta.ok());
  EXPECT_THAT(meta.status().message(), HasSubstr("another program (tables meta)"));
  EXPECT_EQ(ReadWholeFile(with_meta), meta_before);
  // An empty SQLite file (no tables) is a new database.
  EXPECT_TRUE(SqliteTuningDatabase::Open(made_by_sqlite("empty.db", "")).ok());
}

TEST(SqliteTuningDatabaseTest, AnUnopenablePathSaysWhy) {
  auto db = SqliteTuningDatabase::Open("/nonexistent-dir/ktune.db");
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(db.status().message(), HasSubstr("/nonexistent-dir/ktune.db"));
}

// A second process holding the write lock makes a write wait up to the busy timeout, then fail
// with Aborted (retry), storing nothing.
TEST(SqliteTuningDatabaseTest, AWriteBlockedByAnotherWriterFailsCleanly) {
  TempDir dir;
  std::string path = dir.File("k.db");
  SqliteTuningDatabase::Options quick;
  quick.busy_timeout_ms = 50;
  auto db = SqliteTuningDatabase::Open(path, quick);
  ASSERT_TRUE(db.ok());
  sqlite3* other = nullptr;
  sqlite3_open(path.c_str(), &other);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  auto added = (*db)->AddRecords({SimpleRecord(1, 1.0)});
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  ASSERT_FALSE(added.ok());
  EXPECT_EQ(added.status().code(), absl::StatusCode::kAborted);
  // What an operator acts on (the file, busy, who may hold it), not the statement that met it.
  EXPECT_THAT(added.status().message(), HasSubstr(path + ": the database is busy"));
  EXPECT_THAT(added.status().message(), HasSubstr("another process"));
  EXPECT_THAT(added.status().message(), Not(HasSubstr("INSERT")));
  EXPECT_EQ((*db)->Stats()->records, 0);
  EXPECT_EQ(*(*db)->AddRecords({SimpleRecord(1, 1.0)}), 1);  // and works once the lock is gone
}

// Reads do not queue behind the writer: while a write waits for another process's lock (holding
// this database's writer all the while), a QueryBest, a job listing and a walk over the records
// are answered from the last committed state; the write stores its record once the lock is gone.
// With one connection for both, every read waited as long as the write did (up to the busy
// timeout, two minutes here), and so did a server's every query behind a slow commit.
TEST(SqliteTuningDatabaseTest, ReadsAreAnsweredWhileAWriteWaits) {
  TempDir dir;
  std::string path = dir.File("k.db");
  SqliteTuningDatabase::Options patient;
  patient.busy_timeout_ms = 120'000;
  auto db = SqliteTuningDatabase::Open(path, patient);
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_EQ(*(*db)->AddRecords({SimpleRecord(1, 2.0)}), 1);
  sqlite3* other = nullptr;
  sqlite3_open(path.c_str(), &other);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);

  absl::StatusOr<int64_t> added;
  absl::Notification write_entered;
  std::thread writer([&] {
    write_entered.Notify();
    added = (*db)->AddRecords({SimpleRecord(2, 1.0)});
  });
  // The writer thread is running before the reads start (it could be slow to start on a busy
  // machine), then given 200 ms to reach `other`'s lock inside AddRecords. That it got there is
  // not observable from outside SQLite: on a machine too slow for that, the reads run beside a
  // write not yet waiting, and the test passes without its case. (The write cannot end before
  // the ROLLBACK below, so "still waiting when the reads were answered" is no check.)
  ASSERT_TRUE(write_entered.WaitForNotificationWithTimeout(absl::Seconds(30)));
  absl::SleepFor(absl::Milliseconds(200));
  const BestQuery q{"softmax", "", {{"rows", int64_t{4096}}}, "", "H100", "", 1};
  absl::StatusOr<BestResult> best;
  absl::StatusOr<std::vector<TuningDatabase::JobSummary>> jobs;
  int walked = 0;
  absl::Status walk;
  absl::Notification read;
  std::thread reader([&] {  // a thread, so that the lock is released even if the reads wait
    best = (*db)->QueryBest(q);
    jobs = (*db)->ListJobSummaries();
    walk = (*db)->ForEachRecord([&](const Record&) {
      ++walked;
      return absl::OkStatus();
    });
    read.Notify();
  });
  const bool read_while_locked = read.WaitForNotificationWithTimeout(absl::Seconds(30));
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  reader.join();
  writer.join();

  EXPECT_TRUE(read_while_locked) << "the reads waited for the write";
  ASSERT_TRUE(best.ok()) << best.status();
  ASSERT_EQ(best->records.size(), 1u);
  EXPECT_DOUBLE_EQ(*best->records[0].time_ms, 2.0);  // the waiting write is not committed yet
  EXPECT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_TRUE(walk.ok()) << walk;
  EXPECT_EQ(walked, 1);
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(*added, 1);
  auto after = (*db)->QueryBest(q);  // a read after the commit sees it
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_DOUBLE_EQ(*after->records[0].time_ms, 1.0);
}

}  // namespace
}  // namespace ktune
