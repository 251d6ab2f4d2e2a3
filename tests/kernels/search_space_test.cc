// Search spaces are checked against independent oracles: a naive filter over the full product of
// value lists (no pruning), and the recorded files of ../shared/datasets, whose configurations
// are exactly the constrained spaces of their T1 definitions.
#include "kernels/search_space.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "db/interchange/record_files.h"
#include "kernels/t1_definition.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

using testing::DefinitionFile;
using ::testing::HasSubstr;
using testing::SpaceFile;

std::vector<ParamValue> Ints(std::initializer_list<int64_t> v) {
  return std::vector<ParamValue>(v.begin(), v.end());
}

// Every point of the unconstrained product that satisfies all constraints, in lexicographic
// order: the slow, obviously right answer.
std::vector<Point> NaiveEnumerate(const std::vector<Parameter>& params,
                                  const std::vector<std::string>& constraints) {
  ExprSymbols symbols;
  for (size_t k = 0; k < params.size(); ++k) symbols.Bind(params[k].name, static_cast<int>(k));
  std::vector<Expression> exprs;
  for (const std::string& c : constraints) exprs.push_back(*Expression::Compile(c, symbols));
  std::vector<Point> out;
  Point p(params.size(), 0);
  std::vector<ExprValue> slots(params.size());
  while (true) {
    for (size_t k = 0; k < params.size(); ++k) {
      const ParamValue& v = params[k].values[p[k]];
      if (const auto* i = std::get_if<int64_t>(&v))
        slots[k] = ExprValue::Int(*i);
      else if (const auto* d = std::get_if<double>(&v))
        slots[k] = ExprValue::Float(*d);
      else
        slots[k] = ExprValue::String(symbols.Intern(std::get<std::string>(v)));
    }
    bool ok = true;
    for (const Expression& e : exprs) ok = ok && e.IsTrue(slots.data());
    if (ok) out.push_back(p);
    size_t k = params.size();
    while (k > 0) {
      --k;
      if (++p[k] < params[k].values.size()) break;
      p[k] = 0;
      if (k == 0) return out;
    }
  }
}

TEST(SearchSpaceTest, EnumerationEqualsNaiveFilter) {
  std::vector<Parameter> params = {{"bx", Ints({1, 2, 4, 8, 16, 32})},
                                   {"by", Ints({1, 2, 4, 8})},
                                   {"tile", Ints({1, 2, 3, 4})},
                                   {"shmem", Ints({0, 1})}};
  std::vector<std::string> constraints = {"8 <= bx * by <= 64", "shmem == 0 or bx * tile <= 32",
                                          "tile % 2 == 0 or tile == 1"};
  auto space = SearchSpace::Create(params, constraints);
  ASSERT_TRUE(space.ok()) << space.status();
  std::vector<Point> naive = NaiveEnumerate(params, constraints);
  ASSERT_EQ(space->size(), static_cast<int64_t>(naive.size()));
  for (int64_t i = 0; i < space->size(); ++i) EXPECT_EQ(space->PointAt(i), naive[i]);
  EXPECT_DOUBLE_EQ(space->unconstrained_size(), 6 * 4 * 4 * 2);
}

TEST(SearchSpaceTest, T1DefinitionsEnumerateToTheNaiveFilter) {
  for (const char* name : {"gemm_milo.json", "hotspot_milo.json"}) {
    auto def = LoadT1Definition(DefinitionFile(name));
    ASSERT_TRUE(def.ok()) << def.status();
    std::vector<Point> naive = NaiveEnumerate(def->space.parameters(), def->space.constraints());
    ASSERT_EQ(def->space.size(), static_cast<int64_t>(naive.size())) << name;
    EXPECT_GT(def->space.size(), 50000) << name;
    for (int64_t i = 0; i < def->space.size(); i += 97) EXPECT_EQ(def->space.PointAt(i), naive[i]);
  }
}

