#include "measurer/cpu_device.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "kernels/configuration.h"

namespace ktune {
namespace {

// The core clock in MHz, measured: a chain of dependent 64-bit multiplies takes 3 cycles each
// on every x86-64 core of the last fifteen years (Intel since Core 2, AMD since K10), so
// cycles / time is the clock the kernels actually run at (turbo included, which /proc/cpuinfo's
// nominal figure misses under virtualisation). Not a chain of `add $1`: recent Intel cores fold
// dependent immediate adds and retire several a cycle (measured here: 8 a nanosecond on a
// 2 GHz-nominal Xeon, which made the clock, and so the peak, look four times too high). The
// highest of five probes: a probe that shared its core with other work reads low. 0 elsewhere.
double MeasureMhz() {
#if defined(__x86_64__)
  double best_ns = 1e18;
  constexpr int64_t kIterations = 250'000;  // x 10 multiplies x 3 cycles: ~2.5 ms at 3 GHz
  for (int attempt = 0; attempt < 5; ++attempt) {
    uint64_t x = 1;
    const uint64_t y = 3;
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < kIterations; ++i) {
      asm volatile(
          "imul %1, %0\n\timul %1, %0\n\timul %1, %0\n\timul %1, %0\n\timul %1, %0\n\t"
          "imul %1, %0\n\timul %1, %0\n\timul %1, %0\n\timul %1, %0\n\timul %1, %0"
          : "+r"(x)
          : "r"(y));
    }
    const double ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
    best_ns = std::min(best_ns, ns);
  }
  return 3.0 * 10.0 * kIterations / best_ns * 1e3;
#else
  return 0;
#endif
}

// The processor's rated maximum clock (cpufreq), or 0 where the kernel does not expose it (as in
// many virtual machines).
double RatedMaxMhz() {
  std::ifstream in("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq");
  double khz = 0;
  return in >> khz ? khz / 1e3 : 0.0;
}

}  // namespace

int CpuDescription::FlopsPerCycle() const {
  auto has = [&](const char* f) {
    return std::find(isa_extensions.begin(), isa_extensions.end(), f) != isa_extensions.end();
  };
  if (has("avx512f")) return 64;
  if (has("avx2") && has("fma")) return 32;
  if (has("avx")) return 16;
  return 8;
}

double CpuDescription::PeakGflops(int threads) const {
  return std::min(threads, cores) * mhz * 1e-3 * FlopsPerCycle();
}

DeviceInfo CpuDescription::ToDeviceInfo() const {
  std::string isa;
  for (const std::string& e : isa_extensions) isa += (isa.empty() ? "" : ",") + e;
  ParamMap facts = {{"kind", std::string("cpu")},
                    {"name", model},
                    {"isa", isa},
                    {"cores", int64_t{cores}},
                    {"l1d_bytes", l1d_bytes},
                    {"l2_bytes", l2_bytes},
                    {"l3_bytes", l3_bytes},
                    {"nominal_mhz", static_cast<int64_t>(nominal_mhz)},
                    {"compiler", compiler},
                    {"kernel_flags", kernel_flags}};
  DeviceInfo info;
  info.fingerprint_json = CanonicalJson(facts);
  info.device_class = "cpu:" + model;
  info.family = FlopsPerCycle() >= 64   ? "x86-64-v4"
                : FlopsPerCycle() >= 32 ? "x86-64-v3"
                                        : "x86-64";
  return info;
}

CpuDescription DescribeThisCpu(bool measure_clock) {
  CpuDescription d;
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  static const char* kIsa[] = {"sse4_2",   "avx",         "avx2",     "fma",  "avx512f", "avx512bw",
                               "avx512vl", "avx512_bf16", "amx_tile", "neon", "asimd",   "sve"};
  while (std::getline(cpuinfo, line)) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits(':', 1));
    std::string key(absl::StripAsciiWhitespace(kv.first));
    std::string value(absl::StripAsciiWhitespace(kv.second));
    if (key == "model name" && d.model.empty()) d.model = value;
    if (key == "cpu MHz") {
      double mhz;
      if (absl::SimpleAtod(value, &mhz)) d.nominal_mhz = std::max(d.nominal_mhz, mhz);
    }
    if ((key == "flags" || key == "Features") && d.isa_extensions.empty()) {
      std::vector<std::string> flags = absl::StrSplit(value, ' ', absl::SkipEmpty());
      for (const char* f : kIsa) {
        if (std::find(flags.begin(), flags.end(), f) != flags.end()) d.isa_extensions.push_back(f);
      }
    }
  }
  if (d.model.empty()) d.model = "unknown";
  // The clock for the peak: the highest of the measured clock, the reported one and the rated
  // maximum. A probe on a busy machine reads low (it shares the core), and a peak below the
  // clock the kernels ran at would show more than 100% of peak.
  d.mhz = std::max({measure_clock ? MeasureMhz() : 0.0, d.nominal_mhz, RatedMaxMhz()});
  if (d.mhz <= 0) d.mhz = 2000;  // neither measured nor reported: a conservative nominal
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    d.cores = std::max(1, CPU_COUNT(&set));
  } else {
    d.cores = std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
  }
  d.l1d_bytes = std::max(0L, sysconf(_SC_LEVEL1_DCACHE_SIZE));
  d.l2_bytes = std::max(0L, sysconf(_SC_LEVEL2_CACHE_SIZE));
  d.l3_bytes = std::max(0L, sysconf(_SC_LEVEL3_CACHE_SIZE));
  d.kernel_flags = KTUNE_CPU_KERNEL_FLAGS;
#if defined(__clang__)
  d.compiler = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  d.compiler = std::string("gcc ") + __VERSION__;
#endif
  return d;
}

}  // namespace ktune
