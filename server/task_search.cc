#include "server/task_search.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/time/clock.h"
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
  KTUNE_ASSIGN_OR_RETURN(std::vector<Record> known, db->TaskRecords(task));
  // Records from before a regression (MarkStale) still describe most of the landscape: the
  // strategy learns from those of configurations neither measured since nor re-verified now.
  KTUNE_ASSIGN_OR_RETURN(std::vector<Record> stale, db->StaleTaskRecords(task));
  if (!stale.empty()) {
    absl::flat_hash_set<std::string> fresh;
    for (const Record& r : known) fresh.insert(r.ConfigHash());
    for (const Configuration& c : options.reverify) fresh.insert(ParamMapHash(c));
    for (Record& r : stale) {
      if (!fresh.contains(r.ConfigHash())) known.push_back(std::move(r));
    }
  }
  bool default_known = false;
  for (const Record& r : known) {
    // Refused by an earlier job's tighter budget, but within this job's: not a failure here, and
    // not measured either (a refused record is never served), so the search may measure it again.
    if (r.status == MeasurementStatus::kTooInaccurate &&
        WithinAccuracyBudget(r.max_rel_error, options.max_rel_error)) {
      continue;
    }
    default_known |= default_config && r.config == *default_config;
    absl::StatusOr<Point> p = s->space_->ToPoint(r.config);
    if (!p.ok() || !s->space_->IsValid(*p)) continue;  // another version, threads or space
    const bool ok = r.status == MeasurementStatus::kOk && r.time_ms.has_value() &&
                    WithinAccuracyBudget(r.max_rel_error, options.max_rel_error);
    s->prior_.push_back({*p, ok, ok ? *r.time_ms : 0.0});
  }
  s->prior_records_ = static_cast<int64_t>(s->prior_.size());
  std::vector<Configuration> first;
  if (default_config && !default_known) first.push_back(*default_config);
  first.insert(first.end(), options.reverify.begin(), options.reverify.end());
  for (const Configuration& c : first) {
    if (static_cast<int64_t>(s->first_points_.size()) >= s->budget_left_) break;
    // The kernel's contract puts its default in its space; re-verified ones may not be.
    absl::StatusOr<Point> p = s->space_->ToPoint(c);
    if (p.ok() && s->space_->IsValid(*p) &&
        std::find(s->first_points_.begin(), s->first_points_.end(), *p) == s->first_points_.end()) {
      s->first_points_.push_back(*p);
    }
  }
  return s;
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
  return Timed(&agent_seconds_, &time_budget_, [&]() -> absl::Status {
    KTUNE_RETURN_IF_ERROR(strategy_->Initialize(*space_, options_.seed));
    KTUNE_RETURN_IF_ERROR(strategy_->AddPriorResults(prior_));
    return strategy_->PreTuning(budget_left_, options_.batch_size);
  });
}

absl::StatusOr<std::vector<Point>> TaskSearch::NextBatch() {
  if (finished_ || budget_left_ <= 0) return std::vector<Point>();
  batch_out_at_ = absl::Now();
  if (!first_points_.empty()) {
    default_batch_ = true;
    return std::exchange(first_points_, {});
  }
  if (!started_) KTUNE_RETURN_IF_ERROR(StartStrategy());
  strategy_->SetTimeAllowance(time_budget_.AllowanceMs());
  KTUNE_ASSIGN_OR_RETURN(std::vector<Point> batch, Timed(&agent_seconds_, &time_budget_, [&] {
                           return strategy_->ProposeBatch();
                         }));
  batch_out_at_ = absl::Now();
  if (batch.empty()) {
    KTUNE_RETURN_IF_ERROR(Finish());
    return batch;
  }
  if (static_cast<int64_t>(batch.size()) > budget_left_) batch.resize(budget_left_);
  return batch;
}

absl::Status TaskSearch::Complete(const std::vector<Observation>& results) {
  time_budget_.AddMeasurementMs(absl::ToDoubleMilliseconds(absl::Now() - batch_out_at_));
  budget_left_ -= static_cast<int64_t>(results.size());
  if (default_batch_) {
    default_batch_ = false;
    prior_.insert(prior_.end(), results.begin(), results.end());
  } else {
    KTUNE_RETURN_IF_ERROR(
        Timed(&agent_seconds_, &time_budget_, [&] { return strategy_->NotifyResults(results); }));
    ++batches_;
  }
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
  strategy_->PostTuning();
  if (checkpoint_.empty() || batches_ == 0) return absl::OkStatus();
  return SaveCheckpoint();
}

}  // namespace ktune
