#include "cli/explain_plot.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/gnuplot.h"
#include "proto/convert.h"

namespace ktune::cli {
namespace {

constexpr int kPlottedParameters = 4;
constexpr int kLabelledValues = 8;

std::string Quoted(const std::string& s) { return GnuplotQuoted(s); }

}  // namespace

std::string ExplanationPlotScript(const v1::ExplainResponse& e, const std::string& title,
                                  const std::string& output) {
  std::string s = absl::StrCat("set terminal svg size 1100,440 dynamic noenhanced font 'sans,11'\n",
                               "set output ", Quoted(output), "\n");
  // Progress: evaluation -> best so far (points before the first ok record are left out).
  absl::StrAppend(&s, "$progress << EOD\n");
  for (int i = 0; i < e.best_so_far_ms_size(); ++i) {
    if (e.best_so_far_ms(i) > 0) absl::StrAppend(&s, i + 1, " ", e.best_so_far_ms(i), "\n");
  }
  absl::StrAppend(&s, "EOD\n");
  // Effects: one block per parameter, "index median/fastest label".
  int plotted = 0;
  std::string plots;
  for (const v1::ParameterEffect& p : e.parameters()) {
    if (plotted == kPlottedParameters) break;
    double fastest = 0;
    for (const v1::ParameterValueEffect& v : p.values()) {
      if (v.measurements() >= 3) fastest = fastest == 0 ? v.median_ms() : std::min(fastest, v.median_ms());
    }
    if (fastest == 0) continue;
    absl::StrAppend(&s, "$effect", plotted, " << EOD\n");
    int index = 0;
    for (const v1::ParameterValueEffect& v : p.values()) {
      if (v.measurements() < 3) continue;
      absl::StrAppend(&s, index++, " ", v.median_ms() / fastest, " ",
                      GnuplotDataString(FormatProtoValue(v.value())), "\n");
    }
    absl::StrAppend(&s, "EOD\n");
    absl::StrAppend(&plots, plots.empty() ? "plot " : ", ", "$effect", plotted,
                    " using 1:2 with linespoints lw 2 title ", Quoted(p.name()));
    // Value labels only where they stay readable.
    if (index <= kLabelledValues) {
      absl::StrAppend(&plots, ", $effect", plotted, " using 1:2:3 with labels offset 0,0.8 notitle");
    }
    ++plotted;
  }
  absl::StrAppend(&s, "set multiplot layout 1,2 title ", Quoted(title), "\n",
                  "set title 'Tuning progress'\nset xlabel 'measurements'\n",
                  "set ylabel 'best time so far (ms)'\nset logscale xy\nset grid\n",
                  "plot $progress using 1:2 with steps lw 2 notitle\n",
                  "unset logscale xy\nset title 'Parameter effects (values measured 3+ times)'\n",
                  "set xlabel 'value (in order)'\nset ylabel 'median time / fastest value''s'\n");
  if (plots.empty()) {
    absl::StrAppend(&s, "set label 1 'too few measurements' at graph 0.3,0.5\n",
                    "plot [0:1][0:1] NaN notitle\n");
  } else {
    absl::StrAppend(&s, "set offsets 0.3,0.3,0.1,0.1\n", plots, "\n");
  }
  absl::StrAppend(&s, "unset multiplot\nset output\n");
  return s;
}

absl::Status WriteExplanationPlot(const v1::ExplainResponse& e, const std::string& title,
                                  const std::string& path) {
  return RenderGnuplotSvg(
      [&](const std::string& output) { return ExplanationPlotScript(e, title, output); }, path);
}

}  // namespace ktune::cli
