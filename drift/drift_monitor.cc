#include "drift/drift_monitor.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/hash.h"
#include "common/utf8.h"

namespace ktune {

const char* DriftKindName(DriftKind kind) {
  switch (kind) {
    case DriftKind::kRegression:
      return "regression";
    case DriftKind::kNewEnvironment:
      return "new_environment";
    case DriftKind::kUntunedHotProblem:
      return "untuned_hot_problem";
  }
  return "regression";
}

std::optional<TuningKnowledge::Best> DatabaseKnowledge::LabBest(const TaskKey& task) {
  BestQuery q;
  q.kernel = task.kernel;
  q.kernel_version = task.kernel_version;
  q.problem = task.problem;
  q.device_class = task.device_class;
  q.family = "-";  // no family fallback: tuned on this class or not
  absl::StatusOr<BestResult> best = db_->QueryBest(q);
  if (!best.ok() || best->level != MatchLevel::kDeviceClass) return std::nullopt;
  const Record& r = best->records.front();
  if (!r.time_ms) return std::nullopt;
  return Best{*r.time_ms, r.config};
}

bool DatabaseKnowledge::FingerprintTuned(const TaskKey& task, const std::string& fingerprint_hash) {
  BestQuery q;
  q.kernel = task.kernel;
  q.kernel_version = task.kernel_version;
  q.problem = task.problem;
  q.fingerprint_hash = fingerprint_hash;
  q.family = "-";
  absl::StatusOr<BestResult> best = db_->QueryBest(q);
  return best.ok() && best->level == MatchLevel::kExact;
}

DriftFlag DriftMonitor::NewFlag(DriftKind kind, const TelemetryReport& report) {
  DriftFlag f;
  f.id = static_cast<int64_t>(flags_.size()) + 1;
  f.kind = kind;
  f.task = {report.kernel, report.kernel_version, report.problem, report.device.device_class};
  f.raised_at_us = report.received_at_us;
  return f;
}

std::string DriftMonitor::DuplicateKey(const TelemetryReport& r) {
  if (r.window_start_us == r.received_at_us && r.window_end_us == r.received_at_us) return "";
  // A hash, 16 hex digits: 4,096 remembered per task are 64 KiB, not the keys' megabytes.
  return StableHashHex(absl::StrFormat("%s|%s|%d|%d|%d|%.17g|%.17g", CanonicalJson(r.config),
                                       r.device.FingerprintHash(), r.window_start_us,
                                       r.window_end_us, r.count, r.mean_ms, r.stddev_ms));
}

bool DriftMonitor::IsDuplicate(const TelemetryReport& report) const {
  const std::string key = DuplicateKey(report);
  if (key.empty()) return false;
  absl::MutexLock lock(&mu_);
  auto it = tasks_.find({report.kernel, CanonicalJson(report.problem), report.device.device_class});
  return it != tasks_.end() && it->second.seen.count(key) > 0;
}

std::vector<DriftFlag> DriftMonitor::Observe(const TelemetryReport& report,
                                             TuningKnowledge& knowledge, ReportUse* use) {
  if (use != nullptr) *use = ReportUse::kJudged;
  const TaskKey task{report.kernel, report.kernel_version, report.problem,
                     report.device.device_class};
  const std::optional<TuningKnowledge::Best> tuned = knowledge.LabBest(task);
  const std::optional<double> lab =
      tuned ? std::optional<double>(tuned->time_ms) : std::optional<double>();
  const std::string fingerprint = report.device.FingerprintHash();
  // A report that names only its class carries no fingerprint to check.
  const bool has_fingerprint =
      report.device.fingerprint_json != DeviceInfo::FromName(report.device.device_class).fingerprint_json;
  const bool fingerprint_tuned = !lab || !has_fingerprint || knowledge.FingerprintTuned(task, fingerprint);

  absl::MutexLock lock(&mu_);
  std::vector<DriftFlag> raised;
  TaskState& state =
      tasks_[{report.kernel, CanonicalJson(report.problem), report.device.device_class}];
  // A client's retry of a report it had sent counted its calls and its time twice: three slow
  // windows sent three times raised a regression, and one window of 60,000 calls sent twice a
  // hot problem (a telemetry trial).
  if (const std::string key = DuplicateKey(report); !key.empty()) {
    if (!state.seen.insert(key).second) {
      if (use != nullptr) *use = ReportUse::kDuplicate;
      return {};
    }
    state.seen_order.push_back(key);
    if (state.seen_order.size() > kRememberedReports) {
      state.seen.erase(state.seen_order.front());
      state.seen_order.pop_front();
    }
  }
  state.calls += report.count;
  ++state.reports;
  const std::string config = CanonicalJson(report.config);
  auto [stream, created] = state.streams.try_emplace(config, options_.detector);
  state.stream_calls[config] += report.count;
  // Windows, not arrival, say what is recent: slow windows of two weeks before, sent late, were
  // flagged as a recent slowdown (a telemetry trial).
  // Late is more than kLateAfter older: reporters that send their windows minutes or hours apart,
  // a file of one host's day then another's, or a clock a day off, are judged as before.
  auto [newest, first] = state.newest_window.try_emplace(config, report.window_start_us);
  const bool late = !first && report.window_end_us < newest->second - kLateAfterUs;
  if (late && use != nullptr) *use = ReportUse::kLate;
  if (!late) newest->second = std::max(newest->second, report.window_start_us);
  if (!late && stream->second.Observe(report.mean_ms)) {
    const SlowdownDetector& d = stream->second;
    DriftFlag f = NewFlag(DriftKind::kRegression, report);
    f.config = report.config;
    f.reports = d.reports();
    f.calls = state.stream_calls[config];
    f.reference_ms = d.reference_ms();
    f.recent_ms = d.recent_ms();
    f.lab_ms = lab;
    f.message = absl::StrFormat(
        "%s slowed down: recent reports take %.4g ms, %.2fx their normal %.4g ms (CUSUM over %d "
        "reports)",
        FormatParamMapAssignments(report.config), f.recent_ms, f.recent_ms / f.reference_ms,
        f.reference_ms, f.reports);
    // The lab time of the task's best: of this configuration when it is the one tuned best.
    // Beside another configuration it read as that one's ("tuned at 0.8 ms, now 6 ms").
    if (tuned && tuned->config == report.config) {
      absl::StrAppend(&f.message, absl::StrFormat("; tuned at %.4g ms", tuned->time_ms));
    } else if (tuned) {
      absl::StrAppend(&f.message,
                      absl::StrFormat("; not the tuned best, %s at %.4g ms in the lab: production "
                                      "runs another configuration than the one served",
                                      FormatParamMapAssignments(tuned->config), tuned->time_ms));
    }
    raised.push_back(f);
  }
  if (!fingerprint_tuned && !state.fingerprints_checked.count(fingerprint) &&
      state.new_environment_flags < kMaxNewEnvironmentFlags) {
    state.fingerprints_checked[fingerprint] = true;
    ++state.new_environment_flags;
    DriftFlag f = NewFlag(DriftKind::kNewEnvironment, report);
    f.fingerprint_hash = fingerprint;
    f.config = report.config;
    f.reports = state.reports;
    f.calls = state.calls;
    f.recent_ms = report.mean_ms;
    f.lab_ms = lab;
    // One line for people: the fingerprint (up to 16 KiB) cut to its first 200 bytes.
    const std::string facts = Utf8Prefix(report.device.fingerprint_json, 200);
    f.message = absl::StrCat("runs on device ", fingerprint, " (", facts,
                             facts.size() < report.device.fingerprint_json.size() ? "..." : "",
                             "), which no record of this task was measured on");
    if (state.new_environment_flags == kMaxNewEnvironmentFlags) {
      absl::StrAppend(&f.message, "; the task's last new-environment flag (at most ",
                      kMaxNewEnvironmentFlags, ")");
    }
    raised.push_back(f);
  }
  if (!lab && !state.hot_flagged && state.calls >= options_.hot_calls) {
    state.hot_flagged = true;  // listed below, unless past kMaxUntunedHotFlags
    DriftFlag f = NewFlag(DriftKind::kUntunedHotProblem, report);
    f.config = report.config;
    f.reports = state.reports;
    f.calls = state.calls;
    f.recent_ms = report.mean_ms;
    f.message =
        absl::StrCat("called ", state.calls, " times but never tuned on ",
                     report.device.device_class, ": served only by a prediction or a default");
    raised.push_back(f);
  }
  std::vector<DriftFlag> listed;
  for (DriftFlag& f : raised) {
    bool stored = false;
    for (size_t i = 0; i < recovering_ && !stored; ++i) {
      if (replayed_[i] || !SameCondition(flags_[i], f)) continue;
      replayed_[i] = stored = true;
      if (flags_[i].kind == DriftKind::kRegression && flags_[i].retune_job > 0) {
        state.RestartStreams();  // as Restart did then
      }
    }
    if (stored) continue;
    // Untuned-hot flags are counted as they are listed (stored ones were counted when recovery
    // began): a restart lists no more of them than the cap.
    if (f.kind == DriftKind::kUntunedHotProblem) {
      if (untuned_hot_flags_ >= kMaxUntunedHotFlags) continue;
      if (++untuned_hot_flags_ == kMaxUntunedHotFlags) {
        absl::StrAppend(&f.message, "; the last untuned-hot flag listed (at most ",
                        kMaxUntunedHotFlags, " on this server)");
      }
    }
    f.id = static_cast<int64_t>(flags_.size()) + 1;
    flags_.push_back(f);
    listed.push_back(f);
  }
  return listed;
}

bool DriftMonitor::SameCondition(const DriftFlag& a, const DriftFlag& b) {
  if (a.kind != b.kind || a.task.kernel != b.task.kernel ||
      a.task.device_class != b.task.device_class ||
      CanonicalJson(a.task.problem) != CanonicalJson(b.task.problem)) {
    return false;
  }
  switch (a.kind) {
    case DriftKind::kRegression:
      return CanonicalJson(a.config) == CanonicalJson(b.config);
    case DriftKind::kNewEnvironment:
      return a.fingerprint_hash == b.fingerprint_hash;
    case DriftKind::kUntunedHotProblem:
      return true;
  }
  return false;
}

void DriftMonitor::BeginRecovery(std::vector<DriftFlag> stored) {
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < stored.size(); ++i) stored[i].id = static_cast<int64_t>(i) + 1;
  flags_ = std::move(stored);
  recovering_ = flags_.size();
  replayed_.assign(flags_.size(), false);
  untuned_hot_flags_ =
      static_cast<int>(std::count_if(flags_.begin(), flags_.end(), [](const DriftFlag& f) {
        return f.kind == DriftKind::kUntunedHotProblem;
      }));
}

