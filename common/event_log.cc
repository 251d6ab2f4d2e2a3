#include "common/event_log.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace ktune {
namespace {

std::atomic<LogFormat> g_format{LogFormat::kText};
std::mutex g_mu;

// A value as logfmt writes it: bare when it is one plain word, else in double quotes with
// backslash, quote and control characters escaped. A value with a newline (a worker's host name
// is the client's to choose) wrote a second, forged log line.
std::string LogfmtValue(absl::string_view value) {
  const bool plain = !value.empty() && std::none_of(value.begin(), value.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u <= ' ' || u == 0x7f || c == '"' || c == '=' || c == '\\';
  });
  if (plain) return std::string(value);
  std::string out = "\"";
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (u < ' ' || u == 0x7f) {
      absl::StrAppendFormat(&out, "\\x%02x", u);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace

void SetLogFormat(LogFormat format) { g_format = format; }

LogFormat CurrentLogFormat() { return g_format; }

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
    for (const auto& [key, value] : fields) {
      absl::StrAppend(&line, " ", key, "=", LogfmtValue(value));
    }
  }
  line += '\n';
  std::lock_guard<std::mutex> lock(g_mu);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace ktune
