// AWQ (activation-aware weight quantization) as a transform (DESIGN §5): for linears sharing an
// input, a per-input-channel scale s = mean|x|^a / mean|w|^(1-a) (a searched on a grid, with "no
// scaling" always a candidate) minimising the output error of the quantized layers on calibration
// rows; W' = W diag(s) is quantized and 1/s is folded into the producer of the input.
#pragma once
#include <vector>

#include "quant/calibration.h"
#include "quant/float_layer.h"
#include "quant/formats/format.h"

namespace moeq {

struct AwqLinear {
  const FloatLinear* w = nullptr;
  const RowSample* x = nullptr;     // input rows of this linear
  const FormatOps* format = nullptr;  // its target format
};

struct AwqResult {
  std::vector<float> scales;  // s, one per input channel (all ones when no scaling won)
  double alpha = -1;          // the winning exponent; -1: no scaling
  double error = 0;           // summed squared output error at the winner
  double error_unscaled = 0;  // the same without scaling (plain quantization)
};

// `mean_abs_x`, `mean_sq_x`: statistics of the shared input over all calibration tokens.
AwqResult awq_search(const std::vector<AwqLinear>& group, const std::vector<float>& mean_abs_x,
                     const std::vector<float>& mean_sq_x, int grid = 20);

// Output error sum_rows ||x (Q(W diag s) diag(1/s) - W)^T||^2 of one linear for given scales.
double awq_error(const AwqLinear& l, const std::vector<float>& s, const std::vector<float>& mean_sq_x);

// Folding: each computes the same function as before (exactly, up to float rounding).
void fold_qkv(FloatLayer& L, const std::vector<float>& s);           // input_norm /= s; q, k, v columns *= s
void fold_w13(FloatLayer& L, const std::vector<float>& s);           // post_norm /= s; every w1, w3 and the router's columns *= s
void fold_w2(FloatLayer& L, int expert, const std::vector<float>& s);  // w3 rows /= s; w2 columns *= s

}  // namespace moeq
