// jinja2's builtin tests (`x is defined`, `x is string`, ...), with Python's type model: bool is a
// number, dicts are sequences, undefined is iterable and (oddly) callable.
#include <map>

#include "core/error.h"
#include "text/jinja/builtins.h"
#include "text/jinja/pystr.h"

namespace moeq::text::jinja {

namespace {

using Fn = TestFn;

// Binds a test's arguments: none, or exactly one (required).
Value only_arg(const char* name, const CallArgs& args, std::initializer_list<const char*> names) {
  Args a(name, args, names);
  if (names.size() && !a.has(0)) fail("{}() missing 1 required positional argument", name);
  return names.size() ? a[0] : Value();
}

bool t_defined(Interpreter&, const Value& v, const CallArgs& a) { only_arg("defined", a, {}); return !v.is_undefined(); }
bool t_undefined(Interpreter&, const Value& v, const CallArgs& a) { only_arg("undefined", a, {}); return v.is_undefined(); }
bool t_none(Interpreter&, const Value& v, const CallArgs& a) { only_arg("none", a, {}); return v.is_none(); }
bool t_boolean(Interpreter&, const Value& v, const CallArgs& a) { only_arg("boolean", a, {}); return v.is_bool(); }
bool t_true(Interpreter&, const Value& v, const CallArgs& a) { only_arg("true", a, {}); return v.is_bool() && v.as_bool(); }
bool t_false(Interpreter&, const Value& v, const CallArgs& a) { only_arg("false", a, {}); return v.is_bool() && !v.as_bool(); }
bool t_integer(Interpreter&, const Value& v, const CallArgs& a) { only_arg("integer", a, {}); return v.is_int(); }
bool t_float(Interpreter&, const Value& v, const CallArgs& a) { only_arg("float", a, {}); return v.is_float(); }
bool t_number(Interpreter&, const Value& v, const CallArgs& a) { only_arg("number", a, {}); return v.is_number(); }
bool t_string(Interpreter&, const Value& v, const CallArgs& a) { only_arg("string", a, {}); return v.is_string(); }
bool t_mapping(Interpreter&, const Value& v, const CallArgs& a) { only_arg("mapping", a, {}); return v.is_dict(); }

bool t_iterable(Interpreter&, const Value& v, const CallArgs& a) {
  only_arg("iterable", a, {});
  return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined() ||
         (v.is_object() && v.as_object()->type == Object::Type::Loop);
}

bool t_sequence(Interpreter&, const Value& v, const CallArgs& a) {
  only_arg("sequence", a, {});
  return v.is_string() || (v.is_list() && !v.as_list()->generator) || v.is_dict() || v.is_undefined();
}

bool t_callable(Interpreter&, const Value& v, const CallArgs& a) {
  only_arg("callable", a, {});
  return v.is_callable() || v.is_undefined();
}

bool t_eq(Interpreter&, const Value& v, const CallArgs& a) { return equals(v, only_arg("eq", a, {"other"})); }
bool t_ne(Interpreter&, const Value& v, const CallArgs& a) { return !equals(v, only_arg("ne", a, {"other"})); }
bool t_lt(Interpreter&, const Value& v, const CallArgs& a) { return compare(v, only_arg("lt", a, {"other"})) < 0; }
bool t_le(Interpreter&, const Value& v, const CallArgs& a) { return compare(v, only_arg("le", a, {"other"})) <= 0; }
bool t_gt(Interpreter&, const Value& v, const CallArgs& a) { return compare(v, only_arg("gt", a, {"other"})) > 0; }
bool t_ge(Interpreter&, const Value& v, const CallArgs& a) { return compare(v, only_arg("ge", a, {"other"})) >= 0; }
bool t_in(Interpreter&, const Value& v, const CallArgs& a) { return contains(only_arg("in", a, {"seq"}), v); }

bool remainder_is(Interpreter& in, const Value& v, const Value& d, int64_t want) {
  return equals(binary_op(in, BinOp::Mod, v, d), Value(want));
}
bool t_odd(Interpreter& in, const Value& v, const CallArgs& a) { only_arg("odd", a, {}); return remainder_is(in, v, Value(int64_t(2)), 1); }
bool t_even(Interpreter& in, const Value& v, const CallArgs& a) { only_arg("even", a, {}); return remainder_is(in, v, Value(int64_t(2)), 0); }
bool t_divisibleby(Interpreter& in, const Value& v, const CallArgs& a) {
  return remainder_is(in, v, only_arg("divisibleby", a, {"num"}), 0);
}

bool cased_only(const std::string& s, bool want_lower) {
  bool any = false;
  for (char32_t c : py::decode(s)) {
    if (!py::is_cased(c)) continue;
    if ((py::to_upper(c) != c || c == 0xDF) != want_lower) return false;
    any = true;
  }
  return any;
}
bool t_lower(Interpreter&, const Value& v, const CallArgs& a) { only_arg("lower", a, {}); return cased_only(to_str(v), true); }
bool t_upper(Interpreter&, const Value& v, const CallArgs& a) { only_arg("upper", a, {}); return cased_only(to_str(v), false); }

// Python's `is`: identity. Immutable singletons and CPython's small-int cache compare by value.
bool t_sameas(Interpreter&, const Value& v, const CallArgs& a) {
  const Value o = only_arg("sameas", a, {"other"});
  if (v.kind() != o.kind()) return false;
  switch (v.kind()) {
    case Value::Kind::None:
    case Value::Kind::Undefined: return v.is_none();
    case Value::Kind::Bool: return v.as_bool() == o.as_bool();
    case Value::Kind::Int: return v.as_int() == o.as_int() && v.as_int() >= -5 && v.as_int() <= 256;
    case Value::Kind::List: return v.as_list() == o.as_list();
    case Value::Kind::Dict: return v.as_dict() == o.as_dict();
    case Value::Kind::Object: return v.as_object() == o.as_object();
    case Value::Kind::Callable: return v.as_callable() == o.as_callable();
    default: return false;
  }
}

bool t_escaped(Interpreter&, const Value&, const CallArgs& a) { only_arg("escaped", a, {}); return false; }
bool t_filter(Interpreter&, const Value& v, const CallArgs& a) { only_arg("filter", a, {}); return v.is_string() && find_filter(v.as_string()); }
bool t_test(Interpreter&, const Value& v, const CallArgs& a) { only_arg("test", a, {}); return v.is_string() && find_test(v.as_string()); }

const std::map<std::string, Fn, std::less<>>& table() {
  static const std::map<std::string, Fn, std::less<>> t = {
      {"defined", t_defined}, {"undefined", t_undefined}, {"none", t_none}, {"boolean", t_boolean},
      {"true", t_true}, {"false", t_false}, {"integer", t_integer}, {"float", t_float}, {"number", t_number},
      {"string", t_string}, {"mapping", t_mapping}, {"iterable", t_iterable}, {"sequence", t_sequence},
      {"callable", t_callable}, {"eq", t_eq}, {"equalto", t_eq}, {"==", t_eq}, {"ne", t_ne}, {"!=", t_ne},
      {"lt", t_lt}, {"lessthan", t_lt}, {"<", t_lt}, {"le", t_le}, {"<=", t_le}, {"gt", t_gt},
      {"greaterthan", t_gt}, {">", t_gt}, {"ge", t_ge}, {">=", t_ge}, {"in", t_in}, {"odd", t_odd},
      {"even", t_even}, {"divisibleby", t_divisibleby}, {"lower", t_lower}, {"upper", t_upper},
      {"sameas", t_sameas}, {"escaped", t_escaped}, {"filter", t_filter}, {"test", t_test}};
  return t;
}

}  // namespace

TestFn find_test(std::string_view name) {
  const auto& t = table();
  auto it = t.find(name);
  return it == t.end() ? nullptr : it->second;
}

}  // namespace moeq::text::jinja
