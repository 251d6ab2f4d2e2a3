#include "db/sqlite_tuning_database.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <set>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "db/device_family.h"
#include "db/sqlite_schema.h"
#include "db/sqlite_task_columns.h"
#include "db/sqlite_util.h"

namespace ktune {
namespace {

// --- SQL ---------------------------------------------------------------------------------------

// The tables of the file, other than SQLite's own: 'meta' marks a ktune database.
constexpr char kTableNames[] =
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE "
    "'\\' ORDER BY name";
constexpr char kSelectVersion[] = "SELECT value FROM meta WHERE key = 'version'";

constexpr char kInsertKernel[] = "INSERT OR IGNORE INTO kernels (name, version) VALUES (?, ?)";
constexpr char kSelectKernel[] = "SELECT id FROM kernels WHERE name = ? AND version = ?";
constexpr char kInsertWorkload[] =
    "INSERT OR IGNORE INTO workloads (kernel_id, problem_json, problem_hash) VALUES (?, ?, ?)";
constexpr char kSelectWorkload[] =
    "SELECT id FROM workloads WHERE kernel_id = ? AND problem_hash = ?";
constexpr char kInsertDevice[] =
    "INSERT OR IGNORE INTO devices (fingerprint_hash, fingerprint_json, device_class, family) "
    "VALUES (?, ?, ?, ?)";
constexpr char kSelectDevice[] = "SELECT id, device_class FROM devices WHERE fingerprint_hash = ?";
constexpr char kInsertRecord[] =
    "INSERT OR IGNORE INTO records (record_uid, workload_id, device_id, config_json, config_hash, "
    "status, message, time_ms, repeat_times_ms, median_ms, min_ms, stddev_ms, worker, "
    "measured_at_us, source, payload, max_rel_error) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

// Columns read by RecordReader, in this order, and the tables they come from.
constexpr char kRecordColumns[] =
    "SELECT k.name, k.version, w.problem_json, d.fingerprint_json, d.device_class, d.family, "
    "r.config_json, r.status, r.message, r.time_ms, r.repeat_times_ms, r.median_ms, r.min_ms, "
    "r.stddev_ms, r.worker, r.measured_at_us, r.source, r.record_uid, r.config_hash, r.payload, "
    "r.max_rel_error ";
constexpr char kRecordJoins[] =
    "FROM records r JOIN workloads w ON r.workload_id = w.id "
    "JOIN kernels k ON w.kernel_id = k.id JOIN devices d ON r.device_id = d.id ";
constexpr char kById[] = "WHERE r.id = ?1";
constexpr char kWorkloadFilter[] =
    "WHERE k.name = ?1 AND (?2 = '' OR k.version = ?2) AND w.problem_hash = ?3 ";
// Restricts the records selected to the devices whose `column` is ?4. A subquery rather than a
// filter on the joined devices row, so that SQLite narrows records_by_task to (workload, device,
// status) instead of reading every device's records of the workload.
std::string OnDevicesWhere(const char* column) {
  return absl::StrCat("AND r.device_id IN (SELECT id FROM devices WHERE ", column, " = ?4) ");
}
// Stale records (MarkStale) were measured before the boundary of their kernel, problem and device
// class, or at an unknown time. `stale` false leaves them out; true keeps only them.
std::string Staleness(bool stale) {
  return absl::StrCat("AND COALESCE(r.measured_at_us, 0) ", stale ? "<" : ">=",
                      " COALESCE((SELECT s.before_us FROM stale_tasks s WHERE s.kernel = k.name "
                      "AND s.problem_hash = w.problem_hash AND s.device_class = d.device_class), "
                      "0) ");
}
// With an accuracy budget (?5): only records whose measured error is known and within it.
constexpr char kWithinBudget[] = "AND r.max_rel_error IS NOT NULL AND r.max_rel_error <= ?5 ";
constexpr char kFamilyOfClass[] =
    "SELECT family FROM devices WHERE device_class = ? AND family != '' ORDER BY id LIMIT 1";
constexpr char kAllRecordsOrder[] = "ORDER BY r.id";
// The (workload, device) pairs with records, from the task columns kept in step with the records
// (a few rows per pair: 4 ms on a 1,000,000-record file where reading the records took 340 ms),
// or from the records where the schema has no task columns yet.
std::string ListTasksFrom(const char* table) {
  return absl::StrCat("SELECT DISTINCT k.name, k.version, w.problem_json, d.device_class FROM ",
                      table,
                      " r JOIN workloads w ON r.workload_id = w.id "
                      "JOIN kernels k ON w.kernel_id = k.id JOIN devices d ON r.device_id = d.id "
                      "ORDER BY k.name, k.version, w.problem_json, d.device_class");
}

// A task from the first four columns of `s`'s row: kernel, version, problem JSON, device class
// (ListTasksFrom's, kSelectJobTasks', SummarizeSource's).
absl::StatusOr<TaskKey> TaskKeyOfRow(const SqliteStatement& s) {
  TaskKey t;
  t.kernel = s.ColumnText(0);
  t.kernel_version = s.ColumnText(1);
  KTUNE_ASSIGN_OR_RETURN(t.problem, ParseParamMapJson(s.ColumnText(2)));
  t.device_class = s.ColumnText(3);
  return t;
}

constexpr char kCountKernels[] = "SELECT COUNT(*) FROM kernels";
constexpr char kCountWorkloads[] = "SELECT COUNT(*) FROM workloads";
constexpr char kCountDevices[] = "SELECT COUNT(*) FROM devices";
constexpr char kCountRecordsByStatus[] =
    "SELECT status, COUNT(*) FROM records GROUP BY status ORDER BY status";
constexpr char kCountJobs[] = "SELECT COUNT(*) FROM jobs";

constexpr char kInsertJob[] =
    "INSERT INTO jobs (name, spec_json, strategy, priority, state, message, created_at_us, "
    "updated_at_us) VALUES (?, ?, ?, ?, 'queued', '', ?, ?)";
constexpr char kInsertJobTask[] =
    "INSERT INTO job_tasks (job_id, task_index, kernel, kernel_version, problem_json, "
    "device_class, state, budget, measurements_done) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
constexpr char kSelectJob[] =
    "SELECT id, name, spec_json, strategy, priority, state, message, created_at_us, "
    "updated_at_us FROM jobs WHERE id = ?";
constexpr char kSelectJobSummaries[] =
    "SELECT j.id, j.name, j.spec_json, j.strategy, j.priority, j.state, j.message, "
    "j.created_at_us, j.updated_at_us, count(t.task_index), coalesce(sum(t.budget), 0), "
    "coalesce(sum(t.measurements_done), 0) FROM jobs j LEFT JOIN job_tasks t ON t.job_id = j.id "
    "GROUP BY j.id ORDER BY j.id DESC";
constexpr char kSelectJobTasks[] =
    "SELECT kernel, kernel_version, problem_json, device_class, state, budget, "
    "measurements_done FROM job_tasks WHERE job_id = ? ORDER BY task_index";
constexpr char kUpdateJobState[] =
    "UPDATE jobs SET state = ?, message = ?, updated_at_us = ? WHERE id = ?";
// measurements_done never goes down: a report's count (AddJobRecords) committed while the
// scheduler wrote a task's progress it had read before is kept.
constexpr char kUpdateJobTask[] =
    "UPDATE job_tasks SET state = ?, measurements_done = MAX(measurements_done, ?) "
    "WHERE job_id = ? AND task_index = ?";
constexpr char kTouchJob[] = "UPDATE jobs SET updated_at_us = ? WHERE id = ?";
constexpr char kTouchAndStartJob[] =
    "UPDATE jobs SET updated_at_us = ?, state = CASE state WHEN 'queued' THEN 'running' ELSE "
    "state END WHERE id = ?";
constexpr char kCountJobTask[] =
    "UPDATE job_tasks SET measurements_done = measurements_done + ?1, state = CASE state WHEN "
    "'queued' THEN 'running' ELSE state END WHERE job_id = ?2 AND task_index = ?3";
constexpr char kUpsertCheckpoint[] =
    "INSERT INTO agent_checkpoints (key, blob, updated_at_us) VALUES (?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET blob = excluded.blob, updated_at_us = excluded.updated_at_us";
constexpr char kSelectCheckpoint[] = "SELECT blob FROM agent_checkpoints WHERE key = ?";

// --- helpers -----------------------------------------------------------------------------------

int64_t NowUs() { return absl::ToUnixMicros(absl::Now()); }

std::string PackDoubles(const std::vector<double>& v) {
  std::string out(v.size() * sizeof(double), '\0');
  if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());  // x86-64 and arm64: little-endian
  return out;
}

std::vector<double> UnpackDoubles(const std::string& blob) {
  std::vector<double> v(blob.size() / sizeof(double));
  if (!v.empty()) std::memcpy(v.data(), blob.data(), v.size() * sizeof(double));
  return v;
}

absl::StatusOr<int64_t> QueryInt(sqlite3* db, const char* sql) {
  KTUNE_ASSIGN_OR_RETURN(SqliteStatement s, SqliteStatement::Prepare(db, sql));
  KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
  return row ? s.ColumnInt(0) : 0;
}

// Reads rows of kRecordColumns. Rows of one task share their problem: its JSON is parsed once
// per run of equal rows.
class RecordReader {
 public:
  absl::StatusOr<Record> Read(const SqliteStatement& s);

