#include "measurer/cuda/cuda_element_types.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ktune::cuda {

absl::StatusOr<CudaElementType> ParseCudaElementType(absl::string_view name) {
  if (name == "f32") return CudaElementType::kF32;
  if (name == "f16") return CudaElementType::kF16;
  if (name == "bf16") return CudaElementType::kBf16;
  if (name == "i8") return CudaElementType::kI8;
  if (name == "i32") return CudaElementType::kI32;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown element type '", name, "' (f32, f16, bf16, i8, i32)"));
}

const char* CudaElementTypeName(CudaElementType type) {
  switch (type) {
    case CudaElementType::kF32:
      return "f32";
    case CudaElementType::kF16:
      return "f16";
    case CudaElementType::kBf16:
      return "bf16";
    case CudaElementType::kI8:
      return "i8";
    case CudaElementType::kI32:
      return "i32";
  }
  return "?";
}

int CudaElementBytes(CudaElementType type) {
  switch (type) {
    case CudaElementType::kF16:
    case CudaElementType::kBf16:
      return 2;
    case CudaElementType::kI8:
      return 1;
    case CudaElementType::kF32:
    case CudaElementType::kI32:
      return 4;
  }
  return 4;
}

absl::StatusOr<CudaElementType> CudaBufferElementType(absl::string_view dtype, bool output) {
  if (dtype == "i8") return output ? CudaElementType::kI32 : CudaElementType::kI8;
  if (dtype == "f32" || dtype == "f16" || dtype == "bf16") return ParseCudaElementType(dtype);
  return absl::InvalidArgumentError(
      absl::StrCat("a CUDA task's dtype is f32, f16, bf16 or i8; got '", dtype, "'"));
}

uint16_t FloatToHalfBits(float f) {
  const _Float16 h = static_cast<_Float16>(f);  // the compiler's conversion rounds to nearest even
  uint16_t bits;
  std::memcpy(&bits, &h, sizeof bits);
  return bits;
}

float HalfBitsToFloat(uint16_t bits) {
  _Float16 h;
  std::memcpy(&h, &bits, sizeof h);
  return static_cast<float>(h);
}

uint16_t FloatToBf16Bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if (std::isnan(f)) return static_cast<uint16_t>((bits >> 16) | 0x40);  // stays a (quiet) NaN
  // Round to nearest even on the 16 bits dropped: add just under half, plus the kept LSB.
  // A carry out of the mantissa raises the exponent, up to infinity, as it should.
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float Bf16BitsToFloat(uint16_t bits) {
  const uint32_t wide = uint32_t{bits} << 16;
  float f;
  std::memcpy(&f, &wide, sizeof f);
  return f;
}

void FillRandom(CudaElementType type, int64_t count, std::mt19937_64& rng, unsigned char* out) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::uniform_int_distribution<int> integer(-128, 127);
  for (int64_t i = 0; i < count; ++i) {
    switch (type) {
      case CudaElementType::kF32: {
        const float v = uniform(rng);
        std::memcpy(out + 4 * i, &v, 4);
        break;
      }
      case CudaElementType::kF16: {
        const uint16_t bits = FloatToHalfBits(uniform(rng));
        std::memcpy(out + 2 * i, &bits, 2);
        break;
      }
      case CudaElementType::kBf16: {
        const uint16_t bits = FloatToBf16Bits(uniform(rng));
        std::memcpy(out + 2 * i, &bits, 2);
        break;
      }
      case CudaElementType::kI8: {
        const int8_t v = static_cast<int8_t>(integer(rng));
        std::memcpy(out + i, &v, 1);
        break;
      }
      case CudaElementType::kI32: {
        const int32_t v = integer(rng);
        std::memcpy(out + 4 * i, &v, 4);
        break;
      }
    }
  }
}

unsigned char CudaPoisonByte(CudaElementType type) {
  return type == CudaElementType::kI8 || type == CudaElementType::kI32 ? 0x80 : 0xFF;
}

double CudaElementAt(CudaElementType type, const unsigned char* data, int64_t i) {
  switch (type) {
    case CudaElementType::kF32: {
      float v;
      std::memcpy(&v, data + 4 * i, 4);
      return v;
    }
    case CudaElementType::kF16:
    case CudaElementType::kBf16: {
      uint16_t bits;
      std::memcpy(&bits, data + 2 * i, 2);
      return type == CudaElementType::kF16 ? HalfBitsToFloat(bits) : Bf16BitsToFloat(bits);
    }
    case CudaElementType::kI8: {
      int8_t v;
      std::memcpy(&v, data + i, 1);
      return v;
    }
    case CudaElementType::kI32: {
      int32_t v;
      std::memcpy(&v, data + 4 * i, 4);
      return v;
    }
  }
  return 0;
}

double CudaMaxAbs(CudaElementType type, const unsigned char* data, int64_t count) {
  double max_abs = 0;
  for (int64_t i = 0; i < count; ++i) {
    max_abs = std::max(max_abs, std::fabs(CudaElementAt(type, data, i)));
  }
  return max_abs;
}

std::string CudaCompareElements(CudaElementType type, const unsigned char* out,
                                const unsigned char* ref, int64_t count, double tolerance,
                                const std::string& label, double* max_abs_diff) {
  int64_t bad = 0, first = -1;
  double largest = 0;
  for (int64_t i = 0; i < count; ++i) {
    const double diff = std::fabs(CudaElementAt(type, out, i) - CudaElementAt(type, ref, i));
    largest = std::isnan(diff) || std::isnan(largest) ? std::nan("") : std::max(largest, diff);
    if (!(diff <= tolerance)) {
      if (bad++ == 0) first = i;
    }
  }
  if (max_abs_diff != nullptr) *max_abs_diff = largest;
  if (bad == 0) return std::string();
  return absl::StrFormat(
      "%s: %d of %d elements differ from the reference; first at index %d: %.9g, expected %.9g "
      "(tolerance %g)",
      label, bad, count, first, CudaElementAt(type, out, first), CudaElementAt(type, ref, first),
      tolerance);
}

}  // namespace ktune::cuda
