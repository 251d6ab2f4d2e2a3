#include "bench/search_benchmark.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "agent/tuning_loop.h"
#include "bench/synthetic_landscape.h"
#include "common/status_macros.h"
#include "db/interchange/record_files.h"
#include "measurer/replay_measurer.h"

namespace ktune {

double BestOverOptimumAt(const std::vector<Observation>& trace, double optimum, int64_t b) {
  double best = std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < b && i < static_cast<int64_t>(trace.size()); ++i) {
    if (trace[i].ok) best = std::min(best, trace[i].time_ms);
  }
  return best / optimum;
}

int64_t EvalsToWithin(const std::vector<Observation>& trace, double optimum, double fraction,
                      int64_t never) {
  for (size_t i = 0; i < trace.size(); ++i) {
    if (trace[i].ok && trace[i].time_ms <= optimum * (1 + fraction)) {
      return static_cast<int64_t>(i + 1);
    }
  }
  return never;
}

double Median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

TrainingSpace ReplaySpace::AsTrainingSpace() {
  TaskKey task{recorded.records.front().kernel, "", {}, measurer.device().device_class};
  return {name, &recorded.space, &measurer, task};
}

absl::StatusOr<std::vector<std::unique_ptr<ReplaySpace>>> LoadReplaySpaces(
    const std::vector<std::string>& files) {
  std::vector<std::unique_ptr<ReplaySpace>> out;
  for (const std::string& file : files) {
    KTUNE_ASSIGN_OR_RETURN(RecordedSpace recorded, LoadRecordedSpace(file));
    if (recorded.records.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": no records"));
    }
    auto space = std::make_unique<ReplaySpace>(std::move(recorded));
    space->file = file;
    space->name = file.substr(file.find_last_of('/') + 1);
    space->kernel = space->recorded.records.front().kernel;
    space->time_ms.assign(space->recorded.space.size(), std::nan(""));
    for (const Record& r : space->recorded.records) {
      KTUNE_ASSIGN_OR_RETURN(Point p, space->recorded.space.ToPoint(r.config));
      if (r.time_ms) space->time_ms[space->recorded.space.IndexOf(p)] = *r.time_ms;
    }
    out.push_back(std::move(space));
  }
  return out;
}

absl::StatusOr<SearchProtocol> ParseSearchProtocol(const std::string& name) {
  if (name == "plain") return SearchProtocol::kPlain;
  if (name == "leave-one-kernel-out") return SearchProtocol::kLeaveOneKernelOut;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown protocol '", name, "' (known: plain, leave-one-kernel-out)"));
}

