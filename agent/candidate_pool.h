// The candidates PPO's policy chooses among, and what it sees of each: features that mean the
// same in every search space, so that one policy, trained on some kernels' spaces, can act on
// another kernel's.
//
// Each batch, arms nominate candidates (a point may be nominated by several). By default only
// kLocalArm and kRandomArm do, and the models score their candidates: the policy alone finds the
// good regions. The whole-space arms (kModelArm, kSampleArm) join in the "ppo-wholespace"
// ablation:
//  - kModelArm: the unvisited points the cost model ranks best over the whole space (or a
//    uniform sample of kWholeSpaceRankLimit points of a larger one), as AutoTVM's tuner does
//    (the `model` baseline's targets, learned as an order: ppo_strategy.h);
//  - kSampleArm: the same, ranked by a model fitted on a bootstrap resample of the results (a
//    Thompson sample: optimistic where data is scarce, so it can reach regions the mean fit
//    ranks low);
//  - kLocalArm: the unvisited one- and two-parameter changes of the fastest result, as the model
//    ranks them (a trust region: needle-shaped optima, common in GPU spaces, are found by local
//    steps more often than by a model fitted on a few hundred points; a two-parameter change
//    crosses a ridge where each single step is slower);
//  - kRandomArm: uniform unvisited points (exploration the model cannot bias; scored by both
//    models, they are where the policy finds regions the local arm cannot reach).
// The policy, not a fixed share, decides how many of each are measured, given the run's state.
#ifndef KTUNE_AGENT_CANDIDATE_POOL_H_
#define KTUNE_AGENT_CANDIDATE_POOL_H_

#include <cstdint>
#include <vector>

#include "kernels/search_space.h"

namespace ktune {

enum CandidateArm : uint8_t { kModelArm = 1, kLocalArm = 2, kRandomArm = 4, kSampleArm = 8 };

struct Candidate {
  int64_t index = 0;  // in the space
  float score = 0;    // the cost model's prediction (higher = faster)
  float sample_score = 0;  // the bootstrap-resampled model's prediction (higher = faster)
  uint8_t arms = 0;   // CandidateArm bits: who nominated it
};

// The run as the policy sees it, the same in every space.
struct RunState {
  double budget_used = 0;    // measurements so far / (prior results + budget), in [0, 1]
  double stale_batches = 0;  // batches in a row without a new best
  double failure_share = 0;  // failed measurements / measurements
  double last_gain = 0;      // log(best before the last batch / best after it)
};

// Per-candidate features (kCandidateFeatures of them, each in about [0, 1]; row-major), from:
// the candidates, `reference` (the model's scores of every point it scored this batch: the
// candidates' scores are placed within their distribution), `sample_reference` (the resampled
// model's scores of the same points: where a candidate's two percentiles disagree, the model is
// unsure of it), the model's score of the fastest
// result so far (`incumbent_score`), the fastest result's point, the measured points, and the
// run's state. The order of features is part of a saved policy's format: append, never reorder.
inline constexpr int kCandidateFeatures = 15;
std::vector<float> CandidateFeatures(const SearchSpace& space,
                                     const std::vector<Candidate>& candidates,
                                     const std::vector<float>& reference,
                                     const std::vector<float>& sample_reference,
                                     float incumbent_score,
                                     const Point& incumbent, const std::vector<Point>& measured,
                                     const RunState& state);

}  // namespace ktune

#endif  // KTUNE_AGENT_CANDIDATE_POOL_H_
