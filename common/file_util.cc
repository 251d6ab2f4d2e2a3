#include "common/file_util.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

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

absl::StatusOr<std::string> Gunzip(const std::string& path, const std::string& compressed) {
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
  while (rc == Z_OK) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - zs.avail_out);
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) break;  // input ended early
  }
  size_t consumed = compressed.size() - zs.avail_in;
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) {
    return absl::DataLossError(
        absl::StrCat(path, ": corrupt or truncated gzip data at compressed byte ", consumed, " of ",
                     compressed.size(), " (", zs.msg ? zs.msg : "stream ended early", ")"));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> ReadFileMaybeGzip(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {  // an ifstream reads a directory as empty
    return absl::InvalidArgumentError(absl::StrCat(path, " is a directory, not a file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoError("cannot open", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return ErrnoError("cannot read", path);
  std::string data = std::move(ss).str();
  if (data.size() >= 2 && static_cast<unsigned char>(data[0]) == 0x1f &&
      static_cast<unsigned char>(data[1]) == 0x8b) {
    return Gunzip(path, data);
  }
  return data;
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents, bool gzip) {
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  if (gzip) {
    gzFile gz = gzopen(tmp.c_str(), "wb");
    if (gz == nullptr) return ErrnoError("cannot create", tmp);
    size_t off = 0;
    while (off < contents.size()) {
      unsigned chunk = static_cast<unsigned>(std::min<size_t>(contents.size() - off, 1 << 20));
      if (gzwrite(gz, contents.data() + off, chunk) != static_cast<int>(chunk)) {
        gzclose(gz);
        std::remove(tmp.c_str());
        return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
      }
      off += chunk;
    }
    if (gzclose(gz) != Z_OK) {
      std::remove(tmp.c_str());
      return absl::UnavailableError(absl::StrCat("cannot finish ", tmp));
    }
  } else {
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return ErrnoError("cannot create", tmp);
    size_t off = 0;
    while (off < contents.size()) {
      ssize_t n = ::write(fd, contents.data() + off, contents.size() - off);
      if (n < 0) {
        if (errno == EINTR) continue;
        absl::Status st = ErrnoError("cannot write", tmp);
        ::close(fd);
        std::remove(tmp.c_str());
        return st;
      }
      off += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
      absl::Status st = ErrnoError("cannot flush", tmp);
      std::remove(tmp.c_str());
      return st;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status st = ErrnoError("cannot rename onto", path);
    std::remove(tmp.c_str());
    return st;
  }
  return absl::OkStatus();
}

}  // namespace ktune
