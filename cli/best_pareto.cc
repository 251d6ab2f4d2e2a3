#include "cli/best_pareto.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/gnuplot.h"
#include "common/error_format.h"

namespace ktune::cli {
namespace {

nlohmann::json TradeOffJson(const TradeOff& t) {
  return {{"config", nlohmann::json::parse(CanonicalJson(t.config))},
          {"time_ms", t.time_ms},
          {"max_rel_error", t.max_rel_error},
          {"measurements", t.measurements},
          {"served", t.served}};
}

}  // namespace

std::string ParetoText(const std::vector<TradeOff>& trade_offs, const std::string& heading) {
  std::string out = absl::StrCat(heading, "\n");
  if (trade_offs.empty()) {
    absl::StrAppend(&out,
                    "no measurement with a measured error (ktune's CPU workers measure it; "
                    "recorded spaces and older records do not)\n");
    return out;
  }
  const std::vector<TradeOff> front = ParetoFront(trade_offs);
  absl::StrAppend(&out, absl::StrFormat("%12s  %13s  %s\n", "time (ms)", "max rel error",
                                        "configuration (fastest within any budget >= its error)"));
  for (const TradeOff& t : front) {
    absl::StrAppend(
        &out, absl::StrFormat("%12.4f  %13s  %s\n", t.time_ms, FormatErrorBound(t.max_rel_error),
                              FormatParamMapAssignments(t.config)));
  }
  if (front.empty()) absl::StrAppend(&out, "(no configuration measured ok: nothing is served)\n");
  // Refused by a job's budget: not served, so not on the front, but what a looser budget buys.
  std::vector<TradeOff> refused;
  for (const TradeOff& t : trade_offs) {
    if (!t.served) refused.push_back(t);
  }
  const size_t shown = std::min<size_t>(refused.size(), 5);
  if (!refused.empty()) {
    absl::StrAppend(&out,
                    "not served (only measured as too inaccurate for a job's budget; a job "
                    "with a budget at least its error measures it again):\n");
  }
  for (size_t i = 0; i < shown; ++i) {
    const TradeOff& t = refused[i];
    absl::StrAppend(
        &out, absl::StrFormat("%12.4f  %13s  %s\n", t.time_ms, FormatErrorBound(t.max_rel_error),
                              FormatParamMapAssignments(t.config)));
  }
  if (refused.size() > shown) {
    absl::StrAppend(&out, "   ... and ", refused.size() - shown, " more (--json lists them)\n");
  }
  const size_t served = trade_offs.size() - refused.size();
  absl::StrAppend(&out, front.size(), " on the front; ", served - front.size(), " of ", served,
                  " served configurations are dominated (another is faster and as accurate)",
                  refused.empty() ? "" : absl::StrCat("; ", refused.size(), " not served"), "\n");
  return out;
}

nlohmann::json ParetoJson(const std::vector<TradeOff>& trade_offs) {
  nlohmann::json front = nlohmann::json::array(), dominated = nlohmann::json::array(),
                 not_served = nlohmann::json::array();
  for (const TradeOff& t : trade_offs) {
    (!t.served ? not_served : t.on_front ? front : dominated).push_back(TradeOffJson(t));
  }
  return {{"front", front}, {"dominated", dominated}, {"not_served", not_served}};
}

std::string ParetoPlotScript(const std::vector<TradeOff>& trade_offs, const std::string& title,
                             const std::string& output) {
  // Errors of exactly 0 (an exact kernel) cannot sit on a log axis: they are drawn at the
  // smallest positive error / 10, or 1e-9.
  double floor = 0;
  for (const TradeOff& t : trade_offs) {
    if (t.max_rel_error > 0 && (floor == 0 || t.max_rel_error < floor)) floor = t.max_rel_error;
  }
  floor = floor > 0 ? floor / 10 : 1e-9;
  auto error_of = [&](const TradeOff& t) { return t.max_rel_error > 0 ? t.max_rel_error : floor; };
  std::string s = absl::StrCat("set terminal svg size 800,520 dynamic noenhanced font 'sans,11'\n",
                               "set output ", GnuplotQuoted(output), "\n", "$all << EOD\n");
  for (const TradeOff& t : trade_offs) absl::StrAppend(&s, error_of(t), " ", t.time_ms, "\n");
  absl::StrAppend(&s, "EOD\n$front << EOD\n");
  for (const TradeOff& t : trade_offs) {
    if (t.on_front) absl::StrAppend(&s, error_of(t), " ", t.time_ms, "\n");
  }
  absl::StrAppend(&s, "EOD\n", "set title ", GnuplotQuoted(title), "\n",
                  "set xlabel 'max relative error against the reference'\n",
                  "set ylabel 'time (ms)'\nset logscale xy\nset grid\nset key top right\n");
  if (trade_offs.empty()) {
    absl::StrAppend(&s, "unset logscale xy\nset label 1 'no measured errors' at graph 0.4,0.5\n",
                    "plot [0:1][0:1] NaN notitle\n");
  } else {
    absl::StrAppend(&s,
                    "plot $all using 1:2 with points pt 7 ps 0.5 lc rgb '#9a9a9a' "
                    "title 'configurations', $front using 1:2 with steps lw 2 lc rgb '#d04020' "
                    "title 'front', $front using 1:2 with points pt 7 ps 0.9 lc rgb '#d04020' "
                    "notitle\n");
  }
  absl::StrAppend(&s, "set output\n");
  return s;
}

absl::Status WriteParetoPlot(const std::vector<TradeOff>& trade_offs, const std::string& title,
                             const std::string& path) {
  return RenderGnuplotSvg(
      [&](const std::string& output) { return ParetoPlotScript(trade_offs, title, output); }, path);
}

}  // namespace ktune::cli
