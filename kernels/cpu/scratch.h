// Scratch memory for CPU kernels: a buffer, 64-byte aligned, grown on demand and kept between
// calls, one per thread and purpose. OpenMP keeps its threads, so packing buffers are allocated
// once per run of the runner, not once per kernel call.
#ifndef KTUNE_KERNELS_CPU_SCRATCH_H_
#define KTUNE_KERNELS_CPU_SCRATCH_H_

#include <cstdint>
#include <cstdlib>

namespace ktune::cpu {

class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { std::free(data_); }

  // At least `floats` floats; the previous contents are lost when it grows.
  float* Get(int64_t floats) {
    if (floats > size_) {
      std::free(data_);
      size_ = floats;
      data_ = static_cast<float*>(std::aligned_alloc(64, ((floats * 4 + 63) / 64) * 64));
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  int64_t size_ = 0;
};

// The calling thread's Scratch for the purpose named by `Tag` (any type).
template <typename Tag>
Scratch& ThreadScratch() {
  static thread_local Scratch s;
  return s;
}

}  // namespace ktune::cpu

#endif  // KTUNE_KERNELS_CPU_SCRATCH_H_
