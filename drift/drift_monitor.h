// Drift detection over production telemetry (db/telemetry.h), per task (kernel, problem, device
// class). Three conditions are flagged, each once:
//   - regression: a configuration's reported times slowed down against their own history
//     (SlowdownDetector, per task and configuration);
//   - new_environment: a task tuned on its device class reports from a device fingerprint (driver,
//     library, core count) that no record was measured on;
//   - untuned_hot_problem: a task never tuned on its device class (served by a prediction, or not
//     at all) has been called at least `hot_calls` times.
// The monitor only decides; what is done about a flag (nothing, a suggestion, a retuning job) is
// the server's policy, recorded on the flag with SetAction. Thread-safe.
#ifndef KTUNE_DRIFT_DRIFT_MONITOR_H_
#define KTUNE_DRIFT_DRIFT_MONITOR_H_

#include <array>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "db/telemetry.h"
#include "db/tuning_database.h"
#include "drift/slowdown_detector.h"

namespace ktune {

enum class DriftKind { kRegression, kNewEnvironment, kUntunedHotProblem };
inline constexpr int kDriftKindCount = 3;
// "regression", "new_environment", "untuned_hot_problem".
const char* DriftKindName(DriftKind kind);

struct DriftFlag {
  int64_t id = 0;  // 1, 2, ... in the order raised
  DriftKind kind = DriftKind::kRegression;
  TaskKey task;                  // kernel, version (empty: any), problem, device class
  std::string fingerprint_hash;  // new_environment: the untuned device
  Configuration config;          // regression: the configuration that slowed down
  int64_t raised_at_us = 0;      // the report's receipt time
  int64_t reports = 0;           // reports of the stream (task for hot problems) so far
  int64_t calls = 0;             // calls summed over them
  double reference_ms = 0;       // regression: the stream's normal time
  double recent_ms = 0;          // its recent reports' median time (every kind)
  std::optional<double> lab_ms;  // the task's best tuned time, when it has one
  std::string message;           // one line for people
  std::string action = "none";   // what the server did: none, suggested, "retuning: job N", ...
  int64_t retune_job = 0;        // the retuning job started for it; 0: none
};

// What the monitor asks of the tuning database.
class TuningKnowledge {
 public:
  virtual ~TuningKnowledge() = default;
  // The task's best tuned record on its device class: its time and configuration; nullopt when
  // never tuned there.
  struct Best {
    double time_ms = 0;
    Configuration config;
  };
  virtual std::optional<Best> LabBest(const TaskKey& task) = 0;
  // Whether some record of the task's kernel and problem was measured on exactly this device.
  virtual bool FingerprintTuned(const TaskKey& task, const std::string& fingerprint_hash) = 0;
};

// TuningKnowledge from a tuning database (QueryBest at the class and exact levels).
class DatabaseKnowledge : public TuningKnowledge {
 public:
  explicit DatabaseKnowledge(TuningDatabase* db) : db_(db) {}
  std::optional<Best> LabBest(const TaskKey& task) override;
  bool FingerprintTuned(const TaskKey& task, const std::string& fingerprint_hash) override;

 private:
  TuningDatabase* db_;
};

// What Observe made of a report.
enum class ReportUse {
  kJudged,     // counted, and its time fed to its configuration's slowdown test
  kDuplicate,  // the same report again (a client's retry): not counted again
  kLate,       // counted, but its window ends before the newest one its configuration was
               // judged on (a late backfill): its time is not a "recent" one
};

struct DriftMonitorOptions {
  SlowdownDetectorOptions detector;
  int64_t hot_calls = 100'000;  // calls of an untuned task that make it hot
};

class DriftMonitor {
 public:
  explicit DriftMonitor(DriftMonitorOptions options = {}) : options_(options) {}

