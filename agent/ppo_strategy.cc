#include "agent/ppo_strategy.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <system_error>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "agent/model_based_strategy.h"
#include "agent/pretrained_policy.h"
#include "common/status_macros.h"

namespace ktune {
namespace {

// Runs `first` on this thread and `second` on another at once, and returns when both are done;
// where no thread can be started (a process at its limit), `second` runs after `first`. The two
// must share nothing mutable (PPO's two cost models: each its own booster, rows and seed; the
// results are those of one after the other). A batch's largest costs, the two fits and, in a
// whole-space batch, the two rankings of every point, take about half the time where a second
// core is free.
template <typename First, typename Second>
void InParallel(First first, Second second) {
  std::thread other;
  try {
    other = std::thread(second);
  } catch (const std::system_error&) {
  }
  first();
  if (other.joinable()) {
    other.join();
  } else {
    second();
  }
}

// Rank targets: 1 for the fastest result down to 0 for the slowest, failures 0. Order is what
// the search needs; unlike -log(time), a few very slow configurations cannot dominate the fit.
std::vector<float> RankTargets(const std::vector<Observation>& h) {
  std::vector<size_t> order(h.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (h[a].ok != h[b].ok) return h[a].ok;
    return h[a].ok && h[a].time_ms < h[b].time_ms;
  });
  std::vector<float> y(h.size(), 0.f);
  const float n = static_cast<float>(std::max<size_t>(1, h.size() - 1));
  for (size_t r = 0; r < order.size(); ++r) {
    if (h[order[r]].ok) y[order[r]] = 1.f - static_cast<float>(r) / n;
  }
  return y;
}

}  // namespace

PpoStrategy::PpoStrategy(PpoOptions options, std::string name)
    : options_(options), name_(std::move(name)) {
  options_.policy.features = kCandidateFeatures;
}
PpoStrategy::~PpoStrategy() = default;

std::unique_ptr<PpoStrategy> MakePpoVariant(const std::string& name) {
  PpoOptions o;
  if (name == "ppo") return std::make_unique<PpoStrategy>(o, name);
  if (name == "ppo-untrained") {
    o.pretrained = false;
    o.learn_online = false;
    return std::make_unique<PpoStrategy>(o, name);
  }
  if (name == "ppo-nopolicy") {
    o.use_policy = false;
    return std::make_unique<PpoStrategy>(o, name);
  }
  if (name == "ppo-wholespace") {
    o.whole_space_arm = true;
    return std::make_unique<PpoStrategy>(o, name);
  }
  if (name == "ppo-policyonly") {
    o.escape_after = 0;
    return std::make_unique<PpoStrategy>(o, name);
  }
  return nullptr;
}

absl::Status PpoStrategy::AddTransferSource(TransferSource source) {
  if (source.space == nullptr || source.time_ms == nullptr ||
      static_cast<int64_t>(source.time_ms->size()) != source.space->size()) {
    return absl::InvalidArgumentError("a transfer source needs a space and one time per point");
  }
  sources_.push_back(source);
  return absl::OkStatus();
}

const AcquisitionPolicy* PpoStrategy::active_policy() const {
  return shared_policy_ ? shared_policy_ : policy_.get();
}

absl::StatusOr<std::string> PpoStrategy::SavePolicy() const {
  if (!active_policy()) return absl::FailedPreconditionError("SavePolicy before PreTuning");
  return active_policy()->ToJson();
}

absl::StatusOr<std::string> PpoStrategy::SaveCheckpoint() const {
  if (!policy_ || policy_->updates() == 0) return std::string();
  return SavePolicy();
}

std::string PpoStrategy::PolicyKey(const std::string& kernel, const SearchSpace&) {
  // The policy's features do not depend on the space, so one key per kernel.
  return absl::StrCat("ppo-policy/", kernel);
}

std::vector<std::pair<std::string, double>> PpoStrategy::LastMetrics() const {
  return active_policy() ? active_policy()->LastMetrics()
                         : std::vector<std::pair<std::string, double>>{};
}

