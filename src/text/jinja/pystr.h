// Python string semantics that chat templates observe in their output: code-point indexing of UTF-8
// text, str.isspace/strip/split, case mapping, and the exact text of repr() for floats and strings.
// Templates are rendered by Python's jinja2 in every reference server, so the bytes must match.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moeq::text::jinja::py {

// UTF-8 <-> code points. Ill-formed bytes decode to U+FFFD (Python would refuse to read them at all).
std::u32string decode(std::string_view s);
std::string encode(std::u32string_view s);
void append_utf8(std::string& out, char32_t cp);
// The code point starting at byte i and its length in bytes (ill-formed: U+FFFD, 1 byte).
size_t decode_at(std::string_view s, size_t i, char32_t* cp);
bool is_ascii(std::string_view s);
size_t length(std::string_view s);  // code points

bool isspace(char32_t c);  // Python's str.isspace for one character
bool is_cased(char32_t c);
char32_t to_upper(char32_t c);  // simple mappings; upper() special-cases ß -> SS
char32_t to_lower(char32_t c);

std::string upper(std::string_view s);
std::string lower(std::string_view s);
std::string title(std::string_view s);       // str.title()
std::string capitalize(std::string_view s);  // str.capitalize()

// str.strip/lstrip/rstrip; chars == nullopt strips whitespace, else any of the given characters.
std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);
// str.split / str.rsplit; sep == nullopt splits on whitespace runs. maxsplit < 0: no limit.
std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit);
std::vector<std::string> rsplit(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit);
std::string replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count);
int64_t count(std::string_view s, std::string_view sub);
int64_t find(std::string_view s, std::string_view sub, bool reverse);  // code-point index or -1

std::string float_repr(double v);          // repr(float): 1.0, 0.1, 1e+16, inf, nan
std::string str_repr(std::string_view s);  // repr(str) with Python's choice of quotes and escapes
// A JSON string literal as json.dumps writes it (ensure_ascii escapes everything above 0x7F).
void append_json_string(std::string& out, std::string_view s, bool ensure_ascii);

// Python's int(str) / float(str): optional surrounding whitespace, sign, '_' between digits.
std::optional<int64_t> parse_int(std::string_view s);
std::optional<double> parse_float(std::string_view s);

}  // namespace moeq::text::jinja::py
