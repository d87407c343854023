// Quantizer of the lloyd*_g* formats (layout in lloyd_grouped.cpp and docs/FORMAT.md), with the
// codebook choice exposed so that tests and bench_formats can measure per-tensor against per-row.
#pragma once
#include <cstdint>
#include <string_view>

#include "quant/formats/format.h"

namespace moeq::fmtq {

struct LloydSpec {
  std::string_view name;
  int bits;       // 2, 3, 4: 2^bits levels
  int64_t group;  // inputs per f16 scale
};

// PerTensor: one codebook [1, 2^b]; PerRow: one per output row [rows, 2^b]; Auto: both, keeping
// per-row only where its error is lower by more than its extra bits are worth (see FORMAT.md).
enum class CodebookMode { PerTensor, PerRow, Auto };

struct LloydOptions {
  CodebookMode mode = CodebookMode::PerTensor;
  int rounds = 2;            // codebook <-> scale alternations (1: learn once on absmax-normalised groups)
  bool refine_scales = true;  // search each group's scale after the codebook is learned
};

QuantizedWeight lloyd_quantize(const LloydSpec& spec, const QuantizeInput& in, const LloydOptions& opt);

// The importance-weighted squared error sum_ij imp_j (W_ij - Q_ij)^2 of a quantized weight
// (imp null: plain squared error), accumulated in double row by row.
double weighted_sq_error(const QuantizedWeight& q, const float* w, const float* importance);

}  // namespace moeq::fmtq
