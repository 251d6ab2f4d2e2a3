// Thin RAII helpers over the SQLite C API: statements, transactions, and the one place where
// SQLite result codes become absl::Status.
#ifndef KTUNE_DB_SQLITE_UTIL_H_
#define KTUNE_DB_SQLITE_UTIL_H_

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ktune {

// SQLITE_BUSY/LOCKED -> Aborted (retry the transaction), CORRUPT/NOTADB -> DataLoss,
// FULL -> ResourceExhausted, CONSTRAINT -> InvalidArgument, CANTOPEN/IOERR -> Unavailable,
// READONLY/PERM -> PermissionDenied, anything else -> Internal. `what` prefixes the message,
// which also carries sqlite3_errmsg(db) when db is given. A DataLoss message names the database
// file instead of `what` (the statement means nothing to the user; the file is what to mend).
absl::Status SqliteError(int rc, sqlite3* db, absl::string_view what);

// Runs SQL text with no results (one or several statements).
absl::Status SqliteExec(sqlite3* db, absl::string_view sql);

// A prepared statement. Bind* take 1-based indices. Step() returns true while a row is ready.
class SqliteStatement {
 public:
  static absl::StatusOr<SqliteStatement> Prepare(sqlite3* db, absl::string_view sql);
  SqliteStatement(SqliteStatement&& other) noexcept;
  SqliteStatement& operator=(SqliteStatement&& other) noexcept;
  SqliteStatement(const SqliteStatement&) = delete;
  ~SqliteStatement();

  SqliteStatement& Bind(int i, int64_t v);
  SqliteStatement& Bind(int i, double v);
  SqliteStatement& Bind(int i, absl::string_view text);
  SqliteStatement& BindBlob(int i, const void* data, size_t size);
  SqliteStatement& BindNull(int i);
  template <typename T>
  SqliteStatement& Bind(int i, const std::optional<T>& v) {
    return v ? Bind(i, *v) : BindNull(i);
  }

  absl::StatusOr<bool> Step();
  // Steps to completion, expecting no rows.
  absl::Status Run();
  // Resets for re-execution with new bindings; clears bindings.
  void Reset();

  int64_t ColumnInt(int i) const;
  double ColumnDouble(int i) const;
  std::string ColumnText(int i) const;
  std::string ColumnBlob(int i) const;
  bool ColumnIsNull(int i) const;
  std::optional<double> ColumnOptionalDouble(int i) const;
  std::optional<int64_t> ColumnOptionalInt(int i) const;

 private:
  SqliteStatement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

// BEGIN IMMEDIATE on construction; ROLLBACK on destruction unless Commit() succeeded. A result
// counts as stored only once Commit() returned OK.
class SqliteTransaction {
 public:
  static absl::StatusOr<SqliteTransaction> Begin(sqlite3* db);
  SqliteTransaction(SqliteTransaction&& other) noexcept;
  SqliteTransaction(const SqliteTransaction&) = delete;
  ~SqliteTransaction();
  absl::Status Commit();

 private:
  explicit SqliteTransaction(sqlite3* db) : db_(db) {}
  sqlite3* db_ = nullptr;  // null once committed or moved from
};

}  // namespace ktune

#endif  // KTUNE_DB_SQLITE_UTIL_H_
