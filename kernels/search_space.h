// A kernel's search space: tunable parameters with value lists, constraints over parameters and
// problem values, and the enumerated set of valid configurations.
//
// Inside the space a configuration is a Point: for each parameter, the index of its value in
// that parameter's value list. Points are what strategies handle; Configurations (name -> value)
// are what is stored and shown.
//
// The valid set is enumerated once, when the space is created, by a depth-first walk that checks
// each constraint as soon as the parameters it reads are assigned, so whole subtrees that break a
// constraint are never visited. A space is immutable after creation: every method is const and
// thread-safe.
#ifndef KTUNE_KERNELS_SEARCH_SPACE_H_
#define KTUNE_KERNELS_SEARCH_SPACE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/random/bit_gen_ref.h"
#include "absl/status/statusor.h"
#include "kernels/configuration.h"
#include "kernels/expression.h"

namespace ktune {

struct Parameter {
  std::string name;
  std::vector<ParamValue> values;  // in the order given; no duplicates
};

using Point = std::vector<uint16_t>;  // value index per parameter, in parameters() order

enum class Neighbourhood {
  kAdjacent,  // one parameter moved to the previous or next value of its list
  kHamming,   // one parameter changed to any other value of its list
};

class SearchSpace {
 public:
  // Largest valid set a space may hold; larger spaces fail with ResourceExhausted.
  static constexpr int64_t kMaxValidConfigurations = 20'000'000;
  // Most partial configurations the enumeration may try (a few seconds): constraints that reject
  // nearly everything only at the last parameter would otherwise walk the whole product of the
  // value lists (4 parameters of 4,096 values: 2.8e14 steps, a server thread spinning for days).
  static constexpr int64_t kMaxEnumerationSteps = 400'000'000;

  // Builds and enumerates a space. `constraints` are Python-style expressions over parameter
  // names and the names in `problem` (e.g. "MWG % (MDIMC * VWM) == 0", "tile <= M").
  // InvalidArgument for an empty value list, a duplicate name or value, or a constraint that does
  // not compile (the message quotes it).
  static absl::StatusOr<SearchSpace> Create(std::vector<Parameter> parameters,
                                            std::vector<std::string> constraints,
                                            const Problem& problem = {});

  // A recorded space: its valid set is exactly `configs` (all with the same parameter names).
  // Each parameter's values are the distinct values seen, in ascending order. Duplicates in
  // `configs` are kept once.
  static absl::StatusOr<SearchSpace> FromConfigurations(const std::vector<Configuration>& configs);

  const std::vector<Parameter>& parameters() const { return parameters_; }
  const std::vector<std::string>& constraints() const { return constraint_texts_; }

  // Number of valid configurations, and the product of the value-list sizes.
  int64_t size() const { return static_cast<int64_t>(valid_.size() / Width()); }
  double unconstrained_size() const;

  // The i-th valid point, 0 <= i < size(), in enumeration order (lexicographic in value index).
  Point PointAt(int64_t i) const;
  // Index of `p` in the valid set, or -1 if it is not valid.
  int64_t IndexOf(const Point& p) const;
  bool IsValid(const Point& p) const { return IndexOf(p) >= 0; }

  Configuration ToConfiguration(const Point& p) const;
  // InvalidArgument when a parameter is missing, unknown or has a value outside its list.
  // Validity against the constraints is a separate question: IsValid.
  absl::StatusOr<Point> ToPoint(const Configuration& config) const;

  // A valid point drawn uniformly. Requires size() > 0.
  Point SampleUniform(absl::BitGenRef rng) const;
  // The valid points next to `p`, in a fixed order: for each parameter, by value index.
  std::vector<Point> Neighbours(const Point& p, Neighbourhood kind) const;
  // Number of points (valid or not) that differ from any one point in exactly two parameters:
  // the sum over parameter pairs of (values - 1) * (values - 1).
  int64_t TwoParameterChangeCount() const;
  // The valid points that differ from `p` in exactly two parameters. When there are at most
  // `max_candidates` such changes (TwoParameterChangeCount), all the valid ones, in a fixed order
  // (by parameter pair, then by value indices), and `rng` is not used. Otherwise `max_candidates`
  // draws, uniform over all two-parameter changes, keeping the valid ones once each, in the order
  // drawn: the cost stays bounded on spaces with long value lists (1000 values of two parameters
  // are a million changes).
  std::vector<Point> TwoParameterChanges(const Point& p, int64_t max_candidates,
                                         absl::BitGenRef rng) const;

 private:
  SearchSpace() = default;
  size_t Width() const { return parameters_.size(); }
  uint64_t Encode(const Point& p) const;
  absl::Status Enumerate(const ExprValue* problem_values, size_t problem_count);
  void Insert(const uint16_t* point);

  std::vector<Parameter> parameters_;
  std::vector<std::string> constraint_texts_;
  std::vector<uint64_t> radix_;                    // mixed-radix weights for Encode
  std::vector<uint16_t> valid_;                    // size() points, Width() indices each
  absl::flat_hash_map<uint64_t, uint32_t> index_;  // Encode(point) -> position in valid_
};

}  // namespace ktune

#endif  // KTUNE_KERNELS_SEARCH_SPACE_H_
