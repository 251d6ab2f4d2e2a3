// A development check of search strategies on synthetic landscapes (synthetic_landscape.h) that
// no policy is trained on, so that a change to a strategy can be judged without looking at the
// recorded spaces that `ktune bench search --protocol leave-one-kernel-out` reports on.
//
//   ktune-synthetic-check [first_seed=1001] [count=24] [seeds=5] [budget=400] [strategies...]
//   ktune-synthetic-check --space FILE... -- [seeds=5] [budget=400] [strategies...]
//
// The second form runs the same check on recorded spaces instead (bench/dev-spaces/: ktune's CPU
// kernels timed on the development machine, which no reported result uses), so that a change is
// also judged on real landscapes: the synthetic ones missed what a smaller random warm-up did
// to the recorded GEMM and convolution spaces (bench/results/synthetic-check-warmup8-2026-12-05.txt).
//
// A strategy `ppo=FILE` is PPO starting from the policy in FILE (`ktune agent train --out`)
// instead of the shipped one, so that trainings can be compared without a rebuild.
//
// Landscapes come from seeds first_seed, first_seed + 1, ... (the policies are trained on seeds
// from 1: `ktune agent train` and each leave-one-kernel-out fold make 16 from seed 1, so keep
// first_seed well above that). Landscapes of over 100,000 points are passed over (their optimum is
// found by measuring every point). Prints, per strategy, the median over landscapes of the median
// over seeds of evals_to_5pct (search_benchmark.h's definition; never = 10 x budget), and how
// often it is at or below the first strategy named.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "agent/ppo_strategy.h"
#include "agent/search_strategy.h"
#include "agent/tuning_loop.h"
#include "bench/search_benchmark.h"
#include "bench/synthetic_landscape.h"
#include "common/file_util.h"

