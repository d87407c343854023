// Builds the AST from tokens with jinja2's grammar and operator precedence (including its quirks:
// `**` is left-associative, a unary minus binds tighter than filters, `x is test arg`).
#pragma once
#include <vector>

#include "text/jinja/ast.h"
#include "text/jinja/lexer.h"

namespace moeq::text::jinja {

// Nesting deeper than this (brackets, operators, blocks) is refused: the parser recurses.
inline constexpr int kMaxParseDepth = 256;

// Throws moeq::Error("line N: ...") for syntax errors and unsupported tags.
Body parse(const std::vector<Token>& tokens);

}  // namespace moeq::text::jinja
