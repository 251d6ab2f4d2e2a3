#include "db/sqlite_util.h"

#include "absl/strings/str_cat.h"

namespace ktune {

absl::Status SqliteError(int rc, sqlite3* db, absl::string_view what) {
  if ((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB) {
    // What a user can act on, not the statement that met it: the file (named) is the problem.
    const char* file = db ? sqlite3_db_filename(db, "main") : nullptr;
    return absl::DataLossError(absl::StrCat(
        file && *file ? absl::StrCat(file, ": ") : "",
        (rc & 0xff) == SQLITE_NOTADB ? "not a ktune database (not an SQLite file at all)"
                                     : "the database file is damaged",
        " (SQLite: ", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc),
        "); restore it from a copy, or give another --db"));
  }
  const std::string sqlite = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  // Conditions an operator fixes: said in words, with the file, not the statement that met them
  // (`what` is for the errors only a developer can act on).
  const char* file = db ? sqlite3_db_filename(db, "main") : nullptr;
  const std::string where = file && *file ? absl::StrCat(file, ": ") : "";
  const auto said = [&](absl::string_view words) {
    return absl::StrCat(where, words, " (SQLite: ", sqlite, ")");
  };
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::AbortedError(
          said("the database is busy: another process (an import, a backup, another ktune) held it "
               "past the busy timeout; try again"));
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(said("the disk holding the database is full"));
    case SQLITE_IOERR:
      return absl::UnavailableError(said("the database file could not be read or written"));
    case SQLITE_READONLY:
      return absl::PermissionDeniedError(said(
          "the database is read-only here (the file's or its folder's permissions, a read-only "
          "mount)"));
    default:
      break;
  }
  std::string msg = absl::StrCat(what, ": ", sqlite, " (sqlite code ", rc, ")");
  switch (rc & 0xff) {
    case SQLITE_TOOBIG:
      return absl::ResourceExhaustedError(msg);
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
      return absl::InvalidArgumentError(msg);
    case SQLITE_CANTOPEN:
      return absl::UnavailableError(msg);
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return absl::PermissionDeniedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::Status SqliteExec(sqlite3* db, absl::string_view sql) {
  char* err = nullptr;
  std::string text(sql);
  int rc = sqlite3_exec(db, text.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string detail = err ? err : "";
    sqlite3_free(err);
    return SqliteError(rc, db, absl::StrCat("executing '", sql.substr(0, 80), "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<SqliteStatement> SqliteStatement::Prepare(sqlite3* db, absl::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) {
    return SqliteError(rc, db, absl::StrCat("preparing '", sql.substr(0, 80), "'"));
  }
  return SqliteStatement(db, stmt);
}

SqliteStatement::SqliteStatement(SqliteStatement&& other) noexcept
    : db_(other.db_), stmt_(other.stmt_) {
  other.stmt_ = nullptr;
}

SqliteStatement& SqliteStatement::operator=(SqliteStatement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    db_ = other.db_;
    stmt_ = other.stmt_;
    other.stmt_ = nullptr;
  }
  return *this;
}

SqliteStatement::~SqliteStatement() { sqlite3_finalize(stmt_); }

SqliteStatement& SqliteStatement::Bind(int i, int64_t v) {
  sqlite3_bind_int64(stmt_, i, v);
  return *this;
}
SqliteStatement& SqliteStatement::Bind(int i, double v) {
  sqlite3_bind_double(stmt_, i, v);
  return *this;
}
SqliteStatement& SqliteStatement::Bind(int i, absl::string_view text) {
  sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  return *this;
}
SqliteStatement& SqliteStatement::BindBlob(int i, const void* data, size_t size) {
  sqlite3_bind_blob(stmt_, i, data, static_cast<int>(size), SQLITE_TRANSIENT);
  return *this;
}
SqliteStatement& SqliteStatement::BindNull(int i) {
  sqlite3_bind_null(stmt_, i);
  return *this;
}

absl::StatusOr<bool> SqliteStatement::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteError(rc, db_,
                     absl::StrCat("running '", std::string(sqlite3_sql(stmt_)).substr(0, 80), "'"));
}

absl::Status SqliteStatement::Run() {
  while (true) {
    auto row = Step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::OkStatus();
  }
}

void SqliteStatement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int64_t SqliteStatement::ColumnInt(int i) const { return sqlite3_column_int64(stmt_, i); }
double SqliteStatement::ColumnDouble(int i) const { return sqlite3_column_double(stmt_, i); }
std::string SqliteStatement::ColumnText(int i) const {
  const unsigned char* p = sqlite3_column_text(stmt_, i);
  return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt_, i)) : "";
}
std::string SqliteStatement::ColumnBlob(int i) const {
  const void* p = sqlite3_column_blob(stmt_, i);
  return p ? std::string(static_cast<const char*>(p), sqlite3_column_bytes(stmt_, i)) : "";
}
bool SqliteStatement::ColumnIsNull(int i) const {
  return sqlite3_column_type(stmt_, i) == SQLITE_NULL;
}
std::optional<double> SqliteStatement::ColumnOptionalDouble(int i) const {
  if (ColumnIsNull(i)) return std::nullopt;
  return ColumnDouble(i);
}
std::optional<int64_t> SqliteStatement::ColumnOptionalInt(int i) const {
  if (ColumnIsNull(i)) return std::nullopt;
  return ColumnInt(i);
}

absl::StatusOr<SqliteTransaction> SqliteTransaction::Begin(sqlite3* db) {
  absl::Status st = SqliteExec(db, "BEGIN IMMEDIATE");
  if (!st.ok()) return st;
  return SqliteTransaction(db);
}

SqliteTransaction::SqliteTransaction(SqliteTransaction&& other) noexcept : db_(other.db_) {
  other.db_ = nullptr;
}

SqliteTransaction::~SqliteTransaction() {
  if (db_ != nullptr) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

absl::Status SqliteTransaction::Commit() {
  absl::Status st = SqliteExec(db_, "COMMIT");
  if (st.ok()) db_ = nullptr;
  return st;
}

}  // namespace ktune
