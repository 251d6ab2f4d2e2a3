#include "measurer/cpu_measurer.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "measurer/input_files.h"
#include "measurer/runner_result.h"

namespace ktune {
namespace {}  // namespace

std::string DefaultRunnerPath() { return FindRunner("ktune-runner", "KTUNE_RUNNER"); }

CpuMeasurer::CpuMeasurer(const KernelRegistry* registry, CpuMeasurerOptions options)
    : registry_(registry),
      options_(std::move(options)),
      cpu_(DescribeThisCpu()),
      device_(cpu_.ToDeviceInfo()),
      compiler_(options_.compile),
      runner_(RunnerProcess::Options{
          options_.runner_path.empty() ? DefaultRunnerPath() : options_.runner_path,
          options_.memory_limit_bytes}) {
  // A candidate or reference that hangs stops when the measurer is asked to stop (a cancelled
  // job's lease taken back, a worker stopping), not only at its timeout.
  runner_.set_stop_check([this] { return StopRequested(); });
}

absl::StatusOr<CpuMeasurer::TaskState*> CpuMeasurer::StateFor(const TaskKey& task) {
  const std::string key = task.kernel + "\n" + CanonicalJson(task.problem);
  if (auto it = tasks_.find(key); it != tasks_.end()) return it->second.get();
  auto state = std::make_unique<TaskState>();
  KTUNE_ASSIGN_OR_RETURN(state->definition, registry_->Get(task.kernel));
  const KernelDefinition& def = *state->definition;
  if (def.language != "cpp") {
    return absl::InvalidArgumentError(absl::StrCat("kernel '", def.name, "' is ", def.language,
                                                   " code; a CPU worker runs cpp kernels"));
  }
  KTUNE_ASSIGN_OR_RETURN(state->problem, def.ValidateProblem(task.problem));
  KTUNE_ASSIGN_OR_RETURN(SearchSpace space,
                         def.Space(state->problem, MachineVariables{cpu_.cores}));
  state->space = std::make_unique<SearchSpace>(std::move(space));
  runner::KernelSpec& spec = state->spec;
  spec.set_name(def.name);
  KTUNE_ASSIGN_OR_RETURN(std::vector<int64_t> problem_values, def.ProblemValues(state->problem));
  for (int64_t v : problem_values) spec.add_problem(v);
  int outputs = 0;
  for (const BufferSpec& b : def.buffers) {
    KTUNE_ASSIGN_OR_RETURN(double n, def.EvaluateForProblem(b.elements, state->problem));
    if (!(n >= 1) || n > kMaxBufferElements) {
      return absl::InvalidArgumentError(
          absl::StrCat("buffer ", b.name, " would hold ", n, " floats for this problem"));
    }
    spec.add_buffer_elements(static_cast<int64_t>(n));
    outputs += b.output;
  }
  spec.set_num_outputs(outputs);
  spec.set_rtol(def.rtol);
  spec.set_atol(def.atol);
  spec.set_componentwise_error(def.componentwise_error);
  spec.set_seed(options_.seed);
  if (auto data = state->problem.find("data"); data != state->problem.end()) {
    std::string distribution = FormatParamValue(data->second);
    if (absl::StartsWith(distribution, "file:")) {
      KTUNE_ASSIGN_OR_RETURN(
          std::string path,
          ResolveInputFile(distribution, options_.inputs_dir.empty() ? DefaultInputsDir()
                                                                     : options_.inputs_dir));
      distribution = "file:" + path;
    }
    spec.set_distribution(distribution);
  }
  return (tasks_[key] = std::move(state)).get();
}

absl::StatusOr<std::vector<MeasureResult>> CpuMeasurer::Measure(
    const TaskKey& task, const std::vector<Configuration>& configs) {
  KTUNE_ASSIGN_OR_RETURN(TaskState * state, StateFor(task));
  // A reference that timed out is tried again by a later call (a later lease or job): the
  // machine may only have been busy.
  state->prepare_timed_out.reset();
  std::vector<MeasureResult> results;
  for (const Configuration& config : configs) {
    if (StopRequested()) return Stopped(results.size(), configs.size());
    KTUNE_ASSIGN_OR_RETURN(MeasureResult r, MeasureOne(*state, config));
    if (r.status == MeasurementStatus::kOk) {
      state->best_ms = state->best_ms > 0 ? std::min(state->best_ms, *r.time_ms) : *r.time_ms;
    }
    results.push_back(std::move(r));
  }
  return results;
}

absl::StatusOr<MeasureResult> CpuMeasurer::MeasureOne(TaskState& state,
                                                      const Configuration& config) {
  const KernelDefinition& def = *state.definition;
  absl::StatusOr<Point> point = state.space->ToPoint(config);
  if (!point.ok())
    return FailedResult(MeasurementStatus::kInvalidConfig, point.status().ToString());
  if (!state.space->IsValid(*point)) {
    return FailedResult(MeasurementStatus::kInvalidConfig,
                        "the configuration breaks the kernel's constraints for this problem");
  }
  absl::StatusOr<std::vector<int64_t>> values = def.ConfigValues(config);
  if (!values.ok())
    return FailedResult(MeasurementStatus::kInvalidConfig, values.status().ToString());

  runner::RunRequest request;
  *request.mutable_kernel() = state.spec;
  if (!def.builtin) {
    KTUNE_ASSIGN_OR_RETURN(CpuBuild build, compiler_.Build(def, config));
    if (!build.ok) return FailedResult(MeasurementStatus::kCompileError, build.message);
    request.mutable_kernel()->set_library_path(build.library_path);
  }

  // Prepare first (inputs, reference) under its own generous deadline.
  if (state.prepare_timed_out) {
    MeasureResult again = *state.prepare_timed_out;
    absl::StrAppend(&again.message, " for an earlier candidate of this task; not tried again");
    return again;
  }
  runner::RunResponse response;
  std::string death;
  KTUNE_ASSIGN_OR_RETURN(RunnerProcess::Outcome outcome,
                         runner_.Call(request, options_.prepare_timeout_ms, &response, &death));
  if (outcome == RunnerProcess::Outcome::kTimedOut) {
    // The reference is the task's, not the configuration's: the task's other candidates fail
    // at once instead of waiting as long again each.
    state.prepare_timed_out =
        FailedResult(MeasurementStatus::kTimeout,
                     absl::StrCat("preparing the inputs and the reference output took longer than ",
                                  options_.prepare_timeout_ms / 1000.0, " s"));
    return *state.prepare_timed_out;
  }
  if (outcome == RunnerProcess::Outcome::kDied) {
    return FailedResult(
        MeasurementStatus::kRuntimeError,
        absl::StrCat("the runner ", death,
                     " while loading the kernel or computing the reference output"));
  }
  if (response.status() != runner::RunResponse::OK) {
    return FailedResult(MeasurementStatus::kRuntimeError, response.message());
  }

  for (int64_t v : *values) request.add_config(v);
  request.set_warmup_runs(options_.warmup_runs);
  request.set_min_repeats(options_.min_repeats);
  request.set_max_repeats(options_.max_repeats);
  request.set_target_cv(options_.target_cv);
  request.set_max_seconds(options_.max_seconds);
  request.set_min_sample_ms(options_.min_sample_ms);
  const int64_t timeout_ms =
      CandidateTimeoutMs(options_.run_timeout_ms, state.best_ms, options_.relative_timeout,
                         options_.warmup_runs, options_.min_repeats, options_.max_seconds);
  response.Clear();
  KTUNE_ASSIGN_OR_RETURN(outcome, runner_.Call(request, timeout_ms, &response, &death));
  if (auto unanswered = UnansweredResult(outcome, timeout_ms, death)) return *unanswered;
  return ResultFromRunner(response);
}

}  // namespace ktune
