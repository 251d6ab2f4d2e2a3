// Element types of the buffers of a CUDA task, as named in TaskSpec.buffer_types, and the host-side
// conversions the runner needs for them: random inputs, poisoning outputs, reading results back
// and comparing them with the reference. Plain functions over bytes, without the driver, so that
// they are tested on machines without a GPU.
//
// A problem's `dtype` decides the types (CudaBufferElementType): every buffer holds the dtype's
// element, except that i8 kernels write int32 outputs (exact sums of int8 products).
#ifndef KTUNE_MEASURER_CUDA_CUDA_ELEMENT_TYPES_H_
#define KTUNE_MEASURER_CUDA_CUDA_ELEMENT_TYPES_H_

#include <cstdint>
#include <random>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ktune::cuda {

enum class CudaElementType { kF32, kF16, kBf16, kI8, kI32 };

// "f32", "f16", "bf16", "i8", "i32" and back; InvalidArgument for any other name.
absl::StatusOr<CudaElementType> ParseCudaElementType(absl::string_view name);
const char* CudaElementTypeName(CudaElementType type);
int CudaElementBytes(CudaElementType type);

// The element type of an input (output = false) or output buffer of a problem of `dtype`
// ("f32", "f16", "bf16", "i8"). InvalidArgument for any other dtype.
absl::StatusOr<CudaElementType> CudaBufferElementType(absl::string_view dtype, bool output);

// IEEE binary16 and bfloat16 bit patterns, rounded to nearest even (as __float2half_rn and
// __float2bfloat16_rn); NaN stays NaN, values too large become infinities.
uint16_t FloatToHalfBits(float f);
float HalfBitsToFloat(uint16_t bits);
uint16_t FloatToBf16Bits(float f);
float Bf16BitsToFloat(uint16_t bits);

// Writes `count` random elements of `type` to `out` (count * CudaElementBytes(type) bytes):
// floating-point types uniform in [-1, 1] (drawn as float, then rounded to the type), integer
// types uniform over [-128, 127]. Draws one value per element from `rng`, so a seed gives the
// same inputs on every machine.
void FillRandom(CudaElementType type, int64_t count, std::mt19937_64& rng, unsigned char* out);

// The byte that an output is filled with before the checked run so that an element the kernel
// never writes cannot pass: 0xFF (NaN) for floating-point types; 0x80 for i32
// (-2139062144, far beyond any sum of int8 products the kernels accept).
unsigned char CudaPoisonByte(CudaElementType type);

// Element i of `data` (exactly, as a double).
double CudaElementAt(CudaElementType type, const unsigned char* data, int64_t i);

// max |element| of `count` elements.
double CudaMaxAbs(CudaElementType type, const unsigned char* data, int64_t count);

// Compares `count` elements of `out` with `ref`: every |out - ref| must be <= tolerance (so NaN
// never passes; tolerance 0 asks for equality). Empty when they match, else a sentence naming
// the number of differing elements and the first one ("output 0: ...", with `label`). When
// `max_abs_diff` is not null it receives the largest |out - ref| (NaN if any element is NaN).
std::string CudaCompareElements(CudaElementType type, const unsigned char* out,
                                const unsigned char* ref, int64_t count, double tolerance,
                                const std::string& label, double* max_abs_diff = nullptr);

}  // namespace ktune::cuda

#endif  // KTUNE_MEASURER_CUDA_CUDA_ELEMENT_TYPES_H_
