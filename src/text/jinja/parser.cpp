#include "text/jinja/parser.h"

#include <charconv>
#include <cstdlib>
#include <initializer_list>
#include <string_view>

#include "core/error.h"
#include "text/jinja/builtins.h"

namespace moeq::text::jinja {

namespace {

using T = Token::Type;

std::string describe(const Token& t) {
  switch (t.type) {
    case T::Data: return "template data";
    case T::VarBegin: return "'{{'";
    case T::VarEnd: return "end of print statement";
    case T::BlockBegin: return "'{%'";
    case T::BlockEnd: return "end of statement block";
    case T::Eof: return "end of template";
    case T::String: return "string";
    case T::Int:
    case T::Float: return "number " + t.text;
    default: return "'" + t.text + "'";
  }
}

class Parser {
 public:
  explicit Parser(const std::vector<Token>& t) : t_(t) {}

  Body parse_template() {
    Body body = subparse({});
    if (cur().type != T::Eof) error("unexpected " + describe(cur()));
    return body;
  }

 private:
  // ---- token helpers ----
  const Token& cur() const { return t_[i_]; }
  const Token& peek(size_t n = 1) const { return t_[std::min(i_ + n, t_.size() - 1)]; }
  void next() {
    if (i_ + 1 < t_.size()) ++i_;
  }
  bool is_op(std::string_view op) const { return cur().type == T::Op && cur().text == op; }
  bool is_name(std::string_view n) const { return cur().type == T::Name && cur().text == n; }
  [[noreturn]] void error(const std::string& msg) const { fail("line {}: {}", cur().line, msg); }
  void expect_op(std::string_view op) {
    if (!is_op(op)) error(fmt::format("expected '{}', got {}", op, describe(cur())));
    next();
  }
  void expect(T type, const char* what) {
    if (cur().type != type) error(fmt::format("expected {}, got {}", what, describe(cur())));
    next();
  }
  std::string expect_name() {
    if (cur().type != T::Name) error("expected a name, got " + describe(cur()));
    std::string n = cur().text;
    next();
    return n;
  }

  struct Nest {
    explicit Nest(Parser& p) : p(p) {
      if (++p.depth_ > kMaxParseDepth) p.error(fmt::format("template nested more than {} levels deep", kMaxParseDepth));
    }
    ~Nest() { --p.depth_; }
    Parser& p;
  };

  // ---- statements ----
  // Parses until a block tag named in `ends` (left current, after its '{%'), or the end.
  Body subparse(std::initializer_list<std::string_view> ends) {
    Body body;
    while (true) {
      const Token& tok = cur();
      if (tok.type == T::Eof) {
        if (ends.size() != 0) {
          std::string names;
          for (auto e : ends) names += (names.empty() ? "'" : " or '") + std::string(e) + "'";
          error("unexpected end of template; expected " + names);
        }
        return body;
      }
      if (tok.type == T::Data) {
        body.push_back(std::make_unique<TextStmt>(tok.text, tok.line));
        next();
      } else if (tok.type == T::VarBegin) {
        next();
        const int line = cur().line;
        ExprPtr e = parse_tuple(true, {}, false);
        expect(T::VarEnd, "end of print statement");
        body.push_back(std::make_unique<OutputStmt>(std::move(e), line));
      } else if (tok.type == T::BlockBegin) {
        next();
        if (cur().type == T::Name)
          for (auto e : ends)
            if (cur().text == e) return body;
        body.push_back(parse_statement());
      } else {
        error("unexpected " + describe(tok));
      }
    }
  }

  void end_tag(std::string_view name) {
    if (!is_name(name)) error(fmt::format("expected '{}', got {}", name, describe(cur())));
    next();
    expect(T::BlockEnd, "end of statement block");
  }

