// The SQLite schema of the tuning database, as an ordered list of migrations.
//
// The stored version lives in meta(key='version'). Migration k brings a database from version k
// to k+1 (version 0 is an empty file). Never edit a released migration: add a new one.
#ifndef KTUNE_DB_SQLITE_SCHEMA_H_
#define KTUNE_DB_SQLITE_SCHEMA_H_

#include <vector>

namespace ktune {

// kSqliteMigrations[k] is the SQL that takes version k to k + 1.
extern const std::vector<const char*> kSqliteMigrations;

// The version that adds the table task_columns; migrating to it also fills the table
// (StoreColumnsOfAllRecords, db/sqlite_task_columns.h).
inline constexpr int kTaskColumnsSchemaVersion = 6;

// The version this build writes: kSqliteMigrations.size().
int CurrentSqliteSchemaVersion();

}  // namespace ktune

#endif  // KTUNE_DB_SQLITE_SCHEMA_H_
