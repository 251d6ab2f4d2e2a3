#include "kernels/expression.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace ktune {

bool ExprValue::Truthy() const {
  switch (kind) {
    case Kind::kInt:
      return i != 0;
    case Kind::kFloat:
      return f != 0.0;
    case Kind::kString:
      return true;  // only non-empty literals reach here in practice
  }
  return false;
}

bool ExprSymbols::Bind(const std::string& name, int slot) {
  return slots_.emplace(name, slot).second;
}

int ExprSymbols::Find(absl::string_view name) const {
  auto it = slots_.find(name);
  return it == slots_.end() ? -1 : it->second;
}

int64_t ExprSymbols::Intern(absl::string_view s) {
  auto it = string_ids_.find(s);
  if (it != string_ids_.end()) return it->second;
  int64_t id = static_cast<int64_t>(strings_.size());
  strings_.emplace_back(s);
  string_ids_.emplace(std::string(s), id);
  return id;
}

// ---------------------------------------------------------------------------------------------
// Tokens

namespace {

// An expression's text as error messages quote it: at most 80 characters, so that a generated
// expression of 20,000 parentheses does not flood the terminal.
std::string Excerpt(absl::string_view text) {
  if (text.size() <= 80) return std::string(text);
  return absl::StrCat(text.substr(0, 77), "...");
}

enum class Tok { kNum, kStr, kName, kOp, kEnd };

struct Token {
  Tok kind;
  std::string text;
  size_t column;  // 1-based
  ExprValue number;
};

absl::StatusOr<std::vector<Token>> Tokenize(absl::string_view s) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    size_t col = i + 1;
    if (std::isdigit(static_cast<unsigned char>(c)) ||
        (c == '.' && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1])))) {
      size_t j = i;
      bool is_float = false;
      while (j < s.size() &&
             (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '.' || s[j] == '_' ||
              ((s[j] == '+' || s[j] == '-') && (s[j - 1] == 'e' || s[j - 1] == 'E') &&
               !(s.substr(i, 2) == "0x")))) {
        if (s[j] == '.' || s[j] == 'e' || s[j] == 'E') is_float = true;
        ++j;
      }
      std::string text(s.substr(i, j - i));
      text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
      Token t{Tok::kNum, text, col, {}};
      if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
        is_float = false;
      }
      if (is_float) {
        double d;
        if (!absl::SimpleAtod(text, &d)) {
          return absl::InvalidArgumentError(
              absl::StrCat("bad number '", text, "' at column ", col));
        }
        t.number = ExprValue::Float(d);
      } else {
        int64_t v;
        bool ok = (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X'))
                      ? absl::SimpleHexAtoi(text.substr(2), &v)
                      : absl::SimpleAtoi(text, &v);
        if (!ok) {
          return absl::InvalidArgumentError(
              absl::StrCat("bad number '", text, "' at column ", col));
        }
        t.number = ExprValue::Int(v);
      }
      out.push_back(std::move(t));
      i = j;
      continue;
    }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      out.push_back({Tok::kName, std::string(s.substr(i, j - i)), col, {}});
      i = j;
      continue;
    }
    if (c == '"' || c == '\'') {
      size_t j = i + 1;
      std::string text;
      while (j < s.size() && s[j] != c) {
        if (s[j] == '\\' && j + 1 < s.size()) ++j;
        text.push_back(s[j++]);
      }
      if (j >= s.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("unterminated string starting at column ", col));
      }
      out.push_back({Tok::kStr, text, col, {}});
      i = j + 1;
      continue;
    }
    static const char* kTwoChar[] = {"**", "//", "<=", ">=", "==", "!="};
    bool matched = false;
    for (const char* op : kTwoChar) {
      if (s.substr(i, 2) == op) {
        out.push_back({Tok::kOp, op, col, {}});
        i += 2;
        matched = true;
        break;
      }
    }
    if (matched) continue;
    if (std::string("+-*/%<>()[],").find(c) != std::string::npos) {
      out.push_back({Tok::kOp, std::string(1, c), col, {}});
      ++i;
      continue;
    }
    // Expressions are Python's (Kernel Tuner's restrictions): a C or CUDA author writes && first.
    const char* hint = (c == '&' || c == '|' || c == '!') ? " (write 'and', 'or', 'not')" : "";
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected character '", std::string(1, c), "' at column ", col, hint));
  }
  out.push_back({Tok::kEnd, "", s.size() + 1, {}});
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Parser: recursive descent over Python's precedence levels.

