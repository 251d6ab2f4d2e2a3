// PPO, the default strategy: a policy that learns to walk the search space towards fast
// configurations, trained with Proximal Policy Optimization on a learned cost model (as
// Chameleon does), and sampled to choose each batch.
//
// Each batch:
//  1. the cost model (XgbCostModel, as the model-based baseline's) is refitted on every result,
//     as ranks, on a bootstrap resample (Thompson sampling: its optimism varies where data is
//     scarce);
//  2. episodes start from the fastest configurations measured so far and from random ones; an
//     action moves one parameter to its previous or next value, or stays; moves that would
//     break the constraints are masked out, so the agent never leaves the valid space; the
//     reward is the model's predicted improvement (a step's change in -log time);
//  3. PPO updates the actor-critic (clipped surrogate, value baseline with clipped value loss,
//     GAE, entropy bonus, minibatch epochs, gradient-norm clipping, KL early stop);
//  4. the policy's walks propose states and, with them, `global_candidates` unvisited points of
//     the whole space (all of them in a smaller space, else a uniform sample), as AutoTVM's
//     model-based tuner ranks them: walks of a few steps from the elites cannot reach a basin far
//     from them, which the model may already rank high. The unvisited candidates the model scores
//     best are clustered (k-means on their features, as Chameleon's adaptive sampling) and the
//     best of each cluster forms the batch, with an epsilon share of random configurations;
//  5. a share of the batch comes instead from the unvisited neighbourhood of the fastest result
//     (one parameter changed, or two at once: `pair_moves`), as the model ranks it (a trust
//     region: needle-shaped optima, common in GPU spaces, are found by local steps more often than
//     by a model fitted on a few hundred points; two-parameter changes cross a ridge where each
//     single step is slower). The share is Thompson-sampled from each source's record: how many
//     of its proposals entered the elite.
//  6. restarts, as TuRBO's trust regions: after `restart_after` batches in a row with no result
//     faster than the current region's best, a new region begins. Episode starts and the local
//     arm's anchor then come only from results measured since; the cost model keeps them all.
//     Without it the search stays in a basin that every single step out of is slower (a local
//     optimum), which the elites' neighbourhoods and the walks from them cannot leave.
// How much of 1-4 a batch does depends on the time allowance its driver gives (agent/README.md,
// "The agent's time budget"): learn, or only walk the current policy, or only step locally.
// Before any result (and during a short random warm-up) batches are random, unless transfer
// sources are given: then the policy is first trained on their recorded landscapes (other
// devices' measurements of the same kernel); the first batches are its walks from the sources'
// best configurations, ranked by a prior cost model fitted on the sources; later, the sources'
// rows stay in the cost model (marked by a domain feature) as a prior that the target's own
// results outweigh, weighted by how well the prior's ranking agrees with the target's results
// (a device unlike the sources drops them instead of being misled).
//
// LibTorch stays inside ppo_strategy.cc (its headers cost ~20 s a file to compile). The network
// is seeded from the strategy's own generator; it uses one intra-op thread.
#ifndef KTUNE_AGENT_PPO_STRATEGY_H_
#define KTUNE_AGENT_PPO_STRATEGY_H_

#include <cmath>
#include <memory>

#include "absl/container/flat_hash_map.h"
#include "agent/cost_model.h"
#include "agent/strategy_base.h"

namespace ktune {

struct PpoOptions {
  int warmup = 16;               // random measurements before the first model (no transfer)
  double epsilon = 0.1;          // share of each batch chosen at random
  int iterations_per_batch = 4;  // PPO iterations (rollout + update) after each batch
  int transfer_iterations = 60;  // PPO iterations per transfer source, before tuning
  int envs = 64;                 // parallel episodes per rollout
  int horizon = 8;               // steps per episode
  int proposal_episodes = 128;   // policy walks that propose a batch
  int hidden = 64;               // units in each of the two hidden layers
  double learning_rate = 3e-3;   // Adam
  double gamma = 0.9;            // discount
  double gae_lambda = 0.95;      // GAE lambda
  double clip = 0.2;             // PPO ratio clip (policy and value)
  int epochs = 4;                // update epochs per rollout
  int minibatches = 4;           // minibatches per epoch
  double entropy_coef = 0.01;    // entropy bonus
  double value_coef = 0.5;       // value-loss weight
  double max_grad_norm = 0.5;    // gradient-norm clip
  double target_kl = 0.03;       // stop the epochs early past this approximate KL
  int elite_starts = 8;          // fastest measured configurations used as episode starts
  int pool_per_pick = 4;         // best-scored candidates clustered per configuration picked
  bool bootstrap = true;         // fit each batch's cost model on a resample (Thompson sampling)
  bool rank_targets = true;      // fit the model to ranks, not -log(time)
  double source_weight = 64;     // total weight of transfer sources' rows in the cost model
  int source_rows = 1024;        // cost-model rows per transfer source (its best quarter + sample)
  double local_share = 0.25;     // prior share of each batch from the best point's neighbourhood
  int restart_after = 5;         // batches in a row without a new best before a restart (0: never)
  // A new best counts as progress only if it beats the region's best by this share (TuRBO's
  // success threshold): creeping along a plateau of near-equal points restarts too.
  double restart_min_gain = 0.01;
  // Two-parameter changes of its anchor the local arm also ranks: all of them, or a random sample
  // of this many where there are more (0: none).
  int64_t pair_moves = 4096;
  // Points of the whole space the model also ranks each batch: every unvisited point up to this
  // size (as the model baseline's exhaustive_limit), else a uniform sample of this many.
  int64_t global_candidates = kWholeSpaceRankLimit;
  int model_rounds = 60;             // boosting rounds of the cost model
};

class PpoStrategy : public StrategyBase {
 public:
  explicit PpoStrategy(PpoOptions options = {});
  ~PpoStrategy() override;
  std::string name() const override { return "ppo"; }

