#include "agent/policy_training.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "common/status_macros.h"
#if KTUNE_WITH_TORCH
#include "agent/ppo_strategy.h"
#include "agent/tuning_loop.h"
#endif

namespace ktune {

std::string KernelFamily(const std::string& kernel) {
  size_t end = kernel.size();
  while (end > 0 && absl::ascii_isdigit(static_cast<unsigned char>(kernel[end - 1]))) --end;
  // Case ignored: MyKern_A100_T4.json and mykern_A100_T4.json are one kernel (as two, each
  // trained the other's fold).
  return absl::AsciiStrToLower(end == 0 ? kernel : kernel.substr(0, end));
}

absl::StatusOr<std::string> TrainPolicy(const std::vector<TrainingSpace>& spaces,
                                        const PolicyTrainingOptions& options,
                                        const TrainingProgress& progress) {
#if KTUNE_WITH_TORCH
  if (spaces.empty()) return absl::InvalidArgumentError("no space to train the policy on");
  PpoOptions ppo;
  ppo.pretrained = false;
  ppo.whole_space_arm = options.whole_space_pool;
  // The policy learns the default pool; the escape to the whole-space pool is for acting runs
  // (PpoOptions::escape_after), so the shipped policy is the same with it or without.
  ppo.escape_after = 0;
  ppo.policy.features = kCandidateFeatures;
  ppo.policy.learning_rate = options.learning_rate;
  if (options.gamma >= 0) ppo.policy.gamma = options.gamma;
  AcquisitionPolicy policy(ppo.policy, options.seed);
  std::mt19937_64 rng(options.seed);
  for (int it = 1; it <= options.iterations; ++it) {
    std::vector<Episode> episodes;
    double gains = 0;
    for (int e = 0; e < options.episodes_per_iteration; ++e) {
      const TrainingSpace& ts =
          spaces[std::uniform_int_distribution<size_t>(0, spaces.size() - 1)(rng)];
      PpoStrategy strategy(ppo);
      strategy.UseSharedPolicy(&policy);
      TuningOptions run{options.budget, options.batch_size, rng()};
      KTUNE_ASSIGN_OR_RETURN(TuningOutcome outcome,
                             RunTuningLoop(strategy, *ts.space, *ts.measurer, ts.task, run));
      double after_warmup = INFINITY, end = INFINITY;
      for (size_t i = 0; i < outcome.trace.size(); ++i) {
        if (!outcome.trace[i].ok) continue;
        end = std::min(end, outcome.trace[i].time_ms);
        if (static_cast<int>(i) < ppo.warmup) after_warmup = end;
      }
      if (std::isfinite(after_warmup) && std::isfinite(end)) gains += std::log(after_warmup / end);
      episodes.push_back(strategy.TakeEpisode());
    }
    KTUNE_RETURN_IF_ERROR(policy.Update(episodes, rng));
    double entropy = 0;
    for (const auto& [name, value] : policy.LastMetrics()) {
      if (name == "losses/entropy") entropy = value;
    }
    if (progress) {
      progress(it, options.iterations, gains / options.episodes_per_iteration, entropy);
    }
  }
  return policy.ToJson();
#elif KTUNE_PPO_IN_AGENT_BINARY
  return absl::FailedPreconditionError(
      "policy training runs in ktune-agent (LibTorch), and this is the light ktune front: run the "
      "command through `ktune` as installed, with ktune-agent beside it");
#else
  return absl::FailedPreconditionError(
      "this ktune was built without LibTorch (KTUNE_WITH_TORCH=OFF): no policy to train");
#endif
}

}  // namespace ktune
