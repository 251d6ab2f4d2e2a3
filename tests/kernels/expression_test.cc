// Expressions are checked against Python 3's own answers for the same text (worked out by hand
// from Python's rules and noted beside each case), then for errors a user would make.
#include "kernels/expression.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>

namespace ktune {
namespace {

using ::testing::HasSubstr;

ExprValue Eval(const std::string& text, ExprSymbols& symbols, const ExprValue* slots = nullptr) {
  auto e = Expression::Compile(text, symbols);
  EXPECT_TRUE(e.ok()) << text << ": " << e.status();
  auto v = e->Evaluate(slots);
  EXPECT_TRUE(v.ok()) << text << ": " << v.status();
  return *v;
}

TEST(ExpressionTest, IntegerArithmeticFollowsPython) {
  ExprSymbols s;
  struct Case {
    const char* text;
    int64_t want;
  } cases[] = {
      {"1 + 2 * 3", 7},    {"(1 + 2) * 3", 9},   {"7 // 2", 3},     {"-7 // 2", -4},
      {"7 // -2", -4},     {"-7 % 3", 2},        {"7 % -3", -2},    {"2 ** 10", 1024},
      {"-2 ** 2", -4},     {"2 ** 3 ** 2", 512}, {"10 - 3 - 2", 5}, {"min(3, 1, 2)", 1},
      {"max(3, 9, 2)", 9}, {"abs(-3)", 3},       {"int(7 / 2)", 3}, {"0x10 + 1", 17},
  };
  for (const Case& c : cases) {
    ExprValue v = Eval(c.text, s);
    EXPECT_EQ(v.kind, ExprValue::Kind::kInt) << c.text;
    EXPECT_EQ(v.i, c.want) << c.text;
  }
}

// A server compiles the constraints of kernels its clients register, so hostile expressions
// must come back as errors: deep nesting must not exhaust the stack, and integer results
// outside int64_t must not wrap or trap (SIGFPE on INT64_MIN // -1).
TEST(ExpressionTest, RefusesNestingThatWouldExhaustTheStack) {
  ExprSymbols s;
  const std::string deep = std::string(20000, '(') + "1" + std::string(20000, ')');
  auto parens = Expression::Compile(deep, s);
  ASSERT_FALSE(parens.ok());
  EXPECT_THAT(parens.status().message(), HasSubstr("levels deep"));
  std::string signs(300000, '-');
  EXPECT_THAT(Expression::Compile(signs + "1", s).status().message(), HasSubstr("levels deep"));
  std::string nots;
  for (int k = 0; k < 100000; ++k) nots += "not ";
  EXPECT_THAT(Expression::Compile(nots + "1", s).status().message(), HasSubstr("levels deep"));
  std::string powers = "1";
  for (int k = 0; k < 100000; ++k) powers += "**1";
  EXPECT_THAT(Expression::Compile(powers, s).status().message(), HasSubstr("levels deep"));
  std::string sum = "1";
  for (int k = 0; k < 100000; ++k) sum += "+1";
  EXPECT_THAT(Expression::Compile(sum, s).status().message(), HasSubstr("operations in one chain"));
  EXPECT_THAT(EvaluateValueList(std::string(20000, '(') + "[1]" + std::string(20000, ')'), s)
                  .status()
                  .message(),
              HasSubstr("levels deep"));
  // What real definitions write still compiles: 50 levels, a chain of 1,500 sums.
  EXPECT_EQ(Eval(std::string(50, '(') + "7" + std::string(50, ')'), s).i, 7);
  std::string long_sum = "0";
  for (int k = 0; k < 1500; ++k) long_sum += "+1";
  EXPECT_EQ(Eval(long_sum, s).i, 1500);
}

TEST(ExpressionTest, IntegerOverflowIsAnErrorNotAWrapOrATrap) {
  ExprSymbols s;
  for (const char* text :
       {"9223372036854775807 + 1", "-9223372036854775807 - 2", "4294967296 * 4294967296", "2 ** 63",
        "2 ** 1000", "(-9223372036854775807 - 1) // -1", "-(-9223372036854775807 - 1)",
        "abs(-9223372036854775807 - 1)", "int(1e300)", "round(1e308 * 10 - 1e308 * 10)"}) {
    auto e = Expression::Compile(text, s);
    ASSERT_TRUE(e.ok()) << text << ": " << e.status();
    auto v = e->Evaluate(nullptr);
    EXPECT_FALSE(v.ok()) << text << " gave " << (v.ok() ? v->i : 0);
    EXPECT_FALSE(e->IsTrue(nullptr)) << text;  // a constraint that overflows rules its point out
  }
  EXPECT_EQ(Eval("(-9223372036854775807 - 1) % -1", s).i, 0);  // Python: 0, x86: SIGFPE
  EXPECT_EQ(Eval("(-2) ** 63", s).i, std::numeric_limits<int64_t>::min());
  EXPECT_EQ(Eval("3 ** 39", s).i, 4052555153018976267);
  EXPECT_EQ(Eval("1 ** 100000000000", s).i, 1);
  EXPECT_EQ(Eval("-7 // 2", s).i, -4);
}

TEST(ExpressionTest, TrueDivisionGivesFloats) {
  ExprSymbols s;
  ExprValue v = Eval("7 / 2", s);
  EXPECT_EQ(v.kind, ExprValue::Kind::kFloat);
  EXPECT_DOUBLE_EQ(v.f, 3.5);
  // The GEMM definition's `KWG % ((MDIMC * NDIMC) / MDIMA)`: float modulo, 32 % 4.0 == 0.0.
  v = Eval("32 % ((8 * 16) / 32)", s);
  EXPECT_EQ(v.kind, ExprValue::Kind::kFloat);
  EXPECT_DOUBLE_EQ(v.f, 0.0);
  EXPECT_DOUBLE_EQ(Eval("-7.5 % 2", s).f, 0.5);  // Python: 0.5
  EXPECT_DOUBLE_EQ(Eval("7.5 // 2", s).f, 3.0);
}

TEST(ExpressionTest, ChainedComparisonsMeanAnd) {
  ExprSymbols s;
  EXPECT_TRUE(Eval("1 < 2 < 3", s).Truthy());
  EXPECT_FALSE(Eval("3 > 2 < 1", s).Truthy());  // 3 > 2 and 2 < 1; muparser would say true
  EXPECT_TRUE(Eval("1 < 3 > 2", s).Truthy());
  EXPECT_TRUE(Eval("32 <= 8 * 4 <= 1024", s).Truthy());
  EXPECT_FALSE(Eval("32 <= 8 * 256 <= 1024", s).Truthy());
  EXPECT_TRUE(Eval("1 == 1.0", s).Truthy());
}

TEST(ExpressionTest, BooleanOperatorsReturnOperandsAndShortCircuit) {
  ExprSymbols s;
  EXPECT_EQ(Eval("0 or 5", s).i, 5);
  EXPECT_EQ(Eval("1 and 0", s).i, 0);
  EXPECT_EQ(Eval("2 and 3", s).i, 3);
  EXPECT_EQ(Eval("not 0 and 1", s).i, 1);  // (not 0) and 1
  EXPECT_EQ(Eval("not 1 or 0", s).i, 0);
  // Short-circuit: the division by zero is never evaluated.
  EXPECT_EQ(Eval("1 or 1 // 0", s).i, 1);
  EXPECT_EQ(Eval("0 and 1 // 0", s).i, 0);
  EXPECT_EQ(Eval("True + True", s).i, 2);
}

TEST(ExpressionTest, VariablesResolveToSlots) {
  ExprSymbols s;
  ASSERT_TRUE(s.Bind("block_size_x", 0));
  ASSERT_TRUE(s.Bind("block_size_y", 1));
  ExprValue slots[] = {ExprValue::Int(32), ExprValue::Int(16)};
  auto e = Expression::Compile("32 <= block_size_x * block_size_y <= 1024", s);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_TRUE(e->IsTrue(slots));
  slots[1] = ExprValue::Int(64);
  EXPECT_FALSE(e->IsTrue(slots));
  EXPECT_EQ(e->slots_used(), (std::vector<int>{0, 1}));
}

TEST(ExpressionTest, StringsCompareByEquality) {
  ExprSymbols s;
  ASSERT_TRUE(s.Bind("layout", 0));
  ExprValue slots[] = {ExprValue::String(s.Intern("nt"))};
  EXPECT_TRUE(Eval("layout == 'nt'", s, slots).Truthy());
  EXPECT_TRUE(Eval("layout != \"tn\"", s, slots).Truthy());
  auto e = Expression::Compile("layout < 'x'", s);
  ASSERT_TRUE(e.ok());
  EXPECT_THAT(e->Evaluate(slots).status().message(), HasSubstr("strings"));
}

TEST(ExpressionTest, CompileErrorsNameTheColumnAndTheProblem) {
  ExprSymbols s;
  ASSERT_TRUE(s.Bind("MWG", 0));
  auto e = Expression::Compile("MWG % VWM == 0", s);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(e.status().message(), HasSubstr("unknown name 'VWM'"));
  EXPECT_THAT(e.status().message(), HasSubstr("column 7"));
  EXPECT_THAT(e.status().message(), HasSubstr("MWG % VWM == 0"));

  EXPECT_THAT(Expression::Compile("(1 + 2", s).status().message(), HasSubstr("expected ')'"));
  EXPECT_THAT(Expression::Compile("1 + ", s).status().message(), HasSubstr("expected a value"));
  EXPECT_THAT(Expression::Compile("1 2", s).status().message(), HasSubstr("unexpected '2'"));
  // A character no token starts with: the message quotes the expression too (one of a spec's
  // constraints was refused with only a column).
  EXPECT_THAT(Expression::Compile("1 $ 2", s).status().message(),
              HasSubstr("in expression '1 $ 2': unexpected character '$' at column 3"));
  EXPECT_THAT(Expression::Compile("abs(1, 2)", s).status().message(), HasSubstr("arguments"));
}

TEST(ExpressionTest, DivisionByZeroIsAnErrorAndRulesOutTheConfiguration) {
  ExprSymbols s;
  ASSERT_TRUE(s.Bind("x", 0));
  auto e = Expression::Compile("64 % x == 0", s);
  ASSERT_TRUE(e.ok());
  ExprValue zero[] = {ExprValue::Int(0)};
  EXPECT_THAT(e->Evaluate(zero).status().message(), HasSubstr("division by zero"));
  EXPECT_FALSE(e->IsTrue(zero));
  ExprValue eight[] = {ExprValue::Int(8)};
  EXPECT_TRUE(e->IsTrue(eight));
}

std::vector<int64_t> Ints(const std::vector<ExprValue>& values) {
  std::vector<int64_t> out;
  for (const ExprValue& v : values) out.push_back(v.i);
  return out;
}

TEST(ValueListTest, ReadsTheListFormsOfT1Definitions) {
  ExprSymbols s;
  auto plain = EvaluateValueList("[16, 32, 64]", s);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(Ints(*plain), (std::vector<int64_t>{16, 32, 64}));

  // hotspot_milo.json's block_size_x.
  auto concat = EvaluateValueList("[1, 2, 4, 8, 16] + list(range(32, 1024+1, 32))", s);
  ASSERT_TRUE(concat.ok()) << concat.status();
  ASSERT_EQ(concat->size(), 5u + 32u);
  EXPECT_EQ(concat->at(5).i, 32);
  EXPECT_EQ(concat->back().i, 1024);

  auto powers = EvaluateValueList("[2**i for i in range(0, 6)]", s);
  ASSERT_TRUE(powers.ok()) << powers.status();
  EXPECT_EQ(Ints(*powers), (std::vector<int64_t>{1, 2, 4, 8, 16, 32}));

  auto filtered = EvaluateValueList("[i * 2 for i in range(10) if i % 3 == 0]", s);
  ASSERT_TRUE(filtered.ok()) << filtered.status();
  EXPECT_EQ(Ints(*filtered), (std::vector<int64_t>{0, 6, 12, 18}));

  auto empty = EvaluateValueList("[]", s);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(ValueListTest, ErrorsNameTheColumn) {
  ExprSymbols s;
  auto bad = EvaluateValueList("[1, 2", s);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("column"));
  EXPECT_THAT(EvaluateValueList("range(1, 2, 0)", s).status().message(), HasSubstr("step"));
  EXPECT_THAT(EvaluateValueList("[x for y in range(3)]", s).status().message(),
              HasSubstr("unknown name 'x'"));
}

}  // namespace
}  // namespace ktune
