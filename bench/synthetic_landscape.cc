#include "bench/synthetic_landscape.h"

#include <cmath>
#include <random>
#include <variant>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace ktune {
namespace {

struct Shape {
  std::vector<double> weight, centre;
  struct Pair {
    int i, j;
    double strength;
  };
  std::vector<Pair> pairs;
  std::vector<std::pair<int, int>> needle;  // (parameter, value index)
  double needle_depth = 0;
  int fail_a = -1, fail_b = -1;  // both above 0.6: the configuration fails
};

class SyntheticMeasurer : public Measurer {
 public:
  SyntheticMeasurer(const SearchSpace& space, Shape shape, std::string name)
      : space_(space), shape_(std::move(shape)), device_(DeviceInfo::FromName(name)) {}
  DeviceInfo device() const override { return device_; }

  absl::StatusOr<std::vector<MeasureResult>> Measure(
      const TaskKey&, const std::vector<Configuration>& configs) override {
    std::vector<MeasureResult> out;
    for (const Configuration& c : configs) {
      KTUNE_ASSIGN_OR_RETURN(Point p, space_.ToPoint(c));
      std::vector<double> x(p.size());
      for (size_t k = 0; k < p.size(); ++k) {
        const double n = static_cast<double>(space_.parameters()[k].values.size() - 1);
        x[k] = n > 0 ? p[k] / n : 0;
      }
      MeasureResult r;
      if (shape_.fail_a >= 0 && x[shape_.fail_a] > 0.6 && x[shape_.fail_b] > 0.6) {
        r.status = MeasurementStatus::kRuntimeError;
        r.message = "synthetic failure";
        out.push_back(r);
        continue;
      }
      double log_t = 0;
      for (size_t k = 0; k < x.size(); ++k) {
        log_t += shape_.weight[k] * (x[k] - shape_.centre[k]) * (x[k] - shape_.centre[k]);
      }
      for (const auto& pair : shape_.pairs) {
        log_t += pair.strength * (x[pair.i] - x[pair.j]) * (x[pair.i] - x[pair.j]);
      }
      bool in_needle = !shape_.needle.empty();
      for (const auto& [k, v] : shape_.needle) in_needle &= p[k] == v;
      if (in_needle) log_t -= shape_.needle_depth;
      r.time_ms = std::exp(log_t);
      r.repeat_times_ms = {*r.time_ms};
      out.push_back(r);
    }
    return out;
  }

 private:
  const SearchSpace& space_;
  Shape shape_;
  DeviceInfo device_;
};

}  // namespace

TrainingSpace SyntheticLandscape::AsTrainingSpace() const {
  TaskKey task{name, "", {}, measurer->device().device_class};
  return {name, space.get(), measurer.get(), task};
}

absl::StatusOr<SyntheticLandscape> MakeSyntheticLandscape(uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uniform = [&](double a, double b) {
    return std::uniform_real_distribution<double>(a, b)(rng);
  };
  auto integer = [&](int a, int b) { return std::uniform_int_distribution<int>(a, b)(rng); };
  const int width = integer(3, 7);
  std::vector<Parameter> params;
  for (int k = 0; k < width; ++k) {
    Parameter p;
    p.name = absl::StrCat("p", k);
    const int values = integer(2, 9);
    const bool powers = uniform(0, 1) < 0.6;
    for (int v = 0; v < values; ++v) {
      p.values.emplace_back(std::in_place_type<int64_t>, powers ? (int64_t{1} << v) : v + 1);
    }
    params.push_back(std::move(p));
  }
  // A product constraint on the first two parameters, keeping most of their grid.
  std::vector<std::string> constraints;
  if (width >= 4) {
    const auto& a = params[0].values;
    const auto& b = params[1].values;
    const int64_t limit = std::get<int64_t>(a[a.size() * 3 / 4]) * std::get<int64_t>(b.back());
    constraints.push_back(absl::StrCat("p0 * p1 <= ", limit));
  }
  KTUNE_ASSIGN_OR_RETURN(SearchSpace space, SearchSpace::Create(params, constraints));
  Shape s;
  for (int k = 0; k < width; ++k) {
    s.weight.push_back(uniform(0, 1) < 0.3 ? uniform(0, 0.1) : uniform(0.2, 2.0));
    s.centre.push_back(uniform(0, 1));
  }
  for (int n = integer(1, 3); n > 0; --n) {
    const int i = integer(0, width - 1), j = integer(0, width - 1);
    if (i != j) s.pairs.push_back({i, j, uniform(0.3, 2.0)});
  }
  if (uniform(0, 1) < 0.5) {
    for (int n = integer(2, 3); n > 0; --n) {
      const int k = integer(0, width - 1);
      s.needle.push_back({k, integer(0, static_cast<int>(params[k].values.size()) - 1)});
    }
    s.needle_depth = uniform(0.1, 0.6);
  }
  if (uniform(0, 1) < 0.33) {
    s.fail_a = integer(0, width - 1);
    s.fail_b = (s.fail_a + 1) % width;
  }
  SyntheticLandscape out;
  out.name = absl::StrCat("synthetic-", seed);
  out.space = std::make_unique<SearchSpace>(std::move(space));
  out.measurer = std::make_unique<SyntheticMeasurer>(*out.space, std::move(s), out.name);
  return out;
}

absl::StatusOr<std::vector<SyntheticLandscape>> MakeSyntheticLandscapes(int count,
                                                                        uint64_t first_seed) {
  std::vector<SyntheticLandscape> out;
  for (uint64_t seed = first_seed; static_cast<int>(out.size()) < count; ++seed) {
    KTUNE_ASSIGN_OR_RETURN(SyntheticLandscape l, MakeSyntheticLandscape(seed));
    if (l.space->size() >= 256) out.push_back(std::move(l));
  }
  return out;
}

}  // namespace ktune
