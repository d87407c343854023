// CPU kernels for the code-stream formats (int2/3/4 and lloyd2/3/4, packed_codes.h): every code
// maps to a float "level" (the integers -2^(b-1) .. 2^(b-1)-1 for the uniform formats, the f16
// codebook for lloyd) and W[r][j] = level[code] * scale[r][j / G]. One product per element, so
// the vector path gives the reference's bits exactly.
#pragma once
#include <cstdint>

#include "quant/formats/format.h"

namespace moeq::fmtq {

struct CodeLayout {
  int bits = 4;        // 2, 3 or 4
  int64_t group = 32;  // inputs per f16 scale; a multiple of 8
};

// Where a row's level table comes from.
struct Levels {
  bool uniform = false;                // level = code - 2^(bits-1) (the int formats), no table
  const uint16_t* codebook = nullptr;  // else f16 codebook [1 or rows][2^bits]
  bool per_row = false;                // codebook has one table per row
  // Row r's table as floats into out[2^bits].
  void row(int64_t r, int bits, float* out) const;
};

// Rows [r0, r0 + n) of w as float [n][cols]. w must have passed its format's validate.
void code_dequant_rows_ref(const QuantizedWeight& w, CodeLayout L, const Levels& lv, int64_t r0, int64_t n, float* out);
void code_dequant_rows(const QuantizedWeight& w, CodeLayout L, const Levels& lv, int64_t r0, int64_t n, float* out);
// y[i] = sum_j W[r0 + i][j] x[j], decoded group by group from the packed bytes (float accumulation:
// per group sum_j level * x_j, then times the group's scale).
void code_matvec(const QuantizedWeight& w, CodeLayout L, const Levels& lv, const float* x, int64_t r0, int64_t n,
                 float* y);

}  // namespace moeq::fmtq
