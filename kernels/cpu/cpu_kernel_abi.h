/* The C ABI between the CPU measurement runner and a CPU kernel, built in or compiled at run time.
 *
 * A kernel is a function `int f(const ktune_cpu_call*)`. Every buffer is float32, allocated and
 * filled by the runner; inputs come first, then outputs, in the order of the kernel definition's
 * buffers. Problem and configuration values are integers, in the order of the definition's
 * problem parameters and tunable parameters. Compile-time parameters of a run-time compiled kernel
 * are also visible to it as macros `KT_<NAME>`.
 *
 * A kernel returns 0 when it ran, nonzero when it refuses the configuration (recorded as an
 * invalid configuration). It must write only inside its output buffers and must not keep pointers
 * after it returns. It may use up to `threads` threads (OpenMP or its own) where the
 * configuration has such a parameter.
 *
 * A built-in kernel may also have a prepare and a release function of the same type (see
 * BuiltinCpuKernel). The runner calls prepare with a configuration's call before that
 * configuration's first run and release after its last (whether the runs succeeded or not);
 * neither is timed. Prepare may read the input buffers and keep data derived from them (weights
 * converted, quantised or packed once, as an inference engine does when it loads a model) until
 * release; the runner leaves the inputs unchanged in between, and every run in between uses the
 * same problem, configuration and buffers. Prepare returns nonzero to refuse the configuration
 * (no run follows, release is still called); release returns 0.
 *
 * A run-time compiled kernel exports two symbols with C linkage: `ktune_kernel` (the candidate)
 * and `ktune_reference` (the trusted implementation the results are compared with; it ignores the
 * configuration). */
#ifndef KTUNE_KERNELS_CPU_CPU_KERNEL_ABI_H_
#define KTUNE_KERNELS_CPU_CPU_KERNEL_ABI_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KTUNE_CPU_ABI_VERSION 1

typedef struct ktune_cpu_call {
  const int64_t* problem; /* problem parameter values, definition order */
  int32_t num_problem;
  const int64_t* config; /* tunable parameter values, definition order */
  int32_t num_config;
  float* const* buffers;          /* inputs, then outputs, definition order */
  const int64_t* buffer_elements; /* length of each buffer, in floats */
  int32_t num_buffers;
} ktune_cpu_call;

typedef int (*ktune_cpu_kernel_fn)(const ktune_cpu_call* call);

#ifdef __cplusplus
}
#endif

#endif /* KTUNE_KERNELS_CPU_CPU_KERNEL_ABI_H_ */