// Parsing and evaluation recurse, so a hostile or generated expression (thousands of nested
// parentheses, signs or `not`s, or a chain of 100,000 sums) must be refused before it exhausts
// the stack: a server compiles the constraints of kernels its clients register. Real
// constraints nest a few levels and chain a few dozen operations.
constexpr int kMaxNesting = 200;      // parentheses, calls, unary operators, value lists
constexpr int kMaxTreeDepth = 2000;   // operations on the longest path of one expression

// Counts one level of recursion for as long as it lives.
class NestingGuard {
 public:
  explicit NestingGuard(int& depth) : depth_(depth) { ++depth_; }
  ~NestingGuard() { --depth_; }
  bool too_deep() const { return depth_ > kMaxNesting; }

 private:
  int& depth_;
};

class ExprParser {
 public:
  using Node = Expression::Node;
  ExprParser(const std::vector<Token>& toks, size_t pos, ExprSymbols& symbols)
      : toks_(toks), pos_(pos), symbols_(symbols) {}

  size_t pos() const { return pos_; }

  // Parses one scalar expression from the current position into `out`.
  absl::Status ParseInto(Expression& out) {
    out_ = &out;
    KTUNE_ASSIGN_OR_RETURN(out.root_, ParseOr());
    if (tree_too_deep_) {
      return absl::InvalidArgumentError(
          absl::StrCat("more than ", kMaxTreeDepth, " operations in one chain"));
    }
    std::sort(out.slots_used_.begin(), out.slots_used_.end());
    out.slots_used_.erase(std::unique(out.slots_used_.begin(), out.slots_used_.end()),
                          out.slots_used_.end());
    return absl::OkStatus();
  }

 private:
  const Token& Peek() const { return toks_[pos_]; }
  bool IsOp(const char* op) const { return Peek().kind == Tok::kOp && Peek().text == op; }
  bool IsName(const char* kw) const { return Peek().kind == Tok::kName && Peek().text == kw; }

  absl::Status Error(const std::string& what) const {
    const Token& t = Peek();
    std::string near = t.kind == Tok::kEnd ? "end of expression" : absl::StrCat("'", t.text, "'");
    return absl::InvalidArgumentError(
        absl::StrCat(what, " at column ", t.column, " (near ", near, ")"));
  }

  int Add(Node n) {
    int depth = 0;
    for (int child : {n.a, n.b}) {
      if (child >= 0) depth = std::max(depth, depths_[child]);
    }
    for (int child : n.args) depth = std::max(depth, depths_[child]);
    tree_too_deep_ = tree_too_deep_ || depth + 1 > kMaxTreeDepth;
    depths_.push_back(depth + 1);
    out_->nodes_.push_back(std::move(n));
    return static_cast<int>(out_->nodes_.size() - 1);
  }
  absl::Status TooDeep() const {
    return Error(absl::StrCat("nested more than ", kMaxNesting, " levels deep"));
  }
  int Binary(Node::Op op, int a, int b) {
    Node n;
    n.op = op;
    n.a = a;
    n.b = b;
    return Add(std::move(n));
  }

  absl::StatusOr<int> ParseOr() {
    KTUNE_ASSIGN_OR_RETURN(int lhs, ParseAnd());
    while (IsName("or")) {
      ++pos_;
      KTUNE_ASSIGN_OR_RETURN(int rhs, ParseAnd());
      lhs = Binary(Node::Op::kOr, lhs, rhs);
    }
    return lhs;
  }

  absl::StatusOr<int> ParseAnd() {
    KTUNE_ASSIGN_OR_RETURN(int lhs, ParseNot());
    while (IsName("and")) {
      ++pos_;
      KTUNE_ASSIGN_OR_RETURN(int rhs, ParseNot());
      lhs = Binary(Node::Op::kAnd, lhs, rhs);
    }
    return lhs;
  }

