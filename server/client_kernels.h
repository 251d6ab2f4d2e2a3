// Kernels that clients register over the API (TuningService.RegisterKernel): validated,
// added to the server's registry (versioned like the built-ins) and kept in the database so
// that a restarted server still knows them before it recovers jobs that use them. Workers
// receive a kernel's spec with its candidates (WorkerServiceImpl::LeaseBatch) and measure it in
// the same isolation as a built-in one.
#ifndef KTUNE_SERVER_CLIENT_KERNELS_H_
#define KTUNE_SERVER_CLIENT_KERNELS_H_

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "db/tuning_database.h"
#include "kernels/kernel_registry.h"
#include "ktune/v1/types.pb.h"

namespace ktune {

class ClientKernels {
 public:
  // `db` and `registry` must outlive this.
  ClientKernels(TuningDatabase* db, KernelRegistry* registry) : db_(db), registry_(registry) {}

  // Registers the kernels stored by earlier runs. An error when the stored list is unreadable
  // or a stored kernel no longer validates (say why; the database is left as it is).
  absl::Status Load();

  // Validates `spec` (API limits, KernelDefinition::Validate), registers and stores it.
  // InvalidArgument saying what is wrong; AlreadyExists when the name belongs to another kernel
  // (a built-in, or a client kernel of another version). The same spec again is a no-op.
  absl::StatusOr<const KernelDefinition*> Register(const v1::KernelSpec& spec);

  // The key of the stored list in the database's state store.
  static constexpr char kStateKey[] = "server/client-kernels";

 private:
  TuningDatabase* db_;
  KernelRegistry* registry_;
  absl::Mutex mu_;  // serialises Register's read-modify-write of the stored list
};

}  // namespace ktune

#endif  // KTUNE_SERVER_CLIENT_KERNELS_H_
