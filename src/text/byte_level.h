// The GPT-2 "byte-level" alphabet: every byte is shown as one printable Unicode character so that
// BPE vocabularies are plain strings. Printable Latin-1 bytes stand for themselves; the others
// (controls, space, DEL, NBSP, soft hyphen) take U+0100 upwards in byte order.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace moeq::text::byte_level {

char32_t byte_to_char(uint8_t b);
// The byte that character c stands for, or -1 if c is not in the alphabet.
int char_to_byte(char32_t c);

// UTF-8 of the byte-level characters of `bytes` ("Ġhello" for " hello").
std::string encode(std::string_view bytes);
// Inverse of encode: false (out untouched) if s is not UTF-8 made only of alphabet characters.
bool decode(std::string_view s, std::string* out);

}  // namespace moeq::text::byte_level
