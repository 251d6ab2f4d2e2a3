#include "kernels/kernel_registry.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ktune {

KernelRegistry KernelRegistry::WithBuiltins() {
  KernelRegistry registry;
  registry.kernels_ = {GemmDefinition(),          Conv2dDefinition(),
                       SoftmaxDefinition(),       GemmOpenBlasDefinition(),
                       CudaGemmDefinition(),      CudaGemmCublasDefinition(),
                       CudaConv2dDefinition(),    CudaReduceRowsDefinition(),
                       CudaSoftmaxDefinition()};
  return registry;
}

const KernelDefinition* KernelRegistry::Find(std::string_view name) const {
  for (const KernelDefinition& k : kernels_) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

absl::StatusOr<const KernelDefinition*> KernelRegistry::Get(std::string_view name) const {
  if (const KernelDefinition* k = Find(name)) return k;
  std::vector<std::string> names;
  for (const KernelDefinition& k : kernels_) names.push_back(k.name);
  return absl::NotFoundError(
      absl::StrCat("unknown kernel '", absl::string_view(name.data(), name.size()),
                   "'; known kernels: ", absl::StrJoin(names, ", "), " (see `ktune kernels`)"));
}

absl::Status KernelRegistry::Register(KernelDefinition definition) {
  if (absl::Status s = definition.Validate(); !s.ok()) return s;
  definition.builtin = false;
  if (const KernelDefinition* existing = Find(definition.name)) {
    if (existing->Version() == definition.Version()) return absl::OkStatus();
    return absl::AlreadyExistsError(absl::StrCat(
        "kernel '", definition.name, "' is already registered with version ", existing->Version()));
  }
  kernels_.push_back(std::move(definition));
  return absl::OkStatus();
}

}  // namespace ktune
