// PPO, the default strategy: a learned acquisition policy, trained with Proximal Policy
// Optimization across many kernels' search spaces, decides what each batch measures.
//
// Each batch (agent/README.md has the whole picture and the ablation):
//  1. two cost models (XgbCostModel, gradient-boosted trees) are refitted: the mean fit, on
//     every result, and a Thompson sample, on ranks of a bootstrap resample; without transfer
//     sources both learn the targets' order (a pairwise ranking loss), with them squared error,
//     and the sources join both as a prior (transfer_prior.h);
//  2. arms nominate candidates: the fastest result's unvisited one- and two-parameter changes
//     (the local arm) and uniform random points, both scored by the two models; with
//     `whole_space_arm` (the "ppo-wholespace" ablation) also each model's best of the whole
//     space (candidate_pool.h);
//  3. the policy (ppo_core.h) sees each candidate through features that mean the same in every
//     space (the models' view of it, its distance to what was measured, who nominated it, and
//     the run's state: budget used, batches without progress, failures) and draws the batch;
//  4. each pick is rewarded by how much faster than the best before its batch it was (log of the
//     ratio; 0 if slower or failed); the policy is fine-tuned online with PPO on the run's
//     decisions every `update_every` batches and at the end of the run (PostTuning).
// The policy starts from the one shipped in agent/pretrained/policy.json (`ktune agent train`
// reproduces it), or from the kernel's own fine-tuned policy saved in the tuning database.
//
// Before the first model (a random warm-up of `warmup` measurements) the batches are random, or,
// with transfer sources, the prior model's best points. How much work a batch does depends on
// the time allowance its driver gives (agent/README.md, "The agent's time budget"): the full step
// above, or, when it cannot afford it, the unvisited neighbours of the fastest results.
//
// By default the pool holds no whole-space ranking: the policy alone, over the local arm and
// random points that both models score, decides where the search goes (agent/README.md says why).
// A run that has stalled for `escape_after` batches gets the whole-space pool until it finds a
// new best (PpoOptions::escape_after). The ablation variants (`ppo-untrained`, `ppo-nopolicy`,
// `ppo-wholespace`, `ppo-policyonly`) are this strategy with one option changed
// (MakePpoVariant).
#ifndef KTUNE_AGENT_PPO_STRATEGY_H_
#define KTUNE_AGENT_PPO_STRATEGY_H_

#include <memory>
#include <string>

#include "agent/candidate_pool.h"
#include "agent/cost_model.h"
#include "agent/features.h"
#include "agent/ppo_core.h"
#include "agent/strategy_base.h"
#include "agent/transfer_prior.h"

