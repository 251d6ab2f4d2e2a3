// `ktune best --pareto`: a task's time/error front (which configuration to serve for which
// accuracy budget), as text, JSON, and an SVG drawn by gnuplot.
#ifndef KTUNE_CLI_BEST_PARETO_H_
#define KTUNE_CLI_BEST_PARETO_H_

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "db/pareto_front.h"

namespace ktune::cli {

// A table of the front (fastest first, each more accurate than the faster ones), then how many
// configurations it dominates; `heading` is the first line.
std::string ParetoText(const std::vector<TradeOff>& trade_offs, const std::string& heading);

// {"front": [{config, time_ms, max_rel_error, measurements}...], "dominated": [...]}.
nlohmann::json ParetoJson(const std::vector<TradeOff>& trade_offs);

// Every configuration as a point (time against error, both log scale), the front as a step
// line; written to `path` as SVG.
std::string ParetoPlotScript(const std::vector<TradeOff>& trade_offs, const std::string& title,
                             const std::string& output);
absl::Status WriteParetoPlot(const std::vector<TradeOff>& trade_offs, const std::string& title,
                             const std::string& path);

}  // namespace ktune::cli

#endif  // KTUNE_CLI_BEST_PARETO_H_
