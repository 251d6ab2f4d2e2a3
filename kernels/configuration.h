// Configurations and problems: named parameter values, with a canonical serialisation.
//
// A Configuration (tunable parameter -> value) and a Problem (problem parameter -> value) are
// both a ParamMap: a std::map, so iteration is in name order, which is what makes the canonical
// JSON canonical. Values are integers, floats or strings, as in Kernel Tuner and T1 spaces.
#ifndef KTUNE_KERNELS_CONFIGURATION_H_
#define KTUNE_KERNELS_CONFIGURATION_H_

#include <cstdint>
#include <map>
#include <string>
#include <variant>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ktune {

using ParamValue = std::variant<int64_t, double, std::string>;
using ParamMap = std::map<std::string, ParamValue>;
using Configuration = ParamMap;
using Problem = ParamMap;

// The value as Python would print it: 16, 0.5, "x" (strings quoted only in JSON).
std::string FormatParamValue(const ParamValue& v);

// Orders numbers numerically (ints and floats together), then strings.
bool ParamValueLess(const ParamValue& a, const ParamValue& b);

// Compact JSON with keys in name order and no spaces: {"MWG":64,"alpha":0.5,"layout":"nt"}.
// Integers print as integers, floats in shortest round-trip form. Equal maps give equal bytes.
std::string CanonicalJson(const ParamMap& params);

// InvalidArgument ("<what>.<name> is nan ...") when a float value is not finite: JSON, the
// canonical form, has no NaN or infinity, so such a map could be stored but never read back.
absl::Status CheckFiniteValues(const ParamMap& params, absl::string_view what);

// StableHashHex(CanonicalJson(params)): 16 hex digits that name a configuration or problem.
std::string ParamMapHash(const ParamMap& params);

// Parses the JSON object form (any key order, any spacing). InvalidArgument when it is not an
// object of numbers and strings.
absl::StatusOr<ParamMap> ParseParamMapJson(absl::string_view json);

// Parses the command-line form "M=1024,N=512,dtype=f32": integers, then floats, else strings.
// InvalidArgument naming the bad item for a missing '=', an empty name or a repeated name.
absl::StatusOr<ParamMap> ParseParamMapAssignments(absl::string_view text);

// "M=1024,N=512,dtype=f32", in name order; the inverse of ParseParamMapAssignments.
std::string FormatParamMapAssignments(const ParamMap& params);

// A task for people: "gemm M=64,N=64 on cpu:x", or "pnpoly on A100" for a problem without
// parameters (a recorded space's).
std::string FormatTask(const std::string& kernel, const ParamMap& problem,
                       const std::string& device);

}  // namespace ktune

#endif  // KTUNE_KERNELS_CONFIGURATION_H_
