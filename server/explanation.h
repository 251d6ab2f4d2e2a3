// Why a configuration is served for a task (the Explain RPC and `ktune explain`): which records
// it comes from, how sure the choice is against the runner-up, which parameters matter, and, for
// a prediction, the tuned neighbour it comes from.
//
// Everything is computed from the tuning database's records of one task (the one the answer comes
// from), so an explanation is as good as the measurements behind it, and says how many there are.
#ifndef KTUNE_SERVER_EXPLANATION_H_
#define KTUNE_SERVER_EXPLANATION_H_

#include <string>

#include "absl/status/statusor.h"
#include "db/tuning_database.h"
#include "kernels/kernel_registry.h"
#include "ktune/v1/tuning_service.pb.h"

namespace ktune {

// The answer QueryBest would give for `query` (exact, device class, family, then a prediction
// from the registry's kernel), explained. top_k is ignored. Errors only from the database.
absl::StatusOr<v1::ExplainResponse> Explain(TuningDatabase& db, const KernelRegistry& registry,
                                            const BestQuery& query);

// The explanation for a person: a few lines, the answer first. `asked` names the task asked for.
std::string ExplanationText(const v1::ExplainResponse& explanation, const BestQuery& asked);

// The explanation for tools: the message as the CLI's other --json output writes it (PlainJson:
// field names as in the .proto, every field present, records as JSONL interchange lines).
std::string ExplanationJson(const v1::ExplainResponse& explanation);

}  // namespace ktune

#endif  // KTUNE_SERVER_EXPLANATION_H_