// A malformed T1 definition is an error naming the file, never an abort (nlohmann throws on a
// field of the wrong type or a number beyond double's range) or a wrapped value.
TEST(SearchSpaceTest, MalformedT1DefinitionsAreErrorsNotAborts) {
  testing::TempDir dir;
  auto definition = [&](const std::string& name, const std::string& parameter) {
    const std::string path = dir.File(name);
    std::ofstream(path) << R"({"ConfigurationSpace": {"TuningParameters": [)" << parameter
                        << R"(], "Conditions": []}})";
    return path;
  };
  const std::pair<std::string, std::string> cases[] = {
      {definition("type.json", R"({"Name": "a", "Type": 3, "Values": "[1, 2]"})"), "string"},
      {definition("complex.json", R"({"Name": "a", "Type": "complex", "Values": "[1, 2]"})"),
       "unknown Type 'complex'"},
      {definition("noname.json", R"({"Name": "", "Type": "int", "Values": "[1, 2]"})"),
       "empty Name"},
      {definition("huge.json", R"({"Name": "a", "Type": "float", "Values": [1e999]})"),
       "number overflow"},
      {definition("wrap.json", R"({"Name": "a", "Type": "int", "Values": [18446744073709551615]})"),
       "above the largest 64-bit integer"},
      {definition("deep.json", R"({"Name": "a", "Type": "int", "Values": "[)" +
                                   std::string(5000, '(') + "1" + std::string(5000, ')') +
                                   R"(]"})"),
       "levels deep"},
  };
  for (const auto& [path, expect] : cases) {
    auto def = LoadT1Definition(path);
    ASSERT_FALSE(def.ok()) << path;
    EXPECT_THAT(def.status().message(), HasSubstr(path));
    EXPECT_THAT(def.status().message(), HasSubstr(expect));
    EXPECT_THAT(def.status().message(), ::testing::Not(HasSubstr("json.exception")));
  }
}

