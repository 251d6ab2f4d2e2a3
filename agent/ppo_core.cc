#include "agent/ppo_core.h"

#include <dlfcn.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "agent/gae.h"
#include "common/status_macros.h"

namespace ktune {
namespace {

constexpr float kMasked = -1e9f;
constexpr char kFormat[] = "ktune-acquisition-policy/1";

}  // namespace

class AcquisitionPolicy::Net : public torch::nn::Module {
 public:
  Net(int features, int hidden)
      : l1(register_module("l1", torch::nn::Linear(features, hidden))),
        l2(register_module("l2", torch::nn::Linear(hidden, hidden))),
        pi(register_module("pi", torch::nn::Linear(hidden, 1))),
        v(register_module("v", torch::nn::Linear(hidden, 1))) {}

  struct Output {
    torch::Tensor logits;  // [B, P], masked candidates at kMasked
    torch::Tensor value;   // [B]
  };
  // x: [B, P, F]; valid: [B, P] (bool), false for padding.
  Output Forward(const torch::Tensor& x, const torch::Tensor& valid) {
    torch::Tensor h = torch::tanh(l2(torch::tanh(l1(x))));
    torch::Tensor logits = pi(h).squeeze(-1).masked_fill(~valid, kMasked);
    torch::Tensor w = valid.to(torch::kFloat).unsqueeze(-1);
    torch::Tensor pooled = (h * w).sum(1) / w.sum(1).clamp_min(1);
    return {logits, v(pooled).squeeze(-1)};
  }

  torch::nn::Linear l1, l2, pi, v;
  std::unique_ptr<torch::optim::Adam> optimizer;  // created on first update
};

namespace {

// Decisions padded into tensors: features [B, P, F], valid [B, P], picks [B, K] (-1 padding).
struct Padded {
  torch::Tensor x, valid, picks;
};

Padded Pad(const std::vector<const Decision*>& ds, int features) {
  int64_t pool = 1, k = 1;
  for (const Decision* d : ds) {
    pool = std::max<int64_t>(pool, d->pool);
    k = std::max<int64_t>(k, static_cast<int64_t>(d->picks.size()));
  }
  const int64_t b = static_cast<int64_t>(ds.size());
  std::vector<float> x(b * pool * features, 0.f);
  std::vector<uint8_t> valid(b * pool, 0);
  std::vector<int64_t> picks(b * k, -1);
  for (int64_t i = 0; i < b; ++i) {
    std::copy(ds[i]->features.begin(), ds[i]->features.end(), x.begin() + i * pool * features);
    std::fill(valid.begin() + i * pool, valid.begin() + i * pool + ds[i]->pool, 1);
    for (size_t j = 0; j < ds[i]->picks.size(); ++j) picks[i * k + j] = ds[i]->picks[j];
  }
  return {torch::from_blob(x.data(), {b, pool, features}, torch::kFloat).clone(),
          torch::from_blob(valid.data(), {b, pool}, torch::kUInt8).clone().to(torch::kBool),
          torch::from_blob(picks.data(), {b, k}, torch::kLong).clone()};
}

// Log probability of each pick under `logits` (Plackett-Luce: its log softmax over the
// candidates not yet picked), [B, K] with 0 at padding, and the entropy of the first pick's
// distribution, [B].
std::pair<torch::Tensor, torch::Tensor> PicksLogProb(torch::Tensor logits,
                                                     const torch::Tensor& picks) {
  torch::Tensor first = torch::log_softmax(logits, 1);
  torch::Tensor entropy = -(first.exp() * first).sum(1);
  std::vector<torch::Tensor> logp;
  for (int64_t j = 0; j < picks.size(1); ++j) {
    torch::Tensor pick = picks.select(1, j);
    torch::Tensor has = pick >= 0;
    torch::Tensor index = pick.clamp_min(0).unsqueeze(1);
    torch::Tensor lp = logits.gather(1, index).squeeze(1) - torch::logsumexp(logits, 1);
    logp.push_back(torch::where(has, lp, torch::zeros_like(lp)));
    torch::Tensor removed = logits.scatter(1, index, kMasked);
    logits = torch::where(has.unsqueeze(1), removed, logits);
  }
  return {torch::stack(logp, 1), entropy};
}

// The network is tiny: LibTorch's intra-op threads and the BLAS's own pool only add overhead.
// OpenBLAS's pool spin-yields between small products and doubled the process's CPU time (perf: a
// third of it in sched_yield), so it is limited to one thread, if it is the BLAS loaded.
void UseOneThread() {
  at::set_num_threads(1);
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set(1);
  }
}

}  // namespace

