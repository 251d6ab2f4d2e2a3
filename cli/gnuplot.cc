#include "cli/gnuplot.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace ktune::cli {

std::string GnuplotQuoted(const std::string& s) {
  return absl::StrCat("\"", absl::StrReplaceAll(s, {{"\\", "\\\\"}, {"\"", "\\\""}}), "\"");
}

absl::Status RenderGnuplotSvg(const std::function<std::string(const std::string& output)>& script,
                              const std::string& path) {
  // gnuplot writes a temporary file beside the target, renamed over it once complete.
  const std::string partial = absl::StrCat(path, ".partial-", getpid());
  FILE* gnuplot = popen("gnuplot 1>&2", "w");
  if (gnuplot == nullptr) return absl::InternalError("could not start gnuplot");
  const std::string text = script(partial);
  fwrite(text.data(), 1, text.size(), gnuplot);
  const int status = pclose(gnuplot);
  std::error_code ignored;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !std::filesystem::exists(partial)) {
    std::filesystem::remove(partial, ignored);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
      return absl::FailedPreconditionError(
          "--plot needs gnuplot on PATH (Debian: apt-get install gnuplot-nox)");
    }
    return absl::InternalError(absl::StrCat("gnuplot failed (status ", status, ") drawing ", path));
  }
  std::error_code error;
  std::filesystem::rename(partial, path, error);
  if (error) {
    std::filesystem::remove(partial, ignored);
    return absl::InternalError(absl::StrCat("could not write ", path, ": ", error.message()));
  }
  return absl::OkStatus();
}

}  // namespace ktune::cli