  absl::StatusOr<int> ParseNot() {
    if (IsName("not")) {
      NestingGuard nesting(depth_);
      if (nesting.too_deep()) return TooDeep();
      ++pos_;
      KTUNE_ASSIGN_OR_RETURN(int operand, ParseNot());
      return Binary(Node::Op::kNot, operand, -1);
    }
    return ParseComparison();
  }

  bool PeekCmp(Node::Cmp* cmp) const {
    if (Peek().kind != Tok::kOp) return false;
    const std::string& t = Peek().text;
    if (t == "<")
      *cmp = Node::Cmp::kLt;
    else if (t == "<=")
      *cmp = Node::Cmp::kLe;
    else if (t == ">")
      *cmp = Node::Cmp::kGt;
    else if (t == ">=")
      *cmp = Node::Cmp::kGe;
    else if (t == "==")
      *cmp = Node::Cmp::kEq;
    else if (t == "!=")
      *cmp = Node::Cmp::kNe;
    else
      return false;
    return true;
  }

  absl::StatusOr<int> ParseComparison() {
    KTUNE_ASSIGN_OR_RETURN(int first, ParseArith());
    Node::Cmp cmp;
    if (!PeekCmp(&cmp)) return first;
    Node chain;
    chain.op = Node::Op::kCompareChain;
    chain.args.push_back(first);
    while (PeekCmp(&cmp)) {
      ++pos_;
      KTUNE_ASSIGN_OR_RETURN(int next, ParseArith());
      chain.cmps.push_back(cmp);
      chain.args.push_back(next);
    }
    return Add(std::move(chain));
  }

  absl::StatusOr<int> ParseArith() {
    KTUNE_ASSIGN_OR_RETURN(int lhs, ParseTerm());
    while (IsOp("+") || IsOp("-")) {
      Node::Op op = IsOp("+") ? Node::Op::kAdd : Node::Op::kSub;
      ++pos_;
      KTUNE_ASSIGN_OR_RETURN(int rhs, ParseTerm());
      lhs = Binary(op, lhs, rhs);
    }
    return lhs;
  }

