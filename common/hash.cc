#include "common/hash.h"

#include <xxhash.h>

#include "absl/strings/str_format.h"

namespace ktune {

uint64_t StableHash64(absl::string_view bytes) { return XXH3_64bits(bytes.data(), bytes.size()); }

std::string StableHashHex(absl::string_view bytes) {
  return absl::StrFormat("%016x", StableHash64(bytes));
}

}  // namespace ktune
