#include "db/tuning_database.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "kernels/kernel_registry.h"

namespace ktune {
namespace {
constexpr absl::string_view kJobStateNames[] = {"queued", "running", "paused",
                                                "done",   "failed",  "cancelled"};
}  // namespace

absl::string_view MatchLevelName(MatchLevel level) {
  switch (level) {
    case MatchLevel::kExact:
      return "exact";
    case MatchLevel::kDeviceClass:
      return "device_class";
    case MatchLevel::kFamily:
      return "family";
    case MatchLevel::kNone:
      return "none";
  }
  return "none";
}

absl::string_view JobStateName(JobState s) { return kJobStateNames[static_cast<int>(s)]; }

absl::StatusOr<JobState> ParseJobStateName(absl::string_view name) {
  for (int i = 0; i < 6; ++i) {
    if (kJobStateNames[i] == name) return static_cast<JobState>(i);
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown job state '", name, "'"));
}

bool IsAllowedJobTransition(JobState from, JobState to) {
  switch (from) {
    case JobState::kQueued:
      return to == JobState::kRunning || to == JobState::kCancelled;
    case JobState::kRunning:
      return to == JobState::kRunning || to == JobState::kPaused || to == JobState::kDone ||
             to == JobState::kFailed || to == JobState::kCancelled;
    case JobState::kPaused:
      return to == JobState::kRunning || to == JobState::kCancelled;
    default:
      return false;  // final states
  }
}

std::optional<Problem> RegistryProblem(const KernelRegistry& registry, const std::string& kernel,
                                       const Problem& problem) {
  const KernelDefinition* def = registry.Find(kernel);
  if (def == nullptr || problem.empty()) return std::nullopt;
  absl::StatusOr<Problem> stored = def->ValidateProblem(problem);
  if (!stored.ok()) return std::nullopt;
  return *std::move(stored);
}

void PinBudgetToErrorMeasure(const KernelRegistry& registry, BestQuery* query) {
  if (!query->max_rel_error || !query->kernel_version.empty()) return;
  const KernelDefinition* def = registry.Find(query->kernel);
  if (def != nullptr && def->componentwise_error) query->kernel_version = def->Version();
}

absl::Status FitRecordToRegistry(const KernelRegistry& registry, Record& r) {
  return RegistryFitter(&registry).Fit(r);
}

absl::Status RegistryFitter::Fit(Record& r) {
  std::optional<Problem> problem = RegistryProblem(*registry_, r.kernel, r.problem);
  const KernelDefinition* def = registry_->Find(r.kernel);
  if (!problem && def != nullptr && !def->problem.empty() &&
      (r.kernel_version.empty() || r.kernel_version == def->Version()) &&
      std::all_of(def->problem.begin(), def->problem.end(),
                  [&](const ProblemParameter& p) { return r.problem.count(p.name) > 0; })) {
    // The kernel's own problem parameters with values it refuses (an edited M=-5 was stored,
    // and no query could reach it). Another kernel's records under the name keep theirs.
    return absl::InvalidArgumentError(
        absl::StrCat("the problem ", CanonicalJson(r.problem), " is not one of ", r.kernel,
                     "'s: ", def->ValidateProblem(r.problem).status().message()));
  }
  if (!problem) return absl::OkStatus();  // not a registry kernel's task
  r.problem = *std::move(problem);
  // Another version's configurations are that version's (a value a later release dropped is
  // still a measurement of the older one): its problem gets the defaults, nothing is refused.
  if (!r.kernel_version.empty() && r.kernel_version != def->Version()) return absl::OkStatus();
  auto refuse = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the configuration ", CanonicalJson(r.config), " of ", r.kernel, " ",
        CanonicalJson(r.problem), " ", why, " (records of another kernel that shares the name ",
        r.kernel, " need a name of their own)"));
  };
  const int64_t cores = r.device.Cores();
  const std::string key = absl::StrCat(r.kernel, "\n", CanonicalJson(r.problem), "\n", cores);
  auto it = spaces_.find(key);
  if (it == spaces_.end()) {
    it = spaces_.emplace(key, def->Space(r.problem, MachineVariables{cores})).first;
  }
  const absl::StatusOr<SearchSpace>& space = it->second;
  if (!space.ok()) return refuse(absl::StrCat("cannot be checked: ", space.status().message()));
  absl::StatusOr<Point> point = space->ToPoint(r.config);
  if (!point.ok()) {
    return refuse(absl::StrCat("is not in the kernel's space: ", point.status().message()));
  }
  if (r.status == MeasurementStatus::kOk && !space->IsValid(*point)) {
    return refuse("breaks the kernel's constraints, yet is recorded as measured ok");
  }
  return absl::OkStatus();
}