  absl::StatusOr<int> ParseTerm() {
    KTUNE_ASSIGN_OR_RETURN(int lhs, ParseFactor());
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      Node::Op op = IsOp("*")    ? Node::Op::kMul
                    : IsOp("/")  ? Node::Op::kTrueDiv
                    : IsOp("//") ? Node::Op::kFloorDiv
                                 : Node::Op::kMod;
      ++pos_;
      KTUNE_ASSIGN_OR_RETURN(int rhs, ParseFactor());
      lhs = Binary(op, lhs, rhs);
    }
    return lhs;
  }

  absl::StatusOr<int> ParseFactor() {
    if (IsOp("-") || IsOp("+")) {
      NestingGuard nesting(depth_);
      if (nesting.too_deep()) return TooDeep();
      Node::Op op = IsOp("-") ? Node::Op::kNeg : Node::Op::kPos;
      ++pos_;
      KTUNE_ASSIGN_OR_RETURN(int operand, ParseFactor());
      return Binary(op, operand, -1);
    }
    return ParsePower();
  }

  absl::StatusOr<int> ParsePower() {
    KTUNE_ASSIGN_OR_RETURN(int base, ParseAtom());
    if (IsOp("**")) {  // right-associative: recurses once per operator
      NestingGuard nesting(depth_);
      if (nesting.too_deep()) return TooDeep();
      ++pos_;
      // Right-associative, and binds tighter than a unary minus on its left: -2**2 == -4.
      KTUNE_ASSIGN_OR_RETURN(int exponent, ParseFactor());
      return Binary(Node::Op::kPow, base, exponent);
    }
    return base;
  }

  absl::StatusOr<int> ParseAtom() {
    const Token& t = Peek();
    if (t.kind == Tok::kNum) {
      ++pos_;
      Node n;
      n.constant = t.number;
      return Add(std::move(n));
    }
    if (t.kind == Tok::kStr) {
      ++pos_;
      Node n;
      n.constant = ExprValue::String(symbols_.Intern(t.text));
      return Add(std::move(n));
    }
    if (IsOp("(")) {
      NestingGuard nesting(depth_);
      if (nesting.too_deep()) return TooDeep();
      ++pos_;
      KTUNE_ASSIGN_OR_RETURN(int inner, ParseOr());
      if (!IsOp(")")) return Error("expected ')'");
      ++pos_;
      return inner;
    }
    if (t.kind == Tok::kName) {
      if (t.text == "True" || t.text == "False") {
        ++pos_;
        Node n;
        n.constant = ExprValue::Int(t.text == "True" ? 1 : 0);
        return Add(std::move(n));
      }
      static const char* kFunctions[] = {"min", "max", "abs", "int", "float", "round"};
      for (const char* fn : kFunctions) {
        if (t.text == fn && toks_[pos_ + 1].kind == Tok::kOp && toks_[pos_ + 1].text == "(") {
          return ParseCall();
        }
      }
      if (t.text == "and" || t.text == "or" || t.text == "not" || t.text == "for" ||
          t.text == "in" || t.text == "if") {
        return Error("expected a value");
      }
      int slot = symbols_.Find(t.text);
      if (slot < 0) return Error(absl::StrCat("unknown name '", t.text, "'"));
      ++pos_;
      Node n;
      n.op = Node::Op::kVar;
      n.slot = slot;
      out_->slots_used_.push_back(slot);
      return Add(std::move(n));
    }
    return Error("expected a value");
  }

  absl::StatusOr<int> ParseCall() {
    NestingGuard nesting(depth_);
    if (nesting.too_deep()) return TooDeep();
    Node call;
    call.op = Node::Op::kCall;
    call.function = Peek().text;
    pos_ += 2;  // name and '('
    if (!IsOp(")")) {
      while (true) {
        KTUNE_ASSIGN_OR_RETURN(int arg, ParseOr());
        call.args.push_back(arg);
        if (IsOp(",")) {
          ++pos_;
          continue;
        }
        break;
      }
    }
    if (!IsOp(")")) return Error(absl::StrCat("expected ')' to close ", call.function, "("));
    ++pos_;
    bool unary = call.function == "abs" || call.function == "int" || call.function == "float" ||
                 call.function == "round";
    if ((unary && call.args.size() != 1) || (!unary && call.args.empty())) {
      return Error(absl::StrCat("wrong number of arguments to ", call.function, "()"));
    }
    return Add(std::move(call));
  }

  const std::vector<Token>& toks_;
  size_t pos_;
  ExprSymbols& symbols_;
  Expression* out_ = nullptr;
  int depth_ = 0;            // recursion depth of the parse
  std::vector<int> depths_;  // per node of *out_: operations on its longest path
  bool tree_too_deep_ = false;
};

// ---------------------------------------------------------------------------------------------
// Evaluation

