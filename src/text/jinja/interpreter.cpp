#include "text/jinja/interpreter.h"

#include <algorithm>

#include "core/error.h"
#include "text/jinja/builtins.h"

namespace moeq::text::jinja {

const Value* Scope::find(const std::string& name) const {
  for (const auto& [k, v] : vars)
    if (k == name) return &v;
  return nullptr;
}

void Scope::set(const std::string& name, Value v) {
  for (auto& [k, old] : vars) {
    if (k == name) {
      old = std::move(v);
      return;
    }
  }
  vars.emplace_back(name, std::move(v));
}

// Counts nesting on the C++ stack (every statement, expression and macro call passes here), so
// that no template can recurse deep enough to overflow it.
struct Interpreter::Guard {
  Guard(Interpreter& in, int line) : in(in) {
    if (in.depth_ >= in.limits_.max_depth) fail("template nested or recursing deeper than {} levels", in.limits_.max_depth);
    ++in.depth_;
    if (line) in.line_ = line;
  }
  ~Guard() { --in.depth_; }
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;
  Interpreter& in;
};

Interpreter::Interpreter(const Dict& context, const Dict& globals, const RenderLimits& limits)
    : context_(context), globals_(globals), limits_(limits) {}

Interpreter::~Interpreter() {
  // Namespaces may hold each other (or themselves): empty them newest first so that nothing leaks
  // and no chain of them is freed recursively.
  for (auto it = objects_.rbegin(); it != objects_.rend(); ++it) (*it)->attrs.clear();
}

std::string Interpreter::render(const Body& body) {
  auto top = std::make_shared<Scope>(nullptr);
  exec(body, top);
  return std::move(out_);
}

void Interpreter::step(uint64_t n) {
  steps_ += n;
  if (steps_ > limits_.max_steps) fail("template exceeded its work budget of {} steps", limits_.max_steps);
}

void Interpreter::check_size(size_t bytes) const {
  if (bytes > limits_.max_output) fail("template output exceeds {} bytes", limits_.max_output);
}

void Interpreter::write(std::string_view s) {
  check_size(out_.size() + s.size());
  out_.append(s);
}

Value Interpreter::lookup(const std::string& name, const ScopePtr& scope) const {
  for (const Scope* s = scope.get(); s; s = s->parent.get())
    if (const Value* v = s->find(name)) return *v;
  if (const Value* v = context_.find(std::string_view(name))) return *v;
  if (const Value* v = globals_.find(std::string_view(name))) return *v;
  return Value::undefined("'" + name + "' is undefined");
}

// ---- statements ----------------------------------------------------------------------------------

Interpreter::Flow Interpreter::exec(const Body& body, const ScopePtr& scope) {
  for (const auto& s : body) {
    const Flow f = exec_stmt(*s, scope);
    if (f != Flow::Normal) return f;
  }
  return Flow::Normal;
}

std::string Interpreter::capture(const Body& body, const ScopePtr& scope) {
  std::string saved;
  std::swap(saved, out_);
  exec(body, scope);
  std::swap(saved, out_);
  return saved;
}

void Interpreter::assign(const Target& t, Value v, const ScopePtr& scope) {
  if (!t.attr.empty()) {
    const Value ns = lookup(t.names[0], scope);
    if (ns.is_undefined()) fail_undefined(ns);
    if (!ns.is_object() || ns.as_object()->type != Object::Type::Namespace)
      fail("cannot assign attribute on non-namespace object");
    ns.as_object()->attrs.set(Value(t.attr), std::move(v));
    return;
  }
  if (!t.tuple) {
    scope->set(t.names[0], std::move(v));
    return;
  }
  const std::vector<Value> items = iterate(v);
  if (items.size() > t.names.size()) fail("too many values to unpack (expected {})", t.names.size());
  if (items.size() < t.names.size())
    fail("not enough values to unpack (expected {}, got {})", t.names.size(), items.size());
  for (size_t i = 0; i < items.size(); ++i) scope->set(t.names[i], items[i]);
}

Interpreter::Flow Interpreter::exec_stmt(const Stmt& s, const ScopePtr& scope) {
  Guard guard(*this, s.line);
  switch (s.kind) {
    case StmtKind::Text: write(static_cast<const TextStmt&>(s).text); break;
    case StmtKind::Output: write(to_str(eval(*static_cast<const OutputStmt&>(s).expr, scope))); break;
    case StmtKind::If: {
      const auto& st = static_cast<const IfStmt&>(s);
      for (const auto& [test, body] : st.branches)
        if (truthy(eval(*test, scope))) return exec(body, scope);
      return exec(st.otherwise, scope);
    }
    case StmtKind::For: exec_for(static_cast<const ForStmt&>(s), scope); break;
    case StmtKind::Set: {
      const auto& st = static_cast<const SetStmt&>(s);
      assign(st.target, eval(*st.value, scope), scope);
      break;
    }
    case StmtKind::SetBlock: {
      const auto& st = static_cast<const SetBlockStmt&>(s);
      Value v(capture(st.body, scope));
      if (st.filter) {
        const Value* saved = block_input_;
        block_input_ = &v;
        Value filtered = eval(*st.filter, scope);
        block_input_ = saved;
        v = std::move(filtered);
      }
      assign(st.target, std::move(v), scope);
      break;
    }
    case StmtKind::Macro: define_macro(static_cast<const MacroStmt&>(s), scope); break;
    case StmtKind::FilterBlock: {
      const auto& st = static_cast<const FilterBlockStmt&>(s);
      const Value text(capture(st.body, scope));
      const Value* saved = block_input_;
      block_input_ = &text;
      const Value result = eval(*st.filter, scope);
      block_input_ = saved;
      write(to_str(result));
      break;
    }
    case StmtKind::With: {
      const auto& st = static_cast<const WithStmt&>(s);
      auto inner = std::make_shared<Scope>(scope);
      std::vector<Value> values;
      for (const auto& [target, expr] : st.assigns) values.push_back(eval(*expr, scope));
      for (size_t i = 0; i < values.size(); ++i) assign(st.assigns[i].first, std::move(values[i]), inner);
      return exec(st.body, inner);
    }
    case StmtKind::Scope: return exec(static_cast<const ScopeStmt&>(s).body, scope);
    case StmtKind::Break: return Flow::Break;
    case StmtKind::Continue: return Flow::Continue;
  }
  return Flow::Normal;
}

void Interpreter::exec_for(const ForStmt& s, const ScopePtr& scope) {
  std::vector<Value> items = iterate(eval(*s.iter, scope));
  if (s.filter) {
    std::vector<Value> kept;
    for (auto& item : items) {
      step();
      auto probe = std::make_shared<Scope>(scope);
      assign(s.target, item, probe);
      if (truthy(eval(*s.filter, probe))) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    exec(s.otherwise, std::make_shared<Scope>(scope));
    return;
  }
  // One LoopContext per loop, updated in place each iteration, as in jinja2.
  auto loop = std::make_shared<Object>();
  loop->type = Object::Type::Loop;
  track(loop);
  const std::weak_ptr<Object> weak = loop;
  loop->attrs.set(Value("cycle"), make_callable("cycle", [weak](Interpreter&, CallArgs& a) {
    const auto l = weak.lock();
    if (!l) fail("the loop is over");
    if (a.positional.empty()) fail("no items for cycling given");
    const int64_t i = l->attrs.find("index0")->as_int();
    return a.positional[size_t(i % int64_t(a.positional.size()))];
  }));
  auto last_changed = std::make_shared<std::optional<Value>>();
  loop->attrs.set(Value("changed"), make_callable("changed", [last_changed](Interpreter&, CallArgs& a) {
    Value now = make_list(a.positional, true);
    if (*last_changed && equals(**last_changed, now)) return Value(false);
    *last_changed = std::move(now);
    return Value(true);
  }));
  loop->attrs.set(Value("depth"), Value(int64_t(1)));
  loop->attrs.set(Value("depth0"), Value(int64_t(0)));
  const int64_t n = int64_t(items.size());
  Dict& at = loop->attrs;
  for (int64_t i = 0; i < n; ++i) {
    step();
    at.set(Value("index"), Value(i + 1));
    at.set(Value("index0"), Value(i));
    at.set(Value("revindex"), Value(n - i));
    at.set(Value("revindex0"), Value(n - i - 1));
    at.set(Value("first"), Value(i == 0));
    at.set(Value("last"), Value(i == n - 1));
    at.set(Value("length"), Value(n));
    at.set(Value("previtem"), i > 0 ? items[size_t(i - 1)] : Value::undefined("there is no previous item"));
    at.set(Value("nextitem"), i + 1 < n ? items[size_t(i + 1)] : Value::undefined("there is no next item"));
    auto body = std::make_shared<Scope>(scope);
    body->set("loop", Value(loop));
    assign(s.target, items[size_t(i)], body);
    if (exec(s.body, body) == Flow::Break) break;
  }
}

void Interpreter::define_macro(const MacroStmt& m, const ScopePtr& scope) {
  // The macro sees its defining scope as it is when called (late binding, like jinja2). A weak
  // reference: the scope holds the macro, and a strong one would be a cycle.
  const std::weak_ptr<Scope> closure = scope;
  const MacroStmt* node = &m;
  auto c = std::make_shared<Callable>();
  c->name = m.name;
  c->is_macro = true;
  c->fn = [node, closure](Interpreter& in, CallArgs& args) {
    const ScopePtr s = closure.lock();
    if (!s) fail("macro '{}' called after its scope ended", node->name);
    return in.call_macro(*node, s, args);
  };
  scope->set(m.name, Value(std::move(c)));
}

Value Interpreter::call_macro(const MacroStmt& m, const ScopePtr& closure, CallArgs& args) {
  Guard guard(*this, 0);
  step();
  const size_t np = m.params.size();
  if (args.positional.size() > np && !m.uses_varargs)
    fail("macro '{}' takes not more than {} argument(s)", m.name, np);
  auto scope = std::make_shared<Scope>(closure);
  std::vector<bool> bound(np, false);
  for (size_t i = 0; i < np; ++i) {
    if (i < args.positional.size()) {
      scope->set(m.params[i].first, args.positional[i]);
      bound[i] = true;
    } else {
      scope->set(m.params[i].first, Value::undefined("parameter '" + m.params[i].first + "' was not provided"));
    }
  }
  Value kwargs = make_dict();
  for (auto& [key, value] : args.keyword) {
    size_t i = 0;
    while (i < np && m.params[i].first != key) ++i;
    if (i < np) {
      if (bound[i]) fail("macro '{}' got multiple values for argument '{}'", m.name, key);
      scope->set(key, value);
      bound[i] = true;
    } else if (m.uses_kwargs) {
      kwargs.as_dict()->set(Value(key), value);
    } else {
      fail("macro '{}' takes no keyword argument '{}'", m.name, key);
    }
  }
  for (size_t i = 0; i < np; ++i)
    if (!bound[i] && m.params[i].second) scope->set(m.params[i].first, eval(*m.params[i].second, scope));
  if (m.uses_varargs) {
    std::vector<Value> extra;
    for (size_t i = np; i < args.positional.size(); ++i) extra.push_back(args.positional[i]);
    scope->set("varargs", make_list(std::move(extra), true));
  }
  if (m.uses_kwargs) scope->set("kwargs", kwargs);
  return Value(capture(m.body, scope));
}

// ---- expressions ---------------------------------------------------------------------------------

CallArgs Interpreter::eval_args(const ArgsExpr& a, const ScopePtr& scope) {
  CallArgs out;
  out.positional.reserve(a.positional.size());
  for (const auto& e : a.positional) out.positional.push_back(eval(*e, scope));
  for (const auto& [k, e] : a.keyword) out.keyword.emplace_back(k, eval(*e, scope));
  return out;
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.is_callable()) {
    step();
    const CallablePtr c = callee.as_callable();  // keep it alive during the call
    return c->fn(*this, args);
  }
  if (callee.is_undefined()) fail_undefined(callee);
  fail("'{}' object is not callable", type_name(callee));
}

Value Interpreter::call_filter(const std::string& name, const Value& input, CallArgs& args, int line) {
  if (line) line_ = line;
  const FilterFn f = find_filter(name);
  if (!f) fail("no filter named '{}'", name);
  step();
  return f(*this, input, args);
}

bool Interpreter::call_test(const std::string& name, const Value& input, CallArgs& args, int line) {
  if (line) line_ = line;
  const TestFn t = find_test(name);
  if (!t) fail("no test named '{}'", name);
  return t(*this, input, args);
}

Value Interpreter::eval_call(const CallExpr& e, const ScopePtr& scope) {
  if (e.callee->kind == ExprKind::Getattr) {
    // obj.method(...): call the builtin method directly instead of building a bound method.
    const auto& ga = static_cast<const GetattrExpr&>(*e.callee);
    const Value obj = eval(*ga.object, scope);
    if (obj.is_undefined()) fail_undefined(obj);
    if (is_unsafe_method(obj, ga.name))
      fail("access to attribute '{}' of '{}' object is unsafe.", ga.name, type_name(obj));
    if (has_method(obj, ga.name)) {
      CallArgs args = eval_args(e.args, scope);
      step();
      return call_method(*this, obj, ga.name, args);
    }
    const Value fn = get_attr(obj, ga.name);
    CallArgs args = eval_args(e.args, scope);
    return call(fn, args);
  }
  const Value fn = eval(*e.callee, scope);
  CallArgs args = eval_args(e.args, scope);
  return call(fn, args);
}

Value Interpreter::eval_compare(const CompareExpr& e, const ScopePtr& scope) {
  Value left = eval(*e.first, scope);
  for (const auto& [op, expr] : e.rest) {
    Value right = eval(*expr, scope);
    bool ok = false;
    switch (op) {
      case CmpOp::Eq: ok = equals(left, right); break;
      case CmpOp::Ne: ok = !equals(left, right); break;
      case CmpOp::In: ok = contains(right, left); break;
      case CmpOp::NotIn: ok = !contains(right, left); break;
      default: {
        if (left.is_undefined()) fail_undefined(left);
        if (right.is_undefined()) fail_undefined(right);
        const int c = compare(left, right);
        ok = op == CmpOp::Lt ? c < 0 : op == CmpOp::Le ? c <= 0 : op == CmpOp::Gt ? c > 0 : c >= 0;
        // NaN: every ordering is false in Python; compare() reports it as equal.
        if (c == 0 && (left.is_float() || right.is_float()) && left.as_double() != right.as_double()) ok = false;
      }
    }
    if (!ok) return Value(false);
    left = std::move(right);
  }
  return Value(true);
}

Value Interpreter::eval_getitem(const GetitemExpr& e, const ScopePtr& scope) {
  const Value obj = eval(*e.object, scope);
  if (e.index->kind == ExprKind::Slice) {
    const auto& sl = static_cast<const SliceExpr&>(*e.index);
    auto part = [&](const ExprPtr& p) { return p ? eval(*p, scope) : Value(None{}); };
    const Value start = part(sl.start), stop = part(sl.stop), step_v = part(sl.step);
    return get_slice(obj, start, stop, step_v);
  }
  return get_item(obj, eval(*e.index, scope));
}

Value Interpreter::eval(const Expr& e, const ScopePtr& scope) {
  Guard guard(*this, e.line);
  switch (e.kind) {
    case ExprKind::Literal: return static_cast<const LiteralExpr&>(e).value;
    case ExprKind::Name: return lookup(static_cast<const NameExpr&>(e).name, scope);
    case ExprKind::List:
    case ExprKind::Tuple: {
      std::vector<Value> items;
      for (const auto& item : static_cast<const SeqExpr&>(e).items) items.push_back(eval(*item, scope));
      return make_list(std::move(items), e.kind == ExprKind::Tuple);
    }
    case ExprKind::Dict: {
      Value d = make_dict();
      for (const auto& [k, v] : static_cast<const DictExpr&>(e).items) {
        const Value key = eval(*k, scope);
        d.as_dict()->set(key, eval(*v, scope));
      }
      return d;
    }
    case ExprKind::Not: return Value(!truthy(eval(*static_cast<const UnaryExpr&>(e).operand, scope)));
    case ExprKind::Neg: return unary_minus(eval(*static_cast<const UnaryExpr&>(e).operand, scope));
    case ExprKind::Pos: {
      const Value v = eval(*static_cast<const UnaryExpr&>(e).operand, scope);
      if (v.is_undefined()) fail_undefined(v);
      if (v.is_bool()) return Value(v.as_int());
      if (!v.is_number()) fail("bad operand type for unary +: '{}'", type_name(v));
      return v;
    }
    case ExprKind::And:
    case ExprKind::Or: {
      const auto& b = static_cast<const BinaryExpr&>(e);
      Value left = eval(*b.left, scope);
      if (truthy(left) == (e.kind == ExprKind::Or)) return left;
      return eval(*b.right, scope);
    }
    case ExprKind::Binary: {
      const auto& b = static_cast<const BinaryExpr&>(e);
      const Value left = eval(*b.left, scope);
      const Value right = eval(*b.right, scope);
      return binary_op(*this, b.op, left, right);
    }
    case ExprKind::Compare: return eval_compare(static_cast<const CompareExpr&>(e), scope);
    case ExprKind::Getattr: {
      const auto& g = static_cast<const GetattrExpr&>(e);
      return get_attr(eval(*g.object, scope), g.name);
    }
    case ExprKind::Getitem: return eval_getitem(static_cast<const GetitemExpr&>(e), scope);
    case ExprKind::Slice: fail("a slice is only valid inside []");
    case ExprKind::Call: return eval_call(static_cast<const CallExpr&>(e), scope);
    case ExprKind::Filter: {
      const auto& f = static_cast<const FilterExpr&>(e);
      Value input;
      if (f.input) {
        input = eval(*f.input, scope);
      } else if (block_input_) {
        input = *block_input_;
      }
      CallArgs args = eval_args(f.args, scope);
      return call_filter(f.name, input, args, e.line);
    }
    case ExprKind::Test: {
      const auto& t = static_cast<const TestExpr&>(e);
      const Value input = eval(*t.input, scope);
      CallArgs args = eval_args(t.args, scope);
      const bool r = call_test(t.name, input, args, e.line);
      return Value(t.negated ? !r : r);
    }
    case ExprKind::Cond: {
      const auto& c = static_cast<const CondExpr&>(e);
      if (truthy(eval(*c.test, scope))) return eval(*c.then, scope);
      if (c.otherwise) return eval(*c.otherwise, scope);
      return Value::undefined(fmt::format(
          "the inline if-expression on line {} evaluated to false and no else section was defined.", e.line));
    }
  }
  fail("unknown expression");
}

}  // namespace moeq::text::jinja