void DriftMonitor::EndRecovery() {
  absl::MutexLock lock(&mu_);
  recovering_ = 0;
  replayed_.clear();
}

std::vector<DriftFlag> DriftMonitor::Flags() const {
  absl::MutexLock lock(&mu_);
  return flags_;
}

std::array<int64_t, kDriftKindCount> DriftMonitor::CountsByKind() const {
  absl::MutexLock lock(&mu_);
  std::array<int64_t, kDriftKindCount> counts{};
  for (const DriftFlag& f : flags_) ++counts[static_cast<int>(f.kind)];
  return counts;
}

void DriftMonitor::SetAction(int64_t flag_id, const std::string& action, int64_t retune_job) {
  absl::MutexLock lock(&mu_);
  if (flag_id >= 1 && flag_id <= static_cast<int64_t>(flags_.size())) {
    flags_[flag_id - 1].action = action;
    flags_[flag_id - 1].retune_job = retune_job;
  }
}

void DriftMonitor::Restart(const TaskKey& task) {
  absl::MutexLock lock(&mu_);
  auto it = tasks_.find({task.kernel, CanonicalJson(task.problem), task.device_class});
  if (it == tasks_.end()) return;
  it->second.RestartStreams();
}

namespace {
constexpr int kDriftFlagsVersion = 1;  // DriftFlagsToJson's format
}  // namespace