namespace {

using Node = Expression::Node;

struct EvalError {
  const char* what = nullptr;
};

constexpr const char* kOverflow = "integer overflow (integers are 64-bit)";

// Python's ints do not overflow; ktune's are int64_t, so a result outside its range is an error
// (as division by zero is), never a wrapped value or a trap. `b` != 0.
bool DivOverflows(int64_t a, int64_t b) {
  return a == std::numeric_limits<int64_t>::min() && b == -1;
}

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t FloorMod(int64_t a, int64_t b) {
  if (b == -1) return 0;  // a % -1 traps for INT64_MIN on x86; the result is 0 for every a
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

double FloatMod(double a, double b) {
  double r = std::fmod(a, b);
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

bool Compare(Node::Cmp cmp, const ExprValue& x, const ExprValue& y, EvalError* err) {
  if (x.kind == ExprValue::Kind::kString || y.kind == ExprValue::Kind::kString) {
    bool same = x.kind == y.kind && x.i == y.i;
    if (cmp == Node::Cmp::kEq) return same;
    if (cmp == Node::Cmp::kNe) return !same;
    err->what = "strings can only be compared with == and !=";
    return false;
  }
  if (x.kind == ExprValue::Kind::kInt && y.kind == ExprValue::Kind::kInt) {
    switch (cmp) {
      case Node::Cmp::kLt:
        return x.i < y.i;
      case Node::Cmp::kLe:
        return x.i <= y.i;
      case Node::Cmp::kGt:
        return x.i > y.i;
      case Node::Cmp::kGe:
        return x.i >= y.i;
      case Node::Cmp::kEq:
        return x.i == y.i;
      case Node::Cmp::kNe:
        return x.i != y.i;
    }
  }
  double a = x.AsDouble(), b = y.AsDouble();
  switch (cmp) {
    case Node::Cmp::kLt:
      return a < b;
    case Node::Cmp::kLe:
      return a <= b;
    case Node::Cmp::kGt:
      return a > b;
    case Node::Cmp::kGe:
      return a >= b;
    case Node::Cmp::kEq:
      return a == b;
    case Node::Cmp::kNe:
      return a != b;
  }
  return false;
}

ExprValue Eval(const std::vector<Node>& nodes, int index, const ExprValue* slots, EvalError* err) {
  const Node& n = nodes[index];
  switch (n.op) {
    case Node::Op::kConst:
      return n.constant;
    case Node::Op::kVar:
      return slots[n.slot];
    case Node::Op::kNot:
      return ExprValue::Int(!Eval(nodes, n.a, slots, err).Truthy());
    case Node::Op::kAnd: {
      ExprValue l = Eval(nodes, n.a, slots, err);
      return l.Truthy() ? Eval(nodes, n.b, slots, err) : l;
    }
    case Node::Op::kOr: {
      ExprValue l = Eval(nodes, n.a, slots, err);
      return l.Truthy() ? l : Eval(nodes, n.b, slots, err);
    }
    case Node::Op::kCompareChain: {
      ExprValue left = Eval(nodes, n.args[0], slots, err);
      for (size_t k = 0; k < n.cmps.size(); ++k) {
        ExprValue right = Eval(nodes, n.args[k + 1], slots, err);
        if (!Compare(n.cmps[k], left, right, err)) return ExprValue::Int(0);
        left = right;
      }
      return ExprValue::Int(1);
    }
    case Node::Op::kNeg:
    case Node::Op::kPos: {
      ExprValue v = Eval(nodes, n.a, slots, err);
      if (!v.is_number()) {
        err->what = "unary sign applied to a string";
        return ExprValue::Int(0);
      }
      if (n.op == Node::Op::kPos) return v;
      if (v.kind == ExprValue::Kind::kInt && v.i == std::numeric_limits<int64_t>::min()) {
        err->what = kOverflow;
        return ExprValue::Int(0);
      }
      return v.kind == ExprValue::Kind::kInt ? ExprValue::Int(-v.i) : ExprValue::Float(-v.f);
    }
    case Node::Op::kCall: {
      std::vector<ExprValue> args;
      args.reserve(n.args.size());
      for (int a : n.args) {
        args.push_back(Eval(nodes, a, slots, err));
        if (!args.back().is_number()) {
          err->what = "function applied to a string";
          return ExprValue::Int(0);
        }
      }
      const ExprValue& x = args[0];
      if (n.function == "abs") {
        if (x.kind == ExprValue::Kind::kInt && x.i == std::numeric_limits<int64_t>::min()) {
          err->what = kOverflow;
          return ExprValue::Int(0);
        }
        return x.kind == ExprValue::Kind::kInt ? ExprValue::Int(x.i < 0 ? -x.i : x.i)
                                               : ExprValue::Float(std::fabs(x.f));
      }
      // int() and round() of a float outside int64_t's range (or NaN) is an error, not UB.
      if ((n.function == "int" || n.function == "round") && x.kind == ExprValue::Kind::kFloat &&
          !(std::fabs(x.f) < 9.2e18)) {
        err->what = std::isnan(x.f) ? "int() or round() of NaN" : kOverflow;
        return ExprValue::Int(0);
      }
      if (n.function == "int") {
        return x.kind == ExprValue::Kind::kInt
                   ? x
                   : ExprValue::Int(static_cast<int64_t>(std::trunc(x.f)));
      }
      if (n.function == "float") return ExprValue::Float(x.AsDouble());
      if (n.function == "round") {
        return x.kind == ExprValue::Kind::kInt
                   ? x
                   : ExprValue::Int(static_cast<int64_t>(std::nearbyint(x.f)));  // half to even
      }
      ExprValue best = x;  // min / max
      for (size_t k = 1; k < args.size(); ++k) {
        bool less = Compare(Node::Cmp::kLt, args[k], best, err);
        if ((n.function == "min") == less) best = args[k];
      }
      return best;
    }
    default:
      break;
  }
  // Binary arithmetic.
  ExprValue x = Eval(nodes, n.a, slots, err);
  ExprValue y = Eval(nodes, n.b, slots, err);
  if (!x.is_number() || !y.is_number()) {
    err->what = "arithmetic on a string";
    return ExprValue::Int(0);
  }
  bool ints = x.kind == ExprValue::Kind::kInt && y.kind == ExprValue::Kind::kInt;
  int64_t r = 0;
  auto overflow = [err] {
    err->what = kOverflow;
    return ExprValue::Int(0);
  };
  switch (n.op) {
    case Node::Op::kAdd:
      if (!ints) return ExprValue::Float(x.AsDouble() + y.AsDouble());
      return __builtin_add_overflow(x.i, y.i, &r) ? overflow() : ExprValue::Int(r);
    case Node::Op::kSub:
      if (!ints) return ExprValue::Float(x.AsDouble() - y.AsDouble());
      return __builtin_sub_overflow(x.i, y.i, &r) ? overflow() : ExprValue::Int(r);
    case Node::Op::kMul:
      if (!ints) return ExprValue::Float(x.AsDouble() * y.AsDouble());
      return __builtin_mul_overflow(x.i, y.i, &r) ? overflow() : ExprValue::Int(r);
    case Node::Op::kTrueDiv:
      if (y.AsDouble() == 0) break;
      return ExprValue::Float(x.AsDouble() / y.AsDouble());
    case Node::Op::kFloorDiv:
      if (y.AsDouble() == 0) break;
      if (ints && DivOverflows(x.i, y.i)) return overflow();
      return ints ? ExprValue::Int(FloorDiv(x.i, y.i))
                  : ExprValue::Float(std::floor(x.AsDouble() / y.AsDouble()));
    case Node::Op::kMod:
      if (y.AsDouble() == 0) break;
      return ints ? ExprValue::Int(FloorMod(x.i, y.i))
                  : ExprValue::Float(FloatMod(x.AsDouble(), y.AsDouble()));
    case Node::Op::kPow:
      if (ints && y.i >= 0) {
        // Square-and-multiply; every step checked, so 2**1000 is an overflow, not 0.
        int64_t base = x.i, result = 1;
        for (int64_t e = y.i; e > 0; e >>= 1) {
          if ((e & 1) && __builtin_mul_overflow(result, base, &result)) return overflow();
          if (e > 1 && __builtin_mul_overflow(base, base, &base)) return overflow();
        }
        return ExprValue::Int(result);
      }
      return ExprValue::Float(std::pow(x.AsDouble(), y.AsDouble()));
    default:
      break;
  }
  err->what = "division by zero";
  return ExprValue::Int(0);
}

}  // namespace

absl::StatusOr<Expression> Expression::Compile(absl::string_view text, ExprSymbols& symbols) {
  absl::StatusOr<std::vector<Token>> tokenized = Tokenize(text);
  if (!tokenized.ok()) {  // name the expression: one of a spec's many constraints failed
    return absl::InvalidArgumentError(
        absl::StrCat("in expression '", Excerpt(text), "': ", tokenized.status().message()));
  }
  const std::vector<Token>& toks = *tokenized;
  Expression e;
  e.text_ = std::string(text);
  ExprParser parser(toks, 0, symbols);
  absl::Status st = parser.ParseInto(e);
  if (st.ok() && toks[parser.pos()].kind != Tok::kEnd) {
    const Token& t = toks[parser.pos()];
    st = absl::InvalidArgumentError(absl::StrCat("unexpected '", t.text, "' at column ", t.column));
  }
  if (!st.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("in expression '", Excerpt(text), "': ", st.message()));
  }
  return e;
}

absl::StatusOr<ExprValue> Expression::Evaluate(const ExprValue* slots) const {
  EvalError err;
  ExprValue v = Eval(nodes_, root_, slots, &err);
  if (err.what != nullptr) {
    // An expression inside a value list has no text of its own; the list's error names the list.
    if (text_.empty()) return absl::InvalidArgumentError(err.what);
    return absl::InvalidArgumentError(
        absl::StrCat("in expression '", Excerpt(text_), "': ", err.what));
  }
  return v;
}

bool Expression::IsTrue(const ExprValue* slots) const {
  EvalError err;
  ExprValue v = Eval(nodes_, root_, slots, &err);
  return err.what == nullptr && v.Truthy();
}

// ---------------------------------------------------------------------------------------------
// Value lists: list_expr := list_term ('+' list_term)*
//   list_term := '[' [expr (',' expr)*] ']' | '[' expr 'for' NAME 'in' list_expr ['if' expr] ']'
//              | 'list' '(' list_expr ')' | 'range' '(' expr [',' expr [',' expr]] ')'
//              | '(' list_expr ')'

namespace {

class ValueListParser {
 public:
  ValueListParser(const std::vector<Token>& toks, ExprSymbols& symbols)
      : toks_(toks), symbols_(symbols) {}