 private:
  bool has_problem_ = false;
  std::string problem_json_;
  Problem problem_;
};

absl::StatusOr<Record> RecordReader::Read(const SqliteStatement& s) {
  Record r;
  r.kernel = s.ColumnText(0);
  r.kernel_version = s.ColumnText(1);
  if (std::string problem_json = s.ColumnText(2); !has_problem_ || problem_json != problem_json_) {
    KTUNE_ASSIGN_OR_RETURN(problem_, ParseParamMapJson(problem_json));
    problem_json_ = std::move(problem_json);
    has_problem_ = true;
  }
  r.problem = problem_;
  r.device.fingerprint_json = s.ColumnText(3);
  r.device.device_class = s.ColumnText(4);
  r.device.family = s.ColumnText(5);
  KTUNE_ASSIGN_OR_RETURN(r.config, ParseParamMapJson(s.ColumnText(6)));
  KTUNE_ASSIGN_OR_RETURN(r.status, ParseStatusName(s.ColumnText(7)));
  r.message = s.ColumnText(8);
  r.time_ms = s.ColumnOptionalDouble(9);
  r.repeat_times_ms = UnpackDoubles(s.ColumnBlob(10));
  r.median_ms = s.ColumnOptionalDouble(11);
  r.min_ms = s.ColumnOptionalDouble(12);
  r.stddev_ms = s.ColumnOptionalDouble(13);
  r.worker = s.ColumnText(14);
  r.measured_at_us = s.ColumnOptionalInt(15);
  r.source = s.ColumnText(16);
  r.payload = s.ColumnText(19);
  r.max_rel_error = s.ColumnOptionalDouble(20);
  return r;
}

// A telemetry report from a row of ForEachTelemetry's query (column 0 is the row's id).
absl::StatusOr<TelemetryReport> TelemetryOfRow(const SqliteStatement& s) {
  TelemetryReport r;
  r.kernel = s.ColumnText(1);
  r.kernel_version = s.ColumnText(2);
  KTUNE_ASSIGN_OR_RETURN(r.problem, ParseParamMapJson(s.ColumnText(3)));
  r.device = {s.ColumnText(4), s.ColumnText(5), s.ColumnText(6)};
  KTUNE_ASSIGN_OR_RETURN(r.config, ParseParamMapJson(s.ColumnText(7)));
  r.count = s.ColumnInt(8);
  r.mean_ms = s.ColumnDouble(9);
  r.stddev_ms = s.ColumnDouble(10);
  r.window_start_us = s.ColumnInt(11);
  r.window_end_us = s.ColumnInt(12);
  r.received_at_us = s.ColumnInt(13);
  r.reporter = s.ColumnText(14);
  return r;
}

// Looks up or creates the id of a row identified by a unique key.
absl::StatusOr<int64_t> InternRow(SqliteStatement& insert, SqliteStatement& select) {
  KTUNE_RETURN_IF_ERROR(insert.Run());
  insert.Reset();
  KTUNE_ASSIGN_OR_RETURN(bool row, select.Step());
  if (!row) return absl::InternalError("row vanished right after INSERT OR IGNORE");
  int64_t id = select.ColumnInt(0);
  select.Reset();
  return id;
}

// Data loss (a damaged file or one that is not a database) names its file already.
absl::Status WithPath(const absl::Status& st, const std::string& path) {
  if (st.ok() || absl::IsDataLoss(st)) return st;
  return absl::Status(st.code(), absl::StrCat(path, ": ", st.message()));
}

// A read connection to `file` (the absolute name SQLite gives the writer's file: the process may
// change its working folder later). Read-only: a read connection never writes, whatever runs on it.
absl::StatusOr<sqlite3*> OpenReadConnection(const std::string& file, int busy_timeout_ms) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(file.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status st = SqliteError(rc, raw, absl::StrCat("cannot open a read connection to ", file));
    sqlite3_close(raw);
    return st;
  }
  sqlite3_busy_timeout(raw, busy_timeout_ms);
  sqlite3_extended_result_codes(raw, 1);
  return raw;
}

}  // namespace

template <typename Fn>
auto SqliteTuningDatabase::Read(Fn&& fn) {
  using Result = decltype(fn(static_cast<sqlite3*>(nullptr)));
  if (readers_ != nullptr) {
    absl::StatusOr<SqliteReaders::Lease> lease = readers_->Borrow();
    if (!lease.ok()) return Result(WithPath(lease.status(), path_));
    return fn(lease->db());
  }
  absl::MutexLock lock(&mu_);
  return fn(db_);
}

