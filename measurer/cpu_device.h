// This machine's CPU as a device: the fingerprint records carry (model, ISA extensions, cores,
// caches, clock, compiler), its class and family for best-known fallbacks, and its peak float32
// throughput for "% of peak" figures.
#ifndef KTUNE_MEASURER_CPU_DEVICE_H_
#define KTUNE_MEASURER_CPU_DEVICE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "db/record.h"

namespace ktune {

struct CpuDescription {
  std::string model;                        // "AMD EPYC 7B13", from /proc/cpuinfo
  std::vector<std::string> isa_extensions;  // of interest to kernels: avx2, fma, avx512f, ...
  int cores = 1;                            // cores this process may run on
  int64_t l1d_bytes = 0, l2_bytes = 0, l3_bytes = 0;
  double nominal_mhz = 0;  // as /proc/cpuinfo reports it; part of the fingerprint
  // The clock for the peak (not in the fingerprint): the highest of the measured clock (turbo
  // included), nominal_mhz and the rated maximum, so that the peak is never underestimated.
  double mhz = 0;
  std::string compiler;  // the compiler the kernels were built with
  // The ISA flags the built-in kernels were compiled with ("-march=native", "-march=x86-64-v3"):
  // the same CPU runs different code under different flags.
  std::string kernel_flags;

  // float32 FLOP per cycle per core: 2 FMA pipes x vector width x 2.
  int FlopsPerCycle() const;
  // Peak float32 GFLOP/s with `threads` cores busy.
  double PeakGflops(int threads) const;
  // Device class "cpu:<model>", family = x86-64 ISA level ("x86-64-v3" for AVX2+FMA, "-v4" for
  // AVX-512), fingerprint = every field above.
  DeviceInfo ToDeviceInfo() const;
};

// `measure_clock` false skips the clock measurement (~20 ms) when only the fingerprint is needed;
// mhz is then the higher of the reported and rated clocks.
CpuDescription DescribeThisCpu(bool measure_clock = true);

}  // namespace ktune

#endif  // KTUNE_MEASURER_CPU_DEVICE_H_
