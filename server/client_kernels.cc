#include "server/client_kernels.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "proto/convert.h"

namespace ktune {

absl::Status ClientKernels::Load() {
  absl::StatusOr<std::string> blob = db_->LoadCheckpoint(kStateKey);
  if (absl::IsNotFound(blob.status())) return absl::OkStatus();
  if (!blob.ok()) return blob.status();
  v1::KernelSpecList list;
  if (!list.ParseFromString(*blob)) {
    return absl::DataLossError(absl::StrCat("the stored client kernels (", kStateKey,
                                            ") are not a KernelSpecList"));
  }
  for (const v1::KernelSpec& spec : list.kernels()) {
    absl::StatusOr<KernelDefinition> definition = FromProto(spec);
    if (!definition.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "stored client kernel '", spec.name(), "' no longer validates: ",
          definition.status().message()));
    }
    KTUNE_RETURN_IF_ERROR(registry_->Register(*std::move(definition)).status());
  }
  return absl::OkStatus();
}

absl::StatusOr<const KernelDefinition*> ClientKernels::Register(const v1::KernelSpec& spec) {
  KTUNE_ASSIGN_OR_RETURN(KernelDefinition definition, FromProto(spec));
  absl::MutexLock lock(&mu_);
  KTUNE_ASSIGN_OR_RETURN(const KernelDefinition* registered,
                         registry_->Register(std::move(definition)));
  // Rewritten even when the kernel was known: a registration whose store failed is completed by
  // the client's retry.
  v1::KernelSpecList list;
  for (const KernelDefinition* k : registry_->List()) {
    if (!k->builtin) *list.add_kernels() = ToProto(*k);
  }
  KTUNE_RETURN_IF_ERROR(db_->SaveCheckpoint(kStateKey, list.SerializeAsString()));
  return registered;
}

}  // namespace ktune
