// The explicit list of strategies (no static registration: it vanishes from static libraries).
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/annealing_strategy.h"
#include "agent/genetic_strategy.h"
#include "agent/model_based_strategy.h"
#include "agent/ppo_strategy.h"
#include "agent/random_strategy.h"
#include "agent/search_strategy.h"

namespace ktune {

std::vector<std::string> StrategyNames() { return {"ppo", "random", "anneal", "genetic", "model"}; }

absl::StatusOr<std::unique_ptr<SearchStrategy>> MakeStrategy(const std::string& name) {
  if (name == "ppo") return std::make_unique<PpoStrategy>();
  if (name == "random") return std::make_unique<RandomStrategy>();
  if (name == "anneal") return std::make_unique<AnnealingStrategy>();
  if (name == "genetic") return std::make_unique<GeneticStrategy>();
  if (name == "model") return std::make_unique<ModelBasedStrategy>();
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown strategy '", name, "' (known: ", absl::StrJoin(StrategyNames(), ", "), ")"));
}

}  // namespace ktune
