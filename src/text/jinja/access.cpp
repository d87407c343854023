// jinja2's attribute and item access on Python objects: `a.b` tries Python attributes (methods)
// before dict keys, `a['b']` the other way round; misses give an Undefined that remembers why.
#include "core/error.h"
#include "text/jinja/builtins.h"
#include "text/jinja/pystr.h"

namespace moeq::text::jinja {

namespace {

// jinja2's object_type_repr: "dict object", "None", "jinja2.utils.Namespace object".
std::string object_type_repr(const Value& obj) {
  if (obj.is_none()) return "None";
  if (obj.is_object())
    return obj.as_object()->type == Object::Type::Namespace ? "jinja2.utils.Namespace object"
                                                              : "jinja2.runtime.LoopContext object";
  return type_name(obj) + " object";
}

Value no_element(const Value& obj, const Value& key) {
  return Value::undefined(py::str_repr(object_type_repr(obj)) + " has no element " + repr(key));
}

Value method_or_undefined(const Value& obj, const std::string& name) {
  if (is_unsafe_method(obj, name))
    return Value::undefined(fmt::format("access to attribute '{}' of '{}' object is unsafe.", name, type_name(obj)));
  if (has_method(obj, name)) {
    return make_callable(name, [obj, name](Interpreter& in, CallArgs& args) {
      return call_method(in, obj, name, args);
    });
  }
  return Value::undefined(undefined_attr_hint(obj, name));
}

// Python's slice.indices(): clamps start/stop for a sequence of length n.
void adjust(int64_t n, int64_t step, std::optional<int64_t>& start, std::optional<int64_t>& stop) {
  auto clamp = [&](std::optional<int64_t>& v, bool is_start) {
    if (!v) {
      v = step > 0 ? (is_start ? 0 : n) : (is_start ? n - 1 : -1);
      return;
    }
    if (*v < 0) {
      *v += n;
      if (*v < 0) *v = step < 0 ? -1 : 0;
    } else if (*v >= n) {
      *v = step < 0 ? n - 1 : n;
    }
  };
  clamp(start, true);
  clamp(stop, false);
}

std::optional<int64_t> slice_index(const Value& v, bool* ok) {
  if (v.is_none() || v.is_undefined()) return std::nullopt;
  if (v.is_int() || v.is_bool()) return v.as_int();
  *ok = false;
  return std::nullopt;
}

}  // namespace

std::string undefined_attr_hint(const Value& obj, const std::string& name) {
  return py::str_repr(object_type_repr(obj)) + " has no attribute " + py::str_repr(name);
}

Value get_attr(const Value& obj, const std::string& name) {
  switch (obj.kind()) {
    case Value::Kind::Undefined: fail_undefined(obj);
    case Value::Kind::Dict: {
      if (is_unsafe_method(obj, name) || has_method(obj, name)) return method_or_undefined(obj, name);
      const Value* v = obj.as_dict()->find(std::string_view(name));
      return v ? *v : Value::undefined(undefined_attr_hint(obj, name));
    }
    case Value::Kind::String:
    case Value::Kind::List: return method_or_undefined(obj, name);
    case Value::Kind::Object: {
      const Value* v = obj.as_object()->attrs.find(std::string_view(name));
      return v ? *v : Value::undefined(undefined_attr_hint(obj, name));
    }
    default: return Value::undefined(undefined_attr_hint(obj, name));
  }
}

Value get_item(const Value& obj, const Value& key) {
  switch (obj.kind()) {
    case Value::Kind::Undefined: fail_undefined(obj);
    case Value::Kind::Dict: {
      const bool hashable = !(key.is_list() && !key.as_list()->tuple) && !key.is_dict() && !key.is_undefined() &&
                            !key.is_object() && !key.is_callable();
      if (hashable)
        if (const Value* v = obj.as_dict()->find(key)) return *v;
      if (key.is_string()) return method_or_undefined(obj, key.as_string());
      return no_element(obj, key);
    }
    case Value::Kind::List:
    case Value::Kind::String: {
      if (obj.is_list() && obj.as_list()->generator) return Value::undefined("'generator' object is not subscriptable");
      if (key.is_int() || key.is_bool()) {
        int64_t i = key.as_int();
        if (obj.is_list()) {
          const auto& items = obj.as_list()->items;
          const int64_t n = int64_t(items.size());
          if (i < 0) i += n;
          if (i < 0 || i >= n) return no_element(obj, key);
          return items[size_t(i)];
        }
        const std::string& s = obj.as_string();
        if (py::is_ascii(s)) {
          const int64_t n = int64_t(s.size());
          if (i < 0) i += n;
          if (i < 0 || i >= n) return no_element(obj, key);
          return Value(std::string(1, s[size_t(i)]));
        }
        const std::u32string u = py::decode(s);
        const int64_t n = int64_t(u.size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return no_element(obj, key);
        return Value(py::encode(std::u32string_view(u).substr(size_t(i), 1)));
      }
      if (key.is_string()) return method_or_undefined(obj, key.as_string());
      return no_element(obj, key);
    }
    case Value::Kind::Object:
      if (key.is_string()) return get_attr(obj, key.as_string());
      return no_element(obj, key);
    default:
      if (key.is_string()) return get_attr(obj, key.as_string());
      return no_element(obj, key);
  }
}

Value get_slice(const Value& obj, const Value& start_v, const Value& stop_v, const Value& step_v) {
  if (obj.is_undefined()) fail_undefined(obj);
  if ((!obj.is_list() || obj.as_list()->generator) && !obj.is_string()) return Value::undefined(py::str_repr(object_type_repr(obj)) + " is not sliceable");
  bool ok = true;
  std::optional<int64_t> start = slice_index(start_v, &ok), stop = slice_index(stop_v, &ok);
  const std::optional<int64_t> step_o = slice_index(step_v, &ok);
  if (!ok) return Value::undefined("slice indices must be integers or None");
  const int64_t step = step_o.value_or(1);
  if (step == 0) fail("slice step cannot be zero");
  std::vector<size_t> picks;
  auto collect = [&](int64_t n) {
    adjust(n, step, start, stop);
    if (step > 0) {
      for (int64_t i = *start; i < *stop; i += step) picks.push_back(size_t(i));
    } else {
      for (int64_t i = *start; i > *stop; i += step) picks.push_back(size_t(i));
    }
  };
  if (obj.is_list()) {
    const auto& items = obj.as_list()->items;
    collect(int64_t(items.size()));
    std::vector<Value> out;
    out.reserve(picks.size());
    for (size_t i : picks) out.push_back(items[i]);
    return make_list(std::move(out), obj.as_list()->tuple);
  }
  const std::string& s = obj.as_string();
  if (py::is_ascii(s)) {
    collect(int64_t(s.size()));
    std::string out;
    out.reserve(picks.size());
    for (size_t i : picks) out.push_back(s[i]);
    return Value(std::move(out));
  }
  const std::u32string u = py::decode(s);
  collect(int64_t(u.size()));
  std::u32string out;
  for (size_t i : picks) out.push_back(u[i]);
  return Value(py::encode(out));
}

std::vector<Value> iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::List: return v.as_list()->items;
    case Value::Kind::Dict: {
      std::vector<Value> keys;
      keys.reserve(v.as_dict()->size());
      for (const auto& e : v.as_dict()->entries()) keys.push_back(e.first);
      return keys;
    }
    case Value::Kind::String: {
      std::vector<Value> chars;
      const std::string& s = v.as_string();
      for (size_t i = 0; i < s.size();) {
        char32_t cp;
        const size_t n = py::decode_at(s, i, &cp);
        chars.emplace_back(s.substr(i, n));
        i += n;
      }
      return chars;
    }
    case Value::Kind::Undefined: return {};
    default: fail("'{}' object is not iterable", type_name(v));
  }
}

int64_t length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::String: return int64_t(py::length(v.as_string()));
    case Value::Kind::List:
      if (v.as_list()->generator) fail("object of type 'generator' has no len()");
      return int64_t(v.as_list()->items.size());
    case Value::Kind::Dict: return int64_t(v.as_dict()->size());
    case Value::Kind::Undefined: return 0;
    default: fail("object of type '{}' has no len()", type_name(v));
  }
}

}  // namespace moeq::text::jinja
