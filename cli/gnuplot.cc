#include "cli/gnuplot.h"

#include <signal.h>
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
#include "common/file_util.h"
#include "common/utf8.h"

namespace ktune::cli {

namespace {
// `s` on one line: a control character (a newline above all) would end the line a literal or a
// data row is on and let the rest run as gnuplot commands (system() included).
std::string OneLine(const std::string& s) {
  std::string out = s;
  for (char& c : out) {
    if (IsControlCharacter(c)) c = ' ';
  }
  return out;
}
}  // namespace

std::string GnuplotQuoted(const std::string& s) {
  // Single quotes: gnuplot runs `backquoted` text inside double quotes, never inside these.
  return absl::StrCat("'", absl::StrReplaceAll(OneLine(s), {{"'", "''"}}), "'");
}

std::string GnuplotDataString(const std::string& s) {
  // A data row's string column is double-quoted and knows no escapes: a double quote or a
  // backquote in the text becomes a single quote.
  return absl::StrCat("\"", absl::StrReplaceAll(OneLine(s), {{"\"", "'"}, {"`", "'"}}), "\"");
}

absl::Status RenderGnuplotSvg(const std::function<std::string(const std::string& output)>& script,
                              const std::string& path) {
  // gnuplot writes a temporary file beside the target, put in its place once complete; for a
  // device or pipe (/dev/stdout), in the temporary folder (nothing may be created beside it).
  std::error_code status_error;
  const std::filesystem::file_status target = std::filesystem::status(path, status_error);
  const bool special = std::filesystem::exists(target) &&
                       !std::filesystem::is_regular_file(target) &&
                       !std::filesystem::is_directory(target);
  const std::string partial = special ? (std::filesystem::temp_directory_path(status_error) /
                                         absl::StrCat("ktune-plot-", getpid(), ".svg"))
                                            .string()
                                      : absl::StrCat(path, ".partial-", getpid());
  // Where gnuplot cannot open its output it writes the plot to stdout: check first that the
  // file can be made, and never let gnuplot's stdout reach the terminal (its errors still do).
  {
    std::ofstream probe(partial);
    if (!probe) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
    }
  }
  // Where no gnuplot runs (not installed: the shell exits 127 at once) the write below meets a
  // closed pipe; SIGPIPE would kill ktune there, before its message and with its output cut.
  struct sigaction ignore_pipe {
  }, saved_pipe{};
  ignore_pipe.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ignore_pipe, &saved_pipe);
  // gnuplot's stderr goes to a file of ours: its warnings ("empty y range", a plot whose best
  // never improved) are no news to the user; its errors are quoted when it fails.
  // In the temporary folder, as a plot to a device is (its name goes into a shell command: the
  // folder is $TMPDIR's only where its characters are safe there).
  std::error_code tmp_error;
  std::string folder = std::filesystem::temp_directory_path(tmp_error).string();
  if (tmp_error || folder.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                            "0123456789/._-") != std::string::npos) {
    folder = "/tmp";
  }
  std::string messages_path = folder + "/ktune-gnuplot-XXXXXX";
  const int messages_fd = mkstemp(messages_path.data());
  if (messages_fd >= 0) close(messages_fd);
  const std::string command = messages_fd >= 0
                                  ? absl::StrCat("gnuplot >/dev/null 2>", messages_path)
                                  : "gnuplot >/dev/null";
  FILE* gnuplot = popen(command.c_str(), "w");
  std::error_code ignored, size_error;
  if (gnuplot == nullptr) {
    sigaction(SIGPIPE, &saved_pipe, nullptr);
    if (messages_fd >= 0) std::filesystem::remove(messages_path, ignored);
    return absl::InternalError("could not start gnuplot");
  }
  const std::string text = script(partial);
  fwrite(text.data(), 1, text.size(), gnuplot);
  const int status = pclose(gnuplot);
  sigaction(SIGPIPE, &saved_pipe, nullptr);
  std::string messages;
  if (messages_fd >= 0) {
    messages = ReadFileMaybeGzip(messages_path).value_or("");
    std::filesystem::remove(messages_path, ignored);
  }
  const bool drawn = std::filesystem::file_size(partial, size_error) > 0 && !size_error;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !drawn) {
    std::filesystem::remove(partial, ignored);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
      return absl::FailedPreconditionError(
          "--plot needs gnuplot on PATH (Debian: apt-get install gnuplot-nox)");
    }
    return absl::InternalError(absl::StrCat(
        "gnuplot failed drawing ", path,
        WIFEXITED(status) ? absl::StrCat(" (exit ", WEXITSTATUS(status), ")") : " (killed)",
        messages.empty() ? "" : ": ", OneLine(messages.substr(0, 2000))));
  }
  // Into place as every output file goes (WriteFileAtomically: a link or a device named by
  // --plot is written through, not replaced by the plot).
  absl::StatusOr<std::string> svg = ReadFileMaybeGzip(partial);
  std::filesystem::remove(partial, ignored);
  if (!svg.ok()) return svg.status();
  return WriteFileAtomically(path, *svg);
}

}  // namespace ktune::cli
