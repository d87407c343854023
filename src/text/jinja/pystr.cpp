#include "text/jinja/pystr.h"

#include "core/error.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace moeq::text::jinja::py {

namespace {

// Decodes one well-formed UTF-8 sequence at s[i]; returns its length, or 0 if ill-formed.
size_t decode_one(std::string_view s, size_t i, char32_t* cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  size_t n;
  char32_t c;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2, c = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3, c = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4, c = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return 0;
    c = (c << 6) | (b & 0x3F);
  }
  *cp = c;
  return n;
}

// Python's str.isprintable() is false for categories Cc, Cf, Cs, Co, Cn, Zl, Zp and Zs (but the
// space). Without the Unicode database we cover the assigned code points of those categories that
// text actually contains; unassigned code points are taken as printable.
bool is_printable(char32_t c) {
  if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return false;
  if (c < 0x300) return true;
  struct Range {
    char32_t lo, hi;
  };
  static constexpr Range kNonPrintable[] = {
      {0x0600, 0x0605}, {0x061C, 0x061C}, {0x06DD, 0x06DD}, {0x070F, 0x070F}, {0x08E2, 0x08E2},
      {0x180E, 0x180E}, {0x1680, 0x1680}, {0x2000, 0x200F}, {0x2028, 0x202F}, {0x205F, 0x2064},
      {0x2066, 0x206F}, {0x3000, 0x3000}, {0xD800, 0xF8FF}, {0xFEFF, 0xFEFF}, {0xFFF9, 0xFFFB},
      {0xFFFE, 0xFFFF}, {0x110BD, 0x110BD}, {0x110CD, 0x110CD}, {0x13430, 0x1343F},
      {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0001, 0xE0001}, {0xE0020, 0xE007F},
      {0xF0000, 0x10FFFF}};
  for (const auto& r : kNonPrintable)
    if (c >= r.lo && c <= r.hi) return false;
  return true;
}

// Case pairs laid out as alternating upper/lower code points (U+0100 Ā, U+0101 ā, ...).
struct PairRange {
  char32_t first, last;  // first upper .. last lower, inclusive
};
constexpr PairRange kAlternating[] = {{0x0100, 0x012F}, {0x0132, 0x0137}, {0x0139, 0x0148},
                                      {0x014A, 0x0177}, {0x0179, 0x017E}, {0x0460, 0x0481},
                                      {0x048A, 0x04BF}, {0x04C1, 0x04CE}, {0x04D0, 0x052F},
                                      {0x1E00, 0x1E95}, {0x1EA0, 0x1EFF}};

const PairRange* alternating(char32_t c) {
  for (const auto& r : kAlternating)
    if (c >= r.first && c <= r.last) return &r;
  return nullptr;
}

}  // namespace

size_t decode_at(std::string_view s, size_t i, char32_t* cp) {
  const size_t n = decode_one(s, i, cp);
  if (n == 0) {
    *cp = 0xFFFD;
    return 1;
  }
  return n;
}

std::u32string decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    char32_t cp;
    const size_t n = decode_one(s, i, &cp);
    if (n == 0) {
      out.push_back(0xFFFD);
      ++i;
    } else {
      out.push_back(cp);
      i += n;
    }
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

bool is_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

size_t length(std::string_view s) { return is_ascii(s) ? s.size() : decode(s).size(); }

bool isspace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

char32_t to_upper(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
  if ((c >= 0xE0 && c <= 0xFE && c != 0xF7)) return c - 32;
  if (c == 0xFF) return 0x178;
  if (c == 0xB5) return 0x39C;
  if (c == 0x131) return 'I';
  if (c == 0x17F) return 'S';
  if (const auto* r = alternating(c)) return ((c - r->first) % 2 == 1) ? c - 1 : c;
  if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) return c - 32;
  if (c == 0x3C2) return 0x3A3;
  if (c == 0x3AC) return 0x386;
  if (c >= 0x3AD && c <= 0x3AF) return c - 37;
  if (c == 0x3CC) return 0x38C;
  if (c == 0x3CD || c == 0x3CE) return c - 63;
  if (c >= 0x430 && c <= 0x44F) return c - 32;
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  if (c >= 0xFF41 && c <= 0xFF5A) return c - 32;
  return c;
}

