// Offline training of PPO's policy across many search spaces (`ktune agent train`, and each fold
// of `ktune bench search --protocol leave-one-kernel-out`).
//
// Each iteration runs `episodes_per_iteration` tuning runs, each on a space drawn at random from
// `spaces` with a random seed, all acting with the one policy being trained (the strategy in its
// usual configuration, but without online updates), then one PPO update on their decisions. The
// reward is the strategy's own (each pick's log improvement over the best before its batch), so
// what the policy learns offline is what it is fine-tuned on online. Single-threaded and
// deterministic for a seed.
#ifndef KTUNE_AGENT_POLICY_TRAINING_H_
#define KTUNE_AGENT_POLICY_TRAINING_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/search_space.h"
#include "measurer/measurer.h"

namespace ktune {

// A space to train on: its points and a measurer that answers for them (a replay of a recording,
// or a synthetic landscape). Both must outlive the training.
struct TrainingSpace {
  std::string name;
  const SearchSpace* space = nullptr;
  Measurer* measurer = nullptr;
  TaskKey task;
};

struct PolicyTrainingOptions {
  int iterations = 100;
  int episodes_per_iteration = 4;
  int64_t budget = 128;  // measurements per episode
  double learning_rate = 3e-3;
  double gamma = -1;  // discount per pick; < 0: PolicyOptions' default
  int batch_size = 8;
  uint64_t seed = 1;
  // Train with PpoOptions::whole_space_arm set: each cost model's best points of the whole space
  // join the pool the policy picks from in training. The trained policy acts on the default pool
  // (without them) all the same: it is the pool it is used on that decides what it can pick.
  bool whole_space_pool = false;
};

// Progress after each iteration: iteration (1-based), the iterations, the mean over the
// iteration's episodes of log(best after the warm-up / best at the end), and the entropy of the
// policy's first pick (ln of the pool size for a uniform policy; lower: it prefers some).
using TrainingProgress = std::function<void(int, int, double, double)>;

// The trained policy as JSON (the format of agent/pretrained/policy.json). InvalidArgument with
// no spaces; FailedPrecondition in a build without LibTorch.
absl::StatusOr<std::string> TrainPolicy(const std::vector<TrainingSpace>& spaces,
                                        const PolicyTrainingOptions& options,
                                        const TrainingProgress& progress = nullptr);

// The kernel a recorded space belongs to, for leave-one-kernel-out: its kernel name without a
// trailing variant number, in lower case ("convolution6768" and "Convolution2442" are
// "convolution"). A recorded space's kernel name is its file's (ReadRecordFile).
std::string KernelFamily(const std::string& kernel);

}  // namespace ktune

#endif  // KTUNE_AGENT_POLICY_TRAINING_H_