// A space past the limit is refused, whether it gets there by size alone or through constraints
// that leave most of it (before the limit was checked only while storing points: 3.2 GB for
// 40 two-value parameters).
TEST(SearchSpaceTest, ASpacePastTheLimitIsRefused) {
  std::vector<Parameter> params;
  for (int k = 0; k < 40; ++k) {
    params.push_back({absl::StrCat("p", k), {ParamValue(int64_t{0}), ParamValue(int64_t{1})}});
  }
  for (const std::vector<std::string>& constraints :
       {std::vector<std::string>{}, std::vector<std::string>{"p0 + p1 < 2"}}) {
    auto space = SearchSpace::Create(params, constraints);
    ASSERT_FALSE(space.ok());
    EXPECT_EQ(space.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_THAT(space.status().message(), HasSubstr("more than 20000000 valid configurations"));
  }
  params.resize(20);  // 2^20: under the limit, enumerated once
  auto fits = SearchSpace::Create(params, {"p0 + p1 < 2"});
  ASSERT_TRUE(fits.ok()) << fits.status();
  EXPECT_EQ(fits->size(), 3 << 18);

  // A constraint on the last parameter that rejects everything: no point is ever valid, and
  // without a bound on the steps the walk over 1024^3 partial points took a server thread for
  // minutes (RegisterKernel, 4 x 4096 values: days).
  std::vector<Parameter> wide;
  for (int k = 0; k < 3; ++k) {
    Parameter p{absl::StrCat("w", k), {}};
    for (int64_t v = 0; v < 1024; ++v) p.values.push_back(ParamValue(v));
    wide.push_back(std::move(p));
  }
  auto endless = SearchSpace::Create(wide, {"w2 < 0"});
  ASSERT_FALSE(endless.ok());
  EXPECT_EQ(endless.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(endless.status().message(), HasSubstr("write constraints on the first parameters"));

  // Four parameters of 65,535 values: 1.8e19 configurations, more than the 2^63 ktune numbers
  // (it said "exceeds 2^64", which 1.8e19 does not, after a pairwise duplicate check per list).
  std::vector<Parameter> huge;
  for (int k = 0; k < 4; ++k) {
    Parameter p{absl::StrCat("h", k), {}};
    for (int64_t v = 0; v < 65535; ++v) p.values.push_back(ParamValue(v));
    huge.push_back(std::move(p));
  }
  auto too_many = SearchSpace::Create(huge, {});
  ASSERT_FALSE(too_many.ok());
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(too_many.status().message(), HasSubstr("1.845e+19 configurations, 2^63 or more"));
}

TEST(SearchSpaceTest, ARepeatedValueIsNamedWhereverItIsInALongList) {
  Parameter p{"x", {}};
  for (int64_t v = 0; v < 65534; ++v) p.values.push_back(ParamValue(v));
  p.values.push_back(ParamValue(int64_t{31337}));
  auto space = SearchSpace::Create({p}, {});
  ASSERT_FALSE(space.ok());
  EXPECT_THAT(space.status().message(), HasSubstr("'x' lists the value 31337 twice"));
  // The same number as an integer and as a float is two values.
  auto mixed = SearchSpace::Create({{"y", {ParamValue(int64_t{1}), ParamValue(1.0)}}}, {});
  EXPECT_TRUE(mixed.ok()) << mixed.status();
}

// The recorded files hold every configuration their definition allows, and nothing else.
TEST(SearchSpaceTest, T1DefinitionsMatchTheirRecordedSpaces) {
  const std::pair<const char*, const char*> pairs[] = {
      {"convolution_milo.json", "convolution_A100_T4.json.gz"},
      {"dedispersion_milo.json", "dedispersion_W6600_T4.json.gz"},
  };
  for (const auto& [definition, recorded] : pairs) {
    auto def = LoadT1Definition(DefinitionFile(definition));
    ASSERT_TRUE(def.ok()) << def.status();
    auto rec = LoadRecordedSpace(SpaceFile(recorded));
    ASSERT_TRUE(rec.ok()) << rec.status();
    std::set<std::string> from_definition, from_file;
    for (int64_t i = 0; i < def->space.size(); ++i) {
      from_definition.insert(CanonicalJson(def->space.ToConfiguration(def->space.PointAt(i))));
    }
    for (const Record& r : rec->records) from_file.insert(CanonicalJson(r.config));
    EXPECT_EQ(from_definition.size(), from_file.size()) << definition;
    EXPECT_TRUE(from_definition == from_file) << definition;
    EXPECT_EQ(rec->space.size(), static_cast<int64_t>(from_file.size()));
  }
}

TEST(SearchSpaceTest, RecordedSpaceHoldsExactlyTheFileConfigurations) {
  auto rec = LoadRecordedSpace(SpaceFile("convolution_MI250X_T4.json.gz"));
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->space.size(), static_cast<int64_t>(rec->records.size()));
  for (const Record& r : rec->records) {
    auto p = rec->space.ToPoint(r.config);
    ASSERT_TRUE(p.ok());
    EXPECT_TRUE(rec->space.IsValid(*p));
  }
  // A combination of known values that the file does not hold is not valid.
  int64_t invalid = 0;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 1000; ++i) {
    Point p;
    for (const Parameter& param : rec->space.parameters()) p.push_back(rng() % param.values.size());
    if (!rec->space.IsValid(p)) ++invalid;
  }
  EXPECT_GT(invalid, 0);
}

TEST(SearchSpaceTest, ProblemValuesTakePartInConstraints) {
  std::vector<Parameter> params = {{"tile", Ints({8, 16, 32, 64, 128})}};
  auto small = SearchSpace::Create(params, {"M % tile == 0", "tile <= M"}, {{"M", int64_t{48}}});
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->size(), 2);  // 8 and 16 divide 48
  auto large = SearchSpace::Create(params, {"M % tile == 0", "tile <= M"}, {{"M", int64_t{1024}}});
  ASSERT_TRUE(large.ok());
  EXPECT_EQ(large->size(), 5);
  auto none = SearchSpace::Create(params, {"M > 4096"}, {{"M", int64_t{1024}}});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->size(), 0);
}