namespace ktune {

struct PpoOptions {
  int warmup = 16;         // random measurements before the first model (no transfer)
  PolicyOptions policy;    // the network and its PPO settings (features: set by the strategy)
  bool use_policy = true;  // false: a fixed rule picks from the pool (ablation "no policy")
  // true: the two models' best points of the whole space join the pool ("ppo-wholespace"); by
  // default the policy alone finds the good regions, from the local and random arms.
  bool whole_space_arm = false;
  // After this many batches in a row without a new best (0: never), the pool is the
  // whole-space one (as with `whole_space_arm`) until a batch finds one. Needle-shaped optima
  // (one configuration of 4,201 within 5% on convolution A100) are rarely among a batch's 64
  // random points, so a search stuck away from them could stall there for the rest of its
  // budget; the models' ranking of the whole space reaches them, and the policy still picks.
  // Only stalled runs change: one that finds its best before 4 stalled batches is the run
  // without it. Training runs never escape (policy_training.cc), so the policy learns the
  // default pool; the "ppo-policyonly" ablation acts without it (agent/README.md).
  int escape_after = 4;
  bool pretrained = true;    // start from the shipped policy; false: from random weights
  bool learn_online = true;  // fine-tune the policy with PPO during the run
  // Batches between online updates. Each update runs over the run's decisions so far, up to
  // `update_window`; every 8 batches costs half as much as every 4, with the same search quality
  // under leave-one-kernel-out (agent/README.md, "Cost").
  int update_every = 8;
  // The most recent decisions an online update learns from. PPO is on-policy: its clipped
  // ratio is meant for decisions drawn by a recent policy, and those of many updates ago are
  // stale data that every update paid for, so in a long run each update cost more than the last
  // (at budget 2000, about a quarter of the agent's time). 64 is 8 updates' worth; a run of at
  // most 64 decisions (budget 512 at batches of 8) learns from all of them, as before.
  int update_window = 64;
  int model_arm = 48;   // candidates the mean fit's whole-space ranking nominates (if any)
  int sample_arm = 48;  // ... the Thompson sample's whole-space ranking (if any)
  int local_arm = 32;   // ... the fastest result's neighbourhood
  int random_arm = 16;  // ... uniform draws, with the whole-space arms
  // Uniform draws without the whole-space arms (the default pool): both models score them, and
  // the policy finds the good regions among them.
  int random_arm_alone = 64;
  // Two-parameter changes the local arm ranks: all, or a sample of this many where more.
  int64_t pair_moves = 4096;
  // Points the model ranks: every point up to this many, else a uniform sample of this many.
  int64_t global_candidates = kWholeSpaceRankLimit;
  bool bootstrap = true;      // fit the sample model on a resample (false: on every result)
  int model_rounds = 60;      // boosting rounds of the cost model
  double source_weight = 64;  // total weight of transfer sources' rows in the cost model
  int source_rows = 1024;     // cost-model rows per transfer source
  // A pick's reward: scale * log(best before its batch / its time) if faster, else 0; capped at 5.
  double reward_scale = 10;
  // The fixed rule of the "no policy" ablation: shares of the batch from the local arm and from
  // the random arm, the rest the model arm's (the mean fit's) best; it leaves the sample arm to
  // the policy.
  double rule_local_share = 0.25, rule_random_share = 0.1;
};

class PpoStrategy : public StrategyBase {
 public:
  explicit PpoStrategy(PpoOptions options = {}, std::string name = "ppo");
  ~PpoStrategy() override;
  std::string name() const override { return name_; }

  // A recorded landscape of the same kernel on another device; call before PreTuning. Sources
  // whose parameters differ from the target's are skipped.
  absl::Status AddTransferSource(TransferSource source) override;

  // The policy's weights (JSON, AcquisitionPolicy::ToJson). FailedPrecondition before PreTuning.
  absl::StatusOr<std::string> SavePolicy() const;
  // Starts from a saved policy instead of the shipped one; call before PreTuning, which refuses
  // (InvalidArgument) a text that is not a policy of this agent.
  void LoadPolicy(std::string json) { saved_policy_ = std::move(json); }
  // Acts with `policy`, owned by the caller, and never updates it (offline training: the
  // trainer updates it from TakeEpisode()). Call before PreTuning.
  void UseSharedPolicy(AcquisitionPolicy* policy) { shared_policy_ = policy; }
  // The run's decisions and rewards so far (moved out).
  Episode TakeEpisode() { return std::move(episode_); }

  std::string CheckpointKey(const std::string& kernel, const SearchSpace& space) const override {
    return PolicyKey(kernel, space);
  }
  void LoadCheckpoint(std::string blob) override { LoadPolicy(std::move(blob)); }
  // The last online update, when decisions came after the last periodic one (a run shorter than
  // `update_every` decisions learns once, here), so that what is saved holds all of the run. After
  // the last batch: it changes no proposal of this run.
  void PostTuning() override;
  // Empty (nothing to keep) unless the policy learned in this run: a policy that only acted must
  // not replace what is stored.
  absl::StatusOr<std::string> SaveCheckpoint() const override;
  // One policy per kernel (every problem and device of it shares it).
  static std::string PolicyKey(const std::string& kernel, const SearchSpace& space);

  // Batches proposed by the full step (model refit, pool, policy) in this run.
  int learning_steps() const { return learning_steps_; }
  // Online PPO updates of the policy in this run.
  int policy_updates() const { return policy_ ? policy_->updates() : 0; }
  // Metrics of the last PPO update, CleanRL's names.
  std::vector<std::pair<std::string, double>> LastMetrics() const;

 protected:
  absl::Status Start() override;
  absl::StatusOr<std::vector<Point>> Generate(int n) override;
  absl::Status Observe(const std::vector<Observation>& results) override;

