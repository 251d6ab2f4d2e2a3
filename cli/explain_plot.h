// `ktune explain --plot`: the tuning progress and the parameter effects of an explanation as an
// SVG, rendered by gnuplot (a program on PATH; Debian's gnuplot-nox).
#ifndef KTUNE_CLI_EXPLAIN_PLOT_H_
#define KTUNE_CLI_EXPLAIN_PLOT_H_

#include <string>

#include "absl/status/status.h"
#include "ktune/v1/tuning_service.pb.h"

namespace ktune::cli {

// The gnuplot script (data inline) that draws `explanation` to the SVG file `output`: left, the
// best time after each measurement; right, each parameter's median time by value over its
// fastest value's (the four largest effects). `title` heads the figure.
std::string ExplanationPlotScript(const v1::ExplainResponse& explanation, const std::string& title,
                                  const std::string& output);

// Writes the SVG to `path` (replacing it only once gnuplot succeeded). FailedPrecondition when
// gnuplot is not installed; Internal with gnuplot's exit status when it fails.
absl::Status WriteExplanationPlot(const v1::ExplainResponse& explanation, const std::string& title,
                                  const std::string& path);

}  // namespace ktune::cli

#endif  // KTUNE_CLI_EXPLAIN_PLOT_H_
