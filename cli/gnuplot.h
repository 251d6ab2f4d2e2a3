// SVG figures of the CLI (`ktune explain --plot`, `ktune best --pareto --plot`), rendered by
// gnuplot, a program on PATH (Debian's gnuplot-nox; scripts/install-deps.sh installs it).
#ifndef KTUNE_CLI_GNUPLOT_H_
#define KTUNE_CLI_GNUPLOT_H_

#include <functional>
#include <string>

#include "absl/status/status.h"

namespace ktune::cli {

// A gnuplot string literal for a command (a title, a file name): single-quoted, so that no
// `backquoted` text runs, with ' doubled and every control character (newline, tab, ...) a space,
// so that no text can end the literal's line.
std::string GnuplotQuoted(const std::string& s);
// A string column of a data row (inside `$name << EOD`): double-quoted, on one line, with no
// double quote or backquote.
std::string GnuplotDataString(const std::string& s);

// Runs gnuplot on `script(output)`, a script that writes an SVG to the file `output`, and puts
// the SVG at `path`, replacing it only once gnuplot succeeded. FailedPrecondition when gnuplot is
// not installed; Internal with gnuplot's exit status when it fails.
absl::Status RenderGnuplotSvg(const std::function<std::string(const std::string& output)>& script,
                              const std::string& path);

}  // namespace ktune::cli

#endif  // KTUNE_CLI_GNUPLOT_H_