absl::Status PpoStrategy::Start() {
  // Both models fit the order of the results (a pairwise ranking loss), not their values: the
  // pool needs its best candidates ranked first. On the CPU dev spaces this took 20.0 / 19.5 /
  // 20.0 evaluations (policies of training seeds 1-3) against 23.5 / 20.5 / 21.0 with squared
  // error (agent/README.md, "Why a ranking loss"). Where transfer rows join the fits (a non-empty
  // prior, the condition FitModels uses), squared error: ranking ignores the weights that scale
  // those rows. The models exist from here on, whatever fails below.
  auto make_models = [this](const char* objective) {
    XgbCostModel::Options model_options;
    model_options.rounds = options_.model_rounds;
    model_options.objective = objective;
    model_ = std::make_unique<XgbCostModel>(model_options);
    sample_model_ = std::make_unique<XgbCostModel>(model_options);
  };
  make_models("reg:squarederror");
  features_ = std::make_unique<SpaceFeatures>(space());
  episode_.clear();
  awaiting_reward_ = false;
  stale_batches_ = 0;
  last_gain_ = 0;
  learning_steps_ = 0;
  step_cost_ms_ = 20;
  if (!shared_policy_) {
    policy_ = std::make_unique<AcquisitionPolicy>(options_.policy, rng()());
    if (!saved_policy_.empty()) {
      KTUNE_RETURN_IF_ERROR(policy_->LoadJson(saved_policy_));
    } else if (options_.pretrained && !PretrainedPolicyJson().empty()) {
      KTUNE_RETURN_IF_ERROR(policy_->LoadJson(std::string(PretrainedPolicyJson())));
    }
  }
  KTUNE_RETURN_IF_ERROR(prior_.Build(space(), *features_, sources_, options_.source_rows, rng()));
  if (prior_.empty()) make_models("rank:pairwise");
  return absl::OkStatus();
}

bool PpoStrategy::WholeSpacePoolNow() const {
  return options_.whole_space_arm ||
         (options_.escape_after > 0 && stale_batches_ >= options_.escape_after);
}

double PpoStrategy::BestTime() const { return best() ? best()->time_ms : INFINITY; }

RunState PpoStrategy::CurrentState() const {
  const auto& h = history();
  RunState s;
  s.budget_used = static_cast<double>(h.size()) / std::max<int64_t>(1, budget() + prior_count());
  int failed = 0;
  for (const Observation& o : h) failed += !o.ok;
  s.failure_share = h.empty() ? 0 : static_cast<double>(failed) / h.size();
  s.stale_batches = stale_batches_;
  s.last_gain = last_gain_;
  return s;
}

absl::StatusOr<std::vector<Point>> PpoStrategy::Generate(int n) {
  if (static_cast<int>(history().size()) < options_.warmup || best() == nullptr) {
    if (prior_.empty()) return std::vector<Point>();  // random warm-up, filled by the base
    return ProposeFromPrior(n);
  }
  // The full step when the driver's allowance affords it (allowance_ms() is +infinity unless the
  // agent's share of the run is limited); otherwise the best points' neighbourhoods.
  if (allowance_ms() < step_cost_ms_) return ProposeLocal(n);
  const auto start = std::chrono::steady_clock::now();
  KTUNE_ASSIGN_OR_RETURN(std::vector<Point> out, ProposeFromPool(n));
  step_cost_ms_ =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  ++learning_steps_;
  return out;
}

