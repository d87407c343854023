#include "quant/float_layer.h"

#include <cstring>

namespace moeq {

FloatLinear FloatLinear::from(const QuantizedWeight& q) {
  FloatLinear f;
  f.rows = q.rows;
  f.cols = q.cols;
  f.w.resize(size_t(q.rows * q.cols));
  format_ops(q.format).dequantize_rows_ref(q, 0, q.rows, f.w.data());
  return f;
}

QuantizedWeight FloatLinear::to_f32() const { return format_ops("f32").quantize({w.data(), rows, cols, nullptr}); }

std::vector<float> to_vector(const HostArray& a) {
  std::vector<float> v(size_t(a.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = load_as_f32(a.dtype, a.data.get(), i);
  return v;
}

HostArray to_host_array(const std::vector<float>& v) {
  HostArray a = HostArray::owned(DType::F32, {int64_t(v.size())});
  std::memcpy(a.mutable_data(), v.data(), a.nbytes);
  return a;
}

FloatLayer FloatLayer::from(const HostLayer& h) {
  FloatLayer f;
  f.input_norm = to_vector(h.input_norm);
  f.post_norm = to_vector(h.post_norm);
  if (h.q_norm.data) f.q_norm = to_vector(h.q_norm);
  if (h.k_norm.data) f.k_norm = to_vector(h.k_norm);
  f.router_bias = to_vector(h.router_bias);
  f.q = FloatLinear::from(h.q);
  f.k = FloatLinear::from(h.k);
  f.v = FloatLinear::from(h.v);
  f.o = FloatLinear::from(h.o);
  f.gate = FloatLinear::from(h.gate);
  for (size_t e = 0; e < h.w1.size(); ++e) {
    f.w1.push_back(FloatLinear::from(h.w1[e]));
    f.w2.push_back(FloatLinear::from(h.w2[e]));
    f.w3.push_back(FloatLinear::from(h.w3[e]));
  }
  return f;
}

HostLayer FloatLayer::to_host_f32() const {
  HostLayer h;
  h.input_norm = to_host_array(input_norm);
  h.post_norm = to_host_array(post_norm);
  if (!q_norm.empty()) h.q_norm = to_host_array(q_norm);
  if (!k_norm.empty()) h.k_norm = to_host_array(k_norm);
  h.router_bias = to_host_array(router_bias);
  h.q = q.to_f32();
  h.k = k.to_f32();
  h.v = v.to_f32();
  h.o = o.to_f32();
  h.gate = gate.to_f32();
  for (size_t e = 0; e < w1.size(); ++e) {
    h.w1.push_back(w1[e].to_f32());
    h.w2.push_back(w2[e].to_f32());
    h.w3.push_back(w3[e].to_f32());
  }
  return h;
}

}  // namespace moeq
