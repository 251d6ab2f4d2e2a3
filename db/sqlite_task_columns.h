// Where SqliteTuningDatabase keeps its records as columns (db/task_columns.h): the table
// task_columns (schema version 6), one or more encoded chunks per (workload, device).
//
// Each AddRecords appends the columns of the records it stored as a new chunk, in its own
// transaction, then merges the newest chunks while the one before is at most twice as large as
// the merged tail: chunks halve in size from the oldest, so a (workload, device) has at most
// log2(records) + 1 of them and each record is rewritten O(log records) times in all.
#ifndef KTUNE_DB_SQLITE_TASK_COLUMNS_H_
#define KTUNE_DB_SQLITE_TASK_COLUMNS_H_

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "db/record.h"
#include "db/task_columns.h"

namespace ktune {

// Appends `columns` (records just stored, all of one workload and device) to what is stored for
// them. Call inside the transaction that stored the records.
absl::Status AppendStoredColumns(sqlite3* db, int64_t workload_id, int64_t device_id,
                                 TaskColumns columns);

// Stores every (workload, device)'s columns from the records table, replacing none: for the
// migration that creates the table. One pass over the records in index order.
absl::Status StoreColumnsOfAllRecords(sqlite3* db);

// Where the stored columns hold another number of records than the records table, per
// (workload, device): a file that something other than ktune wrote to (ktune keeps them in step).
struct ColumnsMismatch {
  std::string kernel, problem_json, device_class;
  int64_t records = 0, in_columns = 0;
};
absl::StatusOr<std::vector<ColumnsMismatch>> FindColumnsMismatches(sqlite3* db);

// Replaces every stored column chunk with columns built from the records. Call inside a
// transaction.
absl::Status RebuildStoredColumns(sqlite3* db);

// The columns of `task`'s records: its workloads (every version when task.kernel_version is
// empty) on the devices of its class; `stale` as in TaskRecords / StaleTaskRecords (records
// measured before the task's MarkStale boundary, or at an unknown time, are the stale ones).
// In TaskRecords' order.
absl::StatusOr<TaskColumns> ReadStoredColumns(sqlite3* db, const TaskKey& task, bool stale);

}  // namespace ktune

#endif  // KTUNE_DB_SQLITE_TASK_COLUMNS_H_
