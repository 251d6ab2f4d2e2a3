// A tunable kernel: what it computes (problem parameters, buffers, FLOP and byte counts), how it
// may be configured (its search space) and what an untuned library would run (its default
// configuration). Built-in kernels (KernelRegistry) and kernels registered by clients share this
// one description.
//
// Expressions (constraints, buffer sizes, FLOP/byte counts, default values) are Python-style, as
// in kernels/expression.h, over the problem parameters and the machine variables below; the
// constraints also read the tunable parameters.
#ifndef KTUNE_KERNELS_KERNEL_DEFINITION_H_
#define KTUNE_KERNELS_KERNEL_DEFINITION_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/configuration.h"
#include "kernels/search_space.h"

namespace ktune {

struct KernelParameter {
  std::string name;
  std::vector<int64_t> values;  // in tuning order; no duplicates
  // Run-time compiled kernels see compile-time parameters as macros KT_<NAME>; each distinct
  // set of their values is one build. Built-in kernels are pre-built for every such set.
  bool compile_time = false;
  std::string description;
  // The machine's core count joins `values` (kept ascending) when it is not there already, so
  // that "all cores" is always a choice.
  bool add_cores = false;
};

struct ProblemParameter {
  std::string name;
  int64_t min = 1;  // inclusive bounds checked by ValidateProblem
  int64_t max = 1 << 20;
  std::string description;
};

// The most elements a buffer may hold: a problem that needs more is refused (ValidateProblem),
// and the measurers allocate no more.
inline constexpr double kMaxBufferElements = 4e9;

struct BufferSpec {
  std::string name;
  std::string elements;  // expression over the problem: number of float32 elements
  bool output = false;   // outputs are checked against the reference; inputs are random
};

// How a CUDA kernel (language "cuda") is launched. Expressions over the problem parameters and
// the tunable parameters; see kernels/cuda/README.md for the source contract.
struct CudaLaunch {
  std::array<std::string, 3> grid = {"1", "1", "1"};   // blocks in x, y, z
  std::array<std::string, 3> block = {"1", "1", "1"};  // threads per block in x, y, z
  // Work items of the reference kernel (ktune_reference runs a grid-stride loop over them).
  std::string reference_items = "1";
  // Nonzero: outputs are zeroed before every run (kernels that accumulate with atomics, such as
  // split-K GEMM); otherwise they are filled with NaN before the checked run.
  std::string zero_outputs = "0";
};

// What the machine contributes to expressions: `cores` (cores the kernel may use).
struct MachineVariables {
  int64_t cores = 1;
};

// The `data` problem values of CPU kernels: how the runner draws their inputs (seeded).
//   uniform       uniform in [-1, 1] (the default)
//   normal        standard normal
//   heavy_tailed  Student's t with 3 degrees of freedom: rare large values, which stretch the
//                 scales of a quantised format
// or "file:<16 hex digits>": a user's inputs file, named by its content hash
// (measurer/input_files.h).
inline constexpr const char* kInputDistributions[] = {"uniform", "normal", "heavy_tailed"};

struct KernelDefinition {
  std::string name;         // [a-z0-9_]+
  std::string language;     // "cpp" (CPU) or "cuda"
  std::string description;  // one line for people
  std::string source;       // the template; for built-ins a hash of the implementation's files
  std::vector<KernelParameter> parameters;
  std::vector<std::string> constraints;
  std::vector<ProblemParameter> problem;
  std::vector<std::string> dtypes = {"f32"};  // accepted `dtype` problem values, first = default
  std::vector<BufferSpec> buffers;            // inputs first, then outputs
  std::string flops;                          // expression: floating-point operations per run
  std::string bytes;                          // expression: bytes a perfect cache would move
  std::vector<std::pair<std::string, std::string>> default_config;  // name -> expression
  // An output passes when every element has |out - ref| <= atol + rtol * max|ref| (the largest
  // reference magnitude of that buffer: cancellation near zero is not an error) and no NaN.
  double rtol = 1e-4;
  double atol = 1e-5;
  // How the stored error (Record::max_rel_error) is normalised. False: max |out - ref| / max|ref|
  // per output, one figure for the whole output. True, for a kernel that is a sum of products of
  // its inputs (a gemm, a convolution): each element's error is measured against the magnitude
  // of the terms it sums, max |out - ref| / (|A| |B|) elementwise (the componentwise error of
  // numerical analysis), the magnitude being the reference run on the inputs' absolute values.
  // Only that sees an output channel lost beside a much larger one (int8 with one scale for the
  // whole tensor). CPU kernels only; part of the version. The pass/fail tolerance is rtol either
  // way.
  bool componentwise_error = false;
  // Overrides of rtol/atol for a dtype (e.g. "f16"), as {dtype, {rtol, atol}}.
  std::vector<std::pair<std::string, std::pair<double, double>>> dtype_tolerance;
  bool builtin = false;  // pre-built into the runner; otherwise compiled from `source`
  CudaLaunch launch;     // language "cuda" only
  // Set for vendor-library baselines (e.g. "cublas"): the runner calls that library's routine
  // instead of compiling `source`; the parameters choose among the library's own options.
  std::string vendor_library;
  // CUDA: the template whose ktune_reference checks results when `source` is not one (vendor
  // baselines); empty: `source`.
  std::string reference_source;

