#include "agent/ppo_strategy.h"

#include <dlfcn.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "agent/cost_model.h"
#include "agent/features.h"
#include "agent/gae.h"
#include "agent/model_based_strategy.h"
#include "common/hash.h"
#include "common/status_macros.h"

namespace ktune {
namespace {

// --- The network ---------------------------------------------------------------------------------

struct ActorCriticImpl : torch::nn::Module {
  ActorCriticImpl(int inputs, int hidden, int actions)
      : l1(register_module("l1", torch::nn::Linear(inputs, hidden))),
        l2(register_module("l2", torch::nn::Linear(hidden, hidden))),
        pi(register_module("pi", torch::nn::Linear(hidden, actions))),
        v(register_module("v", torch::nn::Linear(hidden, 1))) {}

  struct Output {
    torch::Tensor logits;  // [batch, actions], before masking
    torch::Tensor value;   // [batch]
  };

  Output forward(const torch::Tensor& x) {
    torch::Tensor h = torch::tanh(l2(torch::tanh(l1(x))));
    return {pi(h), v(h).squeeze(1)};
  }

  torch::nn::Linear l1, l2, pi, v;
};
TORCH_MODULE(ActorCritic);

constexpr float kIllegal = -1e9f;

// --- Landscapes: what a state is worth -----------------------------------------------------------

// Scores (higher = faster, in -log time units) of valid points, by space index.
class Landscape {
 public:
  virtual ~Landscape() = default;
  virtual absl::StatusOr<std::vector<float>> Scores(const std::vector<int64_t>& indices) = 0;
};

// The cost model's predictions, cached per index.
class ModelLandscape : public Landscape {
 public:
  // `domain_feature`: the model was fitted with one more feature, 0 for the target's rows (and 1
  // for transfer sources' rows); predictions are for the target.
  ModelLandscape(const SearchSpace& space, const SpaceFeatures& features, const XgbCostModel& model,
                 bool domain_feature = false)
      : space_(space), features_(features), model_(model), domain_feature_(domain_feature) {}

  absl::StatusOr<std::vector<float>> Scores(const std::vector<int64_t>& indices) override {
    std::vector<int64_t> missing;
    absl::flat_hash_set<int64_t> pending;  // `missing` as a set: whole-space candidate lists are long
    std::vector<float> x;
    for (int64_t i : indices) {
      if (!cache_.contains(i) && pending.insert(i).second) {
        missing.push_back(i);
        features_.Append(space_.PointAt(i), x);
        if (domain_feature_) x.push_back(0.f);
      }
    }
    if (!missing.empty()) {
      KTUNE_ASSIGN_OR_RETURN(std::vector<float> s,
                             model_.Predict(x, features_.width() + (domain_feature_ ? 1 : 0)));
      for (size_t k = 0; k < missing.size(); ++k) cache_[missing[k]] = s[k];
    }
    std::vector<float> out;
    out.reserve(indices.size());
    for (int64_t i : indices) out.push_back(cache_.at(i));
    return out;
  }

 private:
  const SearchSpace& space_;
  const SpaceFeatures& features_;
  const XgbCostModel& model_;
  const bool domain_feature_;
  absl::flat_hash_map<int64_t, float> cache_;
};

// A recorded landscape (transfer source): -log(time / fastest); failures one below the worst.
class RecordedLandscape : public Landscape {
 public:
  explicit RecordedLandscape(const std::vector<double>& time_ms) {
    double fastest = INFINITY;
    for (double t : time_ms) {
      if (std::isfinite(t) && t > 0) fastest = std::min(fastest, t);
    }
    float worst = 0;
    scores_.resize(time_ms.size(), NAN);
    for (size_t i = 0; i < time_ms.size(); ++i) {
      if (std::isfinite(time_ms[i]) && time_ms[i] > 0) {
        scores_[i] = static_cast<float>(-std::log(time_ms[i] / fastest));
        worst = std::min(worst, scores_[i]);
      }
    }
    for (float& s : scores_) {
      if (std::isnan(s)) s = worst - 1;
    }
  }
  absl::StatusOr<std::vector<float>> Scores(const std::vector<int64_t>& indices) override {
    std::vector<float> out;
    for (int64_t i : indices) out.push_back(scores_[i]);
    return out;
  }
  // Indices of the k best points.
  std::vector<int64_t> Top(size_t k) const {
    std::vector<int64_t> order(scores_.size());
    std::iota(order.begin(), order.end(), 0);
    k = std::min(k, order.size());
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int64_t a, int64_t b) { return scores_[a] > scores_[b]; });
    order.resize(k);
    return order;
  }

 private:
  std::vector<float> scores_;
};

}  // namespace

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

// --- The agent -----------------------------------------------------------------------------------

class PpoStrategy::Impl {
 public:
  Impl(const SearchSpace& space, const PpoOptions& options, std::mt19937_64& rng)
      : space_(space),
        options_(options),
        rng_(rng),
        features_(space),
        width_(static_cast<int>(space.parameters().size())),
        inputs_(features_.width() + 1),
        actions_(2 * width_ + 1),
        net_(inputs_, options.hidden, actions_),
        optimizer_(net_->parameters(), torch::optim::AdamOptions(options.learning_rate)) {
    InitialiseWeights();
  }