  // Adds a source to learn from before tuning; call before PreTuning. Sources whose parameters
  // differ from the target's (names or value lists) are skipped, with a reason in the status.
  absl::Status AddTransferSource(TransferSource source) override;

  // The policy's weights, to store as an agent checkpoint (TuningDatabase::SaveCheckpoint).
  // FailedPrecondition before PreTuning.
  absl::StatusOr<std::string> SavePolicy() const;
  // Warm-starts from a saved policy; call before PreTuning. The first batches then come from
  // the policy's walks, as with transfer. A policy of another shape (a kernel with other
  // parameters) is refused with InvalidArgument when tuning starts.
  void LoadPolicy(std::string blob) { saved_policy_ = std::move(blob); }

  std::string CheckpointKey(const std::string& kernel, const SearchSpace& space) const override {
    return PolicyKey(kernel, space);
  }
  void LoadCheckpoint(std::string blob) override { LoadPolicy(std::move(blob)); }
  // Empty (nothing to keep) when the policy never learned: no learning step, no transfer, no
  // loaded policy. An untrained policy must not replace a trained one in the database.
  absl::StatusOr<std::string> SaveCheckpoint() const override;
  // Checkpoint key for policies of a space: kernel name plus a hash of parameter names and value
  // counts, so every problem and device of a kernel shares one policy.
  static std::string PolicyKey(const std::string& kernel, const SearchSpace& space);

  // Learning steps taken in this run (one per batch unless the time allowance was short).
  int learning_steps() const { return learning_steps_; }
  // Restarts in this run (options_.restart_after stale batches each).
  int restarts() const { return restarts_; }

  // Metrics of the last PPO update, CleanRL-style names ("losses/approx_kl", ...).
  std::vector<std::pair<std::string, double>> LastMetrics() const;

 protected:
  absl::Status Start() override;
  absl::StatusOr<std::vector<Point>> Generate(int n) override;
  absl::Status Observe(const std::vector<Observation>& results) override;

 private:
  // Refits the cost model on every result (and the transfer sources' rows) and trains the
  // policy on it.
  absl::Status Learn();
  // Walks the policy from the fastest results; the batch is the model's best of what the walks
  // reach (clustered: Diverse) plus a share of the best point's neighbourhood.
  absl::StatusOr<std::vector<Point>> ProposeFromPolicy(int n, int exploit);
  // Adds to `candidates` (once each) the unvisited points of the whole space, or those of
  // options_.global_candidates uniform draws where the space is larger.
  void AppendGlobalCandidates(std::vector<int64_t>& candidates);
  // Neighbours of the fastest results, unranked: what a proposal costs when the agent's time
  // allowance affords nothing more.
  absl::StatusOr<std::vector<Point>> ProposeLocal(int exploit);
  // How far the transfer sources agree with the target's results so far: Spearman's rank
  // correlation of the prior model's predictions with the measured times, clamped to [0, 1];
  // 1 without sources or before 8 ok results.
  absl::StatusOr<double> SourceAgreement();
  // How many of the batch's `exploit` model-chosen points come from the best point's
  // neighbourhood rather than from the policy's walks (Thompson sampling over the two sources'
  // records: how many of their proposals entered the elite).
  int LocalCount(int exploit);
  // Space indices of the current region's fastest ok results (measured since the last restart),
  // fastest first (at most elite_starts); empty just after a restart.
  std::vector<int64_t> Elites() const;
  // Unvisited points one step from `index`: a parameter's adjacent value or any other value of
  // it; with `max_pairs` > 0, also the changes of two parameters at once (all of them, or a
  // sample of max_pairs: SearchSpace::TwoParameterChanges).
  std::vector<int64_t> UnvisitedNeighbours(int64_t index, int64_t max_pairs = 0);
  // The k candidates to measure: the best-scored of each of k clusters of the top candidates.
  std::vector<Point> Diverse(const std::vector<int64_t>& candidates,
                             const std::vector<float>& scores, int k);

  class Impl;
  PpoOptions options_;
  std::vector<TransferSource> sources_;
  bool transferred_ = false;  // the policy learned from a source or a saved policy
  std::string saved_policy_;
  // Transfer sources as cost-model rows (target-space features, scores within their source),
  // their best points, and the prior model fitted on them alone.
  std::vector<float> source_x_, source_y_;
  std::vector<int64_t> source_elites_;
  XgbCostModel prior_;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<XgbCostModel> model_;
  bool model_fitted_ = false;
  // What a learning step and a policy walk cost (ms), measured when last done. Before the first
  // learning step, a guess: learning waits until the allowance covers it.
  double learn_cost_ms_ = 20, walk_cost_ms_ = 2;
  int learning_steps_ = 0;
  // The two sources of a batch and their records: proposals that entered the elite / proposals.
  enum Arm { kPolicyArm = 0, kLocalArm = 1 };
  absl::flat_hash_map<int64_t, int> arm_of_;  // pending proposals by space index
  double wins_[2] = {0, 0}, tries_[2] = {0, 0};
  // The current region (restarts): the history index it starts at, its fastest time, and the
  // batches in a row that found nothing faster.
  size_t region_start_ = 0;
  double region_best_ms_ = INFINITY;
  int stale_batches_ = 0;
  int restarts_ = 0;
};

}  // namespace ktune

#endif  // KTUNE_AGENT_PPO_STRATEGY_H_
