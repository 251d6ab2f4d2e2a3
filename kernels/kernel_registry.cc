#include "kernels/kernel_registry.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace ktune {

namespace {

std::string PairsText(const std::vector<std::pair<std::string, std::string>>& pairs) {
  return absl::StrJoin(pairs, ", ", absl::PairFormatter("="));
}

// The shortest %g text that reads back as `v` exactly: 0.05, not 0.050000000000000003.
std::string ExactText(double v) {
  for (int digits = 6; digits < 17; ++digits) {
    const std::string text = absl::StrFormat("%.*g", digits, v);
    double back = 0;
    if (absl::SimpleAtod(text, &back) && back == v) return text;
  }
  return absl::StrFormat("%.17g", v);
}

std::string TolerancesText(
    const std::vector<std::pair<std::string, std::pair<double, double>>>& tolerances) {
  std::vector<std::string> parts;
  for (const auto& [dtype, tol] : tolerances) {
    parts.push_back(absl::StrCat(dtype, ":", ExactText(tol.first), "/", ExactText(tol.second)));
  }
  return absl::StrJoin(parts, ", ");
}

std::string BuffersText(const std::vector<BufferSpec>& buffers) {
  std::vector<std::string> parts;
  for (const BufferSpec& b : buffers) {
    parts.push_back(absl::StrCat(b.name, "[", b.elements, "]", b.output ? " out" : ""));
  }
  return absl::StrJoin(parts, ", ");
}

// What a spec of the same version says otherwise than the registered one ("rtol '0.0001', not
// '0.01'"): the parts of a kernel that its version (KernelDefinition::Version) leaves out but that
// change how it is measured or served. Empty when the two agree.
std::vector<std::string> SpecDifferences(const KernelDefinition& registered,
                                         const KernelDefinition& given) {
  std::vector<std::string> out;
  auto compare = [&](const char* what, const std::string& was, const std::string& now) {
    if (was != now) out.push_back(absl::StrCat(what, " '", was, "', not '", now, "'"));
  };
  // The description only shows: the registered one is kept without a word. Doubles are compared
  // exactly (ExactText), problem parameters with their bounds (ValidateProblem checks them).
  auto problem_text = [](const std::vector<ProblemParameter>& problem) {
    std::vector<std::string> parts;
    for (const ProblemParameter& p : problem) {
      parts.push_back(absl::StrCat(p.name, " in [", p.min, ", ", p.max, "]"));
    }
    return absl::StrJoin(parts, ", ");
  };
  compare("problem", problem_text(registered.problem), problem_text(given.problem));
  compare("dtypes", absl::StrJoin(registered.dtypes, ","), absl::StrJoin(given.dtypes, ","));
  compare("flops", registered.flops, given.flops);
  compare("bytes", registered.bytes, given.bytes);
  compare("default", PairsText(registered.default_config), PairsText(given.default_config));
  compare("rtol", ExactText(registered.rtol), ExactText(given.rtol));
  compare("atol", ExactText(registered.atol), ExactText(given.atol));
  compare("dtype tolerances", TolerancesText(registered.dtype_tolerance),
          TolerancesText(given.dtype_tolerance));
  compare("buffers", BuffersText(registered.buffers), BuffersText(given.buffers));
  return out;
}

}  // namespace

KernelRegistry::KernelRegistry(std::vector<KernelDefinition> kernels)
    : kernels_(std::make_move_iterator(kernels.begin()), std::make_move_iterator(kernels.end())) {}

KernelRegistry KernelRegistry::WithBuiltins() {
  return KernelRegistry({GemmDefinition(), Conv2dDefinition(), SoftmaxDefinition(),
                         GemmOpenBlasDefinition(), GemmLowpDefinition(), GemmOneDnnDefinition(),
                         GemmOneDnnInt8Definition(), CudaGemmDefinition(),
                         CudaGemmCublasDefinition(), CudaConv2dDefinition(),
                         CudaReduceRowsDefinition(), CudaSoftmaxDefinition()});
}

const KernelDefinition* KernelRegistry::Find(std::string_view name) const {
  std::shared_lock lock(mu_);
  for (const KernelDefinition& k : kernels_) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

absl::StatusOr<const KernelDefinition*> KernelRegistry::Get(std::string_view name) const {
  if (const KernelDefinition* k = Find(name)) return k;
  std::vector<std::string> names;
  for (const KernelDefinition* k : List()) names.push_back(k->name);
  return absl::NotFoundError(
      absl::StrCat("unknown kernel '", absl::string_view(name.data(), name.size()),
                   "'; known kernels: ", absl::StrJoin(names, ", "), " (see `ktune kernels`)"));
}

std::vector<const KernelDefinition*> KernelRegistry::List() const {
  std::shared_lock lock(mu_);
  std::vector<const KernelDefinition*> out;
  for (const KernelDefinition& k : kernels_) out.push_back(&k);
  return out;
}

absl::StatusOr<const KernelDefinition*> KernelRegistry::Register(KernelDefinition definition) {
  if (absl::Status s = definition.Validate(); !s.ok()) return s;
  definition.builtin = false;
  std::unique_lock lock(mu_);
  for (const KernelDefinition& existing : kernels_) {
    if (existing.name != definition.name) continue;
    if (existing.Version() == definition.Version()) {
      // The same kernel again is a no-op; the same code with another tolerance, default or
      // size is refused rather than dropped (the registered spec would go on being used).
      std::vector<std::string> differences = SpecDifferences(existing, definition);
      if (differences.empty() || existing.builtin) return &existing;
      return absl::AlreadyExistsError(absl::StrCat(
          "kernel '", definition.name, "' is already registered with ",
          absl::StrJoin(differences, "; "),
          ": a registered kernel's spec is kept for good: register this one under another name"));
    }
    return absl::AlreadyExistsError(
        absl::StrCat("kernel '", definition.name, "' is already registered with version ",
                     existing.Version(), existing.builtin ? " (a built-in kernel)" : "",
                     "; a name is kept for good: register this spec under another name"));
  }
  kernels_.push_back(std::move(definition));
  return &kernels_.back();
}

}  // namespace ktune
