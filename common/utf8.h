// Text that must be valid UTF-8: protobuf refuses a string field that is not (the message is
// then unreadable), and JSON cannot hold one.
#ifndef KTUNE_COMMON_UTF8_H_
#define KTUNE_COMMON_UTF8_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace ktune {

// At most `max_bytes` of `text` as valid UTF-8: cut at a character boundary, never inside a
// character, and every byte that does not start a well-formed character replaced by '?'
// (a compiler's log in a legacy encoding). Valid text of at most `max_bytes` comes back as is.
std::string Utf8Prefix(absl::string_view text, size_t max_bytes);

// Whether `text` holds an ASCII control character (0x00-0x1f, 0x7f): a name (kernel, parameter,
// device class) never does, and one that did could break the line-based text it is written into
// (a gnuplot script, a table).
bool HasControlCharacter(absl::string_view text);
// Whether `c` is one of those characters.
inline bool IsControlCharacter(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }

}  // namespace ktune

#endif  // KTUNE_COMMON_UTF8_H_
