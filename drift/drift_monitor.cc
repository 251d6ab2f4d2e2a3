#include "drift/drift_monitor.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

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

std::optional<double> DatabaseKnowledge::LabBest(const TaskKey& task) {
  BestQuery q;
  q.kernel = task.kernel;
  q.kernel_version = task.kernel_version;
  q.problem = task.problem;
  q.device_class = task.device_class;
  q.family = "-";  // no family fallback: tuned on this class or not
  absl::StatusOr<BestResult> best = db_->QueryBest(q);
  if (!best.ok() || best->level != MatchLevel::kDeviceClass) return std::nullopt;
  return best->records.front().time_ms;
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

std::vector<DriftFlag> DriftMonitor::Observe(const TelemetryReport& report,
                                             TuningKnowledge& knowledge) {
  const TaskKey task{report.kernel, report.kernel_version, report.problem,
                     report.device.device_class};
  std::optional<double> lab = knowledge.LabBest(task);
  const std::string fingerprint = report.device.FingerprintHash();
  // A report that names only its class carries no fingerprint to check.
  const bool has_fingerprint =
      report.device.fingerprint_json != DeviceInfo::FromName(report.device.device_class).fingerprint_json;
  const bool fingerprint_tuned = !lab || !has_fingerprint || knowledge.FingerprintTuned(task, fingerprint);

  absl::MutexLock lock(&mu_);
  std::vector<DriftFlag> raised;
  TaskState& state =
      tasks_[{report.kernel, CanonicalJson(report.problem), report.device.device_class}];
  state.calls += report.count;
  ++state.reports;
  const std::string config = CanonicalJson(report.config);
  auto [stream, created] = state.streams.try_emplace(config, options_.detector);
  state.stream_calls[config] += report.count;
  if (stream->second.Observe(report.mean_ms)) {
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
    if (lab) absl::StrAppend(&f.message, absl::StrFormat("; tuned at %.4g ms", *lab));
    raised.push_back(f);
  }
  if (!fingerprint_tuned && !state.fingerprints_checked[fingerprint]) {
    state.fingerprints_checked[fingerprint] = true;
    DriftFlag f = NewFlag(DriftKind::kNewEnvironment, report);
    f.fingerprint_hash = fingerprint;
    f.config = report.config;
    f.reports = state.reports;
    f.calls = state.calls;
    f.recent_ms = report.mean_ms;
    f.lab_ms = lab;
    f.message = absl::StrCat("runs on device ", fingerprint, " (", report.device.fingerprint_json,
                             "), which no record of this task was measured on");
    raised.push_back(f);
  }
  if (!lab && !state.hot_flagged && state.calls >= options_.hot_calls) {
    state.hot_flagged = true;
    DriftFlag f = NewFlag(DriftKind::kUntunedHotProblem, report);
    f.config = report.config;
    f.reports = state.reports;
    f.calls = state.calls;
    f.recent_ms = report.mean_ms;
    f.message = absl::StrCat("called ", state.calls, " times but never tuned on ",
                             report.device.device_class, ": served only by a prediction or a default");
    raised.push_back(f);
  }
  for (DriftFlag& f : raised) {
    f.id = static_cast<int64_t>(flags_.size()) + 1;
    flags_.push_back(f);
  }
  return raised;
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
  for (auto& [config, detector] : it->second.streams) detector.Reset();
}

}  // namespace ktune
