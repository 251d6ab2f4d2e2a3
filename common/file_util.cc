#include "common/file_util.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace ktune {
namespace {

absl::Status ErrnoError(const std::string& what, const std::string& path) {
  int err = errno;
  std::string msg = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  return absl::UnavailableError(msg);
}

// Every member of a gzip file, one after the other, as gzip(1) reads them (`cat a.gz b.gz`, rotated
// logs); DataLoss for a corrupt or truncated member, and for bytes after the last member that are
// not one.
absl::Status TooLarge(const std::string& path, size_t max_bytes) {
  return absl::ResourceExhaustedError(
      absl::StrCat(path, ": larger than ", max_bytes >> 20,
                   " MiB (uncompressed); nothing was read from it. Split it into smaller files"));
}

absl::StatusOr<std::string> Gunzip(const std::string& path, const std::string& compressed,
                                   size_t max_bytes) {
  z_stream zs{};
  // 16 + MAX_WBITS: expect a gzip header.
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
    return absl::InternalError("zlib inflateInit2 failed");
  }
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  zs.avail_in = static_cast<uInt>(compressed.size());
  std::string out;
  out.reserve(compressed.size() * 8);
  char buf[1 << 16];
  int rc = Z_OK;
  while (true) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - zs.avail_out);
    if (out.size() > max_bytes) {
      inflateEnd(&zs);
      return TooLarge(path, max_bytes);
    }
    if (rc == Z_STREAM_END && zs.avail_in > 0) {  // another member follows
      if (inflateReset(&zs) != Z_OK) break;
      rc = Z_OK;
      continue;
    }
    if (rc != Z_OK) break;
    if (zs.avail_in == 0 && zs.avail_out > 0) break;  // input ended inside a member
  }
  size_t consumed = compressed.size() - zs.avail_in;
  const std::string why = zs.msg ? zs.msg : "stream ended early";
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) {
    return absl::DataLossError(absl::StrCat(path,
                                            ": corrupt or truncated gzip data at compressed byte ",
                                            consumed, " of ", compressed.size(), " (", why, ")"));
  }
  return out;
}

}  // namespace

absl::Status RefuseDirectory(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is a directory, not a file"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFileMaybeGzip(const std::string& path, size_t max_bytes) {
  if (absl::Status s = RefuseDirectory(path); !s.ok()) return s;
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoError("cannot open", path);
  // A stream (a pipe, a device) in chunks up to `max_bytes`: /dev/zero grew the process to 6 GB
  // in 18 s without a word. A regular file is as large as it is.
  std::error_code ec;
  const bool regular = std::filesystem::is_regular_file(path, ec);
  std::string data;
  std::vector<char> chunk(1 << 20);
  while (in.read(chunk.data(), static_cast<std::streamsize>(chunk.size())) || in.gcount() > 0) {
    data.append(chunk.data(), static_cast<size_t>(in.gcount()));
    if (!regular && data.size() > max_bytes) return TooLarge(path, max_bytes);
  }
  if (in.bad()) return ErrnoError("cannot read", path);
  if (data.size() >= 2 && static_cast<unsigned char>(data[0]) == 0x1f &&
      static_cast<unsigned char>(data[1]) == 0x8b) {
    // A gzip bomb stops at the limit, or at 64 times the compressed size for a larger file
    // (an export compresses about 10 to 20 times).
    return Gunzip(path, data, std::max(max_bytes, 64 * data.size()));
  }
  return data;
}

namespace {

// Writes `contents` (gzip-compressed when `gzip`) to `file`, created or truncated. `sync`: fsync
// before closing (a regular file about to be renamed into place; a device or pipe cannot).
// On failure a file this call created is left for the caller to remove.
absl::Status WriteContents(const std::string& file, absl::string_view contents, bool gzip,
                           bool sync) {
  if (gzip) {
    gzFile gz = gzopen(file.c_str(), "wb");
    if (gz == nullptr) return ErrnoError("cannot create", file);
    size_t off = 0;
    while (off < contents.size()) {
      unsigned chunk = static_cast<unsigned>(std::min<size_t>(contents.size() - off, 1 << 20));
      if (gzwrite(gz, contents.data() + off, chunk) != static_cast<int>(chunk)) {
        gzclose(gz);
        return absl::UnavailableError(absl::StrCat("cannot write ", file));
      }
      off += chunk;
    }
    if (gzclose(gz) != Z_OK) return absl::UnavailableError(absl::StrCat("cannot finish ", file));
    if (sync) {  // zlib closes its own descriptor: sync through another
      int fd = ::open(file.c_str(), O_RDONLY);
      if (fd < 0 || ::fsync(fd) != 0) {
        absl::Status st = ErrnoError("cannot flush", file);
        if (fd >= 0) ::close(fd);
        return st;
      }
      ::close(fd);
    }
    return absl::OkStatus();
  }
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return ErrnoError("cannot create", file);
  size_t off = 0;
  while (off < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + off, contents.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status st = ErrnoError("cannot write", file);
      ::close(fd);
      return st;
    }
    off += static_cast<size_t>(n);
  }
  if ((sync && ::fsync(fd) != 0) || ::close(fd) != 0) return ErrnoError("cannot flush", file);
  return absl::OkStatus();
}

