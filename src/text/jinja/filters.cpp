// jinja2's builtin filters (3.1 semantics), with transformers' tojson override. Filters that
// return generators in jinja2 (map, select, items, reverse, unique) return a `generator` list.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <utility>

#include "core/error.h"
#include "text/jinja/builtins.h"
#include "text/jinja/pystr.h"

namespace moeq::text::jinja {

namespace {

using Fn = FilterFn;

// jinja2's soft_str: str(), but undefined renders as "".
std::string s_of(const Value& v) { return to_str(v); }

int64_t need_int(const Value& v, const char* what) {
  if (!v.is_int() && !v.is_bool()) fail("{} must be an integer, not {}", what, type_name(v));
  return v.as_int();
}

// make_attrgetter: "a.b.0" looked up with getitem (keys before methods), digits as indices.
Value attr_path(const Value& item, const std::string& path, const Value& fallback) {
  Value v = item;
  for (const auto& part : py::split(path, std::string("."), -1)) {
    const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    v = get_item(v, digits ? Value(int64_t(std::stoll(part))) : Value(part));
    if (v.is_undefined() && !fallback.is_undefined()) return fallback;
  }
  return v;
}

Value lowered(const Value& v, bool case_sensitive) {
  return (!case_sensitive && v.is_string()) ? Value(py::lower(v.as_string())) : v;
}

// make_multi_attrgetter: "a,b" gives a tuple key; no attribute: the item itself.
Value sort_key(const Value& item, const Value& attribute, bool case_sensitive) {
  if (attribute.is_undefined() || attribute.is_none()) return lowered(item, case_sensitive);
  if (attribute.is_int()) return lowered(get_item(item, attribute), case_sensitive);
  const std::vector<std::string> parts = py::split(s_of(attribute), std::string(","), -1);
  if (parts.size() == 1) return lowered(attr_path(item, parts[0], Value()), case_sensitive);
  std::vector<Value> keys;
  for (const auto& p : parts) keys.push_back(lowered(attr_path(item, p, Value()), case_sensitive));
  return make_list(std::move(keys), true);
}

Value f_abs(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("abs", args, {});
  if (v.is_float()) return Value(std::fabs(v.as_double()));
  if (v.is_int() || v.is_bool()) {
    if (v.as_int() == INT64_MIN) fail("integer overflow");
    return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
  }
  fail("bad operand type for abs(): '{}'", type_name(v));
}

Value f_attr(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("attr", args, {"name"});
  const std::string name = s_of(a[0]);
  // Python attributes only: dict keys are not attributes.
  if (v.is_dict() && !has_method(v, name) && !is_unsafe_method(v, name))
    return Value::undefined(undefined_attr_hint(v, name));
  return get_attr(v, name);
}

// batch(value, linecount, fill_with=None): lists of `linecount` items, the last one padded.
Value f_batch(Interpreter& in, const Value& v, const CallArgs& args) {
  Args a("batch", args, {"linecount", "fill_with"});
  const int64_t n = need_int(a[0], "linecount");
  if (n <= 0) fail("batch size must be positive");
  std::vector<Value> out, tmp;
  for (const auto& item : iterate(v)) {
    in.step();
    tmp.push_back(item);
    if (int64_t(tmp.size()) == n) out.push_back(make_list(std::exchange(tmp, {})));
  }
  if (!tmp.empty()) {
    if (a.has(1) && !a[1].is_none())
      while (int64_t(tmp.size()) < n) tmp.push_back(a[1]);
    out.push_back(make_list(std::move(tmp)));
  }
  return make_generator(std::move(out));
}

// slice(value, slices, fill_with=None): `slices` columns, the first ones one longer.
Value f_slice(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("slice", args, {"slices", "fill_with"});
  const int64_t slices = need_int(a[0], "slices");
  if (slices <= 0) fail("slice count must be positive");
  const std::vector<Value> seq = iterate(v);
  const int64_t length = int64_t(seq.size()), per = length / slices, extra = length % slices;
  std::vector<Value> out;
  int64_t offset = 0;
  for (int64_t i = 0; i < slices; ++i) {
    const int64_t start = offset + i * per;
    if (i < extra) ++offset;
    const int64_t end = offset + (i + 1) * per;
    std::vector<Value> col(seq.begin() + start, seq.begin() + end);
    if (a.has(1) && !a[1].is_none() && i >= extra) col.push_back(a[1]);
    out.push_back(make_list(std::move(col)));
  }
  return make_generator(std::move(out));
}

Value f_capitalize(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("capitalize", args, {});
  return Value(py::capitalize(s_of(v)));
}

Value f_center(Interpreter& in, const Value& v, const CallArgs& args) {
  Args a("center", args, {"width"});
  CallArgs c;
  c.positional.push_back(a.get(0, Value(int64_t(80))));
  return call_method(in, Value(s_of(v)), "center", c);
}

Value f_default(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("default", args, {"default_value", "boolean"});
  if (v.is_undefined() || (truthy(a[1]) && !truthy(v))) return a.get(0, Value(""));
  return v;
}

Value f_dictsort(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("dictsort", args, {"case_sensitive", "by", "reverse"});
  if (!v.is_dict()) fail("dictsort requires a mapping, not {}", type_name(v));
  const std::string by = a.has(1) ? s_of(a[1]) : "key";
  if (by != "key" && by != "value") fail("You can only sort by either 'key' or 'value'");
  const size_t pos = by == "key" ? 0 : 1;
  std::vector<Value> items;
  for (const auto& [k, val] : v.as_dict()->entries()) items.push_back(make_list({k, val}, true));
  const bool cs = truthy(a[0]), rev = truthy(a[2]);
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    const Value kx = lowered(x.as_list()->items[pos], cs), ky = lowered(y.as_list()->items[pos], cs);
    return rev ? compare(ky, kx) < 0 : compare(kx, ky) < 0;
  });
  return make_list(std::move(items));
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

Value f_escape(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("escape", args, {});
  return Value(html_escape(v.is_none() ? "None" : s_of(v)));
}

Value f_first(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("first", args, {});
  if (v.is_string()) return v.as_string().empty() ? Value::undefined("No first item, sequence was empty.") : get_item(v, Value(int64_t(0)));
  const std::vector<Value> items = iterate(v);
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}

Value f_last(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("last", args, {});
  if (v.is_list() && v.as_list()->generator) fail("'generator' object is not reversible");
  if (v.is_string()) return v.as_string().empty() ? Value::undefined("No last item, sequence was empty.") : get_item(v, Value(int64_t(-1)));
  const std::vector<Value> items = iterate(v);
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

Value f_float(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("float", args, {"default"});
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_number()) return Value(v.as_double());
  if (v.is_string())
    if (auto d = py::parse_float(v.as_string())) return Value(*d);
  return a.get(0, Value(0.0));
}

Value f_int(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("int", args, {"default", "base"});
  const Value fallback = a.get(0, Value(int64_t(0)));
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_int() || v.is_bool()) return Value(v.as_int());
  if (v.is_float()) {
    const double d = v.as_double();
    if (std::isnan(d) || std::isinf(d)) fail("cannot convert float {} to integer", py::float_repr(d));
    if (std::fabs(d) >= 9.2e18) fail("integer overflow");
    return Value(int64_t(d));
  }
  if (v.is_string()) {
    const int64_t base = a.has(1) ? need_int(a[1], "base") : 10;
    if (base == 10) {
      if (auto i = py::parse_int(v.as_string())) return Value(*i);
    } else {
      std::string t = py::strip(v.as_string(), std::nullopt, true, true);
      std::erase(t, '_');
      bool neg = false;
      if (!t.empty() && (t[0] == '-' || t[0] == '+')) neg = t[0] == '-', t.erase(0, 1);
      if (t.size() > 2 && t[0] == '0' && ((base == 16 && (t[1] == 'x' || t[1] == 'X')) ||
                                          (base == 8 && (t[1] == 'o' || t[1] == 'O')) ||
                                          (base == 2 && (t[1] == 'b' || t[1] == 'B'))))
        t.erase(0, 2);
      int64_t out = 0;
      bool ok = !t.empty() && base >= 2 && base <= 36;
      for (char c : t) {
        const int d = std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : std::isalpha(static_cast<unsigned char>(c)) ? (std::tolower(c) - 'a' + 10) : 99;
        if (d >= base || __builtin_mul_overflow(out, base, &out) || __builtin_add_overflow(out, d, &out)) {
          ok = false;
          break;
        }
      }
      if (ok) return Value(neg ? -out : out);
    }
    // jinja2 falls back to int(float(value)) so that "42.23"|int is 42.
    if (auto d = py::parse_float(v.as_string())) {
      if (std::isnan(*d) || std::isinf(*d)) fail("cannot convert float to integer");
      if (std::fabs(*d) < 9.2e18) return Value(int64_t(*d));
    }
  }
  return fallback;
}

