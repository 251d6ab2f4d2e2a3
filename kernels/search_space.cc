#include "kernels/search_space.h"

#include <algorithm>
#include <functional>
#include <limits>

#include "absl/container/flat_hash_set.h"
#include "absl/random/distributions.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace ktune {
namespace {

ExprValue ToExprValue(const ParamValue& v, ExprSymbols& symbols) {
  if (const auto* i = std::get_if<int64_t>(&v)) return ExprValue::Int(*i);
  if (const auto* d = std::get_if<double>(&v)) return ExprValue::Float(*d);
  return ExprValue::String(symbols.Intern(std::get<std::string>(v)));
}

bool SameValue(const ParamValue& a, const ParamValue& b) {
  return !ParamValueLess(a, b) && !ParamValueLess(b, a) && a.index() == b.index();
}

// The parameter pairs that have two-parameter changes, each with the number of other values of
// its second parameter and the running count of changes before it; `*total` is the count of all.
struct ChangePair {
  size_t a, b;
  int64_t others_b, first;  // values of b other than the point's; index of the pair's first change
};
std::vector<ChangePair> ChangePairs(const std::vector<Parameter>& parameters, int64_t* total) {
  std::vector<ChangePair> pairs;
  *total = 0;
  for (size_t a = 0; a < parameters.size(); ++a) {
    for (size_t b = a + 1; b < parameters.size(); ++b) {
      const int64_t others_a = static_cast<int64_t>(parameters[a].values.size()) - 1;
      const int64_t others_b = static_cast<int64_t>(parameters[b].values.size()) - 1;
      if (others_a == 0 || others_b == 0) continue;
      pairs.push_back({a, b, others_b, *total});
      *total += others_a * others_b;
    }
  }
  return pairs;
}

}  // namespace

absl::StatusOr<SearchSpace> SearchSpace::Create(std::vector<Parameter> parameters,
                                                std::vector<std::string> constraints,
                                                const Problem& problem) {
  SearchSpace space;
  if (parameters.empty()) return absl::InvalidArgumentError("a search space needs parameters");
  if (parameters.size() > 64) {
    return absl::InvalidArgumentError("a search space has at most 64 parameters");
  }
  ExprSymbols symbols;
  double product = 1;
  for (size_t k = 0; k < parameters.size(); ++k) {
    const Parameter& p = parameters[k];
    if (p.values.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("parameter '", p.name, "' has no values"));
    }
    if (p.values.size() > std::numeric_limits<uint16_t>::max()) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter '", p.name, "' has more than 65535 values"));
    }
    // Repeated values, found in order (a pairwise check took seconds for 65,535 values).
    std::vector<const ParamValue*> sorted;
    sorted.reserve(p.values.size());
    for (const ParamValue& v : p.values) sorted.push_back(&v);
    std::sort(sorted.begin(), sorted.end(), [](const ParamValue* a, const ParamValue* b) {
      return a->index() != b->index() ? a->index() < b->index() : ParamValueLess(*a, *b);
    });
    for (size_t a = 1; a < sorted.size(); ++a) {
      if (SameValue(*sorted[a - 1], *sorted[a])) {
        return absl::InvalidArgumentError(absl::StrCat("parameter '", p.name, "' lists the value ",
                                                       FormatParamValue(*sorted[a]), " twice"));
      }
    }
    if (!symbols.Bind(p.name, static_cast<int>(k))) {
      return absl::InvalidArgumentError(absl::StrCat("parameter '", p.name, "' appears twice"));
    }
    product *= static_cast<double>(p.values.size());
  }
  // Configurations are numbered by int64_t: fewer than 2^63 of them (the check said 2^64 and
  // refused spaces from 1.8e19, below it).
  if (product >= 9.223372036854775808e18) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "the unconstrained space has %.4g configurations, 2^63 or more (ktune numbers fewer)",
        product));
  }
  std::vector<ExprValue> problem_values;
  for (const auto& [name, value] : problem) {
    int slot = static_cast<int>(parameters.size() + problem_values.size());
    if (!symbols.Bind(name, slot)) {
      return absl::InvalidArgumentError(
          absl::StrCat("problem parameter '", name, "' has the name of a tunable parameter"));
    }
    problem_values.push_back(ToExprValue(value, symbols));
  }
  space.parameters_ = std::move(parameters);
  space.constraint_texts_ = std::move(constraints);
  space.radix_.resize(space.parameters_.size());
  uint64_t weight = 1;
  for (size_t k = space.parameters_.size(); k-- > 0;) {
    space.radix_[k] = weight;
    weight *= space.parameters_[k].values.size();
  }

  // Compile the constraints; each is checked at the depth of the last parameter it reads.
  struct Compiled {
    Expression expr;
    int level;  // -1: reads only problem values
  };
  std::vector<std::vector<const Expression*>> checks_at(space.parameters_.size());
  std::vector<Compiled> compiled;
  compiled.reserve(space.constraint_texts_.size());
  for (const std::string& text : space.constraint_texts_) {
    KTUNE_ASSIGN_OR_RETURN(Expression e, Expression::Compile(text, symbols));
    int level = -1;
    for (int slot : e.slots_used()) {
      if (slot < static_cast<int>(space.parameters_.size())) level = std::max(level, slot);
    }
    compiled.push_back({std::move(e), level});
  }
  std::vector<const Expression*> problem_only;
  for (const Compiled& c : compiled) {
    (c.level < 0 ? problem_only : checks_at[c.level]).push_back(&c.expr);
  }

  // Per parameter, its values as expression values.
  const size_t n = space.parameters_.size();
  std::vector<std::vector<ExprValue>> values(n);
  for (size_t k = 0; k < n; ++k) {
    for (const ParamValue& v : space.parameters_[k].values) {
      values[k].push_back(ToExprValue(v, symbols));
    }
  }
  std::vector<ExprValue> slots(n + problem_values.size());
  std::copy(problem_values.begin(), problem_values.end(), slots.begin() + n);
  for (const Expression* e : problem_only) {
    if (!e->IsTrue(slots.data())) return space;  // the problem rules out every configuration
  }

  // Depth-first enumeration with pruning; each valid point goes to `visit`. False: it stopped
  // early, at more than kMaxValidConfigurations points or kMaxEnumerationSteps steps (`*steps`).
  int64_t steps = 0;
  auto enumerate = [&](const std::function<void(const uint16_t*)>& visit) {
    std::vector<uint16_t> point(n, 0);
    std::vector<size_t> next(n, 0);
    size_t depth = 0;
    int64_t count = 0;
    steps = 0;
    while (true) {
      if (++steps > kMaxEnumerationSteps) return false;
      if (next[depth] == values[depth].size()) {
        if (depth == 0) break;
        next[depth] = 0;
        --depth;
        continue;
      }
      uint16_t vi = static_cast<uint16_t>(next[depth]++);
      point[depth] = vi;
      slots[depth] = values[depth][vi];
      bool ok = true;
      for (const Expression* e : checks_at[depth]) {
        if (!e->IsTrue(slots.data())) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      if (depth + 1 == n) {
        if (++count > kMaxValidConfigurations) return false;
        visit(point.data());
      } else {
        ++depth;
      }
    }
    return true;
  };
  const auto too_large = [&] {
    if (steps > kMaxEnumerationSteps) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "enumerating the constrained space took more than ", kMaxEnumerationSteps,
          " steps; narrow the value lists, or write constraints on the first parameters (a "
          "constraint is checked as soon as the parameters it names have values)"));
    }
    return absl::ResourceExhaustedError(
        absl::StrCat("the constrained space has more than ", kMaxValidConfigurations,
                     " valid configurations; narrow the value lists or add constraints"));
  };
  // Where the limit can be reached, count first: storing 20 million points before finding a
  // 21st took 3.2 GB (40 two-value parameters). Smaller spaces enumerate once.
  if (space.unconstrained_size() > static_cast<double>(kMaxValidConfigurations) &&
      !enumerate([](const uint16_t*) {})) {
    return too_large();
  }
  if (!enumerate([&](const uint16_t* p) { space.Insert(p); })) return too_large();
  return space;
}

