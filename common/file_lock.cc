#include "common/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace ktune {

absl::StatusOr<std::unique_ptr<ExclusiveFileLock>> ExclusiveFileLock::Acquire(
    const std::string& path, absl::Duration wait) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot open the lock file ", path));
  }
  const absl::Time deadline = absl::Now() + wait;
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      const int e = errno;
      ::close(fd);
      return absl::ErrnoToStatus(e, absl::StrCat("cannot lock ", path));
    }
    if (absl::Now() >= deadline) {
      char holder[32] = {};
      const ssize_t n = ::pread(fd, holder, sizeof(holder) - 1, 0);
      ::close(fd);
      const std::string pid(absl::StripAsciiWhitespace(n > 0 ? std::string(holder, n) : ""));
      return absl::FailedPreconditionError(
          absl::StrCat(path, " is held by process ", pid.empty() ? "(unknown)" : pid));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  // Who holds it, for the next one's message (the lock holds without the note).
  const std::string pid = absl::StrCat(::getpid(), "\n");
  const bool noted = ::ftruncate(fd, 0) == 0 && ::pwrite(fd, pid.data(), pid.size(), 0) >= 0;
  static_cast<void>(noted);
  return std::unique_ptr<ExclusiveFileLock>(new ExclusiveFileLock(fd));
}

ExclusiveFileLock::~ExclusiveFileLock() { ::close(fd_); }

}  // namespace ktune
