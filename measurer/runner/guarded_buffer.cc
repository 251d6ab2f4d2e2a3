#include "measurer/runner/guarded_buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

namespace ktune::runner {
namespace {

constexpr uint32_t kCanaryBits = 0x7fc0dead;  // a quiet NaN no arithmetic produces

bool IsCanary(const float* p) {
  uint32_t bits;
  std::memcpy(&bits, p, 4);
  return bits == kCanaryBits;
}

void FillCanary(float* p, size_t n) {
  for (size_t i = 0; i < n; ++i) std::memcpy(p + i, &kCanaryBits, 4);
}

}  // namespace

GuardedBuffer::GuardedBuffer(int64_t floats) : floats_(floats) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t inner = (2 * kCanaryFloats + 16 + static_cast<size_t>(floats)) * sizeof(float);
  const size_t inner_pages = (inner + page - 1) / page * page;
  mapping_bytes_ = inner_pages + 2 * page;
  void* m =
      ::mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    mapping_bytes_ = 0;
    return;
  }
  mapping_ = m;
  char* base = static_cast<char*>(m);
  ::mprotect(base, page, PROT_NONE);
  ::mprotect(base + page + inner_pages, page, PROT_NONE);
  // Place the data so that its back canary ends exactly at the trailing guard page; the slack
  // goes in front. Keep data 64-byte aligned (the back canary absorbs the rounding).
  char* end = base + page + inner_pages;
  uintptr_t data_addr = reinterpret_cast<uintptr_t>(end) -
                        (static_cast<size_t>(floats) + kCanaryFloats) * sizeof(float);
  data_addr &= ~uintptr_t{63};
  data_ = reinterpret_cast<float*>(data_addr);
  FillCanary(reinterpret_cast<float*>(base + page),
             (data_addr - reinterpret_cast<uintptr_t>(base + page)) / sizeof(float));
  float* after = data_ + floats;
  FillCanary(after, static_cast<size_t>(reinterpret_cast<float*>(end) - after));
}

GuardedBuffer::~GuardedBuffer() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_bytes_);
}

bool GuardedBuffer::CanariesIntact(std::string* where) const {
  for (size_t i = 1; i <= kCanaryFloats; ++i) {
    if (!IsCanary(data_ - i)) {
      *where = "before the start";
      return false;
    }
  }
  for (size_t i = 0; i < kCanaryFloats; ++i) {
    if (!IsCanary(data_ + floats_ + i)) {
      *where = "after the end";
      return false;
    }
  }
  return true;
}

}  // namespace ktune::runner