namespace {

// What a measurement of a task is without the record's identity or device: its kernel version,
// configuration, time and repeat times (exact: a file written from the record keeps every
// digit; a file's entry without repeats is told apart by its time) when ok; a failure of the
// configuration otherwise, whatever its kind (T4 and Kernel Tuner files name fewer failures than
// ktune).
std::string MeasurementKey(const Record& r) {
  const auto exact = [](std::string* out, double t) {
    absl::StrAppend(out, absl::StrFormat("%.17g", t));
  };
  const bool ok = r.status == MeasurementStatus::kOk;
  return absl::StrCat(r.kernel_version, "\n", CanonicalJson(r.config), "\n",
                      ok ? absl::StrCat(r.time_ms ? absl::StrFormat("%.17g", *r.time_ms) : "-", ":",
                                        absl::StrJoin(r.repeat_times_ms, ",", exact))
                         : "failed");
}

// The stored measurements of one task (one device class), to find an incoming record's among.
class TaskMeasurements {
 public:
  explicit TaskMeasurements(const std::string& device_class)
      : class_only_(DeviceInfo::FromName(device_class).fingerprint_json) {}

  // Adds stored record `s` under its keys: its measurement on its own fingerprint, on any
  // fingerprint ("*": asked by a record that knows only its class), and on "?" when `s` itself
  // knows only its class (asked by any record of the class); a failure both at its time (whole
  // seconds) and at any time ("@*": asked by a record that does not say when it failed).
  void Add(const Record& s) {
    const std::string base = MeasurementKey(s);
    const std::string& device = Canonical(s.device.fingerprint_json);
    std::vector<std::string> times = {""};
    if (s.status != MeasurementStatus::kOk) {
      times = {"@*"};
      if (s.measured_at_us) times.push_back(absl::StrCat("@", *s.measured_at_us / 1000000));
    }
    for (const std::string& t : times) {
      keys_.insert(absl::StrCat(base, "\n", device, t));
      keys_.insert(absl::StrCat(base, "\n*", t));
      if (device == class_only_) keys_.insert(absl::StrCat(base, "\n?", t));
    }
  }

  // Whether incoming record `r` is stored: on its own fingerprint or on a stored record that
  // knows only its class ("?"); on any fingerprint when `r` knows only its class; a failure at
  // its time when it says one, else at any time.
  bool Holds(const Record& r) {
    const std::string base = MeasurementKey(r);
    std::string time;
    if (r.status != MeasurementStatus::kOk) {
      time = r.measured_at_us ? absl::StrCat("@", *r.measured_at_us / 1000000) : "@*";
    }
    const std::string& device = Canonical(r.device.fingerprint_json);
    if (device == class_only_) return keys_.contains(absl::StrCat(base, "\n*", time));
    return keys_.contains(absl::StrCat(base, "\n", device, time)) ||
           keys_.contains(absl::StrCat(base, "\n?", time));
  }

 private:
  // A fingerprint as sorted, compact JSON (a client's may come with spaces or in another key
  // order, and its own export back would not match it), computed once per text.
  const std::string& Canonical(const std::string& fingerprint_json) {
    auto [it, added] = canonical_.try_emplace(fingerprint_json);
    if (added) {
      const nlohmann::json j = nlohmann::json::parse(fingerprint_json, nullptr, false);
      it->second = j.is_discarded() ? fingerprint_json : j.dump();
    }
    return it->second;
  }