// --- opening and migrations --------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<SqliteTuningDatabase>> SqliteTuningDatabase::Open(
    const std::string& path, Options options) {
  sqlite3* raw = nullptr;
  // NOMUTEX (SQLite's multi-thread mode): every use of the connection is under mu_ (db_ is
  // ABSL_GUARDED_BY it), so SQLite's own per-connection mutex only added a lock and an unlock to
  // every call, each column read included (5% of explain's instructions on an 11,000-record task).
  int rc = SQLITE_OK;
  if (options.read_only) {
    // A URI, for its parameters: the path's reserved characters escaped.
    std::string uri = "file:";
    for (char c : path) {
      if (c == '%' || c == '?' || c == '#') {
        absl::StrAppend(&uri, absl::StrFormat("%%%02X", static_cast<unsigned char>(c)));
      } else {
        uri.push_back(c);
      }
    }
    absl::StrAppend(&uri, options.immutable ? "?immutable=1" : "?mode=ro");
    rc = sqlite3_open_v2(uri.c_str(), &raw,
                         SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, nullptr);
  } else {
    rc = sqlite3_open_v2(path.c_str(), &raw,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  }
  if (rc != SQLITE_OK) {
    absl::Status st = SqliteError(rc, raw, absl::StrCat("cannot open database ", path));
    sqlite3_close(raw);
    return st;
  }
  std::unique_ptr<SqliteTuningDatabase> db(new SqliteTuningDatabase(raw, path));
  sqlite3_busy_timeout(raw, options.busy_timeout_ms);
  sqlite3_extended_result_codes(raw, 1);

  // Read the stored version before anything writes to the file.
  std::vector<std::string> tables;
  {
    auto s = SqliteStatement::Prepare(raw, kTableNames);
    if (!s.ok()) return WithPath(s.status(), path);
    for (;;) {
      auto row = s->Step();
      if (!row.ok()) return WithPath(row.status(), path);
      if (!*row) break;
      tables.push_back(s->ColumnText(0));
    }
  }
  auto has_table = [&](const char* name) {
    return std::find(tables.begin(), tables.end(), name) != tables.end();
  };
  // ktune's first schema made meta and records together: a meta table alone is another
  // program's (a common name).
  const bool has_meta = has_table("meta") && has_table("records");
  if (!has_meta && !tables.empty()) {
    // Another program's database: adding ktune's tables to it would change a file that is not ours.
    if (tables.size() > 5) tables.resize(5);
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": an SQLite database of another program (tables ", absl::StrJoin(tables, ", "),
        "), not a ktune database; it was not modified. Give --db a ktune database or a new file"));
  }
  int stored = 0;
  if (has_meta) {
    auto s = SqliteStatement::Prepare(raw, kSelectVersion);
    if (!s.ok()) return WithPath(s.status(), path);
    auto row = s->Step();
    if (!row.ok()) return WithPath(row.status(), path);
    // Versions start at 1 (a negative one crashed the migration, which indexes by it).
    if (!*row || !absl::SimpleAtoi(s->ColumnText(0), &stored) || stored < 1) {
      return absl::DataLossError(absl::StrCat(path, ": meta table has no valid schema version"));
    }
  }
  if (stored > CurrentSqliteSchemaVersion()) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": written by a newer ktune (schema version ", stored, "; this build knows up to ",
        CurrentSqliteSchemaVersion(), "). Upgrade ktune; the file was not modified."));
  }
  if (!options.upgrade && !options.read_only) {
    if (!has_meta) {
      return absl::FailedPreconditionError(absl::StrCat(
          path,
          ": an SQLite file without ktune's tables; it was not modified. A copy of a "
          "database in use needs its -wal file too (copy both, or stop the server first)"));
    }
    if (stored < CurrentSqliteSchemaVersion()) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, ": written by an older ktune (schema version ", stored, "; this build uses ",
          CurrentSqliteSchemaVersion(),
          "). This command does not upgrade it, and older ktune versions cannot read it once "
          "upgraded: back it up, then run ktune db migrate --db ",
          path));
    }
  }
  if (options.read_only) {
    db->schema_version_ = stored;
    if (stored < CurrentSqliteSchemaVersion()) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, ": written by an older ktune (schema version ", stored,
          "); it is read-only here, and reading it needs the upgrade ktune db migrate makes"));
    }
    return db;
  }
  // Turning WAL on takes the file's exclusive lock, and SQLite does not wait for it (no busy
  // handler): another process opening a new file at the same moment got "database is locked".
  absl::Status st;
  const absl::Time give_up = absl::Now() + absl::Milliseconds(options.busy_timeout_ms);
  while (!(st = SqliteExec(raw, "PRAGMA journal_mode = WAL")).ok() && absl::IsAborted(st) &&
         absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (st.ok()) st = SqliteExec(raw, "PRAGMA synchronous = FULL");
  if (st.ok()) st = SqliteExec(raw, "PRAGMA foreign_keys = ON");
  if (!st.ok()) return WithPath(st, path);
  db->schema_version_ = stored;
  int target = options.target_version > 0 ? options.target_version : CurrentSqliteSchemaVersion();
  {
    absl::MutexLock lock(&db->mu_);
    st = db->Migrate(target);
  }
  if (!st.ok()) return WithPath(st, path);
  // Read connections only in WAL mode: in a rollback journal (a file system without shared
  // memory) a reader's lock would make the writer wait, the stall they exist to remove.
  std::string journal;
  {
    auto s = SqliteStatement::Prepare(raw, "PRAGMA journal_mode");
    if (!s.ok()) return WithPath(s.status(), path);
    auto row = s->Step();
    if (!row.ok()) return WithPath(row.status(), path);
    if (*row) journal = s->ColumnText(0);
  }
  const std::string file = sqlite3_db_filename(raw, "main");
  if (options.read_connections > 0 && journal == "wal" && !file.empty()) {
    const int busy_timeout_ms = options.busy_timeout_ms;
    db->readers_ = std::make_unique<SqliteReaders>(
        [file, busy_timeout_ms] { return OpenReadConnection(file, busy_timeout_ms); },
        options.read_connections);
  }
  return db;
}

absl::Status SqliteTuningDatabase::Migrate(int target_version) {
  if (schema_version_ >= target_version) return absl::OkStatus();
  KTUNE_ASSIGN_OR_RETURN(SqliteTransaction txn, SqliteTransaction::Begin(db_));
  // Read again under the transaction's lock: another process may have migrated the file since
  // Open read it (two commands opening a new file at once: "table meta already exists").
  {
    KTUNE_ASSIGN_OR_RETURN(SqliteStatement has,
                           SqliteStatement::Prepare(db_,
                                                    "SELECT count(*) FROM sqlite_master WHERE "
                                                    "type = 'table' AND name = 'meta'"));
    KTUNE_ASSIGN_OR_RETURN(bool row, has.Step());
    if (row && has.ColumnInt(0) > 0) {
      KTUNE_ASSIGN_OR_RETURN(SqliteStatement s, SqliteStatement::Prepare(db_, kSelectVersion));
      KTUNE_ASSIGN_OR_RETURN(bool found, s.Step());
      int now = 0;
      if (found && absl::SimpleAtoi(s.ColumnText(0), &now)) schema_version_ = now;
      if (schema_version_ > CurrentSqliteSchemaVersion()) {
        return absl::FailedPreconditionError(
            absl::StrCat("written by a newer ktune meanwhile (schema version ", schema_version_,
                         "; this build knows up to ", CurrentSqliteSchemaVersion(), ")"));
      }
      if (schema_version_ >= target_version) return absl::OkStatus();  // nothing written
    }
  }
  for (int v = schema_version_; v < target_version; ++v) {
    absl::Status st = SqliteExec(db_, kSqliteMigrations[v]);
    if (st.ok() && v + 1 == kTaskColumnsSchemaVersion) st = StoreColumnsOfAllRecords(db_);
    if (!st.ok()) {
      return absl::Status(st.code(),
                          absl::StrCat("migrating schema ", v, " -> ", v + 1, ": ", st.message()));
    }
  }
  KTUNE_RETURN_IF_ERROR(txn.Commit());
  schema_version_ = target_version;
  return absl::OkStatus();
}

SqliteTuningDatabase::~SqliteTuningDatabase() {
  readers_.reset();  // the writer closes last: it checkpoints the WAL into the file
  absl::MutexLock lock(&mu_);
  sqlite3_close(db_);
}

absl::Status SqliteTuningDatabase::CheckIntegrity() {
  absl::MutexLock lock(&mu_);
  KTUNE_ASSIGN_OR_RETURN(SqliteStatement s,
                         SqliteStatement::Prepare(db_, "PRAGMA integrity_check"));
  std::string report;
  while (true) {
    KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    absl::StrAppend(&report, report.empty() ? "" : "; ", s.ColumnText(0));
  }
  if (report != "ok") {
    return absl::DataLossError(absl::StrCat(path_, ": integrity check failed: ", report));
  }
  if (schema_version_ < kTaskColumnsSchemaVersion) return absl::OkStatus();
  KTUNE_ASSIGN_OR_RETURN(std::vector<ColumnsMismatch> mismatches, FindColumnsMismatches(db_));
  if (mismatches.empty()) return absl::OkStatus();
  std::string which;
  for (size_t i = 0; i < mismatches.size() && i < 3; ++i) {
    const ColumnsMismatch& m = mismatches[i];
    absl::StrAppend(&which, i ? "; " : "", m.kernel, " ", m.problem_json, " on ", m.device_class,
                    ": ", m.records, " records, ", m.in_columns, " in its columns");
  }
  return absl::DataLossError(absl::StrCat(
      path_, ": the task columns are out of step with the records for ", mismatches.size(),
      " (workload, device) pair(s) (", which, mismatches.size() > 3 ? "; ..." : "",
      "): records were added or removed by something other than ktune. Rebuild the columns "
      "from the records (ktune db check --repair)"));
}

