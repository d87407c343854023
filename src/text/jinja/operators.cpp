// Python's arithmetic, concatenation, `%` formatting and `in`, with Python's results: int stays int
// (overflow is an error instead of a bignum), / is true division, // and % floor toward -inf.
#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>

#include "core/error.h"
#include "text/jinja/builtins.h"
#include "text/jinja/pystr.h"

namespace moeq::text::jinja {

namespace {

bool is_intlike(const Value& v) { return v.is_int() || v.is_bool(); }
bool is_seq(const Value& v) { return v.is_string() || (v.is_list() && !v.as_list()->generator); }

[[noreturn]] void unsupported(const char* op, const Value& a, const Value& b) {
  fail("unsupported operand type(s) for {}: '{}' and '{}'", op, type_name(a), type_name(b));
}

// Python ints never overflow; ours are 64-bit, and an overflow is an error rather than a wrap.
template <typename Op>
int64_t checked(Op op, int64_t a, int64_t b) {
  int64_t r = 0;
  if (op(a, b, &r)) fail("integer overflow");
  return r;
}
bool add_ovf(int64_t a, int64_t b, int64_t* r) { return __builtin_add_overflow(a, b, r); }
bool sub_ovf(int64_t a, int64_t b, int64_t* r) { return __builtin_sub_overflow(a, b, r); }
bool mul_ovf(int64_t a, int64_t b, int64_t* r) { return __builtin_mul_overflow(a, b, r); }

double float_floordiv(double x, double y, double* mod_out) {
  if (y == 0.0) fail("float floor division by zero");
  double mod = std::fmod(x, y);
  double div = (x - mod) / y;
  if (mod != 0.0) {
    if ((y < 0) != (mod < 0)) {
      mod += y;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, y);
  }
  double floordiv;
  if (div != 0.0) {
    floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
  } else {
    floordiv = std::copysign(0.0, x / y);
  }
  if (mod_out) *mod_out = mod;
  return floordiv;
}

Value repeat(Interpreter& in, const Value& seq, int64_t n) {
  if (n < 0) n = 0;
  if (seq.is_string()) {
    const std::string& s = seq.as_string();
    if (n > 0 && s.size() > 0) in.check_size(s.size() * size_t(std::min<int64_t>(n, INT32_MAX)));
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += s;
    return Value(std::move(out));
  }
  const auto& items = seq.as_list()->items;
  if (n > 0 && !items.empty()) in.check_size(items.size() * size_t(std::min<int64_t>(n, INT32_MAX)) * sizeof(Value));
  std::vector<Value> out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), items.begin(), items.end());
  return make_list(std::move(out), seq.as_list()->tuple);
}

