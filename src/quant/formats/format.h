// QuantizedWeight and the table of weight formats. A format owns the layout of a linear layer's
// packed data; the backends call its dequantize_rows to work on the packed data a panel at a
// time (never the whole float matrix), and the CUDA kernels mirror the same layout.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/host_array.h"

namespace moeq {

struct QuantizedWeight {
  std::string format;  // on-disk tag: "bf16", "fp8_b128", "q8_g32", ...
  int64_t rows = 0;    // out_features
  int64_t cols = 0;    // in_features
  // Format parameters: the scale block (fp8: 128 x 128) or group (1 x 32) size.
  int64_t block_rows = 0, block_cols = 0;
  std::map<std::string, HostArray> parts;  // "qweight", "scales", "codebook", ...

  const HostArray& part(const std::string& name) const;  // throws naming the part
  size_t storage_bytes() const;                           // all parts, side data included
  double bits_per_weight() const { return 8.0 * double(storage_bytes()) / double(rows * cols); }
};

// Input to a format's quantizer: a float matrix and, optionally, the importance of each input
// channel (the calibration mean square of that input, "imatrix"); null means all equal.
struct QuantizeInput {
  const float* w = nullptr;  // [rows][cols], row-major
  int64_t rows = 0, cols = 0;
  const float* importance = nullptr;  // [cols] or null
};

struct FormatOps {
  std::string_view name;
  // Checks parts, dtypes and shapes against rows/cols; throws moeq::Error naming `where`.
  void (*validate)(const QuantizedWeight& w, const std::string& where);
  // Reference: rows [r0, r0 + n) as float, row-major [n][cols]. Plain scalar code.
  void (*dequantize_rows_ref)(const QuantizedWeight& w, int64_t r0, int64_t n, float* out);
  // The same values, vectorised where it pays (tested equal to the reference, bit for bit).
  void (*dequantize_rows)(const QuantizedWeight& w, int64_t r0, int64_t n, float* out);
  // Optional fused y[i] = sum_j W[r0 + i][j] x[j] for i < n, straight from the packed data
  // (decode's matvec); null: backends dequantize a panel and multiply.
  void (*matvec)(const QuantizedWeight& w, const float* x, int64_t r0, int64_t n, float* y);
  // Quantizes a float matrix into this format (throws if the shape does not fit the format).
  QuantizedWeight (*quantize)(const QuantizeInput& in);
};

const FormatOps& format_ops(std::string_view name);  // throws moeq::Error for an unknown tag
std::vector<std::string_view> format_names();

// Wrap plain arrays as weights (no copy): bf16/f32 -> "bf16"/"f32"; f8_e4m3 + scales -> "fp8_b128".
QuantizedWeight make_dense_weight(HostArray w);
QuantizedWeight make_fp8_block_weight(HostArray w, HostArray scale_inv, int64_t block_rows, int64_t block_cols);

}  // namespace moeq
