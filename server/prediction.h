// A configuration for a problem never tuned on a device: the best configurations of the nearest
// tuned problem of the same kernel (same device class first, then another class of the query's
// architecture family; never a device of another family or of an unknown one), the first of them
// that the kernel's constraints allow for the asked problem. Nearness is the sum over numeric
// problem parameters of |log2(a) - log2(b)|; other parameters (dtype) must be equal.
//
// The record returned is the source measurement, for its own problem: a prediction, not a
// measurement of the asked one (QueryBest marks it MATCH_LEVEL_PREDICTED).
#ifndef KTUNE_SERVER_PREDICTION_H_
#define KTUNE_SERVER_PREDICTION_H_

#include <optional>

#include "absl/status/statusor.h"
#include "db/tuning_database.h"
#include "kernels/kernel_registry.h"

namespace ktune {

// Distance between problems: the sum over numeric parameters of |log2(a) - log2(b)|; infinity when
// a non-numeric parameter differs or the names differ.
double ProblemDistance(const Problem& a, const Problem& b);

absl::StatusOr<std::optional<Record>> PredictBest(TuningDatabase& db,
                                                  const KernelRegistry& registry,
                                                  const BestQuery& query);

}  // namespace ktune

#endif  // KTUNE_SERVER_PREDICTION_H_
