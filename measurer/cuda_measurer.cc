#include "measurer/cuda_measurer.h"

#include <algorithm>
#include <limits>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "measurer/cuda/cuda_element_types.h"
#include "measurer/cuda_programs.h"
#include "measurer/runner_result.h"

namespace ktune {
namespace {

std::string FamilyOf(int major, int minor) {
  switch (major) {
    case 7:
      return minor >= 5 ? "turing" : "volta";
    case 8:
      return minor == 9 ? "ada" : "ampere";
    case 9:
      return "hopper";
    case 10:
    case 11:
    case 12:
      return "blackwell";
    default:
      return "";
  }
}

}  // namespace

CudaRunnerClient::CudaRunnerClient(std::string runner_path)
    : process_(RunnerProcess::Options{
          runner_path.empty() ? DefaultCudaRunnerPath() : std::move(runner_path),
          /*memory_limit_bytes=*/0}) {}  // CUDA reserves far more address space than it uses

absl::StatusOr<cuda_runner::DeviceDescription> CudaRunnerClient::Describe(int device,
                                                                          int64_t timeout_ms) {
  cuda_runner::Request request;
  request.mutable_describe()->set_device(device);
  cuda_runner::Response response;
  std::string death;
  KTUNE_ASSIGN_OR_RETURN(RunnerProcess::Outcome outcome,
                         process_.Call(request, timeout_ms, &response, &death));
  if (outcome == RunnerProcess::Outcome::kTimedOut) {
    return absl::DeadlineExceededError("the CUDA runner did not describe the device in time");
  }
  if (outcome == RunnerProcess::Outcome::kDied) {
    return absl::InternalError(absl::StrCat("the CUDA runner ", death, " describing the device"));
  }
  return response.device();
}

absl::StatusOr<std::vector<cuda_runner::CompileResult>> CudaRunnerClient::Compile(
    const std::vector<cuda_runner::Program>& programs, const std::string& cache_dir, int threads,
    int64_t timeout_ms) {
  cuda_runner::Request request;
  for (const cuda_runner::Program& p : programs) *request.mutable_compile()->add_programs() = p;
  request.mutable_compile()->set_cache_dir(cache_dir);
  request.mutable_compile()->set_threads(threads);
  cuda_runner::Response response;
  std::string death;
  KTUNE_ASSIGN_OR_RETURN(RunnerProcess::Outcome outcome,
                         process_.Call(request, timeout_ms, &response, &death));
  if (outcome == RunnerProcess::Outcome::kTimedOut) {
    return absl::DeadlineExceededError(absl::StrCat(
        "compiling ", programs.size(), " programs took longer than ", timeout_ms / 1000.0, " s"));
  }
  if (outcome == RunnerProcess::Outcome::kDied) {
    return absl::InternalError(absl::StrCat("the CUDA runner ", death, " while compiling"));
  }
  if (response.compile().results_size() != static_cast<int>(programs.size())) {
    return absl::InternalError("the CUDA runner answered a compile request with the wrong count");
  }
  return std::vector<cuda_runner::CompileResult>(response.compile().results().begin(),
                                                 response.compile().results().end());
}

absl::StatusOr<RunnerProcess::Outcome> CudaRunnerClient::Run(const cuda_runner::RunRequest& request,
                                                             int64_t timeout_ms,
                                                             cuda_runner::Response* response,
                                                             std::string* death) {
  cuda_runner::Request wrapped;
  *wrapped.mutable_run() = request;
  KTUNE_ASSIGN_OR_RETURN(RunnerProcess::Outcome outcome,
                         process_.Call(wrapped, timeout_ms, response, death));
  if (outcome == RunnerProcess::Outcome::kAnswered && response->restart()) {
    process_.Stop();  // it exits by itself; the next call starts a fresh one
  }
  return outcome;
}

DeviceInfo CudaDeviceInfo(const cuda_runner::DeviceDescription& d) {
  ParamMap facts = {{"kind", std::string("cuda")},
                    {"name", d.name()},
                    {"compute_capability", absl::StrCat(d.cc_major(), ".", d.cc_minor())},
                    {"sm_count", int64_t{d.sm_count()}},
                    {"memory_bytes", d.memory_bytes()},
                    {"l2_bytes", d.l2_bytes()},
                    {"clock_khz", int64_t{d.clock_khz()}},
                    {"memory_clock_khz", int64_t{d.memory_clock_khz()}},
                    {"driver_version", int64_t{d.driver_version()}},
                    {"nvrtc_version", d.nvrtc_version()},
                    {"cublas_version", d.cublas_version()}};
  DeviceInfo info;
  info.fingerprint_json = CanonicalJson(facts);
  info.device_class = d.name();
  info.family = FamilyOf(d.cc_major(), d.cc_minor());
  return info;
}

CudaMeasurer::CudaMeasurer(const KernelRegistry* registry, CudaMeasurerOptions options)
    : registry_(registry), options_(std::move(options)), client_(options_.runner_path) {
  if (options_.cache_dir.empty()) options_.cache_dir = DefaultCudaCacheDir();
  // As the CPU measurer's: a hung candidate or build stops with the lease or the worker.
  client_.set_stop_check([this] { return StopRequested(); });
}

absl::StatusOr<std::unique_ptr<CudaMeasurer>> CudaMeasurer::Create(const KernelRegistry* registry,
                                                                   CudaMeasurerOptions options) {
  std::unique_ptr<CudaMeasurer> m(new CudaMeasurer(registry, std::move(options)));
  KTUNE_ASSIGN_OR_RETURN(m->description_, m->client_.Describe(m->options_.device));
  if (!m->description_.available()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no usable CUDA device cuda:", m->options_.device, ": ", m->description_.reason()));
  }
  m->device_ = CudaDeviceInfo(m->description_);
  return m;
}

std::string CudaMeasurer::arch() const {
  return CudaArch(description_.cc_major(), description_.cc_minor());
}

absl::StatusOr<CudaMeasurer::TaskState*> CudaMeasurer::StateFor(const TaskKey& task) {
  const std::string key = task.kernel + "\n" + CanonicalJson(task.problem);
  if (auto it = tasks_.find(key); it != tasks_.end()) return it->second.get();
  auto state = std::make_unique<TaskState>();
  KTUNE_ASSIGN_OR_RETURN(state->definition, registry_->Get(task.kernel));
  const KernelDefinition& def = *state->definition;
  if (def.language != "cuda") {
    return absl::InvalidArgumentError(absl::StrCat("kernel '", def.name, "' is ", def.language,
                                                   " code; a CUDA worker runs cuda kernels"));
  }
  KTUNE_ASSIGN_OR_RETURN(state->problem, def.ValidateProblem(task.problem));
  KTUNE_ASSIGN_OR_RETURN(SearchSpace space, def.Space(state->problem, MachineVariables{}));
  state->space = std::make_unique<SearchSpace>(std::move(space));

  cuda_runner::TaskSpec& spec = state->spec;
  spec.set_device(options_.device);
  const std::string dtype = FormatParamValue(state->problem.at("dtype"));
  spec.set_dtype(dtype);
  KTUNE_ASSIGN_OR_RETURN(std::vector<int64_t> problem_values, def.ProblemValues(state->problem));
  for (size_t i = 0; i < problem_values.size(); ++i) {
    if (problem_values[i] > std::numeric_limits<int32_t>::max()) {
      return absl::InvalidArgumentError(absl::StrCat("problem parameter ", def.problem[i].name,
                                                     " = ", problem_values[i],
                                                     " does not fit the kernel's int argument"));
    }
    spec.add_problem(problem_values[i]);
  }
  int outputs = 0;
  for (const BufferSpec& b : def.buffers) {
    KTUNE_ASSIGN_OR_RETURN(double n, def.EvaluateForProblem(b.elements, state->problem));
    if (!(n >= 1) || n > kMaxBufferElements) {
      return absl::InvalidArgumentError(
          absl::StrCat("buffer ", b.name, " would hold ", n, " elements for this problem"));
    }
    KTUNE_ASSIGN_OR_RETURN(cuda::CudaElementType type,
                           cuda::CudaBufferElementType(dtype, b.output));
    spec.add_buffer_elements(static_cast<int64_t>(n));
    spec.add_buffer_types(cuda::CudaElementTypeName(type));
    outputs += b.output;
    if (b.output) state->output_bytes += n * cuda::CudaElementBytes(type);
  }
  spec.set_num_outputs(outputs);
  const auto [rtol, atol] = def.ToleranceFor(dtype);
  spec.set_rtol(rtol);
  spec.set_atol(atol);
  spec.set_seed(options_.seed);
  KTUNE_ASSIGN_OR_RETURN(double items,
                         def.EvaluateForProblem(def.launch.reference_items, state->problem));
  spec.set_reference_items(static_cast<int64_t>(items));
  return (tasks_[key] = std::move(state)).get();
}

absl::StatusOr<std::vector<MeasureResult>> CudaMeasurer::Measure(
    const TaskKey& task, const std::vector<Configuration>& configs) {
  KTUNE_ASSIGN_OR_RETURN(TaskState * state, StateFor(task));
  const KernelDefinition& def = *state->definition;
  std::vector<MeasureResult> results(configs.size());
  std::vector<bool> runnable(configs.size(), false);

  // Programs to compile: the reference once per task, then every valid candidate.
  std::vector<cuda_runner::Program> programs;
  std::vector<int> program_of(configs.size(), -1);
  int reference_program = -1;
  if (state->spec.reference_cubin().empty()) {
    KTUNE_ASSIGN_OR_RETURN(cuda_runner::Program reference,
                           CudaReferenceProgram(def, state->problem, arch()));
    reference_program = static_cast<int>(programs.size());
    programs.push_back(std::move(reference));
  }
  for (size_t i = 0; i < configs.size(); ++i) {
    absl::StatusOr<Point> point = state->space->ToPoint(configs[i]);
    if (!point.ok()) {
      results[i] = FailedResult(MeasurementStatus::kInvalidConfig, point.status().ToString());
      continue;
    }
    if (!state->space->IsValid(*point)) {
      results[i] =
          FailedResult(MeasurementStatus::kInvalidConfig,
                       "the configuration breaks the kernel's constraints for this problem");
      continue;
    }
    runnable[i] = true;
    if (!def.vendor_library.empty()) continue;
    absl::StatusOr<cuda_runner::Program> program =
        CudaKernelProgram(def, state->problem, configs[i], arch());
    if (!program.ok()) {
      results[i] = FailedResult(MeasurementStatus::kInvalidConfig, program.status().ToString());
      runnable[i] = false;
      continue;
    }
    program_of[i] = static_cast<int>(programs.size());
    programs.push_back(*std::move(program));
  }

  std::vector<cuda_runner::CompileResult> builds;
  if (StopRequested()) return Stopped(0, configs.size());  // before the batch's builds
  if (!programs.empty()) {
    absl::StatusOr<std::vector<cuda_runner::CompileResult>> compiled = client_.Compile(
        programs, options_.cache_dir, options_.compile_threads, options_.compile_timeout_ms);
    if (!compiled.ok()) {
      // The compiler crashed or hung on one of them: every candidate of the batch reports it.
      for (size_t i = 0; i < configs.size(); ++i) {
        if (runnable[i]) {
          results[i] = FailedResult(MeasurementStatus::kCompileError, compiled.status().ToString());
        }
      }
      return results;
    }
    builds = *std::move(compiled);
  }
  if (reference_program >= 0) {
    const cuda_runner::CompileResult& ref = builds[reference_program];
    if (!ref.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the reference of kernel '", def.name, "' does not compile: ", ref.log()));
    }
    state->spec.set_reference_cubin(ref.cubin_path());
  }
  std::optional<MeasureResult> unprepared;  // the task's inputs or reference failed
  for (size_t i = 0; i < configs.size(); ++i) {
    if (!runnable[i]) continue;
    if (StopRequested()) return Stopped(i, configs.size());
    if (unprepared) {
      results[i] = *unprepared;
      continue;
    }
    const cuda_runner::CompileResult* build = program_of[i] >= 0 ? &builds[program_of[i]] : nullptr;
    results[i] = RunOne(*state, configs[i], build);
    if (absl::StartsWith(results[i].message, "preparing the task failed")) unprepared = results[i];
    if (results[i].status == MeasurementStatus::kOk) {
      state->best_ms =
          state->best_ms > 0 ? std::min(state->best_ms, *results[i].time_ms) : *results[i].time_ms;
    }
  }
  return results;
}

MeasureResult CudaMeasurer::RunOne(TaskState& state, const Configuration& config,
                                   const cuda_runner::CompileResult* build) {
  const KernelDefinition& def = *state.definition;
  if (build != nullptr && !build->ok()) {
    return FailedResult(MeasurementStatus::kCompileError, build->log());
  }
  cuda_runner::RunRequest request;
  *request.mutable_task() = state.spec;
  if (build != nullptr) {
    request.set_cubin_path(build->cubin_path());
    absl::StatusOr<CudaLaunchGeometry> launch = CudaLaunchFor(def, state.problem, config);
    if (!launch.ok())
      return FailedResult(MeasurementStatus::kInvalidConfig, launch.status().ToString());
    for (int axis = 0; axis < 3; ++axis) {
      request.add_grid(static_cast<uint32_t>(launch->grid[axis]));
      request.add_block(static_cast<uint32_t>(launch->block[axis]));
    }
    request.set_zero_outputs(launch->zero_outputs);
  } else {
    request.set_vendor_library(def.vendor_library);
    absl::StatusOr<std::vector<int64_t>> values = def.ConfigValues(config);
    if (!values.ok())
      return FailedResult(MeasurementStatus::kInvalidConfig, values.status().ToString());
    for (int64_t v : *values) request.add_vendor_config(v);
  }
  request.set_warmup_runs(options_.warmup_runs);
  request.set_min_repeats(options_.min_repeats);
  request.set_max_repeats(options_.max_repeats);
  request.set_target_cv(options_.target_cv);
  request.set_max_seconds(options_.max_seconds);
  request.set_min_sample_ms(options_.min_sample_ms);
  request.set_flush_l2(options_.flush_l2);

  // The run's time: absolute, or relative to the task's best; plus copying the outputs back and
  // comparing them (at 100 MB/s at worst), plus preparing the task when the runner does not
  // hold it (a new task, or a new runner after a crash or timeout).
  int64_t timeout_ms =
      CandidateTimeoutMs(options_.run_timeout_ms, state.best_ms, options_.relative_timeout,
                         options_.warmup_runs, options_.min_repeats, options_.max_seconds);
  timeout_ms += static_cast<int64_t>(state.output_bytes / 1e5);
  const std::string task_key = state.spec.SerializeAsString();
  if (!client_.running() || client_.starts() != prepared_in_start_ || prepared_task_ != task_key) {
    timeout_ms += options_.prepare_timeout_ms;
  }
  cuda_runner::Response response;
  std::string death;
  absl::StatusOr<RunnerProcess::Outcome> outcome =
      client_.Run(request, timeout_ms, &response, &death);
  if (!outcome.ok())
    return FailedResult(MeasurementStatus::kRuntimeError, outcome.status().ToString());
  if (*outcome == RunnerProcess::Outcome::kAnswered && client_.running()) {
    prepared_task_ = task_key;
    prepared_in_start_ = client_.starts();
  }
  if (auto unanswered = UnansweredResult(*outcome, timeout_ms, death)) return *unanswered;
  if (!response.error().empty()) {
    return FailedResult(MeasurementStatus::kRuntimeError, response.error());
  }
  return ResultFromRunner(response.run());
}

}  // namespace ktune
