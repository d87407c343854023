// The Python methods templates call on str, list and dict values ("x".strip(), d.items(),
// s.split(...)). Mutating methods exist in Python but transformers renders in jinja2's immutable
// sandbox, which refuses them; so do we.
#include <algorithm>
#include <cstdio>
#include <set>

#include "core/error.h"
#include "text/jinja/builtins.h"
#include "text/jinja/pystr.h"

namespace moeq::text::jinja {

namespace {

const std::set<std::string, std::less<>> kStrMethods = {
    "startswith", "endswith", "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "upper",
    "lower", "title", "capitalize", "swapcase", "replace", "find", "rfind", "index", "rindex", "count",
    "join", "format", "isdigit", "isdecimal", "isnumeric", "isalpha", "isalnum", "isspace", "islower",
    "isupper", "zfill", "center", "ljust", "rjust", "removeprefix", "removesuffix", "partition",
    "rpartition"};
const std::set<std::string, std::less<>> kDictMethods = {"items", "keys", "values", "get", "copy"};
const std::set<std::string, std::less<>> kListMethods = {"index", "count", "copy"};
const std::set<std::string, std::less<>> kUnsafeList = {"append", "clear",  "pop",    "reverse",
                                                         "insert", "sort",   "extend", "remove"};
const std::set<std::string, std::less<>> kUnsafeDict = {"clear", "pop", "popitem", "setdefault", "update"};

const std::string& need_str(const Value& v, const char* what) {
  if (!v.is_string()) fail("{} must be str, not {}", what, type_name(v));
  return v.as_string();
}

std::optional<std::string> opt_str(const Value& v, const char* what) {
  if (v.is_none() || v.is_undefined()) return std::nullopt;
  return need_str(v, what);
}

int64_t opt_int(const Value& v, int64_t fallback) {
  if (v.is_undefined() || v.is_none()) return fallback;
  if (!v.is_int() && !v.is_bool()) fail("'{}' object cannot be interpreted as an integer", type_name(v));
  return v.as_int();
}

bool is_line_break(char32_t c) {
  return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E || c == 0x85 ||
         c == 0x2028 || c == 0x2029;
}

bool is_alpha(char32_t c) {
  if (c < 0x80) return std::isalpha(int(c)) != 0;
  return py::is_cased(c) || (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3040 && c <= 0x30FF) ||
         (c >= 0xAC00 && c <= 0xD7A3) || (c >= 0x0600 && c <= 0x06FF && !(c >= 0x0660 && c <= 0x0669));
}
bool is_digit(char32_t c) { return (c >= '0' && c <= '9') || (c >= 0x0660 && c <= 0x0669) || (c >= 0xFF10 && c <= 0xFF19); }

template <typename Pred>
bool all_chars(const std::string& s, Pred pred) {
  const std::u32string u = py::decode(s);
  if (u.empty()) return false;
  return std::all_of(u.begin(), u.end(), pred);
}

// islower/isupper: at least one cased character and none of the other case.
bool case_test(const std::string& s, bool want_lower) {
  bool any = false;
  for (char32_t c : py::decode(s)) {
    if (!py::is_cased(c)) continue;
    const bool lower = py::to_upper(c) != c || c == 0xDF;
    if (lower != want_lower) return false;
    any = true;
  }
  return any;
}

std::vector<std::string> splitlines(const std::string& s, bool keepends) {
  std::vector<std::string> out;
  const std::u32string u = py::decode(s);
  size_t b = 0;
  for (size_t i = 0; i < u.size(); ++i) {
    if (!is_line_break(u[i])) continue;
    size_t e = i + 1;
    if (u[i] == '\r' && i + 1 < u.size() && u[i + 1] == '\n') e = i + 2;
    out.push_back(py::encode(std::u32string_view(u).substr(b, (keepends ? e : i) - b)));
    b = e;
    i = e - 1;
  }
  if (b < u.size()) out.push_back(py::encode(std::u32string_view(u).substr(b)));
  return out;
}

Value str_list(const std::vector<std::string>& parts) {
  std::vector<Value> items;
  items.reserve(parts.size());
  for (const auto& p : parts) items.emplace_back(p);
  return make_list(std::move(items));
}

std::string pad(const std::string& s, int64_t width, const std::string& fill, char align) {
  const int64_t len = int64_t(py::length(s));
  if (width <= len) return s;
  const int64_t total = width - len;
  int64_t left = 0;
  if (align == '>') left = total;
  if (align == '^') left = total / 2 + (total % 2 & width % 2);  // Python's center() rounding
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += fill;
  out += s;
  for (int64_t i = 0; i < total - left; ++i) out += fill;
  return out;
}

// A subset of Python's format-spec mini-language: [[fill]align][0][width][.precision][type].
std::string format_spec(const Value& v, const std::string& spec) {
  if (spec.empty()) return to_str(v);
  size_t i = 0;
  std::string fill = " ";
  char align = 0;
  const std::u32string u = py::decode(spec);
  auto is_align = [](char32_t c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  if (u.size() >= 2 && is_align(u[1])) {
    fill = py::encode(u.substr(0, 1));
    align = char(u[1]);
    i = 2;
  } else if (!u.empty() && is_align(u[0])) {
    align = char(u[0]);
    i = 1;
  }
  std::string rest = py::encode(u.substr(i));
  size_t p = 0;
  if (p < rest.size() && rest[p] == '0') {
    if (!align) fill = "0", align = '=';
    ++p;
  }
  auto number = [&](int64_t& n) {
    n = 0;
    while (p < rest.size() && std::isdigit(static_cast<unsigned char>(rest[p]))) {
      n = n * 10 + (rest[p++] - '0');
      if (n > 100000) fail("format width or precision too large");
    }
  };
  int64_t width = 0, precision = -1;
  number(width);
  if (p < rest.size() && rest[p] == '.') {
    ++p;
    number(precision);
  }
  const char type = p < rest.size() ? rest[p++] : 0;
  if (p != rest.size()) fail("unsupported format spec '{}'", spec);
  std::string body;
  std::vector<char> buf(200500);  // width and precision are capped at 100000
  if (type == 'd' || ((type == 0) && (v.is_int() || v.is_bool()) && precision < 0)) {
    if (!v.is_int() && !v.is_bool()) fail("unknown format code 'd' for object of type '{}'", type_name(v));
    body = std::to_string(v.as_int());
  } else if (type == 'f' || type == 'F' || type == 'e' || type == '%' || (type == 0 && v.is_float())) {
    if (!v.is_number()) fail("unknown format code '{}' for object of type '{}'", type, type_name(v));
    double d = v.as_double();
    if (type == 0 && precision < 0) {
      body = py::float_repr(d);
    } else {
      const int prec = precision < 0 ? 6 : int(precision);
      if (type == '%') d *= 100;
      std::snprintf(buf.data(), buf.size(), type == 'e' ? "%.*e" : "%.*f", prec, d);
      body = buf.data();
      if (type == '%') body += '%';
    }
  } else if (type == 'x' || type == 'X' || type == 'o' || type == 'b') {
    if (!v.is_int() && !v.is_bool()) fail("unknown format code '{}' for object of type '{}'", type, type_name(v));
    const int64_t n = v.as_int();
    uint64_t m = n < 0 ? uint64_t(0) - uint64_t(n) : uint64_t(n);
    if (type == 'b') {
      do {
        body.insert(body.begin(), char('0' + (m & 1)));
        m >>= 1;
      } while (m);
    } else {
      std::snprintf(buf.data(), buf.size(), type == 'x' ? "%llx" : type == 'X' ? "%llX" : "%llo", (unsigned long long)m);
      body = buf.data();
    }
    if (n < 0) body = "-" + body;
  } else if (type == 's' || type == 0) {
    if (type == 's' && !v.is_string()) fail("unknown format code 's' for object of type '{}'", type_name(v));
    body = to_str(v);
    if (precision >= 0) body = py::encode(py::decode(body).substr(0, size_t(precision)));
  } else {
    fail("unsupported format code '{}'", std::string(1, type));
  }
  if (!align) align = v.is_number() && !v.is_bool() ? '>' : '<';
  if (align == '=') {
    std::string sign;
    if (!body.empty() && (body[0] == '-' || body[0] == '+')) sign = body.substr(0, 1), body.erase(0, 1);
    return sign + pad(body, width - int64_t(sign.size()), fill, '>');
  }
  return pad(body, width, fill, align);
}

// Python's str.format with auto/explicit indices and keyword names; no nested fields.
std::string str_format(const std::string& f, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    const char c = f[i];
    if (c == '}') {
      if (i + 1 < f.size() && f[i + 1] == '}') {
        out += '}';
        ++i;
        continue;
      }
      fail("Single '}}' encountered in format string");
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < f.size() && f[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    const size_t close = f.find('}', i);
    if (close == std::string::npos) fail("Single '{{' encountered in format string");
    std::string field = f.substr(i + 1, close - i - 1);
    i = close;
    std::string spec, conv;
    if (const size_t colon = field.find(':'); colon != std::string::npos) {
      spec = field.substr(colon + 1);
      field.resize(colon);
    }
    if (const size_t bang = field.find('!'); bang != std::string::npos) {
      conv = field.substr(bang + 1);
      field.resize(bang);
    }
    const Value* v = nullptr;
    if (field.empty()) {
      if (auto_index >= args.positional.size()) fail("Replacement index {} out of range", auto_index);
      v = &args.positional[auto_index++];
    } else if (std::all_of(field.begin(), field.end(), [](char ch) { return std::isdigit(static_cast<unsigned char>(ch)); })) {
      const size_t k = std::stoul(field);
      if (k >= args.positional.size()) fail("Replacement index {} out of range", k);
      v = &args.positional[k];
    } else {
      for (const auto& [name, val] : args.keyword)
        if (name == field) v = &val;
      if (!v) fail("KeyError: '{}'", field);
    }
    if (conv == "r") {
      out += format_spec(Value(repr(*v)), spec);
    } else if (conv == "s" || conv.empty()) {
      out += conv.empty() ? format_spec(*v, spec) : format_spec(Value(to_str(*v)), spec);
    } else {
      fail("Unknown conversion specifier {}", conv);
    }
  }
  return out;
}

bool affix_match(const std::string& s, const Value& affix, bool prefix, const Value& start_v, const Value& end_v) {
  // start/end are code-point indices like Python's.
  std::string_view view = s;
  std::string sub;
  if (!start_v.is_undefined() || !end_v.is_undefined()) {
    const std::u32string u = py::decode(s);
    const int64_t n = int64_t(u.size());
    int64_t b = opt_int(start_v, 0), e = opt_int(end_v, n);
    if (b < 0) b = std::max<int64_t>(0, b + n);
    if (e < 0) e = std::max<int64_t>(0, e + n);
    b = std::min(b, n);
    e = std::min(e, n);
    if (b > e) return false;
    sub = py::encode(std::u32string_view(u).substr(size_t(b), size_t(e - b)));
    view = sub;
  }
  auto one = [&](const Value& a) {
    const std::string& t = need_str(a, prefix ? "startswith first arg" : "endswith first arg");
    return prefix ? view.substr(0, t.size()) == t
                  : (view.size() >= t.size() && view.substr(view.size() - t.size()) == t);
  };
  if (affix.is_list() && affix.as_list()->tuple) {
    for (const auto& a : affix.as_list()->items)
      if (one(a)) return true;
    return false;
  }
  return one(affix);
}

Value str_method(Interpreter& in, const std::string& s, const std::string& name, CallArgs& call) {
  if (name == "startswith" || name == "endswith") {
    Args a(name, call, {"prefix", "start", "end"});
    return Value(affix_match(s, a[0], name == "startswith", a[1], a[2]));
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    Args a(name, call, {"chars"});
    return Value(py::strip(s, opt_str(a[0], "strip arg"), name != "rstrip", name != "lstrip"));
  }
  if (name == "split" || name == "rsplit") {
    Args a(name, call, {"sep", "maxsplit"});
    const auto sep = opt_str(a[0], "sep");
    const int64_t maxsplit = opt_int(a[1], -1);
    return str_list(name == "split" ? py::split(s, sep, maxsplit) : py::rsplit(s, sep, maxsplit));
  }
  if (name == "splitlines") {
    Args a(name, call, {"keepends"});
    return str_list(splitlines(s, truthy(a[0])));
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize" || name == "swapcase") {
    Args a(name, call, {});
    if (name == "upper") return Value(py::upper(s));
    if (name == "lower") return Value(py::lower(s));
    if (name == "title") return Value(py::title(s));
    if (name == "capitalize") return Value(py::capitalize(s));
    std::string out;
    for (char32_t c : py::decode(s)) py::append_utf8(out, py::to_upper(c) != c ? py::to_upper(c) : py::to_lower(c));
    return Value(std::move(out));
  }
  if (name == "replace") {
    Args a(name, call, {"old", "new", "count"});
    const std::string r = py::replace(s, need_str(a[0], "replace arg 1"), need_str(a[1], "replace arg 2"), opt_int(a[2], -1));
    in.check_size(r.size());
    return Value(r);
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex") {
    Args a(name, call, {"sub"});
    const int64_t at = py::find(s, need_str(a[0], "must be str"), name[0] == 'r');
    if (at < 0 && (name == "index" || name == "rindex")) fail("substring not found");
    return Value(at);
  }
  if (name == "count") {
    Args a(name, call, {"sub"});
    return Value(py::count(s, need_str(a[0], "must be str")));
  }
  if (name == "join") {
    Args a(name, call, {"iterable"});
    std::string out;
    size_t k = 0;
    for (const auto& item : iterate(a[0])) {
      if (!item.is_string()) fail("sequence item {}: expected str instance, {} found", k, type_name(item));
      if (k++) out += s;
      out += item.as_string();
      in.check_size(out.size());
    }
    return Value(std::move(out));
  }
  if (name == "format") return Value(str_format(s, call));
  if (name == "removeprefix" || name == "removesuffix") {
    Args a(name, call, {"affix"});
    const std::string& t = need_str(a[0], "argument");
    if (name == "removeprefix") return Value(s.compare(0, t.size(), t) == 0 ? s.substr(t.size()) : s);
    const bool ends = s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
    return Value(ends ? s.substr(0, s.size() - t.size()) : s);
  }
  if (name == "partition" || name == "rpartition") {
    Args a(name, call, {"sep"});
    const std::string& sep = need_str(a[0], "sep");
    if (sep.empty()) fail("empty separator");
    const size_t at = name == "partition" ? s.find(sep) : s.rfind(sep);
    if (at == std::string::npos)
      return name == "partition" ? make_list({Value(s), Value(""), Value("")}, true)
                                 : make_list({Value(""), Value(""), Value(s)}, true);
    return make_list({Value(s.substr(0, at)), Value(sep), Value(s.substr(at + sep.size()))}, true);
  }
  if (name == "zfill" || name == "center" || name == "ljust" || name == "rjust") {
    Args a(name, call, {"width", "fillchar"});
    const int64_t width = opt_int(a[0], 0);
    in.check_size(size_t(std::max<int64_t>(width, 0)));
    if (name == "zfill") {
      std::string body = s, sign;
      if (!body.empty() && (body[0] == '-' || body[0] == '+')) sign = body.substr(0, 1), body.erase(0, 1);
      return Value(sign + pad(body, width - int64_t(sign.size()), "0", '>'));
    }
    const std::string fill = a.has(1) ? need_str(a[1], "fillchar") : " ";
    return Value(pad(s, width, fill, name == "center" ? '^' : name == "ljust" ? '<' : '>'));
  }
  Args a(name, call, {});
  if (name == "isdigit" || name == "isdecimal" || name == "isnumeric") return Value(all_chars(s, is_digit));
  if (name == "isalpha") return Value(all_chars(s, is_alpha));
  if (name == "isalnum") return Value(all_chars(s, [](char32_t c) { return is_alpha(c) || is_digit(c); }));
  if (name == "isspace") return Value(all_chars(s, py::isspace));
  if (name == "islower") return Value(case_test(s, true));
  if (name == "isupper") return Value(case_test(s, false));
  fail("'str' object has no attribute '{}'", name);
}

}  // namespace

bool has_method(const Value& self, const std::string& name) {
  if (self.is_string()) return kStrMethods.count(name) != 0;
  if (self.is_dict()) return kDictMethods.count(name) != 0;
  if (self.is_list()) return !self.as_list()->generator && kListMethods.count(name) != 0;
  return false;
}

bool is_unsafe_method(const Value& self, const std::string& name) {
  if (self.is_list()) return !self.as_list()->tuple && kUnsafeList.count(name) != 0;
  if (self.is_dict()) return kUnsafeDict.count(name) != 0;
  return false;
}

Value call_method(Interpreter& in, const Value& self, const std::string& name, CallArgs& args) {
  if (self.is_string()) return str_method(in, self.as_string(), name, args);
  if (self.is_dict()) {
    const Dict& d = *self.as_dict();
    if (name == "get") {
      Args a(name, args, {"key", "default"});
      const Value* v = d.find(a[0]);
      return v ? *v : a.get(1, Value(None{}));
    }
    Args a(name, args, {});
    std::vector<Value> out;
    out.reserve(d.size());
    if (name == "copy") {
      auto c = std::make_shared<Dict>(d);
      return Value(std::move(c));
    }
    for (const auto& [k, v] : d.entries()) {
      if (name == "items") {
        out.push_back(make_list({k, v}, true));
      } else {
        out.push_back(name == "keys" ? k : v);
      }
    }
    return make_list(std::move(out));
  }
  if (self.is_list()) {
    const auto& items = self.as_list()->items;
    if (name == "copy") {
      Args a(name, args, {});
      return make_list(items, self.as_list()->tuple);
    }
    Args a(name, args, {"value"});
    int64_t n = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!equals(items[i], a[0])) continue;
      if (name == "index") return Value(int64_t(i));
      ++n;
    }
    if (name == "index") fail("{} is not in list", repr(a[0]));
    return Value(n);
  }
  fail("'{}' object has no attribute '{}'", type_name(self), name);
}

}  // namespace moeq::text::jinja
