// The b-bit code stream shared by int2/int3/int4 and lloyd2/3/4 (docs/FORMAT.md, "Packed codes"):
// code i of a row sits at bits [i*b, i*b + b) of the row's bytes, little-endian (bit k of the
// stream is bit k%8 of byte k/8). A group of G codes fills exactly G*b/8 bytes (G is a multiple
// of 8), so the row's stream is its groups' streams one after another, each group contiguous.
// For b = 4 this is "element 2i in the low nibble of byte i, element 2i+1 in the high nibble".
#pragma once
#include <cstdint>

namespace moeq::fmtq {

inline int64_t packed_row_bytes(int64_t cols, int bits) { return cols * bits / 8; }

// Code i of a packed row (plain scalar reference).
inline unsigned code_at(const uint8_t* row, int64_t i, int bits) {
  const int64_t p = i * bits;
  const int shift = int(p & 7);
  unsigned v = unsigned(row[p >> 3]) >> shift;
  if (shift + bits > 8) v |= unsigned(row[(p >> 3) + 1]) << (8 - shift);  // a 3-bit code across a byte edge
  return v & ((1u << bits) - 1u);
}

// Packs n codes (each < 2^bits) into a zeroed row buffer.
inline void pack_codes(const uint8_t* codes, int64_t n, int bits, uint8_t* row) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t p = i * bits;
    const int shift = int(p & 7);
    row[p >> 3] = uint8_t(row[p >> 3] | (codes[i] << shift));
    if (shift + bits > 8) row[(p >> 3) + 1] = uint8_t(row[(p >> 3) + 1] | (codes[i] >> (8 - shift)));
  }
}

}  // namespace moeq::fmtq
