#include "text/jinja/value.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "text/jinja/pystr.h"

namespace moeq::text::jinja {

namespace {

void check_depth(int depth) {
  if (depth > int(kMaxNesting)) fail("value nested more than {} levels deep", kMaxNesting);
}

bool is_hashable_key(const Value& k) {
  return k.is_string() || k.is_number() || k.is_none() || (k.is_list() && k.as_list()->tuple);
}

}  // namespace

uint32_t nesting(const Value& v) {
  if (v.is_list()) return v.as_list()->depth;
  if (v.is_dict()) return v.as_dict()->depth();
  return 0;
}

const Value* Dict::find(std::string_view key) const {
  auto it = string_index_.find(std::string(key));
  return it == string_index_.end() ? nullptr : &entries_[it->second].second;
}

const Value* Dict::find(const Value& key) const {
  if (key.is_string()) return find(std::string_view(key.as_string()));
  for (const auto& [k, v] : entries_)
    if (!k.is_string() && equals(k, key)) return &v;
  return nullptr;
}

void Dict::set(const Value& key, Value value) {
  if (!is_hashable_key(key)) fail("unhashable type: '{}'", type_name(key));
  depth_ = std::max(depth_, nesting(value) + 1);
  if (depth_ > kMaxNesting) fail("value nested more than {} levels deep", kMaxNesting);
  if (key.is_string()) {
    auto [it, inserted] = string_index_.emplace(key.as_string(), entries_.size());
    if (inserted) {
      entries_.emplace_back(key, std::move(value));
    } else {
      entries_[it->second].second = std::move(value);
    }
    return;
  }
  for (auto& [k, v] : entries_) {
    if (!k.is_string() && equals(k, key)) {
      v = std::move(value);
      return;
    }
  }
  entries_.emplace_back(key, std::move(value));
}

void Dict::clear() {
  entries_.clear();
  string_index_.clear();
  depth_ = 1;
}

Value make_list(std::vector<Value> items, bool tuple) {
  auto l = std::make_shared<List>();
  for (const auto& v : items) l->depth = std::max(l->depth, nesting(v) + 1);
  if (l->depth > kMaxNesting) fail("value nested more than {} levels deep", kMaxNesting);
  l->items = std::move(items);
  l->tuple = tuple;
  return Value(std::move(l));
}

Value make_generator(std::vector<Value> items) {
  Value v = make_list(std::move(items));
  v.as_list()->generator = true;
  return v;
}

Value make_dict() { return Value(std::make_shared<Dict>()); }

Value make_callable(std::string name, NativeFn fn) {
  auto c = std::make_shared<Callable>();
  c->name = std::move(name);
  c->fn = std::move(fn);
  return Value(std::move(c));
}

bool truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined:
    case Value::Kind::None: return false;
    case Value::Kind::Bool: return v.as_bool();
    case Value::Kind::Int: return v.as_int() != 0;
    case Value::Kind::Float: return v.as_double() != 0.0;
    case Value::Kind::String: return !v.as_string().empty();
    case Value::Kind::List: return v.as_list()->generator || !v.as_list()->items.empty();
    case Value::Kind::Dict: return v.as_dict()->size() != 0;
    case Value::Kind::Object:
    case Value::Kind::Callable: return true;
  }
  return false;
}

std::string type_name(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return "Undefined";
    case Value::Kind::None: return "NoneType";
    case Value::Kind::Bool: return "bool";
    case Value::Kind::Int: return "int";
    case Value::Kind::Float: return "float";
    case Value::Kind::String: return "str";
    case Value::Kind::List: return v.as_list()->generator ? "generator" : v.as_list()->tuple ? "tuple" : "list";
    case Value::Kind::Dict: return "dict";
    case Value::Kind::Object:
      return v.as_object()->type == Object::Type::Namespace ? "Namespace" : "LoopContext";
    case Value::Kind::Callable: return v.as_callable()->is_macro ? "Macro" : "function";
  }
  return "object";
}