absl::Status PpoStrategy::FitModels() {
  const auto& h = history();
  const bool with_sources = !prior_.empty();
  // The mean fit, on every result. Without transfer sources its targets are the `model`
  // baseline's (ScoreTargets), learned as an order (the pairwise objective, Start). With
  // sources, ranks: the sources' rows are ranks (times on other devices are not comparable with
  // the target's).
  const std::vector<float> targets = with_sources ? RankTargets(h) : ScoreTargets(h);
  double agreement = 0;
  if (with_sources) {
    KTUNE_ASSIGN_OR_RETURN(agreement, prior_.Agreement(h));
  }
  // Each fit's rows, weights and seed, drawn in the order in which a fit after the other
  // would draw them.
  struct FitInput {
    std::vector<float> x, y, weights;
    uint64_t seed = 0;
  };
  const int width = features_->width() + (with_sources ? 1 : 0);
  auto input = [&](const std::vector<size_t>& rows, const std::vector<float>& y_of) {
    FitInput in;
    for (size_t j : rows) {
      features_->Append(h[j].point, in.x);
      if (with_sources) in.x.push_back(0.f);
      in.y.push_back(y_of[j]);
    }
    if (with_sources) {
      in.weights.assign(rows.size(), 1.f);
      prior_.AppendRows(options_.source_weight, agreement, in.x, in.y, in.weights);
    }
    in.seed = rng()();
    return in;
  };
  std::vector<size_t> all(h.size());
  std::iota(all.begin(), all.end(), 0);
  const FitInput mean_input = input(all, targets);
  // The Thompson sample: rank targets (a few very slow results cannot dominate it) on a
  // bootstrap resample, so that its optimism varies where data is scarce.
  std::vector<size_t> resample = all;
  if (options_.bootstrap) {
    std::uniform_int_distribution<size_t> draw(0, h.size() - 1);
    for (size_t& j : resample) j = draw(rng());
  }
  const FitInput sample_input = input(resample, RankTargets(h));
  // The two fits share nothing (each its own booster, rows and seed; XGBoost's errors are
  // per thread), so they run at once (InParallel), with the models of one after the other.
  absl::Status mean_fitted, sample_fitted;
  InParallel(
      [&] {
        mean_fitted =
            model_->Fit(mean_input.x, width, mean_input.y, mean_input.seed, mean_input.weights);
      },
      [&] {
        sample_fitted = sample_model_->Fit(sample_input.x, width, sample_input.y, sample_input.seed,
                                           sample_input.weights);
      });
  KTUNE_RETURN_IF_ERROR(mean_fitted);
  return sample_fitted;
}

std::vector<float> PpoStrategy::FeaturesOf(const std::vector<int64_t>& indices) const {
  const bool with_sources = !prior_.empty();
  std::vector<float> x;
  x.reserve(indices.size() * (features_->width() + 1));
  for (int64_t i : indices) {
    features_->Append(space().PointAt(i), x);
    if (with_sources) x.push_back(0.f);  // predictions are for the target
  }
  return x;
}

int PpoStrategy::ModelWidth() const { return features_->width() + (prior_.empty() ? 0 : 1); }