// printf-style `str % args` for the conversions templates use: s r d i f F e x X o c %.
Value percent_format(const std::string& fmt_str, const Value& args) {
  std::vector<Value> positional;
  const Dict* mapping = nullptr;
  if (args.is_list() && args.as_list()->tuple) {
    positional = args.as_list()->items;
  } else if (args.is_dict()) {
    mapping = args.as_dict().get();
  } else {
    positional.push_back(args);
  }
  size_t next_arg = 0;
  std::string out;
  for (size_t i = 0; i < fmt_str.size(); ++i) {
    if (fmt_str[i] != '%') {
      out.push_back(fmt_str[i]);
      continue;
    }
    if (++i >= fmt_str.size()) fail("incomplete format");
    const Value* arg = nullptr;
    if (fmt_str[i] == '(') {
      const size_t close = fmt_str.find(')', i);
      if (close == std::string::npos || !mapping) fail("format requires a mapping");
      arg = mapping->find(std::string_view(fmt_str).substr(i + 1, close - i - 1));
      if (!arg) fail("KeyError: '{}'", fmt_str.substr(i + 1, close - i - 1));
      i = close + 1;
    }
    std::string flags;
    while (i < fmt_str.size() && std::string_view("-+ 0#").find(fmt_str[i]) != std::string_view::npos) flags += fmt_str[i++];
    int width = 0, precision = -1;
    auto number = [&](int& n) {
      n = 0;
      while (i < fmt_str.size() && std::isdigit(static_cast<unsigned char>(fmt_str[i]))) {
        n = n * 10 + (fmt_str[i++] - '0');
        if (n > 100000) fail("format width or precision too large");
      }
    };
    number(width);
    if (i < fmt_str.size() && fmt_str[i] == '.') {
      ++i;
      number(precision);
    }
    if (i >= fmt_str.size()) fail("incomplete format");
    const char conv = fmt_str[i];
    if (conv == '%') {
      out.push_back('%');
      continue;
    }
    if (!arg) {
      if (mapping) fail("format requires a mapping");
      if (next_arg >= positional.size()) fail("not enough arguments for format string");
      arg = &positional[next_arg++];
    }
    std::string piece;
    const bool left = flags.find('-') != std::string::npos;
    const bool zero = flags.find('0') != std::string::npos && !left;
    auto num_fmt = [&](char c) {
      std::string spec = "%" + flags;
      if (width) spec += std::to_string(width);
      if (precision >= 0) spec += "." + std::to_string(precision);
      std::vector<char> buf(200500);  // width and precision are capped at 100000
      if (c == 'f' || c == 'F' || c == 'e') {
        if (!arg->is_number()) fail("must be real number, not {}", type_name(*arg));
        spec += c;
        std::snprintf(buf.data(), buf.size(), spec.c_str(), arg->as_double());
      } else {
        if (!arg->is_number()) fail("%{} format: a real number is required, not {}", c, type_name(*arg));
        const long long v = arg->is_float() ? (long long)std::trunc(arg->as_double()) : (long long)arg->as_int();
        spec += "ll";
        spec += (c == 'i' ? 'd' : c);
        std::snprintf(buf.data(), buf.size(), spec.c_str(), v);
      }
      return std::string(buf.data());
    };
    switch (conv) {
      case 's': piece = to_str(*arg); break;
      case 'r': piece = repr(*arg); break;
      case 'c':
        if (arg->is_string()) {
          piece = arg->as_string();
        } else {
          py::append_utf8(piece, char32_t(arg->as_int()));
        }
        break;
      case 'd': case 'i': case 'x': case 'X': case 'o': case 'f': case 'F': case 'e':
        out += num_fmt(conv);
        continue;
      default: fail("unsupported format character '{}'", std::string(1, conv));
    }
    if (precision >= 0 && conv != 'c') piece = py::encode(py::decode(piece).substr(0, size_t(precision)));
    const size_t len = py::length(piece);
    if (size_t(width) > len) {
      const std::string pad(size_t(width) - len, zero && conv != 's' && conv != 'r' ? '0' : ' ');
      piece = left ? piece + pad : pad + piece;
    }
    out += piece;
  }
  if (!mapping && next_arg < positional.size()) fail("not all arguments converted during string formatting");
  return Value(std::move(out));
}

}  // namespace

void fail_undefined(const Value& v) {
  const std::string& hint = v.undefined_hint();
  fail("{}", hint.empty() ? "undefined value" : hint);
}

Value unary_minus(const Value& v) {
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_float()) return Value(-v.as_double());
  if (is_intlike(v)) {
    if (v.as_int() == std::numeric_limits<int64_t>::min()) fail("integer overflow");
    return Value(-v.as_int());
  }
  fail("bad operand type for unary -: '{}'", type_name(v));
}