absl::Status SqliteTuningDatabase::RebuildTaskColumns() {
  absl::MutexLock lock(&mu_);
  if (schema_version_ < kTaskColumnsSchemaVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": schema version ", schema_version_, " keeps no task columns"));
  }
  KTUNE_ASSIGN_OR_RETURN(SqliteTransaction txn, SqliteTransaction::Begin(db_));
  KTUNE_RETURN_IF_ERROR(RebuildStoredColumns(db_));
  return txn.Commit();
}

// --- records -----------------------------------------------------------------------------------

// Ids of kernels+workloads and devices, created when missing, remembered within one write (most
// batches share one kernel, problem and device).
class RowInterner {
 public:
  static absl::StatusOr<RowInterner> Prepare(sqlite3* db) {
    KTUNE_ASSIGN_OR_RETURN(SqliteStatement insert_kernel,
                           SqliteStatement::Prepare(db, kInsertKernel));
    KTUNE_ASSIGN_OR_RETURN(SqliteStatement select_kernel,
                           SqliteStatement::Prepare(db, kSelectKernel));
    KTUNE_ASSIGN_OR_RETURN(SqliteStatement insert_workload,
                           SqliteStatement::Prepare(db, kInsertWorkload));
    KTUNE_ASSIGN_OR_RETURN(SqliteStatement select_workload,
                           SqliteStatement::Prepare(db, kSelectWorkload));
    KTUNE_ASSIGN_OR_RETURN(SqliteStatement insert_device,
                           SqliteStatement::Prepare(db, kInsertDevice));
    KTUNE_ASSIGN_OR_RETURN(SqliteStatement select_device,
                           SqliteStatement::Prepare(db, kSelectDevice));
    return RowInterner(std::move(insert_kernel), std::move(select_kernel),
                       std::move(insert_workload), std::move(select_workload),
                       std::move(insert_device), std::move(select_device));
  }

  absl::StatusOr<int64_t> WorkloadId(const std::string& kernel, const std::string& version,
                                     const Problem& problem) {
    std::string problem_json = CanonicalJson(problem);
    std::string key = absl::StrCat(kernel, "\n", version, "\n", problem_json);
    auto it = workload_ids_.find(key);
    if (it != workload_ids_.end()) return it->second;
    insert_kernel_.Bind(1, kernel).Bind(2, version);
    select_kernel_.Bind(1, kernel).Bind(2, version);
    KTUNE_ASSIGN_OR_RETURN(int64_t kernel_id, InternRow(insert_kernel_, select_kernel_));
    std::string problem_hash = ParamMapHash(problem);
    insert_workload_.Bind(1, kernel_id).Bind(2, problem_json).Bind(3, problem_hash);
    select_workload_.Bind(1, kernel_id).Bind(2, problem_hash);
    KTUNE_ASSIGN_OR_RETURN(int64_t id, InternRow(insert_workload_, select_workload_));
    workload_ids_.emplace(std::move(key), id);
    return id;
  }

  absl::StatusOr<int64_t> DeviceId(const DeviceInfo& device) {
    std::string fingerprint_hash = device.FingerprintHash();
    const std::string key = absl::StrCat(fingerprint_hash, "\n", device.device_class);
    auto it = device_ids_.find(key);
    if (it != device_ids_.end()) return it->second;
    insert_device_.Bind(1, fingerprint_hash)
        .Bind(2, device.fingerprint_json)
        .Bind(3, device.device_class)
        .Bind(4, device.family);
    select_device_.Bind(1, fingerprint_hash);
    KTUNE_ASSIGN_OR_RETURN(bool known, select_device_.Step());
    if (known) {
      // One device (fingerprint), one class: a record that files it under another class would
      // be stored under the first one's, and never found under its own.
      const int64_t id = select_device_.ColumnInt(0);
      const std::string stored_class = select_device_.ColumnText(1);
      select_device_.Reset();
      if (stored_class != device.device_class) return DeviceClassConflict(device, stored_class);
      device_ids_.emplace(key, id);
      return id;
    }
    select_device_.Reset();
    select_device_.Bind(1, fingerprint_hash);
    KTUNE_ASSIGN_OR_RETURN(int64_t id, InternRow(insert_device_, select_device_));
    device_ids_.emplace(key, id);
    return id;
  }

 private:
  RowInterner(SqliteStatement insert_kernel, SqliteStatement select_kernel,
              SqliteStatement insert_workload, SqliteStatement select_workload,
              SqliteStatement insert_device, SqliteStatement select_device)
      : insert_kernel_(std::move(insert_kernel)),
        select_kernel_(std::move(select_kernel)),
        insert_workload_(std::move(insert_workload)),
        select_workload_(std::move(select_workload)),
        insert_device_(std::move(insert_device)),
        select_device_(std::move(select_device)) {}

  SqliteStatement insert_kernel_, select_kernel_, insert_workload_, select_workload_,
      insert_device_, select_device_;
  absl::flat_hash_map<std::string, int64_t> workload_ids_, device_ids_;
};

absl::StatusOr<int64_t> SqliteTuningDatabase::AddRecords(const std::vector<Record>& records) {
  return AddJobRecords(records, {});
}

absl::StatusOr<int64_t> SqliteTuningDatabase::AddJobRecords(
    const std::vector<Record>& records, const std::vector<JobTaskCount>& counts) {
  for (const Record& r : records) KTUNE_RETURN_IF_ERROR(ValidateRecord(r));
  absl::MutexLock lock(&mu_);
  KTUNE_ASSIGN_OR_RETURN(SqliteTransaction txn, SqliteTransaction::Begin(db_));
  KTUNE_ASSIGN_OR_RETURN(RowInterner ids, RowInterner::Prepare(db_));
  KTUNE_ASSIGN_OR_RETURN(SqliteStatement insert_record,
                         SqliteStatement::Prepare(db_, kInsertRecord));
  int64_t added = 0;
  // The columns of the records stored, per (workload, device).
  std::map<std::pair<int64_t, int64_t>, TaskColumnsBuilder> columns;
  for (const Record& r : records) {
    KTUNE_ASSIGN_OR_RETURN(int64_t workload_id,
                           ids.WorkloadId(r.kernel, r.kernel_version, r.problem));
    KTUNE_ASSIGN_OR_RETURN(int64_t device_id, ids.DeviceId(r.device));
    std::string repeats = PackDoubles(r.repeat_times_ms);
    const std::string record_id = r.RecordId();
    insert_record.Bind(1, record_id)
        .Bind(2, workload_id)
        .Bind(3, device_id)
        .Bind(4, CanonicalJson(r.config))
        .Bind(5, r.ConfigHash())
        .Bind(6, StatusName(r.status))
        .Bind(7, r.message)
        .Bind(8, r.time_ms)
        .BindBlob(9, repeats.data(), repeats.size())
        .Bind(10, r.median_ms)
        .Bind(11, r.min_ms)
        .Bind(12, r.stddev_ms)
        .Bind(13, r.worker)
        .Bind(14, r.measured_at_us)
        .Bind(15, r.source)
        .Bind(16, r.payload)
        .Bind(17, r.max_rel_error);
    KTUNE_RETURN_IF_ERROR(insert_record.Run());
    if (sqlite3_changes(db_) == 1) {  // 0: a record with this id is stored already
      ++added;
      columns[{workload_id, device_id}].Add(sqlite3_last_insert_rowid(db_), r, record_id);
    }
    insert_record.Reset();
  }
  for (auto& [key, builder] : columns) {
    if (schema_version_ < kTaskColumnsSchemaVersion) break;  // an old file kept for a test
    KTUNE_RETURN_IF_ERROR(AppendStoredColumns(db_, key.first, key.second, builder.Take()));
  }
  if (!counts.empty()) {
    KTUNE_ASSIGN_OR_RETURN(SqliteStatement count, SqliteStatement::Prepare(db_, kCountJobTask));
    std::set<int64_t> jobs;
    for (const JobTaskCount& c : counts) {
      count.Bind(1, c.measured).Bind(2, c.job_id).Bind(3, static_cast<int64_t>(c.task_index));
      KTUNE_RETURN_IF_ERROR(count.Run());
      if (sqlite3_changes(db_) == 0) {  // the transaction rolls back: nothing is stored
        return absl::NotFoundError(absl::StrCat("job ", c.job_id, " has no task ", c.task_index));
      }
      count.Reset();
      jobs.insert(c.job_id);
    }
    KTUNE_ASSIGN_OR_RETURN(SqliteStatement touch, SqliteStatement::Prepare(db_, kTouchAndStartJob));
    for (int64_t job : jobs) {
      touch.Bind(1, NowUs()).Bind(2, job);
      KTUNE_RETURN_IF_ERROR(touch.Run());
      touch.Reset();
    }
  }
  KTUNE_RETURN_IF_ERROR(txn.Commit());
  return added;
}