namespace {

constexpr int64_t kCheckpoints[] = {25, 50, 100, 200, 400};

// Every strategy, every seed, on one space; `policies` (JSON, may be empty) are where PPO's
// variants that use a trained policy start, run seed s from policy (s - 1) % their number.
absl::Status RunSpace(const SearchBenchOptions& options, ReplaySpace& target,
                      const std::vector<const ReplaySpace*>& sources,
                      const std::vector<std::string>& policies,
                      const std::function<void(const SearchBenchRow&)>& on_row,
                      const std::function<void(const std::string&)>& progress) {
  ReplayMeasurer& measurer = target.measurer;
  measurer.set_simulated_cost_ms(options.measure_ms);
  const double optimum = measurer.optimum_ms();
  const TaskKey task = target.AsTrainingSpace().task;
  for (const std::string& name : options.strategies) {
    std::vector<std::vector<Observation>> traces;
    std::vector<double> agent_ms_per_batch, agent_share;
    for (int seed = options.first_seed; seed < options.first_seed + options.seeds; ++seed) {
      KTUNE_ASSIGN_OR_RETURN(std::unique_ptr<SearchStrategy> strategy, MakeStrategy(name));
      if (!policies.empty() && name.rfind("ppo", 0) == 0 && name != "ppo-untrained") {
        strategy->LoadCheckpoint(policies[(seed - 1) % policies.size()]);
      }
      for (const ReplaySpace* source : sources) {
        // The same kernel, its variants included (a variant's parameters map by name).
        if (KernelFamily(source->kernel) != KernelFamily(task.kernel) ||
            source->measurer.device().device_class == task.device_class) {
          continue;
        }
        KTUNE_RETURN_IF_ERROR(strategy->AddTransferSource(source->AsTransferSource()));
      }
      TuningOptions run{options.budget, options.batch_size, static_cast<uint64_t>(seed)};
      if (options.measure_ms > 0) run.max_agent_share = options.agent_share;
      KTUNE_ASSIGN_OR_RETURN(TuningOutcome outcome,
                             RunTuningLoop(*strategy, target.recorded.space, measurer, task, run));
      agent_ms_per_batch.push_back(1e3 * outcome.agent_seconds / std::max(1, outcome.batches));
      agent_share.push_back(outcome.agent_seconds /
                            std::max(1e-12, outcome.agent_seconds + outcome.measure_seconds));
      if (progress) {
        progress(absl::StrFormat(
            "%s %s seed %d: best/opt %.3f, agent %.2f ms/batch (%.1f%% of the run)", target.name,
            name, seed, BestOverOptimumAt(outcome.trace, optimum, options.budget),
            agent_ms_per_batch.back(), 100 * agent_share.back()));
      }
      traces.push_back(std::move(outcome.trace));
    }
    SearchBenchRow row;
    row.space = target.name;
    row.strategy = name;
    row.budget = options.budget;
    row.seeds = options.seeds;
    for (int64_t b : kCheckpoints) {
      if (b > options.budget) break;  // a run never gets there (it was the final best, repeated)
      std::vector<double> ratios;
      for (const auto& t : traces) ratios.push_back(BestOverOptimumAt(t, optimum, b));
      row.best_over_opt.push_back({b, Median(ratios)});
    }
    const int64_t never = 10 * options.budget;
    // Per fraction: the median count, the share that reached it, and (5% only) every run's count.
    for (auto [fraction, evals, reached, runs] :
         {std::make_tuple(0.05, &row.evals_to_5pct, &row.reached_5pct, &row.evals_to_5pct_runs),
          std::make_tuple(0.02, &row.evals_to_2pct, &row.reached_2pct,
                          static_cast<std::vector<double>*>(nullptr))}) {
      std::vector<double> counts;
      int hit = 0;
      for (const auto& t : traces) {
        int64_t e = EvalsToWithin(t, optimum, fraction, never);
        counts.push_back(static_cast<double>(e));
        hit += e != never;
      }
      *evals = Median(counts);
      *reached = static_cast<double>(hit) / traces.size();
      if (runs != nullptr) *runs = counts;
    }
    row.agent_ms_per_batch = Median(agent_ms_per_batch);
    row.agent_share = Median(agent_share);
    on_row(row);
  }
  measurer.set_simulated_cost_ms(0);  // a later fold may train on this space: instantly
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SearchBenchSpaces> LoadSearchBenchSpaces(const SearchBenchOptions& options) {
  SearchBenchSpaces loaded;
  KTUNE_ASSIGN_OR_RETURN(loaded.spaces, LoadReplaySpaces(options.spaces));
  // Transfer sources: the spaces already loaded (a file is read once), or loaded here.
  std::vector<std::string> more;
  for (const std::string& file : options.transfer_from) {
    if (std::none_of(loaded.spaces.begin(), loaded.spaces.end(),
                     [&](const auto& s) { return s->file == file; })) {
      more.push_back(file);
    }
  }
  KTUNE_ASSIGN_OR_RETURN(loaded.other_sources, LoadReplaySpaces(more));
  for (const std::string& file : options.transfer_from) {
    for (const auto* list : {&loaded.spaces, &loaded.other_sources}) {
      for (const auto& s : *list) {
        if (s->file == file) loaded.sources.push_back(s.get());
      }
    }
  }
  KTUNE_ASSIGN_OR_RETURN(loaded.train_only, LoadReplaySpaces(options.train_spaces));
  for (const auto& space : loaded.spaces) {
    const std::string k = KernelFamily(space->kernel);
    if (std::find(loaded.kernels.begin(), loaded.kernels.end(), k) == loaded.kernels.end()) {
      loaded.kernels.push_back(k);
    }
  }
  return loaded;
}

absl::Status CheckSearchBenchOptions(const SearchBenchOptions& options,
                                     const SearchBenchSpaces& loaded) {
  const std::vector<std::string>& kernels = loaded.kernels;
  // A source of another kernel was skipped without a word: PPO learns only from its own kernel's.
  for (const ReplaySpace* source : loaded.sources) {
    if (std::find(kernels.begin(), kernels.end(), KernelFamily(source->kernel)) == kernels.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--transfer-from ", source->file, ": its kernel '", source->kernel,
                       "' is none of the tuned spaces' kernels (", absl::StrJoin(kernels, ", "),
                       "); PPO transfers from spaces of the same kernel only"));
    }
  }
  if (options.protocol != SearchProtocol::kLeaveOneKernelOut) return absl::OkStatus();
  // Every fold needs another kernel to train on: a tuned one, or a --train-space.
  std::vector<std::string> all = kernels;
  for (const auto& space : loaded.train_only) {
    const std::string k = KernelFamily(space->kernel);
    if (std::find(all.begin(), all.end(), k) == all.end()) all.push_back(k);
  }
  if (all.size() < 2) {
    return absl::InvalidArgumentError(
        "leave-one-kernel-out needs the spaces of at least two kernels, tuned (--space) or for "
        "training only (--train-space): one is held out, the others train its policy");
  }
  for (const std::string& fold : options.folds) {
    if (std::find(kernels.begin(), kernels.end(), KernelFamily(fold)) == kernels.end()) {
      return absl::InvalidArgumentError(absl::StrCat("no space of kernel '", fold,
                                                     "' to hold out (kernels: ",
                                                     absl::StrJoin(kernels, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> LeaveOneKernelOutWarnings(const SearchBenchOptions& options,
                                                   const SearchBenchSpaces& loaded) {
  std::vector<std::string> warnings;
  if (options.protocol != SearchProtocol::kLeaveOneKernelOut) return warnings;
  std::vector<const ReplaySpace*> all;
  for (const auto* list : {&loaded.spaces, &loaded.train_only}) {
    for (const auto& space : *list) all.push_back(space.get());
  }
  // Each space's kernel family and sorted parameter names, once.
  std::vector<std::string> families;
  std::vector<std::vector<std::string>> names;
  for (const ReplaySpace* space : all) {
    families.push_back(KernelFamily(space->kernel));
    std::vector<std::string>& n = names.emplace_back();
    for (const Parameter& p : space->recorded.space.parameters()) n.push_back(p.name);
    std::sort(n.begin(), n.end());
  }
  for (size_t i = 0; i < all.size(); ++i) {
    for (size_t j = i + 1; j < all.size(); ++j) {
      if (families[i] == families[j] || names[i] != names[j]) continue;
      warnings.push_back(absl::StrCat(
          all[i]->name, " (kernel ", families[i], ") and ", all[j]->name, " (kernel ", families[j],
          ") have the same parameters: if they are one kernel, the fold of each trains on the "
          "other; a space's kernel is its file's name up to the device (trailing digits and "
          "case ignored)"));
    }
  }
  return warnings;
}

absl::Status RunSearchBenchmark(const SearchBenchOptions& options,
                                const std::function<void(const SearchBenchRow&)>& on_row,
                                const std::function<void(const std::string&)>& progress) {
  KTUNE_ASSIGN_OR_RETURN(SearchBenchSpaces loaded, LoadSearchBenchSpaces(options));
  return RunSearchBenchmark(options, loaded, on_row, progress);
}

absl::Status RunSearchBenchmark(const SearchBenchOptions& options, SearchBenchSpaces& loaded,
                                const std::function<void(const SearchBenchRow&)>& on_row,
                                const std::function<void(const std::string&)>& progress) {
  KTUNE_RETURN_IF_ERROR(CheckSearchBenchOptions(options, loaded));
  const std::vector<const ReplaySpace*>& sources = loaded.sources;
  if (options.protocol == SearchProtocol::kPlain) {
    for (auto& space : loaded.spaces) {
      KTUNE_RETURN_IF_ERROR(RunSpace(options, *space, sources, {}, on_row, progress));
    }
    return absl::OkStatus();
  }
  // Leave one kernel out: a fold per kernel, in the order the spaces were given.
  // Each training seed's synthetic landscapes, made once for every fold.
  const int training_seeds = std::max(1, options.training_seeds);
  std::vector<std::vector<SyntheticLandscape>> synthetic_sets;
  for (int t = 0; t < training_seeds; ++t) {
    KTUNE_ASSIGN_OR_RETURN(
        std::vector<SyntheticLandscape> set,
        MakeSyntheticLandscapes(options.synthetic,
                                options.training.seed + static_cast<uint64_t>(t)));
    synthetic_sets.push_back(std::move(set));
  }
  for (const std::string& held_out : loaded.kernels) {
    if (!options.folds.empty() &&
        std::none_of(options.folds.begin(), options.folds.end(),
                     [&](const std::string& f) { return KernelFamily(f) == held_out; })) {
      continue;
    }
    std::vector<TrainingSpace> other_kernels;
    for (const auto* list : {&loaded.spaces, &loaded.train_only}) {
      for (auto& space : *list) {
        if (KernelFamily(space->kernel) != held_out) {
          other_kernels.push_back(space->AsTrainingSpace());
        }
      }
    }
    std::vector<std::string> policies;
    for (int t = 0; t < training_seeds; ++t) {
      PolicyTrainingOptions training = options.training;
      training.seed += static_cast<uint64_t>(t);
      const std::vector<SyntheticLandscape>& synthetic = synthetic_sets[t];
      std::vector<TrainingSpace> spaces_to_train;
      for (const SyntheticLandscape& l : synthetic) spaces_to_train.push_back(l.AsTrainingSpace());
      spaces_to_train.insert(spaces_to_train.end(), other_kernels.begin(), other_kernels.end());
      if (progress) {
        progress(absl::StrFormat(
            "fold %s: training a policy (seed %d) on the %d spaces of the other kernels and %d "
            "synthetic ones",
            held_out, training.seed, spaces_to_train.size() - synthetic.size(), synthetic.size()));
      }
      KTUNE_ASSIGN_OR_RETURN(
          std::string policy,
          TrainPolicy(spaces_to_train, training, [&](int it, int of, double gain, double entropy) {
            if (progress && (it % 10 == 0 || it == of)) {
              progress(absl::StrFormat("fold %s: iteration %d/%d, mean gain %.3f, entropy %.2f",
                                       held_out, it, of, gain, entropy));
            }
          }));
      policies.push_back(std::move(policy));
    }
    for (auto& space : loaded.spaces) {
      if (KernelFamily(space->kernel) != held_out) continue;
      KTUNE_RETURN_IF_ERROR(RunSpace(options, *space, sources, policies, on_row, progress));
    }
  }
  return absl::OkStatus();
}

namespace {

// The q-quantile (0..1) of sorted values, linear between ranks.
double Quantile(const std::vector<double>& sorted, double q) {
  const double pos = q * (sorted.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

using RowPair = std::pair<const SearchBenchRow*, const SearchBenchRow*>;  // (subject, other)

// Fills s's intervals (SearchBenchSummary) from the subject's and best_other's rows of each space.
void BootstrapIntervals(const std::vector<RowPair>& pairs, SearchBenchSummary& s) {
  for (const auto& [subject, other] : pairs) {
    const size_t n = subject->evals_to_5pct_runs.size();
    if (n < 2 || other->evals_to_5pct_runs.size() != n) return;
  }
  if (pairs.empty()) return;
  constexpr int kResamples = 1000;
  std::mt19937_64 rng(1);
  std::vector<double> ratios, counts, a, b, ma, mb;
  for (int k = 0; k < kResamples; ++k) {
    ma.clear();
    mb.clear();
    int at_or_below = 0;
    for (const auto& [subject, other] : pairs) {
      const size_t n = subject->evals_to_5pct_runs.size();
      std::uniform_int_distribution<size_t> draw(0, n - 1);
      a.clear();
      b.clear();
      for (size_t j = 0; j < n; ++j) {
        const size_t i = draw(rng);
        a.push_back(subject->evals_to_5pct_runs[i]);
        b.push_back(other->evals_to_5pct_runs[i]);
      }
      ma.push_back(Median(a));
      mb.push_back(Median(b));
      at_or_below += ma.back() <= mb.back();
    }
    ratios.push_back(Median(ma) / Median(mb));
    counts.push_back(at_or_below);
  }
  std::sort(ratios.begin(), ratios.end());
  std::sort(counts.begin(), counts.end());
  s.ratio_low = Quantile(ratios, 0.025);
  s.ratio_high = Quantile(ratios, 0.975);
  s.at_or_below_low = static_cast<int>(std::floor(Quantile(counts, 0.025)));
  s.at_or_below_high = static_cast<int>(std::ceil(Quantile(counts, 0.975)));
}

}  // namespace

SearchBenchSummary SummariseSearchBench(const std::vector<SearchBenchRow>& rows,
                                        const std::string& subject) {
  SearchBenchSummary s;
  s.subject = subject;
  std::vector<std::string> names;
  for (const SearchBenchRow& r : rows) {
    if (std::find(names.begin(), names.end(), r.strategy) == names.end()) {
      names.push_back(r.strategy);
    }
  }
  auto median_of = [&](const std::string& name) {
    std::vector<double> v;
    for (const SearchBenchRow& r : rows) {
      if (r.strategy == name) v.push_back(r.evals_to_5pct);
    }
    return Median(v);
  };
  double best = INFINITY;
  for (const std::string& name : names) {
    const double m = median_of(name);
    s.median_evals_to_5pct.push_back({name, m});
    if (name.rfind("ppo", 0) != 0 && m < best) {
      best = m;
      s.best_other = name;
    }
  }
  if (s.best_other.empty() || std::find(names.begin(), names.end(), subject) == names.end()) {
    return s;
  }
  s.ratio = median_of(subject) / best;
  std::vector<double> space_ratios;
  std::vector<RowPair> pairs;
  for (const SearchBenchRow& r : rows) {
    if (r.strategy != subject) continue;
    for (const SearchBenchRow& o : rows) {
      if (o.strategy == s.best_other && o.space == r.space) {
        ++s.spaces;
        s.at_or_below += r.evals_to_5pct <= o.evals_to_5pct;
        space_ratios.push_back(r.evals_to_5pct / o.evals_to_5pct);
        pairs.push_back({&r, &o});
      }
    }
  }
  if (!space_ratios.empty()) s.space_ratio_median = Median(space_ratios);
  BootstrapIntervals(pairs, s);
  return s;
}

std::string SearchBenchRowJson(const SearchBenchRow& row) {
  nlohmann::ordered_json j;
  j["space"] = row.space;
  j["strategy"] = row.strategy;
  j["budget"] = row.budget;
  j["seeds"] = row.seeds;
  for (const auto& [b, ratio] : row.best_over_opt) {
    j[absl::StrCat("best/opt@", b)] =
        std::isfinite(ratio) ? nlohmann::ordered_json(ratio) : nlohmann::ordered_json(nullptr);
  }
  j["evals_to_5pct"] = row.evals_to_5pct;
  j["reached_5pct"] = row.reached_5pct;
  j["evals_to_2pct"] = row.evals_to_2pct;
  j["reached_2pct"] = row.reached_2pct;
  return j.dump();
}

}  // namespace ktune