namespace {

void append_repr(std::string& out, const Value& v, int depth) {
  check_depth(depth);
  switch (v.kind()) {
    case Value::Kind::Undefined: out += "Undefined"; return;
    case Value::Kind::None: out += "None"; return;
    case Value::Kind::Bool: out += v.as_bool() ? "True" : "False"; return;
    case Value::Kind::Int: out += std::to_string(v.as_int()); return;
    case Value::Kind::Float: out += py::float_repr(v.as_double()); return;
    case Value::Kind::String: out += py::str_repr(v.as_string()); return;
    case Value::Kind::List: {
      const auto& l = *v.as_list();
      if (l.generator) {
        out += "<generator object>";
        return;
      }
      out += l.tuple ? '(' : '[';
      for (size_t i = 0; i < l.items.size(); ++i) {
        if (i) out += ", ";
        append_repr(out, l.items[i], depth + 1);
      }
      if (l.tuple && l.items.size() == 1) out += ',';
      out += l.tuple ? ')' : ']';
      return;
    }
    case Value::Kind::Dict: {
      out += '{';
      bool first = true;
      for (const auto& [k, val] : v.as_dict()->entries()) {
        if (!first) out += ", ";
        first = false;
        append_repr(out, k, depth + 1);
        out += ": ";
        append_repr(out, val, depth + 1);
      }
      out += '}';
      return;
    }
    case Value::Kind::Object: {
      const auto& o = *v.as_object();
      if (o.type == Object::Type::Namespace) {
        out += "<Namespace {";
        bool first = true;
        for (const auto& [k, val] : o.attrs.entries()) {
          if (!first) out += ", ";
          first = false;
          append_repr(out, k, depth + 1);
          out += ": ";
          append_repr(out, val, depth + 1);
        }
        out += "}>";
      } else {
        const Value* index = o.attrs.find("index");
        const Value* length = o.attrs.find("length");
        out += "<LoopContext " + (index ? to_str(*index) : "?") + "/" + (length ? to_str(*length) : "?") + ">";
      }
      return;
    }
    case Value::Kind::Callable: {
      const auto& c = *v.as_callable();
      out += c.is_macro ? "<Macro '" + c.name + "'>" : "<function " + c.name + ">";
      return;
    }
  }
}

bool equals_at(const Value& a, const Value& b, int depth) {
  check_depth(depth);
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::Undefined:
    case Value::Kind::None: return true;
    case Value::Kind::String: return a.as_string() == b.as_string();
    case Value::Kind::List: {
      const auto& x = *a.as_list();
      const auto& y = *b.as_list();
      if (x.generator || y.generator) return &x == &y;
      if (x.tuple != y.tuple || x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i)
        if (!equals_at(x.items[i], y.items[i], depth + 1)) return false;
      return true;
    }
    case Value::Kind::Dict: {
      const auto& x = *a.as_dict();
      const auto& y = *b.as_dict();
      if (x.size() != y.size()) return false;
      for (const auto& [k, v] : x.entries()) {
        const Value* other = y.find(k);
        if (!other || !equals_at(v, *other, depth + 1)) return false;
      }
      return true;
    }
    case Value::Kind::Object: return a.as_object() == b.as_object();
    case Value::Kind::Callable: return a.as_callable() == b.as_callable();
    default: return false;
  }
}

int compare_at(const Value& a, const Value& b, int depth) {
  check_depth(depth);
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      const double x = a.as_double(), y = b.as_double();
      return x < y ? -1 : (x > y ? 1 : 0);  // NaN compares as neither: 0, Python's < is False too
    }
    const int64_t x = a.as_int(), y = b.as_int();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.as_string().compare(b.as_string());  // UTF-8 byte order is code point order
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list() && a.as_list()->tuple == b.as_list()->tuple && !a.as_list()->generator &&
      !b.as_list()->generator) {
    const auto& x = a.as_list()->items;
    const auto& y = b.as_list()->items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (equals_at(x[i], y[i], depth + 1)) continue;
      return compare_at(x[i], y[i], depth + 1);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  fail("'<' not supported between instances of '{}' and '{}'", type_name(a), type_name(b));
}

std::string json_key(const Value& k) {
  if (k.is_string()) return k.as_string();
  if (k.is_bool()) return k.as_bool() ? "true" : "false";
  if (k.is_int()) return std::to_string(k.as_int());
  if (k.is_float()) {
    const double d = k.as_double();
    if (std::isnan(d)) return "NaN";
    if (std::isinf(d)) return d < 0 ? "-Infinity" : "Infinity";
    return py::float_repr(d);
  }
  if (k.is_none()) return "null";
  fail("keys must be str, int, float, bool or None, not {}", type_name(k));
}