TEST(SearchSpaceTest, SamplingIsUniformOverValidPoints) {
  std::vector<Parameter> params = {{"a", Ints({1, 2, 3, 4})}, {"b", Ints({1, 2, 3, 4})}};
  auto space = SearchSpace::Create(params, {"a * b <= 6"});
  ASSERT_TRUE(space.ok());
  const int64_t n = space->size();
  ASSERT_EQ(n, 10);
  std::mt19937_64 rng(42);
  std::map<Point, int> counts;
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) {
    Point p = space->SampleUniform(rng);
    ASSERT_TRUE(space->IsValid(p));
    ++counts[p];
  }
  ASSERT_EQ(static_cast<int64_t>(counts.size()), n);
  // Chi-square with 9 degrees of freedom: 27.9 is the 0.999 quantile.
  double expected = static_cast<double>(draws) / n, chi2 = 0;
  for (const auto& [p, c] : counts) chi2 += (c - expected) * (c - expected) / expected;
  EXPECT_LT(chi2, 27.9);
}

TEST(SearchSpaceTest, NeighboursAreValidAndDifferInOneParameter) {
  auto def = LoadT1Definition(DefinitionFile("convolution_milo.json"));
  ASSERT_TRUE(def.ok());
  const SearchSpace& space = def->space;
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 50; ++trial) {
    Point p = space.SampleUniform(rng);
    auto adjacent = space.Neighbours(p, Neighbourhood::kAdjacent);
    auto hamming = space.Neighbours(p, Neighbourhood::kHamming);
    EXPECT_LE(adjacent.size(), hamming.size());
    for (const Point& q : hamming) {
      EXPECT_TRUE(space.IsValid(q));
      int differing = 0;
      for (size_t k = 0; k < p.size(); ++k) differing += p[k] != q[k];
      EXPECT_EQ(differing, 1);
    }
    for (const Point& q : adjacent) {
      for (size_t k = 0; k < p.size(); ++k) EXPECT_LE(std::abs(int(p[k]) - int(q[k])), 1);
    }
    // Every valid one-step change is listed: compare with a brute-force scan.
    size_t brute = 0;
    for (size_t k = 0; k < p.size(); ++k) {
      for (size_t v = 0; v < space.parameters()[k].values.size(); ++v) {
        if (v == p[k]) continue;
        Point q = p;
        q[k] = static_cast<uint16_t>(v);
        brute += space.IsValid(q);
      }
    }
    EXPECT_EQ(hamming.size(), brute);
  }
}

int Differing(const Point& p, const Point& q) {
  int n = 0;
  for (size_t k = 0; k < p.size(); ++k) n += p[k] != q[k];
  return n;
}

TEST(SearchSpaceTest, TwoParameterChangesListEveryValidOneUnderTheLimit) {
  auto def = LoadT1Definition(DefinitionFile("convolution_milo.json"));
  ASSERT_TRUE(def.ok());
  const SearchSpace& space = def->space;
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 20; ++trial) {
    const Point p = space.SampleUniform(rng);
    // Brute force: every valid point two parameters away.
    std::set<Point> brute;
    for (int64_t i = 0; i < space.size(); ++i) {
      if (Differing(p, space.PointAt(i)) == 2) brute.insert(space.PointAt(i));
    }
    const std::vector<Point> all =
        space.TwoParameterChanges(p, space.TwoParameterChangeCount(), rng);
    EXPECT_EQ(std::set<Point>(all.begin(), all.end()), brute);
    EXPECT_EQ(all.size(), brute.size());  // each once
    const int64_t candidates = space.TwoParameterChangeCount();
    EXPECT_GE(candidates, static_cast<int64_t>(brute.size()));
    // The same list whatever the generator's state: no draws under the limit.
    std::mt19937_64 other(99);
    EXPECT_EQ(space.TwoParameterChanges(p, candidates, other), all);
  }
}