AcquisitionPolicy::AcquisitionPolicy(PolicyOptions options, uint64_t seed)
    : options_(options), net_(std::make_unique<Net>(options.features, options.hidden)) {
  UseOneThread();
  std::mt19937_64 rng(seed);
  torch::NoGradGuard no_grad;
  // PyTorch's default Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from our generator rather
  // than LibTorch's global one; the policy's output layer near zero (a near-uniform policy).
  for (auto& p : net_->named_parameters()) {
    torch::Tensor t = p.value();
    const std::string layer = p.key().substr(0, p.key().find('.'));
    const double fan_in = static_cast<double>(net_->named_parameters()[layer + ".weight"].size(1));
    double bound = 1.0 / std::sqrt(fan_in);
    if (layer == "pi") bound *= 0.01;
    std::uniform_real_distribution<float> u(-bound, bound);
    std::vector<float> values(t.numel());
    for (float& v : values) v = u(rng);
    t.copy_(torch::from_blob(values.data(), t.sizes(), torch::kFloat));
  }
}

AcquisitionPolicy::~AcquisitionPolicy() = default;

absl::Status AcquisitionPolicy::Pick(Decision& d, int k, std::mt19937_64& rng, bool greedy) {
  if (d.pool <= 0 || static_cast<int>(d.features.size()) != d.pool * options_.features) {
    return absl::InvalidArgumentError(absl::StrCat("a pool of ", d.pool, " candidates needs ",
                                                   d.pool * options_.features, " features, not ",
                                                   d.features.size()));
  }
  std::vector<double> logits(d.pool);
  try {
    torch::NoGradGuard no_grad;
    Padded in = Pad({&d}, options_.features);
    auto out = net_->Forward(in.x, in.valid);
    auto acc = out.logits.accessor<float, 2>();
    for (int i = 0; i < d.pool; ++i) logits[i] = acc[0][i];
    d.value = out.value.item<float>();
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("LibTorch: ", e.what_without_backtrace()));
  }
  d.picks.clear();
  d.pick_logp.clear();
  std::vector<bool> taken(d.pool, false);
  std::uniform_real_distribution<double> u(0, 1);
  for (int j = 0; j < std::min(k, d.pool); ++j) {
    double top = -INFINITY;
    for (int i = 0; i < d.pool; ++i) {
      if (!taken[i]) top = std::max(top, logits[i]);
    }
    double sum = 0;
    for (int i = 0; i < d.pool; ++i) {
      if (!taken[i]) sum += std::exp(logits[i] - top);
    }
    int chosen = -1;
    if (greedy) {
      for (int i = 0; i < d.pool; ++i) {
        if (!taken[i] && (chosen < 0 || logits[i] > logits[chosen])) chosen = i;
      }
    } else {
      double r = u(rng) * sum, acc = 0;
      for (int i = 0; i < d.pool; ++i) {
        if (taken[i]) continue;
        chosen = i;
        acc += std::exp(logits[i] - top);
        if (r < acc) break;
      }
    }
    taken[chosen] = true;
    d.picks.push_back(chosen);
    d.pick_logp.push_back(static_cast<float>(logits[chosen] - top - std::log(sum)));
  }
  d.pick_reward.assign(d.picks.size(), 0.f);
  return absl::OkStatus();
}

