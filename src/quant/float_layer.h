// A decoder layer's weights as plain float matrices: what conversion works on between reading
// the original (fp8) and writing the quantized formats (AWQ folds scales into these).
#pragma once
#include <vector>

#include "model/weights.h"

namespace moeq {

struct FloatLinear {
  int64_t rows = 0, cols = 0;
  std::vector<float> w;  // [rows][cols]
  static FloatLinear from(const QuantizedWeight& q);  // dequantized with the format's reference
  QuantizedWeight to_f32() const;                     // an "f32" weight owning a copy
  float* row(int64_t r) { return w.data() + r * cols; }
};

struct FloatLayer {
  std::vector<float> input_norm, post_norm, q_norm, k_norm, router_bias;
  FloatLinear q, k, v, o, gate;
  std::vector<FloatLinear> w1, w2, w3;

  static FloatLayer from(const HostLayer& h);
  HostLayer to_host_f32() const;  // every linear as "f32", norms as F32 (for tests and references)
};

std::vector<float> to_vector(const HostArray& a);  // any float dtype
HostArray to_host_array(const std::vector<float>& v);  // F32 [n]

}  // namespace moeq