 private:
  // The policy that acts: the caller's (UseSharedPolicy) or this run's own; null before Start.
  const AcquisitionPolicy* active_policy() const;
  AcquisitionPolicy& policy() { return shared_policy_ ? *shared_policy_ : *policy_; }
  // This run fine-tunes its own policy (not a trainer's shared one, and not an ablation without
  // policy or learning).
  bool LearnsOnline() const;
  // The episode holds a whole number of `update_every` decisions: a periodic update is due now
  // (in Observe) or has just run (in PostTuning).
  bool AtUpdateInterval() const;
  // One online PPO update on the run's last `update_window` decisions.
  absl::Status UpdateOnline();
  // Refits model_ on every result (ScoreTargets; ranks with transfer sources) and sample_model_
  // on ranks of a bootstrap resample; the sources' rows join both. The models' objective (Start):
  // pairwise ranking, or squared error where the sources' rows join (a non-empty prior).
  absl::Status FitModels();
  // The models' input rows for `indices` (with the domain feature, 0: the target, where transfer
  // sources join the fits), and their width.
  std::vector<float> FeaturesOf(const std::vector<int64_t>& indices) const;
  int ModelWidth() const;
  // Both models' scores of the rows `x`, predicted at once (InParallel: the two boosters share
  // nothing); the same scores as one prediction after the other.
  absl::Status BothScores(const std::vector<float>& x, std::vector<float>& mean,
                          std::vector<float>& sample) const;
  // The full step: the arms' pool, the policy's (or the rule's) picks.
  absl::StatusOr<std::vector<Point>> ProposeFromPool(int n);
  // The candidates of the arms, with both models' scores; `reference` and `sample_reference` get
  // every score each model computed for the whole-space ranking (without it: for the pool).
  absl::StatusOr<std::vector<Candidate>> BuildPool(std::vector<float>& reference,
                                                   std::vector<float>& sample_reference);
  // The "no policy" ablation's fixed rule: shares of the batch from each arm, best scores first.
  std::vector<int> RulePicks(const std::vector<Candidate>& pool, int k);
  // Unvisited one- and two-parameter changes of `index`.
  std::vector<int64_t> UnvisitedNeighbours(int64_t index, int64_t max_pairs);
  // The cheapest proposal: unvisited neighbours of the fastest results, in random order.
  std::vector<Point> ProposeLocal(int n);
  // First batches from transfer sources: the prior model's best points.
  absl::StatusOr<std::vector<Point>> ProposeFromPrior(int n);
  RunState CurrentState() const;
  double BestTime() const;
  // Whether this batch's pool holds the whole-space arms (whole_space_arm, or an escape).
  bool WholeSpacePoolNow() const;

  PpoOptions options_;
  std::string name_;
  std::vector<TransferSource> sources_;
  std::string saved_policy_;
  AcquisitionPolicy* shared_policy_ = nullptr;
  std::unique_ptr<AcquisitionPolicy> policy_;
  std::unique_ptr<SpaceFeatures> features_;
  std::unique_ptr<XgbCostModel> model_;         // the mean fit
  std::unique_ptr<XgbCostModel> sample_model_;  // the Thompson sample
  TransferPrior prior_;
  Episode episode_;
  bool awaiting_reward_ = false;        // the last decision's batch is being measured
  std::vector<int64_t> pending_picks_;  // its picks' space indices, in pick order
  double best_before_ms_ = 0;           // the best time when that batch was proposed
  int stale_batches_ = 0;
  double last_gain_ = 0;
  int learning_steps_ = 0;
  // What the full step cost when last done (ms); before the first, a guess.
  double step_cost_ms_ = 20;
};

// The strategy by name: "ppo" and its ablation variants "ppo-untrained" (random weights, never
// updated: the policy's training is what is ablated), "ppo-nopolicy" (the same pool with a fixed
// rule), "ppo-wholespace" (the policy with the two whole-space ranking arms in its pool),
// "ppo-policyonly" (the policy alone: no whole-space ranking ever, not even after stalls). Null
// for other names.
std::unique_ptr<PpoStrategy> MakePpoVariant(const std::string& name);

}  // namespace ktune

#endif  // KTUNE_AGENT_PPO_STRATEGY_H_