// The record (row id) of each of the top_k fastest configurations of the query's workloads on the
// devices whose `column` is `value`: fastest first, ties by record id.
//
// Each (workload, device) pair's ok records are read in time order from records_by_task, at most
// `limit` at a time, so a large task costs a few index steps rather than a sort of all its
// records; the pairs are merged here. Rows a pair has not given yet are no faster than its last
// one, so the answer stands once the last winner is faster than every cut-off pair's last row;
// otherwise the cut-off pairs are read whole.
namespace {

absl::StatusOr<std::vector<int64_t>> RankBest(sqlite3* db, const BestQuery& q,
                                              const std::string& problem_hash, const char* column,
                                              const std::string& value, bool stale) {
  struct Pair {
    int64_t workload_id, device_id, stale_before_us;
  };
  std::vector<Pair> pairs;
  {
    KTUNE_ASSIGN_OR_RETURN(
        SqliteStatement s,
        SqliteStatement::Prepare(
            db, absl::StrCat(
                    "SELECT w.id, d.id, COALESCE((SELECT s.before_us FROM stale_tasks s WHERE "
                    "s.kernel = k.name AND s.problem_hash = w.problem_hash AND "
                    "s.device_class = d.device_class), 0) "
                    "FROM workloads w JOIN kernels k ON w.kernel_id = k.id, devices d "
                    "WHERE k.name = ?1 AND (?2 = '' OR k.version = ?2) AND w.problem_hash = ?3 "
                    "AND d.",
                    column, " = ?4")));
    s.Bind(1, q.kernel).Bind(2, q.kernel_version).Bind(3, problem_hash).Bind(4, value);
    while (true) {
      KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      pairs.push_back({s.ColumnInt(0), s.ColumnInt(1), s.ColumnInt(2)});
    }
  }
  KTUNE_ASSIGN_OR_RETURN(
      SqliteStatement s,
      SqliteStatement::Prepare(
          db, absl::StrCat("SELECT r.id, r.config_hash, r.time_ms, r.record_uid FROM records r "
                           "WHERE r.workload_id = ?1 AND r.device_id = ?2 AND r.status = 'ok' "
                           "AND COALESCE(r.measured_at_us, 0) ",
                           stale ? "< ?3 " : ">= ?3 ", q.max_rel_error ? kWithinBudget : "",
                           "ORDER BY r.time_ms LIMIT ?4")));
  struct Row {
    double time_ms;
    std::string uid, config_hash;
    int64_t id;
  };
  const int64_t first_limit = int64_t{64} * std::max(q.top_k, 1);
  std::vector<Row> rows;
  std::vector<bool> cut(pairs.size());           // the pair has rows not read
  std::vector<double> slowest_read(pairs.size());  // the time of the last row read of the pair
  // Reads pair i's rows, fastest first, at most `limit` of them (-1: all).
  auto read = [&](size_t i, int64_t limit) -> absl::Status {
    s.Bind(1, pairs[i].workload_id).Bind(2, pairs[i].device_id).Bind(3, pairs[i].stale_before_us);
    if (q.max_rel_error) s.Bind(5, *q.max_rel_error);
    s.Bind(4, limit);
    int64_t n = 0;
    while (true) {
      KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      rows.push_back({s.ColumnDouble(2), s.ColumnText(3), s.ColumnText(1), s.ColumnInt(0)});
      slowest_read[i] = rows.back().time_ms;
      ++n;
    }
    s.Reset();
    cut[i] = limit >= 0 && n == limit;
    return absl::OkStatus();
  };
  auto winners_of = [&]() {
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
      return std::tie(a.time_ms, a.uid) < std::tie(b.time_ms, b.uid);
    });
    std::vector<const Row*> winners;
    std::set<std::string> seen_configs;
    for (const Row& r : rows) {
      if (static_cast<int>(winners.size()) >= q.top_k) break;
      if (seen_configs.insert(r.config_hash).second) winners.push_back(&r);
    }
    return winners;
  };
  for (size_t i = 0; i < pairs.size(); ++i) KTUNE_RETURN_IF_ERROR(read(i, first_limit));
  std::vector<const Row*> winners = winners_of();
  // Unread rows are no faster than the slowest row read of their pair.
  double settled_below = INFINITY;
  bool any_cut = false;
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (!cut[i]) continue;
    any_cut = true;
    settled_below = std::min(settled_below, slowest_read[i]);
  }
  if (any_cut && (static_cast<int>(winners.size()) < q.top_k ||
                  !(winners.back()->time_ms < settled_below))) {
    rows.clear();
    for (size_t i = 0; i < pairs.size(); ++i) KTUNE_RETURN_IF_ERROR(read(i, -1));
    winners = winners_of();
  }
  std::vector<int64_t> ids;
  for (const Row* r : winners) ids.push_back(r->id);
  return ids;
}

// The family of the class's devices in the file, or else the one its name implies.
absl::StatusOr<std::string> FamilyOfClassIn(sqlite3* db, const std::string& device_class) {
  if (!device_class.empty()) {
    KTUNE_ASSIGN_OR_RETURN(SqliteStatement s, SqliteStatement::Prepare(db, kFamilyOfClass));
    s.Bind(1, device_class);
    KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) return s.ColumnText(0);
  }
  return InferDeviceFamily(device_class);
}

}  // namespace

absl::StatusOr<std::string> SqliteTuningDatabase::FamilyOfClass(const std::string& device_class) {
  return Read([&](sqlite3* db) { return FamilyOfClassIn(db, device_class); });
}

absl::StatusOr<BestResult> SqliteTuningDatabase::QueryBest(const BestQuery& q) {
  return Read([&](sqlite3* db) -> absl::StatusOr<BestResult> {
    std::string family = q.family;
    if (family.empty()) {
      KTUNE_ASSIGN_OR_RETURN(family, FamilyOfClassIn(db, q.device_class));
    }
    // Each level's devices, by the column that names them; the class's stale records before the
    // family's (BestResult::stale).
    const std::tuple<MatchLevel, const char*, std::string, bool> levels[] = {
        {MatchLevel::kExact, "fingerprint_hash", q.fingerprint_hash, false},
        {MatchLevel::kDeviceClass, "device_class", q.device_class, false},
        {MatchLevel::kExact, "fingerprint_hash", q.fingerprint_hash, true},
        {MatchLevel::kDeviceClass, "device_class", q.device_class, true},
        {MatchLevel::kFamily, "family", family, false},
    };
    std::string problem_hash = ParamMapHash(q.problem);
    for (const auto& [level, column, value, stale] : levels) {
      if (value.empty()) continue;
      if (q.family_only && level == MatchLevel::kDeviceClass) continue;
      KTUNE_ASSIGN_OR_RETURN(std::vector<int64_t> winners,
                             RankBest(db, q, problem_hash, column, value, stale));
      if (winners.empty()) continue;
      KTUNE_ASSIGN_OR_RETURN(
          SqliteStatement by_id,
          SqliteStatement::Prepare(db, absl::StrCat(kRecordColumns, kRecordJoins, kById)));
      RecordReader reader;
      BestResult result;
      result.level = level;
      result.stale = stale;
      for (int64_t id : winners) {
        by_id.Bind(1, id);
        KTUNE_ASSIGN_OR_RETURN(bool row, by_id.Step());
        if (!row) return absl::InternalError(absl::StrCat("record ", id, " vanished"));
        KTUNE_ASSIGN_OR_RETURN(Record r, reader.Read(by_id));
        result.records.push_back(std::move(r));
        by_id.Reset();
      }
      return result;
    }
    return BestResult{};
  });
}

