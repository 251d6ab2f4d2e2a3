// Read connections to one SQLite file, lent to one caller at a time.
//
// In WAL mode a reader sees the last transaction committed when its read began, and neither waits
// for the writer nor makes it wait: a QueryBest, an explain or a job listing no longer queues
// behind a report's commit (its fsync) or an import, and an export of a million records no longer
// holds every report for its whole read. Each lease is one read transaction (a consistent
// snapshot for the several statements of one call), ended when the lease is returned.
#ifndef KTUNE_DB_SQLITE_READERS_H_
#define KTUNE_DB_SQLITE_READERS_H_

#include <sqlite3.h>

#include <functional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace ktune {

class SqliteReaders {
 public:
  // `open` opens one read connection; at most `max` (>= 1) are open at once, made as needed.
  SqliteReaders(std::function<absl::StatusOr<sqlite3*>()> open, int max);
  // Closes the connections. None may be lent.
  ~SqliteReaders();
  SqliteReaders(const SqliteReaders&) = delete;
  SqliteReaders& operator=(const SqliteReaders&) = delete;

  // A connection inside a read transaction; returned (and its transaction ended) on destruction.
  class Lease {
   public:
    Lease(Lease&& other) noexcept : owner_(other.owner_), db_(other.db_) { other.db_ = nullptr; }
    Lease(const Lease&) = delete;
    ~Lease();
    sqlite3* db() const { return db_; }

   private:
    friend class SqliteReaders;
    Lease(SqliteReaders* owner, sqlite3* db) : owner_(owner), db_(db) {}
    SqliteReaders* owner_;
    sqlite3* db_;
  };

  // An idle connection, a new one while fewer than `max` are open, or else waits for one. Fails
  // only when a new connection cannot be opened or its transaction begun.
  absl::StatusOr<Lease> Borrow();

 private:
  void Return(sqlite3* db);

  const std::function<absl::StatusOr<sqlite3*>()> open_;
  const int max_;
  absl::Mutex mu_;
  std::vector<sqlite3*> idle_ ABSL_GUARDED_BY(mu_);
  int open_count_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace ktune

#endif  // KTUNE_DB_SQLITE_READERS_H_
