#include "text/jinja/lexer.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"
#include "text/jinja/pystr.h"

namespace moeq::text::jinja {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Length of `text` once trailing (Unicode) whitespace is removed, as Python's str.rstrip().
size_t rstrip_length(std::string_view text) {
  size_t keep = 0;
  for (size_t i = 0; i < text.size();) {
    char32_t cp;
    const size_t n = py::decode_at(text, i, &cp);
    i += n;
    if (!py::isspace(cp)) keep = i;
  }
  return keep;
}

// Position after the run of (Unicode) whitespace starting at `pos`, as the regex \s*.
size_t skip_space(std::string_view s, size_t pos) {
  while (pos < s.size()) {
    char32_t cp;
    const size_t n = py::decode_at(s, pos, &cp);
    if (!py::isspace(cp)) break;
    pos += n;
  }
  return pos;
}

bool all_space(std::string_view s) { return !s.empty() && skip_space(s, 0) == s.size(); }

class Lexer {
 public:
  Lexer(std::string source, const LexOptions& o) : s_(std::move(source)), opt_(o) {}

  std::vector<Token> run() {
    bool line_starting = true;  // the last match ended a line (jinja2's lstrip_blocks rule)
    while (pos_ < s_.size()) {
      const size_t start = next_tag(pos_);
      if (start == std::string::npos) {
        emit(Token::Type::Data, s_.substr(pos_), pos_);
        break;
      }
      const char kind = s_[start + 1];
      size_t after = start + 2;
      char sign = 0;
      if (after < s_.size() && (s_[after] == '-' || s_[after] == '+')) sign = s_[after++];
      std::string text = s_.substr(pos_, start - pos_);
      if (sign == '-') {
        text.resize(rstrip_length(text));
      } else if (sign != '+' && opt_.lstrip_blocks && kind != '{') {
        const size_t l_pos = text.rfind('\n') + 1;  // npos + 1 == 0
        if ((l_pos > 0 || line_starting) && all_space(std::string_view(text).substr(l_pos)))
          text.resize(l_pos);
      }
      const size_t text_pos = pos_;
      if (!text.empty()) emit(Token::Type::Data, std::move(text), text_pos);
      if (kind == '#') {
        line_starting = comment(after);
      } else if (kind == '%' && raw_begin(after)) {
        line_starting = raw_body();
      } else {
        line_starting = tag(kind == '%', start, after);
      }
    }
    tokens_.push_back({Token::Type::Eof, "", line_at(s_.size())});
    return std::move(tokens_);
  }

 private:
  size_t next_tag(size_t from) const {
    size_t best = std::string::npos;
    for (const char* open : {"{{", "{%", "{#"}) best = std::min(best, s_.find(open, from));
    return best;
  }

  int line_at(size_t pos) {
    // Positions only move forward, so count newlines incrementally.
    if (pos < line_pos_) {
      line_pos_ = 0;
      line_ = 1;
    }
    line_ += int(std::count(s_.begin() + std::ptrdiff_t(line_pos_), s_.begin() + std::ptrdiff_t(pos), '\n'));
    line_pos_ = pos;
    return line_;
  }

  [[noreturn]] void error(size_t pos, const std::string& msg) { fail("line {}: {}", line_at(pos), msg); }

  void emit(Token::Type t, std::string text, size_t pos) { tokens_.push_back({t, std::move(text), line_at(pos)}); }

  // After an end marker: `-` eats all following whitespace, `+` nothing, plain ends eat one
  // newline with trim_blocks. Returns whether the consumed text ended with a newline.
  bool after_end(char sign, bool trim) {
    const size_t from = pos_;
    if (sign == '-') {
      pos_ = skip_space(s_, pos_);
    } else if (sign != '+' && trim && pos_ < s_.size() && s_[pos_] == '\n') {
      ++pos_;
    }
    return pos_ > from && s_[pos_ - 1] == '\n';
  }

  bool comment(size_t body) {
    const size_t end = s_.find("#}", body);
    if (end == std::string::npos) error(body, "missing end of comment tag");
    char sign = 0;
    if (end > body && (s_[end - 1] == '-' || s_[end - 1] == '+')) sign = s_[end - 1];
    pos_ = end + 2;
    return after_end(sign, opt_.trim_blocks);
  }

  // {%[-+]? raw [-]%}: the raw body runs to the next {% endraw %}.
  bool raw_begin(size_t after) {
    size_t p = skip_space(s_, after);
    if (s_.compare(p, 3, "raw") != 0) return false;
    p = skip_space(s_, p + 3);
    if (s_.compare(p, 3, "-%}") == 0) {
      pos_ = skip_space(s_, p + 3);
    } else if (s_.compare(p, 2, "%}") == 0) {
      pos_ = p + 2;  // jinja2 applies no trim_blocks after {% raw %}
    } else {
      return false;
    }
    return true;
  }

