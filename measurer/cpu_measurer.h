// Measures CPU kernels of a KernelRegistry on this machine.
//
// Each candidate is checked and timed in a ktune-runner child process (measurer/runner/): the
// worker never runs kernel code itself. Built-in kernels are pre-built into the runner (no
// compilation per candidate); client kernels are compiled by CpuKernelCompiler and loaded by
// the runner. Outcomes:
//   ok              correct output, times are per-run medians of samples
//   invalid_config  outside the kernel's space for this problem, or refused by the kernel
//   compile_error   the compiler's diagnostics
//   runtime_error   a signal (named), an exception, writes outside the buffers or into inputs
//   timeout         no answer within the run timeout (the child is killed)
//   wrong_result    outputs differ from the reference beyond the kernel's tolerance
// After a crash, a timeout or a memory violation the next candidate gets a fresh runner.
#ifndef KTUNE_MEASURER_CPU_MEASURER_H_
#define KTUNE_MEASURER_CPU_MEASURER_H_

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "kernels/kernel_registry.h"
#include "measurer/cpu_device.h"
#include "measurer/cpu_kernel_compiler.h"
#include "measurer/measurer.h"
#include "measurer/runner_process.h"

namespace ktune {

struct CpuMeasurerOptions {
  std::string runner_path;  // empty: $KTUNE_RUNNER, else ktune-runner beside this executable
  CpuCompileOptions compile;
  int64_t memory_limit_bytes = int64_t{16} << 30;  // address space of the runner
  int64_t prepare_timeout_ms = 600'000;            // inputs and reference, once per task
  int64_t run_timeout_ms = 20'000;                 // one candidate, all its runs
  // Once a task has an ok result, a candidate is also stopped after this many times the best
  // time per run, times its runs, plus the sampling cap: far slower candidates are timeouts.
  double relative_timeout = 50;
  int warmup_runs = 1;
  int min_repeats = 5;
  int max_repeats = 30;
  double target_cv = 0.02;
  double max_seconds = 0.25;  // sampling cap per candidate (after min_repeats)
  double min_sample_ms = 2;   // fast kernels repeat inside a sample until it lasts this long
  uint64_t seed = 1;          // of the random inputs
  std::string inputs_dir;     // users' inputs files (data=file:<hash>); empty: DefaultInputsDir()
};

class CpuMeasurer : public Measurer {
 public:
  // `registry` must outlive the measurer.
  CpuMeasurer(const KernelRegistry* registry, CpuMeasurerOptions options = {});

  DeviceInfo device() const override { return device_; }
  const CpuDescription& cpu() const { return cpu_; }

  // Errors (the call fails) only when the task is unusable (unknown kernel, bad problem) or the
  // runner cannot be started; every candidate outcome is a MeasureResult.
  absl::StatusOr<std::vector<MeasureResult>> Measure(
      const TaskKey& task, const std::vector<Configuration>& configs) override;

  // FailedPrecondition when the measurement runner is not executable: every candidate would
  // fail (stored as runtime_error records), so commands check it before they start.
  absl::Status CheckRunner() const { return runner_.CheckExecutable(); }

  // Runners started so far (1 + restarts after crashes and timeouts).
  int64_t runner_starts() const { return runner_.starts(); }
  const CpuKernelCompiler& compiler() const { return compiler_; }

 private:
  struct TaskState {
    const KernelDefinition* definition = nullptr;
    Problem problem;
    std::unique_ptr<SearchSpace> space;
    runner::KernelSpec spec;  // library_path filled per build
    double best_ms = 0;       // 0 until an ok result
    // Set once preparing the inputs and reference timed out: the result of every later
    // candidate of the same Measure call.
    std::optional<MeasureResult> prepare_timed_out;
  };
  absl::StatusOr<TaskState*> StateFor(const TaskKey& task);
  absl::StatusOr<MeasureResult> MeasureOne(TaskState& state, const Configuration& config);

  const KernelRegistry* registry_;
  CpuMeasurerOptions options_;
  CpuDescription cpu_;
  DeviceInfo device_;
  CpuKernelCompiler compiler_;
  RunnerProcess runner_;
  std::map<std::string, std::unique_ptr<TaskState>> tasks_;  // by kernel + problem JSON
};

// The runner beside the running executable (or $KTUNE_RUNNER).
std::string DefaultRunnerPath();

}  // namespace ktune

#endif  // KTUNE_MEASURER_CPU_MEASURER_H_