  absl::StatusOr<std::vector<ExprValue>> ParseAll() {
    KTUNE_ASSIGN_OR_RETURN(auto values, ParseList());
    if (toks_[pos_].kind != Tok::kEnd) return Error("unexpected token");
    return values;
  }

 private:
  const Token& Peek() const { return toks_[pos_]; }
  bool IsOp(const char* op) const { return Peek().kind == Tok::kOp && Peek().text == op; }
  bool IsName(const char* n) const { return Peek().kind == Tok::kName && Peek().text == n; }
  absl::Status Error(const std::string& what) const {
    const Token& t = Peek();
    std::string near = t.kind == Tok::kEnd ? "end of list" : absl::StrCat("'", t.text, "'");
    return absl::InvalidArgumentError(
        absl::StrCat(what, " at column ", t.column, " (near ", near, ")"));
  }
  absl::Status Expect(const char* op) {
    if (!IsOp(op)) return Error(absl::StrCat("expected '", op, "'"));
    ++pos_;
    return absl::OkStatus();
  }

  // Parses a scalar expression at the current position, with `locals` bound to their slots.
  absl::StatusOr<Expression> ParseScalar(ExprSymbols& scope) {
    Expression e;
    ExprParser parser(toks_, pos_, scope);
    KTUNE_RETURN_IF_ERROR(parser.ParseInto(e));
    pos_ = parser.pos();
    return e;
  }