void append_json(std::string& out, const Value& v, const JsonStyle& st, int level) {
  check_depth(level);
  const std::string item_sep = st.item_sep ? *st.item_sep : (st.indent ? "," : ", ");
  const std::string key_sep = st.key_sep ? *st.key_sep : ": ";
  auto newline = [&](int lvl) {
    out += '\n';
    for (int i = 0; i < lvl; ++i) out += *st.indent;
  };
  switch (v.kind()) {
    case Value::Kind::None: out += "null"; return;
    case Value::Kind::Bool: out += v.as_bool() ? "true" : "false"; return;
    case Value::Kind::Int: out += std::to_string(v.as_int()); return;
    case Value::Kind::Float: {
      const double d = v.as_double();
      if (std::isnan(d)) {
        out += "NaN";
      } else if (std::isinf(d)) {
        out += d < 0 ? "-Infinity" : "Infinity";
      } else {
        out += py::float_repr(d);
      }
      return;
    }
    case Value::Kind::String: py::append_json_string(out, v.as_string(), st.ensure_ascii); return;
    case Value::Kind::List: {
      if (v.as_list()->generator) fail("Object of type generator is not JSON serializable");
      const auto& items = v.as_list()->items;
      if (items.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += item_sep;
        if (st.indent) newline(level + 1);
        append_json(out, items[i], st, level + 1);
      }
      if (st.indent) newline(level);
      out += ']';
      return;
    }
    case Value::Kind::Dict: {
      const auto& d = *v.as_dict();
      if (d.size() == 0) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<Value, Value>*> entries;
      for (const auto& e : d.entries()) entries.push_back(&e);
      if (st.sort_keys) {
        std::stable_sort(entries.begin(), entries.end(),
                         [](auto* x, auto* y) { return compare(x->first, y->first) < 0; });
      }
      out += '{';
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i) out += item_sep;
        if (st.indent) newline(level + 1);
        py::append_json_string(out, json_key(entries[i]->first), st.ensure_ascii);
        out += key_sep;
        append_json(out, entries[i]->second, st, level + 1);
      }
      if (st.indent) newline(level);
      out += '}';
      return;
    }
    default: fail("Object of type {} is not JSON serializable", type_name(v));
  }
}

template <typename J>
Value from_json_at(const J& j, int depth) {
  check_depth(depth);
  switch (j.type()) {
    case nlohmann::json::value_t::null: return Value(None{});
    case nlohmann::json::value_t::boolean: return Value(j.template get<bool>());
    case nlohmann::json::value_t::number_integer: return Value(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const auto u = j.template get<uint64_t>();
      return u <= uint64_t(INT64_MAX) ? Value(int64_t(u)) : Value(double(u));
    }
    case nlohmann::json::value_t::number_float: return Value(j.template get<double>());
    case nlohmann::json::value_t::string: return Value(j.template get_ref<const std::string&>());
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_json_at(e, depth + 1));
      return make_list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      auto d = std::make_shared<Dict>();
      for (auto it = j.begin(); it != j.end(); ++it) d->set(Value(it.key()), from_json_at(it.value(), depth + 1));
      return Value(std::move(d));
    }
    default: fail("unsupported JSON value ({})", j.type_name());
  }
}

}  // namespace

std::string to_str(const Value& v) {
  if (v.is_string()) return v.as_string();
  if (v.is_undefined()) return "";
  std::string out;
  append_repr(out, v, 0);
  return out;
}

std::string repr(const Value& v) {
  std::string out;
  append_repr(out, v, 0);
  return out;
}

bool equals(const Value& a, const Value& b) { return equals_at(a, b, 0); }
int compare(const Value& a, const Value& b) { return compare_at(a, b, 0); }

std::string to_json(const Value& v, const JsonStyle& style) {
  std::string out;
  append_json(out, v, style, 0);
  return out;
}

Value from_json(const nlohmann::json& j) { return from_json_at(j, 0); }
Value from_json(const nlohmann::ordered_json& j) { return from_json_at(j, 0); }

}  // namespace moeq::text::jinja