Value f_format(Interpreter& in, const Value& v, const CallArgs& args) {
  if (!args.positional.empty() && !args.keyword.empty()) fail("can't handle positional and keyword arguments at the same time");
  Value rhs;
  if (!args.keyword.empty()) {
    rhs = make_dict();
    for (const auto& [k, val] : args.keyword) rhs.as_dict()->set(Value(k), val);
  } else {
    rhs = make_list(args.positional, true);
  }
  return binary_op(in, BinOp::Mod, Value(s_of(v)), rhs);
}

// Python's str.splitlines() without keepends.
std::vector<std::string> splitlines(const std::string& s) {
  std::vector<std::string> parts;
  const std::u32string u = py::decode(s);
  size_t b = 0;
  for (size_t i = 0; i < u.size(); ++i) {
    const char32_t c = u[i];
    if (!(c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E || c == 0x85 ||
          c == 0x2028 || c == 0x2029))
      continue;
    parts.push_back(py::encode(std::u32string_view(u).substr(b, i - b)));
    if (c == '\r' && i + 1 < u.size() && u[i + 1] == '\n') ++i;
    b = i + 1;
  }
  if (b < u.size()) parts.push_back(py::encode(std::u32string_view(u).substr(b)));
  return parts;
}

Value f_indent(Interpreter& in, const Value& v, const CallArgs& args) {
  Args a("indent", args, {"width", "first", "blank"});
  if (!v.is_string()) fail("can only concatenate {} (not \"str\") to {}", type_name(v), type_name(v));
  std::string indention;
  const Value width = a.get(0, Value(int64_t(4)));
  if (width.is_string()) {
    indention = width.as_string();
  } else {
    const int64_t w = std::max<int64_t>(0, need_int(width, "width"));
    in.check_size(size_t(w));
    indention = std::string(size_t(w), ' ');
  }
  // jinja2 appends a newline, then splits lines (which drops the trailing empty line).
  const std::vector<std::string> lines = splitlines(v.as_string() + "\n");
  std::string rv;
  if (truthy(a[2])) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i) rv += "\n" + indention;
      rv += lines[i];
    }
  } else {
    if (!lines.empty()) rv = lines[0];
    for (size_t i = 1; i < lines.size(); ++i) rv += "\n" + (lines[i].empty() ? "" : indention + lines[i]);
  }
  if (truthy(a[1])) rv = indention + rv;
  in.check_size(rv.size());
  return Value(std::move(rv));
}

