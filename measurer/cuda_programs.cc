#include "measurer/cuda_programs.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "measurer/cpu_kernel_compiler.h"
#include "measurer/runner_process.h"

namespace ktune {
namespace {

// KT_F16, KT_BF16, KT_I8 and KT_PROBLEM_<NAME> for every program of a problem.
absl::StatusOr<cuda_runner::Program> ProblemProgram(const KernelDefinition& definition,
                                                    const Problem& problem,
                                                    const std::string& arch) {
  if (definition.language != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("kernel '", definition.name, "' is ", definition.language,
                     " code; a CUDA worker runs cuda kernels"));
  }
  cuda_runner::Program program;
  program.set_source(definition.source);
  program.set_arch(arch);
  auto it = problem.find("dtype");
  const std::string dtype = it != problem.end() ? FormatParamValue(it->second) : "f32";
  program.add_defines(absl::StrCat("KT_F16=", dtype == "f16" ? 1 : 0));
  program.add_defines(absl::StrCat("KT_BF16=", dtype == "bf16" ? 1 : 0));
  program.add_defines(absl::StrCat("KT_I8=", dtype == "i8" ? 1 : 0));
  KTUNE_ASSIGN_OR_RETURN(std::vector<int64_t> values, definition.ProblemValues(problem));
  for (size_t i = 0; i < values.size(); ++i) {
    program.add_defines(absl::StrCat("KT_PROBLEM_", absl::AsciiStrToUpper(definition.problem[i].name),
                                     "=", values[i]));
  }
  return program;
}

}  // namespace

absl::StatusOr<cuda_runner::Program> CudaKernelProgram(const KernelDefinition& definition,
                                                       const Problem& problem,
                                                       const Configuration& config,
                                                       const std::string& arch) {
  KTUNE_ASSIGN_OR_RETURN(cuda_runner::Program program, ProblemProgram(definition, problem, arch));
  program.set_entry("ktune_kernel");
  for (const KernelParameter& p : definition.parameters) {
    auto it = config.find(p.name);
    if (it == config.end()) {
      return absl::InvalidArgumentError(absl::StrCat("the configuration has no ", p.name));
    }
    program.add_defines(
        absl::StrCat("KT_", absl::AsciiStrToUpper(p.name), "=", FormatParamValue(it->second)));
  }
  return program;
}

absl::StatusOr<cuda_runner::Program> CudaReferenceProgram(const KernelDefinition& definition,
                                                          const Problem& problem,
                                                          const std::string& arch) {
  KTUNE_ASSIGN_OR_RETURN(cuda_runner::Program program, ProblemProgram(definition, problem, arch));
  if (!definition.reference_source.empty()) program.set_source(definition.reference_source);
  program.set_entry("ktune_reference");
  program.add_defines("KT_REFERENCE=1");
  return program;
}

absl::StatusOr<CudaLaunchGeometry> CudaLaunchFor(const KernelDefinition& definition,
                                                 const Problem& problem,
                                                 const Configuration& config) {
  CudaLaunchGeometry g;
  static constexpr int64_t kGridLimit[3] = {(int64_t{1} << 31) - 1, 65535, 65535};
  static constexpr int64_t kBlockLimit[3] = {1024, 1024, 64};
  for (int axis = 0; axis < 3; ++axis) {
    for (bool grid : {true, false}) {
      const std::string& text = grid ? definition.launch.grid[axis] : definition.launch.block[axis];
      KTUNE_ASSIGN_OR_RETURN(double v, definition.EvaluateForConfig(text, problem, config));
      const int64_t limit = grid ? kGridLimit[axis] : kBlockLimit[axis];
      if (!(v >= 1) || v > limit || v != std::floor(v)) {
        return absl::InvalidArgumentError(absl::StrCat(grid ? "grid" : "block", " size ", std::string(1, "xyz"[axis]),
                                                       " = ", v, " (", text, ") is not in [1, ",
                                                       limit, "]"));
      }
      (grid ? g.grid : g.block)[axis] = static_cast<int64_t>(v);
    }
  }
  if (g.threads() > 1024) {
    return absl::InvalidArgumentError(absl::StrCat(g.threads(), " threads per block (> 1024)"));
  }
  KTUNE_ASSIGN_OR_RETURN(double zero,
                         definition.EvaluateForConfig(definition.launch.zero_outputs, problem, config));
  g.zero_outputs = zero != 0;
  return g;
}

std::string CudaArch(int major, int minor) { return absl::StrCat("sm_", major, minor); }

std::string DefaultCudaCacheDir() { return DefaultCacheDir() + "/cuda"; }

std::string DefaultCudaRunnerPath() { return FindRunner("ktune-cuda-runner", "KTUNE_CUDA_RUNNER"); }

}  // namespace ktune
