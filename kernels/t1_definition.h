// Loads a search space from a T1 definition file (the Autotuning Association's benchmark
// definition format, as in ../shared/datasets/definitions/): ConfigurationSpace.TuningParameters
// (Name, Type, Values as a Python list expression) and ConfigurationSpace.Conditions (Python-style
// expressions).
#ifndef KTUNE_KERNELS_T1_DEFINITION_H_
#define KTUNE_KERNELS_T1_DEFINITION_H_

#include <string>

#include "absl/status/statusor.h"
#include "kernels/search_space.h"

namespace ktune {

struct T1Definition {
  std::string benchmark_name;  // General.BenchmarkName
  std::string kernel_name;     // KernelSpecification.KernelName, if present
  SearchSpace space;
};

// Reads and enumerates `path`. Errors name the file and the parameter or condition at fault.
absl::StatusOr<T1Definition> LoadT1Definition(const std::string& path);

}  // namespace ktune

#endif  // KTUNE_KERNELS_T1_DEFINITION_H_
