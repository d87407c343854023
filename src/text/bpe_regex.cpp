#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/bpe_regex.h"

#include <pcre2.h>

#include <utility>

#include "core/error.h"

namespace moeq::text {
namespace {

// Letters and numbers in Unicode 16 (Oniguruma in tokenizers 0.23) absent from PCRE2 10.42's
// Unicode 14 tables, as class ranges. Found by comparing both engines on every code point.
constexpr const char* kExtraLetters =
    "\\x{1C89}-\\x{1C8A}\\x{A7CB}-\\x{A7CD}\\x{A7DA}-\\x{A7DC}\\x{105C0}-\\x{105F3}"
    "\\x{10D4A}-\\x{10D65}\\x{10D6F}-\\x{10D85}\\x{10EC2}-\\x{10EC4}\\x{1123F}-\\x{11240}"
    "\\x{11380}-\\x{11389}\\x{1138B}\\x{1138E}\\x{11390}-\\x{113B5}\\x{113B7}\\x{113D1}\\x{113D3}"
    "\\x{11BC0}-\\x{11BE0}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}\\x{1342F}"
    "\\x{13441}-\\x{13446}\\x{13460}-\\x{143FA}\\x{16100}-\\x{1611D}\\x{16D40}-\\x{16D6C}\\x{18CFF}"
    "\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}\\x{1E030}-\\x{1E06D}\\x{1E4D0}-\\x{1E4EB}"
    "\\x{1E5D0}-\\x{1E5ED}\\x{1E5F0}\\x{2B739}\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}";
constexpr const char* kExtraNumbers =
    "\\x{10D40}-\\x{10D49}\\x{116D0}-\\x{116E3}\\x{11BF0}-\\x{11BF9}\\x{11F50}-\\x{11F59}"
    "\\x{16130}-\\x{16139}\\x{16D70}-\\x{16D79}\\x{1CCF0}-\\x{1CCF9}\\x{1D2C0}-\\x{1D2D3}"
    "\\x{1E4F0}-\\x{1E4F9}\\x{1E5F1}-\\x{1E5FA}";

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(code, buf, sizeof buf) < 0) return fmt::format("PCRE2 error {}", code);
  return reinterpret_cast<const char*>(buf);
}

// One reusable match block per thread: only the whole-match offsets are read.
pcre2_match_data* thread_match_data() {
  struct Holder {
    pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
    ~Holder() { pcre2_match_data_free(md); }
  };
  thread_local Holder h;
  if (!h.md) throw std::bad_alloc();
  return h.md;
}

// pcre2_match with a fallback to the interpreter if the JIT stack runs out. Returns false for no
// match; on a match sets [*b, *e).
bool find(const pcre2_code* code, std::string_view text, size_t start, uint32_t options, size_t* b,
          size_t* e) {
  pcre2_match_data* md = thread_match_data();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  int rc = pcre2_match(code, subject, text.size(), start, options, md, nullptr);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
    rc = pcre2_match(code, subject, text.size(), start, options | PCRE2_NO_JIT, md, nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) fail("pre-tokenizer regex: {}", pcre2_message(rc));
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  *b = ov[0];
  *e = ov[1];
  return true;
}

// Length of the character at text[i] for stepping over an empty match (1 for an ill-formed byte).
size_t char_len(std::string_view text, size_t i) {
  const auto b = uint8_t(text[i]);
  size_t n = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
  for (size_t k = 1; k < n; ++k)
    if (i + k >= text.size() || (uint8_t(text[i + k]) & 0xC0) != 0x80) return 1;
  return n;
}

}  // namespace

std::string onig_to_pcre2(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  size_t i = 0;
  while (i < p.size()) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[i + 1];
      if (n == 's' || n == 'S') {
        out += n == 's' ? "\\p{White_Space}" : "\\P{White_Space}";
        i += 2;
        continue;
      }
      if (n == 'p' || n == 'P') {
        // \pL, \p{L}, \p{^L} (Oniguruma's negation) and the same for N.
        size_t j = i + 2;
        bool negate = n == 'P', braced = false;
        if (j < p.size() && p[j] == '{') {
          braced = true;
          ++j;
          if (j < p.size() && p[j] == '^') negate = !negate, ++j;
        }
        if (j < p.size() && (p[j] == 'L' || p[j] == 'N') &&
            (!braced || (j + 1 < p.size() && p[j + 1] == '}'))) {
          const char prop = p[j];
          const char* extra = prop == 'L' ? kExtraLetters : kExtraNumbers;
          const size_t end = j + (braced ? 2 : 1);
          if (!negate) {
            out += in_class ? "" : "[";
            out += fmt::format("\\p{{{}}}{}", prop, extra);
            out += in_class ? "" : "]";
            i = end;
            continue;
          }
          if (!in_class) {
            out += fmt::format("[^\\p{{{}}}{}]", prop, extra);
            i = end;
            continue;
          }
        }
      }
      out += c;
      out += n;
      i += 2;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      ++i;
      if (i < p.size() && p[i] == '^') out += p[i++];
      if (i < p.size() && p[i] == ']') out += p[i++];  // a leading ']' is a literal
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // [:alpha:]
      const size_t close = p.find(":]", i + 2);
      if (close != std::string_view::npos) {
        out.append(p.substr(i, close + 2 - i));
        i = close + 2;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out += c;
    ++i;
  }
  return out;
}

SplitRegex::SplitRegex(std::string_view pattern, Syntax syntax) {
  const bool literal = syntax == Syntax::Literal;
  const std::string translated =
      syntax == Syntax::Oniguruma ? onig_to_pcre2(pattern) : std::string(pattern);
  int err = 0;
  PCRE2_SIZE off = 0;
  uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
  if (literal) opts |= PCRE2_LITERAL;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                   opts, &err, &off, nullptr);
  if (!code) {
    if (literal) fail("{}", pcre2_message(err));
    fail("invalid regex at offset {} of the translated pattern: {}", off, pcre2_message(err));
  }
  // Without a JIT (not built in, no executable memory) pcre2_match interprets: slower, same result.
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

SplitRegex::SplitRegex(SplitRegex&& o) noexcept : code_(std::exchange(o.code_, nullptr)) {}

SplitRegex& SplitRegex::operator=(SplitRegex&& o) noexcept {
  std::swap(code_, o.code_);
  return *this;
}

SplitRegex::~SplitRegex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

void SplitRegex::split(std::string_view text, std::vector<std::string_view>& out) const {
  const auto* code = static_cast<const pcre2_code*>(code_);
  // Iteration as the onig crate's find_iter, which Hugging Face uses: an empty match right where
  // the previous match ended is skipped by searching again one character further. Empty matches
  // still split a gap in two (their piece is empty and dropped).
  size_t prev = 0, search = 0;
  bool have_last = false;
  size_t last_end = 0;
  while (search <= text.size()) {
    size_t b, e;
    if (!find(code, text, search, 0, &b, &e)) break;
    if (b == e && have_last && last_end == e) {
      if (search >= text.size()) break;
      search += char_len(text, search);
      continue;
    }
    if (prev < b) out.push_back(text.substr(prev, b - prev));
    if (b < e) out.push_back(text.substr(b, e - b));
    prev = e;
    search = e;
    have_last = true;
    last_end = e;
  }
  if (prev < text.size()) out.push_back(text.substr(prev));
}

bool SplitRegex::matches_at(std::string_view text, size_t offset) const {
  size_t b, e;
  return find(static_cast<const pcre2_code*>(code_), text, offset, PCRE2_ANCHORED, &b, &e);
}

}  // namespace moeq::text
