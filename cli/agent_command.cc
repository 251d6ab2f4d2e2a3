// ktune agent train: reproduces PPO's shipped policy (agent/pretrained/policy.json) from the
// recorded spaces, or trains one on any set of spaces (for example all kernels but one).
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "agent/policy_training.h"
#include "bench/search_benchmark.h"
#include "bench/synthetic_landscape.h"
#include "cli/command.h"
#include "common/file_util.h"

namespace ktune::cli {
namespace {

struct AgentTrainArgs {
  std::vector<std::string> spaces;
  std::vector<std::string> exclude_kernels;
  std::string out = "policy.json";
  PolicyTrainingOptions training;
  int synthetic = 16;
  bool json = false;
  bool force = false;  // replace an --out that is not a policy
};

// Every recorded space of the shared datasets, sorted: the default training set.
std::vector<std::string> DefaultSpaces() {
  std::vector<std::string> files;
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::path(KTUNE_DEFAULT_DATASETS_DIR) / "spaces";
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().string().find(".json") != std::string::npos) {
      files.push_back(entry.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

int RunAgentTrain(const AgentTrainArgs& a) {
  const std::string cmd = "agent train";
  std::vector<std::string> files = a.spaces.empty() ? DefaultSpaces() : a.spaces;
  if (files.empty()) {
    return UsageError(cmd, absl::StrCat("no --space given and no recorded spaces in ",
                                        KTUNE_DEFAULT_DATASETS_DIR, "/spaces"));
  }
  // Where the policy goes, checked before minutes of training: its folder must take a new file.
  {
    std::error_code ec;
    const std::filesystem::path out(a.out);
    const std::filesystem::path folder = out.has_parent_path() ? out.parent_path() : ".";
    if (std::filesystem::is_directory(out, ec)) {
      return Fail(cmd, absl::InvalidArgumentError(absl::StrCat(a.out, " is a directory")));
    }
    if (::access(folder.c_str(), W_OK) != 0) {
      return Fail(cmd, absl::PermissionDeniedError(
                           absl::StrCat("cannot write ", a.out, ": ", std::strerror(errno))));
    }
    // Only a policy is replaced: --out on a tuning database replaced it with a policy (and a
    // server writing it went on into the deleted file).
    if (IsSqliteFile(a.out)) {
      return UsageError(cmd, absl::StrCat(a.out,
                                          " is a SQLite database; --out writes a policy "
                                          "file and does not overwrite one"));
    }
    if (std::filesystem::exists(out, ec) && !a.force) {
      std::ifstream existing(a.out);
      std::string head(256, '\0');
      existing.read(head.data(), static_cast<std::streamsize>(head.size()));
      if (head.find("\"format\":\"ktune-acquisition-policy/") == std::string::npos) {
        return UsageError(cmd, absl::StrCat(a.out,
                                            " exists and is not a ktune policy; give "
                                            "another --out, or --force to replace it"));
      }
    }
  }
  auto loaded = LoadReplaySpaces(files);
  if (!loaded.ok()) return Fail(cmd, loaded.status());
  for (const std::string& excluded : a.exclude_kernels) {
    if (std::none_of(loaded->begin(), loaded->end(), [&](const auto& space) {
          return KernelFamily(space->kernel) == KernelFamily(excluded);
        })) {
      return UsageError(cmd, absl::StrCat("--exclude-kernel ", excluded,
                                          ": no space of that kernel among the spaces given"));
    }
  }
  std::vector<TrainingSpace> training;
  std::vector<std::string> used;
  for (auto& space : *loaded) {
    const std::string family = KernelFamily(space->kernel);
    if (std::any_of(a.exclude_kernels.begin(), a.exclude_kernels.end(),
                    [&](const std::string& k) { return KernelFamily(k) == family; })) {
      continue;
    }
    training.push_back(space->AsTrainingSpace());
    used.push_back(space->name);
  }
  auto synthetic = MakeSyntheticLandscapes(a.synthetic, a.training.seed);
  if (!synthetic.ok()) return Fail(cmd, synthetic.status());
  for (const SyntheticLandscape& l : *synthetic) training.push_back(l.AsTrainingSpace());
  if (training.empty()) return UsageError(cmd, "nothing to train on");
  std::cerr << absl::StrFormat("training on %d recorded spaces (%s) and %d synthetic ones\n",
                               used.size(), absl::StrJoin(used, ", "), synthetic->size());
  const absl::Time start = absl::Now();
  auto policy = TrainPolicy(training, a.training, [&](int it, int of, double gain, double entropy) {
    std::cerr << absl::StrFormat(
                     "iteration %d/%d  mean gain after warm-up %.3f  entropy %.2f  %.0f s\n", it,
                     of, gain, entropy, absl::ToDoubleSeconds(absl::Now() - start))
              << std::flush;
  });
  if (!policy.ok()) return Fail(cmd, policy.status());
  if (absl::Status s = WriteFileAtomically(a.out, absl::StrCat(*policy, "\n")); !s.ok()) {
    return Fail(cmd, s);
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (a.json) {
    std::cout << nlohmann::json{{"policy", a.out},
                                {"spaces", used},
                                {"synthetic", a.synthetic},
                                {"iterations", a.training.iterations},
                                {"episodes_per_iteration", a.training.episodes_per_iteration},
                                {"budget", a.training.budget},
                                {"seed", a.training.seed},
                                {"seconds", seconds}}
                     .dump(-1, ' ', false, kReplaceInvalidUtf8)
              << "\n";
  } else {
    std::cout << absl::StrFormat("wrote %s (%d iterations x %d runs over %d spaces, %.0f s)\n",
                                 a.out, a.training.iterations, a.training.episodes_per_iteration,
                                 training.size(), seconds);
  }
  return kExitOk;
}

}  // namespace

void AddPolicyTrainingOptions(CLI::App* sub, const std::string& prefix,
                              const std::string& help_prefix, PolicyTrainingOptions* training,
                              int* synthetic) {
  sub->add_option(prefix + "iterations", training->iterations, help_prefix + "PPO iterations")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  sub->add_option(prefix + "episodes", training->episodes_per_iteration,
                  help_prefix + "tuning runs per iteration")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  sub->add_option(prefix + "budget", training->budget,
                  help_prefix + "measurements per training run")
      ->check(CLI::Range(int64_t{17}, int64_t{100000}))
      ->capture_default_str();
  sub->add_option(prefix + "synthetic", *synthetic,
                  help_prefix +
                      "synthetic landscapes to train on as well "
                      "(bench/synthetic_landscape.h)")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  sub->add_option(prefix + "seed", training->seed,
                  help_prefix +
                      "seed of the training runs and the synthetic landscapes (the same seed, "
                      "the same policy)")
      ->capture_default_str();
  sub->add_flag(prefix + "whole-space-pool", training->whole_space_pool,
                help_prefix +
                    "train with each cost model's best points of the whole space in the pool "
                    "(the policy then acts on the default pool, without them)");
}

void RegisterAgentCommands(CLI::App& app, Action* action) {
  CLI::App* agent = app.add_subcommand("agent", "PPO's policy: train it from recorded spaces");
  agent->require_subcommand(1);
  auto args = std::make_shared<AgentTrainArgs>();
  CLI::App* train = agent->add_subcommand(
      "train",
      "Train the policy with PPO on recorded spaces (the default reproduces "
      "agent/pretrained/policy.json: every shared space, the default settings)");
  train->add_option("--space", args->spaces,
                    "Recorded space files (default: every file in the shared datasets' spaces/)");
  train->add_option("--exclude-kernel", args->exclude_kernels,
                    "Leave out the spaces of this kernel (as leave-one-kernel-out does)");
  train->add_option("--out", args->out, "Where to write the policy (JSON)")->capture_default_str();
  AddPolicyTrainingOptions(train, "--", "", &args->training, &args->synthetic);
  train->add_option("--learning-rate", args->training.learning_rate, "Adam's learning rate")
      ->check(CLI::Range(1e-6, 1.0))
      ->capture_default_str();
  train
      ->add_option("--gamma", args->training.gamma,
                   "Discount per pick (default: the agent's, as it fine-tunes online)")
      ->check(CLI::Range(0.0, 1.0));
  train->add_flag("--json", args->json, "A JSON line describing the result");
  train->add_flag("--force", args->force,
                  "Replace an existing --out that is not a policy (never a SQLite database)");
  train->callback([=] { *action = [=] { return RunAgentTrain(*args); }; });
}

}  // namespace ktune::cli