  const SearchSpace& space() const { return space_; }
  SpaceFeatures& features() { return features_; }

  absl::StatusOr<std::string> Save() const {
    try {
      torch::serialize::OutputArchive archive;
      net_->save(archive);
      std::ostringstream out;
      archive.save_to(out);
      return out.str();
    } catch (const c10::Error& e) {
      return absl::InternalError(absl::StrCat("saving the policy: ", e.what_without_backtrace()));
    }
  }

  absl::Status Load(const std::string& blob) {
    try {
      torch::serialize::InputArchive archive;
      std::istringstream in(blob);
      archive.load_from(in);
      net_->load(archive);
      return absl::OkStatus();
    } catch (const c10::Error& e) {
      return absl::InvalidArgumentError(
          absl::StrCat("the saved policy does not fit this space: ", e.what_without_backtrace()));
    }
  }
  std::vector<std::pair<std::string, double>> metrics() const { return metrics_; }

  // Runs `iterations` PPO iterations on `land`, episodes starting from `starts` (space indices;
  // half the episodes) and from random points (the other half).
  absl::Status Train(Landscape& land, const std::vector<int64_t>& starts, int iterations) {
    try {
      for (int it = 0; it < iterations; ++it) {
        KTUNE_RETURN_IF_ERROR(Iterate(land, starts));
      }
    } catch (const c10::Error& e) {
      return absl::InternalError(absl::StrCat("LibTorch: ", e.what_without_backtrace()));
    }
    return absl::OkStatus();
  }

  // Walks the policy from `starts` (and random points) for `episodes` episodes; returns every
  // state reached after the start, in order of first visit, and the final states.
  absl::StatusOr<std::pair<std::vector<int64_t>, std::vector<int64_t>>> Walk(
      const std::vector<int64_t>& starts, int episodes) {
    try {
      torch::NoGradGuard no_grad;
      std::vector<int64_t> state = StartStates(starts, episodes);
      std::vector<int64_t> reached, finals;
      absl::flat_hash_map<int64_t, bool> seen;
      for (int t = 0; t < options_.horizon; ++t) {
        std::vector<float> mask;
        torch::Tensor obs = Observe(state, t, &mask);
        torch::Tensor logits = net_->forward(obs).logits + MaskTensor(mask, state.size());
        std::vector<int> actions = Sample(logits);
        for (size_t e = 0; e < state.size(); ++e) {
          state[e] = Move(state[e], actions[e]);
          if (seen.emplace(state[e], true).second) reached.push_back(state[e]);
        }
      }
      finals = state;
      return std::make_pair(reached, finals);
    } catch (const c10::Error& e) {
      return absl::InternalError(absl::StrCat("LibTorch: ", e.what_without_backtrace()));
    }
  }

 private:
  void InitialiseWeights() {
    // PyTorch's default Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from our seeded
    // generator rather than LibTorch's global one.
    torch::NoGradGuard no_grad;
    for (auto& p : net_->named_parameters()) {
      torch::Tensor t = p.value();
      int64_t fan_in = t.dim() == 2 ? t.size(1) : 0;
      if (fan_in == 0) {  // bias: fan_in of its layer
        std::string weight = p.key().substr(0, p.key().find('.')) + ".weight";
        fan_in = net_->named_parameters()[weight].size(1);
      }
      double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
      if (p.key().rfind("pi.", 0) == 0) bound *= 0.01;  // near-uniform initial policy
      std::uniform_real_distribution<float> u(-bound, bound);
      std::vector<float> values(t.numel());
      for (float& v : values) v = u(rng_);
      t.copy_(torch::from_blob(values.data(), t.sizes(), torch::kFloat));
    }
  }

  std::vector<int64_t> StartStates(const std::vector<int64_t>& starts, int count) {
    std::vector<int64_t> out;
    std::uniform_int_distribution<int64_t> any(0, space_.size() - 1);
    for (int e = 0; e < count; ++e) {
      if (!starts.empty() && e % 2 == 0) {
        out.push_back(starts[std::uniform_int_distribution<size_t>(0, starts.size() - 1)(rng_)]);
      } else {
        out.push_back(any(rng_));
      }
    }
    return out;
  }

  // The state reached by `action` from `state` (the same state for "stay").
  int64_t Move(int64_t state, int action) const {
    if (action >= 2 * width_) return state;
    Point p = space_.PointAt(state);
    int k = action / 2;
    int v = static_cast<int>(p[k]) + (action % 2 ? 1 : -1);
    if (v < 0 || v >= static_cast<int>(space_.parameters()[k].values.size())) return state;
    p[k] = static_cast<uint16_t>(v);
    int64_t next = space_.IndexOf(p);
    return next >= 0 ? next : state;
  }

  // Observations of `states` at step t, and their legal-action masks (1 legal, 0 not).
  torch::Tensor Observe(const std::vector<int64_t>& states, int t, std::vector<float>* mask) {
    std::vector<float> x;
    x.reserve(states.size() * inputs_);
    mask->assign(states.size() * actions_, 0.f);
    for (size_t e = 0; e < states.size(); ++e) {
      features_.Append(space_.PointAt(states[e]), x);
      x.push_back(static_cast<float>(t) / options_.horizon);
      for (int a = 0; a < actions_; ++a) {
        (*mask)[e * actions_ + a] =
            (a == 2 * width_ || Move(states[e], a) != states[e]) ? 1.f : 0.f;
      }
    }
    return torch::from_blob(x.data(), {static_cast<int64_t>(states.size()), inputs_}, torch::kFloat)
        .clone();
  }