absl::Status PpoStrategy::BothScores(const std::vector<float>& x, std::vector<float>& mean,
                                     std::vector<float>& sample) const {
  absl::StatusOr<std::vector<float>> m, t;
  InParallel([&] { m = model_->Predict(x, ModelWidth()); },
             [&] { t = sample_model_->Predict(x, ModelWidth()); });
  KTUNE_RETURN_IF_ERROR(m.status());
  KTUNE_RETURN_IF_ERROR(t.status());
  mean = *std::move(m);
  sample = *std::move(t);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Candidate>> PpoStrategy::BuildPool(
    std::vector<float>& reference, std::vector<float>& sample_reference) {
  absl::flat_hash_map<int64_t, size_t> at;  // space index -> position in the pool
  std::vector<Candidate> pool;
  auto add = [&](int64_t index, float score, float sample_score, CandidateArm arm) {
    auto [it, fresh] = at.emplace(index, pool.size());
    if (fresh) pool.push_back({index, score, sample_score, 0});
    pool[it->second].arms |= arm;
  };
  // The k best scores; ties (common with trees, whose leaves give many points one score) break
  // by a random key, as the `model` baseline's do, so that they do not favour low indices.
  auto best_of = [this](const std::vector<float>& scores, size_t k) {
    std::vector<size_t> order(scores.size());
    std::iota(order.begin(), order.end(), 0);
    std::vector<uint32_t> tie(order.size());
    for (auto& t : tie) t = static_cast<uint32_t>(rng()());
    k = std::min(k, order.size());
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](size_t a, size_t b) {
      return scores[a] != scores[b] ? scores[a] > scores[b] : tie[a] < tie[b];
    });
    order.resize(k);
    return order;
  };
  // Both models' scores of `indices`.
  auto score = [this](const std::vector<int64_t>& indices, std::vector<float>& mean,
                      std::vector<float>& sample) {
    return BothScores(FeaturesOf(indices), mean, sample);
  };
  // The model and sample arms: each model's best unvisited points of the whole space (or of a
  // uniform sample), in the ablation's pool or after a stall.
  const bool whole_space = WholeSpacePoolNow();
  if (whole_space) {
    std::vector<int64_t> indices;
    std::vector<float> scores, sample_scores;
    const int64_t size = space().size();
    if (size <= options_.global_candidates) {
      indices.resize(size);
      std::iota(indices.begin(), indices.end(), 0);
      if (prior_.empty()) {
        KTUNE_RETURN_IF_ERROR(BothScores(features_->AllPoints(), scores, sample_scores));
      } else {
        KTUNE_RETURN_IF_ERROR(score(indices, scores, sample_scores));  // with the domain feature
      }
    } else {
      std::uniform_int_distribution<int64_t> pick(0, size - 1);
      for (int64_t d = 0; d < options_.global_candidates; ++d) indices.push_back(pick(rng()));
      KTUNE_RETURN_IF_ERROR(score(indices, scores, sample_scores));
    }
    reference = scores;
    sample_reference = sample_scores;
    std::vector<int64_t> open;
    std::vector<float> open_scores, open_sample_scores;
    for (size_t i = 0; i < indices.size(); ++i) {
      if (!Visited(indices[i])) {
        open.push_back(indices[i]);
        open_scores.push_back(scores[i]);
        open_sample_scores.push_back(sample_scores[i]);
      }
    }
    for (size_t i : best_of(open_scores, options_.model_arm)) {
      add(open[i], open_scores[i], open_sample_scores[i], kModelArm);
    }
    for (size_t i : best_of(open_sample_scores, options_.sample_arm)) {
      add(open[i], open_scores[i], open_sample_scores[i], kSampleArm);
    }
  }
  // The local arm: the fastest result's unvisited neighbourhood, as the (mean) model ranks it.
  std::vector<int64_t> near =
      UnvisitedNeighbours(space().IndexOf(best()->point), options_.pair_moves);
  std::vector<float> near_scores, near_sample_scores;
  KTUNE_RETURN_IF_ERROR(score(near, near_scores, near_sample_scores));
  for (size_t i : best_of(near_scores, options_.local_arm)) {
    add(near[i], near_scores[i], near_sample_scores[i], kLocalArm);
  }
  // The random arm (larger without the whole-space arms, so that the policy still has a choice).
  const int draws = whole_space ? options_.random_arm : options_.random_arm_alone;
  std::vector<int64_t> random;
  absl::flat_hash_set<int64_t> drawn;
  for (int d = 0; d < 4 * draws && static_cast<int>(random.size()) < draws; ++d) {
    const int64_t i = space().IndexOf(RandomUnvisited());
    if (drawn.insert(i).second) random.push_back(i);
  }
  std::vector<float> random_scores, random_sample_scores;
  KTUNE_RETURN_IF_ERROR(score(random, random_scores, random_sample_scores));
  for (size_t i = 0; i < random.size(); ++i) {
    add(random[i], random_scores[i], random_sample_scores[i], kRandomArm);
  }
  if (!whole_space) {
    reference = near_scores;
    reference.insert(reference.end(), random_scores.begin(), random_scores.end());
    sample_reference = near_sample_scores;
    sample_reference.insert(sample_reference.end(), random_sample_scores.begin(),
                            random_sample_scores.end());
  }
  return pool;
}