namespace ktune {
namespace {

// MakeStrategy, and `ppo=FILE`: PPO starting from the policy in FILE.
absl::StatusOr<std::unique_ptr<SearchStrategy>> MakeCheckedStrategy(const std::string& name) {
  const size_t eq = name.find('=');
  if (eq == std::string::npos || name.substr(0, eq) != "ppo") return MakeStrategy(name);
  absl::StatusOr<std::string> text = ReadFileMaybeGzip(name.substr(eq + 1));
  if (!text.ok()) return text.status();
  std::unique_ptr<PpoStrategy> ppo = MakePpoVariant("ppo");
  ppo->LoadPolicy(*std::move(text));
  return std::unique_ptr<SearchStrategy>(std::move(ppo));
}

// A space to check on: its name, its points and a measurer that answers for every one of them.
struct CheckSpace {
  std::string name;
  const SearchSpace* space;
  Measurer* measurer;
};

constexpr const char* kUsage =
    "usage: ktune-synthetic-check [first_seed=1001] [count=24] [seeds=5] [budget=400] "
    "[strategies...]\n"
    "       ktune-synthetic-check --space FILE... -- [seeds=5] [budget=400] [strategies...]\n"
    "The median over landscapes (synthetic, or the recorded FILEs) of each strategy's median\n"
    "evaluations to 5% of the optimum over seeds; a strategy ppo=FILE is PPO from the policy in\n"
    "FILE. Default strategies: model ppo-nopolicy ppo.\n";

// A positional count: a whole number of at least 1.
bool PositiveNumber(const std::string& text) {
  return !text.empty() && text.size() < 19 &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
         std::stoll(text) >= 1;
}

int Run(int argc, char** argv) {
  // The positional arguments: first_seed count seeds budget strategies..., or, after the
  // recorded space files of the second form, seeds budget strategies....
  std::vector<std::string> files, args(argv + 1, argv + argc);
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a.size() > 1 && a[0] == '-' && a != "--space" && a != "--") {
      std::fprintf(stderr, "ktune-synthetic-check: unknown option %s\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (!args.empty() && args[0] == "--space") {
    auto end = std::find(args.begin(), args.end(), "--");
    files.assign(args.begin() + 1, end);
    if (end == args.end() || files.empty()) {
      std::fprintf(stderr, "usage: ktune-synthetic-check --space FILE... -- [seeds] [budget] "
                           "[strategies...]\n");
      return 2;
    }
    args.erase(args.begin(), end + 1);
  }
  auto at = [&](size_t i, const char* otherwise) {
    return i < args.size() ? args[i].c_str() : otherwise;
  };
  const size_t rest = files.empty() ? 2 : 0;  // where seeds, budget and strategies start
  // The numbers a run starts from (atoi read "--help" as 0 and started a full check).
  for (size_t i = 0; i < std::min(rest + 2, args.size()); ++i) {
    if (!PositiveNumber(args[i])) {
      std::fprintf(stderr, "ktune-synthetic-check: %s is not a whole number of at least 1\n%s",
                   args[i].c_str(), kUsage);
      return 2;
    }
  }
  const int seeds = std::atoi(at(rest, "5"));
  const int64_t budget = std::atoll(at(rest + 1, "400"));
  std::vector<std::string> strategies(args.begin() + std::min(rest + 2, args.size()), args.end());
  if (strategies.empty()) strategies = {"model", "ppo-nopolicy", "ppo"};

  std::vector<CheckSpace> checked;
  std::vector<SyntheticLandscape> landscapes;
  std::vector<std::unique_ptr<ReplaySpace>> recorded;
  if (files.empty()) {
    const uint64_t first_seed = std::strtoull(at(0, "1001"), nullptr, 10);
    const int count = std::atoi(at(1, "24"));
    auto made = MakeSyntheticLandscapes(count, first_seed);
    if (!made.ok()) {
      std::fprintf(stderr, "%s\n", made.status().ToString().c_str());
      return 1;
    }
    landscapes = *std::move(made);
    for (const SyntheticLandscape& l : landscapes) {
      checked.push_back({l.name, l.space.get(), l.measurer.get()});
    }
  } else {
    auto loaded = LoadReplaySpaces(files);
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", loaded.status().ToString().c_str());
      return 1;
    }
    recorded = *std::move(loaded);
    for (auto& r : recorded) checked.push_back({r->name, &r->recorded.space, &r->measurer});
  }
  std::vector<std::vector<double>> per(strategies.size());  // [strategy][landscape]
  for (const CheckSpace& l : checked) {
    const SearchSpace& space = *l.space;
    if (space.size() > 100'000) continue;
    double optimum = INFINITY;
    std::vector<Configuration> all;
    for (int64_t i = 0; i < space.size(); ++i) all.push_back(space.ToConfiguration(space.PointAt(i)));
    auto times = l.measurer->Measure({}, all);
    if (!times.ok()) return 1;
    for (const MeasureResult& r : *times) {
      if (r.time_ms) optimum = std::min(optimum, *r.time_ms);
    }
    std::printf("%s (%lld points):", l.name.c_str(), static_cast<long long>(space.size()));
    for (size_t s = 0; s < strategies.size(); ++s) {
      std::vector<double> evals;
      for (int seed = 1; seed <= seeds; ++seed) {
        auto strategy = MakeCheckedStrategy(strategies[s]);
        if (!strategy.ok()) {
          std::fprintf(stderr, "%s\n", strategy.status().ToString().c_str());
          return 1;
        }
        auto outcome = RunTuningLoop(**strategy, space, *l.measurer, {}, {budget, 8, 1000u + seed});
        if (!outcome.ok()) {
          std::fprintf(stderr, "%s\n", outcome.status().ToString().c_str());
          return 1;
        }
        evals.push_back(static_cast<double>(EvalsToWithin(outcome->trace, optimum, 0.05, 10 * budget)));
      }
      per[s].push_back(Median(evals));
      std::printf(" %s %.1f", strategies[s].c_str(), per[s].back());
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  std::printf("median over %zu %s of evals_to_5pct:\n", per[0].size(),
              files.empty() ? "landscapes" : "spaces");
  for (size_t s = 0; s < strategies.size(); ++s) {
    int at_or_below = 0;
    for (size_t i = 0; i < per[s].size(); ++i) at_or_below += per[s][i] <= per[0][i];
    std::printf("  %-16s %7.1f  (at or below %s on %d)\n", strategies[s].c_str(), Median(per[s]),
                strategies[0].c_str(), at_or_below);
  }
  return 0;
}

}  // namespace
}  // namespace ktune

int main(int argc, char** argv) { return ktune::Run(argc, argv); }