  torch::Tensor MaskTensor(const std::vector<float>& mask, size_t rows) {
    torch::Tensor m = torch::from_blob(const_cast<float*>(mask.data()),
                                       {static_cast<int64_t>(rows), actions_}, torch::kFloat);
    return (1 - m) * kIllegal;
  }

  // One action per row of `logits`, drawn from the softmax with our generator.
  std::vector<int> Sample(const torch::Tensor& logits) {
    torch::Tensor probs = torch::softmax(logits, 1).contiguous();
    auto acc = probs.accessor<float, 2>();
    std::vector<int> out(probs.size(0));
    std::uniform_real_distribution<float> u(0, 1);
    for (int64_t e = 0; e < probs.size(0); ++e) {
      float r = u(rng_), sum = 0;
      int a = actions_ - 1;
      for (int k = 0; k < actions_; ++k) {
        sum += acc[e][k];
        if (r < sum) {
          a = k;
          break;
        }
      }
      out[e] = a;
    }
    return out;
  }

  // One PPO iteration: a rollout of envs x horizon steps on `land`, GAE, and the update.
  absl::Status Iterate(Landscape& land, const std::vector<int64_t>& starts) {
    const int T = options_.horizon, E = options_.envs;
    std::vector<torch::Tensor> obs(T), masks(T), actions(T), logps(T), values(T);
    std::vector<std::vector<float>> rewards(T, std::vector<float>(E));
    std::vector<int64_t> state = StartStates(starts, E);
    {
      torch::NoGradGuard no_grad;
      KTUNE_ASSIGN_OR_RETURN(std::vector<float> score, land.Scores(state));
      for (int t = 0; t < T; ++t) {
        std::vector<float> mask;
        obs[t] = Observe(state, t, &mask);
        masks[t] = MaskTensor(mask, E).clone();
        auto out = net_->forward(obs[t]);
        torch::Tensor logits = out.logits + masks[t];
        std::vector<int> a = Sample(logits);
        actions[t] = torch::tensor(std::vector<int64_t>(a.begin(), a.end()), torch::kLong);
        logps[t] = torch::log_softmax(logits, 1).gather(1, actions[t].unsqueeze(1)).squeeze(1);
        values[t] = out.value;
        for (int e = 0; e < E; ++e) state[e] = Move(state[e], a[e]);
        KTUNE_ASSIGN_OR_RETURN(std::vector<float> next, land.Scores(state));
        for (int e = 0; e < E; ++e) rewards[t][e] = next[e] - score[e];
        score = std::move(next);
      }
    }
    // GAE, backwards over time; every episode ends at the horizon.
    torch::Tensor value = torch::stack(values);  // [T, E]
    torch::Tensor value_flat = value.reshape({-1}).contiguous();
    std::vector<float> flat_rewards,
        flat_values(value_flat.data_ptr<float>(), value_flat.data_ptr<float>() + T * E);
    for (const auto& r : rewards) flat_rewards.insert(flat_rewards.end(), r.begin(), r.end());
    GaeResult gae =
        ComputeGae(flat_rewards, flat_values, T, E, options_.gamma, options_.gae_lambda);
    return Update(torch::cat(obs), torch::cat(masks), torch::cat(actions), torch::cat(logps),
                  value_flat,
                  torch::from_blob(gae.advantages.data(), {T * E}, torch::kFloat).clone(),
                  torch::from_blob(gae.returns.data(), {T * E}, torch::kFloat).clone());
  }

