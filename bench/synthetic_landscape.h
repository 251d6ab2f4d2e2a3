// Synthetic tuning landscapes: random search spaces with GPU-like structure, to train PPO's
// policy on more than the recorded spaces (and on no recorded kernel: they are safe training data
// for leave-one-kernel-out).
//
// Each landscape draws 3-7 parameters of 2-9 values (powers of two or small ranges), a constraint
// on the product of two of them (as block sizes have), and a time per configuration:
//   log t = sum_k w_k (x_k - c_k)^2            a bowl per parameter (x: the value's index in [0,
//   1])
//         + sum over 1-3 pairs b (x_i - x_j)^2  interactions, so that one step at a time is slow
//         - a needle's depth                   where 2-3 parameters take given values
// and, in about a third of them, a failing corner (two parameters both high fail, as too many
// registers would). Deterministic for a seed.
#ifndef KTUNE_BENCH_SYNTHETIC_LANDSCAPE_H_
#define KTUNE_BENCH_SYNTHETIC_LANDSCAPE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "agent/policy_training.h"
#include "kernels/search_space.h"
#include "measurer/measurer.h"

namespace ktune {

struct SyntheticLandscape {
  std::string name;  // "synthetic-<seed>"
  std::unique_ptr<SearchSpace> space;
  std::unique_ptr<Measurer> measurer;
  TrainingSpace AsTrainingSpace() const;
};

absl::StatusOr<SyntheticLandscape> MakeSyntheticLandscape(uint64_t seed);
// `count` landscapes of at least 256 configurations each, from seeds first_seed, first_seed + 1,
// ... (a seed whose space is smaller is passed over).
absl::StatusOr<std::vector<SyntheticLandscape>> MakeSyntheticLandscapes(int count,
                                                                        uint64_t first_seed);

}  // namespace ktune

#endif  // KTUNE_BENCH_SYNTHETIC_LANDSCAPE_H_