TEST(SearchSpaceTest, TwoParameterChangesAreSampledPastTheLimit) {
  // Three parameters of 60 values: 3 * 59 * 59 = 10,443 two-parameter changes of a point, about
  // half of them invalid (a + b must be even).
  std::vector<Parameter> params;
  for (const char* name : {"a", "b", "c"}) {
    std::vector<ParamValue> values;
    for (int64_t v = 0; v < 60; ++v) values.emplace_back(std::in_place_type<int64_t>, v);
    params.push_back({name, std::move(values)});
  }
  auto space = SearchSpace::Create(params, {"(a + b) % 2 == 0"});
  ASSERT_TRUE(space.ok()) << space.status();
  ASSERT_EQ(space->TwoParameterChangeCount(), 3 * 59 * 59);
  const Point p = {10, 20, 30};
  std::mt19937_64 rng(7);
  const std::vector<Point> sample = space->TwoParameterChanges(p, 600, rng);
  // 600 draws: about half are invalid and a few repeat, so about 300 come back.
  EXPECT_LE(sample.size(), 600u);
  EXPECT_GE(sample.size(), 200u);
  std::set<Point> distinct(sample.begin(), sample.end());
  EXPECT_EQ(distinct.size(), sample.size());
  std::set<std::pair<int, int>> pairs_seen;
  for (const Point& q : sample) {
    EXPECT_TRUE(space->IsValid(q));
    ASSERT_EQ(Differing(p, q), 2);
    std::vector<int> changed;
    for (int k = 0; k < 3; ++k) {
      if (p[k] != q[k]) changed.push_back(k);
    }
    pairs_seen.insert({changed[0], changed[1]});
  }
  EXPECT_EQ(pairs_seen.size(), 3u);  // every parameter pair is drawn from
  // Same generator state, same sample; another seed, another sample.
  std::mt19937_64 again(7), other(8);
  EXPECT_EQ(space->TwoParameterChanges(p, 600, again), sample);
  EXPECT_NE(space->TwoParameterChanges(p, 600, other), sample);
}

TEST(SearchSpaceTest, ConfigurationsRoundTripThroughPoints) {
  auto def = LoadT1Definition(DefinitionFile("dedispersion_milo.json"));
  ASSERT_TRUE(def.ok());
  for (int64_t i = 0; i < def->space.size(); i += 101) {
    Point p = def->space.PointAt(i);
    auto back = def->space.ToPoint(def->space.ToConfiguration(p));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, p);
    EXPECT_EQ(def->space.IndexOf(p), i);
  }
}

TEST(SearchSpaceTest, BadInputIsRefusedWithAClearMessage) {
  auto dup = SearchSpace::Create({{"a", Ints({1, 2, 1})}}, {});
  EXPECT_THAT(dup.status().message(), HasSubstr("lists the value 1 twice"));
  auto empty = SearchSpace::Create({{"a", {}}}, {});
  EXPECT_THAT(empty.status().message(), HasSubstr("has no values"));
  auto unknown = SearchSpace::Create({{"a", Ints({1, 2})}}, {"a < b"});
  EXPECT_THAT(unknown.status().message(), HasSubstr("unknown name 'b'"));
  EXPECT_THAT(unknown.status().message(), HasSubstr("a < b"));

  auto space = SearchSpace::Create({{"a", Ints({1, 2})}, {"b", Ints({3})}}, {});
  ASSERT_TRUE(space.ok());
  EXPECT_THAT(space->ToPoint({{"a", int64_t{1}}}).status().message(), HasSubstr("'b' is missing"));
  EXPECT_THAT(space->ToPoint({{"a", int64_t{5}}, {"b", int64_t{3}}}).status().message(),
              HasSubstr("not in its value list"));
  EXPECT_THAT(
      space->ToPoint({{"a", int64_t{1}}, {"b", int64_t{3}}, {"c", int64_t{0}}}).status().message(),
      HasSubstr("unknown parameter 'c'"));
}

TEST(T1DefinitionTest, BrokenFilesNameTheFileAndThePart) {
  testing::TempDir dir;
  std::string path = dir.File("bad.json");
  FILE* f = fopen(path.c_str(), "w");
  fputs(R"({"ConfigurationSpace": {"TuningParameters": [{"Name": "x", "Type": "int",
        "Values": "[1, 2"}]}})",
        f);
  fclose(f);
  auto def = LoadT1Definition(path);
  ASSERT_FALSE(def.ok());
  EXPECT_THAT(def.status().message(), HasSubstr(path));
  EXPECT_THAT(def.status().message(), HasSubstr("parameter x"));
}

}  // namespace
}  // namespace ktune