absl::StatusOr<SearchSpace> SearchSpace::FromConfigurations(
    const std::vector<Configuration>& configs) {
  if (configs.empty()) return absl::InvalidArgumentError("a recorded space needs configurations");
  SearchSpace space;
  for (const auto& [name, unused] : configs.front()) {
    space.parameters_.push_back({name, {}});
  }
  const size_t n = space.parameters_.size();
  if (n == 0) return absl::InvalidArgumentError("recorded configurations have no parameters");
  // Distinct values per parameter, sorted.
  for (size_t k = 0; k < n; ++k) {
    std::vector<ParamValue>& vals = space.parameters_[k].values;
    for (const Configuration& c : configs) {
      auto it = c.find(space.parameters_[k].name);
      if (it == c.end() || c.size() != n) {
        return absl::InvalidArgumentError(
            absl::StrCat("recorded configurations do not all have the same parameters (",
                         CanonicalJson(c), " vs ", CanonicalJson(configs.front()), ")"));
      }
      vals.push_back(it->second);
    }
    std::sort(vals.begin(), vals.end(), ParamValueLess);
    vals.erase(std::unique(vals.begin(), vals.end(), SameValue), vals.end());
  }
  space.radix_.resize(n);
  uint64_t weight = 1;
  for (size_t k = n; k-- > 0;) {
    space.radix_[k] = weight;
    weight *= space.parameters_[k].values.size();
  }
  std::vector<Point> points;
  points.reserve(configs.size());
  for (const Configuration& c : configs) {
    KTUNE_ASSIGN_OR_RETURN(Point p, space.ToPoint(c));
    points.push_back(std::move(p));
  }
  std::sort(points.begin(), points.end());
  points.erase(std::unique(points.begin(), points.end()), points.end());
  for (const Point& p : points) space.Insert(p.data());
  return space;
}

