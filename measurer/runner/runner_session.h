// The measuring side of ktune-runner: holds one prepared kernel and problem (inputs, reference
// outputs) and measures configurations of it. Runs inside the isolated child; everything that
// can crash or hang here costs the child, never the worker.
#ifndef KTUNE_MEASURER_RUNNER_RUNNER_SESSION_H_
#define KTUNE_MEASURER_RUNNER_RUNNER_SESSION_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_kernel_abi.h"
#include "measurer/runner/guarded_buffer.h"
#include "measurer/runner/runner.pb.h"

namespace ktune::runner {

class RunnerSession {
 public:
  RunnerSession() = default;
  ~RunnerSession();

  // Prepares (when the kernel spec changed) and, when the request has a configuration, checks
  // and times it.
  RunResponse Handle(const RunRequest& request);

 private:
  // Resolves the kernel, allocates and fills buffers, computes the reference. Empty on success,
  // else the message.
  std::string Prepare(const KernelSpec& spec);
  RunResponse Measure(const RunRequest& request);
  // Runs the candidate once; false (with `response` filled) when it refused or threw.
  bool RunOnce(const ktune_cpu_call& call, RunResponse& response);
  // Checks canaries and the inputs' checksum; false (with `response` filled) when violated.
  bool MemoryIntact(RunResponse& response);
  // Fills reference_magnitude_: the reference run on the inputs' absolute values, each output
  // element's sum of |terms| (spec.componentwise_error). Empty on success, else the message.
  std::string ComputeMagnitudes(ktune_cpu_call call);
  // Compares outputs with the reference; false (with `response` filled) when they differ.
  // Sets `max_rel_error` to the outputs' largest error relative to their reference's scale, or
  // to each element's magnitude when the error is componentwise.
  bool OutputsMatch(RunResponse& response, double& max_rel_error);

  std::string prepared_key_;
  KernelSpec spec_;
  ktune_cpu_kernel_fn kernel_ = nullptr;
  ktune_cpu_kernel_fn reference_ = nullptr;
  std::vector<std::unique_ptr<GuardedBuffer>> buffers_;
  std::vector<float*> buffer_ptrs_;
  std::vector<std::vector<float>> reference_outputs_;
  std::vector<double> reference_scale_;  // max |ref| per output
  std::vector<std::vector<float>> reference_magnitude_;  // per output; empty: not componentwise
  uint64_t input_checksum_ = 0;
  std::map<std::string, void*> libraries_;  // dlopen handles by path
};

}  // namespace ktune::runner

#endif  // KTUNE_MEASURER_RUNNER_RUNNER_SESSION_H_
