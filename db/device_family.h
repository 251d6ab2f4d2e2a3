// Architecture families of known GPU models, for the family level of best-known lookups.
#ifndef KTUNE_DB_DEVICE_FAMILY_H_
#define KTUNE_DB_DEVICE_FAMILY_H_

#include <string>

#include "absl/strings/string_view.h"

namespace ktune {

// "ampere" for "NVIDIA A100-PCIE-40GB", "A100" or "RTX_3090"; "turing" for "RTX_2080_Ti";
// "cdna2" for "MI250X"; ... Empty when the model is not known. Case, spaces, '-' and '_' are
// ignored. A TVM target's class ("tvm:llvm -mcpu=skylake") has its kind's family ("tvm:llvm"),
// as ktune.tvm names it.
std::string InferDeviceFamily(absl::string_view model_name);

}  // namespace ktune

#endif  // KTUNE_DB_DEVICE_FAMILY_H_
