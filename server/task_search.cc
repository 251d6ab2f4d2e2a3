#include "server/task_search.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/event_log.h"
#include "common/status_macros.h"

namespace ktune {
namespace {

// Adds the time `call` takes to `*seconds` and to the agent's account in `budget`.
template <typename Call>
auto Timed(double* seconds, AgentTimeBudget* budget, Call call) {
  const absl::Time start = absl::Now();
  auto result = call();
  const absl::Duration took = absl::Now() - start;
  *seconds += absl::ToDoubleSeconds(took);
  budget->AddAgentMs(absl::ToDoubleMilliseconds(took));
  return result;
}

// What record i of `c` tells a search under the accuracy budget `budget` of its configuration:
// ok with its time, or failed; nullopt when the search is to measure it again (refused by an
// earlier job's tighter budget but within this one's: not a failure here, and never served).
struct RecordOutcome {
  bool ok = false;
  double time_ms = 0;
};
std::optional<RecordOutcome> OutcomeOf(const TaskColumns& c, size_t i,
                                       std::optional<double> budget) {
  const double error = c.max_rel_error[i];
  const std::optional<double> max_rel_error =
      std::isnan(error) ? std::nullopt : std::optional<double>(error);
  if (c.status[i] == MeasurementStatus::kTooInaccurate &&
      WithinAccuracyBudget(max_rel_error, budget)) {
    return std::nullopt;
  }
  const bool ok =
      c.status[i] == MeasurementStatus::kOk && WithinAccuracyBudget(max_rel_error, budget);
  return RecordOutcome{ok, ok ? c.time_ms[i] : 0.0};
}

// Whether a failure with `status` may be the worker's doing rather than the configuration's: a
// worker with a broken toolchain, a missing library or runner, or the wrong image fails every
// candidate with these. (An invalid configuration, a wrong result or an inaccurate one is the
// configuration's; a lost one crashed or hung three workers, and is not handed out again.)
bool MayBeTheWorkers(MeasurementStatus status) {
  return status == MeasurementStatus::kCompileError || status == MeasurementStatus::kRuntimeError ||
         status == MeasurementStatus::kTimeout;
}

// When the first record of `c` that ran was measured (timed, or its output checked: ok,
// too_inaccurate or wrong_result, whatever a job's accuracy budget); nullopt when none ran.
std::optional<int64_t> FirstRun(const TaskColumns& c) {
  std::optional<int64_t> first;
  for (size_t i = 0; i < c.size(); ++i) {
    const MeasurementStatus s = c.status[i];
    if (s != MeasurementStatus::kOk && s != MeasurementStatus::kTooInaccurate &&
        s != MeasurementStatus::kWrongResult) {
      continue;
    }
    first = std::min(first.value_or(c.measured_at_us[i]), c.measured_at_us[i]);
  }
  return first;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TaskSearch>> TaskSearch::Create(TuningDatabase* db,
                                                               const TaskSpaces& spaces,
                                                               const TaskKey& task,
                                                               const Options& options, int cores,
                                                               int64_t budget_left) {
  std::unique_ptr<TaskSearch> s(new TaskSearch());
  s->db_ = db;
  s->task_ = task;
  s->options_ = options;
  s->time_budget_ = AgentTimeBudget(options.max_agent_share);
  s->budget_left_ = std::max<int64_t>(1, budget_left);
  KTUNE_ASSIGN_OR_RETURN(s->space_, spaces.Space(task, cores, options.threads));
  KTUNE_ASSIGN_OR_RETURN(std::optional<Configuration> default_config,
                         spaces.DefaultConfiguration(task, cores, options.threads));
  KTUNE_ASSIGN_OR_RETURN(s->strategy_, options.make_strategy
                                           ? options.make_strategy(options.strategy)
                                           : MakeStrategy(options.strategy));
  // The task's records are read as columns (TaskRecordColumns): a few blobs, not a parsed row
  // per record, which on a task of 11,000 records took a third of a second of the agent thread.
  KTUNE_ASSIGN_OR_RETURN(TaskColumns known, db->TaskRecordColumns(task));
  s->handles_at_start_.insert(known.handles.begin(), known.handles.end());
  // Records from before a regression (MarkStale) still describe most of the landscape, but each
  // may have changed: they are the search's transfer source (as another device's landscape would
  // be), never its prior, so that any of them can be measured again (see task_search.h).
  KTUNE_ASSIGN_OR_RETURN(TaskColumns stale, db->StaleTaskRecordColumns(task));
  std::optional<Point> default_point;
  if (default_config) {
    absl::StatusOr<Point> p = s->space_->ToPoint(*default_config);
    if (p.ok()) default_point = *p;
  }
  std::set<Point> fresh;  // the points of the records since, and of the re-verified
  // Points whose failure is a verdict on the configuration (a wrong result, an error above the
  // budget, refused by the kernel), not perhaps the worker's (MayBeTheWorkers).
  std::set<Point> failed_for_good;
  bool default_known = false;
  const bool stale_as_source = s->space_->size() <= kMaxStaleSourcePoints;
  // Adds the records of `c` that are valid points of the space (others are of another version,
  // threads or space) to the prior, or the stale ones to the transfer source (in a space too
  // large for one, to the prior at points not in `fresh`).
  auto add = [&](const TaskColumns& c, bool is_stale) {
    // Failures from before anything ran (in this set: the fresh records, or those of before a
    // regression) may be a broken worker's (MayBeTheWorkers): not prior results, measured again
    // (the fleet review: a worker image without a compiler failed a job's candidates, and every
    // later job skipped them, the default included).
    const std::optional<int64_t> first_run = FirstRun(c);
    for (size_t i = 0; i < c.size(); ++i) {
      absl::StatusOr<Point> p = s->space_->ToPoint(c.ConfigOf(i));
      if (!p.ok()) continue;
      const std::optional<RecordOutcome> outcome = OutcomeOf(c, i, options.max_rel_error);
      if (is_stale && stale_as_source) {
        const int64_t index = s->space_->IndexOf(*p);
        if (outcome && outcome->ok && index >= 0 && std::isnan(s->stale_times_[index])) {
          s->stale_times_[index] = c.time_ms[i];
          s->has_stale_source_ = true;
        }
        continue;
      }
      if (!is_stale) {
        fresh.insert(*p);
      } else if (fresh.count(*p) > 0) {
        continue;  // measured since, or re-verified now
      }
      if (!outcome) continue;  // the search may measure it again
      if (!outcome->ok && MayBeTheWorkers(c.status[i]) &&
          (!first_run || c.measured_at_us[i] < *first_run)) {
        continue;  // may be measured again
      }
      default_known |= default_point && *p == *default_point;
      if (!outcome->ok && !MayBeTheWorkers(c.status[i])) failed_for_good.insert(*p);
      if (!s->space_->IsValid(*p)) continue;
      s->prior_.push_back({*p, outcome->ok, outcome->time_ms});
    }
  };
  add(known, /*is_stale=*/false);
  // The initial configurations as points of the space (completed from the default, their
  // numbers taken as the space's: see InitialPoints), and why any is not one.
  const std::vector<std::pair<std::optional<Point>, std::string>> initial =
      InitialPoints(*s->space_, default_config, options.initial);
  for (const Configuration& c : options.reverify) {
    if (absl::StatusOr<Point> p = s->space_->ToPoint(c); p.ok()) fresh.insert(*p);
  }
  for (const auto& [point, why] : initial) {
    if (point) fresh.insert(*point);  // asked for: a stale record of it is not its result
  }
  if (stale_as_source && stale.size() > 0) {
    s->stale_times_.assign(static_cast<size_t>(s->space_->size()), std::nan(""));
  }
  add(stale, /*is_stale=*/true);
  // A point that failed and also ran ok is ok: a strategy keeps one result per point, the first
  // (the oldest record), which made a configuration that failed on a broken worker and ran on a
  // mended one a failure for good.
  std::set<Point> ran_ok;
  for (const Observation& o : s->prior_) {
    if (o.ok) ran_ok.insert(o.point);
  }
  s->prior_.erase(
      std::remove_if(s->prior_.begin(), s->prior_.end(),
                     [&](const Observation& o) { return !o.ok && ran_ok.count(o.point); }),
      s->prior_.end());
  s->prior_records_ = static_cast<int64_t>(s->prior_.size());
  // The first batch: the job's initial configurations the records do not hold measured ok (what
  // the user asked for comes first, also within a budget of one; one stored as failed only in a
  // way that may have been the worker's is measured again, as asked: a timeout of a worker that
  // was stopped is no verdict, a wrong result is), then the default, then the re-verified.
  std::vector<Point> first;
  for (size_t i = 0; i < initial.size(); ++i) {
    const auto& [point, invalid] = initial[i];
    const std::string why = !point                 ? invalid
                            : ran_ok.count(*point) ? "the task's records hold it measured ok"
                                                   : "the task's records hold it failed for good "
                                                     "(a wrong result, an error above the budget)";
    if (!point || ran_ok.count(*point) || failed_for_good.count(*point)) {
      LogEvent("initial_config_skipped", {{"kernel", task.kernel},
                                          {"config", CanonicalJson(options.initial[i])},
                                          {"reason", why}});
      s->skipped_initial_.push_back(
          absl::StrCat(FormatParamMapAssignments(options.initial[i]), " (", why, ")"));
    } else {
      first.push_back(*point);
    }
  }
  // A re-measured one's old failure is not told to the strategy, which keeps the first result of
  // a point: the new one, ok or not, is its result.
  if (!first.empty()) {
    const std::set<Point> remeasured(first.begin(), first.end());
    s->prior_.erase(std::remove_if(s->prior_.begin(), s->prior_.end(),
                                   [&](const Observation& o) { return remeasured.count(o.point); }),
                    s->prior_.end());
  }
  // The kernel's contract puts its default in its space; re-verified ones may not be.
  const auto add_first = [&](const Configuration& c) {
    if (absl::StatusOr<Point> p = s->space_->ToPoint(c); p.ok() && s->space_->IsValid(*p)) {
      first.push_back(*p);
    }
  };
  if (default_config && !default_known) add_first(*default_config);
  for (const Configuration& c : options.reverify) add_first(c);
  for (const Point& p : first) {
    if (std::find(s->first_points_.begin(), s->first_points_.end(), p) != s->first_points_.end()) {
      continue;
    }
    if (static_cast<int64_t>(s->first_points_.size()) >= s->budget_left_) {
      LogEvent("first_batch_cut", {{"kernel", task.kernel},
                                   {"budget_left", std::to_string(s->budget_left_)},
                                   {"effect",
                                    "the rest of the initial, default or re-verified "
                                    "configurations is left to the strategy"}});
      break;
    }
    s->first_points_.push_back(p);
  }
  return s;
}

std::vector<std::pair<std::optional<Point>, std::string>> TaskSearch::InitialPoints(
    const SearchSpace& space, const std::optional<Configuration>& default_config,
    const std::vector<Configuration>& initial) {
  std::vector<std::pair<std::optional<Point>, std::string>> out;
  for (const Configuration& given : initial) {
    Configuration c = default_config.value_or(Configuration());
    for (const Parameter& p : space.parameters()) {
      auto it = given.find(p.name);
      if (it == given.end()) continue;
      ParamValue v = it->second;
      // A number written as the other kind (4.0 for 4, from JSON or YAML) is the space's.
      const bool ints = !p.values.empty() && std::holds_alternative<int64_t>(p.values[0]);
      const bool doubles = !p.values.empty() && std::holds_alternative<double>(p.values[0]);
      if (ints && std::holds_alternative<double>(v)) {
        const double d = std::get<double>(v);
        if (d == std::floor(d) && std::abs(d) < 9.0e15) v = static_cast<int64_t>(d);
      } else if (doubles && std::holds_alternative<int64_t>(v)) {
        v = static_cast<double>(std::get<int64_t>(v));
      }
      c[p.name] = v;
    }
    std::string unknown;
    for (const auto& [name, value] : given) {
      const auto& params = space.parameters();
      if (std::none_of(params.begin(), params.end(),
                       [&](const Parameter& p) { return p.name == name; })) {
        unknown = name;
      }
    }
    absl::StatusOr<Point> p = space.ToPoint(c);
    if (!unknown.empty()) {
      out.push_back({std::nullopt, absl::StrCat("'", unknown, "' is not a parameter")});
    } else if (!p.ok()) {
      out.push_back({std::nullopt, std::string(p.status().message())});
    } else if (!space.IsValid(*p)) {
      out.push_back({std::nullopt, "the space rules it out (a constraint, or the threads)"});
    } else {
      out.push_back({*p, ""});
    }
  }
  return out;
}

absl::Status TaskSearch::StartStrategy() {
  started_ = true;
  checkpoint_ = strategy_->CheckpointKey(task_.kernel, *space_);
  if (!checkpoint_.empty()) {
    absl::StatusOr<std::string> saved = db_->LoadCheckpoint(checkpoint_);
    if (saved.ok()) {
      strategy_->LoadCheckpoint(*std::move(saved));
      warm_started_ = true;
    } else if (!absl::IsNotFound(saved.status())) {
      return saved.status();
    }
  }
  auto start = [&]() -> absl::Status {
    KTUNE_RETURN_IF_ERROR(strategy_->Initialize(*space_, options_.seed));
    if (has_stale_source_) {
      KTUNE_RETURN_IF_ERROR(strategy_->AddTransferSource({space_.get(), &stale_times_}));
    }
    KTUNE_RETURN_IF_ERROR(strategy_->AddPriorResults(prior_));
    return strategy_->PreTuning(budget_left_, options_.batch_size);
  };
  absl::Status started = Timed(&agent_seconds_, &time_budget_, start);
  if (!started.ok() && warm_started_ && absl::IsInvalidArgument(started)) {
    // A saved state this strategy cannot use (another ktune's policy, an edited blob) must not
    // stop every tuning of the kernel: a new strategy (nothing of the first start kept) starts
    // without it, and the run's end replaces it. If that fails too, the state was not the cause.
    KTUNE_ASSIGN_OR_RETURN(std::unique_ptr<SearchStrategy> fresh,
                           options_.make_strategy ? options_.make_strategy(options_.strategy)
                                                  : MakeStrategy(options_.strategy));
    std::swap(strategy_, fresh);
    warm_started_ = false;
    const absl::Status refused = started;
    started = Timed(&agent_seconds_, &time_budget_, start);
    if (started.ok()) {
      LogEvent("checkpoint_refused",
               {{"checkpoint", checkpoint_}, {"reason", std::string(refused.message())}});
    }
  }
  return started;
}

absl::StatusOr<std::vector<Point>> TaskSearch::NextBatch() {
  if (finished_ || budget_left_ <= 0) return std::vector<Point>();
  // The records stored since the search began, read once per call (the task's columns: a few
  // blobs, under the database's lock). A failed read (the file busy) answers nothing, and the
  // batch is measured whole: a duplicate measurement is better than a task failed for it.
  TaskColumns now;
  std::vector<size_t> newer;
  if (absl::StatusOr<TaskColumns> read = db_->TaskRecordColumns(task_); read.ok()) {
    now = *std::move(read);
    for (size_t i = 0; i < now.size(); ++i) {
      if (!handles_at_start_.contains(now.handles[i])) newer.push_back(i);
    }
  } else {
    LogEvent("records_not_read", {{"kernel", task_.kernel},
                                  {"reason", std::string(read.status().message())},
                                  {"effect", "the batch is measured whole"}});
  }
  while (!finished_ && budget_left_ > 0) {
    batch_out_at_ = absl::Now();
    std::vector<Point> batch;
    if (!first_points_.empty()) {
      default_batch_ = true;
      batch = std::exchange(first_points_, {});
    } else {
      if (!started_) KTUNE_RETURN_IF_ERROR(StartStrategy());
      strategy_->SetTimeAllowance(time_budget_.AllowanceMs());
      KTUNE_ASSIGN_OR_RETURN(
          batch, Timed(&agent_seconds_, &time_budget_, [&] { return strategy_->ProposeBatch(); }));
      batch_out_at_ = absl::Now();
      if (batch.empty()) {
        KTUNE_RETURN_IF_ERROR(Finish());
        return batch;
      }
      if (static_cast<int64_t>(batch.size()) > budget_left_) batch.resize(budget_left_);
    }
    std::vector<Point> to_measure = AnswerFromNewRecords(std::move(batch), now, newer);
    if (!to_measure.empty()) return to_measure;
    // Another job measured the whole batch meanwhile: the strategy learns it, and goes on.
    KTUNE_ASSIGN_OR_RETURN(std::vector<Observation> answered, MergeResults({}));
    KTUNE_RETURN_IF_ERROR(Deliver(answered));
  }
  return std::vector<Point>();
}

std::vector<Point> TaskSearch::AnswerFromNewRecords(std::vector<Point> batch,
                                                    const TaskColumns& now,
                                                    const std::vector<size_t>& newer) {
  proposed_ = std::move(batch);
  answered_.assign(proposed_.size(), std::nullopt);
  std::vector<Point> to_measure;
  for (size_t b = 0; b < proposed_.size(); ++b) {
    // The strategy never proposes a point it was told of, so a newer record of this one is
    // another job's. Its result reads as a prior record's would (Create).
    std::optional<std::vector<int32_t>> indices =
        newer.empty() ? std::nullopt : now.IndicesOf(space_->ToConfiguration(proposed_[b]));
    for (size_t i : newer) {
      if (!indices) break;  // a value no record has: none holds the point
      if (!now.HasConfig(i, *indices)) continue;
      const std::optional<RecordOutcome> outcome = OutcomeOf(now, i, options_.max_rel_error);
      if (!outcome) continue;  // measured here
      if (!answered_[b] || (outcome->ok && !answered_[b]->ok)) {
        answered_[b] = Observation{proposed_[b], outcome->ok, outcome->time_ms};
      }
    }
    if (answered_[b]) {
      ++answered_by_others_;
    } else {
      to_measure.push_back(proposed_[b]);
    }
  }
  return to_measure;
}

absl::StatusOr<std::vector<Observation>> TaskSearch::MergeResults(
    const std::vector<Observation>& measured) {
  std::vector<Observation> all;
  size_t next = 0;
  for (const std::optional<Observation>& answered : answered_) {
    if (answered) {
      all.push_back(*answered);
    } else if (next < measured.size()) {
      all.push_back(measured[next++]);
    } else {
      return absl::InternalError("fewer results than the batch's points to measure");
    }
  }
  if (next != measured.size()) {
    return absl::InternalError("more results than the batch's points to measure");
  }
  return all;
}

absl::Status TaskSearch::Deliver(const std::vector<Observation>& results) {
  if (default_batch_) {
    default_batch_ = false;
    prior_.insert(prior_.end(), results.begin(), results.end());
    return absl::OkStatus();
  }
  // The points another job measured were not bought with this job's budget (given back first,
  // so that the strategy's view of the budget used is right when it observes the results).
  strategy_->GiveBackBudget(static_cast<int64_t>(std::count_if(
      answered_.begin(), answered_.end(), [](const auto& a) { return a.has_value(); })));
  KTUNE_RETURN_IF_ERROR(
      Timed(&agent_seconds_, &time_budget_, [&] { return strategy_->NotifyResults(results); }));
  ++batches_;
  return absl::OkStatus();
}

absl::Status TaskSearch::Complete(const std::vector<Observation>& measured) {
  time_budget_.AddMeasurementMs(absl::ToDoubleMilliseconds(absl::Now() - batch_out_at_));
  budget_left_ -= static_cast<int64_t>(measured.size());
  KTUNE_ASSIGN_OR_RETURN(std::vector<Observation> results, MergeResults(measured));
  KTUNE_RETURN_IF_ERROR(Deliver(results));
  if (budget_left_ <= 0) return Finish();
  if (!checkpoint_.empty() && batches_ > 0 &&
      absl::Now() - last_checkpoint_ >= options_.checkpoint_every) {
    return SaveCheckpoint();
  }
  return absl::OkStatus();
}

absl::Status TaskSearch::SaveCheckpoint() {
  last_checkpoint_ = absl::Now();
  KTUNE_ASSIGN_OR_RETURN(std::string blob, strategy_->SaveCheckpoint());
  if (blob.empty()) return absl::OkStatus();  // nothing learned: keep what the database has
  return db_->SaveCheckpoint(checkpoint_, blob);
}

absl::Status TaskSearch::Finish() {
  if (finished_) return absl::OkStatus();
  finished_ = true;
  if (!started_) return absl::OkStatus();
  Timed(&agent_seconds_, &time_budget_, [&] {  // the agent's work too (PPO's last update)
    strategy_->PostTuning();
    return 0;
  });
  if (checkpoint_.empty() || batches_ == 0) return absl::OkStatus();
  return SaveCheckpoint();
}

}  // namespace ktune