  StmtPtr parse_statement() {
    Nest nest(*this);
    if (cur().type != T::Name) error("tag name expected");
    const std::string tag = cur().text;
    const int line = cur().line;
    next();
    if (tag == "if") return parse_if(line);
    if (tag == "for") return parse_for(line);
    if (tag == "set") return parse_set(line);
    if (tag == "macro") return parse_macro(line);
    if (tag == "filter") return parse_filter_block(line);
    if (tag == "with") return parse_with(line);
    if (tag == "generation") {
      auto s = std::make_unique<ScopeStmt>(line);
      expect(T::BlockEnd, "end of statement block");
      s->body = subparse({"endgeneration"});
      end_tag("endgeneration");
      return s;
    }
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) error(fmt::format("'{}' outside of a loop", tag));
      expect(T::BlockEnd, "end of statement block");
      return std::make_unique<LoopControlStmt>(tag == "break" ? StmtKind::Break : StmtKind::Continue, line);
    }
    for (const char* unsupported : {"call", "include", "import", "from", "extends", "block", "do", "autoescape"})
      if (tag == unsupported) fail("line {}: the '{}' tag is not supported in chat templates", line, tag);
    fail("line {}: encountered unknown tag '{}'", line, tag);
  }

  StmtPtr parse_if(int line) {
    auto s = std::make_unique<IfStmt>(line);
    ExprPtr test = parse_tuple(false, {}, false);
    expect(T::BlockEnd, "end of statement block");
    while (true) {
      Body body = subparse({"elif", "else", "endif"});
      s->branches.emplace_back(std::move(test), std::move(body));
      if (is_name("elif")) {
        next();
        test = parse_tuple(false, {}, false);
        expect(T::BlockEnd, "end of statement block");
        continue;
      }
      if (is_name("else")) {
        next();
        expect(T::BlockEnd, "end of statement block");
        s->otherwise = subparse({"endif"});
      }
      end_tag("endif");
      return s;
    }
  }

  Target parse_target(bool allow_namespace, std::initializer_list<std::string_view> ends) {
    Target t;
    if (allow_namespace && cur().type == T::Name && peek().type == T::Op && peek().text == ".") {
      t.names.push_back(expect_name());
      next();
      t.attr = expect_name();
      return t;
    }
    const bool paren = is_op("(");
    if (paren) next();
    while (true) {
      t.names.push_back(expect_name());
      if (!is_op(",")) break;
      t.tuple = true;
      next();
      if ((paren && is_op(")")) || cur().type != T::Name) break;
      bool end = false;
      for (auto e : ends) end = end || is_name(e);
      if (end) break;
    }
    if (paren) {
      expect_op(")");
      t.tuple = true;
    }
    for (const auto& n : t.names)
      if (n == "true" || n == "false" || n == "none" || n == "True" || n == "False" || n == "None")
        error("cannot assign to '" + n + "'");
    return t;
  }

  StmtPtr parse_for(int line) {
    auto s = std::make_unique<ForStmt>(line);
    s->target = parse_target(false, {"in"});
    if (!is_name("in")) error("expected 'in', got " + describe(cur()));
    next();
    s->iter = parse_tuple(false, {"recursive"}, false);
    if (is_name("if")) {
      next();
      s->filter = parse_expression(true);
    }
    if (is_name("recursive")) error("recursive loops are not supported");
    expect(T::BlockEnd, "end of statement block");
    ++loop_depth_;
    s->body = subparse({"endfor", "else"});
    --loop_depth_;
    if (is_name("else")) {
      next();
      expect(T::BlockEnd, "end of statement block");
      s->otherwise = subparse({"endfor"});
    }
    end_tag("endfor");
    return s;
  }

  StmtPtr parse_set(int line) {
    Target target = parse_target(true, {});
    if (is_op("=")) {
      next();
      auto s = std::make_unique<SetStmt>(line);
      s->target = std::move(target);
      s->value = parse_tuple(true, {}, false);
      expect(T::BlockEnd, "end of statement block");
      return s;
    }
    auto s = std::make_unique<SetBlockStmt>(line);
    s->target = std::move(target);
    if (is_op("|")) s->filter = parse_filter_chain(nullptr);
    expect(T::BlockEnd, "end of statement block");
    s->body = subparse({"endset"});
    end_tag("endset");
    return s;
  }

