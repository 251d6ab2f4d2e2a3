#include "db/sqlite_task_columns.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "db/sqlite_util.h"

namespace ktune {
namespace {

constexpr char kSelectChunks[] =
    "SELECT chunk, records FROM task_columns WHERE workload_id = ?1 AND device_id = ?2 "
    "ORDER BY chunk";
constexpr char kSelectChunk[] =
    "SELECT blob FROM task_columns WHERE workload_id = ?1 AND device_id = ?2 AND chunk = ?3";
constexpr char kDeleteChunk[] =
    "DELETE FROM task_columns WHERE workload_id = ?1 AND device_id = ?2 AND chunk = ?3";
constexpr char kInsertChunk[] =
    "INSERT INTO task_columns (workload_id, device_id, chunk, records, blob) "
    "VALUES (?1, ?2, ?3, ?4, ?5)";
// The columns of a task's workloads on the devices of its class, and the task's stale boundary.
constexpr char kSelectTaskChunks[] =
    "SELECT c.blob FROM task_columns c JOIN workloads w ON c.workload_id = w.id "
    "JOIN kernels k ON w.kernel_id = k.id "
    "WHERE k.name = ?1 AND (?2 = '' OR k.version = ?2) AND w.problem_hash = ?3 "
    "AND c.device_id IN (SELECT id FROM devices WHERE device_class = ?4)";
constexpr char kSelectStaleBoundary[] =
    "SELECT before_us FROM stale_tasks WHERE kernel = ?1 AND problem_hash = ?2 "
    "AND device_class = ?3";
// Every record, grouped by (workload, device) as records_by_task orders them.
constexpr char kSelectAllForColumns[] =
    "SELECT workload_id, device_id, id, record_uid, config_json, status, time_ms, median_ms, "
    "max_rel_error, measured_at_us FROM records ORDER BY workload_id, device_id";

absl::Status InsertChunk(sqlite3* db, int64_t workload_id, int64_t device_id, int64_t chunk,
                         const TaskColumns& columns) {
  KTUNE_ASSIGN_OR_RETURN(SqliteStatement insert, SqliteStatement::Prepare(db, kInsertChunk));
  const std::string blob = EncodeTaskColumns(columns);
  insert.Bind(1, workload_id)
      .Bind(2, device_id)
      .Bind(3, chunk)
      .Bind(4, static_cast<int64_t>(columns.size()))
      .BindBlob(5, blob.data(), blob.size());
  return insert.Run();
}

}  // namespace

absl::Status AppendStoredColumns(sqlite3* db, int64_t workload_id, int64_t device_id,
                                 TaskColumns columns) {
  std::vector<std::pair<int64_t, int64_t>> chunks;  // chunk number, records; oldest first
  {
    KTUNE_ASSIGN_OR_RETURN(SqliteStatement s, SqliteStatement::Prepare(db, kSelectChunks));
    s.Bind(1, workload_id).Bind(2, device_id);
    while (true) {
      KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      chunks.emplace_back(s.ColumnInt(0), s.ColumnInt(1));
    }
  }
  int64_t number = chunks.empty() ? 0 : chunks.back().first + 1;
  // Merge the newest chunks into the new one while the newest is at most twice its size.
  size_t merge_from = chunks.size();
  int64_t size = static_cast<int64_t>(columns.size());
  while (merge_from > 0 && chunks[merge_from - 1].second <= 2 * size) {
    --merge_from;
    size += chunks[merge_from].second;
  }
  if (merge_from < chunks.size()) {
    KTUNE_ASSIGN_OR_RETURN(SqliteStatement select, SqliteStatement::Prepare(db, kSelectChunk));
    KTUNE_ASSIGN_OR_RETURN(SqliteStatement remove, SqliteStatement::Prepare(db, kDeleteChunk));
    TaskColumns merged;
    for (size_t i = merge_from; i < chunks.size(); ++i) {
      select.Bind(1, workload_id).Bind(2, device_id).Bind(3, chunks[i].first);
      KTUNE_ASSIGN_OR_RETURN(bool row, select.Step());
      if (!row) return absl::InternalError("a stored column chunk vanished");
      KTUNE_ASSIGN_OR_RETURN(TaskColumns old, DecodeTaskColumns(select.ColumnBlob(0)));
      select.Reset();
      merged.Append(old);
      remove.Bind(1, workload_id).Bind(2, device_id).Bind(3, chunks[i].first);
      KTUNE_RETURN_IF_ERROR(remove.Run());
      remove.Reset();
    }
    merged.Append(columns);
    columns = std::move(merged);
    number = chunks[merge_from].first;
  }
  return InsertChunk(db, workload_id, device_id, number, columns);
}

absl::Status StoreColumnsOfAllRecords(sqlite3* db) {
  KTUNE_ASSIGN_OR_RETURN(SqliteStatement s, SqliteStatement::Prepare(db, kSelectAllForColumns));
  int64_t workload_id = -1, device_id = -1;
  TaskColumnsBuilder builder;
  auto flush = [&]() -> absl::Status {
    TaskColumns columns = builder.Take();
    builder = TaskColumnsBuilder();
    if (columns.size() == 0) return absl::OkStatus();
    return InsertChunk(db, workload_id, device_id, 0, columns);
  };
  while (true) {
    KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    if (s.ColumnInt(0) != workload_id || s.ColumnInt(1) != device_id) {
      KTUNE_RETURN_IF_ERROR(flush());
      workload_id = s.ColumnInt(0);
      device_id = s.ColumnInt(1);
    }
    Record r;
    KTUNE_ASSIGN_OR_RETURN(r.config, ParseParamMapJson(s.ColumnText(4)));
    KTUNE_ASSIGN_OR_RETURN(r.status, ParseStatusName(s.ColumnText(5)));
    r.time_ms = s.ColumnOptionalDouble(6);
    r.median_ms = s.ColumnOptionalDouble(7);
    r.max_rel_error = s.ColumnOptionalDouble(8);
    r.measured_at_us = s.ColumnOptionalInt(9);
    builder.Add(s.ColumnInt(2), r, s.ColumnText(3));
  }
  return flush();
}

absl::StatusOr<std::vector<ColumnsMismatch>> FindColumnsMismatches(sqlite3* db) {
  KTUNE_ASSIGN_OR_RETURN(
      SqliteStatement s,
      SqliteStatement::Prepare(
          db,
          "WITH r AS (SELECT workload_id, device_id, COUNT(*) AS n FROM records "
          "GROUP BY workload_id, device_id), "
          "c AS (SELECT workload_id, device_id, SUM(records) AS n FROM task_columns "
          "GROUP BY workload_id, device_id), "
          "p AS (SELECT workload_id, device_id FROM r UNION SELECT workload_id, device_id FROM c) "
          "SELECT k.name, w.problem_json, d.device_class, COALESCE(r.n, 0), COALESCE(c.n, 0) "
          "FROM p LEFT JOIN r ON r.workload_id = p.workload_id AND r.device_id = p.device_id "
          "LEFT JOIN c ON c.workload_id = p.workload_id AND c.device_id = p.device_id "
          "JOIN workloads w ON w.id = p.workload_id JOIN kernels k ON k.id = w.kernel_id "
          "JOIN devices d ON d.id = p.device_id "
          "WHERE COALESCE(r.n, 0) != COALESCE(c.n, 0) ORDER BY k.name, d.device_class"));
  std::vector<ColumnsMismatch> out;
  while (true) {
    KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back({s.ColumnText(0), s.ColumnText(1), s.ColumnText(2), s.ColumnInt(3),
                   s.ColumnInt(4)});
  }
  return out;
}

absl::Status RebuildStoredColumns(sqlite3* db) {
  KTUNE_RETURN_IF_ERROR(SqliteExec(db, "DELETE FROM task_columns"));
  return StoreColumnsOfAllRecords(db);
}

absl::StatusOr<TaskColumns> ReadStoredColumns(sqlite3* db, const TaskKey& task, bool stale) {
  const std::string problem_hash = ParamMapHash(task.problem);
  int64_t before_us = 0;
  {
    KTUNE_ASSIGN_OR_RETURN(SqliteStatement s,
                           SqliteStatement::Prepare(db, kSelectStaleBoundary));
    s.Bind(1, task.kernel).Bind(2, problem_hash).Bind(3, task.device_class);
    KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) before_us = s.ColumnInt(0);
  }
  KTUNE_ASSIGN_OR_RETURN(SqliteStatement s, SqliteStatement::Prepare(db, kSelectTaskChunks));
  s.Bind(1, task.kernel).Bind(2, task.kernel_version).Bind(3, problem_hash).Bind(4,
                                                                                task.device_class);
  TaskColumns out;
  while (true) {
    KTUNE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    KTUNE_ASSIGN_OR_RETURN(TaskColumns chunk, DecodeTaskColumns(s.ColumnBlob(0)));
    if (out.size() == 0 && out.params.empty()) {
      out = std::move(chunk);
    } else {
      out.Append(chunk);
    }
  }
  // As the records' query: stale when COALESCE(measured_at_us, 0) < before_us.
  std::vector<bool> keep(out.size());
  for (size_t i = 0; i < out.size(); ++i) {
    const int64_t t =
        out.measured_at_us[i] == TaskColumns::kUnknownTime ? 0 : out.measured_at_us[i];
    keep[i] = (t < before_us) == stale;
  }
  out.KeepRows(keep);
  out.SortIntoTaskOrder();
  return out;
}

}  // namespace ktune
