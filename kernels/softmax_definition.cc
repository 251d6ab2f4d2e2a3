// The description of the built-in CPU softmax (implementation: kernels/cpu/softmax.cc). The order
// of parameters here is the order of values the implementation reads.
#include "kernels/builtin_kernel_sources.h"
#include "kernels/kernel_registry.h"

namespace ktune {

KernelDefinition SoftmaxDefinition() {
  KernelDefinition d;
  d.name = "softmax";
  d.language = "cpp";
  d.description = "row softmax, float32, numerically stable (row maximum subtracted)";
  d.source = kSoftmaxSourceHash;
  d.builtin = true;
  d.parameters = {
      {"VW", {1, 4, 8, 16}, false, "vector width in floats (1: scalar)"},
      {"unroll", {1, 2, 4, 8}, false, "vectors per loop iteration (independent accumulators)"},
      {"passes", {2, 3}, false, "3: max, sum of exp, normalise; 2: online max and sum, normalise"},
      {"cache_exp", {0, 1}, false, "3 passes: keep exp(x - max) in the output for the last pass"},
      {"fast_exp", {0, 1}, false, "0: std::exp; 1: vectorised polynomial exp"},
      {"chunk", {1, 2, 4, 8, 16, 32, 64, 128, 256}, false, "rows a thread takes at a time"},
      {"schedule",
       {0, 1, 2},
       false,
       "0: one contiguous block of rows per thread; 1: chunks round-robin; 2: chunks on demand"},
      {"threads", {1, 2, 4, 8, 16, 32, 64, 128}, false, "OpenMP threads", true},
  };
  d.constraints = {
      "threads <= cores", "passes == 3 or cache_exp == 0",
      // With one thread, or one block of rows per thread, chunks do not matter.
      "(schedule == 0 and chunk == 1) or (threads > 1 and schedule > 0)",
      "chunk < 2 * rows",  // larger chunks repeat chunk == all rows
  };
  d.problem = {{"rows", 1, 1 << 24, "rows (independent softmaxes)"},
               {"cols", 1, 1 << 24, "columns (the softmax length)"}};
  d.buffers = {{"x", "rows * cols", false}, {"y", "rows * cols", true}};
  // Per element: compare (max), subtract, exp, add (sum), multiply (normalise); exp counts as
  // one operation.
  d.flops = "5 * rows * cols";
  d.bytes = "8 * rows * cols";  // read x, write y
  // What an untuned library runs (e.g. PyTorch's CPU softmax): 8-wide vectors unrolled twice,
  // three passes keeping exp in the output, a vectorised exp, rows split evenly over all cores.
  d.default_config = {{"VW", "8"},       {"unroll", "2"}, {"passes", "3"},   {"cache_exp", "1"},
                      {"fast_exp", "1"}, {"chunk", "1"},  {"schedule", "0"}, {"threads", "cores"}};
  d.rtol = 1e-5;
  d.atol = 1e-7;
  return d;
}

}  // namespace ktune