  absl::Status Update(const torch::Tensor& obs, const torch::Tensor& masks,
                      const torch::Tensor& actions, const torch::Tensor& old_logp,
                      const torch::Tensor& old_value, const torch::Tensor& advantages,
                      const torch::Tensor& returns) {
    const int64_t n = obs.size(0);
    const int64_t mb = std::max<int64_t>(1, n / options_.minibatches);
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    double approx_kl = 0, clipfrac = 0, pg = 0, vl = 0, ent = 0;
    int updates = 0;
    for (int epoch = 0; epoch < options_.epochs; ++epoch) {
      std::shuffle(order.begin(), order.end(), rng_);
      for (int64_t start = 0; start < n; start += mb) {
        int64_t end = std::min(n, start + mb);
        torch::Tensor idx = torch::tensor(
            std::vector<int64_t>(order.begin() + start, order.begin() + end), torch::kLong);
        auto out = net_->forward(obs.index_select(0, idx));
        torch::Tensor logp_all = torch::log_softmax(out.logits + masks.index_select(0, idx), 1);
        torch::Tensor logp =
            logp_all.gather(1, actions.index_select(0, idx).unsqueeze(1)).squeeze(1);
        torch::Tensor legal = masks.index_select(0, idx) == 0;
        torch::Tensor entropy = -(logp_all.exp() * logp_all.masked_fill(~legal, 0)).sum(1).mean();
        torch::Tensor log_ratio = logp - old_logp.index_select(0, idx);
        torch::Tensor ratio = log_ratio.exp();
        torch::Tensor adv = advantages.index_select(0, idx);
        adv = (adv - adv.mean()) / (adv.std(/*unbiased=*/false) + 1e-8);
        torch::Tensor pg_loss =
            torch::max(-adv * ratio,
                       -adv * torch::clamp(ratio, 1 - options_.clip, 1 + options_.clip))
                .mean();
        torch::Tensor ret = returns.index_select(0, idx);
        torch::Tensor old_v = old_value.index_select(0, idx);
        torch::Tensor v_clipped =
            old_v + torch::clamp(out.value - old_v, -options_.clip, options_.clip);
        torch::Tensor v_loss =
            0.5 * torch::max((out.value - ret).pow(2), (v_clipped - ret).pow(2)).mean();
        torch::Tensor loss =
            pg_loss - options_.entropy_coef * entropy + options_.value_coef * v_loss;
        optimizer_.zero_grad();
        loss.backward();
        torch::nn::utils::clip_grad_norm_(net_->parameters(), options_.max_grad_norm);
        optimizer_.step();
        {
          torch::NoGradGuard no_grad;
          approx_kl = ((ratio - 1) - log_ratio).mean().item<double>();
          clipfrac = ((ratio - 1).abs() > options_.clip).to(torch::kFloat).mean().item<double>();
        }
        pg = pg_loss.item<double>();
        vl = v_loss.item<double>();
        ent = entropy.item<double>();
        ++updates;
      }
      if (approx_kl > options_.target_kl) break;
    }
    metrics_ = {{"losses/policy_loss", pg},    {"losses/value_loss", vl},
                {"losses/entropy", ent},       {"losses/approx_kl", approx_kl},
                {"losses/clipfrac", clipfrac}, {"charts/updates", updates}};
    return absl::OkStatus();
  }

  const SearchSpace& space_;
  const PpoOptions& options_;
  std::mt19937_64& rng_;
  SpaceFeatures features_;
  const int width_, inputs_, actions_;
  ActorCritic net_;
  torch::optim::Adam optimizer_;
  std::vector<std::pair<std::string, double>> metrics_;
};

// --- The strategy --------------------------------------------------------------------------------

PpoStrategy::PpoStrategy(PpoOptions options) : options_(options) {}
PpoStrategy::~PpoStrategy() = default;

absl::Status PpoStrategy::AddTransferSource(TransferSource source) {
  if (source.space == nullptr || source.time_ms == nullptr ||
      static_cast<int64_t>(source.time_ms->size()) != source.space->size()) {
    return absl::InvalidArgumentError("a transfer source needs a space and one time per point");
  }
  sources_.push_back(source);
  return absl::OkStatus();
}

absl::StatusOr<std::string> PpoStrategy::SavePolicy() const {
  if (!impl_) return absl::FailedPreconditionError("SavePolicy before PreTuning");
  return impl_->Save();
}

absl::StatusOr<std::string> PpoStrategy::SaveCheckpoint() const {
  if (impl_ && !transferred_ && learning_steps_ == 0) return std::string();
  return SavePolicy();
}

std::string PpoStrategy::PolicyKey(const std::string& kernel, const SearchSpace& space) {
  std::string signature;
  for (const Parameter& p : space.parameters()) {
    absl::StrAppend(&signature, p.name, ":", p.values.size(), ";");
  }
  return absl::StrCat("ppo/", kernel, "/", StableHashHex(signature));
}

std::vector<std::pair<std::string, double>> PpoStrategy::LastMetrics() const {
  return impl_ ? impl_->metrics() : std::vector<std::pair<std::string, double>>{};
}

// LibTorch's CPU matrix products go through the system BLAS. OpenBLAS's own thread pool
// spin-yields between our tiny products and doubled the process's CPU time (perf: a third of it
// in sched_yield), so it is limited to one thread, if it is the BLAS loaded.
void UseOneBlasThread() {
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set(1);
  }
}

