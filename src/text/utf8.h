// UTF-8 helpers for the tokenizer: strict decoding (the Unicode well-formedness table), lossy
// conversion with the "maximal subpart" replacement rule (as Rust's String::from_utf8_lossy, which
// Hugging Face's decoders use), and finding where a byte stream stops being complete UTF-8.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace moeq::text::utf8 {

inline constexpr char32_t kReplacement = 0xFFFD;

// Length of the well-formed sequence starting at s[0], or 0 if the bytes there are not one
// (ill-formed or truncated). On success *cp receives the code point.
size_t decode(std::string_view s, char32_t* cp);

// Length of the longest prefix of s that is a proper prefix of some well-formed sequence, i.e. how
// many bytes Unicode's "maximal subpart" rule swallows into one U+FFFD (at least 1 for s non-empty).
size_t maximal_subpart(std::string_view s);

void append(std::string& out, char32_t cp);  // encodes cp (must be a scalar value)

// Appends `bytes` to `out`, each maximal ill-formed subpart replaced by U+FFFD.
void append_lossy(std::string& out, std::string_view bytes);

// Length of the prefix of `bytes` whose lossy decoding cannot change when more bytes are appended:
// everything but a trailing incomplete (yet still possibly valid) sequence.
size_t stable_prefix(std::string_view bytes);

bool is_valid(std::string_view s);

}  // namespace moeq::text::utf8
