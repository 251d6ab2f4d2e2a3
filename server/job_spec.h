// Job specs: the YAML (or JSON) text operators submit, and its checks. A spec names kernels,
// problems and device classes; every combination is one task.
//
//   name: gemm-sweep
//   kernels: [gemm]                 # or [{name: gemm, version: <hash>}]
//   problems:
//     - {M: 512, N: 512, K: 512}
//     - {M: 1024, N: 1024, K: 1024}
//   device_classes: ["cpu:AMD EPYC 7B13"]
//   budget: 200                     # measurements per task
//   strategy: ppo                   # ppo | random | anneal | genetic | model
//   priority: 50                    # 0..100
//   seed: 1
//   batch_size: 8                   # candidates proposed at a time (default: the server's)
//   threads: 2                      # CPU kernels: exactly this many threads (default: any)
//   agent_share: 0.05               # strategy time / measuring time (default 0.05; 0: no limit)
//   max_rel_error: 1e-3             # accuracy budget: more error (or none measured) is
//                                   # too_inaccurate, never served (default: no budget)
#ifndef KTUNE_SERVER_JOB_SPEC_H_
#define KTUNE_SERVER_JOB_SPEC_H_

#include <string>

#include "absl/status/statusor.h"
#include "ktune/v1/tuning_service.pb.h"
#include "server/scheduler.h"
#include "server/task_spaces.h"

namespace ktune {

// Parses spec text. InvalidArgument naming the line or the field for bad YAML, unknown fields
// or wrong types.
absl::StatusOr<v1::JobSpec> ParseJobSpecText(const std::string& text);

// Checks a spec (sizes, budget, priority, strategy, every task's kernel and problem) and expands
// it into canonical tasks.
absl::StatusOr<JobRequest> ToJobRequest(const v1::JobSpec& spec, const TaskSpaces& spaces);

// Strategy enum <-> the strategy names of agent/.
std::string StrategyName(v1::Strategy s);
absl::StatusOr<v1::Strategy> ParseStrategy(const std::string& name);

}  // namespace ktune

#endif  // KTUNE_SERVER_JOB_SPEC_H_
