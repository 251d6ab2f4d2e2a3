// Builds run-time CPU kernels (those registered by clients, and the test kernels) with the
// system compiler into shared objects the runner loads. Builds are cached on disk by a hash of
// the source, the compile-time parameter values, the flags and the compiler, so a configuration
// is compiled once per machine, whatever the process.
#ifndef KTUNE_MEASURER_CPU_KERNEL_COMPILER_H_
#define KTUNE_MEASURER_CPU_KERNEL_COMPILER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "kernels/kernel_definition.h"

namespace ktune {

struct CpuCompileOptions {
  std::string compiler = "c++";
  std::vector<std::string> flags = {"-std=c++17", "-O3",   "-march=native",
                                    "-fopenmp",   "-fPIC", "-shared"};
  std::string cache_dir;  // created when missing
  int64_t timeout_ms = 60'000;
};

struct CpuBuild {
  bool ok = false;
  std::string library_path;  // set when ok
  std::string message;       // the compiler's diagnostics when not ok (at most 4 KiB)
  double build_ms = 0;       // 0 when the build came from the cache
};

class CpuKernelCompiler {
 public:
  explicit CpuKernelCompiler(CpuCompileOptions options) : options_(std::move(options)) {}

  // Builds `definition`'s source with KT_<NAME> macros for its compile-time parameters taken
  // from `config`. A compile error is a CpuBuild with ok = false; an error status means the
  // compiler could not be run at all (missing, cache not writable).
  absl::StatusOr<CpuBuild> Build(const KernelDefinition& definition, const Configuration& config);

  // Builds done (not cached) so far.
  int64_t builds() const { return builds_; }

 private:
  CpuCompileOptions options_;
  absl::flat_hash_map<std::string, CpuBuild> failed_;  // by key: failures are not retried
  int64_t builds_ = 0;
};

// $KTUNE_CACHE_DIR, else $XDG_CACHE_HOME/ktune, else ~/.cache/ktune, else /tmp/ktune-cache.
std::string DefaultCacheDir();

}  // namespace ktune

#endif  // KTUNE_MEASURER_CPU_KERNEL_COMPILER_H_