  // Content hash of the source, parameters, constraints and buffers (16 hex digits): records of
  // different versions are different tasks.
  std::string Version() const;

  // Checks a problem given on the command line or over the API: every problem parameter present,
  // an integer within its bounds, nothing unknown; `dtype` optional (one of `dtypes`); `data`
  // optional for CPU kernels (one of kInputDistributions: what the inputs are drawn from, which
  // decides the error a lower precision makes; "uniform", the default, is left out so that the
  // problem is the same as without it). Returns the problem with `dtype` filled in.
  // InvalidArgument saying which parameter and why otherwise.
  absl::StatusOr<Problem> ValidateProblem(const Problem& problem) const;
  // Whether a worker can allocate the buffers of a validated problem (kMaxBufferElements each):
  // checked where a problem is to be measured (a job, a tune), not where records are read or
  // queried (an older release stored records of larger ones). InvalidArgument naming the buffer.
  // (Every configuration of M=N=K=65536 was stored as a runtime_error.)
  absl::Status CheckBuffersFit(const Problem& problem) const;

  // The search space for a validated problem on a machine.
  absl::StatusOr<SearchSpace> Space(const Problem& problem, const MachineVariables& machine) const;

  // The default configuration for a problem on a machine; it is in Space(problem, machine).
  absl::StatusOr<Configuration> DefaultConfiguration(const Problem& problem,
                                                     const MachineVariables& machine) const;

  // A copy that tunes with exactly `threads` threads: its `threads` parameter constrained to that
  // value and its default set to it (`ktune tune --threads`, a job's `threads`). Only its space and
  // default are used: records keep the original kernel's Version(). InvalidArgument when the
  // kernel has no `threads` parameter.
  absl::StatusOr<KernelDefinition> WithFixedThreads(int threads) const;

  // Evaluates an expression of this definition (flops, bytes, a buffer size) for a problem.
  absl::StatusOr<double> EvaluateForProblem(const std::string& expression, const Problem& problem,
                                            const MachineVariables& machine = {}) const;

  // {rtol, atol} for a dtype: its override, else rtol and atol.
  std::pair<double, double> ToleranceFor(const std::string& dtype) const;

  // Evaluates an expression over a problem and a configuration (launch sizes of CUDA kernels).
  absl::StatusOr<double> EvaluateForConfig(const std::string& expression, const Problem& problem,
                                           const Configuration& config) const;

  // Integer values in the ABI's order, for a validated problem and a configuration of Space().
  absl::StatusOr<std::vector<int64_t>> ProblemValues(const Problem& problem) const;
  absl::StatusOr<std::vector<int64_t>> ConfigValues(const Configuration& config) const;

  // Checks the definition itself: names, value lists, expressions that compile, a default
  // configuration naming every parameter. Used for client-registered kernels.
  absl::Status Validate() const;
};

}  // namespace ktune

#endif  // KTUNE_KERNELS_KERNEL_DEFINITION_H_