Value f_items(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("items", args, {});
  if (v.is_undefined()) return make_generator({});
  if (!v.is_dict()) fail("Can only get item pairs from a mapping.");
  std::vector<Value> out;
  for (const auto& [k, val] : v.as_dict()->entries()) out.push_back(make_list({k, val}, true));
  return make_generator(std::move(out));
}

Value f_join(Interpreter& in, const Value& v, const CallArgs& args) {
  Args a("join", args, {"d", "attribute"});
  const std::string sep = a.has(0) ? s_of(a[0]) : "";
  std::string out;
  bool first = true;
  for (const auto& item : iterate(v)) {
    if (!first) out += sep;
    first = false;
    out += s_of(a.has(1) && !a[1].is_none() ? attr_path(item, s_of(a[1]), Value()) : item);
    in.check_size(out.size());
  }
  return Value(std::move(out));
}

Value f_length(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("length", args, {});
  return Value(length(v));
}

Value f_list(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("list", args, {});
  return make_list(iterate(v));
}

Value f_lower(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("lower", args, {});
  return Value(py::lower(s_of(v)));
}

Value f_upper(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("upper", args, {});
  return Value(py::upper(s_of(v)));
}

Value f_map(Interpreter& in, const Value& v, const CallArgs& args) {
  std::vector<Value> out;
  const std::vector<Value> items = truthy(v) ? iterate(v) : std::vector<Value>{};
  if (args.positional.empty()) {
    Value attribute, fallback(None{});
    for (const auto& [k, val] : args.keyword) {
      if (k == "attribute") {
        attribute = val;
      } else if (k == "default") {
        fallback = val;
      } else {
        fail("Unexpected keyword argument '{}'", k);
      }
    }
    if (attribute.is_undefined()) fail("map requires a filter argument");
    for (const auto& item : items) {
      in.step();
      out.push_back(attr_path(item, s_of(attribute), fallback.is_none() ? Value() : fallback));
    }
    return make_generator(std::move(out));
  }
  const std::string name = s_of(args.positional[0]);
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + 1, args.positional.end());
  rest.keyword = args.keyword;
  for (const auto& item : items) {
    in.step();
    CallArgs c = rest;
    out.push_back(in.call_filter(name, item, c));
  }
  return make_generator(std::move(out));
}