absl::StatusOr<std::vector<Point>> PpoStrategy::ProposeFromPool(int n) {
  KTUNE_RETURN_IF_ERROR(FitModels());
  std::vector<float> reference, sample_reference;
  KTUNE_ASSIGN_OR_RETURN(std::vector<Candidate> pool, BuildPool(reference, sample_reference));
  if (pool.empty()) return std::vector<Point>();
  std::vector<int> picks;
  if (options_.use_policy) {
    const int64_t incumbent = space().IndexOf(best()->point);
    KTUNE_ASSIGN_OR_RETURN(std::vector<float> incumbent_score,
                           model_->Predict(FeaturesOf({incumbent}), ModelWidth()));
    std::vector<Point> measured;
    for (const Observation& o : history()) measured.push_back(o.point);
    Decision d;
    d.pool = static_cast<int>(pool.size());
    d.features = CandidateFeatures(space(), pool, reference, sample_reference, incumbent_score[0],
                                   best()->point, measured, CurrentState());
    KTUNE_RETURN_IF_ERROR(policy().Pick(d, n, rng()));
    picks = d.picks;
    pending_picks_.clear();
    for (int i : picks) pending_picks_.push_back(pool[i].index);
    episode_.push_back(std::move(d));
  } else {
    picks = RulePicks(pool, n);
  }
  awaiting_reward_ = true;
  best_before_ms_ = BestTime();
  std::vector<Point> out;
  for (int i : picks) out.push_back(space().PointAt(pool[i].index));
  return out;
}

std::vector<int> PpoStrategy::RulePicks(const std::vector<Candidate>& pool, int k) {
  std::vector<int> out;
  std::vector<bool> taken(pool.size(), false);
  auto take = [&](uint8_t arm, int count) {
    std::vector<int> members;
    for (size_t i = 0; i < pool.size(); ++i) {
      if ((pool[i].arms & arm) && !taken[i]) members.push_back(static_cast<int>(i));
    }
    std::stable_sort(members.begin(), members.end(),
                     [&](int a, int b) { return pool[a].score > pool[b].score; });
    for (int i : members) {
      if (count-- <= 0 || static_cast<int>(out.size()) >= k) break;
      taken[i] = true;
      out.push_back(i);
    }
  };
  const int local = static_cast<int>(std::lround(options_.rule_local_share * k));
  const int random = static_cast<int>(std::lround(options_.rule_random_share * k));
  take(kLocalArm, local);
  take(kRandomArm, random);
  take(WholeSpacePoolNow() ? kModelArm : kRandomArm, k);
  take(kModelArm | kLocalArm | kRandomArm | kSampleArm, k);  // any shortfall
  return out;
}

absl::Status PpoStrategy::Observe(const std::vector<Observation>& results) {
  const double best_now = BestTime();
  const double before = awaiting_reward_ ? best_before_ms_ : INFINITY;
  // The batch's gain over the best before it (0 for the first results, which have no reference).
  const double gain =
      std::isfinite(before) && std::isfinite(best_now) ? std::log(before / best_now) : 0;
  last_gain_ = gain;
  stale_batches_ = gain > 0 ? 0 : stale_batches_ + 1;
  if (!awaiting_reward_) return absl::OkStatus();
  awaiting_reward_ = false;
  if (!options_.use_policy || episode_.empty()) return absl::OkStatus();
  // Each pick's reward: how much faster than the best before the batch it was (0 if not, or if
  // it failed), scaled and capped.
  Decision& d = episode_.back();
  absl::flat_hash_map<int64_t, double> time_of;
  for (const Observation& o : results) {
    if (o.ok) time_of[space().IndexOf(o.point)] = o.time_ms;
  }
  for (size_t j = 0; j < d.picks.size(); ++j) {
    auto it = time_of.find(pending_picks_[j]);
    if (it == time_of.end() || !std::isfinite(before)) continue;
    d.pick_reward[j] = static_cast<float>(
        std::min(5.0, options_.reward_scale * std::max(0.0, std::log(before / it->second))));
  }
  if (LearnsOnline() && AtUpdateInterval()) {
    KTUNE_RETURN_IF_ERROR(UpdateOnline());
  }
  return absl::OkStatus();
}