  StmtPtr parse_macro(int line) {
    auto s = std::make_unique<MacroStmt>(line);
    s->name = expect_name();
    expect_op("(");
    while (!is_op(")")) {
      if (!s->params.empty()) expect_op(",");
      if (is_op(")")) break;
      std::string name = expect_name();
      ExprPtr def;
      if (is_op("=")) {
        next();
        def = parse_expression(true);
      } else if (!s->params.empty() && s->params.back().second) {
        error("non-default argument follows default argument");
      }
      s->params.emplace_back(std::move(name), std::move(def));
    }
    next();
    expect(T::BlockEnd, "end of statement block");
    macros_.push_back(s.get());
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    s->body = subparse({"endmacro"});
    loop_depth_ = saved_loops;
    macros_.pop_back();
    next();
    if (cur().type == T::Name) next();  // {% endmacro name %}
    expect(T::BlockEnd, "end of statement block");
    return s;
  }

  StmtPtr parse_filter_block(int line) {
    auto s = std::make_unique<FilterBlockStmt>(line);
    s->filter = parse_filter_chain(nullptr, true);
    expect(T::BlockEnd, "end of statement block");
    s->body = subparse({"endfilter"});
    end_tag("endfilter");
    return s;
  }

  StmtPtr parse_with(int line) {
    auto s = std::make_unique<WithStmt>(line);
    while (cur().type != T::BlockEnd) {
      if (!s->assigns.empty()) expect_op(",");
      Target t = parse_target(false, {});
      expect_op("=");
      s->assigns.emplace_back(std::move(t), parse_expression(true));
    }
    next();
    s->body = subparse({"endwith"});
    end_tag("endwith");
    return s;
  }

  // ---- expressions ----
  bool tuple_end(std::initializer_list<std::string_view> extra) const {
    if (cur().type == T::VarEnd || cur().type == T::BlockEnd || is_op(")")) return true;
    for (auto e : extra)
      if (is_name(e)) return true;
    return false;
  }

  ExprPtr parse_tuple(bool with_condexpr, std::initializer_list<std::string_view> extra, bool explicit_parens) {
    const int line = cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (tuple_end(extra)) break;
      items.push_back(parse_expression(with_condexpr));
      if (is_op(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) error("expected an expression, got " + describe(cur()));
    }
    auto t = std::make_unique<SeqExpr>(ExprKind::Tuple, line);
    t->items = std::move(items);
    return t;
  }

  ExprPtr parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