  absl::StatusOr<ExprValue> ScalarNow(ExprSymbols& scope, const ExprValue* slots) {
    KTUNE_ASSIGN_OR_RETURN(Expression e, ParseScalar(scope));
    return e.Evaluate(slots);
  }

  absl::StatusOr<std::vector<ExprValue>> ParseList() {
    NestingGuard nesting(depth_);
    if (nesting.too_deep()) {
      return Error(absl::StrCat("nested more than ", kMaxNesting, " levels deep"));
    }
    KTUNE_ASSIGN_OR_RETURN(auto values, ParseTerm());
    while (IsOp("+")) {
      ++pos_;
      KTUNE_ASSIGN_OR_RETURN(auto more, ParseTerm());
      values.insert(values.end(), more.begin(), more.end());
    }
    return values;
  }

  absl::StatusOr<std::vector<ExprValue>> ParseTerm() {
    if (IsOp("(")) {
      ++pos_;
      KTUNE_ASSIGN_OR_RETURN(auto values, ParseList());
      KTUNE_RETURN_IF_ERROR(Expect(")"));
      return values;
    }
    if (IsName("list") || IsName("tuple")) {
      ++pos_;
      KTUNE_RETURN_IF_ERROR(Expect("("));
      KTUNE_ASSIGN_OR_RETURN(auto values, ParseList());
      KTUNE_RETURN_IF_ERROR(Expect(")"));
      return values;
    }
    if (IsName("range")) return ParseRange();
    if (IsOp("[")) return ParseBracket();
    return Error("expected a list, range(...) or list(...)");
  }

