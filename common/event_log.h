// Structured event logs on stderr: one line per event, either text
//   2026-11-27T09:20:01.123Z lease_expired lease_id=L12 worker_id=w3-1 candidates=8
// or, with --log-format json, one JSON object per line
//   {"ts":"2026-11-27T09:20:01.123Z","event":"lease_expired","lease_id":"L12",...}
// Field values are strings; ids of jobs, tasks, workers and leases are always fields of their
// own, so log pipelines can filter on them. Thread-safe.
#ifndef KTUNE_COMMON_EVENT_LOG_H_
#define KTUNE_COMMON_EVENT_LOG_H_

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"

namespace ktune {

// kOff drops every event: the embedded default (`ktune tune` without --server) runs a server
// and a worker in-process, and its progress line and summary say what matters.
enum class LogFormat { kText, kJson, kOff };

// Process-wide; text by default.
void SetLogFormat(LogFormat format);
LogFormat CurrentLogFormat();
// "text" or "json"; false for anything else.
bool ParseLogFormat(absl::string_view name, LogFormat* format);

using LogField = std::pair<absl::string_view, std::string>;
void LogEvent(absl::string_view event, std::initializer_list<LogField> fields = {});

}  // namespace ktune

#endif  // KTUNE_COMMON_EVENT_LOG_H_