absl::Status PpoStrategy::Start() {
  at::set_num_threads(1);
  UseOneBlasThread();
  XgbCostModel::Options model_options;
  model_options.rounds = options_.model_rounds;
  model_ = std::make_unique<XgbCostModel>(model_options);
  model_fitted_ = false;
  learning_steps_ = 0;
  arm_of_.clear();
  // The first region holds the prior results (the database's records of the task) too.
  region_start_ = 0;
  region_best_ms_ = INFINITY;
  for (const Observation& o : history()) {
    if (o.ok) region_best_ms_ = std::min(region_best_ms_, o.time_ms);
  }
  stale_batches_ = 0;
  restarts_ = 0;
  std::fill(std::begin(wins_), std::end(wins_), 0.0);
  std::fill(std::begin(tries_), std::end(tries_), 0.0);
  learn_cost_ms_ = 20;
  walk_cost_ms_ = 2;
  impl_ = std::make_unique<Impl>(space(), options_, rng());
  if (!saved_policy_.empty()) {
    KTUNE_RETURN_IF_ERROR(impl_->Load(saved_policy_));
    transferred_ = true;
  }
  // Learn on the transfer sources' true landscapes, through the target's own space: a source
  // contributes only if it has the same parameters and value lists, so its points map 1:1.
  for (const TransferSource& source : sources_) {
    const auto& a = source.space->parameters();
    const auto& b = space().parameters();
    bool same = a.size() == b.size();
    for (size_t k = 0; same && k < a.size(); ++k) {
      same = a[k].name == b[k].name && a[k].values.size() == b[k].values.size();
    }
    if (!same) continue;
    // Map source times onto the target's valid points (recorded spaces differ in which
    // configurations failed or exist); points the source lacks count as failures.
    std::vector<double> times(space().size(), NAN);
    for (int64_t i = 0; i < source.space->size(); ++i) {
      int64_t j = space().IndexOf(source.space->PointAt(i));
      if (j >= 0) times[j] = (*source.time_ms)[i];
    }
    RecordedLandscape land(times);
    std::vector<int64_t> top = land.Top(options_.elite_starts);
    KTUNE_RETURN_IF_ERROR(impl_->Train(land, top, options_.transfer_iterations));
    transferred_ = true;
    source_elites_.insert(source_elites_.end(), top.begin(), top.end());
    // The source's measurements become rows of the cost model (scores within the source): its
    // best configurations and a uniform sample of the rest, at most source_rows in all, so that
    // fitting stays fast.
    std::vector<int64_t> rows = land.Top(static_cast<size_t>(options_.source_rows / 4));
    absl::flat_hash_set<int64_t> chosen(rows.begin(), rows.end());
    std::vector<int64_t> rest;
    for (int64_t j = 0; j < space().size(); ++j) {
      if (!std::isnan(times[j]) && !chosen.contains(j)) rest.push_back(j);
    }
    std::shuffle(rest.begin(), rest.end(), rng());
    for (size_t r = 0; r < rest.size() && static_cast<int>(rows.size()) < options_.source_rows;
         ++r) {
      rows.push_back(rest[r]);
    }
    KTUNE_ASSIGN_OR_RETURN(std::vector<float> scores, land.Scores(rows));
    for (size_t r = 0; r < rows.size(); ++r) {
      impl_->features().Append(space().PointAt(rows[r]), source_x_);
      source_y_.push_back(scores[r]);
    }
  }
  if (!source_y_.empty()) {
    // The prior: what the sources agree is fast, before the target has results.
    KTUNE_RETURN_IF_ERROR(prior_.Fit(source_x_, impl_->features().width(), source_y_, rng()()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Point>> PpoStrategy::Generate(int n) {
  const auto& h = history();
  const int exploit = n - static_cast<int>(std::lround(options_.epsilon * n));
  bool any_ok = std::any_of(h.begin(), h.end(), [](const Observation& o) { return o.ok; });
  if (static_cast<int>(h.size()) < options_.warmup || !any_ok) {
    if (!transferred_) return std::vector<Point>();  // random warm-up, filled by the base
    if (source_y_.empty()) {
      // A saved policy and nothing else: measure where its walks end.
      KTUNE_ASSIGN_OR_RETURN(auto walked, impl_->Walk({}, options_.proposal_episodes));
      std::vector<Point> out;
      for (int64_t i : walked.second) {
        if (static_cast<int>(out.size()) >= exploit) break;
        if (!Visited(i)) out.push_back(space().PointAt(i));
      }
      return out;
    }
    // Transfer sources: walk from their best configurations; rank what is reached by the prior.
    ModelLandscape prior(space(), impl_->features(), prior_);
    KTUNE_ASSIGN_OR_RETURN(auto walked, impl_->Walk(source_elites_, options_.proposal_episodes));
    std::vector<int64_t> candidates;
    for (int64_t i : source_elites_) {
      if (!Visited(i)) candidates.push_back(i);
    }
    for (int64_t i : walked.first) {
      if (!Visited(i)) candidates.push_back(i);
    }
    std::sort(candidates.begin(), candidates.end());
    candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
    KTUNE_ASSIGN_OR_RETURN(std::vector<float> prior_scores, prior.Scores(candidates));
    return Diverse(candidates, prior_scores, exploit);
  }
  // How much of the agent's work this proposal can afford (allowance_ms(): +infinity unless the
  // driver limits the agent's share of the run): a learning step (refit the cost model, train
  // the policy, then walk it), a walk of the current policy on the current model, or, cheapest,
  // the best points' neighbourhoods.
  const double allowance = allowance_ms();
  const auto start = std::chrono::steady_clock::now();
  auto elapsed_ms = [&] {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
        .count();
  };
  if (allowance >= learn_cost_ms_) {
    KTUNE_RETURN_IF_ERROR(Learn());
    KTUNE_ASSIGN_OR_RETURN(std::vector<Point> out, ProposeFromPolicy(n, exploit));
    learn_cost_ms_ = elapsed_ms();
    ++learning_steps_;
    return out;
  }
  if (model_fitted_ && allowance >= walk_cost_ms_) {
    KTUNE_ASSIGN_OR_RETURN(std::vector<Point> out, ProposeFromPolicy(n, exploit));
    walk_cost_ms_ = elapsed_ms();
    return out;
  }
  return ProposeLocal(exploit);
}

std::vector<int64_t> PpoStrategy::Elites() const {
  const auto& h = history();
  const size_t from = std::min(h.size(), region_start_);
  std::vector<size_t> order(h.size() - from);
  std::iota(order.begin(), order.end(), from);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (h[a].ok != h[b].ok) return h[a].ok;
    return h[a].ok && h[a].time_ms < h[b].time_ms;
  });
  std::vector<int64_t> elite;
  for (size_t i = 0; i < order.size() && static_cast<int>(elite.size()) < options_.elite_starts;
       ++i) {
    if (h[order[i]].ok) elite.push_back(space().IndexOf(h[order[i]].point));
  }
  return elite;
}

absl::Status PpoStrategy::Learn() {
  // Fit the cost model on every result. Thompson sampling by bootstrap (optional): each batch
  // fits the model on a resample of the results, so its optimism varies where data is scarce
  // and the batches explore basins a single fit would write off.
  const auto& h = history();
  std::vector<float> targets = options_.rank_targets ? RankTargets(h) : ScoreTargets(h), x, y;
  std::uniform_int_distribution<size_t> draw(0, h.size() - 1);
  const bool with_sources = !source_y_.empty();
  KTUNE_ASSIGN_OR_RETURN(const double agreement, SourceAgreement());
  std::vector<float> weights;
  for (size_t i = 0; i < h.size(); ++i) {
    size_t j = options_.bootstrap ? draw(rng()) : i;
    impl_->features().Append(h[j].point, x);
    if (with_sources) x.push_back(0.f);
    y.push_back(targets[j]);
  }
  if (with_sources) {
    // Source rows, marked by the domain feature, weigh options_.source_weight in all, scaled by
    // how well the sources' ranking agrees with the target's results: a prior that the
    // target's own results outweigh as they accumulate, and drop when they contradict it.
    weights.assign(h.size(), 1.f);
    const int w = impl_->features().width();
    const float each = static_cast<float>(options_.source_weight * agreement / source_y_.size());
    for (size_t r = 0; r < source_y_.size(); ++r) {
      x.insert(x.end(), source_x_.begin() + r * w, source_x_.begin() + (r + 1) * w);
      x.push_back(1.f);
      y.push_back(options_.rank_targets ? 0.f : source_y_[r]);
      weights.push_back(each);
    }
    if (options_.rank_targets) {
      // Sources' rows as ranks too: 1 fastest .. 0 slowest within all source rows.
      std::vector<size_t> order(source_y_.size());
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return source_y_[a] > source_y_[b]; });
      const float n = static_cast<float>(std::max<size_t>(1, order.size() - 1));
      for (size_t r = 0; r < order.size(); ++r) y[h.size() + order[r]] = 1.f - r / n;
    }
  }
  KTUNE_RETURN_IF_ERROR(
      model_->Fit(x, impl_->features().width() + (with_sources ? 1 : 0), y, rng()(), weights));
  model_fitted_ = true;
  // Train the policy on the model's landscape, episodes starting from the fastest results.
  ModelLandscape land(space(), impl_->features(), *model_, with_sources);
  return impl_->Train(land, Elites(), options_.iterations_per_batch);
}