  bool raw_body() {
    const bool line_starting = pos_ > 0 && s_[pos_ - 1] == '\n';
    size_t search = pos_;
    while (true) {
      const size_t open = s_.find("{%", search);
      if (open == std::string::npos) error(pos_, "missing end of raw directive");
      size_t p = open + 2;
      char sign = 0;
      if (p < s_.size() && (s_[p] == '-' || s_[p] == '+')) sign = s_[p++];
      p = skip_space(s_, p);
      if (s_.compare(p, 6, "endraw") != 0) {
        search = open + 2;
        continue;
      }
      p = skip_space(s_, p + 6);
      char end_sign = 0;
      if (p < s_.size() && (s_[p] == '-' || s_[p] == '+')) end_sign = s_[p++];
      if (s_.compare(p, 2, "%}") != 0) {
        search = open + 2;
        continue;
      }
      std::string text = s_.substr(pos_, open - pos_);
      if (sign == '-') {
        text.resize(rstrip_length(text));
      } else if (sign != '+' && opt_.lstrip_blocks) {
        const size_t l_pos = text.rfind('\n') + 1;
        if ((l_pos > 0 || line_starting) && all_space(std::string_view(text).substr(l_pos))) text.resize(l_pos);
      }
      if (!text.empty()) emit(Token::Type::Data, std::move(text), pos_);
      pos_ = p + 2;
      return after_end(end_sign, opt_.trim_blocks);
    }
  }

  bool tag(bool block, size_t start, size_t after) {
    emit(block ? Token::Type::BlockBegin : Token::Type::VarBegin, "", start);
    pos_ = after;
    std::string balance;  // open brackets: while inside, end markers are operators
    while (true) {
      if (pos_ >= s_.size()) error(pos_, block ? "unexpected end of template, expected '%}'" :
                                                 "unexpected end of template, expected '}}'");
      if (balance.empty()) {
        const char* close = block ? "%}" : "}}";
        char sign = 0;
        size_t p = pos_;
        if (s_[p] == '-' || (block && s_[p] == '+')) sign = s_[p++];
        if (s_.compare(p, 2, close) == 0) {
          emit(block ? Token::Type::BlockEnd : Token::Type::VarEnd, "", pos_);
          pos_ = p + 2;
          return after_end(sign, block && opt_.trim_blocks);
        }
      }
      const char c = s_[pos_];
      char32_t cp;
      py::decode_at(s_, pos_, &cp);
      if (py::isspace(cp)) {
        pos_ = skip_space(s_, pos_);
      } else if (is_digit(c)) {
        number();
      } else if (is_name_start(c)) {
        const size_t b = pos_;
        while (pos_ < s_.size() && is_name_char(s_[pos_])) ++pos_;
        emit(Token::Type::Name, s_.substr(b, pos_ - b), b);
      } else if (c == '\'' || c == '"') {
        string_literal();
      } else {
        op(balance);
      }
    }
  }

  // (\d+_)*\d+ : digits with single underscores between them.
  size_t digits(size_t p) const {
    if (p >= s_.size() || !is_digit(s_[p])) return p;
    while (true) {
      while (p < s_.size() && is_digit(s_[p])) ++p;
      if (p + 1 < s_.size() && s_[p] == '_' && is_digit(s_[p + 1])) {
        ++p;
        continue;
      }
      return p;
    }
  }

