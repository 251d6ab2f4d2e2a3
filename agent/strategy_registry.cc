// The explicit list of strategies (no static registration: it vanishes from static libraries).
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/annealing_strategy.h"
#include "agent/genetic_strategy.h"
#include "agent/model_based_strategy.h"
#if KTUNE_WITH_TORCH
#include "agent/ppo_strategy.h"
#endif
#include "agent/random_strategy.h"
#include "agent/search_strategy.h"

namespace ktune {

#if KTUNE_WITH_TORCH || KTUNE_PPO_IN_AGENT_BINARY
std::vector<std::string> StrategyNames() { return {"ppo", "random", "anneal", "genetic", "model"}; }
std::vector<std::string> AblationStrategyNames() {
  return {"ppo-untrained", "ppo-nopolicy", "ppo-wholespace", "ppo-policyonly"};
}
#else
std::vector<std::string> StrategyNames() { return {"random", "anneal", "genetic", "model"}; }
std::vector<std::string> AblationStrategyNames() { return {}; }
#endif

std::string DefaultStrategyName() {
#if KTUNE_WITH_TORCH || KTUNE_PPO_IN_AGENT_BINARY
  return "ppo";
#else
  return "model";
#endif
}

#if KTUNE_PPO_IN_AGENT_BINARY
// The `ktune` front runs every command that can run PPO as ktune-agent (cli/agent_front.h).
constexpr char kWhyNoPpo[] =
    "the ppo strategy runs in ktune-agent (LibTorch), and this is the light ktune front: run the "
    "command through `ktune` as installed, with ktune-agent beside it";
#elif !KTUNE_WITH_TORCH
constexpr char kWhyNoPpo[] =
    "this ktune was built without LibTorch (KTUNE_WITH_TORCH=OFF): no ppo strategy; use random, "
    "anneal, genetic or model";
#endif

absl::StatusOr<std::unique_ptr<SearchStrategy>> MakeStrategy(const std::string& name) {
#if KTUNE_WITH_TORCH
  if (auto ppo = MakePpoVariant(name)) return ppo;
#else
  if (name.rfind("ppo", 0) == 0) return absl::FailedPreconditionError(kWhyNoPpo);
#endif
  if (name == "random") return std::make_unique<RandomStrategy>();
  if (name == "anneal") return std::make_unique<AnnealingStrategy>();
  if (name == "genetic") return std::make_unique<GeneticStrategy>();
  if (name == "model") return std::make_unique<ModelBasedStrategy>();
  return absl::InvalidArgumentError(
      absl::StrCat("unknown strategy '", name, "' (known: ", absl::StrJoin(StrategyNames(), ", "),
                   AblationStrategyNames().empty() ? "" : "; PPO's ablations: ",
                   absl::StrJoin(AblationStrategyNames(), ", "), ")"));
}

}  // namespace ktune
