#include "kernels/kernel_registry.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ktune {

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
    if (existing.Version() == definition.Version()) return &existing;
    return absl::AlreadyExistsError(
        absl::StrCat("kernel '", definition.name, "' is already registered with version ",
                     existing.Version(), existing.builtin ? " (a built-in kernel)" : "",
                     "; a name is kept for good: register this spec under another name"));
  }
  kernels_.push_back(std::move(definition));
  return &kernels_.back();
}

}  // namespace ktune