absl::StatusOr<double> PpoStrategy::SourceAgreement() {
  const auto& h = history();
  std::vector<float> x;
  std::vector<double> measured;
  for (const Observation& o : h) {
    if (!o.ok) continue;
    impl_->features().Append(o.point, x);
    measured.push_back(-o.time_ms);
  }
  if (source_y_.empty() || measured.size() < 8) return 1.0;
  KTUNE_ASSIGN_OR_RETURN(std::vector<float> predicted,
                         prior_.Predict(x, impl_->features().width()));
  // Spearman's rank correlation (ties broken by order: enough for a weight).
  auto ranks = [](const auto& v) {
    std::vector<size_t> order(v.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
    std::vector<double> r(v.size());
    for (size_t k = 0; k < order.size(); ++k) r[order[k]] = static_cast<double>(k);
    return r;
  };
  std::vector<double> a = ranks(predicted), b = ranks(measured);
  const double n = static_cast<double>(a.size());
  double d2 = 0;
  for (size_t k = 0; k < a.size(); ++k) d2 += (a[k] - b[k]) * (a[k] - b[k]);
  const double rho = 1 - 6 * d2 / (n * (n * n - 1));
  return std::max(0.0, rho);
}

absl::StatusOr<std::vector<Point>> PpoStrategy::ProposeFromPolicy(int n, int exploit) {
  ModelLandscape land(space(), impl_->features(), *model_, !source_y_.empty());
  std::vector<int64_t> elite = Elites();
  KTUNE_ASSIGN_OR_RETURN(auto walked, impl_->Walk(elite, options_.proposal_episodes));
  std::vector<int64_t> candidates;
  for (int64_t i : walked.first) {
    if (!Visited(i)) candidates.push_back(i);
  }
  // The model's view of the whole space as well: walks of a few steps from the elites cannot
  // reach a basin far from them, which the model may already rank high.
  AppendGlobalCandidates(candidates);
  KTUNE_ASSIGN_OR_RETURN(std::vector<float> scores, land.Scores(candidates));
  // A share of the batch from the best point's neighbourhood, as the model ranks it (a trust
  // region: needle-shaped optima are found by local steps more often than by the model alone),
  // in a share the two sources' records decide. The neighbourhood includes two-parameter changes:
  // an optimum behind a ridge, where each single step towards it is slower, is one move away.
  const int local = LocalCount(exploit);
  std::vector<Point> out;
  absl::flat_hash_set<int64_t> taken;
  if (local > 0 && !elite.empty()) {
    std::vector<int64_t> near = UnvisitedNeighbours(elite.front(), options_.pair_moves);
    KTUNE_ASSIGN_OR_RETURN(std::vector<float> near_scores, land.Scores(near));
    std::vector<size_t> order(near.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return near_scores[a] > near_scores[b]; });
    for (size_t r = 0; r < order.size() && static_cast<int>(out.size()) < local; ++r) {
      out.push_back(space().PointAt(near[order[r]]));
      taken.insert(near[order[r]]);
      arm_of_[near[order[r]]] = kLocalArm;
    }
  }
  std::vector<int64_t> rest;
  std::vector<float> rest_scores;
  for (size_t c = 0; c < candidates.size(); ++c) {
    if (!taken.contains(candidates[c])) {
      rest.push_back(candidates[c]);
      rest_scores.push_back(scores[c]);
    }
  }
  std::vector<Point> more = Diverse(rest, rest_scores, exploit - static_cast<int>(out.size()));
  for (const Point& p : more) arm_of_[space().IndexOf(p)] = kPolicyArm;
  out.insert(out.end(), more.begin(), more.end());
  return out;
}