Value select_reject(Interpreter& in, const Value& v, const CallArgs& args, bool select, bool by_attr) {
  size_t off = 0;
  std::string attribute;
  if (by_attr) {
    if (args.positional.empty()) fail("Missing parameter for attribute name");
    attribute = s_of(args.positional[0]);
    off = 1;
  }
  std::vector<Value> out;
  const std::vector<Value> items = truthy(v) ? iterate(v) : std::vector<Value>{};
  for (const auto& item : items) {
    in.step();
    const Value subject = by_attr ? attr_path(item, attribute, Value()) : item;
    bool ok;
    if (args.positional.size() > off) {
      CallArgs c;
      c.positional.assign(args.positional.begin() + std::ptrdiff_t(off) + 1, args.positional.end());
      c.keyword = args.keyword;
      ok = in.call_test(s_of(args.positional[off]), subject, c);
    } else {
      ok = truthy(subject);
    }
    if (ok == select) out.push_back(item);
  }
  return make_generator(std::move(out));
}

Value f_select(Interpreter& in, const Value& v, const CallArgs& a) { return select_reject(in, v, a, true, false); }
Value f_reject(Interpreter& in, const Value& v, const CallArgs& a) { return select_reject(in, v, a, false, false); }
Value f_selectattr(Interpreter& in, const Value& v, const CallArgs& a) { return select_reject(in, v, a, true, true); }
Value f_rejectattr(Interpreter& in, const Value& v, const CallArgs& a) { return select_reject(in, v, a, false, true); }

Value min_max(const Value& v, const CallArgs& args, bool want_max) {
  Args a(want_max ? "max" : "min", args, {"case_sensitive", "attribute"});
  const std::vector<Value> items = iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  for (size_t i = 1; i < items.size(); ++i) {
    const int c = compare(sort_key(items[i], a[1], truthy(a[0])), sort_key(items[best], a[1], truthy(a[0])));
    if (want_max ? c > 0 : c < 0) best = i;
  }
  return items[best];
}
Value f_max(Interpreter&, const Value& v, const CallArgs& a) { return min_max(v, a, true); }
Value f_min(Interpreter&, const Value& v, const CallArgs& a) { return min_max(v, a, false); }

Value f_replace(Interpreter& in, const Value& v, const CallArgs& args) {
  Args a("replace", args, {"old", "new", "count"});
  const int64_t count = (a[2].is_undefined() || a[2].is_none()) ? -1 : need_int(a[2], "count");
  std::string r = py::replace(s_of(v), s_of(a[0]), s_of(a[1]), count);
  in.check_size(r.size());
  return Value(std::move(r));
}

Value f_reverse(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("reverse", args, {});
  if (v.is_string()) {
    std::u32string u = py::decode(v.as_string());
    std::reverse(u.begin(), u.end());
    return Value(py::encode(u));
  }
  std::vector<Value> items = iterate(v);
  std::reverse(items.begin(), items.end());
  return make_generator(std::move(items));
}