absl::StatusOr<std::vector<Record>> SqliteTuningDatabase::TaskRecords(const TaskKey& task) {
  return RecordsOf(task, /*stale=*/false);
}

absl::StatusOr<std::vector<Record>> SqliteTuningDatabase::StaleTaskRecords(const TaskKey& task) {
  return RecordsOf(task, /*stale=*/true);
}

absl::StatusOr<TaskColumns> SqliteTuningDatabase::TaskRecordColumns(const TaskKey& task) {
  return ColumnsOf(task, /*stale=*/false);
}

absl::StatusOr<TaskColumns> SqliteTuningDatabase::StaleTaskRecordColumns(const TaskKey& task) {
  return ColumnsOf(task, /*stale=*/true);
}

absl::StatusOr<TaskColumns> SqliteTuningDatabase::ColumnsOf(const TaskKey& task, bool stale) {
  return Read([&](sqlite3* db) -> absl::StatusOr<TaskColumns> {
    if (schema_version_ < kTaskColumnsSchemaVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat(path_, ": schema version ", schema_version_,
                       " keeps no task columns (open it without a target version to migrate)"));
    }
    return ReadStoredColumns(db, task, stale);
  });
}

absl::StatusOr<std::vector<Record>> SqliteTuningDatabase::RecordsByHandle(
    const std::vector<int64_t>& handles) {
  return Read([&](sqlite3* db) -> absl::StatusOr<std::vector<Record>> {
    KTUNE_ASSIGN_OR_RETURN(
        SqliteStatement by_id,
        SqliteStatement::Prepare(db, absl::StrCat(kRecordColumns, kRecordJoins, kById)));
    RecordReader reader;
    std::vector<Record> out;
    for (int64_t handle : handles) {
      by_id.Bind(1, handle);
      KTUNE_ASSIGN_OR_RETURN(bool row, by_id.Step());
      if (!row) {
        return absl::NotFoundError(absl::StrCat(
            path_, ": no record with handle ", handle,
            ": the task columns name a record the records table no longer has (repair them with "
            "ktune db check --repair)"));
      }
      KTUNE_ASSIGN_OR_RETURN(Record r, reader.Read(by_id));
      out.push_back(std::move(r));
      by_id.Reset();
    }
    return out;
  });
}

absl::StatusOr<std::vector<Record>> SqliteTuningDatabase::RecordsOf(const TaskKey& task,
                                                                    bool stale) {
  return Read([&](sqlite3* db) -> absl::StatusOr<std::vector<Record>> {
    KTUNE_ASSIGN_OR_RETURN(SqliteStatement s,
                           SqliteStatement::Prepare(
                               db, absl::StrCat(kRecordColumns, kRecordJoins, kWorkloadFilter,
                                                OnDevicesWhere("device_class"), Staleness(stale))));
    s.Bind(1, task.kernel)
        .Bind(2, task.kernel_version)
        .Bind(3, ParamMapHash(task.problem))
        .Bind(4, task.device_class);
    std::vector<Record> read;
    std::vector<std::string> uids;
    RecordReader reader;
    while (true) {
      KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      KTUNE_ASSIGN_OR_RETURN(Record r, reader.Read(s));
      read.push_back(std::move(r));
      uids.push_back(s.ColumnText(17));
    }
    // A task's records come in the order (measured_at_us IS NOT NULL, measured_at_us, record_uid):
    // unknown times first, then by time, ties by record id. Sorted here on those keys, since an
    // ORDER BY makes SQLite's sorter copy every column of every row (on an 11,000-record task, a
    // tenth of `ktune explain`'s instructions).
    std::vector<size_t> order(read.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      const std::optional<int64_t>& ta = read[a].measured_at_us;
      const std::optional<int64_t>& tb = read[b].measured_at_us;
      if (ta.has_value() != tb.has_value()) return !ta.has_value();
      if (ta && *ta != *tb) return *ta < *tb;
      return uids[a] < uids[b];
    });
    std::vector<Record> out;
    out.reserve(read.size());
    for (size_t i : order) out.push_back(std::move(read[i]));
    return out;
  });
}

absl::StatusOr<std::vector<TaskKey>> SqliteTuningDatabase::ListTasks() {
  return Read([&](sqlite3* db) -> absl::StatusOr<std::vector<TaskKey>> {
    KTUNE_ASSIGN_OR_RETURN(
        SqliteStatement s,
        SqliteStatement::Prepare(
            db, ListTasksFrom(schema_version_ >= kTaskColumnsSchemaVersion ? "task_columns"
                                                                           : "records")));
    std::vector<TaskKey> out;
    while (true) {
      KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      KTUNE_ASSIGN_OR_RETURN(TaskKey t, TaskKeyOfRow(s));
      out.push_back(std::move(t));
    }
    return out;
  });
}

absl::StatusOr<std::vector<TuningDatabase::SourceTaskSummary>>
SqliteTuningDatabase::SummarizeSource(const std::string& source) {
  return Read([&](sqlite3* db) -> absl::StatusOr<std::vector<SourceTaskSummary>> {
    // One scan of the records (none is indexed by source): of the table itself, NOT INDEXED
    // (SQLite chose to walk records_by_task for the GROUP BY, a table lookup a row: 3.9 s
    // against 0.2 s on 2,000,000 records). With exactly one min() aggregate, SQLite takes the
    // bare column config_json from the row holding the minimum.
    KTUNE_ASSIGN_OR_RETURN(
        SqliteStatement s,
        SqliteStatement::Prepare(
            db,
            "SELECT k.name, k.version, w.problem_json, d.device_class, COUNT(*), "
            "SUM(r.status != 'ok'), MIN(r.time_ms), r.config_json FROM records r NOT INDEXED "
            "JOIN workloads w ON r.workload_id = w.id JOIN kernels k ON w.kernel_id = k.id "
            "JOIN devices d ON r.device_id = d.id WHERE r.source = ? "
            "GROUP BY r.workload_id, d.device_class"));
    s.Bind(1, source);
    std::vector<SourceTaskSummary> out;
    while (true) {
      KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      SourceTaskSummary t;
      KTUNE_ASSIGN_OR_RETURN(t.task, TaskKeyOfRow(s));
      t.records = s.ColumnInt(4);
      t.failed = s.ColumnInt(5);
      t.best_ms = s.ColumnOptionalDouble(6);
      if (t.best_ms) {
        KTUNE_ASSIGN_OR_RETURN(t.best_config, ParseParamMapJson(s.ColumnText(7)));
      }
      out.push_back(std::move(t));
    }
    return out;
  });
}

absl::Status SqliteTuningDatabase::ForEachRecord(
    const std::function<absl::Status(const Record&)>& fn) {
  return Read([&](sqlite3* db) -> absl::Status {
    KTUNE_ASSIGN_OR_RETURN(
        SqliteStatement s,
        SqliteStatement::Prepare(db, absl::StrCat(kRecordColumns, kRecordJoins, kAllRecordsOrder)));
    RecordReader reader;
    while (true) {
      KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return absl::OkStatus();
      KTUNE_ASSIGN_OR_RETURN(Record r, reader.Read(s));
      KTUNE_RETURN_IF_ERROR(fn(r));
    }
  });
}