void PpoStrategy::AppendGlobalCandidates(std::vector<int64_t>& candidates) {
  if (options_.global_candidates <= 0) return;
  absl::flat_hash_set<int64_t> in(candidates.begin(), candidates.end());
  const int64_t size = space().size();
  if (size <= options_.global_candidates) {
    for (int64_t i = 0; i < size; ++i) {
      if (!Visited(i) && in.insert(i).second) candidates.push_back(i);
    }
    return;
  }
  std::uniform_int_distribution<int64_t> pick(0, size - 1);
  for (int64_t d = 0; d < options_.global_candidates; ++d) {
    const int64_t i = pick(rng());
    if (!Visited(i) && in.insert(i).second) candidates.push_back(i);
  }
}

int PpoStrategy::LocalCount(int exploit) {
  if (options_.local_share <= 0 || exploit <= 1) return 0;
  // Thompson sampling: each source's rate of proposals that enter the elite, from a Beta
  // posterior with two pseudo-trials at its prior share (options_.local_share for the local one).
  auto sample = [&](Arm arm, double prior) {
    std::gamma_distribution<double> a(wins_[arm] + 2 * prior),
        b(tries_[arm] - wins_[arm] + 2 * (1 - prior));
    double x = a(rng()), y = b(rng());
    return x / std::max(1e-12, x + y);
  };
  const double local = sample(kLocalArm, options_.local_share);
  const double policy = sample(kPolicyArm, 1 - options_.local_share);
  const double share = local / std::max(1e-12, local + policy);
  // At least one of each, so that both keep a record.
  return std::clamp(static_cast<int>(std::lround(share * exploit)), 1, exploit - 1);
}

absl::Status PpoStrategy::Observe(const std::vector<Observation>& results) {
  // Credit each arm with its proposals that entered the elite: faster than the elite_starts-th
  // fastest result before this batch (any ok result while there are fewer).
  const auto& h = history();
  std::vector<double> before;
  for (size_t i = 0; i + results.size() < h.size(); ++i) {
    if (h[i].ok) before.push_back(h[i].time_ms);
  }
  double threshold = INFINITY;
  const size_t k = static_cast<size_t>(std::max(1, options_.elite_starts));
  if (before.size() >= k) {
    std::nth_element(before.begin(), before.begin() + (k - 1), before.end());
    threshold = before[k - 1];
  }
  // Restarts: a batch with no result faster than the region's best by options_.restart_min_gain
  // is stale. After options_.restart_after stale batches in a row (past the warm-up), a new
  // region begins with the next batch: the elites come only from results measured from then on.
  bool improved = false;
  for (const Observation& o : results) {
    if (o.ok && o.time_ms < region_best_ms_) {
      improved |= o.time_ms < region_best_ms_ * (1 - options_.restart_min_gain);
      region_best_ms_ = o.time_ms;
    }
  }
  if (options_.restart_after > 0 && static_cast<int>(h.size()) > options_.warmup) {
    stale_batches_ = improved ? 0 : stale_batches_ + 1;
    if (stale_batches_ >= options_.restart_after) {
      region_start_ = h.size();
      region_best_ms_ = INFINITY;
      stale_batches_ = 0;
      ++restarts_;
    }
  }
  for (const Observation& o : results) {
    auto it = arm_of_.find(space().IndexOf(o.point));
    if (it == arm_of_.end()) continue;
    tries_[it->second] += 1;
    if (o.ok && o.time_ms < threshold) wins_[it->second] += 1;
    arm_of_.erase(it);
  }
  return absl::OkStatus();
}