Value f_round(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("round", args, {"precision", "method"});
  const int64_t precision = a.has(0) ? need_int(a[0], "precision") : 0;
  const std::string method = a.has(1) ? s_of(a[1]) : "common";
  if (method != "common" && method != "ceil" && method != "floor")
    fail("method must be common, ceil or floor");
  if (!v.is_number()) fail("type {} doesn't define __round__ method", type_name(v));
  if (method != "common") {
    const double scale = std::pow(10.0, double(precision));
    const double x = v.as_double() * scale;
    return Value((method == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
  }
  if (!v.is_float()) {
    if (precision >= 0) return Value(v.as_int());
    const double scale = std::pow(10.0, double(-precision));
    return Value(int64_t(std::nearbyint(double(v.as_int()) / scale) * scale));
  }
  const double d = v.as_double();
  if (std::isnan(d) || std::isinf(d) || precision > 300) return Value(d);
  if (precision >= 0) {
    // printf rounds the exact binary value half-to-even, as Python's round() does.
    char buf[512];
    std::snprintf(buf, sizeof buf, "%.*f", int(precision), d);
    return Value(std::strtod(buf, nullptr));
  }
  const double scale = std::pow(10.0, double(-precision));
  return Value(std::nearbyint(d / scale) * scale);
}

Value f_safe(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("safe", args, {});
  return v.is_string() ? v : Value(v.is_undefined() ? std::string() : to_str(v));
}

Value f_sort(Interpreter& in, const Value& v, const CallArgs& args) {
  Args a("sort", args, {"reverse", "case_sensitive", "attribute"});
  std::vector<Value> items = iterate(v);
  in.step(items.size());
  const bool rev = truthy(a[0]), cs = truthy(a[1]);
  std::vector<std::pair<Value, Value>> keyed;
  for (auto& item : items) keyed.emplace_back(sort_key(item, a[2], cs), item);
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return rev ? compare(y.first, x.first) < 0 : compare(x.first, y.first) < 0;
  });
  std::vector<Value> out;
  for (auto& [k, item] : keyed) out.push_back(std::move(item));
  return make_list(std::move(out));
}

Value f_string(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("string", args, {});
  return Value(s_of(v));
}

Value f_sum(Interpreter& in, const Value& v, const CallArgs& args) {
  Args a("sum", args, {"attribute", "start"});
  Value total = a.get(1, Value(int64_t(0)));
  for (const auto& item : iterate(v)) {
    const Value x = a.has(0) && !a[0].is_none() ? attr_path(item, s_of(a[0]), Value()) : item;
    total = binary_op(in, BinOp::Add, total, x);
  }
  return total;
}

Value f_title(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("title", args, {});
  // jinja2 splits at runs of whitespace and -({[< and capitalizes each piece.
  const std::u32string u = py::decode(s_of(v));
  auto is_sep = [](char32_t c) {
    return py::isspace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
  };
  std::string out;
  bool at_start = true;
  for (char32_t c : u) {
    if (is_sep(c)) {
      py::append_utf8(out, c);
      at_start = true;
    } else {
      py::append_utf8(out, at_start ? py::to_upper(c) : py::to_lower(c));
      at_start = false;
    }
  }
  return Value(std::move(out));
}