void SearchSpace::Insert(const uint16_t* point) {
  uint64_t key = 0;
  for (size_t k = 0; k < Width(); ++k) key += point[k] * radix_[k];
  index_.emplace(key, static_cast<uint32_t>(size()));
  valid_.insert(valid_.end(), point, point + Width());
}

double SearchSpace::unconstrained_size() const {
  double product = 1;
  for (const Parameter& p : parameters_) product *= static_cast<double>(p.values.size());
  return product;
}

uint64_t SearchSpace::Encode(const Point& p) const {
  uint64_t key = 0;
  for (size_t k = 0; k < Width(); ++k) key += p[k] * radix_[k];
  return key;
}

Point SearchSpace::PointAt(int64_t i) const {
  auto begin = valid_.begin() + i * static_cast<int64_t>(Width());
  return Point(begin, begin + Width());
}

int64_t SearchSpace::IndexOf(const Point& p) const {
  if (p.size() != Width()) return -1;
  for (size_t k = 0; k < Width(); ++k) {
    if (p[k] >= parameters_[k].values.size()) return -1;
  }
  auto it = index_.find(Encode(p));
  return it == index_.end() ? -1 : static_cast<int64_t>(it->second);
}

Configuration SearchSpace::ToConfiguration(const Point& p) const {
  Configuration c;
  for (size_t k = 0; k < Width(); ++k) c[parameters_[k].name] = parameters_[k].values[p[k]];
  return c;
}

absl::StatusOr<Point> SearchSpace::ToPoint(const Configuration& config) const {
  Point p(Width());
  if (config.size() != Width()) {
    for (const auto& [name, unused] : config) {
      bool known = std::any_of(parameters_.begin(), parameters_.end(),
                               [&](const Parameter& q) { return q.name == name; });
      if (!known) return absl::InvalidArgumentError(absl::StrCat("unknown parameter '", name, "'"));
    }
  }
  for (size_t k = 0; k < Width(); ++k) {
    const Parameter& param = parameters_[k];
    auto it = config.find(param.name);
    if (it == config.end()) {
      return absl::InvalidArgumentError(absl::StrCat("parameter '", param.name, "' is missing"));
    }
    auto v = std::find_if(param.values.begin(), param.values.end(),
                          [&](const ParamValue& x) { return SameValue(x, it->second); });
    if (v == param.values.end()) {
      return absl::InvalidArgumentError(absl::StrCat("parameter '", param.name, "' has value ",
                                                     FormatParamValue(it->second),
                                                     ", which is not in its value list"));
    }
    p[k] = static_cast<uint16_t>(v - param.values.begin());
  }
  return p;
}

Point SearchSpace::SampleUniform(absl::BitGenRef rng) const {
  return PointAt(absl::Uniform<int64_t>(rng, 0, size()));
}

std::vector<Point> SearchSpace::Neighbours(const Point& p, Neighbourhood kind) const {
  std::vector<Point> out;
  Point q = p;
  for (size_t k = 0; k < Width(); ++k) {
    const int count = static_cast<int>(parameters_[k].values.size());
    for (int v = 0; v < count; ++v) {
      if (v == p[k]) continue;
      if (kind == Neighbourhood::kAdjacent && std::abs(v - static_cast<int>(p[k])) != 1) continue;
      q[k] = static_cast<uint16_t>(v);
      if (IsValid(q)) out.push_back(q);
    }
    q[k] = p[k];
  }
  return out;
}

int64_t SearchSpace::TwoParameterChangeCount() const {
  int64_t total = 0;
  ChangePairs(parameters_, &total);
  return total;
}

std::vector<Point> SearchSpace::TwoParameterChanges(const Point& p, int64_t max_candidates,
                                                    absl::BitGenRef rng) const {
  std::vector<Point> out;
  int64_t total = 0;
  const std::vector<ChangePair> pairs = ChangePairs(parameters_, &total);
  // The change numbered `r` (0 <= r < total): pair, then the r-th combination of the two
  // parameters' other values (value indices past p's own shifted by one).
  auto change = [&](int64_t r) {
    auto it = std::upper_bound(pairs.begin(), pairs.end(), r,
                               [](int64_t x, const ChangePair& pair) { return x < pair.first; });
    const ChangePair& pair = *(it - 1);
    const int64_t within = r - pair.first;
    const int64_t va = within / pair.others_b, vb = within % pair.others_b;
    Point q = p;
    q[pair.a] = static_cast<uint16_t>(va + (va >= p[pair.a]));
    q[pair.b] = static_cast<uint16_t>(vb + (vb >= p[pair.b]));
    return q;
  };
  if (total <= max_candidates) {
    for (int64_t r = 0; r < total; ++r) {
      Point q = change(r);
      if (IsValid(q)) out.push_back(std::move(q));
    }
    return out;
  }
  absl::flat_hash_set<int64_t> drawn;
  for (int64_t d = 0; d < max_candidates; ++d) {
    const int64_t r = absl::Uniform<int64_t>(rng, 0, total);
    if (!drawn.insert(r).second) continue;
    Point q = change(r);
    if (IsValid(q)) out.push_back(std::move(q));
  }
  return out;
}

}  // namespace ktune
