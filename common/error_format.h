// How a measured error (Record::max_rel_error) is printed for people.
#ifndef KTUNE_COMMON_ERROR_FORMAT_H_
#define KTUNE_COMMON_ERROR_FORMAT_H_

#include <cmath>
#include <cstdlib>
#include <string>

#include "absl/strings/str_format.h"

namespace ktune {

// An error above which a configuration has traded precision: fp32 configurations differ only by
// rounding order, about 1e-7 to 1e-5 (docs/precision.md); fp16 and int8 start near 1e-4.
inline constexpr double kTradedPrecisionError = 1e-4;

// `error` with three significant digits, rounded up, never down: pasted back as an accuracy
// budget (--max-rel-error), the printed value admits the configuration it was printed for
// (2.404e-07 prints as 2.41e-07, where %.3g gave 2.4e-07, a budget that refuses it).
inline std::string FormatErrorBound(double error) {
  std::string text = absl::StrFormat("%.3g", error);
  if (!(error > 0) || std::isinf(error)) return text;
  // Rounded down: step the third significant digit up until the text admits `error`.
  for (int i = 0; i < 3 && std::strtod(text.c_str(), nullptr) < error; ++i) {
    const double shown = std::strtod(text.c_str(), nullptr);
    const double unit = std::pow(10.0, std::floor(std::log10(shown)) - 2);
    text = absl::StrFormat("%.3g", shown + unit);
  }
  return text;
}

}  // namespace ktune

#endif  // KTUNE_COMMON_ERROR_FORMAT_H_
