// A float buffer fenced against out-of-bounds writes: inaccessible guard pages on both sides
// (a far overrun faults at once) and canary floats just before and after the data (a near
// overrun is found by CanariesIntact). Data is 64-byte aligned.
#ifndef KTUNE_MEASURER_RUNNER_GUARDED_BUFFER_H_
#define KTUNE_MEASURER_RUNNER_GUARDED_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace ktune::runner {

class GuardedBuffer {
 public:
  // Canary floats on each side of the data.
  static constexpr size_t kCanaryFloats = 1024;

  // Maps the buffer; data() is nullptr when the mapping failed (out of memory).
  explicit GuardedBuffer(int64_t floats);
  ~GuardedBuffer();
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;

  float* data() const { return data_; }
  int64_t size() const { return floats_; }

  // True when no canary was overwritten; otherwise says where ("the 12 floats after the end").
  bool CanariesIntact(std::string* where) const;

 private:
  void* mapping_ = nullptr;
  size_t mapping_bytes_ = 0;
  float* data_ = nullptr;
  int64_t floats_ = 0;
};

}  // namespace ktune::runner

#endif  // KTUNE_MEASURER_RUNNER_GUARDED_BUFFER_H_