  ExprPtr parse_condexpr() {
    Nest nest(*this);
    ExprPtr e = parse_or();
    while (is_name("if")) {
      auto c = std::make_unique<CondExpr>(cur().line);
      next();
      c->test = parse_or();
      if (is_name("else")) {
        next();
        c->otherwise = parse_condexpr();
      }
      c->then = std::move(e);
      e = std::move(c);
    }
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      const int line = cur().line;
      next();
      e = std::make_unique<BinaryExpr>(ExprKind::Or, BinOp::Add, std::move(e), parse_and(), line);
    }
    return e;
  }

  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      const int line = cur().line;
      next();
      e = std::make_unique<BinaryExpr>(ExprKind::And, BinOp::Add, std::move(e), parse_not(), line);
    }
    return e;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      Nest nest(*this);
      const int line = cur().line;
      next();
      return std::make_unique<UnaryExpr>(ExprKind::Not, parse_not(), line);
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const int line = cur().line;
    ExprPtr first = parse_math1();
    std::unique_ptr<CompareExpr> cmp;
    while (true) {
      CmpOp op;
      if (cur().type == T::Op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                  cur().text == "<=" || cur().text == ">" || cur().text == ">=")) {
        const std::string& t = cur().text;
        op = t == "==" ? CmpOp::Eq : t == "!=" ? CmpOp::Ne : t == "<" ? CmpOp::Lt
           : t == "<=" ? CmpOp::Le : t == ">" ? CmpOp::Gt : CmpOp::Ge;
        next();
      } else if (is_name("in")) {
        op = CmpOp::In;
        next();
      } else if (is_name("not") && peek().type == T::Name && peek().text == "in") {
        op = CmpOp::NotIn;
        next();
        next();
      } else {
        break;
      }
      if (!cmp) cmp = std::make_unique<CompareExpr>(std::move(first), line);
      cmp->rest.emplace_back(op, parse_math1());
    }
    if (cmp) return cmp;
    return first;
  }

  ExprPtr binary(BinOp op, ExprPtr a, ExprPtr b, int line) {
    return std::make_unique<BinaryExpr>(ExprKind::Binary, op, std::move(a), std::move(b), line);
  }

  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const BinOp op = is_op("+") ? BinOp::Add : BinOp::Sub;
      const int line = cur().line;
      next();
      e = binary(op, std::move(e), parse_concat(), line);
    }
    return e;
  }

  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      const int line = cur().line;
      next();
      e = binary(BinOp::Concat, std::move(e), parse_math2(), line);
    }
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string& t = cur().text;
      const BinOp op = t == "*" ? BinOp::Mul : t == "/" ? BinOp::Div : t == "//" ? BinOp::FloorDiv : BinOp::Mod;
      const int line = cur().line;
      next();
      e = binary(op, std::move(e), parse_pow(), line);
    }
    return e;
  }

  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      const int line = cur().line;
      next();
      e = binary(BinOp::Pow, std::move(e), parse_unary(true), line);
    }
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    Nest nest(*this);
    const int line = cur().line;
    ExprPtr e;
    if (is_op("-")) {
      next();
      e = std::make_unique<UnaryExpr>(ExprKind::Neg, parse_unary(false), line);
    } else if (is_op("+")) {
      next();
      e = std::make_unique<UnaryExpr>(ExprKind::Pos, parse_unary(false), line);
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    Nest nest(*this);
    const Token& tok = cur();
    const int line = tok.line;
    switch (tok.type) {
      case T::Name: {
        const std::string& n = tok.text;
        ExprPtr e;
        if (n == "true" || n == "True") {
          e = std::make_unique<LiteralExpr>(Value(true), line);
        } else if (n == "false" || n == "False") {
          e = std::make_unique<LiteralExpr>(Value(false), line);
        } else if (n == "none" || n == "None") {
          e = std::make_unique<LiteralExpr>(Value(None{}), line);
        } else {
          if (n == "varargs" || n == "kwargs")
            for (auto* m : macros_) (n == "varargs" ? m->uses_varargs : m->uses_kwargs) = true;
          e = std::make_unique<NameExpr>(n, line);
        }
        next();
        return e;
      }
      case T::String: {
        std::string s;
        while (cur().type == T::String) {  // adjacent literals concatenate
          s += cur().text;
          next();
        }
        return std::make_unique<LiteralExpr>(Value(std::move(s)), line);
      }
      case T::Int: {
        int64_t v = 0;
        const auto r = std::from_chars(tok.text.data(), tok.text.data() + tok.text.size(), v);
        if (r.ec != std::errc()) error("integer literal too large: " + tok.text);
        next();
        return std::make_unique<LiteralExpr>(Value(v), line);
      }
      case T::Float: {
        const double v = std::strtod(tok.text.c_str(), nullptr);
        next();
        return std::make_unique<LiteralExpr>(Value(v), line);
      }
      case T::Op:
        if (tok.text == "(") {
          next();
          ExprPtr e = parse_tuple(true, {}, true);
          expect_op(")");
          return e;
        }
        if (tok.text == "[") {
          next();
          auto l = std::make_unique<SeqExpr>(ExprKind::List, line);
          while (!is_op("]")) {
            if (!l->items.empty()) expect_op(",");
            if (is_op("]")) break;
            l->items.push_back(parse_expression(true));
          }
          next();
          return l;
        }
        if (tok.text == "{") {
          next();
          auto d = std::make_unique<DictExpr>(line);
          while (!is_op("}")) {
            if (!d->items.empty()) expect_op(",");
            if (is_op("}")) break;
            ExprPtr k = parse_expression(true);
            expect_op(":");
            d->items.emplace_back(std::move(k), parse_expression(true));
          }
          next();
          return d;
        }
        [[fallthrough]];
      default: error("unexpected " + describe(tok));
    }
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".") || is_op("[")) {
        e = parse_subscript(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        e = parse_filter_chain(std::move(e));
      } else if (is_name("is")) {
        e = parse_test(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr e) {
    Nest nest(*this);
    const int line = cur().line;
    if (is_op(".")) {
      next();
      if (cur().type == T::Name) return std::make_unique<GetattrExpr>(std::move(e), expect_name(), line);
      if (cur().type == T::Int) {
        int64_t v = 0;
        std::from_chars(cur().text.data(), cur().text.data() + cur().text.size(), v);
        next();
        return std::make_unique<GetitemExpr>(std::move(e), std::make_unique<LiteralExpr>(Value(v), line), line);
      }
      error("expected name or number, got " + describe(cur()));
    }
    next();  // '['
    std::vector<ExprPtr> args;
    while (!is_op("]")) {
      if (!args.empty()) {
        expect_op(",");
        if (is_op("]")) break;
      }
      args.push_back(parse_subscribed());
    }
    next();
    if (args.empty()) error("expected an index");
    ExprPtr index;
    if (args.size() == 1) {
      index = std::move(args[0]);
    } else {
      auto t = std::make_unique<SeqExpr>(ExprKind::Tuple, line);
      t->items = std::move(args);
      index = std::move(t);
    }
    return std::make_unique<GetitemExpr>(std::move(e), std::move(index), line);
  }

  ExprPtr parse_subscribed() {
    const int line = cur().line;
    auto s = std::make_unique<SliceExpr>(line);
    if (is_op(":")) {
      next();
    } else {
      ExprPtr e = parse_expression(true);
      if (!is_op(":")) return e;
      next();
      s->start = std::move(e);
    }
    auto at_end = [&] { return is_op("]") || is_op(","); };
    if (!is_op(":") && !at_end()) s->stop = parse_expression(true);
    if (is_op(":")) {
      next();
      if (!at_end()) s->step = parse_expression(true);
    }
    return s;
  }

  ArgsExpr parse_call_args() {
    ArgsExpr args;
    expect_op("(");
    bool need_comma = false;
    while (!is_op(")")) {
      if (need_comma) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (is_op("*") || is_op("**")) error("*args and **kwargs in calls are not supported");
      if (cur().type == T::Name && peek().type == T::Op && peek().text == "=") {
        std::string key = expect_name();
        next();
        args.keyword.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!args.keyword.empty()) error("positional argument follows keyword argument");
        args.positional.push_back(parse_expression(true));
      }
      need_comma = true;
    }
    next();
    return args;
  }

  ExprPtr parse_call(ExprPtr callee) {
    Nest nest(*this);
    auto c = std::make_unique<CallExpr>(std::move(callee), cur().line);
    c->args = parse_call_args();
    return c;
  }

  std::string dotted_name() {
    std::string n = expect_name();
    while (is_op(".")) {
      next();
      n += "." + expect_name();
    }
    return n;
  }

  // `|name(args)|name...`; `start_inline` parses the first filter without its '|'.
  ExprPtr parse_filter_chain(ExprPtr e, bool start_inline = false) {
    Nest nest(*this);
    while (is_op("|") || start_inline) {
      if (!start_inline) next();
      start_inline = false;
      const int line = cur().line;
      auto f = std::make_unique<FilterExpr>(std::move(e), dotted_name(), line);
      // jinja2 resolves filter and test names when compiling, not when (or if) they run.
      if (!find_filter(f->name)) fail("line {}: no filter named '{}'", line, f->name);
      if (is_op("(")) f->args = parse_call_args();
      e = std::move(f);
    }
    return e;
  }

  ExprPtr parse_test(ExprPtr e) {
    Nest nest(*this);
    const int line = cur().line;
    next();  // 'is'
    bool negated = false;
    if (is_name("not")) {
      negated = true;
      next();
    }
    auto t = std::make_unique<TestExpr>(std::move(e), dotted_name(), line);
    if (!find_test(t->name)) fail("line {}: no test named '{}'", line, t->name);
    t->negated = negated;
    const T type = cur().type;
    if (is_op("(")) {
      t->args = parse_call_args();
    } else if ((type == T::Name || type == T::String || type == T::Int || type == T::Float || is_op("[") ||
                is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) error("you cannot chain multiple tests with is");
      t->args.positional.push_back(parse_postfix(parse_primary()));
    }
    return t;
  }

  const std::vector<Token>& t_;
  size_t i_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<MacroStmt*> macros_;  // macros being parsed (for varargs/kwargs use)
};

}  // namespace

Body parse(const std::vector<Token>& tokens) { return Parser(tokens).parse_template(); }

}  // namespace moeq::text::jinja