absl::StatusOr<TuningDatabase::RecordPage> SqliteTuningDatabase::RecordsAfter(int64_t after,
                                                                              size_t limit) {
  return Read([&](sqlite3* db) -> absl::StatusOr<RecordPage> {
    // The position is the record's row id (insertion order, never reused: AUTOINCREMENT-free
    // rowids may be, but only after the largest is deleted, and records are never deleted).
    KTUNE_ASSIGN_OR_RETURN(SqliteStatement s,
                           SqliteStatement::Prepare(
                               db, absl::StrCat(kRecordColumns, ", r.id ", kRecordJoins,
                                                " WHERE r.id > ? ", kAllRecordsOrder, " LIMIT ?")));
    s.Bind(1, after).Bind(2, static_cast<int64_t>(limit));
    RecordPage page;
    page.last = after;
    RecordReader reader;
    while (true) {
      KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return page;
      KTUNE_ASSIGN_OR_RETURN(Record r, reader.Read(s));
      page.records.push_back(std::move(r));
      page.last = s.ColumnInt(21);
    }
  });
}

absl::StatusOr<DatabaseStats> SqliteTuningDatabase::Stats() {
  return Read([&](sqlite3* db) -> absl::StatusOr<DatabaseStats> {
    DatabaseStats stats;
    KTUNE_ASSIGN_OR_RETURN(stats.kernels, QueryInt(db, kCountKernels));
    KTUNE_ASSIGN_OR_RETURN(stats.workloads, QueryInt(db, kCountWorkloads));
    KTUNE_ASSIGN_OR_RETURN(stats.devices, QueryInt(db, kCountDevices));
    KTUNE_ASSIGN_OR_RETURN(stats.jobs, QueryInt(db, kCountJobs));
    KTUNE_ASSIGN_OR_RETURN(SqliteStatement s, SqliteStatement::Prepare(db, kCountRecordsByStatus));
    while (true) {
      KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      stats.records_by_status[s.ColumnText(0)] = s.ColumnInt(1);
      stats.records += s.ColumnInt(1);
    }
    return stats;
  });
}

// --- jobs and checkpoints ------------------------------------------------------------------------

absl::StatusOr<int64_t> SqliteTuningDatabase::CreateJob(const Job& job) {
  absl::MutexLock lock(&mu_);
  KTUNE_ASSIGN_OR_RETURN(SqliteTransaction txn, SqliteTransaction::Begin(db_));
  KTUNE_ASSIGN_OR_RETURN(SqliteStatement insert, SqliteStatement::Prepare(db_, kInsertJob));
  int64_t now = NowUs();
  insert.Bind(1, job.name)
      .Bind(2, job.spec_json)
      .Bind(3, job.strategy)
      .Bind(4, static_cast<int64_t>(job.priority))
      .Bind(5, now)
      .Bind(6, now);
  KTUNE_RETURN_IF_ERROR(insert.Run());
  int64_t id = sqlite3_last_insert_rowid(db_);
  KTUNE_ASSIGN_OR_RETURN(SqliteStatement task, SqliteStatement::Prepare(db_, kInsertJobTask));
  for (size_t i = 0; i < job.tasks.size(); ++i) {
    const JobTask& t = job.tasks[i];
    task.Bind(1, id)
        .Bind(2, static_cast<int64_t>(i))
        .Bind(3, t.task.kernel)
        .Bind(4, t.task.kernel_version)
        .Bind(5, CanonicalJson(t.task.problem))
        .Bind(6, t.task.device_class)
        .Bind(7, JobStateName(JobState::kQueued))
        .Bind(8, t.budget)
        .Bind(9, t.measurements_done);
    KTUNE_RETURN_IF_ERROR(task.Run());
    task.Reset();
  }
  KTUNE_RETURN_IF_ERROR(txn.Commit());
  return id;
}

namespace {

// A job's own columns, the first nine of `s`'s row (kSelectJob's), without its tasks.
absl::StatusOr<Job> JobOfRow(const SqliteStatement& s) {
  Job job;
  job.id = s.ColumnInt(0);
  job.name = s.ColumnText(1);
  job.spec_json = s.ColumnText(2);
  job.strategy = s.ColumnText(3);
  job.priority = static_cast<int>(s.ColumnInt(4));
  KTUNE_ASSIGN_OR_RETURN(job.state, ParseJobStateName(s.ColumnText(5)));
  job.message = s.ColumnText(6);
  job.created_at_us = s.ColumnInt(7);
  job.updated_at_us = s.ColumnInt(8);
  return job;
}

// Job `id` with its tasks.
absl::StatusOr<Job> ReadJob(sqlite3* db, int64_t id) {
  KTUNE_ASSIGN_OR_RETURN(SqliteStatement s, SqliteStatement::Prepare(db, kSelectJob));
  s.Bind(1, id);
  KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return absl::NotFoundError(absl::StrCat("no job ", id));
  KTUNE_ASSIGN_OR_RETURN(Job job, JobOfRow(s));
  KTUNE_ASSIGN_OR_RETURN(SqliteStatement t, SqliteStatement::Prepare(db, kSelectJobTasks));
  t.Bind(1, id);
  while (true) {
    KTUNE_ASSIGN_OR_RETURN(bool more, t.Step());
    if (!more) break;
    JobTask task;
    KTUNE_ASSIGN_OR_RETURN(task.task, TaskKeyOfRow(t));
    KTUNE_ASSIGN_OR_RETURN(task.state, ParseJobStateName(t.ColumnText(4)));
    task.budget = t.ColumnInt(5);
    task.measurements_done = t.ColumnInt(6);
    job.tasks.push_back(std::move(task));
  }
  return job;
}

}  // namespace

absl::StatusOr<Job> SqliteTuningDatabase::GetJob(int64_t id) {
  return Read([&](sqlite3* db) { return ReadJob(db, id); });
}

absl::StatusOr<std::vector<TuningDatabase::JobSummary>> SqliteTuningDatabase::ListJobSummaries() {
  return Read([&](sqlite3* db) -> absl::StatusOr<std::vector<JobSummary>> {
    KTUNE_ASSIGN_OR_RETURN(SqliteStatement s, SqliteStatement::Prepare(db, kSelectJobSummaries));
    std::vector<JobSummary> out;
    while (true) {
      KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      JobSummary summary;
      KTUNE_ASSIGN_OR_RETURN(summary.job, JobOfRow(s));
      summary.task_count = s.ColumnInt(9);
      summary.measurements_total = s.ColumnInt(10);
      summary.measurements_done = s.ColumnInt(11);
      out.push_back(std::move(summary));
    }
    return out;
  });
}

absl::Status SqliteTuningDatabase::SetJobState(int64_t id, JobState state,
                                               const std::string& message) {
  absl::MutexLock lock(&mu_);
  KTUNE_ASSIGN_OR_RETURN(SqliteTransaction txn, SqliteTransaction::Begin(db_));
  // The job's state alone (reading the job whole parsed every task's problem: 65,536 of them for
  // a large job, under the scheduler's lock at its first lease and at its end).
  KTUNE_ASSIGN_OR_RETURN(SqliteStatement current,
                         SqliteStatement::Prepare(db_, "SELECT state FROM jobs WHERE id = ?"));
  current.Bind(1, id);
  KTUNE_ASSIGN_OR_RETURN(bool found, current.Step());
  if (!found) return absl::NotFoundError(absl::StrCat("no job ", id));
  KTUNE_ASSIGN_OR_RETURN(JobState from, ParseJobStateName(current.ColumnText(0)));
  if (!IsAllowedJobTransition(from, state)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", id, " cannot go from ", JobStateName(from), " to ", JobStateName(state)));
  }
  KTUNE_ASSIGN_OR_RETURN(SqliteStatement s, SqliteStatement::Prepare(db_, kUpdateJobState));
  s.Bind(1, JobStateName(state)).Bind(2, message).Bind(3, NowUs()).Bind(4, id);
  KTUNE_RETURN_IF_ERROR(s.Run());
  return txn.Commit();
}

