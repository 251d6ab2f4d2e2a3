#include "cli/gnuplot.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
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
  // Where gnuplot cannot open its output it writes the plot to stdout: check first that the
  // file can be made, and never let gnuplot's stdout reach the terminal (its errors still do).
  {
    std::ofstream probe(partial);
    if (!probe) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
    }
  }
  FILE* gnuplot = popen("gnuplot >/dev/null", "w");
  if (gnuplot == nullptr) return absl::InternalError("could not start gnuplot");
  const std::string text = script(partial);
  fwrite(text.data(), 1, text.size(), gnuplot);
  const int status = pclose(gnuplot);
  std::error_code ignored, size_error;
  const bool drawn = std::filesystem::file_size(partial, size_error) > 0 && !size_error;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !drawn) {
    std::filesystem::remove(partial, ignored);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
      return absl::FailedPreconditionError(
          "--plot needs gnuplot on PATH (Debian: apt-get install gnuplot-nox)");
    }
    return absl::InternalError(absl::StrCat(
        "gnuplot failed drawing ", path,
        WIFEXITED(status) ? absl::StrCat(" (exit ", WEXITSTATUS(status), ")") : " (killed)"));
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
