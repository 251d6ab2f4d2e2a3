#include "measurer/input_files.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/hash.h"
#include "measurer/cpu_kernel_compiler.h"

namespace ktune {
namespace {

constexpr int64_t kMaxInputFileBytes = int64_t{1} << 30;

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the inputs file ", path));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

}  // namespace

std::string DefaultInputsDir() { return absl::StrCat(DefaultCacheDir(), "/inputs"); }

absl::StatusOr<std::string> StoreInputFile(const std::string& path, const std::string& dir) {
  std::error_code error;
  const auto size = std::filesystem::file_size(path, error);
  if (error) return absl::NotFoundError(absl::StrCat("cannot read the inputs file ", path));
  if (size == 0 || size % sizeof(float) != 0 || static_cast<int64_t>(size) > kMaxInputFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the inputs file ", path, " has ", size,
        " bytes; it must hold raw float32 values (a multiple of 4 bytes, 1 GiB at most)"));
  }
  absl::StatusOr<std::string> bytes = ReadAll(path);
  if (!bytes.ok()) return bytes.status();
  for (size_t i = 0; i < bytes->size(); i += sizeof(float)) {
    float v;
    std::memcpy(&v, bytes->data() + i, sizeof(float));
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(absl::StrCat("the inputs file ", path, " holds ", v,
                                                     " at value ", i / sizeof(float),
                                                     "; inputs must be finite"));
    }
  }
  const std::string hash = StableHashHex(*bytes);
  std::filesystem::create_directories(dir, error);
  const std::string target = absl::StrCat(dir, "/", hash, ".f32");
  if (!std::filesystem::exists(target)) {
    if (absl::Status s = WriteFileAtomically(target, *bytes); !s.ok()) return s;
  }
  return absl::StrCat("file:", hash);
}

absl::StatusOr<std::string> ResolveInputFile(const std::string& data_value,
                                             const std::string& dir) {
  if (!absl::StartsWith(data_value, "file:")) {
    return absl::InvalidArgumentError(absl::StrCat("'", data_value, "' is not file:<hash>"));
  }
  const std::string hash = data_value.substr(5);
  const std::string path = absl::StrCat(dir, "/", hash, ".f32");
  absl::StatusOr<std::string> bytes = ReadAll(path);
  if (!bytes.ok()) {
    return absl::NotFoundError(absl::StrCat(
        "this machine has no inputs file ", hash, " (looked for ", path,
        "); store it with `ktune tune --inputs FILE` here, or copy it there"));
  }
  if (StableHashHex(*bytes) != hash) {
    return absl::DataLossError(absl::StrCat("the inputs file ", path,
                                            " no longer has the content its name says"));
  }
  return path;
}

}  // namespace ktune