std::string DriftFlagsToJson(const std::vector<DriftFlag>& flags) {
  nlohmann::json out = nlohmann::json::array();
  for (const DriftFlag& f : flags) {
    nlohmann::json j = {{"id", f.id},
                        {"kind", DriftKindName(f.kind)},
                        {"kernel", f.task.kernel},
                        {"kernel_version", f.task.kernel_version},
                        {"problem", nlohmann::json::parse(CanonicalJson(f.task.problem))},
                        {"device_class", f.task.device_class},
                        {"fingerprint_hash", f.fingerprint_hash},
                        {"config", nlohmann::json::parse(CanonicalJson(f.config))},
                        {"raised_at_us", f.raised_at_us},
                        {"reports", f.reports},
                        {"calls", f.calls},
                        {"reference_ms", f.reference_ms},
                        {"recent_ms", f.recent_ms},
                        {"message", f.message},
                        {"action", f.action},
                        {"retune_job", f.retune_job}};
    if (f.lab_ms) j["lab_ms"] = *f.lab_ms;
    out.push_back(std::move(j));
  }
  return nlohmann::json{{"version", kDriftFlagsVersion}, {"flags", std::move(out)}}.dump(
      -1, ' ', false, nlohmann::json::error_handler_t::replace);
}

absl::StatusOr<std::vector<DriftFlag>> DriftFlagsFromJson(const std::string& json) {
  std::vector<DriftFlag> flags;
  try {
    const nlohmann::json stored = nlohmann::json::parse(json);
    if (!stored.is_object() || !stored.contains("version") ||
        stored["version"] != kDriftFlagsVersion || !stored.contains("flags") ||
        !stored["flags"].is_array()) {
      return absl::DataLossError(absl::StrCat("the stored drift flags are not version ",
                                              kDriftFlagsVersion, " of their format"));
    }
    for (const nlohmann::json& j : stored["flags"]) {
      DriftFlag f;
      f.id = j.at("id").get<int64_t>();
      const std::string kind = j.at("kind").get<std::string>();
      bool known = false;
      for (int k = 0; k < kDriftKindCount; ++k) {
        if (kind == DriftKindName(static_cast<DriftKind>(k))) {
          f.kind = static_cast<DriftKind>(k);
          known = true;
        }
      }
      if (!known) return absl::DataLossError(absl::StrCat("unknown drift kind '", kind, "'"));
      f.task.kernel = j.at("kernel").get<std::string>();
      f.task.kernel_version = j.at("kernel_version").get<std::string>();
      absl::StatusOr<ParamMap> problem = ParseParamMapJson(j.at("problem").dump());
      absl::StatusOr<ParamMap> config = ParseParamMapJson(j.at("config").dump());
      if (!problem.ok()) return problem.status();
      if (!config.ok()) return config.status();
      f.task.problem = *std::move(problem);
      f.config = *std::move(config);
      f.task.device_class = j.at("device_class").get<std::string>();
      f.fingerprint_hash = j.at("fingerprint_hash").get<std::string>();
      f.raised_at_us = j.at("raised_at_us").get<int64_t>();
      f.reports = j.at("reports").get<int64_t>();
      f.calls = j.at("calls").get<int64_t>();
      f.reference_ms = j.at("reference_ms").get<double>();
      f.recent_ms = j.at("recent_ms").get<double>();
      if (j.contains("lab_ms")) f.lab_ms = j.at("lab_ms").get<double>();
      f.message = j.at("message").get<std::string>();
      f.action = j.at("action").get<std::string>();
      f.retune_job = j.at("retune_job").get<int64_t>();
      flags.push_back(std::move(f));
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat("the stored drift flags cannot be read: ", e.what()));
  }
  return flags;
}

}  // namespace ktune