  absl::StatusOr<std::vector<ExprValue>> ParseRange() {
    ++pos_;
    KTUNE_RETURN_IF_ERROR(Expect("("));
    std::vector<int64_t> args;
    while (true) {
      KTUNE_ASSIGN_OR_RETURN(ExprValue v, ScalarNow(symbols_, nullptr));
      if (v.kind != ExprValue::Kind::kInt) return Error("range() takes integers");
      args.push_back(v.i);
      if (IsOp(",")) {
        ++pos_;
        continue;
      }
      break;
    }
    KTUNE_RETURN_IF_ERROR(Expect(")"));
    if (args.size() > 3) return Error("range() takes at most 3 arguments");
    int64_t start = args.size() == 1 ? 0 : args[0];
    int64_t stop = args.size() == 1 ? args[0] : args[1];
    int64_t step = args.size() == 3 ? args[2] : 1;
    if (step == 0) return Error("range() step must not be zero");
    std::vector<ExprValue> out;
    for (int64_t v = start; step > 0 ? v < stop : v > stop; v += step) {
      if (out.size() > 1'000'000) return Error("range() longer than 1,000,000 values");
      out.push_back(ExprValue::Int(v));
    }
    return out;
  }

  absl::StatusOr<std::vector<ExprValue>> ParseBracket() {
    ++pos_;
    // A comprehension has 'for' at this bracket's depth: find it before parsing the element.
    int depth = 0;
    size_t for_at = 0;
    for (size_t k = pos_; toks_[k].kind != Tok::kEnd; ++k) {
      const Token& t = toks_[k];
      if (t.kind == Tok::kOp && (t.text == "(" || t.text == "[")) ++depth;
      if (t.kind == Tok::kOp && (t.text == ")" || t.text == "]")) {
        if (depth == 0) break;
        --depth;
      }
      if (depth == 0 && t.kind == Tok::kName && t.text == "for") {
        for_at = k;
        break;
      }
    }
    if (for_at == 0) {
      std::vector<ExprValue> out;
      if (IsOp("]")) {
        ++pos_;
        return out;
      }
      while (true) {
        KTUNE_ASSIGN_OR_RETURN(ExprValue v, ScalarNow(symbols_, nullptr));
        out.push_back(v);
        if (IsOp(",")) {
          ++pos_;
          if (IsOp("]")) break;  // trailing comma
          continue;
        }
        break;
      }
      KTUNE_RETURN_IF_ERROR(Expect("]"));
      return out;
    }
    // [element for NAME in list_expr [if cond]]
    if (toks_[for_at + 1].kind != Tok::kName) {
      pos_ = for_at + 1;
      return Error("expected a name after 'for'");
    }
    ExprSymbols scope = symbols_;
    scope.Bind(toks_[for_at + 1].text, 0);
    size_t element_at = pos_;
    pos_ = for_at + 2;
    if (!IsName("in")) return Error("expected 'in'");
    ++pos_;
    KTUNE_ASSIGN_OR_RETURN(auto iterable, ParseList());
    Expression condition;
    bool has_condition = false;
    if (IsName("if")) {
      ++pos_;
      KTUNE_ASSIGN_OR_RETURN(condition, ParseScalar(scope));
      has_condition = true;
    }
    KTUNE_RETURN_IF_ERROR(Expect("]"));
    size_t after = pos_;
    pos_ = element_at;
    KTUNE_ASSIGN_OR_RETURN(Expression element, ParseScalar(scope));
    if (pos_ != for_at) return Error("unexpected token in list comprehension");
    pos_ = after;
    std::vector<ExprValue> out;
    for (const ExprValue& v : iterable) {
      if (has_condition && !condition.IsTrue(&v)) continue;
      KTUNE_ASSIGN_OR_RETURN(ExprValue e, element.Evaluate(&v));
      out.push_back(e);
    }
    return out;
  }

  const std::vector<Token>& toks_;
  size_t pos_ = 0;
  ExprSymbols& symbols_;
  int depth_ = 0;  // recursion depth of nested lists
};

}  // namespace

absl::StatusOr<std::vector<ExprValue>> EvaluateValueList(absl::string_view text,
                                                         ExprSymbols& symbols) {
  absl::StatusOr<std::vector<Token>> tokenized = Tokenize(text);
  if (!tokenized.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("in value list '", Excerpt(text), "': ", tokenized.status().message()));
  }
  ValueListParser parser(*tokenized, symbols);
  auto values = parser.ParseAll();
  if (!values.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("in value list '", Excerpt(text), "': ", values.status().message()));
  }
  return values;
}

}  // namespace ktune
