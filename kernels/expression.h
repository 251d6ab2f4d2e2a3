// Python-style expressions for search-space constraints and value lists, as written in T1
// definition files and Kernel Tuner restrictions:
//
//   32 <= block_size_x * block_size_y <= 1024          chained comparisons
//   use_padding == 0 or block_size_x % 32 != 0        and / or / not
//   KWG % ((MDIMC * NDIMC) / MDIMA) == 0              true division, Python's floor-mod
//   [1, 2, 4] + list(range(32, 1024 + 1, 32))          value lists (ParseValueList)
//   [2**i for i in range(0, 6) if i != 3]              list comprehensions
//
// Semantics follow Python 3: int and float arithmetic (`/` is true division, `//` and `%` floor
// towards negative infinity), `and`/`or` short-circuit and return an operand, min/max/abs/int/
// float calls, string literals compared with == and !=.
//
// Why not muparser: it has no `and`/`or`/`not` keywords, no `%` or `//`, evaluates `a < b < c`
// as `(a < b) < c` (Python means `a < b and b < c`), and has only one numeric type, so
// `7 // 2` and `7 / 2` cannot both be right. Expressions here compile once to a flat tree of
// nodes with variables resolved to slots, so evaluating one costs tens of nanoseconds.
//
// Thread safety: a compiled Expression is immutable; Evaluate may run concurrently.
#ifndef KTUNE_KERNELS_EXPRESSION_H_
#define KTUNE_KERNELS_EXPRESSION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ktune {

// A value during evaluation. Strings are interned: `i` is the id in the ExprSymbols' pool.
struct ExprValue {
  enum class Kind : uint8_t { kInt, kFloat, kString };
  Kind kind = Kind::kInt;
  int64_t i = 0;
  double f = 0;

  static ExprValue Int(int64_t v) { return {Kind::kInt, v, 0}; }
  static ExprValue Float(double v) { return {Kind::kFloat, 0, v}; }
  static ExprValue String(int64_t id) { return {Kind::kString, id, 0}; }
  bool is_number() const { return kind != Kind::kString; }
  double AsDouble() const { return kind == Kind::kFloat ? f : static_cast<double>(i); }
  bool Truthy() const;
};

// Names an expression may use, each bound to a slot of the values array passed to Evaluate,
// plus the pool that interns string literals and string parameter values.
class ExprSymbols {
 public:
  // Binds `name` to `slot`. Returns false if the name is already bound.
  bool Bind(const std::string& name, int slot);
  // The slot of `name`, or -1.
  int Find(absl::string_view name) const;
  // The id of `s` in the string pool, adding it if new.
  int64_t Intern(absl::string_view s);
  const std::string& StringOf(int64_t id) const { return strings_[id]; }

 private:
  absl::flat_hash_map<std::string, int> slots_;
  absl::flat_hash_map<std::string, int64_t> string_ids_;
  std::vector<std::string> strings_;
};

class Expression {
 public:
  // Compiles `text`. InvalidArgument naming the column and the problem (unknown name, unexpected
  // token, unbalanced parenthesis) when it does not parse. String literals are interned in
  // `symbols`.
  static absl::StatusOr<Expression> Compile(absl::string_view text, ExprSymbols& symbols);

  // Evaluates with `slots[k]` the value of the name bound to slot k. InvalidArgument on
  // division by zero or an operation on mismatched types.
  absl::StatusOr<ExprValue> Evaluate(const ExprValue* slots) const;
  // Fast path for constraints: the truth of the expression; false when evaluation fails (a
  // constraint that cannot be evaluated, e.g. divides by zero, rules its configuration out).
  bool IsTrue(const ExprValue* slots) const;

  const std::string& text() const { return text_; }
  // Slots the expression reads, ascending, without duplicates.
  const std::vector<int>& slots_used() const { return slots_used_; }

  // One node of the compiled tree; an implementation detail, public only for the evaluator.
  struct Node {
    enum class Op : uint8_t {
      kConst,
      kVar,
      kNeg,
      kPos,
      kNot,
      kAnd,
      kOr,
      kAdd,
      kSub,
      kMul,
      kTrueDiv,
      kFloorDiv,
      kMod,
      kPow,
      kCompareChain,
      kCall,
    };
    enum class Cmp : uint8_t { kLt, kLe, kGt, kGe, kEq, kNe };
    Op op = Op::kConst;
    ExprValue constant;     // kConst
    int slot = -1;          // kVar
    int a = -1, b = -1;     // operands of unary and binary ops
    std::vector<int> args;  // kCompareChain operands, kCall arguments
    std::vector<Cmp> cmps;  // kCompareChain operators (args.size() - 1)
    std::string function;   // kCall: min, max, abs, int, float, round
  };

 private:
  friend class ExprParser;
  std::string text_;
  std::vector<Node> nodes_;  // nodes_[root_] is the root
  int root_ = -1;
  std::vector<int> slots_used_;
};

// Evaluates a value-list expression (a T1 "Values" string such as "[16, 32, 64]" or
// "[2**i for i in range(0, 6)]") with no free variables. InvalidArgument naming the column when
// it does not parse or evaluate. String elements are interned in `symbols`.
absl::StatusOr<std::vector<ExprValue>> EvaluateValueList(absl::string_view text,
                                                         ExprSymbols& symbols);

}  // namespace ktune

#endif  // KTUNE_KERNELS_EXPRESSION_H_
