// Compiles CUDA programs with NVRTC into cubins for one architecture, keeping every cubin (and
// ptxas's resource report) in an on-disk cache keyed by a hash of the program and the NVRTC
// version. Needs no GPU. Thread-safe: CompileAll compiles in parallel.
#ifndef KTUNE_MEASURER_CUDA_NVRTC_COMPILER_H_
#define KTUNE_MEASURER_CUDA_NVRTC_COMPILER_H_

#include <string>
#include <vector>

#include "measurer/cuda/cuda_runner.pb.h"

namespace ktune::cuda {

// One program. A missing NVRTC is reported as a failed result whose log says so.
cuda_runner::CompileResult CompileProgram(const cuda_runner::Program& program,
                                          const std::string& cache_dir);

// Every program, `threads` at a time (0: one per core); results in order.
std::vector<cuda_runner::CompileResult> CompileAll(
    const std::vector<cuda_runner::Program>& programs, const std::string& cache_dir, int threads);

// Fills registers, shared_bytes and spill_bytes of `result` from ptxas's verbose report of
// `entry` ("Used 64 registers, 8192 bytes smem", "... bytes spill stores, ... bytes spill
// loads"). Public for tests.
void ParsePtxasReport(const std::string& log, const std::string& entry,
                      cuda_runner::CompileResult* result);

}  // namespace ktune::cuda

#endif  // KTUNE_MEASURER_CUDA_NVRTC_COMPILER_H_
