// PPO's core, CleanRL-style: the policy network, sampling a batch from it, and the clipped
// update over collected episodes with GAE. Everything else PPO does (which candidates exist,
// what the policy sees of them, when to learn) is in its own file; LibTorch is included only by
// ppo_core.cc, so this header is light.
//
// The policy is a learned acquisition function over a candidate pool (as MetaBO's neural
// acquisition function, trained with PPO across tasks): a small MLP scores each candidate from
// its features (candidate_pool.h), and a batch of k is drawn from the softmax of the scores
// without replacement (Plackett-Luce): the action is the ordered list of picks, its log
// probability the sum of each pick's log softmax over the candidates still left. The value head
// reads the pool's mean hidden state. Weights do not depend on the space (the features have the
// same width everywhere), so one policy serves every kernel.
#ifndef KTUNE_AGENT_PPO_CORE_H_
#define KTUNE_AGENT_PPO_CORE_H_

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace ktune {

// One decision of an episode: what was offered, what was picked, and what came of each pick.
// Each pick is one step of the episode (Plackett-Luce sampling is sequential: a pick's state is
// the pool less the picks before it), rewarded by its own outcome, so that credit goes to the
// candidates that paid off rather than to the whole batch.
struct Decision {
  std::vector<float> features;  // [pool * PolicyOptions::features], row-major
  int pool = 0;
  std::vector<int> picks;          // indices into the pool, in pick order
  std::vector<float> pick_logp;    // each pick's log probability when it was drawn
  std::vector<float> pick_reward;  // each pick's reward, filled once the batch is measured
  float value = 0;                 // the value head's estimate of the pool
};
using Episode = std::vector<Decision>;  // one tuning run; it ends after its last decision

struct PolicyOptions {
  int features = 0;             // per-candidate features (kCandidateFeatures)
  int hidden = 32;              // units in each of the two hidden layers
  double learning_rate = 1e-3;  // Adam
  // Discount per pick. 0: each pick is judged by its own outcome alone (a learned acquisition
  // function, as expected improvement is myopic): the picks of a batch are measured together,
  // so none can change another's outcome, and a pick's effect on later batches (through the
  // model) is too diffuse to credit. With 0.98, the policy's first-pick entropy stayed near
  // uniform (4.3 of 4.5) after 100 training iterations; with 0 it fell to about 3 in 35.
  double gamma = 0.0;
  double gae_lambda = 0.95;
  double clip = 0.2;    // ratio clip, policy and value
  int epochs = 4;       // update epochs over the collected decisions
  int minibatches = 4;  // per epoch
  double entropy_coef = 0.01;
  double value_coef = 0.5;
  double max_grad_norm = 0.5;
  double target_kl = 0.03;  // stop the epochs early past this approximate KL
};

class AcquisitionPolicy {
 public:
  // Weights drawn from `seed` (PyTorch's default Linear init, the output layer scaled down to a
  // near-uniform policy).
  AcquisitionPolicy(PolicyOptions options, uint64_t seed);
  ~AcquisitionPolicy();
  AcquisitionPolicy(const AcquisitionPolicy&) = delete;
  AcquisitionPolicy& operator=(const AcquisitionPolicy&) = delete;

  const PolicyOptions& options() const { return options_; }

  // Draws min(k, pool) picks for `d` from the policy (greedy: the k highest scores), and fills
  // d.picks, d.pick_logp and d.value (d.pick_reward: zeros). InvalidArgument when the features
  // do not match d.pool.
  absl::Status Pick(Decision& d, int k, std::mt19937_64& rng, bool greedy = false);

  // One PPO update (epochs of clipped-surrogate minibatch steps over decisions) on `episodes`,
  // with GAE over each episode's picks in order. Decisions without picks are skipped.
  absl::Status Update(const std::vector<Episode>& episodes, std::mt19937_64& rng);

  // The weights as JSON (shapes and values): the format of agent/pretrained/policy.json and of
  // the checkpoints in the tuning database. Load refuses (InvalidArgument) a text that is not
  // such a policy or has other shapes than this one.
  std::string ToJson() const;
  absl::Status LoadJson(const std::string& json);

  // Metrics of the last update, CleanRL's names ("losses/approx_kl", ...).
  std::vector<std::pair<std::string, double>> LastMetrics() const { return metrics_; }
  int updates() const { return updates_; }

 private:
  class Net;
  PolicyOptions options_;
  std::unique_ptr<Net> net_;
  std::vector<std::pair<std::string, double>> metrics_;
  int updates_ = 0;
};

}  // namespace ktune

#endif  // KTUNE_AGENT_PPO_CORE_H_
