// An exclusive lock on a file, held by one process at a time (flock on a lock file beside the
// thing it guards; the kernel releases it when the process ends, however it ends).
#ifndef KTUNE_COMMON_FILE_LOCK_H_
#define KTUNE_COMMON_FILE_LOCK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ktune {

class ExclusiveFileLock {
 public:
  // Locks `path` (created if missing; this process's id is written into it), waiting up to
  // `wait` for another holder to let go. FailedPrecondition, naming the holder's process id, when
  // it does not; the error of open() when the file cannot be created.
  static absl::StatusOr<std::unique_ptr<ExclusiveFileLock>> Acquire(const std::string& path,
                                                                    absl::Duration wait);
  ~ExclusiveFileLock();  // releases the lock (the file stays)
  ExclusiveFileLock(const ExclusiveFileLock&) = delete;
  ExclusiveFileLock& operator=(const ExclusiveFileLock&) = delete;

 private:
  explicit ExclusiveFileLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace ktune

#endif  // KTUNE_COMMON_FILE_LOCK_H_