char32_t to_lower(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  if ((c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 32;
  if (c == 0x178) return 0xFF;
  if (const auto* r = alternating(c)) return ((c - r->first) % 2 == 0) ? c + 1 : c;
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
  if (c == 0x386) return 0x3AC;
  if (c >= 0x388 && c <= 0x38A) return c + 37;
  if (c == 0x38C) return 0x3CC;
  if (c == 0x38E || c == 0x38F) return c + 63;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  if (c >= 0xFF21 && c <= 0xFF3A) return c + 32;
  return c;
}

bool is_cased(char32_t c) { return to_upper(c) != c || to_lower(c) != c || c == 0xDF || c == 0x138; }

std::string upper(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  if (is_ascii(s)) {
    for (char c : s) out.push_back(static_cast<char>(to_upper(static_cast<unsigned char>(c))));
    return out;
  }
  for (char32_t c : decode(s)) {
    if (c == 0xDF) {
      out += "SS";  // Python's full case mapping of ß
    } else {
      append_utf8(out, to_upper(c));
    }
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  if (is_ascii(s)) {
    for (char c : s) out.push_back(static_cast<char>(to_lower(static_cast<unsigned char>(c))));
    return out;
  }
  const std::u32string u = decode(s);
  for (size_t i = 0; i < u.size(); ++i) {
    // Python applies the final-sigma rule: capital sigma ending a word lowers to ς.
    if (u[i] == 0x3A3 && i > 0 && is_cased(u[i - 1]) && (i + 1 == u.size() || !is_cased(u[i + 1]))) {
      append_utf8(out, 0x3C2);
    } else {
      append_utf8(out, to_lower(u[i]));
    }
  }
  return out;
}

std::string title(std::string_view s) {
  std::string out;
  bool prev_cased = false;
  for (char32_t c : decode(s)) {
    if (is_cased(c)) {
      append_utf8(out, prev_cased ? to_lower(c) : to_upper(c));
      prev_cased = true;
    } else {
      append_utf8(out, c);
      prev_cased = false;
    }
  }
  return out;
}

std::string capitalize(std::string_view s) {
  std::string out;
  bool first = true;
  for (char32_t c : decode(s)) {
    append_utf8(out, first ? to_upper(c) : to_lower(c));
    first = false;
  }
  return out;
}

std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
  const std::u32string u = decode(s);
  const std::u32string set = chars ? decode(*chars) : std::u32string();
  auto strippable = [&](char32_t c) {
    return chars ? set.find(c) != std::u32string::npos : isspace(c);
  };
  size_t b = 0, e = u.size();
  if (left)
    while (b < e && strippable(u[b])) ++b;
  if (right)
    while (e > b && strippable(u[e - 1])) --e;
  return encode(std::u32string_view(u).substr(b, e - b));
}

std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    if (sep->empty()) fail("empty separator");
    size_t pos = 0;
    while (maxsplit < 0 || int64_t(out.size()) < maxsplit) {
      const size_t at = s.find(*sep, pos);
      if (at == std::string_view::npos) break;
      out.emplace_back(s.substr(pos, at - pos));
      pos = at + sep->size();
    }
    out.emplace_back(s.substr(pos));
    return out;
  }
  const std::u32string u = decode(s);
  size_t i = 0;
  while (true) {
    while (i < u.size() && isspace(u[i])) ++i;
    if (i == u.size()) break;
    if (maxsplit >= 0 && int64_t(out.size()) == maxsplit) {
      out.push_back(encode(std::u32string_view(u).substr(i)));  // the rest keeps its trailing space
      break;
    }
    size_t j = i;
    while (j < u.size() && !isspace(u[j])) ++j;
    out.push_back(encode(std::u32string_view(u).substr(i, j - i)));
    i = j;
  }
  return out;
}

