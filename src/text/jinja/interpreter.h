// Walks the AST and writes the output. One Interpreter per render: it owns the scopes, the
// output buffer and the budgets that keep hostile templates from exhausting stack, time or memory.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "text/jinja/ast.h"
#include "text/jinja/value.h"

namespace moeq::text::jinja {

struct RenderLimits {
  int max_depth = 600;                    // nested evaluation frames (expressions, blocks, macro calls)
  uint64_t max_steps = 50'000'000;         // loop iterations + macro calls + filter items
  size_t max_output = size_t(256) << 20;  // bytes of output (and of any one string built)
};

// Variables of one block level. Loop bodies and macro calls get a fresh one; `if` does not.
struct Scope {
  explicit Scope(std::shared_ptr<Scope> p) : parent(std::move(p)) {}
  const Value* find(const std::string& name) const;
  void set(const std::string& name, Value v);
  std::shared_ptr<Scope> parent;
  std::vector<std::pair<std::string, Value>> vars;
};
using ScopePtr = std::shared_ptr<Scope>;

class Interpreter {
 public:
  // `context`: the render variables; `globals`: builtins (range, namespace, ...) under them.
  Interpreter(const Dict& context, const Dict& globals, const RenderLimits& limits);
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  std::string render(const Body& body);

  // For the builtins (filters, tests, methods, globals).
  Value call(const Value& callee, CallArgs& args);
  Value call_filter(const std::string& name, const Value& input, CallArgs& args, int line = 0);
  bool call_test(const std::string& name, const Value& input, CallArgs& args, int line = 0);
  void step(uint64_t n = 1);              // charges the work budget
  void check_size(size_t bytes) const;   // refuses strings past the output limit
  void track(const ObjectPtr& o) { objects_.push_back(o); }
  int line() const { return line_; }

 private:
  enum class Flow { Normal, Break, Continue };
  struct Guard;

  Flow exec(const Body& body, const ScopePtr& scope);
  Flow exec_stmt(const Stmt& s, const ScopePtr& scope);
  void exec_for(const ForStmt& s, const ScopePtr& scope);
  void define_macro(const MacroStmt& m, const ScopePtr& scope);
  Value call_macro(const MacroStmt& m, const ScopePtr& closure, CallArgs& args);
  std::string capture(const Body& body, const ScopePtr& scope);
  void assign(const Target& t, Value v, const ScopePtr& scope);

  Value eval(const Expr& e, const ScopePtr& scope);
  Value eval_call(const CallExpr& e, const ScopePtr& scope);
  Value eval_compare(const CompareExpr& e, const ScopePtr& scope);
  Value eval_getitem(const GetitemExpr& e, const ScopePtr& scope);
  CallArgs eval_args(const ArgsExpr& a, const ScopePtr& scope);
  Value lookup(const std::string& name, const ScopePtr& scope) const;
  void write(std::string_view s);

  const Dict& context_;
  const Dict& globals_;
  RenderLimits limits_;
  std::string out_;
  int depth_ = 0;
  uint64_t steps_ = 0;
  int line_ = 0;
  const Value* block_input_ = nullptr;  // the body text a filter block filters
  std::vector<ObjectPtr> objects_;      // namespaces/loops, emptied at the end to break cycles
};

}  // namespace moeq::text::jinja