bool PpoStrategy::LearnsOnline() const {
  return !shared_policy_ && policy_ && options_.use_policy && options_.learn_online;
}

absl::Status PpoStrategy::UpdateOnline() {
  const size_t window =
      std::min(episode_.size(), static_cast<size_t>(std::max(1, options_.update_window)));
  return policy_->Update({Episode(episode_.end() - window, episode_.end())}, rng());
}

bool PpoStrategy::AtUpdateInterval() const {
  return episode_.size() % std::max(1, options_.update_every) == 0;
}

void PpoStrategy::PostTuning() {
  if (!LearnsOnline() || AtUpdateInterval()) return;  // nothing learns, or it just updated
  // An update that fails leaves the policy as it was; the run's results stand either way.
  UpdateOnline().IgnoreError();
}

std::vector<int64_t> PpoStrategy::UnvisitedNeighbours(int64_t index, int64_t max_pairs) {
  std::vector<int64_t> near;
  absl::flat_hash_set<int64_t> seen;
  const Point p = space().PointAt(index);
  for (auto kind : {Neighbourhood::kAdjacent, Neighbourhood::kHamming}) {
    for (const Point& q : space().Neighbours(p, kind)) {
      const int64_t i = space().IndexOf(q);
      if (i >= 0 && !Visited(i) && seen.insert(i).second) near.push_back(i);
    }
  }
  if (max_pairs <= 0) return near;
  for (const Point& q : space().TwoParameterChanges(p, max_pairs, rng())) {
    const int64_t i = space().IndexOf(q);
    if (!Visited(i) && seen.insert(i).second) near.push_back(i);
  }
  return near;
}

std::vector<Point> PpoStrategy::ProposeLocal(int n) {
  // Fastest results first; each one's unvisited neighbours in random order (ranking them would
  // cost a prediction). The base fills any shortfall at random.
  const auto& h = history();
  std::vector<size_t> order;
  for (size_t i = 0; i < h.size(); ++i) {
    if (h[i].ok) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return h[a].time_ms < h[b].time_ms; });
  std::vector<Point> out;
  for (size_t r = 0; r < order.size() && r < 8; ++r) {
    std::vector<int64_t> near = UnvisitedNeighbours(space().IndexOf(h[order[r]].point), 0);
    std::shuffle(near.begin(), near.end(), rng());
    for (int64_t i : near) {
      if (static_cast<int>(out.size()) >= n) return out;
      out.push_back(space().PointAt(i));
    }
  }
  return out;
}

absl::StatusOr<std::vector<Point>> PpoStrategy::ProposeFromPrior(int n) {
  // The sources' own best points and the prior model's best of the whole space (or a sample).
  std::vector<int64_t> candidates;
  for (int64_t i : prior_.elites()) {
    if (!Visited(i)) candidates.push_back(i);
  }
  const int64_t size = space().size();
  std::uniform_int_distribution<int64_t> pick(0, size - 1);
  for (int64_t d = 0; d < std::min(size, options_.global_candidates); ++d) {
    const int64_t i = size <= options_.global_candidates ? d : pick(rng());
    if (!Visited(i)) candidates.push_back(i);
  }
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  KTUNE_ASSIGN_OR_RETURN(std::vector<float> scores, prior_.PriorScores(candidates));
  std::vector<size_t> order(candidates.size());
  std::iota(order.begin(), order.end(), 0);
  const size_t k = std::min(order.size(), static_cast<size_t>(n));
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  std::vector<Point> out;
  for (size_t r = 0; r < k; ++r) out.push_back(space().PointAt(candidates[order[r]]));
  return out;
}

}  // namespace ktune