Value binary_op(Interpreter& in, BinOp op, const Value& a, const Value& b) {
  if (op == BinOp::Concat) {
    std::string s = to_str(a);
    const std::string t = to_str(b);
    in.check_size(s.size() + t.size());
    return Value(s + t);
  }
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  const bool ints = is_intlike(a) && is_intlike(b);
  const bool nums = a.is_number() && b.is_number();
  switch (op) {
    case BinOp::Add:
      if (ints) return Value(checked(add_ovf, a.as_int(), b.as_int()));
      if (nums) return Value(a.as_double() + b.as_double());
      if (a.is_string() && b.is_string()) {
        in.check_size(a.as_string().size() + b.as_string().size());
        return Value(a.as_string() + b.as_string());
      }
      if (a.is_list() && b.is_list() && is_seq(a) && is_seq(b) && a.as_list()->tuple == b.as_list()->tuple) {
        std::vector<Value> items = a.as_list()->items;
        items.insert(items.end(), b.as_list()->items.begin(), b.as_list()->items.end());
        in.check_size(items.size() * sizeof(Value));
        return make_list(std::move(items), a.as_list()->tuple);
      }
      unsupported("+", a, b);
    case BinOp::Sub:
      if (ints) return Value(checked(sub_ovf, a.as_int(), b.as_int()));
      if (nums) return Value(a.as_double() - b.as_double());
      unsupported("-", a, b);
    case BinOp::Mul:
      if (ints) return Value(checked(mul_ovf, a.as_int(), b.as_int()));
      if (nums) return Value(a.as_double() * b.as_double());
      if (is_seq(a) && is_intlike(b)) return repeat(in, a, b.as_int());
      if (is_seq(b) && is_intlike(a)) return repeat(in, b, a.as_int());
      unsupported("*", a, b);
    case BinOp::Div:
      if (nums) {
        if (b.as_double() == 0.0) fail("division by zero");
        return Value(a.as_double() / b.as_double());
      }
      unsupported("/", a, b);
    case BinOp::FloorDiv:
      if (ints) {
        const int64_t x = a.as_int(), y = b.as_int();
        if (y == 0) fail("integer division or modulo by zero");
        if (x == std::numeric_limits<int64_t>::min() && y == -1) fail("integer overflow");
        int64_t q = x / y;
        if ((x % y != 0) && ((x < 0) != (y < 0))) --q;
        return Value(q);
      }
      if (nums) return Value(float_floordiv(a.as_double(), b.as_double(), nullptr));
      unsupported("//", a, b);
    case BinOp::Mod:
      if (ints) {
        const int64_t x = a.as_int(), y = b.as_int();
        if (y == 0) fail("integer division or modulo by zero");
        if (y == -1) return Value(int64_t(0));
        int64_t m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) m += y;
        return Value(m);
      }
      if (nums) {
        if (b.as_double() == 0.0) fail("float modulo");
        double m = 0;
        float_floordiv(a.as_double(), b.as_double(), &m);
        return Value(m);
      }
      if (a.is_string()) return percent_format(a.as_string(), b);
      unsupported("%", a, b);
    case BinOp::Pow:
      if (ints && b.as_int() >= 0) {
        int64_t base = a.as_int(), e = b.as_int(), acc = 1;
        while (e > 0) {
          if (e & 1) acc = checked(mul_ovf, acc, base);
          e >>= 1;
          if (e > 0) base = checked(mul_ovf, base, base);
        }
        return Value(acc);
      }
      if (nums) {
        const double x = a.as_double(), y = b.as_double();
        if (x == 0.0 && y < 0) fail("0.0 cannot be raised to a negative power");
        if (x < 0 && y != std::floor(y)) fail("a negative number to a fractional power is complex");
        return Value(std::pow(x, y));
      }
      unsupported("** or pow()", a, b);
    case BinOp::Concat: break;
  }
  fail("unknown operator");
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::String:
      if (!item.is_string()) fail("'in <string>' requires string as left operand, not {}", type_name(item));
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::List:
      for (const auto& v : container.as_list()->items)
        if (equals(v, item)) return true;
      return false;
    case Value::Kind::Dict:
      if (item.is_list() && !item.as_list()->tuple) fail("unhashable type: 'list'");
      if (item.is_dict()) fail("unhashable type: 'dict'");
      return container.as_dict()->find(item) != nullptr;
    case Value::Kind::Undefined: return false;  // jinja2's Undefined iterates as empty
    default: fail("argument of type '{}' is not iterable", type_name(container));
  }
}

}  // namespace moeq::text::jinja
