// Random weights in any format, for benchmarks: the parts a format needs (same layout as
// quantize() produces) with contents that decode to finite, roughly N(0, 1/cols) weights.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "quant/formats/format.h"

namespace moeq {

enum class SyntheticFill {
  RandomBytes,  // packed codes, int8: any bit pattern is valid
  Fp8Codes,     // e4m3 bytes without the NaN codes
  Normal,       // bf16 / f32 values ~ N(0, scale^2)
  Scale,        // f16 / f32 scales around `scale`
  Codebook,     // f16 sorted levels in [-1, 1]
};

struct SyntheticPart {
  std::string name;  // "qweight", "scales", "codebook"
  DType dtype;
  std::vector<int64_t> shape;
  SyntheticFill fill;
  float scale = 1.0f;  // Normal: standard deviation; Scale: typical value
};

// The parts of `format` for a [rows, cols] weight, with block sizes to record in the weight.
struct SyntheticLayout {
  std::vector<SyntheticPart> parts;
  int64_t block_rows = 0, block_cols = 0;
};
SyntheticLayout synthetic_layout(const std::string& format, int64_t rows, int64_t cols);

// A host weight filled per the layout (deterministic in `seed`).
QuantizedWeight synthetic_host_weight(const std::string& format, int64_t rows, int64_t cols, uint64_t seed);

}  // namespace moeq