// transformers' override: json.dumps(x, ensure_ascii=False, indent=None, separators=None,
// sort_keys=False): no HTML escaping, unlike jinja2's own tojson.
Value f_tojson(Interpreter& in, const Value& v, const CallArgs& args) {
  Args a("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonStyle st;
  st.ensure_ascii = truthy(a[0]);
  const Value& indent = a[1];
  if (indent.is_string()) {
    st.indent = indent.as_string();
  } else if (indent.is_int() || indent.is_bool()) {
    st.indent = std::string(size_t(std::max<int64_t>(0, indent.as_int())), ' ');
  } else if (!indent.is_none() && !indent.is_undefined()) {
    fail("indent must be an int or a string, not {}", type_name(indent));
  }
  if (a[2].is_list()) {
    const auto& seps = a[2].as_list()->items;
    if (seps.size() != 2 || !seps[0].is_string() || !seps[1].is_string()) fail("separators must be two strings");
    st.item_sep = seps[0].as_string();
    st.key_sep = seps[1].as_string();
  } else if (!a[2].is_none() && !a[2].is_undefined()) {
    fail("separators must be a pair of strings");
  }
  st.sort_keys = truthy(a[3]);
  std::string out = to_json(v, st);
  in.check_size(out.size());
  return Value(std::move(out));
}

Value f_trim(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("trim", args, {"chars"});
  std::optional<std::string> chars;
  if (!a[0].is_none() && !a[0].is_undefined()) chars = s_of(a[0]);
  return Value(py::strip(s_of(v), chars, true, true));
}

Value f_truncate(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("truncate", args, {"length", "killwords", "end", "leeway"});
  const std::u32string s = py::decode(s_of(v));
  const int64_t len = a.has(0) ? need_int(a[0], "length") : 255;
  const std::u32string end = py::decode(a.has(2) ? s_of(a[2]) : "...");
  const int64_t leeway = a.has(3) && !a[3].is_none() ? need_int(a[3], "leeway") : 5;
  if (len < int64_t(end.size())) fail("expected length >= {}, got {}", end.size(), len);
  if (leeway < 0) fail("expected leeway >= 0, got {}", leeway);
  if (int64_t(s.size()) <= len + leeway) return Value(py::encode(s));
  std::u32string head = s.substr(0, size_t(len - int64_t(end.size())));
  if (!truthy(a[1])) {
    const size_t sp = head.rfind(U' ');
    if (sp != std::u32string::npos) head.resize(sp);
  }
  return Value(py::encode(head + end));
}

Value f_unique(Interpreter& in, const Value& v, const CallArgs& args) {
  Args a("unique", args, {"case_sensitive", "attribute"});
  std::vector<Value> out, seen;
  for (const auto& item : iterate(v)) {
    in.step();
    const Value key = sort_key(item, a[1], truthy(a[0]));
    bool dup = false;
    for (const auto& s : seen) dup = dup || equals(s, key);
    if (dup) continue;
    seen.push_back(key);
    out.push_back(item);
  }
  return make_generator(std::move(out));
}

Value f_wordcount(Interpreter&, const Value& v, const CallArgs& args) {
  Args a("wordcount", args, {});
  int64_t n = 0;
  bool in_word = false;
  for (char32_t c : py::decode(s_of(v))) {
    const bool w = c == '_' || (c < 0x80 ? std::isalnum(int(c)) != 0 : !py::isspace(c) && (py::is_cased(c) || c >= 0x2E80));
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value(n);
}

const std::map<std::string, Fn, std::less<>>& table() {
  static const std::map<std::string, Fn, std::less<>> t = {
      {"abs", f_abs}, {"attr", f_attr}, {"batch", f_batch}, {"slice", f_slice}, {"capitalize", f_capitalize}, {"center", f_center},
      {"count", f_length}, {"d", f_default}, {"default", f_default}, {"dictsort", f_dictsort},
      {"e", f_escape}, {"escape", f_escape}, {"forceescape", f_escape}, {"first", f_first},
      {"float", f_float}, {"format", f_format}, {"indent", f_indent}, {"int", f_int}, {"items", f_items},
      {"join", f_join}, {"last", f_last}, {"length", f_length}, {"list", f_list}, {"lower", f_lower},
      {"map", f_map}, {"max", f_max}, {"min", f_min}, {"reject", f_reject}, {"rejectattr", f_rejectattr},
      {"replace", f_replace}, {"reverse", f_reverse}, {"round", f_round}, {"safe", f_safe},
      {"select", f_select}, {"selectattr", f_selectattr}, {"sort", f_sort}, {"string", f_string},
      {"sum", f_sum}, {"title", f_title}, {"tojson", f_tojson}, {"trim", f_trim}, {"truncate", f_truncate},
      {"unique", f_unique}, {"upper", f_upper}, {"wordcount", f_wordcount}};
  return t;
}

}  // namespace

FilterFn find_filter(std::string_view name) {
  const auto& t = table();
  auto it = t.find(name);
  return it == t.end() ? nullptr : it->second;
}

}  // namespace moeq::text::jinja
