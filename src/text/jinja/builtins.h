// Internal to the interpreter: Python's operators and object protocol (attribute and item access,
// iteration, len), the builtin methods of str/list/dict, jinja2's filters and tests, and the
// globals of transformers' chat-template environment.
#pragma once
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "text/jinja/ast.h"
#include "text/jinja/interpreter.h"
#include "text/jinja/value.h"

namespace moeq::text::jinja {

// Binds call arguments to parameter names the way Python does for def f(a, b=..., ...): positional
// first, then keywords; too many, unknown or repeated arguments throw.
class Args {
 public:
  Args(std::string_view fn, const CallArgs& args, std::initializer_list<const char*> names);
  bool has(size_t i) const { return given_[i]; }
  const Value& operator[](size_t i) const { return values_[i]; }  // undefined when not given
  const Value& get(size_t i, const Value& fallback) const { return given_[i] ? values_[i] : fallback; }

 private:
  std::vector<Value> values_;
  std::vector<bool> given_;
};

// ---- operators (operators.cpp) ----
Value binary_op(Interpreter& in, BinOp op, const Value& a, const Value& b);
Value unary_minus(const Value& v);
bool contains(const Value& container, const Value& item);  // Python's `item in container`
[[noreturn]] void fail_undefined(const Value& v);          // jinja2's UndefinedError

// ---- object protocol (access.cpp) ----
Value get_attr(const Value& obj, const std::string& name);   // obj.name: methods before keys
Value get_item(const Value& obj, const Value& key);           // obj[key]: keys before methods
Value get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
std::vector<Value> iterate(const Value& v);                   // Python's iter(); dicts give keys
int64_t length(const Value& v);                               // Python's len()
std::string undefined_attr_hint(const Value& obj, const std::string& name);

// ---- builtin methods (methods.cpp) ----
bool has_method(const Value& self, const std::string& name);
bool is_unsafe_method(const Value& self, const std::string& name);  // mutators the sandbox refuses
Value call_method(Interpreter& in, const Value& self, const std::string& name, CallArgs& args);

// ---- filters (filters.cpp) and tests (tests.cpp) ----
using FilterFn = Value (*)(Interpreter&, const Value& input, const CallArgs& args);
using TestFn = bool (*)(Interpreter&, const Value& input, const CallArgs& args);
FilterFn find_filter(std::string_view name);
TestFn find_test(std::string_view name);

// ---- globals (globals.cpp) ----
void add_builtin_globals(Dict& globals);

}  // namespace moeq::text::jinja