std::vector<int64_t> PpoStrategy::UnvisitedNeighbours(int64_t index, int64_t max_pairs) {
  std::vector<int64_t> near;
  absl::flat_hash_set<int64_t> seen;
  const Point p = space().PointAt(index);
  for (auto kind : {Neighbourhood::kAdjacent, Neighbourhood::kHamming}) {
    for (const Point& q : space().Neighbours(p, kind)) {
      int64_t i = space().IndexOf(q);
      if (i >= 0 && !Visited(i) && seen.insert(i).second) near.push_back(i);
    }
  }
  if (max_pairs <= 0) return near;
  // Two-parameter changes: all of them (hundreds to a few thousand points, which the model ranks
  // in one prediction) or, past max_pairs, that many drawn at random.
  for (const Point& q : space().TwoParameterChanges(p, max_pairs, rng())) {
    int64_t i = space().IndexOf(q);
    if (!Visited(i) && seen.insert(i).second) near.push_back(i);
  }
  return near;
}

absl::StatusOr<std::vector<Point>> PpoStrategy::ProposeLocal(int exploit) {
  // The cheapest proposal: unvisited neighbours of the fastest results, in random order (the
  // model's ranking would cost a prediction); the base fills any shortfall at random.
  std::vector<Point> out;
  for (int64_t e : Elites()) {
    std::vector<int64_t> near = UnvisitedNeighbours(e);
    std::shuffle(near.begin(), near.end(), rng());
    for (int64_t i : near) {
      if (static_cast<int>(out.size()) >= exploit) return out;
      out.push_back(space().PointAt(i));
    }
  }
  return out;
}

std::vector<Point> PpoStrategy::Diverse(const std::vector<int64_t>& candidates,
                                        const std::vector<float>& scores, int k) {
  // Chameleon's adaptive sampling: cluster the best-scored candidates and measure the best of
  // each cluster, so one basin of the model cannot take the whole batch.
  std::vector<size_t> rank(candidates.size());
  std::iota(rank.begin(), rank.end(), 0);
  std::stable_sort(rank.begin(), rank.end(),
                   [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  rank.resize(std::min(rank.size(), static_cast<size_t>(options_.pool_per_pick * k)));
  std::vector<Point> out;
  if (static_cast<int>(rank.size()) <= k) {
    for (size_t r : rank) out.push_back(space().PointAt(candidates[r]));
    return out;
  }
  SpaceFeatures& f = impl_->features();
  const int w = f.width();
  std::vector<float> x;
  for (size_t r : rank) f.Append(space().PointAt(candidates[r]), x);
  auto dist = [&](size_t a, const float* c) {
    float d = 0;
    for (int j = 0; j < w; ++j) d += (x[a * w + j] - c[j]) * (x[a * w + j] - c[j]);
    return d;
  };
  // k-means++ seeding from the best candidate, then Lloyd iterations.
  std::vector<float> centres(x.begin(), x.begin() + w);
  std::vector<float> nearest(rank.size(), INFINITY);
  while (static_cast<int>(centres.size() / w) < k) {
    const float* last = &centres[centres.size() - w];
    double total = 0;
    for (size_t i = 0; i < rank.size(); ++i)
      total += nearest[i] = std::min(nearest[i], dist(i, last));
    if (total <= 0) break;
    double pick = std::uniform_real_distribution<double>(0, total)(rng());
    size_t chosen = 0;
    for (double acc = 0; chosen < rank.size(); ++chosen) {
      acc += nearest[chosen];
      if (acc >= pick) break;
    }
    chosen = std::min(chosen, rank.size() - 1);
    centres.insert(centres.end(), x.begin() + chosen * w, x.begin() + (chosen + 1) * w);
  }
  const int clusters = static_cast<int>(centres.size() / w);
  std::vector<int> assign(rank.size(), 0);
  for (int iter = 0; iter < 10; ++iter) {
    for (size_t i = 0; i < rank.size(); ++i) {
      float best = INFINITY;
      for (int c = 0; c < clusters; ++c) {
        float d = dist(i, &centres[c * w]);
        if (d < best) best = d, assign[i] = c;
      }
    }
    std::vector<float> sum(centres.size(), 0.f);
    std::vector<int> count(clusters, 0);
    for (size_t i = 0; i < rank.size(); ++i) {
      ++count[assign[i]];
      for (int j = 0; j < w; ++j) sum[assign[i] * w + j] += x[i * w + j];
    }
    for (int c = 0; c < clusters; ++c) {
      if (count[c] == 0) continue;
      for (int j = 0; j < w; ++j) centres[c * w + j] = sum[c * w + j] / count[c];
    }
  }
  // The best-scored member of each cluster (rank order is score order), then the rest by score.
  std::vector<bool> taken_cluster(clusters, false), taken(rank.size(), false);
  for (size_t i = 0; i < rank.size() && static_cast<int>(out.size()) < k; ++i) {
    if (taken_cluster[assign[i]]) continue;
    taken_cluster[assign[i]] = taken[i] = true;
    out.push_back(space().PointAt(candidates[rank[i]]));
  }
  for (size_t i = 0; i < rank.size() && static_cast<int>(out.size()) < k; ++i) {
    if (!taken[i]) out.push_back(space().PointAt(candidates[rank[i]]));
  }
  return out;
}

}  // namespace ktune
