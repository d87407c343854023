// Splits template source into tokens the way jinja2's lexer does, because whitespace handling is
// where renderings most often differ: {%- -%} stripping, trim_blocks (drop the newline after a
// block or comment tag), lstrip_blocks (drop indentation before one), newline normalisation and
// the dropped trailing newline. Comments vanish here; {% raw %} bodies become plain text.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace moeq::text::jinja {

struct LexOptions {
  bool trim_blocks = true;     // transformers renders chat templates with both on
  bool lstrip_blocks = true;
  bool keep_trailing_newline = false;
};

struct Token {
  enum class Type { Data, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };
  Type type;
  std::string text;  // data text, name, decoded string literal, operator, or number without '_'
  int line;
};

// Throws moeq::Error("line N: ...") on malformed input (unterminated tags, strings, comments).
std::vector<Token> tokenize(std::string_view source, const LexOptions& options);

}  // namespace moeq::text::jinja
