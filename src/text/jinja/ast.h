// The parsed template: expression and statement nodes, built by the parser, walked by the
// interpreter, never modified after parsing (so one Template renders on many threads).
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "text/jinja/value.h"

namespace moeq::text::jinja {

// ---- expressions ---------------------------------------------------------------------------------
enum class ExprKind {
  Literal, Name, List, Tuple, Dict, Not, Neg, Pos, Binary, And, Or, Compare,
  Getattr, Getitem, Slice, Call, Filter, Test, Cond
};

struct Expr {
  Expr(ExprKind k, int l) : kind(k), line(l) {}
  virtual ~Expr() = default;
  ExprKind kind;
  int line;
};
using ExprPtr = std::unique_ptr<Expr>;

struct LiteralExpr : Expr {
  LiteralExpr(Value v, int l) : Expr(ExprKind::Literal, l), value(std::move(v)) {}
  Value value;  // scalars only, so sharing it between threads is safe
};

struct NameExpr : Expr {
  NameExpr(std::string n, int l) : Expr(ExprKind::Name, l), name(std::move(n)) {}
  std::string name;
};

struct SeqExpr : Expr {  // list or tuple literal
  SeqExpr(ExprKind k, int l) : Expr(k, l) {}
  std::vector<ExprPtr> items;
};

struct DictExpr : Expr {
  explicit DictExpr(int l) : Expr(ExprKind::Dict, l) {}
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
};

struct UnaryExpr : Expr {  // Not, Neg, Pos
  UnaryExpr(ExprKind k, ExprPtr e, int l) : Expr(k, l), operand(std::move(e)) {}
  ExprPtr operand;
};

enum class BinOp { Add, Sub, Mul, Div, FloorDiv, Mod, Pow, Concat };
struct BinaryExpr : Expr {  // Binary (with op), And, Or
  BinaryExpr(ExprKind k, BinOp o, ExprPtr a, ExprPtr b, int l)
      : Expr(k, l), op(o), left(std::move(a)), right(std::move(b)) {}
  BinOp op;
  ExprPtr left, right;
};

enum class CmpOp { Eq, Ne, Lt, Le, Gt, Ge, In, NotIn };
struct CompareExpr : Expr {  // chained like Python: a < b < c
  CompareExpr(ExprPtr f, int l) : Expr(ExprKind::Compare, l), first(std::move(f)) {}
  ExprPtr first;
  std::vector<std::pair<CmpOp, ExprPtr>> rest;
};

struct GetattrExpr : Expr {  // obj.name
  GetattrExpr(ExprPtr o, std::string n, int l) : Expr(ExprKind::Getattr, l), object(std::move(o)), name(std::move(n)) {}
  ExprPtr object;
  std::string name;
};

struct SliceExpr : Expr {  // only as the index of a Getitem; parts may be null
  explicit SliceExpr(int l) : Expr(ExprKind::Slice, l) {}
  ExprPtr start, stop, step;
};

struct GetitemExpr : Expr {  // obj[index], obj[a:b:c]
  GetitemExpr(ExprPtr o, ExprPtr i, int l) : Expr(ExprKind::Getitem, l), object(std::move(o)), index(std::move(i)) {}
  ExprPtr object, index;
};

struct ArgsExpr {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
};

struct CallExpr : Expr {
  CallExpr(ExprPtr c, int l) : Expr(ExprKind::Call, l), callee(std::move(c)) {}
  ExprPtr callee;
  ArgsExpr args;
};

struct FilterExpr : Expr {  // input|name(args); a null input stands for a filter block's body
  FilterExpr(ExprPtr in, std::string n, int l) : Expr(ExprKind::Filter, l), input(std::move(in)), name(std::move(n)) {}
  ExprPtr input;
  std::string name;
  ArgsExpr args;
};

struct TestExpr : Expr {  // input is [not] name(args)
  TestExpr(ExprPtr in, std::string n, int l) : Expr(ExprKind::Test, l), input(std::move(in)), name(std::move(n)) {}
  ExprPtr input;
  std::string name;
  ArgsExpr args;
  bool negated = false;
};

struct CondExpr : Expr {  // then if test else otherwise (otherwise may be null: undefined)
  explicit CondExpr(int l) : Expr(ExprKind::Cond, l) {}
  ExprPtr test, then, otherwise;
};

// ---- statements ----------------------------------------------------------------------------------
enum class StmtKind { Text, Output, If, For, Set, SetBlock, Macro, FilterBlock, With, Break, Continue, Scope };

struct Stmt {
  Stmt(StmtKind k, int l) : kind(k), line(l) {}
  virtual ~Stmt() = default;
  StmtKind kind;
  int line;
};
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

// An assignment target: a name, a tuple of names, or namespace.attr.
struct Target {
  std::vector<std::string> names;
  bool tuple = false;
  std::string attr;  // non-empty: names[0] is a namespace and this its attribute
};

struct TextStmt : Stmt {
  TextStmt(std::string t, int l) : Stmt(StmtKind::Text, l), text(std::move(t)) {}
  std::string text;
};

struct OutputStmt : Stmt {
  OutputStmt(ExprPtr e, int l) : Stmt(StmtKind::Output, l), expr(std::move(e)) {}
  ExprPtr expr;
};

struct IfStmt : Stmt {
  explicit IfStmt(int l) : Stmt(StmtKind::If, l) {}
  std::vector<std::pair<ExprPtr, Body>> branches;  // if, elif...
  Body otherwise;
};

struct ForStmt : Stmt {
  explicit ForStmt(int l) : Stmt(StmtKind::For, l) {}
  Target target;
  ExprPtr iter, filter;  // filter may be null
  Body body, otherwise;
};

struct SetStmt : Stmt {
  explicit SetStmt(int l) : Stmt(StmtKind::Set, l) {}
  Target target;
  ExprPtr value;
};

struct SetBlockStmt : Stmt {  // {% set x | filters %}body{% endset %}
  explicit SetBlockStmt(int l) : Stmt(StmtKind::SetBlock, l) {}
  Target target;
  ExprPtr filter;  // FilterExpr chain ending in a null input, or null
  Body body;
};

struct MacroStmt : Stmt {
  explicit MacroStmt(int l) : Stmt(StmtKind::Macro, l) {}
  std::string name;
  std::vector<std::pair<std::string, ExprPtr>> params;  // default may be null
  Body body;
  bool uses_varargs = false, uses_kwargs = false;  // the body reads `varargs` / `kwargs`
};

struct FilterBlockStmt : Stmt {
  explicit FilterBlockStmt(int l) : Stmt(StmtKind::FilterBlock, l) {}
  ExprPtr filter;
  Body body;
};

struct WithStmt : Stmt {
  explicit WithStmt(int l) : Stmt(StmtKind::With, l) {}
  std::vector<std::pair<Target, ExprPtr>> assigns;
  Body body;
};

struct ScopeStmt : Stmt {  // a block rendered as is: transformers' {% generation %}
  explicit ScopeStmt(int l) : Stmt(StmtKind::Scope, l) {}
  Body body;
};

struct LoopControlStmt : Stmt {  // Break or Continue
  LoopControlStmt(StmtKind k, int l) : Stmt(k, l) {}
};

}  // namespace moeq::text::jinja
