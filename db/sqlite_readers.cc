#include "db/sqlite_readers.h"

#include <utility>

#include "db/sqlite_util.h"

namespace ktune {

SqliteReaders::SqliteReaders(std::function<absl::StatusOr<sqlite3*>()> open, int max)
    : open_(std::move(open)), max_(max < 1 ? 1 : max) {}

SqliteReaders::~SqliteReaders() {
  absl::MutexLock lock(&mu_);
  for (sqlite3* db : idle_) sqlite3_close(db);
}

absl::StatusOr<SqliteReaders::Lease> SqliteReaders::Borrow() {
  sqlite3* db = nullptr;
  {
    absl::MutexLock lock(&mu_);
    auto available = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return !idle_.empty() || open_count_ < max_;
    };
    mu_.Await(absl::Condition(&available));
    if (!idle_.empty()) {
      db = idle_.back();
      idle_.pop_back();
    } else {
      ++open_count_;  // reserved while it opens, outside the lock
    }
  }
  if (db == nullptr) {
    absl::StatusOr<sqlite3*> opened = open_();
    if (!opened.ok()) {
      absl::MutexLock lock(&mu_);
      --open_count_;
      return opened.status();
    }
    db = *opened;
  }
  // BEGIN (deferred) takes the snapshot at the lease's first read and keeps it to the end.
  if (absl::Status st = SqliteExec(db, "BEGIN"); !st.ok()) {
    Return(db);
    return st;
  }
  return Lease(this, db);
}

void SqliteReaders::Return(sqlite3* db) {
  // A failed statement may have ended the transaction already (SQLite rolls back on some errors).
  if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  absl::MutexLock lock(&mu_);
  idle_.push_back(db);
}

SqliteReaders::Lease::~Lease() {
  if (db_ != nullptr) owner_->Return(db_);
}

}  // namespace ktune
