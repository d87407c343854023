// The values a template computes with, modelled on the Python objects jinja2 sees when a chat
// template is rendered from JSON: None, bool, int, float, str, list/tuple, dict (insertion
// ordered), plus jinja's own undefined, namespace/loop objects and callables (macros, builtins,
// bound methods). Lists, dicts and objects are shared by reference as in Python.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace moeq::text::jinja {

class Value;
class Interpreter;
struct List;
class Dict;
struct Object;
struct Callable;
using ListPtr = std::shared_ptr<List>;
using DictPtr = std::shared_ptr<Dict>;
using ObjectPtr = std::shared_ptr<Object>;
using CallablePtr = std::shared_ptr<Callable>;

// jinja2's Undefined: renders as "", iterates as empty, is falsy; most other uses raise. `hint` is
// the message jinja2 would raise with ("'x' is undefined", "'dict object' has no attribute 'y'").
struct Undefined {
  std::string hint;
};
struct None {};

class Value {
 public:
  using Storage = std::variant<Undefined, None, bool, int64_t, double, std::string, ListPtr, DictPtr,
                               ObjectPtr, CallablePtr>;
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Object, Callable };

  Value() : v_(Undefined{}) {}
  Value(None) : v_(None{}) {}
  Value(bool b) : v_(b) {}
  Value(int i) : v_(int64_t(i)) {}
  Value(int64_t i) : v_(i) {}
  Value(double d) : v_(d) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(std::string_view s) : v_(std::string(s)) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(ListPtr l) : v_(std::move(l)) {}
  Value(DictPtr d) : v_(std::move(d)) {}
  Value(ObjectPtr o) : v_(std::move(o)) {}
  Value(CallablePtr c) : v_(std::move(c)) {}
  static Value undefined(std::string hint) { return Value(Storage(Undefined{std::move(hint)})); }

  Kind kind() const { return Kind(v_.index()); }
  bool is_undefined() const { return kind() == Kind::Undefined; }
  bool is_none() const { return kind() == Kind::None; }
  bool is_bool() const { return kind() == Kind::Bool; }
  bool is_int() const { return kind() == Kind::Int; }  // not bool
  bool is_float() const { return kind() == Kind::Float; }
  bool is_number() const { return is_bool() || is_int() || is_float(); }  // Python: bool is an int
  bool is_string() const { return kind() == Kind::String; }
  bool is_list() const { return kind() == Kind::List; }  // list or tuple
  bool is_dict() const { return kind() == Kind::Dict; }
  bool is_object() const { return kind() == Kind::Object; }
  bool is_callable() const { return kind() == Kind::Callable; }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return is_bool() ? int64_t(as_bool()) : std::get<int64_t>(v_); }  // bool or int
  double as_double() const { return is_float() ? std::get<double>(v_) : double(as_int()); }   // any number
  const std::string& as_string() const { return std::get<std::string>(v_); }
  const ListPtr& as_list() const { return std::get<ListPtr>(v_); }
  const DictPtr& as_dict() const { return std::get<DictPtr>(v_); }
  const ObjectPtr& as_object() const { return std::get<ObjectPtr>(v_); }
  const CallablePtr& as_callable() const { return std::get<CallablePtr>(v_); }
  const std::string& undefined_hint() const { return std::get<Undefined>(v_).hint; }

 private:
  explicit Value(Storage s) : v_(std::move(s)) {}
  Storage v_;
};

// Containers nest at most this deep, so that printing, comparing and freeing them (all recursive)
// cannot exhaust the stack, whatever a template builds in a loop. Python stops near 1000 frames.
inline constexpr uint32_t kMaxNesting = 512;

struct List {
  std::vector<Value> items;
  bool tuple = false;      // only changes repr: (1, 2) instead of [1, 2]
  bool generator = false;  // what map/select/items/reverse return in jinja2: always true, no len()
  uint32_t depth = 1;      // 1 + the deepest container inside
};

// A Python dict: insertion ordered; 1, 1.0 and True are the same key. String keys are indexed.
class Dict {
 public:
  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  const Value* find(const char* key) const { return find(std::string_view(key)); }
  void set(const Value& key, Value value);
  size_t size() const { return entries_.size(); }
  const std::vector<std::pair<Value, Value>>& entries() const { return entries_; }
  uint32_t depth() const { return depth_; }
  void clear();

 private:
  uint32_t depth_ = 1;
  std::vector<std::pair<Value, Value>> entries_;
  std::unordered_map<std::string, size_t> string_index_;
};

// jinja2's namespace() objects and the `loop` variable: attribute bags that are not mappings.
struct Object {
  enum class Type { Namespace, Loop };
  Type type;
  Dict attrs;
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};
using NativeFn = std::function<Value(Interpreter&, CallArgs&)>;

struct Callable {
  std::string name;  // for messages and repr
  NativeFn fn;
  bool is_macro = false;
};

uint32_t nesting(const Value& v);  // depth of a list/dict value, else 0
Value make_list(std::vector<Value> items, bool tuple = false);  // throws past kMaxNesting
Value make_generator(std::vector<Value> items);
Value make_dict();
Value make_callable(std::string name, NativeFn fn);

bool truthy(const Value& v);
std::string type_name(const Value& v);  // Python's type(v).__name__
std::string to_str(const Value& v);     // Python's str(v) (undefined: "")
std::string repr(const Value& v);       // Python's repr(v)
bool equals(const Value& a, const Value& b);
// -1/0/1 like Python's <, ==, >; throws moeq::Error for types Python cannot order.
int compare(const Value& a, const Value& b);

// Python's json.dumps(v, ensure_ascii, indent, separators, sort_keys).
struct JsonStyle {
  bool ensure_ascii = false;
  std::optional<std::string> indent;   // nullopt: one line
  std::optional<std::string> item_sep;  // default ", " (one line) or "," (indented)
  std::optional<std::string> key_sep;   // default ": "
  bool sort_keys = false;
};
std::string to_json(const Value& v, const JsonStyle& style);

Value from_json(const nlohmann::json& j);
Value from_json(const nlohmann::ordered_json& j);

}  // namespace moeq::text::jinja
