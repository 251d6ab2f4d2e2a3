// The canonical form of configurations is what makes hashes, dedup and export stable: these
// tests pin its bytes and its independence from input order.
#include "kernels/configuration.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace ktune {
namespace {

using ::testing::HasSubstr;

TEST(ConfigurationTest, CanonicalJsonSortsKeysAndKeepsTypes) {
  Configuration c = {{"b", int64_t{2}}, {"a", 0.5}, {"c", std::string("nt")}, {"d", 1.0}};
  EXPECT_EQ(CanonicalJson(c), R"({"a":0.5,"b":2,"c":"nt","d":1.0})");
  auto parsed = ParseParamMapJson(R"({ "d": 1.0, "c": "nt", "b": 2, "a": 0.5 })");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, c);
  EXPECT_EQ(ParamMapHash(*parsed), ParamMapHash(c));
}

// A changed hash would make every stored record look new: this pins the function. The value is
// XXH3-64 of the canonical bytes {"MWG":64,"NWG":32}, cross-checked with Python's xxhash package.
TEST(ConfigurationTest, HashIsStableAcrossReleases) {
  EXPECT_EQ(ParamMapHash({{"MWG", int64_t{64}}, {"NWG", int64_t{32}}}), "0dee3ec793b11772");
  EXPECT_NE(ParamMapHash({{"x", int64_t{1}}}), ParamMapHash({{"x", 1.0}}));
}

// Configurations are parsed from JSON on every record read: a flat object of numbers, strings
// and booleans (as 0/1), nothing else, and never a crash on bad text.
TEST(ConfigurationTest, JsonConfigurationsAreFlatObjectsOfScalars) {
  auto p = ParseParamMapJson(R"({"a":true,"b":-3,"c":"x","d":2.5e3,"e":false,"b":4})");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*p, (Configuration{{"a", int64_t{1}},
                               {"b", int64_t{4}},  // a repeated key: the last one counts
                               {"c", std::string("x")},
                               {"d", 2500.0},
                               {"e", int64_t{0}}}));
  EXPECT_TRUE(ParseParamMapJson("{}")->empty());
  for (const char* bad : {"", "[1,2]", "5", "\"s\"", "{", "{\"a\":1", "{\"a\":1}{}", "null",
                          "{\"a\" 1}", "not json"}) {
    absl::StatusOr<ParamMap> r = ParseParamMapJson(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_THAT(r.status().message(), HasSubstr("not a JSON object")) << bad;
  }
  for (const char* bad : {R"({"a":null})", R"({"a":[1]})", R"({"a":{"b":1}})"}) {
    absl::StatusOr<ParamMap> r = ParseParamMapJson(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_THAT(r.status().message(), HasSubstr("parameter 'a' is not a number or string")) << bad;
  }
}

TEST(ConfigurationTest, AssignmentsParseNumbersThenStrings) {
  auto p = ParseParamMapAssignments("M=1024, N=512,alpha=0.5,dtype=f32");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(std::get<int64_t>(p->at("M")), 1024);
  EXPECT_EQ(std::get<double>(p->at("alpha")), 0.5);
  EXPECT_EQ(std::get<std::string>(p->at("dtype")), "f32");
  EXPECT_EQ(FormatParamMapAssignments(*p), "M=1024,N=512,alpha=0.5,dtype=f32");
  EXPECT_TRUE(ParseParamMapAssignments("")->empty());
}

TEST(ConfigurationTest, BadAssignmentsSayWhatIsWrong) {
  EXPECT_THAT(ParseParamMapAssignments("M1024").status().message(), HasSubstr("NAME=VALUE"));
  EXPECT_THAT(ParseParamMapAssignments("M=1,M=2").status().message(), HasSubstr("given twice"));
  EXPECT_THAT(ParseParamMapAssignments("=3").status().message(), HasSubstr("no name"));
  EXPECT_THAT(ParseParamMapAssignments("M=").status().message(), HasSubstr("no value"));
}

TEST(ConfigurationTest, ValuesOrderNumericallyThenStrings) {
  EXPECT_TRUE(ParamValueLess(int64_t{2}, int64_t{10}));
  EXPECT_TRUE(ParamValueLess(int64_t{2}, 2.5));
  EXPECT_TRUE(ParamValueLess(100.0, std::string("a")));
  EXPECT_FALSE(ParamValueLess(std::string("a"), int64_t{1}));
}

}  // namespace
}  // namespace ktune
