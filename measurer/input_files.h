// Input files: representative inputs a user supplies, so that the error a lower precision makes
// is measured on the data the kernel will see (issue 23).
//
// A file holds raw little-endian float32 values. It is stored under its content hash, and the
// problem value `data=file:<hash>` names the data itself: answers for different data never mix,
// and a changed file is a different task. The runner fills the kernel's input buffers from the
// file's values in order, starting again from the first when it runs out.
#ifndef KTUNE_MEASURER_INPUT_FILES_H_
#define KTUNE_MEASURER_INPUT_FILES_H_

#include <string>

#include "absl/status/statusor.h"

namespace ktune {

// DefaultCacheDir()/inputs: where this machine's workers find input files.
std::string DefaultInputsDir();

// Copies the float32 file at `path` into `dir` (created when missing) under its content hash;
// returns the problem value "file:<hash>". InvalidArgument when the file is empty, not a whole
// number of float32 values, larger than 1 GiB or holds a NaN or an infinity; NotFound when it
// cannot be read.
absl::StatusOr<std::string> StoreInputFile(const std::string& path, const std::string& dir);

// The stored file a problem value "file:<hash>" names, after checking that its content still has
// that hash. NotFound, saying how to store it, when this machine does not have it.
absl::StatusOr<std::string> ResolveInputFile(const std::string& data_value, const std::string& dir);

}  // namespace ktune

#endif  // KTUNE_MEASURER_INPUT_FILES_H_
