#include "common/event_log.h"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace ktune {
namespace {

std::atomic<LogFormat> g_format{LogFormat::kText};
std::mutex g_mu;

}  // namespace

void SetLogFormat(LogFormat format) { g_format = format; }

bool ParseLogFormat(absl::string_view name, LogFormat* format) {
  if (name == "text")
    *format = LogFormat::kText;
  else if (name == "json")
    *format = LogFormat::kJson;
  else
    return false;
  return true;
}

void LogEvent(absl::string_view event, std::initializer_list<LogField> fields) {
  if (g_format == LogFormat::kOff) return;
  const std::string ts = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  std::string line;
  if (g_format == LogFormat::kJson) {
    nlohmann::json j{{"ts", ts}, {"event", std::string(event)}};
    for (const auto& [key, value] : fields) j[std::string(key)] = value;
    line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line = absl::StrCat(ts, " ", event);
    for (const auto& [key, value] : fields) absl::StrAppend(&line, " ", key, "=", value);
  }
  line += '\n';
  std::lock_guard<std::mutex> lock(g_mu);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace ktune