  void number() {
    const size_t b = pos_;
    size_t p = digits(b);
    bool is_float = false;
    // jinja2 lexes no float right after a '.', so that x.0.1 is two subscripts.
    if (b == 0 || s_[b - 1] != '.') {
      size_t q = p;
      bool frac = false;
      if (q < s_.size() && s_[q] == '.' && q + 1 < s_.size() && is_digit(s_[q + 1])) {
        q = digits(q + 1);
        frac = true;
      }
      if (q < s_.size() && (s_[q] == 'e' || s_[q] == 'E')) {
        size_t r = q + 1;
        if (r < s_.size() && (s_[r] == '+' || s_[r] == '-')) ++r;
        if (r < s_.size() && is_digit(s_[r])) {
          q = digits(r);
          frac = true;
        }
      }
      if (frac) {
        p = q;
        is_float = true;
      }
    }
    std::string text;
    for (size_t i = b; i < p; ++i)
      if (s_[i] != '_') text.push_back(s_[i]);
    pos_ = p;
    emit(is_float ? Token::Type::Float : Token::Type::Int, std::move(text), b);
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // A quoted literal, decoded as Python's "unicode-escape" codec does for jinja2.
  void string_literal() {
    const size_t b = pos_;
    const char quote = s_[pos_++];
    std::string out;
    char32_t pending_high = 0;  // a \uD8xx waiting for its low surrogate
    auto put = [&](char32_t cp) {
      if (pending_high && cp >= 0xDC00 && cp <= 0xDFFF) {
        py::append_utf8(out, 0x10000 + ((pending_high - 0xD800) << 10) + (cp - 0xDC00));
        pending_high = 0;
        return;
      }
      if (pending_high) py::append_utf8(out, 0xFFFD), pending_high = 0;
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        pending_high = cp;
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        py::append_utf8(out, 0xFFFD);
      } else {
        py::append_utf8(out, cp);
      }
    };
    while (true) {
      if (pos_ >= s_.size()) error(b, "unterminated string literal");
      const char c = s_[pos_];
      if (c == quote) {
        ++pos_;
        break;
      }
      if (c != '\\') {
        if (pending_high) py::append_utf8(out, 0xFFFD), pending_high = 0;
        out.push_back(c);
        ++pos_;
        continue;
      }
      if (pos_ + 1 >= s_.size()) error(b, "unterminated string literal");
      const char e = s_[pos_ + 1];
      pos_ += 2;
      switch (e) {
        case '\n': break;  // line continuation
        case '\\': put('\\'); break;
        case '\'': put('\''); break;
        case '"': put('"'); break;
        case 'a': put(0x07); break;
        case 'b': put(0x08); break;
        case 'f': put(0x0C); break;
        case 'n': put('\n'); break;
        case 'r': put('\r'); break;
        case 't': put('\t'); break;
        case 'v': put(0x0B); break;
        case 'x':
        case 'u':
        case 'U': {
          const int n = e == 'x' ? 2 : (e == 'u' ? 4 : 8);
          char32_t v = 0;
          for (int i = 0; i < n; ++i) {
            const int h = pos_ < s_.size() ? hex_value(s_[pos_]) : -1;
            if (h < 0) error(b, fmt::format("truncated \\{} escape in string literal", e));
            v = v * 16 + char32_t(h);
            ++pos_;
          }
          if (v > 0x10FFFF) error(b, "illegal Unicode character in string literal");
          put(v);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            char32_t v = char32_t(e - '0');
            for (int i = 0; i < 2 && pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '7'; ++i)
              v = v * 8 + char32_t(s_[pos_++] - '0');
            put(v);
          } else if (e == 'N') {
            error(b, "\\N{...} escapes are not supported");
          } else {
            // Python keeps unknown escapes as written.
            if (pending_high) py::append_utf8(out, 0xFFFD), pending_high = 0;
            out.push_back('\\');
            out.push_back(e);
          }
      }
    }
    if (pending_high) py::append_utf8(out, 0xFFFD);
    emit(Token::Type::String, std::move(out), b);
  }

  void op(std::string& balance) {
    static const char* kTwo[] = {"//", "**", "==", "!=", ">=", "<="};
    for (const char* t : kTwo) {
      if (s_.compare(pos_, 2, t) == 0) {
        emit(Token::Type::Op, t, pos_);
        pos_ += 2;
        return;
      }
    }
    const char c = s_[pos_];
    static const std::string kOne = "+-/*%~[](){}><=.:|,;";
    if (kOne.find(c) == std::string::npos) error(pos_, fmt::format("unexpected char '{}'", std::string(1, c)));
    if (c == '(' || c == '[' || c == '{') {
      balance.push_back(c == '(' ? ')' : (c == '[' ? ']' : '}'));
    } else if (c == ')' || c == ']' || c == '}') {
      if (balance.empty() || balance.back() != c) error(pos_, fmt::format("unexpected '{}'", std::string(1, c)));
      balance.pop_back();
    }
    emit(Token::Type::Op, std::string(1, c), pos_);
    ++pos_;
  }

  std::string s_;
  LexOptions opt_;
  size_t pos_ = 0;
  size_t line_pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

std::string normalize_newlines(std::string_view src, bool keep_trailing_newline) {
  std::string out;
  out.reserve(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if (src[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
    } else {
      out.push_back(src[i]);
    }
  }
  if (!keep_trailing_newline && !out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace

std::vector<Token> tokenize(std::string_view source, const LexOptions& options) {
  return Lexer(normalize_newlines(source, options.keep_trailing_newline), options).run();
}

}  // namespace moeq::text::jinja