std::vector<std::string> rsplit(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    if (sep->empty()) fail("empty separator");
    size_t end = s.size();
    while (maxsplit < 0 || int64_t(out.size()) < maxsplit) {
      if (end < sep->size()) break;
      const size_t at = s.rfind(*sep, end - sep->size());
      if (at == std::string_view::npos) break;
      out.emplace_back(s.substr(at + sep->size(), end - at - sep->size()));
      end = at;
    }
    out.emplace_back(s.substr(0, end));
  } else {
    const std::u32string u = decode(s);
    size_t e = u.size();
    while (true) {
      while (e > 0 && isspace(u[e - 1])) --e;
      if (e == 0) break;
      if (maxsplit >= 0 && int64_t(out.size()) == maxsplit) {
        out.push_back(encode(std::u32string_view(u).substr(0, e)));  // keeps its leading space
        break;
      }
      size_t b = e;
      while (b > 0 && !isspace(u[b - 1])) --b;
      out.push_back(encode(std::u32string_view(u).substr(b, e - b)));
      e = b;
    }
  }
  return {out.rbegin(), out.rend()};
}

std::string replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count) {
  std::string out;
  if (old.empty()) {
    // Python inserts the replacement before every code point and at the end.
    const std::u32string u = decode(s);
    int64_t done = 0;
    for (char32_t c : u) {
      if (count < 0 || done < count) {
        out += repl;
        ++done;
      }
      append_utf8(out, c);
    }
    if (count < 0 || done < count) out += repl;
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t at = s.find(old, pos);
    if (at == std::string_view::npos) break;
    out.append(s.substr(pos, at - pos));
    out.append(repl);
    pos = at + old.size();
    ++done;
  }
  out.append(s.substr(pos));
  return out;
}

int64_t count(std::string_view s, std::string_view sub) {
  if (sub.empty()) return int64_t(length(s)) + 1;
  int64_t n = 0;
  for (size_t pos = s.find(sub); pos != std::string_view::npos; pos = s.find(sub, pos + sub.size())) ++n;
  return n;
}

int64_t find(std::string_view s, std::string_view sub, bool reverse) {
  const size_t at = reverse ? s.rfind(sub) : s.find(sub);
  if (at == std::string_view::npos) return -1;
  return int64_t(length(s.substr(0, at)));
}

std::string float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  // Shortest round-trip digits, then Python's layout: fixed notation while the decimal exponent is
  // in [-4, 16), scientific (at least two exponent digits) outside it.
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string_view sci(buf, size_t(res.ptr - buf));
  std::string out;
  if (sci.front() == '-') {
    out.push_back('-');
    sci.remove_prefix(1);
  }
  const size_t epos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, epos))
    if (c != '.') digits.push_back(c);
  int exp10 = 0;
  std::from_chars(sci.data() + epos + 1 + (sci[epos + 1] == '+'), sci.data() + sci.size(), exp10);
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  const int decpt = exp10 + 1;  // value = 0.DIGITS * 10^decpt
  const int n = int(digits.size());
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0." + std::string(size_t(-decpt), '0') + digits;
    } else if (decpt >= n) {
      out += digits + std::string(size_t(decpt - n), '0') + ".0";
    } else {
      out += digits.substr(0, size_t(decpt)) + "." + digits.substr(size_t(decpt));
    }
  } else {
    out += digits.substr(0, 1);
    if (n > 1) out += "." + digits.substr(1);
    char e[16];
    std::snprintf(e, sizeof e, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
    out += e;
  }
  return out;
}

std::string str_repr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  char esc[16];
  for (char32_t c : decode(s)) {
    if (c == char32_t(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (is_printable(c)) {
      append_utf8(out, c);
    } else {
      if (c <= 0xFF) {
        std::snprintf(esc, sizeof esc, "\\x%02x", unsigned(c));
      } else if (c <= 0xFFFF) {
        std::snprintf(esc, sizeof esc, "\\u%04x", unsigned(c));
      } else {
        std::snprintf(esc, sizeof esc, "\\U%08x", unsigned(c));
      }
      out += esc;
    }
  }
  out.push_back(quote);
  return out;
}

void append_json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  out.push_back('"');
  char esc[16];
  auto escape_unit = [&](unsigned u) {
    std::snprintf(esc, sizeof esc, "\\u%04x", u);
    out += esc;
  };
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      switch (b) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          if (b < 0x20) {
            escape_unit(b);
          } else {
            out.push_back(char(b));
          }
      }
      ++i;
      continue;
    }
    char32_t cp;
    size_t n = decode_one(s, i, &cp);
    if (n == 0) cp = 0xFFFD, n = 1;
    if (!ensure_ascii) {
      if (n == 1 && cp == 0xFFFD) {
        append_utf8(out, cp);
      } else {
        out.append(s.substr(i, n));
      }
    } else if (cp >= 0x10000) {
      const char32_t v = cp - 0x10000;
      escape_unit(0xD800 + unsigned(v >> 10));
      escape_unit(0xDC00 + unsigned(v & 0x3FF));
    } else {
      escape_unit(unsigned(cp));
    }
    i += n;
  }
  out.push_back('"');
}