  std::string class_only_;  // the canonical fingerprint of a device known by its class alone
  absl::flat_hash_map<std::string, std::string> canonical_;
  absl::flat_hash_set<std::string> keys_;
};

// Marks in `drop` the records whose measurement a record of their task already stores: the same
// configuration measured with the same times on the same device (or a file's device that names
// only the class), or failed at the same second. Another device of the class, or a failure at
// another time, is another measurement and is kept.
absl::Status DropStoredMeasurements(TuningDatabase& db, const std::vector<Record>& records,
                                    std::vector<bool>& drop) {
  std::map<std::string, std::vector<size_t>> by_task;  // TaskKey as text -> indices
  std::map<std::string, TaskKey> tasks;
  for (size_t i = 0; i < records.size(); ++i) {
    const Record& r = records[i];
    // A job's record is known by its identity (AddImportedRecords): not read against the
    // task's records, which a large JSONL import of job records would read task by task.
    if (absl::StartsWith(r.source, "job:") || absl::StartsWith(r.source, "import:job:")) continue;
    const std::string key = absl::StrCat(r.kernel, "\n", r.kernel_version, "\n",
                                         CanonicalJson(r.problem), "\n", r.device.device_class);
    by_task[key].push_back(i);
    tasks.emplace(key, TaskKey{r.kernel, r.kernel_version, r.problem, r.device.device_class});
  }
  for (const auto& [key, indices] : by_task) {
    const TaskKey& task = tasks.at(key);
    KTUNE_ASSIGN_OR_RETURN(std::vector<Record> stored, db.TaskRecords(task));
    if (stored.empty()) continue;
    TaskMeasurements measured(task.device_class);
    for (const Record& s : stored) measured.Add(s);
    for (size_t i : indices) {
      if (measured.Holds(records[i])) drop[i] = true;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int64_t> AddImportedRecords(TuningDatabase& db, std::vector<Record> records,
                                           const KernelRegistry* registry, bool by_measurement) {
  if (registry != nullptr) {
    RegistryFitter fitter(registry);
    for (size_t i = 0; i < records.size(); ++i) {
      if (absl::Status s = fitter.Fit(records[i]); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat("record ", i + 1, ": ", s.message()));
      }
    }
  }
  // The ids whose presence decides, asked in one read: a job record's own, and the original of
  // an import:job: copy, with one prepared statement (one statement each cost 1.1 s more than a
  // plain import of 102,300 records; with one, 0.7 s: bench/results/import-job-sources-*).
  std::vector<size_t> asked;  // into records
  std::vector<std::string> ids;
  for (size_t i = 0; i < records.size(); ++i) {
    const Record& r = records[i];
    if (absl::StartsWith(r.source, "job:")) {
      ids.push_back(r.RecordId());
    } else if (absl::StartsWith(r.source, "import:job:")) {
      Record original = r;
      original.source = r.source.substr(strlen("import:"));
      ids.push_back(original.RecordId());
    } else {
      continue;
    }
    asked.push_back(i);
  }
  KTUNE_ASSIGN_OR_RETURN(const std::vector<bool> stored, db.HasRecords(ids));
  std::vector<bool> drop(records.size(), false);
  for (size_t k = 0; k < asked.size(); ++k) {
    Record& r = records[asked[k]];
    if (absl::StartsWith(r.source, "job:")) {
      if (!stored[k]) r.source = absl::StrCat("import:", r.source);
    } else if (stored[k]) {
      // This database's own job record, back from another's copy of it (A to B to A): skipped,
      // or every sync added the job's records again.
      drop[asked[k]] = true;
    }
  }
  if (by_measurement) KTUNE_RETURN_IF_ERROR(DropStoredMeasurements(db, records, drop));
  std::vector<Record> kept;
  kept.reserve(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    if (!drop[i]) kept.push_back(std::move(records[i]));
  }
  return db.AddRecords(kept);
}

absl::StatusOr<StaleBoundaryIndex> StaleBoundaryIndex::Of(TuningDatabase& db) {
  KTUNE_ASSIGN_OR_RETURN(std::vector<TuningDatabase::StaleBoundary> boundaries,
                         db.StaleBoundaries());
  StaleBoundaryIndex index;
  for (const auto& b : boundaries) {
    index.before_[{b.kernel, b.problem_hash, b.device_class}] = b.before_us;
  }
  return index;
}

std::optional<int64_t> StaleBoundaryIndex::For(const Record& r) const {
  if (before_.empty()) return std::nullopt;
  auto it = before_.find({r.kernel, ParamMapHash(r.problem), r.device.device_class});
  if (it == before_.end() || r.measured_at_us.value_or(0) >= it->second) return std::nullopt;
  return it->second;
}

void StaleBoundaryCollector::Add(const Record& r, int64_t before_us) {
  auto [it, added] =
      latest_.try_emplace({r.kernel, ParamMapHash(r.problem), r.device.device_class},
                          TaskKey{r.kernel, "", r.problem, r.device.device_class}, before_us);
  if (!added) it->second.second = std::max(it->second.second, before_us);
}

std::vector<std::pair<TaskKey, int64_t>> StaleBoundaryCollector::Tasks() const {
  std::vector<std::pair<TaskKey, int64_t>> out;
  for (const auto& [key, task] : latest_) out.push_back(task);
  return out;
}

absl::Status StaleBoundaryCollector::MarkAll(TuningDatabase& db) const {
  for (const auto& [key, task] : latest_) {
    if (absl::Status s = db.MarkStale(task.first, task.second); !s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat("the stale boundary of ", task.first.kernel, " on ",
                                       task.first.device_class, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateRecord(const Record& r) {
  if (r.kernel.empty()) return absl::InvalidArgumentError("a record needs a kernel name");
  if (r.device.device_class.empty()) {
    return absl::InvalidArgumentError("a record needs a device class");
  }
  if ((r.status == MeasurementStatus::kOk) != r.time_ms.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "record of ", r.kernel, " ", CanonicalJson(r.config),
        ": time_ms must be set exactly when the status is ok (status ", StatusName(r.status), ")"));
  }
  // Names are one line of printable text (they go into scripts, tables and logs).
  auto bad_name = [](absl::string_view what, absl::string_view name) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a record's ", what, " '", absl::CHexEscape(name.substr(0, 200)),
        "' holds a control character (a newline, tab, ...); names are one line of text"));
  };
  if (HasControlCharacter(r.kernel)) return bad_name("kernel name", r.kernel);
  if (HasControlCharacter(r.device.device_class)) {
    return bad_name("device class", r.device.device_class);
  }
  for (const ParamMap* params : {&r.problem, &r.config}) {
    for (const auto& [name, value] : *params) {
      if (HasControlCharacter(name)) return bad_name("parameter name", name);
    }
  }
  KTUNE_RETURN_IF_ERROR(CheckFiniteValues(r.problem, "record.problem"));
  KTUNE_RETURN_IF_ERROR(CheckFiniteValues(r.config, "record.config"));
  // No kernel runs in no time: a 0 ms record would be served as the best answer for ever.
  auto bad_time = [](double t) { return !(t >= kMinTimeMs && t <= kMaxTimeMs); };
  if (r.time_ms && bad_time(*r.time_ms)) {
    return absl::InvalidArgumentError(
        absl::StrCat("record of ", r.kernel, " ", CanonicalJson(r.config), ": time_ms ", *r.time_ms,
                     " is not a time from 1e-09 to 1e+09 ms"));
  }
  // The repeats and their statistics: times (a spread >= 0).
  const bool bad_repeats =
      std::any_of(r.repeat_times_ms.begin(), r.repeat_times_ms.end(), bad_time);
  if (bad_repeats || (r.median_ms && bad_time(*r.median_ms)) || (r.min_ms && bad_time(*r.min_ms)) ||
      (r.stddev_ms && !(*r.stddev_ms >= 0 && std::isfinite(*r.stddev_ms)))) {
    return absl::InvalidArgumentError(
        absl::StrCat("record of ", r.kernel, " ", CanonicalJson(r.config),
                     ": repeat times, median_ms and min_ms must be "
                     "times from 1e-09 to 1e+09 ms, stddev_ms finite, "
                     ">= 0"));
  }
  if (r.max_rel_error && !(*r.max_rel_error >= 0 && std::isfinite(*r.max_rel_error))) {
    return absl::InvalidArgumentError(absl::StrCat("record of ", r.kernel, " ",
                                                   CanonicalJson(r.config),
                                                   ": max_rel_error must be a finite number >= 0"));
  }
  if (r.payload.size() > kMaxRecordPayloadBytes) {
    return absl::InvalidArgumentError(absl::StrCat("record of ", r.kernel, " ",
                                                   CanonicalJson(r.config), ": payload is ",
                                                   r.payload.size(), " bytes; at most ",
                                                   kMaxRecordPayloadBytes, " (1 MiB)"));
  }
  return absl::OkStatus();
}

absl::Status DeviceClassConflict(const DeviceInfo& device, const std::string& stored_class) {
  return absl::InvalidArgumentError(absl::StrCat(
      "device ", device.fingerprint_json.substr(0, 200), " is stored as device class '",
      stored_class, "', not '", device.device_class.substr(0, 256),
      "': one device has one class (give the other class its own fingerprint)"));
}

}  // namespace ktune