// The temporary file of the WriteFileAtomically under way, removed when SIGINT or SIGTERM ends
// the process while it is written (Ctrl-C during `db export --out` left FILE.tmp.PID behind). Only
// where the signal's action is the default (to end the process): a process with handlers of its
// own (the server; a command's InterruptScope) goes on, and finishes or removes the file itself.
char g_tmp_path[PATH_MAX];
volatile sig_atomic_t g_tmp_armed = 0;

extern "C" void RemoveTemporaryFileAndEnd(int sig) {
  if (g_tmp_armed) ::unlink(g_tmp_path);  // async-signal-safe
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

class TemporaryFileGuard {
 public:
  explicit TemporaryFileGuard(const std::string& tmp) {
    if (tmp.size() >= sizeof(g_tmp_path) || !Mutex().try_lock()) return;  // one write at a time
    locked_ = true;
    std::memcpy(g_tmp_path, tmp.c_str(), tmp.size() + 1);
    g_tmp_armed = 1;
    for (int i = 0; i < 2; ++i) {
      struct sigaction now {};
      if (::sigaction(kSignals[i], nullptr, &now) != 0 || now.sa_handler != SIG_DFL) continue;
      struct sigaction act {};
      act.sa_handler = RemoveTemporaryFileAndEnd;
      sigemptyset(&act.sa_mask);
      installed_[i] = ::sigaction(kSignals[i], &act, nullptr) == 0;
    }
  }
  ~TemporaryFileGuard() {
    if (!locked_) return;
    for (int i = 0; i < 2; ++i) {
      if (!installed_[i]) continue;
      // Back to the default only if the handler is still this one: another thread may have
      // installed its own meanwhile (a command's InterruptScope), which must stay.
      struct sigaction now {};
      if (::sigaction(kSignals[i], nullptr, &now) == 0 &&
          now.sa_handler == RemoveTemporaryFileAndEnd) {
        ::signal(kSignals[i], SIG_DFL);
      }
    }
    g_tmp_armed = 0;
    Mutex().unlock();
  }
  TemporaryFileGuard(const TemporaryFileGuard&) = delete;
  TemporaryFileGuard& operator=(const TemporaryFileGuard&) = delete;

 private:
  static constexpr int kSignals[2] = {SIGINT, SIGTERM};
  static std::mutex& Mutex() {
    static std::mutex mu;
    return mu;
  }
  bool locked_ = false;
  bool installed_[2] = {false, false};
};

}  // namespace

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents, bool gzip) {
  namespace fs = std::filesystem;
  std::error_code ec;
  // A rename replaces what `path` names: a symbolic link would become a file, and a device
  // (--out /dev/null, /dev/stdout) a regular file in /dev. Write through a link to its target,
  // and into a device, pipe or socket in place.
  std::string target = path;
  if (fs::is_symlink(path, ec)) {
    const fs::path resolved = fs::weakly_canonical(path, ec);
    if (!ec) target = resolved.string();
  }
  const fs::file_status status = fs::status(target, ec);
  if (fs::is_directory(status)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is a directory, not a file"));
  }
  if (fs::exists(status) && !fs::is_regular_file(status)) {
    return WriteContents(target, contents, gzip, /*sync=*/false);
  }
  const std::string tmp = absl::StrCat(target, ".tmp.", getpid());
  TemporaryFileGuard removed_if_interrupted(tmp);
  if (absl::Status st = WriteContents(tmp, contents, gzip, /*sync=*/true); !st.ok()) {
    std::remove(tmp.c_str());
    return st;
  }
  if (std::rename(tmp.c_str(), target.c_str()) != 0) {
    absl::Status st = ErrnoError("cannot rename onto", target);
    std::remove(tmp.c_str());
    return st;
  }
  return absl::OkStatus();
}

}  // namespace ktune
