// Whole-file reading and writing. Not thread-hostile: each call owns its file handles.
#ifndef KTUNE_COMMON_FILE_UTIL_H_
#define KTUNE_COMMON_FILE_UTIL_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ktune {

// Reads a whole file, decompressing it when it is gzip (detected by its magic bytes, not its
// name). NotFound when it does not exist; DataLoss, naming the file, when the gzip stream is
// corrupt or truncated.
// ResourceExhausted, reading no more, when a stream (a pipe, a device: not a regular file) is
// longer than `max_bytes`, or gzip data decompresses past `max_bytes` and 64 times its size.
inline constexpr size_t kMaxReadFileBytes = size_t{2} << 30;
absl::StatusOr<std::string> ReadFileMaybeGzip(const std::string& path,
                                              size_t max_bytes = kMaxReadFileBytes);

// InvalidArgument, "PATH is a directory, not a file", for a directory (an ifstream opens one and
// reads it as empty); OK for anything else.
absl::Status RefuseDirectory(const std::string& path);

// Writes `contents` to `path` through a temporary file in the same folder and a rename, so a
// reader sees the old file or the new one, never half of it. Gzip-compresses when `gzip` is set.
// A symbolic link is written through (its target replaced, the link kept); a device, pipe or
// socket (/dev/null, /dev/stdout) is written in place, never replaced. InvalidArgument for a
// directory. A SIGINT or SIGTERM whose action is the default (ending the process) removes the
// temporary file before the process ends.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents,
                                 bool gzip = false);

}  // namespace ktune

#endif  // KTUNE_COMMON_FILE_UTIL_H_