  // Feeds one stored report; returns the flags it raised (usually none), and in `use` (may be
  // null) what was made of it. A report that gave its window (not the receipt time the server
  // filled in) is a duplicate when its task already had one with the same configuration, device,
  // window, count and times among its last kRememberedReports; a slowdown is judged in window
  // order, so a report whose window ends more than kLateAfterUs before the newest judged one
  // (a backfill of last week) is late.
  std::vector<DriftFlag> Observe(const TelemetryReport& report, TuningKnowledge& knowledge,
                                 ReportUse* use = nullptr);
  // Whether Observe would take `report` for a duplicate (the server stores none of them).
  bool IsDuplicate(const TelemetryReport& report) const;
  // The identity of a report that gave its own window, as IsDuplicate compares it (a hash of its
  // configuration, device, window, count and times); empty for one whose window the server
  // filled in (two such reports may well be alike).
  static std::string DuplicateKey(const TelemetryReport& report);
  // Every flag raised, oldest first.
  std::vector<DriftFlag> Flags() const;
  std::array<int64_t, kDriftKindCount> CountsByKind() const;
  void SetAction(int64_t flag_id, const std::string& action, int64_t retune_job = 0);
  // The task was retuned: its regression streams start anew (a new reference), so the same
  // configuration can be flagged again if it slows down again. Its flags stay listed.
  void Restart(const TaskKey& task);

  // A restart: `stored` are the flags saved before it (ids 1..n in order, with their actions),
  // listed from now on. Until EndRecovery, Observe replays the stored reports: a flag it raises
  // again is a stored one (not listed twice), and where the stored one started a retuning job of
  // a regression its task's streams restart there, as they did when it was raised; a flag the
  // replay raises that was not stored (saved too late) is listed after them. A stored flag the
  // replay does not raise again (its task was tuned since) stays listed. Observe returns only the
  // flags that were not stored.
  void BeginRecovery(std::vector<DriftFlag> stored);
  void EndRecovery();

 private:
  // New-environment flags of one task: a reporter sending a new fingerprint with each sample
  // raised a flag each (1,000 in one call), and the list grew past what a client reads.
  static constexpr int kMaxNewEnvironmentFlags = 16;
  // Untuned-hot flags in all: the other kinds need a tuned task, but any problem on any device
  // class can be hot, and a telemetry reporter naming a new one in each sample grew the list
  // (and ListDrift's answer) without bound. Past it, hot problems are not listed.
  static constexpr int kMaxUntunedHotFlags = 1024;
  // Reports per task whose keys are remembered to know a retry.
  static constexpr size_t kRememberedReports = 4096;
  // A report whose window ends this long before the newest judged window start of its
  // configuration (any reporter's) is late: 2 days.
  static constexpr int64_t kLateAfterUs = 2 * 86'400'000'000;
  // kernel, canonical problem, device class.
  using TaskId = std::tuple<std::string, std::string, std::string>;
  struct TaskState {
    std::map<std::string, SlowdownDetector> streams;  // canonical config -> detector
    std::map<std::string, int64_t> stream_calls;
    std::map<std::string, bool> fingerprints_checked;  // hash -> flagged
    int new_environment_flags = 0;                     // at most kMaxNewEnvironmentFlags
    int64_t calls = 0, reports = 0;
    bool hot_flagged = false;
    std::set<std::string> seen;          // DuplicateKey of the last kRememberedReports reports
    std::deque<std::string> seen_order;  // the same keys, oldest first
    std::map<std::string, int64_t> newest_window;  // canonical config -> newest judged start
    // A retune: every stream is judged anew, against a new reference.
    void RestartStreams() {
      for (auto& [config, detector] : streams) detector.Reset();
    }
  };
  DriftFlag NewFlag(DriftKind kind, const TelemetryReport& report)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Whether `a` and `b` flag the same condition (kind, task, configuration or device).
  static bool SameCondition(const DriftFlag& a, const DriftFlag& b);

  DriftMonitorOptions options_;
  mutable absl::Mutex mu_;
  // During recovery: for each listed flag, whether the replay has raised it again (only the
  // first `recovering_` flags are stored ones).
  std::vector<bool> replayed_ ABSL_GUARDED_BY(mu_);
  size_t recovering_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<TaskId, TaskState> tasks_ ABSL_GUARDED_BY(mu_);
  std::vector<DriftFlag> flags_ ABSL_GUARDED_BY(mu_);
  int untuned_hot_flags_ ABSL_GUARDED_BY(mu_) = 0;  // raised, at most kMaxUntunedHotFlags
};

// The flags as JSON for the database ({"version": 1, "flags": [every field of each]}), and back;
// DataLoss for text that is not that version of the format.
std::string DriftFlagsToJson(const std::vector<DriftFlag>& flags);
absl::StatusOr<std::vector<DriftFlag>> DriftFlagsFromJson(const std::string& json);

}  // namespace ktune

#endif  // KTUNE_DRIFT_DRIFT_MONITOR_H_
