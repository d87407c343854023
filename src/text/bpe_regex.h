// Pre-tokenizer regexes on PCRE2 (JIT) with the semantics Hugging Face gets from Oniguruma.
//
// Patterns are rewritten before compiling so that the classes mean what they mean in Oniguruma
// (checked code point by code point against tokenizers 0.23): \s and \S become White_Space (PCRE2's
// \s lacks U+0085 and has U+180E), and \p{L} / \p{N} gain the letters and digits of Unicode 16
// that PCRE2 10.42 (Unicode 14) does not know yet. \P{L} / \P{N} inside a [...] class, \d, \w and
// \h are left to PCRE2's meaning.
//
// Text that is not valid UTF-8 is matched with PCRE2_MATCH_INVALID_UTF: an ill-formed byte matches
// nothing, so it ends up in a gap piece (see split) and the bytes are still tokenized.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moeq::text {

std::string onig_to_pcre2(std::string_view pattern);

class SplitRegex {
 public:
  enum class Syntax { Oniguruma, Literal, Pcre2 };
  // Compiles `pattern`. Throws moeq::Error with PCRE2's message.
  explicit SplitRegex(std::string_view pattern, Syntax syntax = Syntax::Oniguruma);
  SplitRegex(SplitRegex&&) noexcept;
  SplitRegex& operator=(SplitRegex&&) noexcept;
  SplitRegex(const SplitRegex&) = delete;
  SplitRegex& operator=(const SplitRegex&) = delete;
  ~SplitRegex();

  // Appends the non-empty pieces of `text` split "Isolated": each match and each gap between
  // matches is a piece, in order; together they cover `text`. Thread-safe.
  void split(std::string_view text, std::vector<std::string_view>& out) const;
  // Whether the pattern matches at exactly `offset` of `text` (used for one-character tests).
  bool matches_at(std::string_view text, size_t offset) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8*
};

}  // namespace moeq::text
