// Stable content hashes: the same bytes give the same hash on every machine and in every
// release (XXH3-64), unlike absl::Hash, which is seeded per process.
#ifndef KTUNE_COMMON_HASH_H_
#define KTUNE_COMMON_HASH_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace ktune {

uint64_t StableHash64(absl::string_view bytes);

// StableHash64 as 16 lower-case hex digits.
std::string StableHashHex(absl::string_view bytes);

}  // namespace ktune

#endif  // KTUNE_COMMON_HASH_H_