absl::Status SqliteTuningDatabase::UpdateJobTasks(int64_t job_id,
                                                  const std::vector<JobTaskProgress>& progress) {
  absl::MutexLock lock(&mu_);
  KTUNE_ASSIGN_OR_RETURN(SqliteTransaction txn, SqliteTransaction::Begin(db_));
  KTUNE_ASSIGN_OR_RETURN(SqliteStatement s, SqliteStatement::Prepare(db_, kUpdateJobTask));
  for (const JobTaskProgress& p : progress) {
    s.Bind(1, JobStateName(p.state))
        .Bind(2, p.measurements_done)
        .Bind(3, job_id)
        .Bind(4, static_cast<int64_t>(p.task_index));
    KTUNE_RETURN_IF_ERROR(s.Run());
    if (sqlite3_changes(db_) == 0) {  // the transaction rolls back: nothing is stored
      return absl::NotFoundError(absl::StrCat("job ", job_id, " has no task ", p.task_index));
    }
    s.Reset();
  }
  KTUNE_ASSIGN_OR_RETURN(SqliteStatement touch, SqliteStatement::Prepare(db_, kTouchJob));
  touch.Bind(1, NowUs()).Bind(2, job_id);
  KTUNE_RETURN_IF_ERROR(touch.Run());
  return txn.Commit();
}

// --- stale tasks and telemetry -------------------------------------------------------------------

absl::StatusOr<std::vector<TuningDatabase::StaleBoundary>> SqliteTuningDatabase::StaleBoundaries() {
  return Read([&](sqlite3* db) -> absl::StatusOr<std::vector<StaleBoundary>> {
    KTUNE_ASSIGN_OR_RETURN(
        SqliteStatement s,
        SqliteStatement::Prepare(db,
                                 "SELECT kernel, problem_hash, device_class, before_us FROM "
                                 "stale_tasks ORDER BY kernel, problem_hash, device_class"));
    std::vector<StaleBoundary> out;
    while (true) {
      KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return out;
      out.push_back({s.ColumnText(0), s.ColumnText(1), s.ColumnText(2), s.ColumnInt(3)});
    }
  });
}

absl::Status SqliteTuningDatabase::MarkStale(const TaskKey& task, int64_t before_us) {
  absl::MutexLock lock(&mu_);
  KTUNE_ASSIGN_OR_RETURN(
      SqliteStatement s,
      SqliteStatement::Prepare(
          db_,
          "INSERT INTO stale_tasks (kernel, problem_hash, device_class, before_us) "
          "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (kernel, problem_hash, device_class) "
          "DO UPDATE SET before_us = MAX(before_us, excluded.before_us)"));
  s.Bind(1, task.kernel).Bind(2, ParamMapHash(task.problem)).Bind(3, task.device_class);
  s.Bind(4, before_us);
  return s.Run();
}

absl::Status SqliteTuningDatabase::AddTelemetry(const std::vector<TelemetryReport>& reports) {
  for (const TelemetryReport& r : reports) KTUNE_RETURN_IF_ERROR(ValidateTelemetry(r));
  absl::MutexLock lock(&mu_);
  KTUNE_ASSIGN_OR_RETURN(SqliteTransaction txn, SqliteTransaction::Begin(db_));
  KTUNE_ASSIGN_OR_RETURN(RowInterner ids, RowInterner::Prepare(db_));
  KTUNE_ASSIGN_OR_RETURN(
      SqliteStatement insert,
      SqliteStatement::Prepare(
          db_,
          "INSERT INTO telemetry (workload_id, device_id, config_json, count, mean_ms, stddev_ms, "
          "window_start_us, window_end_us, received_at_us, reporter) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  for (const TelemetryReport& r : reports) {
    KTUNE_ASSIGN_OR_RETURN(int64_t workload_id,
                           ids.WorkloadId(r.kernel, r.kernel_version, r.problem));
    KTUNE_ASSIGN_OR_RETURN(int64_t device_id, ids.DeviceId(r.device));
    insert.Bind(1, workload_id)
        .Bind(2, device_id)
        .Bind(3, CanonicalJson(r.config))
        .Bind(4, r.count)
        .Bind(5, r.mean_ms)
        .Bind(6, r.stddev_ms)
        .Bind(7, r.window_start_us)
        .Bind(8, r.window_end_us)
        .Bind(9, r.received_at_us)
        .Bind(10, r.reporter);
    KTUNE_RETURN_IF_ERROR(insert.Run());
    insert.Reset();
  }
  return txn.Commit();
}

absl::Status SqliteTuningDatabase::ForEachTelemetry(
    const std::function<absl::Status(const TelemetryReport&)>& fn) {
  // Pages of reports read, each in one Read, and handed to `fn` outside it, so that `fn` may query
  // this database (the drift monitor's recovery asks for each task's lab best); one page at a
  // time keeps a long telemetry history out of memory.
  constexpr int kPage = 1024;
  int64_t after = 0;
  while (true) {
    std::vector<TelemetryReport> page;
    KTUNE_RETURN_IF_ERROR(Read([&](sqlite3* db) -> absl::Status {
      KTUNE_ASSIGN_OR_RETURN(
          SqliteStatement s,
          SqliteStatement::Prepare(
              db,
              "SELECT t.id, k.name, k.version, w.problem_json, d.fingerprint_json, d.device_class, "
              "d.family, t.config_json, t.count, t.mean_ms, t.stddev_ms, t.window_start_us, "
              "t.window_end_us, t.received_at_us, t.reporter FROM telemetry t JOIN workloads w ON "
              "t.workload_id = w.id JOIN kernels k ON w.kernel_id = k.id JOIN devices d ON "
              "t.device_id = d.id WHERE t.id > ?1 ORDER BY t.id LIMIT ?2"));
      s.Bind(1, after).Bind(2, int64_t{kPage});
      while (true) {
        KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        after = s.ColumnInt(0);
        KTUNE_ASSIGN_OR_RETURN(TelemetryReport r, TelemetryOfRow(s));
        page.push_back(std::move(r));
      }
      return absl::OkStatus();
    }));
    for (const TelemetryReport& r : page) KTUNE_RETURN_IF_ERROR(fn(r));
    if (static_cast<int>(page.size()) < kPage) return absl::OkStatus();
  }
}

absl::Status SqliteTuningDatabase::SaveCheckpoint(const std::string& key, const std::string& blob) {
  absl::MutexLock lock(&mu_);
  KTUNE_ASSIGN_OR_RETURN(SqliteTransaction txn, SqliteTransaction::Begin(db_));
  KTUNE_ASSIGN_OR_RETURN(SqliteStatement s, SqliteStatement::Prepare(db_, kUpsertCheckpoint));
  s.Bind(1, key).BindBlob(2, blob.data(), blob.size()).Bind(3, NowUs());
  KTUNE_RETURN_IF_ERROR(s.Run());
  return txn.Commit();
}

absl::StatusOr<std::vector<bool>> SqliteTuningDatabase::HasRecords(
    const std::vector<std::string>& record_ids) {
  return Read([&](sqlite3* db) -> absl::StatusOr<std::vector<bool>> {
    KTUNE_ASSIGN_OR_RETURN(
        SqliteStatement s,
        SqliteStatement::Prepare(db, "SELECT 1 FROM records WHERE record_uid = ?"));
    std::vector<bool> out;
    out.reserve(record_ids.size());
    for (const std::string& id : record_ids) {
      s.Reset();
      s.Bind(1, id);
      KTUNE_ASSIGN_OR_RETURN(const bool row, s.Step());
      out.push_back(row);
    }
    return out;
  });
}

absl::StatusOr<std::string> SqliteTuningDatabase::LoadCheckpoint(const std::string& key) {
  return Read([&](sqlite3* db) -> absl::StatusOr<std::string> {
    KTUNE_ASSIGN_OR_RETURN(SqliteStatement s, SqliteStatement::Prepare(db, kSelectCheckpoint));
    s.Bind(1, key);
    KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return absl::NotFoundError(absl::StrCat("no checkpoint '", key, "'"));
    return s.ColumnBlob(0);
  });
}

}  // namespace ktune