namespace {

// Strips Python whitespace and validates/removes '_' digit separators (only between two digits).
std::optional<std::string> clean_number(std::string_view s) {
  const std::string t = strip(s, std::nullopt, true, true);
  std::string out;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '_') {
      const bool ok = i > 0 && i + 1 < t.size() && std::isdigit(static_cast<unsigned char>(t[i - 1])) &&
                      std::isdigit(static_cast<unsigned char>(t[i + 1]));
      if (!ok) return std::nullopt;
      continue;
    }
    out.push_back(t[i]);
  }
  return out;
}

}  // namespace

std::optional<int64_t> parse_int(std::string_view s) {
  auto t = clean_number(s);
  if (!t || t->empty()) return std::nullopt;
  std::string_view v = *t;
  bool neg = false;
  if (v.front() == '+' || v.front() == '-') {
    neg = v.front() == '-';
    v.remove_prefix(1);
  }
  if (v.empty()) return std::nullopt;
  for (char c : v)
    if (c < '0' || c > '9') return std::nullopt;
  uint64_t mag = 0;
  const auto r = std::from_chars(v.data(), v.data() + v.size(), mag);
  if (r.ec != std::errc() || r.ptr != v.data() + v.size()) return std::nullopt;
  if (neg) {
    if (mag > uint64_t(INT64_MAX) + 1) return std::nullopt;
    return mag == uint64_t(INT64_MAX) + 1 ? INT64_MIN : -int64_t(mag);
  }
  if (mag > uint64_t(INT64_MAX)) return std::nullopt;
  return int64_t(mag);
}

std::optional<double> parse_float(std::string_view s) {
  auto t = clean_number(s);
  if (!t || t->empty()) return std::nullopt;
  std::string_view v = *t;
  bool neg = false;
  if (v.front() == '+' || v.front() == '-') {
    neg = v.front() == '-';
    v.remove_prefix(1);
  }
  const std::string low = lower(v);
  if (low == "inf" || low == "infinity") return neg ? -INFINITY : INFINITY;
  if (low == "nan") return NAN;
  // [digits][.digits][e[sign]digits] with at least one mantissa digit.
  size_t i = 0, mant = 0;
  while (i < v.size() && std::isdigit(static_cast<unsigned char>(v[i]))) ++i, ++mant;
  if (i < v.size() && v[i] == '.') {
    ++i;
    while (i < v.size() && std::isdigit(static_cast<unsigned char>(v[i]))) ++i, ++mant;
  }
  if (mant == 0) return std::nullopt;
  if (i < v.size() && (v[i] == 'e' || v[i] == 'E')) {
    ++i;
    if (i < v.size() && (v[i] == '+' || v[i] == '-')) ++i;
    size_t ed = 0;
    while (i < v.size() && std::isdigit(static_cast<unsigned char>(v[i]))) ++i, ++ed;
    if (ed == 0) return std::nullopt;
  }
  if (i != v.size()) return std::nullopt;
  double out = 0;
  const auto r = std::from_chars(v.data(), v.data() + v.size(), out);
  if (r.ec == std::errc::result_out_of_range) {
    // from_chars refuses to round to inf/0; Python does not.
    out = std::strtod(std::string(v).c_str(), nullptr);
  } else if (r.ec != std::errc()) {
    return std::nullopt;
  }
  return neg ? -out : out;
}

}  // namespace moeq::text::jinja::py