absl::Status AcquisitionPolicy::Update(const std::vector<Episode>& episodes, std::mt19937_64& rng) {
  // GAE over each episode's picks, in order: a pick's value is its pool's.
  std::vector<const Decision*> ds;
  std::vector<std::vector<float>> advantages, returns;  // per decision, per pick
  for (const Episode& ep : episodes) {
    std::vector<float> rewards, values;
    std::vector<const Decision*> kept;
    for (const Decision& d : ep) {
      if (d.picks.empty() || d.pick_reward.size() != d.picks.size()) continue;
      kept.push_back(&d);
      for (float r : d.pick_reward) {
        rewards.push_back(r);
        values.push_back(d.value);
      }
    }
    if (kept.empty()) continue;
    GaeResult g = ComputeGae(rewards, values, static_cast<int>(rewards.size()), 1, options_.gamma,
                             options_.gae_lambda);
    size_t at = 0;
    for (const Decision* d : kept) {
      ds.push_back(d);
      advantages.emplace_back(g.advantages.begin() + at,
                              g.advantages.begin() + at + d->picks.size());
      returns.emplace_back(g.returns.begin() + at, g.returns.begin() + at + d->picks.size());
      at += d->picks.size();
    }
  }
  if (ds.size() < 2) return absl::OkStatus();
  try {
    if (net_->optimizer == nullptr) {
      // Created on first use: a policy that only acts never pays for Adam's state.
      net_->optimizer = std::make_unique<torch::optim::Adam>(
          net_->parameters(), torch::optim::AdamOptions(options_.learning_rate));
    }
    const int64_t n = static_cast<int64_t>(ds.size());
    const int64_t mb = std::max<int64_t>(2, n / std::max(1, options_.minibatches));
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    double approx_kl = 0, clipfrac = 0, pg = 0, vl = 0, ent = 0;
    int steps = 0;
    for (int epoch = 0; epoch < options_.epochs; ++epoch) {
      std::shuffle(order.begin(), order.end(), rng);
      for (int64_t start = 0; start + 1 < n; start += mb) {
        const int64_t end = std::min(n, start + mb);
        std::vector<const Decision*> part;
        for (int64_t i = start; i < end; ++i) part.push_back(ds[order[i]]);
        Padded in = Pad(part, options_.features);
        const int64_t b = in.picks.size(0), k = in.picks.size(1);
        // Per pick, [b, k]: advantage, return, old log probability, old value; 0 at padding.
        std::vector<float> adv_v(b * k, 0), ret_v(b * k, 0), old_logp_v(b * k, 0),
            old_v_v(b * k, 0);
        for (int64_t i = 0; i < b; ++i) {
          const int64_t d = order[start + i];
          for (size_t j = 0; j < ds[d]->picks.size(); ++j) {
            adv_v[i * k + j] = advantages[d][j];
            ret_v[i * k + j] = returns[d][j];
            old_logp_v[i * k + j] = ds[d]->pick_logp[j];
            old_v_v[i * k + j] = ds[d]->value;
          }
        }
        auto mat = [b, k](std::vector<float>& v) {
          return torch::from_blob(v.data(), {b, k}, torch::kFloat).clone();
        };
        torch::Tensor mask = (in.picks >= 0).to(torch::kFloat);
        const torch::Tensor count = mask.sum().clamp_min(1);
        torch::Tensor adv = mat(adv_v), ret = mat(ret_v), old_logp = mat(old_logp_v),
                      old_v = mat(old_v_v);
        const torch::Tensor adv_mean = (adv * mask).sum() / count;
        const torch::Tensor adv_std =
            (((adv - adv_mean) * mask).pow(2).sum() / count).sqrt() + 1e-8;
        adv = (adv - adv_mean) / adv_std;
        auto out = net_->Forward(in.x, in.valid);
        auto [logp, entropy] = PicksLogProb(out.logits, in.picks);
        torch::Tensor log_ratio = (logp - old_logp) * mask;
        torch::Tensor ratio = log_ratio.exp();
        torch::Tensor pg_loss =
            (torch::max(-adv * ratio,
                        -adv * torch::clamp(ratio, 1 - options_.clip, 1 + options_.clip)) *
             mask)
                .sum() /
            count;
        torch::Tensor value = out.value.unsqueeze(1).expand({b, k});
        torch::Tensor v_clipped =
            old_v + torch::clamp(value - old_v, -options_.clip, options_.clip);
        torch::Tensor v_loss =
            0.5 * (torch::max((value - ret).pow(2), (v_clipped - ret).pow(2)) * mask).sum() / count;
        torch::Tensor loss =
            pg_loss - options_.entropy_coef * entropy.mean() + options_.value_coef * v_loss;
        net_->optimizer->zero_grad();
        loss.backward();
        torch::nn::utils::clip_grad_norm_(net_->parameters(), options_.max_grad_norm);
        net_->optimizer->step();
        {
          torch::NoGradGuard no_grad;
          approx_kl = ((((ratio - 1) - log_ratio) * mask).sum() / count).item<double>();
          clipfrac = ((((ratio - 1).abs() > options_.clip).to(torch::kFloat) * mask).sum() / count)
                         .item<double>();
        }
        pg = pg_loss.item<double>();
        vl = v_loss.item<double>();
        ent = entropy.mean().item<double>();
        ++steps;
      }
      if (approx_kl > options_.target_kl) break;
    }
    metrics_ = {{"losses/policy_loss", pg},    {"losses/value_loss", vl},
                {"losses/entropy", ent},       {"losses/approx_kl", approx_kl},
                {"losses/clipfrac", clipfrac}, {"charts/updates", steps}};
    ++updates_;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("LibTorch: ", e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

std::string AcquisitionPolicy::ToJson() const {
  nlohmann::ordered_json j;
  j["format"] = kFormat;
  j["features"] = options_.features;
  j["hidden"] = options_.hidden;
  nlohmann::ordered_json params = nlohmann::ordered_json::object();
  for (const auto& p : net_->named_parameters()) {
    torch::Tensor t = p.value().detach().contiguous();
    std::vector<float> values(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
    params[p.key()] = {{"shape", t.sizes().vec()}, {"values", values}};
  }
  j["parameters"] = params;
  return j.dump();
}

absl::Status AcquisitionPolicy::LoadJson(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto bad = [](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("not a policy for this agent: ", why));
  };
  if (!j.is_object() || j.value("format", "") != kFormat) {
    return bad(absl::StrCat("expected a JSON object with \"format\": \"", kFormat, "\""));
  }
  if (j.value("features", -1) != options_.features || j.value("hidden", -1) != options_.hidden) {
    return bad(absl::StrCat("its shape is ", j.value("features", -1), " features x ",
                            j.value("hidden", -1), " hidden, this agent's ", options_.features,
                            " x ", options_.hidden));
  }
  const auto& params = j["parameters"];
  torch::NoGradGuard no_grad;
  for (auto& p : net_->named_parameters()) {
    if (!params.contains(p.key())) return bad(absl::StrCat("no '", p.key(), "'"));
    const auto& values = params[p.key()]["values"];
    if (!values.is_array() || static_cast<int64_t>(values.size()) != p.value().numel()) {
      return bad(absl::StrCat("'", p.key(), "' has the wrong size"));
    }
    std::vector<float> v;
    for (const auto& x : values) {
      if (!x.is_number()) return bad(absl::StrCat("'", p.key(), "' holds a non-number"));
      v.push_back(x.get<float>());
    }
    p.value().copy_(torch::from_blob(v.data(), p.value().sizes(), torch::kFloat));
  }
  return absl::OkStatus();
}

}  // namespace ktune
